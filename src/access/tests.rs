use super::*;
use crate::model::{DeviceHealth, DeviceState, GroupId};

fn user(name: &str, id: i64, groups: &[&str], is_superuser: bool) -> Caller {
    Caller {
        user: Some(CallerUser {
            id: UserId(id),
            username: name.to_owned(),
            is_superuser,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }),
    }
}

fn device(is_public: bool, owner_user: Option<&str>, owner_group: Option<&str>) -> store::Device {
    store::Device {
        hostname: "bbb01".into(),
        device_type: "beaglebone-black".into(),
        description: None,
        state: DeviceState::Idle,
        health: DeviceHealth::Good,
        dictionary: None,
        worker_name: None,
        is_public,
        owner_user: owner_user.map(str::to_owned),
        owner_group: owner_group.map(str::to_owned),
        last_health_report_job: None,
        tags: Vec::new(),
        current_job: None,
    }
}

/// The callers every case is checked for, in this order.
fn callers() -> [Caller; 5] {
    [
        Caller::anonymous(),
        user("alice", 1, &[], false),
        user("bob", 2, &["lab"], false),
        user("carol", 3, &["other"], false),
        user("admin", 4, &[], true),
    ]
}

#[test]
fn device_rule_by_names() {
    // (device, [anonymous, alice, bob (in lab), carol (in other), admin (superuser)])
    let cases = [
        (device(true, None, None), [true, true, true, true, true]),
        // A public device stays public whoever owns it.
        (
            device(true, Some("alice"), Some("lab")),
            [true, true, true, true, true],
        ),
        (
            device(false, Some("alice"), None),
            [false, true, false, false, true],
        ),
        (
            device(false, None, Some("lab")),
            [false, false, true, false, true],
        ),
        (
            device(false, Some("alice"), Some("lab")),
            [false, true, true, false, true],
        ),
        // Restricted without owners: superusers only.
        (
            device(false, None, None),
            [false, false, false, false, true],
        ),
    ];
    for (d, want) in cases {
        let got = callers().map(|c| may_use_device(&c, &d));
        assert_eq!(got, want, "{d:?}");
    }
}

#[test]
fn device_rule_by_ids() {
    let person = |user: i64, groups: &[i64], is_superuser: bool| Person {
        user: UserId(user),
        groups: groups.iter().copied().map(GroupId).collect(),
        is_superuser,
    };
    let alice = person(1, &[], false);
    let bob = person(2, &[7], false);
    let carol = person(3, &[8], false);
    let admin = person(4, &[], true);
    let people = [None, Some(&alice), Some(&bob), Some(&carol), Some(&admin)];
    let cases: [(DeviceAccess<UserId, GroupId>, [bool; 5]); 4] = [
        (DeviceAccess::Public, [true; 5]),
        (
            DeviceAccess::from_owners(false, Some(UserId(1)), None),
            [false, true, false, false, true],
        ),
        (
            DeviceAccess::from_owners(false, None, Some(GroupId(7))),
            [false, false, true, false, true],
        ),
        (
            DeviceAccess::Restricted {
                users: BTreeSet::new(),
                groups: BTreeSet::new(),
            },
            [false, false, false, false, true],
        ),
    ];
    for (access, want) in cases {
        let got = people.map(|p| access.allows(p));
        assert_eq!(got, want, "{access:?}");
    }
}

#[test]
fn owner_fields_build_the_access() {
    assert_eq!(
        DeviceAccess::<&str, &str>::from_owners(true, Some("alice"), Some("lab")),
        DeviceAccess::Public
    );
    assert_eq!(
        device_access(&device(false, Some("alice"), Some("lab"))),
        DeviceAccess::Restricted {
            users: BTreeSet::from(["alice"]),
            groups: BTreeSet::from(["lab"]),
        }
    );
    assert_eq!(
        DeviceAccess::<UserId, GroupId>::default(),
        DeviceAccess::Public
    );
}

#[test]
fn viewer_follows_the_caller() {
    let [anonymous, alice, _, _, admin] = callers();
    assert_eq!(anonymous.viewer(), Viewer::Anonymous);
    assert_eq!(alice.viewer(), Viewer::User(UserId(1)));
    assert_eq!(admin.viewer(), Viewer::Anyone);
}

#[test]
fn caller_names() {
    let [anonymous, _, bob, _, admin] = callers();
    assert_eq!(anonymous.display_name(), "AnonymousUser");
    assert_eq!(anonymous.username(), None);
    assert!(anonymous.person().is_none());
    assert_eq!(bob.display_name(), "bob");
    assert!(bob.in_group("lab") && !bob.in_group("other"));
    assert!(admin.is_superuser() && !bob.is_superuser());
    assert_eq!(
        bob.person(),
        Some(Person {
            user: "bob",
            groups: BTreeSet::from(["lab"]),
            is_superuser: false,
        })
    );
}
