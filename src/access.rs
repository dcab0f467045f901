//! Who may see and use what: the [`Caller`] of an API request, the one device-access rule,
//! and the caller's job-visibility restriction ([`Caller::viewer`]).
//!
//! This sits below every user of the rule: the APIs (XML-RPC, REST, the results exports),
//! job submission and the scheduler all take it from here, so none of them imports another
//! to learn who may do what. `api::auth` turns credentials into a [`Caller`]; nothing here
//! reads credentials, the store or the clock.
//!
//! The device rule is LAVA 2023.01's as lavabox models it: a public device is open to
//! everybody (anonymous callers included); a restricted one only to its owning user, the
//! members of its owning group, and superusers. The rule is [`DeviceAccess::allows`], generic
//! over how users and groups are keyed: the scheduler feeds it ids from its snapshot, the
//! APIs and submission feed it names from a [`store::Device`] and a [`Caller`]
//! ([`may_use_device`]).

use std::collections::BTreeSet;

use crate::model::UserId;
use crate::store::{self, Viewer};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerUser {
    /// Database id.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// Superusers may see and change everything.
    pub is_superuser: bool,
    /// Names of the groups the user belongs to.
    pub groups: Vec<String>,
}

/// The caller of an API request: anonymous or a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// `None` for anonymous callers.
    pub user: Option<CallerUser>,
}

impl Caller {
    /// An anonymous caller.
    pub fn anonymous() -> Caller {
        Caller { user: None }
    }

    /// The store's job-view restriction for this caller: superusers see every job,
    /// anonymous callers public jobs only, users also their own and their groups' jobs.
    pub fn viewer(&self) -> Viewer {
        match &self.user {
            None => Viewer::Anonymous,
            Some(u) if u.is_superuser => Viewer::Anyone,
            Some(u) => Viewer::User(u.id),
        }
    }

    /// The username, if authenticated.
    pub fn username(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.username.as_str())
    }

    /// Whether the caller is a superuser.
    pub fn is_superuser(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.is_superuser)
    }

    /// Whether the caller belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.groups.iter().any(|g| g == group))
    }

    /// The name LAVA uses for the caller in messages (`AnonymousUser` when anonymous).
    pub fn display_name(&self) -> &str {
        self.username().unwrap_or("AnonymousUser")
    }

    /// The caller as the device-access rule sees them, keyed by names; `None` when anonymous.
    pub fn person(&self) -> Option<Person<&str, &str>> {
        self.user.as_ref().map(|u| Person {
            user: u.username.as_str(),
            groups: u.groups.iter().map(String::as_str).collect(),
            is_superuser: u.is_superuser,
        })
    }
}

/// A user as the device-access rule sees them, keyed like the [`DeviceAccess`] it is checked
/// against (`U`: user key, `G`: group key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person<U, G> {
    /// The user.
    pub user: U,
    /// Groups the user belongs to.
    pub groups: BTreeSet<G>,
    /// Superusers may use every device.
    pub is_superuser: bool,
}

/// Who may see a device and have jobs run on it (`U`: user key, `G`: group key).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeviceAccess<U, G> {
    /// Everybody, anonymous callers included.
    #[default]
    Public,
    /// Only these users and members of these groups (and superusers).
    Restricted {
        /// Allowed users.
        users: BTreeSet<U>,
        /// Allowed groups.
        groups: BTreeSet<G>,
    },
}

impl<U: Ord, G: Ord> DeviceAccess<U, G> {
    /// A device's access from its owner fields: public, or restricted to the owning user
    /// and group it names (either may be absent).
    pub fn from_owners(is_public: bool, owner_user: Option<U>, owner_group: Option<G>) -> Self {
        if is_public {
            DeviceAccess::Public
        } else {
            DeviceAccess::Restricted {
                users: owner_user.into_iter().collect(),
                groups: owner_group.into_iter().collect(),
            }
        }
    }

    /// The rule: whether `person` may use a device with this access. `person` is a
    /// `&Person`, or an `Option` of one where `None` is an anonymous caller.
    pub fn allows<'p>(&self, person: impl Into<Option<&'p Person<U, G>>>) -> bool
    where
        U: 'p,
        G: 'p,
    {
        match self {
            DeviceAccess::Public => true,
            DeviceAccess::Restricted { users, groups } => person.into().is_some_and(|p| {
                p.is_superuser || users.contains(&p.user) || !groups.is_disjoint(&p.groups)
            }),
        }
    }
}

/// The access of a stored device, keyed by names.
pub fn device_access(device: &store::Device) -> DeviceAccess<&str, &str> {
    DeviceAccess::from_owners(
        device.is_public,
        device.owner_user.as_deref(),
        device.owner_group.as_deref(),
    )
}

/// Whether `caller` may see and submit to `device`. Every API and submission use this; the
/// scheduler applies the same [`DeviceAccess::allows`] by ids.
pub fn may_use_device(caller: &Caller, device: &store::Device) -> bool {
    device_access(device).allows(caller.person().as_ref())
}

#[cfg(test)]
mod tests;
