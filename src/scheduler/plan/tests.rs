//! Tests of [`plan()`](super::plan): examples of each rule and proptests of its invariants.

use super::*;
use crate::model::{GroupId, UserId};
use crate::scheduler::{Access, GroupMember, Submitter, Worker};
use proptest::prelude::*;
use time::Duration;

fn t(min: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::minutes(min)
}

fn dev(name: &str, ty: &str) -> Device {
    Device {
        hostname: name.to_owned(),
        device_type: ty.to_owned(),
        state: DeviceState::Idle,
        health: DeviceHealth::Good,
        tags: BTreeSet::new(),
        access: Access::Public,
        worker: "w1".to_owned(),
        health_check: HealthCheckState::None,
        config_error: None,
    }
}

fn user(id: i64) -> Submitter {
    Submitter {
        user: UserId(id),
        groups: BTreeSet::new(),
        is_superuser: false,
    }
}

fn job(id: i64, ty: &str) -> QueuedJob {
    QueuedJob {
        id: JobId(id),
        priority: Priority::DEFAULT,
        submit_time: t(id),
        device_type: Some(ty.to_owned()),
        tags: BTreeSet::new(),
        submitter: user(1),
        kind: JobKind::Single,
        queue_deadline: None,
    }
}

fn member(id: i64, ty: Option<&str>, group: &str, sub_id: u32, size: u32) -> QueuedJob {
    QueuedJob {
        device_type: ty.map(str::to_owned),
        submit_time: t(0),
        kind: JobKind::MultiNode(GroupMember {
            target_group: group.to_owned(),
            role: ty.unwrap_or("guest").to_owned(),
            sub_id,
            group_size: size,
            dynamic_connection: ty.is_none(),
        }),
        ..job(id, "")
    }
}

fn worker(name: &str, online: bool, limit: u32, busy: u32) -> Worker {
    Worker {
        hostname: name.to_owned(),
        online,
        job_limit: limit,
        busy,
    }
}

fn snap(jobs: Vec<QueuedJob>, devices: Vec<Device>) -> Snapshot {
    Snapshot {
        jobs,
        devices,
        workers: vec![worker("w1", true, 0, 0)],
        device_order: DeviceOrder::ByName,
    }
}

fn tags(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn assign(job: i64, device: &str) -> Decision {
    Decision::Assign {
        job: JobId(job),
        device: device.to_owned(),
    }
}

/// Device condition matrix: every health × state × worker × health-check × config
/// combination, one matching job.
#[test]
fn device_condition_table() {
    let healths = DeviceHealth::ALL;
    let states = DeviceState::ALL;
    let hcs = [
        HealthCheckState::None,
        HealthCheckState::NotDue,
        HealthCheckState::Due,
    ];
    let mut cases = 0;
    for &health in healths {
        for &state in states {
            for online in [true, false] {
                for hc in hcs {
                    for valid in [true, false] {
                        let mut d = dev("d1", "bbb");
                        d.health = health;
                        d.state = state;
                        d.health_check = hc;
                        d.config_error = (!valid).then(|| "no template".to_owned());
                        let mut s = snap(vec![job(1, "bbb")], vec![d]);
                        s.workers[0].online = online;
                        use DeviceHealth::*;
                        let expected = if state != DeviceState::Idle || !online {
                            vec![]
                        } else if !valid {
                            match health {
                                Good | Unknown | Looping => vec![Decision::MarkBad {
                                    device: "d1".into(),
                                    reason: "Invalid device configuration: no template".into(),
                                }],
                                _ => vec![],
                            }
                        } else {
                            match (health, hc) {
                                (
                                    Unknown | Looping,
                                    HealthCheckState::NotDue | HealthCheckState::Due,
                                )
                                | (Good, HealthCheckState::Due) => {
                                    vec![Decision::HealthCheck {
                                        device: "d1".into(),
                                    }]
                                }
                                (Good, _) | (Unknown, HealthCheckState::None) => {
                                    vec![assign(1, "d1")]
                                }
                                _ => vec![],
                            }
                        };
                        assert_eq!(
                            plan(&s, t(0)),
                            expected,
                            "{health:?} {state:?} online={online} {hc:?} valid={valid}"
                        );
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 216);
}

/// Type, tags and access.
#[test]
fn job_device_match_table() {
    struct Case {
        job_type: &'static str,
        job_tags: &'static [&'static str],
        dev_tags: &'static [&'static str],
        access: Access,
        submitter: Submitter,
        ok: bool,
    }
    let restricted_user = Access::Restricted {
        users: [UserId(7)].into(),
        groups: BTreeSet::new(),
    };
    let restricted_group = Access::Restricted {
        users: BTreeSet::new(),
        groups: [GroupId(3)].into(),
    };
    let in_group = Submitter {
        groups: [GroupId(3), GroupId(9)].into(),
        ..user(1)
    };
    let superuser = Submitter {
        is_superuser: true,
        ..user(1)
    };
    let cases = [
        Case {
            job_type: "bbb",
            job_tags: &[],
            dev_tags: &[],
            access: Access::Public,
            submitter: user(1),
            ok: true,
        },
        Case {
            job_type: "qemu",
            job_tags: &[],
            dev_tags: &[],
            access: Access::Public,
            submitter: user(1),
            ok: false,
        },
        Case {
            job_type: "bbb",
            job_tags: &["usb"],
            dev_tags: &[],
            access: Access::Public,
            submitter: user(1),
            ok: false,
        },
        Case {
            job_type: "bbb",
            job_tags: &["usb"],
            dev_tags: &["usb"],
            access: Access::Public,
            submitter: user(1),
            ok: true,
        },
        Case {
            job_type: "bbb",
            job_tags: &["usb"],
            dev_tags: &["usb", "hdmi"],
            access: Access::Public,
            submitter: user(1),
            ok: true,
        },
        Case {
            job_type: "bbb",
            job_tags: &["usb", "hdmi"],
            dev_tags: &["usb"],
            access: Access::Public,
            submitter: user(1),
            ok: false,
        },
        Case {
            job_type: "bbb",
            job_tags: &[],
            dev_tags: &["usb"],
            access: Access::Public,
            submitter: user(1),
            ok: true,
        },
        Case {
            job_type: "bbb",
            job_tags: &["USB"],
            dev_tags: &["usb"],
            access: Access::Public,
            submitter: user(1),
            ok: false,
        },
        Case {
            job_type: "bbb",
            job_tags: &[],
            dev_tags: &[],
            access: restricted_user.clone(),
            submitter: user(1),
            ok: false,
        },
        Case {
            job_type: "bbb",
            job_tags: &[],
            dev_tags: &[],
            access: restricted_user.clone(),
            submitter: user(7),
            ok: true,
        },
        Case {
            job_type: "bbb",
            job_tags: &[],
            dev_tags: &[],
            access: restricted_user,
            submitter: superuser.clone(),
            ok: true,
        },
        Case {
            job_type: "bbb",
            job_tags: &[],
            dev_tags: &[],
            access: restricted_group.clone(),
            submitter: user(1),
            ok: false,
        },
        Case {
            job_type: "bbb",
            job_tags: &[],
            dev_tags: &[],
            access: restricted_group.clone(),
            submitter: in_group.clone(),
            ok: true,
        },
        Case {
            job_type: "bbb",
            job_tags: &["usb"],
            dev_tags: &[],
            access: restricted_group,
            submitter: in_group,
            ok: false,
        },
        Case {
            job_type: "bbb",
            job_tags: &[],
            dev_tags: &[],
            access: Access::Public,
            submitter: superuser,
            ok: true,
        },
    ];
    for (n, c) in cases.into_iter().enumerate() {
        let mut d = dev("d1", "bbb");
        d.tags = tags(c.dev_tags);
        d.access = c.access;
        let mut j = job(1, c.job_type);
        j.tags = tags(c.job_tags);
        j.submitter = c.submitter;
        let expected = if c.ok { vec![assign(1, "d1")] } else { vec![] };
        assert_eq!(plan(&snap(vec![j], vec![d]), t(0)), expected, "case {n}");
    }
}

/// Two jobs, one device: the winner follows priority, submit time, then id.
#[test]
fn ordering_table() {
    let mut cases = 0;
    for p1 in [0i64, 50, 100] {
        for p2 in [0i64, 50, 100] {
            for s1 in [0i64, 1, 2] {
                for s2 in [0i64, 1, 2] {
                    for (id1, id2) in [(1, 2), (2, 1)] {
                        let mut a = job(id1, "bbb");
                        a.priority = Priority::new(p1).unwrap_or_default();
                        a.submit_time = t(s1);
                        let mut b = job(id2, "bbb");
                        b.priority = Priority::new(p2).unwrap_or_default();
                        b.submit_time = t(s2);
                        let winner = if p1 != p2 {
                            if p1 > p2 { id1 } else { id2 }
                        } else if s1 != s2 {
                            if s1 < s2 { id1 } else { id2 }
                        } else {
                            id1.min(id2)
                        };
                        let s = snap(vec![a, b], vec![dev("d1", "bbb")]);
                        assert_eq!(plan(&s, t(0)), vec![assign(winner, "d1")]);
                        cases += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cases, 162);
}

#[test]
fn one_job_per_device_and_device_order() {
    let s = snap(
        vec![job(1, "bbb"), job(2, "bbb"), job(3, "bbb")],
        vec![dev("d2", "bbb"), dev("d1", "bbb")],
    );
    assert_eq!(plan(&s, t(0)), vec![assign(1, "d1"), assign(2, "d2")]);
    let mut seeded = s.clone();
    seeded.device_order = DeviceOrder::Seeded(42);
    let a = plan(&seeded, t(0));
    assert_eq!(a, plan(&seeded, t(0)));
    let mut devices: Vec<String> = a
        .iter()
        .filter_map(|d| match d {
            Decision::Assign { device, .. } => Some(device.clone()),
            _ => None,
        })
        .collect();
    devices.sort();
    assert_eq!(devices, ["d1", "d2"]);
    // Some seed puts d2 first.
    let flips = (0..64u64).any(|seed| {
        let mut s2 = s.clone();
        s2.device_order = DeviceOrder::Seeded(seed);
        plan(&s2, t(0)).first() == Some(&assign(1, "d2"))
    });
    assert!(flips);
}

#[test]
fn worker_limits_and_missing_workers() {
    let mut d3 = dev("d3", "bbb");
    d3.worker = "nowhere".into();
    let mut s = snap(
        vec![job(1, "bbb"), job(2, "bbb"), job(3, "bbb")],
        vec![dev("d1", "bbb"), dev("d2", "bbb"), d3],
    );
    s.workers[0] = worker("w1", true, 2, 1);
    assert_eq!(plan(&s, t(0)), vec![assign(1, "d1")]);
    s.workers[0] = worker("w1", true, 2, 2);
    assert_eq!(plan(&s, t(0)), vec![]);
    s.workers[0] = worker("w1", true, 0, 9);
    assert_eq!(plan(&s, t(0)), vec![assign(1, "d1"), assign(2, "d2")]);
}

#[test]
fn health_checks_come_first() {
    let mut d1 = dev("d1", "bbb");
    d1.health = DeviceHealth::Unknown;
    d1.health_check = HealthCheckState::NotDue;
    let mut d2 = dev("d2", "bbb");
    d2.health_check = HealthCheckState::NotDue;
    let mut high = job(1, "bbb");
    high.priority = Priority::new(100).unwrap_or_default();
    let s = snap(vec![high, job(2, "bbb")], vec![d1.clone(), d2.clone()]);
    assert_eq!(
        plan(&s, t(0)),
        vec![
            Decision::HealthCheck {
                device: "d1".into()
            },
            assign(1, "d2")
        ]
    );
    // A queued health check wins over user jobs and replaces a new one.
    let mut hc = job(3, "bbb");
    hc.kind = JobKind::HealthCheck {
        device: "d1".into(),
    };
    hc.priority = Priority::new(0).unwrap_or_default();
    let mut hc2 = job(4, "bbb");
    hc2.kind = JobKind::HealthCheck {
        device: "d2".into(),
    };
    let s = snap(vec![job(1, "bbb"), hc, hc2], vec![d1, d2]);
    // Queued health checks are taken in queue order (job 4 has the higher priority).
    assert_eq!(plan(&s, t(0)), vec![assign(4, "d2"), assign(3, "d1")]);
    // Looping devices only ever run health checks; Bad ones nothing.
    let mut looping = dev("d1", "bbb");
    looping.health = DeviceHealth::Looping;
    let mut hc = job(3, "bbb");
    hc.kind = JobKind::HealthCheck {
        device: "d1".into(),
    };
    let s = snap(vec![job(1, "bbb"), hc.clone()], vec![looping]);
    assert_eq!(plan(&s, t(0)), vec![assign(3, "d1")]);
    let mut bad = dev("d1", "bbb");
    bad.health = DeviceHealth::Bad;
    assert_eq!(
        plan(&snap(vec![job(1, "bbb"), hc], vec![bad]), t(0)),
        vec![]
    );
}

#[test]
fn health_check_respects_worker_limit() {
    let mut d1 = dev("d1", "bbb");
    d1.health_check = HealthCheckState::Due;
    let mut d2 = dev("d2", "bbb");
    d2.health_check = HealthCheckState::Due;
    let mut s = snap(vec![job(1, "bbb")], vec![d1, d2]);
    s.workers[0] = worker("w1", true, 1, 0);
    assert_eq!(
        plan(&s, t(0)),
        vec![Decision::HealthCheck {
            device: "d1".into()
        }]
    );
}

fn group(assignments: &[(i64, &str)], dynamic: &[i64]) -> Decision {
    Decision::AssignGroup {
        target_group: "g".into(),
        assignments: assignments
            .iter()
            .map(|(j, d)| (JobId(*j), (*d).to_owned()))
            .collect(),
        dynamic: dynamic.iter().map(|j| JobId(*j)).collect(),
    }
}

#[test]
fn multinode_all_or_nothing() {
    let members = vec![
        member(10, Some("bbb"), "g", 0, 2),
        member(11, Some("qemu"), "g", 1, 2),
    ];
    // Both placeable.
    let s = snap(members.clone(), vec![dev("b1", "bbb"), dev("q1", "qemu")]);
    assert_eq!(plan(&s, t(0)), vec![group(&[(10, "b1"), (11, "q1")], &[])]);
    // No qemu device at all: nothing, nothing held, lower jobs run.
    let s = snap(
        [members.clone(), vec![job(1, "bbb")]].concat(),
        vec![dev("b1", "bbb")],
    );
    assert_eq!(plan(&s, t(0)), vec![assign(1, "b1")]);
    // The qemu device is busy: the group waits and holds b1 against the lower job.
    let mut busy = dev("q1", "qemu");
    busy.state = DeviceState::Running;
    let mut low = job(1, "bbb");
    low.priority = Priority::new(10).unwrap_or_default();
    let s = snap(
        [members.clone(), vec![low]].concat(),
        vec![dev("b1", "bbb"), busy],
    );
    assert_eq!(
        plan(&s, t(0)),
        vec![Decision::Hold {
            target_group: "g".into(),
            devices: vec!["b1".into()]
        }]
    );
    // A higher-priority single job still goes first; the group then holds q1 for later.
    let mut high = job(1, "bbb");
    high.priority = Priority::new(90).unwrap_or_default();
    let s = snap(
        [members.clone(), vec![high]].concat(),
        vec![dev("b1", "bbb"), dev("q1", "qemu")],
    );
    assert_eq!(
        plan(&s, t(0)),
        vec![
            assign(1, "b1"),
            Decision::Hold {
                target_group: "g".into(),
                devices: vec!["q1".into()]
            }
        ]
    );
    // Incomplete group (a sub-job missing from the queue) waits without holding.
    let s = snap(
        vec![members[0].clone(), job(1, "bbb")],
        vec![dev("b1", "bbb")],
    );
    assert_eq!(plan(&s, t(0)), vec![assign(1, "b1")]);
}

#[test]
fn multinode_matching_and_dynamic_roles() {
    // Sub-job 0 can use b1 or b2 (tag-free), sub-job 1 needs the tagged b1: a greedy
    // choice of b1 for sub-job 0 would fail; the matching moves it to b2.
    let mut b1 = dev("b1", "bbb");
    b1.tags = tags(&["usb"]);
    let mut m1 = member(11, Some("bbb"), "g", 1, 3);
    m1.tags = tags(&["usb"]);
    let s = snap(
        vec![
            member(10, Some("bbb"), "g", 0, 3),
            m1,
            member(12, None, "g", 2, 3),
        ],
        vec![b1, dev("b2", "bbb")],
    );
    assert_eq!(
        plan(&s, t(0)),
        vec![group(&[(10, "b2"), (11, "b1")], &[12])]
    );
    // Worker limits apply across the group.
    let mut c1 = dev("c1", "bbb");
    c1.worker = "w2".into();
    let mut s = snap(
        vec![
            member(10, Some("bbb"), "g", 0, 2),
            member(11, Some("bbb"), "g", 1, 2),
        ],
        vec![dev("b1", "bbb"), dev("b2", "bbb"), c1],
    );
    s.workers = vec![worker("w1", true, 1, 0), worker("w2", true, 0, 0)];
    assert_eq!(plan(&s, t(0)), vec![group(&[(10, "c1"), (11, "b1")], &[])]);
}

#[test]
fn queue_timeouts() {
    let mut expired = job(1, "bbb");
    expired.queue_deadline = Some(t(5));
    let mut fresh = job(2, "qemu");
    fresh.queue_deadline = Some(t(100));
    let mut placed = job(3, "bbb");
    placed.priority = Priority::new(100).unwrap_or_default();
    placed.queue_deadline = Some(t(1));
    let mut g0 = member(10, Some("qemu"), "g", 0, 2);
    g0.queue_deadline = Some(t(5));
    let g1 = member(11, Some("qemu"), "g", 1, 2);
    let s = snap(vec![expired, fresh, placed, g0, g1], vec![dev("b1", "bbb")]);
    assert_eq!(
        plan(&s, t(10)),
        vec![
            assign(3, "b1"),
            Decision::CancelQueueTimeout(CancelTarget::Group {
                target_group: "g".into(),
                jobs: vec![JobId(10), JobId(11)]
            }),
            Decision::CancelQueueTimeout(CancelTarget::Job(JobId(1))),
        ]
    );
    // Exactly at the deadline is not yet expired.
    let mut j = job(1, "qemu");
    j.queue_deadline = Some(t(10));
    assert_eq!(plan(&snap(vec![j], vec![]), t(10)), vec![]);
}

// ---- properties ----

fn arb_device(i: usize) -> impl Strategy<Value = Device> {
    (
        prop::sample::select(vec!["a", "b"]),
        prop::sample::select(vec![
            DeviceState::Idle,
            DeviceState::Idle,
            DeviceState::Idle,
            DeviceState::Reserved,
            DeviceState::Running,
        ]),
        prop::sample::select(DeviceHealth::ALL.to_vec()),
        prop::collection::btree_set(prop::sample::select(vec!["x", "y"]), 0..=2),
        prop::sample::select(vec!["w1", "w1", "w2", "w3", "w4"]),
        prop::sample::select(vec![
            HealthCheckState::None,
            HealthCheckState::None,
            HealthCheckState::NotDue,
            HealthCheckState::Due,
        ]),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            move |(ty, state, health, tg, w, hc, bad_config, restricted)| Device {
                hostname: format!("dev{i:02}"),
                device_type: ty.to_owned(),
                state,
                health,
                tags: tg.into_iter().map(str::to_owned).collect(),
                access: if restricted {
                    Access::Restricted {
                        users: [UserId(1)].into(),
                        groups: BTreeSet::new(),
                    }
                } else {
                    Access::Public
                },
                worker: w.to_owned(),
                health_check: hc,
                config_error: bad_config.then(|| "broken".to_owned()),
            },
        )
}

#[derive(Debug, Clone)]
struct JobSpec {
    ty: Option<&'static str>,
    tags: BTreeSet<String>,
    priority: i64,
    submit: i64,
    user: i64,
    deadline: Option<i64>,
}

fn arb_spec() -> impl Strategy<Value = JobSpec> {
    (
        prop::sample::select(vec![Some("a"), Some("a"), Some("b"), None]),
        prop::collection::btree_set(prop::sample::select(vec!["x", "y"]), 0..=1),
        prop::sample::select(vec![0i64, 50, 100]),
        0i64..4,
        1i64..=2,
        prop::option::weighted(0.2, 0i64..20),
    )
        .prop_map(|(ty, tg, priority, submit, user, deadline)| JobSpec {
            ty,
            tags: tg.into_iter().map(str::to_owned).collect(),
            priority,
            submit,
            user,
            deadline,
        })
}

/// Units: 0 = single, 1..=3 = group of that size, 4 = health check on a device index.
fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    let devices = (0usize..8).prop_flat_map(|n| (0..n).map(arb_device).collect::<Vec<_>>());
    let units = prop::collection::vec(
        (
            0u8..5,
            prop::collection::vec(arb_spec(), 3),
            0usize..8,
            prop::bool::weighted(0.1),
        ),
        0..8,
    );
    let workers = (prop::bool::ANY, 0u32..3, 0u32..3);
    let order = prop::option::of(any::<u64>());
    (devices, units, workers, order).prop_map(
        |(devices, units, (w2_online, w3_limit, w3_busy), order)| {
            let mut jobs = Vec::new();
            let mut next = 1i64;
            for (u, (kind, specs, target, drop_member)) in units.into_iter().enumerate() {
                let mk = |spec: &JobSpec, id: i64, kind: JobKind| QueuedJob {
                    id: JobId(id),
                    priority: Priority::new(spec.priority).unwrap_or_default(),
                    submit_time: t(spec.submit),
                    device_type: spec.ty.map(str::to_owned),
                    tags: spec.tags.clone(),
                    submitter: user(spec.user),
                    kind,
                    queue_deadline: spec.deadline.map(t),
                };
                match kind {
                    0 => {
                        let mut s = specs[0].clone();
                        s.ty = s.ty.or(Some("a"));
                        jobs.push(mk(&s, next, JobKind::Single));
                        next += 1;
                    }
                    4 => {
                        let name = format!("dev{:02}", target);
                        jobs.push(mk(&specs[0], next, JobKind::HealthCheck { device: name }));
                        next += 1;
                    }
                    size => {
                        let size = u32::from(size);
                        let head = &specs[0];
                        for sub in 0..size {
                            if drop_member && sub == 0 && size > 1 {
                                continue;
                            }
                            let spec = &specs[sub as usize];
                            let mut s = head.clone();
                            s.ty = if sub == 0 {
                                spec.ty.or(Some("a"))
                            } else {
                                spec.ty
                            };
                            s.tags = spec.tags.clone();
                            let m = GroupMember {
                                target_group: format!("group{u}"),
                                role: s.ty.unwrap_or("guest").to_owned(),
                                sub_id: sub,
                                group_size: size,
                                dynamic_connection: s.ty.is_none(),
                            };
                            jobs.push(mk(&s, next, JobKind::MultiNode(m)));
                            next += 1;
                        }
                    }
                }
            }
            Snapshot {
                jobs,
                devices,
                workers: vec![
                    worker("w1", true, 0, 0),
                    worker("w2", w2_online, 0, 0),
                    worker("w3", true, w3_limit, w3_busy),
                ],
                device_order: order.map_or(DeviceOrder::ByName, DeviceOrder::Seeded),
            }
        },
    )
}

/// (job → device) for every placement; health checks as job None.
fn placements(decisions: &[Decision]) -> Vec<(Option<JobId>, String)> {
    let mut out = Vec::new();
    for d in decisions {
        match d {
            Decision::Assign { job, device } => out.push((Some(*job), device.clone())),
            Decision::AssignGroup { assignments, .. } => {
                out.extend(assignments.iter().map(|(j, d)| (Some(*j), d.clone())));
            }
            Decision::HealthCheck { device } => out.push((None, device.clone())),
            _ => {}
        }
    }
    out
}

fn used_devices(decisions: &[Decision]) -> Vec<String> {
    let mut out = Vec::new();
    for d in decisions {
        match d {
            Decision::Assign { device, .. }
            | Decision::HealthCheck { device }
            | Decision::MarkBad { device, .. } => {
                out.push(device.clone());
            }
            Decision::AssignGroup { assignments, .. } => {
                out.extend(assignments.iter().map(|(_, d)| d.clone()))
            }
            Decision::Hold { devices, .. } => out.extend(devices.iter().cloned()),
            Decision::CancelQueueTimeout(_) => {}
        }
    }
    out
}

fn worker_online(s: &Snapshot, d: &Device) -> bool {
    s.workers.iter().any(|w| w.hostname == d.worker && w.online)
}

fn statically_eligible(s: &Snapshot, j: &QueuedJob, d: &Device) -> bool {
    d.state == DeviceState::Idle
        && worker_online(s, d)
        && d.config_error.is_none()
        && (d.health == DeviceHealth::Good && d.health_check != HealthCheckState::Due
            || d.health == DeviceHealth::Unknown && d.health_check == HealthCheckState::None)
        && j.device_type.as_deref() == Some(d.device_type.as_str())
        && j.tags.is_subset(&d.tags)
        && d.access.allows(&j.submitter)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn no_device_double_booked(s in arb_snapshot()) {
        let used = used_devices(&plan(&s, t(10)));
        let set: BTreeSet<&String> = used.iter().collect();
        prop_assert_eq!(set.len(), used.len(), "{:?}", used);
    }

    #[test]
    fn placements_are_valid(s in arb_snapshot()) {
        let decisions = plan(&s, t(10));
        let mut seen_jobs = BTreeSet::new();
        for (job, device) in placements(&decisions) {
            let d = s.devices.iter().find(|d| d.hostname == device);
            prop_assert!(d.is_some());
            let Some(d) = d else { continue };
            prop_assert_eq!(d.state, DeviceState::Idle);
            prop_assert!(worker_online(&s, d));
            prop_assert!(d.config_error.is_none());
            prop_assert!(!matches!(d.health, DeviceHealth::Bad | DeviceHealth::Maintenance | DeviceHealth::Retired));
            let Some(job) = job else {
                prop_assert!(d.health_check != HealthCheckState::None);
                continue;
            };
            prop_assert!(seen_jobs.insert(job), "job placed twice");
            let j = s.jobs.iter().find(|j| j.id == job);
            let Some(j) = j else { prop_assert!(false, "unknown job"); continue };
            if let JobKind::HealthCheck { device: target } = &j.kind {
                prop_assert_eq!(target, &device);
            } else {
                prop_assert!(statically_eligible(&s, j, d), "{:?} on {:?}", j, d);
            }
        }
        // Worker limits.
        for w in &s.workers {
            let n = placements(&decisions)
                .iter()
                .filter(|(_, dev)| s.devices.iter().any(|d| &d.hostname == dev && d.worker == w.hostname))
                .count() as u32;
            if w.job_limit > 0 {
                prop_assert!(n == 0 || w.busy + n <= w.job_limit);
            }
        }
    }

    #[test]
    fn groups_all_or_nothing(s in arb_snapshot()) {
        let decisions = plan(&s, t(10));
        let placed: BTreeSet<JobId> = placements(&decisions).into_iter().filter_map(|(j, _)| j).collect();
        for d in &decisions {
            if let Decision::AssignGroup { target_group, assignments, dynamic } = d {
                let members: BTreeSet<JobId> = s.jobs.iter()
                    .filter(|j| matches!(&j.kind, JobKind::MultiNode(m) if &m.target_group == target_group))
                    .map(|j| j.id).collect();
                let got: BTreeSet<JobId> = assignments.iter().map(|(j, _)| *j).chain(dynamic.iter().copied()).collect();
                prop_assert_eq!(got, members);
            }
        }
        // No sub-job is ever placed on its own.
        for j in &s.jobs {
            if let JobKind::MultiNode(m) = &j.kind {
                let in_group_decision = decisions.iter().any(|d| matches!(d, Decision::AssignGroup { target_group, .. } if *target_group == m.target_group));
                prop_assert_eq!(placed.contains(&j.id) || (m.dynamic_connection && in_group_decision), in_group_decision);
            }
        }
    }

    #[test]
    fn deterministic_and_input_order_free(s in arb_snapshot(), rot in 0usize..8) {
        let a = plan(&s, t(10));
        prop_assert_eq!(&a, &plan(&s, t(10)));
        let mut s2 = s.clone();
        s2.jobs.reverse();
        s2.devices.reverse();
        if !s2.jobs.is_empty() {
            let r = rot % s2.jobs.len();
            s2.jobs.rotate_left(r);
        }
        s2.workers.reverse();
        prop_assert_eq!(a, plan(&s2, t(10)));
    }

    /// A lower-ordered job never takes a device a higher-ordered single job could use.
    #[test]
    fn no_starvation_by_lower_jobs(s in arb_snapshot()) {
        let decisions = plan(&s, t(10));
        let placed: BTreeSet<JobId> = placements(&decisions).into_iter().filter_map(|(j, _)| j).collect();
        for (job, device) in placements(&decisions) {
            let (Some(job), Some(d)) = (job, s.devices.iter().find(|d| d.hostname == device)) else { continue };
            let Some(low) = s.jobs.iter().find(|j| j.id == job) else { continue };
            // Health checks go before all user jobs by design.
            if matches!(low.kind, JobKind::HealthCheck { .. }) {
                continue;
            }
            for high in &s.jobs {
                if high.kind == JobKind::Single && !placed.contains(&high.id) && queue_key(high) < queue_key(low) {
                    prop_assert!(!statically_eligible(&s, high, d), "{:?} starved by {:?} on {}", high.id, low.id, device);
                }
            }
        }
    }

    /// A single job left waiting had no usable device: every device eligible for it is
    /// used by this plan or sits on a worker without spare slots.
    #[test]
    fn waiting_single_jobs_had_no_device(s in arb_snapshot()) {
        let decisions = plan(&s, t(10));
        let placed: BTreeSet<JobId> = placements(&decisions).into_iter().filter_map(|(j, _)| j).collect();
        let used: BTreeSet<String> = used_devices(&decisions).into_iter().collect();
        for j in s.jobs.iter().filter(|j| j.kind == JobKind::Single && !placed.contains(&j.id)) {
            for d in s.devices.iter().filter(|d| statically_eligible(&s, j, d)) {
                let Some(w) = s.workers.iter().find(|w| w.hostname == d.worker) else { continue };
                let on_worker = placements(&decisions).iter().filter(|(_, h)| s.devices.iter().any(|x| &x.hostname == h && x.worker == w.hostname)).count() as u32
                    + decisions.iter().map(|dec| match dec {
                        Decision::Hold { devices, .. } => devices.iter().filter(|h| s.devices.iter().any(|x| &x.hostname == *h && x.worker == w.hostname)).count() as u32,
                        _ => 0,
                    }).sum::<u32>();
                let full = w.job_limit > 0 && w.busy + on_worker >= w.job_limit;
                prop_assert!(used.contains(&d.hostname) || full, "{:?} waits while {} is free", j.id, d.hostname);
            }
        }
    }

    /// Invalid free devices are marked Bad; free devices needing a health check get one
    /// (new or queued) when their worker has room, and nothing else.
    #[test]
    fn mark_bad_and_health_checks(s in arb_snapshot()) {
        let decisions = plan(&s, t(10));
        for d in &s.devices {
            let free = d.state == DeviceState::Idle && worker_online(&s, d);
            let bad = decisions.iter().any(|x| matches!(x, Decision::MarkBad { device, .. } if *device == d.hostname));
            let schedulable_health = matches!(d.health, DeviceHealth::Good | DeviceHealth::Unknown | DeviceHealth::Looping);
            prop_assert_eq!(bad, free && d.config_error.is_some() && schedulable_health, "{:?}", d);
            let new_hc = decisions.iter().any(|x| matches!(x, Decision::HealthCheck { device } if *device == d.hostname));
            let queued_hc = decisions.iter().any(|x| matches!(x, Decision::Assign { job, device } if *device == d.hostname
                && s.jobs.iter().any(|j| j.id == *job && matches!(j.kind, JobKind::HealthCheck { .. }))));
            let user_job = placements(&decisions).iter().any(|(j, dev)| *dev == d.hostname && j.is_some()) && !queued_hc;
            if new_hc {
                prop_assert!(needs_health_check(d) && free && d.config_error.is_none());
            }
            let room = s.workers.iter().any(|w| w.hostname == d.worker && (w.job_limit == 0 || w.busy < w.job_limit));
            if free && d.config_error.is_none() && needs_health_check(d) && s.workers.iter().all(|w| w.job_limit == 0) && room {
                prop_assert!(new_hc || queued_hc, "{} needs a health check", d.hostname);
            }
            if needs_health_check(d) {
                prop_assert!(!user_job, "user job on {} before its health check", d.hostname);
            }
        }
    }

    /// Removing lower-ordered units never changes what happens to higher-ordered ones.
    #[test]
    fn higher_units_unaffected_by_lower_ones(s in arb_snapshot(), cut in 0usize..8) {
        let mut heads: Vec<(QueueKey, String)> = Vec::new();
        for j in &s.jobs {
            let unit = match &j.kind {
                JobKind::MultiNode(m) => m.target_group.clone(),
                JobKind::Single => format!("job{}", j.id),
                JobKind::HealthCheck { .. } => continue,
            };
            heads.push((queue_key(j), unit));
        }
        heads.sort();
        let mut order: Vec<String> = Vec::new();
        for (_, unit) in heads {
            if !order.contains(&unit) {
                order.push(unit);
            }
        }
        let keep: BTreeSet<String> = order.iter().take(cut).cloned().collect();
        let unit_of = |j: &QueuedJob| match &j.kind {
            JobKind::MultiNode(m) => Some(m.target_group.clone()),
            JobKind::Single => Some(format!("job{}", j.id)),
            JobKind::HealthCheck { .. } => None,
        };
        let mut small = s.clone();
        small.jobs.retain(|j| unit_of(j).is_none_or(|u| keep.contains(&u)));
        let kept: BTreeSet<JobId> = small.jobs.iter().map(|j| j.id).collect();
        let strip = |ds: Vec<Decision>| -> Vec<Decision> {
            ds.into_iter().filter(|d| match d {
                Decision::Assign { job, .. } => kept.contains(job),
                Decision::AssignGroup { target_group, .. } | Decision::Hold { target_group, .. } => keep.contains(target_group),
                Decision::CancelQueueTimeout(CancelTarget::Job(j)) => kept.contains(j),
                Decision::CancelQueueTimeout(CancelTarget::Group { target_group, .. }) => keep.contains(target_group),
                _ => true,
            }).collect()
        };
        prop_assert_eq!(strip(plan(&s, t(10))), plan(&small, t(10)));
    }

    /// An unplaced complete group really had no full placement on the devices left free by
    /// everything ordered before it (brute force).
    #[test]
    fn unplaced_groups_had_no_placement(s in arb_snapshot()) {
        let decisions = plan(&s, t(10));
        let mut groups: BTreeMap<String, Vec<&QueuedJob>> = BTreeMap::new();
        for j in &s.jobs {
            if let JobKind::MultiNode(m) = &j.kind {
                groups.entry(m.target_group.clone()).or_default().push(j);
            }
        }
        for (name, members) in groups {
            let complete = members.iter().all(|j| matches!(&j.kind, JobKind::MultiNode(m) if m.group_size as usize == members.len()));
            let placed = decisions.iter().any(|d| matches!(d, Decision::AssignGroup { target_group, .. } if *target_group == name));
            if !complete || placed {
                continue;
            }
            let Some(first) = members.iter().map(|j| queue_key(j)).min() else { continue };
            // Devices used by decisions of units ordered before this group.
            let mut used: BTreeSet<String> = BTreeSet::new();
            for d in &decisions {
                let earlier = |id: &JobId| s.jobs.iter().find(|j| j.id == *id).is_some_and(|j| matches!(j.kind, JobKind::HealthCheck { .. }) || queue_key(j) < first);
                match d {
                    Decision::MarkBad { device, .. } | Decision::HealthCheck { device } => { used.insert(device.clone()); }
                    Decision::Assign { job, device } if earlier(job) => { used.insert(device.clone()); }
                    Decision::AssignGroup { assignments, .. } if assignments.first().is_some_and(|(j, _)| earlier(j)) => {
                        used.extend(assignments.iter().map(|(_, d)| d.clone()));
                    }
                    Decision::Hold { target_group, devices } if *target_group != name => {
                        let earlier_group = s.jobs.iter().any(|j| matches!(&j.kind, JobKind::MultiNode(m) if m.target_group == *target_group) && queue_key(j) < first);
                        if earlier_group { used.extend(devices.iter().cloned()); }
                    }
                    _ => {}
                }
            }
            let needing: Vec<&QueuedJob> = members.iter().copied().filter(|j| j.device_type.is_some()).collect();
            if needing.is_empty() { continue; }
            let free: Vec<&Device> = s.devices.iter().filter(|d| !used.contains(&d.hostname)).collect();
            // Per-worker spare slots left after earlier units.
            let spare = |w: &str, extra: u32| -> bool {
                let Some(wk) = s.workers.iter().find(|x| x.hostname == w) else { return false };
                if wk.job_limit == 0 { return true; }
                let earlier_on_w = used.iter().filter(|h| s.devices.iter().any(|d| &d.hostname == *h && d.worker == w)).count() as u32;
                wk.busy + earlier_on_w + extra <= wk.job_limit
            };
            fn search(i: usize, needing: &[&QueuedJob], free: &[&Device], taken: &mut Vec<usize>, s: &Snapshot, spare: &dyn Fn(&str, u32) -> bool) -> bool {
                if i == needing.len() {
                    return free.iter().map(|d| d.worker.as_str()).collect::<BTreeSet<_>>().into_iter().all(|w| {
                        let n = taken.iter().filter(|&&k| free[k].worker == w).count() as u32;
                        n == 0 || spare(w, n)
                    });
                }
                for k in 0..free.len() {
                    if !taken.contains(&k) && statically_eligible(s, needing[i], free[k]) {
                        taken.push(k);
                        if search(i + 1, needing, free, taken, s, spare) { return true; }
                        taken.pop();
                    }
                }
                false
            }
            let mut taken = Vec::new();
            prop_assert!(!search(0, &needing, &free, &mut taken, &s, &spare), "group {} was placeable", name);
        }
    }
}
