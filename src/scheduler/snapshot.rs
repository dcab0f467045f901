//! The scheduler's view of the store: [`StoreRows`] (read in one store call) and the device
//! checks (from the templates' cache) → [`convert`] → the [`Snapshot`] [`plan()`](super::plan())
//! looks at. Everything here after the store call is pure.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use time::OffsetDateTime;

use super::{
    Access, Device, DeviceOrder, GroupMember, HealthCheckState, JobKind, QueuedJob, Snapshot,
    Submitter, Worker,
};
use crate::devicetype::DeviceCheck;
use crate::model::{DeviceHealth, DeviceState, GroupId, JobId, UserId};
use crate::store::{self, HealthDenominator, JobFilter, SchedulerSnapshot, Store};

/// The worker name of devices without one: the appliance itself.
pub(super) const LOCAL_WORKER: &str = "lavabox";

/// What a pass reads from the store, in one call: the snapshot, the people it names and the
/// stored workers.
#[derive(Debug)]
pub struct StoreRows {
    /// Queue, devices (with dictionaries) and device types.
    pub raw: SchedulerSnapshot,
    /// Submitters, owners and MultiNode roles.
    pub people: People,
    /// The stored workers (health, job limit).
    pub workers: Vec<store::Worker>,
}

impl StoreRows {
    /// Reads the rows (no template reading or rendering: this runs under the store lock).
    pub fn load(s: &mut Store) -> Result<StoreRows, store::Error> {
        let raw = s.scheduler_snapshot()?;
        let people = People::load(s, &raw)?;
        let workers = s.workers()?;
        Ok(StoreRows {
            raw,
            people,
            workers,
        })
    }
}

/// Users and groups the conversion needs, read in the same store call as the snapshot.
#[derive(Debug, Default)]
pub struct People {
    /// Submitters by username.
    pub submitters: HashMap<String, Submitter>,
    /// User ids by username (device owners).
    pub user_ids: HashMap<String, UserId>,
    /// Group ids by name (device owner groups).
    pub group_ids: HashMap<String, GroupId>,
    /// Queued MultiNode sub-jobs: (role, group size, dynamic connection) by job id.
    pub multinode: HashMap<JobId, (String, u32, bool)>,
}

impl People {
    /// Reads what [`convert`] needs about the snapshot's submitters, owners and groups.
    pub fn load(s: &mut Store, raw: &SchedulerSnapshot) -> Result<People, store::Error> {
        let mut people = People::default();
        for user in s.users()? {
            people.user_ids.insert(user.username.clone(), user.id);
        }
        for group in s.groups()? {
            people.group_ids.insert(group.name, group.id);
        }
        let names: BTreeSet<&str> = raw.queued.iter().map(|j| j.submitter.as_str()).collect();
        for name in names {
            let Some(user) = s.user(name)? else { continue };
            let groups = s.user_groups(name)?.into_iter().map(|g| g.id).collect();
            people.submitters.insert(
                name.to_owned(),
                Submitter {
                    user: user.id,
                    groups,
                    is_superuser: user.is_superuser,
                },
            );
        }
        let mut sizes: HashMap<String, u32> = HashMap::new();
        for job in &raw.queued {
            let Some(group) = &job.target_group else {
                continue;
            };
            let size = match sizes.get(group) {
                Some(n) => *n,
                None => {
                    let filter = JobFilter {
                        target_group: Some(group.clone()),
                        ..JobFilter::default()
                    };
                    let n = u32::try_from(s.count_jobs(&filter)?).unwrap_or(u32::MAX);
                    sizes.insert(group.clone(), n);
                    n
                }
            };
            let (role, dynamic) = match s.job(job.id)? {
                Some(full) => multinode_role(&full.definition),
                None => (String::new(), false),
            };
            people.multinode.insert(job.id, (role, size, dynamic));
        }
        Ok(people)
    }
}

/// The role of a MultiNode sub-job and whether it is a dynamic connection (a role with
/// `host_role`, riding on another role's device), from its definition.
pub fn multinode_role(definition: &str) -> (String, bool) {
    let Ok(value) = serde_norway::from_str::<serde_norway::Value>(definition) else {
        return (String::new(), false);
    };
    let multinode = value.get("protocols").and_then(|p| p.get("lava-multinode"));
    let role = multinode
        .and_then(|m| m.get("role"))
        .and_then(|r| r.as_str())
        .unwrap_or_default()
        .to_owned();
    let dynamic = multinode.is_some_and(|m| m.get("host_role").is_some());
    (role, dynamic)
}

/// A converted snapshot plus the health-check definitions of the devices that have one.
#[derive(Debug, Clone, Default)]
pub struct Converted {
    /// What [`plan()`](super::plan()) looks at.
    pub snapshot: Snapshot,
    /// Health-check job definitions by device hostname.
    pub health_checks: HashMap<String, String>,
}

impl Converted {
    /// Devices with health Unknown and no health check: [`plan()`](super::plan()) gives them
    /// user jobs, and applying such an assignment first makes them Good (the store only
    /// schedules user jobs on Good devices).
    pub fn unchecked_unknown(&self) -> HashSet<String> {
        self.snapshot
            .devices
            .iter()
            .filter(|d| {
                d.health == DeviceHealth::Unknown && d.health_check == HealthCheckState::None
            })
            .map(|d| d.hostname.clone())
            .collect()
    }
}

/// Converts the store's rows for [`plan()`](super::plan()) at time `now`. Pure: `checks` holds
/// each device's [`DeviceCheck`] in the order of `raw.devices` (from the templates' cache); a
/// device whose dictionary is missing or does not render gets a `config_error`, and its health
/// check is the one installed for the template its dictionary extends.
pub fn convert(
    raw: &SchedulerSnapshot,
    people: &People,
    checks: &[Arc<DeviceCheck>],
    now: OffsetDateTime,
) -> Converted {
    let mut health_checks = HashMap::new();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut devices = Vec::with_capacity(raw.devices.len());
    for (i, slot) in raw.devices.iter().enumerate() {
        let d = &slot.device;
        let worker = d
            .worker_name
            .clone()
            .unwrap_or_else(|| LOCAL_WORKER.to_owned());
        let entry = workers.entry(worker.clone()).or_insert_with(|| Worker {
            hostname: worker.clone(),
            online: true,
            job_limit: 0,
            busy: 0,
        });
        if matches!(d.state, DeviceState::Reserved | DeviceState::Running) {
            entry.busy += 1;
        }
        let unchecked;
        let check = match checks.get(i) {
            Some(check) => check.as_ref(),
            None => {
                unchecked = DeviceCheck {
                    config_error: Some("the device dictionary was not checked".to_owned()),
                    ..DeviceCheck::default()
                };
                &unchecked
            }
        };
        let device_type = raw.device_types.iter().find(|t| t.name == d.device_type);
        let mut health_check = HealthCheckState::None;
        if let Some(dt) = device_type
            && !dt.disable_health_check
        {
            if let Some(err) = &check.health_check_error {
                tracing::warn!(device = %d.hostname, error = %err, "reading the health check");
            }
            if let Some(definition) = &check.health_check {
                health_checks.insert(d.hostname.clone(), definition.clone());
                health_check = health_check_due(
                    dt.health_frequency,
                    dt.health_denominator,
                    slot.last_health_check_end,
                    slot.jobs_since_health_check,
                    now,
                );
            }
        }
        let access = Access::from_owners(
            d.is_public,
            d.owner_user
                .as_ref()
                .and_then(|u| people.user_ids.get(u).copied()),
            d.owner_group
                .as_ref()
                .and_then(|g| people.group_ids.get(g).copied()),
        );
        devices.push(Device {
            hostname: d.hostname.clone(),
            device_type: d.device_type.clone(),
            state: d.state,
            health: d.health,
            tags: d.tags.iter().cloned().collect(),
            access,
            worker,
            health_check,
            config_error: check.config_error.clone(),
        });
    }
    let jobs = raw.queued.iter().map(|j| queued_job(j, people)).collect();
    let mut workers: Vec<Worker> = workers.into_values().collect();
    workers.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    Converted {
        snapshot: Snapshot {
            jobs,
            devices,
            workers,
            // LAVA tries devices of a type in random order; a fresh seed each pass is as fair.
            device_order: DeviceOrder::Seeded(now.unix_timestamp_nanos() as u64),
        },
        health_checks,
    }
}

/// Applies the stored workers' health and job limit to the snapshot's workers: devices of a
/// worker in Maintenance or Retired get no new jobs. Every worker runs on this box, so its
/// Online/Offline state is informational here (the scheduler only runs while the box does).
/// Devices without a worker belong to the appliance, stored under `instance`.
pub fn apply_workers(snapshot: &mut Snapshot, stored: &[crate::store::Worker], instance: &str) {
    for w in &mut snapshot.workers {
        let name = if w.hostname == LOCAL_WORKER && !stored.iter().any(|s| s.hostname == w.hostname)
        {
            instance
        } else {
            w.hostname.as_str()
        };
        if let Some(row) = stored.iter().find(|s| s.hostname == name) {
            w.online = row.health.takes_jobs();
            w.job_limit = row.job_limit;
        }
    }
}

/// LAVA's health-check frequency rule: due when there was none yet, or `frequency` hours
/// have passed since the last one, or `frequency` jobs ran since.
pub fn health_check_due(
    frequency: u32,
    denominator: HealthDenominator,
    last_end: Option<OffsetDateTime>,
    jobs_since: u64,
    now: OffsetDateTime,
) -> HealthCheckState {
    let Some(last_end) = last_end else {
        return HealthCheckState::Due;
    };
    let due = match denominator {
        HealthDenominator::Hours => now - last_end >= time::Duration::hours(i64::from(frequency)),
        HealthDenominator::Jobs => jobs_since >= u64::from(frequency),
    };
    if due {
        HealthCheckState::Due
    } else {
        HealthCheckState::NotDue
    }
}

/// One queued job as [`plan()`](super::plan()) sees it.
fn queued_job(j: &store::QueuedJob, people: &People) -> QueuedJob {
    let submitter = people
        .submitters
        .get(&j.submitter)
        .cloned()
        .unwrap_or(Submitter {
            // A submitter that vanished: only public devices will take the job.
            user: UserId(-1),
            groups: BTreeSet::new(),
            is_superuser: false,
        });
    let kind = match (&j.target_group, &j.sub_id) {
        (Some(group), Some(sub_id)) => {
            let (role, group_size, dynamic_connection) = people
                .multinode
                .get(&j.id)
                .cloned()
                .unwrap_or((String::new(), 0, false));
            JobKind::MultiNode(GroupMember {
                target_group: group.clone(),
                role,
                sub_id: sub_id
                    .rsplit_once('.')
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(0),
                group_size,
                dynamic_connection,
            })
        }
        _ => JobKind::Single,
    };
    QueuedJob {
        id: j.id,
        priority: j.priority,
        submit_time: j.submit_time,
        device_type: j.requested_device_type.clone(),
        tags: j.tags.iter().cloned().collect(),
        submitter,
        kind,
        queue_deadline: j.queue_timeout.map(|t| j.submit_time + t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devicetype::Templates;

    const QEMU: &str = "{% extends 'qemu.jinja2' %}\n{% set no_kvm = True %}\n";

    #[test]
    fn health_check_frequency() {
        let now = OffsetDateTime::now_utc();
        let hours = HealthDenominator::Hours;
        assert_eq!(
            health_check_due(24, hours, None, 0, now),
            HealthCheckState::Due
        );
        let recent = Some(now - time::Duration::hours(1));
        assert_eq!(
            health_check_due(24, hours, recent, 9, now),
            HealthCheckState::NotDue
        );
        let old = Some(now - time::Duration::hours(25));
        assert_eq!(
            health_check_due(24, hours, old, 0, now),
            HealthCheckState::Due
        );
        let jobs = HealthDenominator::Jobs;
        assert_eq!(
            health_check_due(3, jobs, recent, 2, now),
            HealthCheckState::NotDue
        );
        assert_eq!(
            health_check_due(3, jobs, recent, 3, now),
            HealthCheckState::Due
        );
    }

    #[test]
    fn invalid_dictionaries_are_config_errors() {
        let templates = Templates::builtin();
        let check_device = |dictionary: Option<&str>| {
            let check = templates.check_device(dictionary);
            (check.config_error, check.template)
        };
        assert_eq!(check_device(Some(QEMU)), (None, Some("qemu".into())));
        assert!(check_device(None).0.is_some());
        assert!(check_device(Some("{% set x = 1 %}")).0.is_some());
        let (err, template) = check_device(Some("{% extends 'nope.jinja2' %}"));
        assert!(err.is_some());
        assert_eq!(template.as_deref(), Some("nope"));
    }

    #[test]
    fn multinode_roles() {
        let def = "protocols:\n  lava-multinode:\n    role: client\n    host_role: host\n";
        assert_eq!(multinode_role(def), ("client".into(), true));
        assert_eq!(multinode_role("job_name: x"), (String::new(), false));
        assert_eq!(multinode_role(": :"), (String::new(), false));
    }

    #[test]
    fn workers_in_maintenance_take_no_jobs() {
        use crate::store::{Worker as Stored, WorkerHealth, WorkerState};
        let stored = |name: &str, health, job_limit| Stored {
            hostname: name.to_owned(),
            description: None,
            state: WorkerState::Online,
            health,
            last_ping: None,
            job_limit,
            version: None,
            config: None,
            env: None,
            env_dut: None,
        };
        let worker = |name: &str| Worker {
            hostname: name.to_owned(),
            online: true,
            job_limit: 0,
            busy: 0,
        };
        let mut snapshot = Snapshot {
            workers: vec![
                worker("a"),
                worker("b"),
                worker(LOCAL_WORKER),
                worker("unknown"),
            ],
            ..Snapshot::default()
        };
        let rows = [
            stored("a", WorkerHealth::Maintenance, 0),
            stored("b", WorkerHealth::Active, 2),
            stored("box", WorkerHealth::Retired, 0),
        ];
        apply_workers(&mut snapshot, &rows, "box");
        let online: Vec<(&str, bool, u32)> = snapshot
            .workers
            .iter()
            .map(|w| (w.hostname.as_str(), w.online, w.job_limit))
            .collect();
        assert_eq!(
            online,
            vec![
                ("a", false, 0),
                ("b", true, 2),
                // Devices without a worker are the appliance's, stored under the instance.
                (LOCAL_WORKER, false, 0),
                // No row: as before workers were stored, it takes jobs.
                ("unknown", true, 0),
            ]
        );
    }
}
