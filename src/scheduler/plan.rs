//! The scheduling decision as a pure function: [`plan`].
//!
//! One round, in LAVA's order:
//! 1. Idle devices with an invalid configuration are marked Bad.
//! 2. Health checks: queued health-check jobs go to their device, then every Idle device whose
//!    type has a health check and whose health is Unknown or Looping (or Good with the check
//!    due) gets a new one. Such devices take nothing else this round.
//! 3. User jobs, in queue order (priority desc, submit time asc, sub id, id). A single job takes
//!    the first eligible free device in [`DeviceOrder`]. A MultiNode group is placed whole (a
//!    maximum matching of its sub-jobs to eligible free devices, respecting worker job limits)
//!    or not at all; a group that cannot be placed now but could be once busy devices free up
//!    holds the devices of its best partial placement so lower-priority jobs cannot starve it.
//! 4. Queue timeouts: queued jobs (whole groups) past their deadline that were not placed are
//!    canceled (LAVA checks timeouts after scheduling, so a job placed this round runs).
//!
//! Eligibility of a device for a user job: Idle; worker online with spare job slots; valid
//! configuration; health Good, or Unknown when its type has no health check; the job's device
//! type; all the job's tags; access allowed to the submitter; not already used this round.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use crate::model::lifecycle::device_accepts;
use crate::model::{DeviceHealth, DeviceState, JobId, Priority};
use crate::scheduler::{
    CancelTarget, Decision, Device, DeviceOrder, HealthCheckState, JobKind, QueuedJob, Snapshot,
};

/// Reason recorded when a device is marked Bad for its configuration.
pub const INVALID_CONFIGURATION: &str = "Invalid device configuration";

/// Sort key of the queue: smaller runs first.
pub type QueueKey = (Reverse<Priority>, OffsetDateTime, Option<u32>, JobId);

/// The queue order key: priority desc, submit time asc, sub id, id.
pub fn queue_key(job: &QueuedJob) -> QueueKey {
    let sub = match &job.kind {
        JobKind::MultiNode(m) => Some(m.sub_id),
        _ => None,
    };
    (Reverse(job.priority), job.submit_time, sub, job.id)
}

/// Whether `job` may ever run on `device` as far as static properties go: device type, tags
/// and access (not state, health or worker).
pub fn job_matches(job: &QueuedJob, device: &Device) -> bool {
    job.device_type.as_deref() == Some(device.device_type.as_str())
        && job.tags.is_subset(&device.tags)
        && device.access.allows(&job.submitter)
}

/// Whether a device's health lets it take user jobs (given its health-check situation).
pub fn health_takes_user_jobs(device: &Device) -> bool {
    match device.health {
        DeviceHealth::Good => device.health_check != HealthCheckState::Due,
        DeviceHealth::Unknown => device.health_check == HealthCheckState::None,
        _ => false,
    }
}

/// Whether a device needs a health check before anything else.
pub fn needs_health_check(device: &Device) -> bool {
    match device.health_check {
        HealthCheckState::None => false,
        HealthCheckState::Due => matches!(
            device.health,
            DeviceHealth::Good | DeviceHealth::Unknown | DeviceHealth::Looping
        ),
        HealthCheckState::NotDue => {
            matches!(device.health, DeviceHealth::Unknown | DeviceHealth::Looping)
        }
    }
}

/// FNV-1a over the seed and the hostname: a stable pseudo-random rank.
fn seeded_rank(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in seed.to_le_bytes().iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Debug, Clone, Copy)]
struct Load {
    online: bool,
    limit: u32,
    used: u32,
}

impl Load {
    fn spare(&self) -> u32 {
        if !self.online {
            0
        } else if self.limit == 0 {
            u32::MAX
        } else {
            self.limit.saturating_sub(self.used)
        }
    }
}

/// Working state of one round.
struct Round<'a> {
    /// Devices in trial order.
    devices: Vec<&'a Device>,
    /// Worker index of each device (into `loads`), `None` if the worker is unknown.
    worker_of: Vec<Option<usize>>,
    loads: Vec<Load>,
    taken: Vec<bool>,
    decisions: Vec<Decision>,
}

impl<'a> Round<'a> {
    fn new(snapshot: &'a Snapshot) -> Round<'a> {
        let mut devices: Vec<&Device> = snapshot.devices.iter().collect();
        match snapshot.device_order {
            DeviceOrder::ByName => devices.sort_by(|a, b| a.hostname.cmp(&b.hostname)),
            DeviceOrder::Seeded(seed) => devices.sort_by(|a, b| {
                (seeded_rank(seed, &a.hostname), &a.hostname)
                    .cmp(&(seeded_rank(seed, &b.hostname), &b.hostname))
            }),
        }
        // Duplicate hostnames would make "one job per device" ambiguous: keep the first.
        let mut seen = BTreeSet::new();
        devices.retain(|d| seen.insert(d.hostname.as_str()));
        let mut worker_index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut loads = Vec::new();
        for w in &snapshot.workers {
            if worker_index.contains_key(w.hostname.as_str()) {
                continue;
            }
            worker_index.insert(w.hostname.as_str(), loads.len());
            loads.push(Load {
                online: w.online,
                limit: w.job_limit,
                used: w.busy,
            });
        }
        let worker_of = devices
            .iter()
            .map(|d| worker_index.get(d.worker.as_str()).copied())
            .collect();
        let taken = vec![false; devices.len()];
        Round {
            devices,
            worker_of,
            loads,
            taken,
            decisions: Vec::new(),
        }
    }

    fn online(&self, i: usize) -> bool {
        self.worker_of[i].is_some_and(|w| self.loads[w].online)
    }

    fn spare(&self, i: usize) -> u32 {
        self.worker_of[i].map_or(0, |w| self.loads[w].spare())
    }

    /// Idle, on an online worker, valid configuration, not used this round.
    fn free(&self, i: usize) -> bool {
        let d = self.devices[i];
        !self.taken[i] && d.state == DeviceState::Idle && self.online(i) && d.config_error.is_none()
    }

    fn take(&mut self, i: usize) {
        self.taken[i] = true;
        if let Some(w) = self.worker_of[i] {
            self.loads[w].used = self.loads[w].used.saturating_add(1);
        }
    }

    /// Free devices eligible for a user job, in trial order.
    fn candidates(&self, job: &QueuedJob) -> Vec<usize> {
        (0..self.devices.len())
            .filter(|&i| {
                self.free(i)
                    && health_takes_user_jobs(self.devices[i])
                    && job_matches(job, self.devices[i])
            })
            .collect()
    }

    /// Devices that could take the job once they are free: health Good/Unknown, online
    /// worker, valid configuration, matching type/tags/access; any state.
    fn eventual_candidates(&self, job: &QueuedJob) -> Vec<usize> {
        (0..self.devices.len())
            .filter(|&i| {
                let d = self.devices[i];
                matches!(d.health, DeviceHealth::Good | DeviceHealth::Unknown)
                    && self.online(i)
                    && d.config_error.is_none()
                    && job_matches(job, d)
            })
            .collect()
    }

    fn mark_bad(&mut self) {
        for i in 0..self.devices.len() {
            let d = self.devices[i];
            if let Some(err) = &d.config_error
                && d.state == DeviceState::Idle
                && self.online(i)
                && matches!(
                    d.health,
                    DeviceHealth::Good | DeviceHealth::Unknown | DeviceHealth::Looping
                )
            {
                self.taken[i] = true;
                let reason = if err.is_empty() {
                    INVALID_CONFIGURATION.to_owned()
                } else {
                    format!("{INVALID_CONFIGURATION}: {err}")
                };
                self.decisions.push(Decision::MarkBad {
                    device: d.hostname.clone(),
                    reason,
                });
            }
        }
    }

    fn health_checks(&mut self, queued: &[&QueuedJob]) -> BTreeSet<JobId> {
        let mut placed = BTreeSet::new();
        for job in queued {
            let JobKind::HealthCheck { device } = &job.kind else {
                continue;
            };
            let Some(i) = self.devices.iter().position(|d| d.hostname == *device) else {
                continue;
            };
            let d = self.devices[i];
            // The store refuses what `device_accepts` refuses: plan nothing it would.
            if self.free(i) && self.spare(i) > 0 && device_accepts(d.state, d.health, true) {
                self.take(i);
                placed.insert(job.id);
                self.decisions.push(Decision::Assign {
                    job: job.id,
                    device: d.hostname.clone(),
                });
            }
        }
        // New health checks go by hostname, as LAVA does.
        let mut by_name: Vec<usize> = (0..self.devices.len()).collect();
        by_name.sort_by(|&a, &b| self.devices[a].hostname.cmp(&self.devices[b].hostname));
        for i in by_name {
            if self.free(i) && self.spare(i) > 0 && needs_health_check(self.devices[i]) {
                self.take(i);
                self.decisions.push(Decision::HealthCheck {
                    device: self.devices[i].hostname.clone(),
                });
            }
        }
        placed
    }

    /// Maximum placement of `members` (each with candidate devices in trial order): each
    /// device used once, each worker at most its spare slots (unless `ignore_limits`).
    /// A small max-flow (source → member → device → worker → sink) with depth-first
    /// augmenting paths tried in index order, so earlier members and devices win ties.
    fn max_placement(&self, members: &[Vec<usize>], ignore_limits: bool) -> Vec<Option<usize>> {
        let devs: Vec<usize> = members
            .iter()
            .flatten()
            .copied()
            .collect::<BTreeSet<usize>>()
            .into_iter()
            .collect();
        let workers: Vec<Option<usize>> = devs
            .iter()
            .map(|&d| self.worker_of[d])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let m = members.len();
        let source = 0;
        let member_node = |i: usize| 1 + i;
        let dev_node = |k: usize| 1 + m + k;
        let worker_node = |w: usize| 1 + m + devs.len() + w;
        let sink = 1 + m + devs.len() + workers.len();
        let n = sink + 1;
        let mut cap = vec![vec![0u32; n]; n];
        for (i, cands) in members.iter().enumerate() {
            cap[source][member_node(i)] = 1;
            for d in cands {
                if let Ok(k) = devs.binary_search(d) {
                    cap[member_node(i)][dev_node(k)] = 1;
                }
            }
        }
        for (k, &d) in devs.iter().enumerate() {
            if let Ok(w) = workers.binary_search(&self.worker_of[d]) {
                cap[dev_node(k)][worker_node(w)] = 1;
            }
        }
        let most = u32::try_from(m).unwrap_or(u32::MAX);
        for (w, worker) in workers.iter().enumerate() {
            let spare = if ignore_limits {
                most
            } else {
                worker.map_or(0, |w| self.loads[w].spare()).min(most)
            };
            cap[worker_node(w)][sink] = spare;
        }
        let original = cap.clone();
        loop {
            let mut seen = vec![false; n];
            if !augment(&mut cap, &mut seen, source, sink) {
                break;
            }
        }
        (0..m)
            .map(|i| {
                (0..devs.len()).find_map(|k| {
                    let (a, b) = (member_node(i), dev_node(k));
                    (original[a][b] == 1 && cap[a][b] == 0).then_some(devs[k])
                })
            })
            .collect()
    }
}

/// Finds one augmenting path from `at` to `sink` in the residual graph and pushes one unit.
fn augment(cap: &mut [Vec<u32>], seen: &mut [bool], at: usize, sink: usize) -> bool {
    if at == sink {
        return true;
    }
    seen[at] = true;
    for next in 0..cap.len() {
        if !seen[next] && cap[at][next] > 0 && augment(cap, seen, next, sink) {
            cap[at][next] -= 1;
            cap[next][at] += 1;
            return true;
        }
    }
    false
}

/// One schedulable unit: a single job or a whole group.
enum Unit<'a> {
    Single(&'a QueuedJob),
    Group {
        target_group: &'a str,
        members: Vec<&'a QueuedJob>,
    },
}

/// Plans one scheduling round over `snapshot` at time `now`; see the module documentation.
/// The result is deterministic: it depends only on the snapshot's contents (not the order of
/// its lists) and `now`.
pub fn plan(snapshot: &Snapshot, now: OffsetDateTime) -> Vec<Decision> {
    let mut round = Round::new(snapshot);
    let mut queued: Vec<&QueuedJob> = snapshot.jobs.iter().collect();
    queued.sort_by_key(|j| queue_key(j));
    queued.dedup_by_key(|j| j.id);

    round.mark_bad();
    let placed_hc = round.health_checks(&queued);

    let units = units(&queued);
    let mut placed: BTreeSet<JobId> = placed_hc;
    for unit in &units {
        match unit {
            Unit::Single(job) => {
                let Some(i) = round
                    .candidates(job)
                    .into_iter()
                    .find(|&i| round.spare(i) > 0)
                else {
                    continue;
                };
                round.take(i);
                placed.insert(job.id);
                round.decisions.push(Decision::Assign {
                    job: job.id,
                    device: round.devices[i].hostname.clone(),
                });
            }
            Unit::Group {
                target_group,
                members,
            } => {
                if !group_complete(members) {
                    continue;
                }
                let (dynamic, needing): (Vec<&QueuedJob>, Vec<&QueuedJob>) =
                    members.iter().partition(|j| is_dynamic(j));
                if needing.is_empty() {
                    continue;
                }
                let cands: Vec<Vec<usize>> = needing.iter().map(|j| round.candidates(j)).collect();
                let placement = round.max_placement(&cands, false);
                if placement.iter().all(Option::is_some) {
                    let mut assignments = Vec::new();
                    for (job, dev) in needing.iter().zip(&placement) {
                        if let Some(dev) = *dev {
                            round.take(dev);
                            placed.insert(job.id);
                            assignments.push((job.id, round.devices[dev].hostname.clone()));
                        }
                    }
                    for j in &dynamic {
                        placed.insert(j.id);
                    }
                    round.decisions.push(Decision::AssignGroup {
                        target_group: (*target_group).to_owned(),
                        assignments,
                        dynamic: dynamic.iter().map(|j| j.id).collect(),
                    });
                    continue;
                }
                // Not placeable now: hold what it can use if it can ever be placed.
                let eventual: Vec<Vec<usize>> = needing
                    .iter()
                    .map(|j| round.eventual_candidates(j))
                    .collect();
                let feasible = round
                    .max_placement(&eventual, true)
                    .iter()
                    .all(Option::is_some);
                let mut held: Vec<usize> = placement.into_iter().flatten().collect();
                if feasible && !held.is_empty() {
                    held.sort_unstable();
                    for &d in &held {
                        round.take(d);
                    }
                    round.decisions.push(Decision::Hold {
                        target_group: (*target_group).to_owned(),
                        devices: held
                            .iter()
                            .map(|&d| round.devices[d].hostname.clone())
                            .collect(),
                    });
                }
            }
        }
    }

    // Queue timeouts, for what is still queued.
    let expired = |j: &QueuedJob| j.queue_deadline.is_some_and(|d| d < now);
    for j in &queued {
        if matches!(j.kind, JobKind::HealthCheck { .. }) && !placed.contains(&j.id) && expired(j) {
            round
                .decisions
                .push(Decision::CancelQueueTimeout(CancelTarget::Job(j.id)));
        }
    }
    for unit in &units {
        match unit {
            Unit::Single(j) if !placed.contains(&j.id) && expired(j) => round
                .decisions
                .push(Decision::CancelQueueTimeout(CancelTarget::Job(j.id))),
            Unit::Group {
                target_group,
                members,
            } if members.iter().all(|j| !placed.contains(&j.id))
                && members.iter().any(|j| expired(j)) =>
            {
                round
                    .decisions
                    .push(Decision::CancelQueueTimeout(CancelTarget::Group {
                        target_group: (*target_group).to_owned(),
                        jobs: members.iter().map(|j| j.id).collect(),
                    }));
            }
            _ => {}
        }
    }
    round.decisions
}

fn is_dynamic(job: &QueuedJob) -> bool {
    matches!(&job.kind, JobKind::MultiNode(m) if m.dynamic_connection)
}

/// A group can be placed only with all its sub-jobs queued: `group_size` members with
/// distinct sub ids that agree on the size.
fn group_complete(members: &[&QueuedJob]) -> bool {
    let mut sizes = BTreeSet::new();
    let mut subs = BTreeSet::new();
    for j in members {
        if let JobKind::MultiNode(m) = &j.kind {
            sizes.insert(m.group_size);
            subs.insert(m.sub_id);
        }
    }
    sizes.len() == 1
        && sizes.first().is_some_and(|&s| s as usize == members.len())
        && subs.len() == members.len()
}

/// Queue-ordered units; a group sits where its first sub-job in queue order sits.
fn units<'a>(queued: &[&'a QueuedJob]) -> Vec<Unit<'a>> {
    let mut units = Vec::new();
    let mut groups_seen: BTreeSet<&str> = BTreeSet::new();
    for job in queued {
        match &job.kind {
            JobKind::Single => units.push(Unit::Single(job)),
            JobKind::HealthCheck { .. } => {}
            JobKind::MultiNode(m) => {
                if !groups_seen.insert(m.target_group.as_str()) {
                    continue;
                }
                let mut members: Vec<&QueuedJob> = queued
                    .iter()
                    .copied()
                    .filter(|j| {
                        matches!(&j.kind, JobKind::MultiNode(o) if o.target_group == m.target_group)
                    })
                    .collect();
                members.sort_by_key(|j| match &j.kind {
                    JobKind::MultiNode(o) => (o.sub_id, j.id),
                    _ => (u32::MAX, j.id),
                });
                units.push(Unit::Group {
                    target_group: m.target_group.as_str(),
                    members,
                });
            }
        }
    }
    units
}

#[cfg(test)]
mod tests;
