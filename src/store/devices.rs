//! Devices (boards): their rows, dictionaries, owners and admin edits. A device's state
//! and health move with its jobs in `store::lifecycle`.

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::device_types::device_type_id;
use super::error::{Error, Step, unique_or};
use super::tags::device_tags_by_id;
use super::update::SetColumns;
use super::{HOLDING_DEVICE_CODES, Store, decode};
use crate::model::{DeviceHealth, DeviceState, JobId};

/// A device (board) and its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Unique hostname.
    pub hostname: String,
    /// Device type name.
    pub device_type: String,
    /// Free text.
    pub description: Option<String>,
    /// Busy or not.
    pub state: DeviceState,
    /// May take jobs or not.
    pub health: DeviceHealth,
    /// The Jinja2 device dictionary, if set.
    pub dictionary: Option<String>,
    /// The worker it is attached to.
    pub worker_name: Option<String>,
    /// Whether anyone may submit to it.
    pub is_public: bool,
    /// Owning user, if restricted.
    pub owner_user: Option<String>,
    /// Owning group, if restricted.
    pub owner_group: Option<String>,
    /// The last health-check job that finished on it.
    pub last_health_report_job: Option<JobId>,
    /// Tag names, sorted.
    pub tags: Vec<String>,
    /// The job reserving or running on it, if any.
    pub current_job: Option<JobId>,
}

/// What [`Store::create_device`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// Unique hostname.
    pub hostname: String,
    /// An existing device type.
    pub device_type: String,
    /// Free text.
    pub description: Option<String>,
    /// The device dictionary.
    pub dictionary: Option<String>,
    /// The worker name.
    pub worker_name: Option<String>,
    /// Initial health; LAVA's default is Unknown (a health check runs first).
    pub health: DeviceHealth,
    /// Whether anyone may submit to it.
    pub is_public: bool,
    /// Owning user.
    pub owner_user: Option<String>,
    /// Owning group.
    pub owner_group: Option<String>,
}

impl NewDevice {
    /// A public device of `device_type` with health Unknown and no dictionary yet.
    pub fn new(hostname: impl Into<String>, device_type: impl Into<String>) -> NewDevice {
        NewDevice {
            hostname: hostname.into(),
            device_type: device_type.into(),
            description: None,
            dictionary: None,
            worker_name: None,
            health: DeviceHealth::Unknown,
            is_public: true,
            owner_user: None,
            owner_group: None,
        }
    }
}

/// Changes for [`Store::update_device`]; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceUpdate {
    /// New device type (must exist).
    pub device_type: Option<String>,
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// New worker (`Some(None)` clears it).
    pub worker_name: Option<Option<String>>,
    /// New public flag.
    pub is_public: Option<bool>,
    /// New owning user (`Some(None)` clears it).
    pub owner_user: Option<Option<String>>,
    /// New owning group (`Some(None)` clears it).
    pub owner_group: Option<Option<String>>,
}

/// The row id of device `hostname`, or [`Error::NotFound`].
pub(crate) fn device_id(conn: &Connection, hostname: &str) -> Result<i64, Error> {
    conn.query_row(
        "SELECT id FROM devices WHERE hostname = ?1",
        [hostname],
        |r| r.get(0),
    )
    .optional()
    .step("looking up a device")?
    .ok_or_else(|| Error::NotFound {
        kind: "device",
        name: hostname.to_owned(),
    })
}

fn opt_user_id(conn: &Connection, name: Option<&str>) -> Result<Option<i64>, Error> {
    name.map(|n| super::users::user_id(conn, n).map(|id| id.0))
        .transpose()
}

fn opt_group_id(conn: &Connection, name: Option<&str>) -> Result<Option<i64>, Error> {
    name.map(|n| super::users::group_id(conn, n).map(|id| id.0))
        .transpose()
}

/// The device columns every device read takes, ending with the job holding the device
/// (its states written from `model::lifecycle::HOLDING_DEVICE`'s codes).
static DEVICE_SELECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT d.id, d.hostname, t.name, d.description, d.state, d.health, \
         d.dictionary, d.worker_name, d.is_public, ou.username, og.name, \
         d.last_health_report_job, (SELECT j.id FROM jobs j WHERE j.actual_device_id = d.id \
         AND j.state IN ({}) ORDER BY j.id LIMIT 1) \
         FROM devices d JOIN device_types t ON t.id = d.device_type_id \
         LEFT JOIN users ou ON ou.id = d.owner_user_id \
         LEFT JOIN groups og ON og.id = d.owner_group_id",
        *HOLDING_DEVICE_CODES
    )
});

type DeviceRow = (i64, Device, i64, i64);

fn device_row(row: &Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok((
        row.get(0)?,
        Device {
            hostname: row.get(1)?,
            device_type: row.get(2)?,
            description: row.get(3)?,
            state: DeviceState::Idle,
            health: DeviceHealth::Unknown,
            dictionary: row.get(6)?,
            worker_name: row.get(7)?,
            is_public: row.get(8)?,
            owner_user: row.get(9)?,
            owner_group: row.get(10)?,
            last_health_report_job: row.get::<_, Option<i64>>(11)?.map(JobId),
            tags: Vec::new(),
            current_job: row.get::<_, Option<i64>>(12)?.map(JobId),
        },
        row.get(4)?,
        row.get(5)?,
    ))
}

fn finish_device(conn: &Connection, raw: DeviceRow) -> Result<Device, Error> {
    let (id, mut device, state, health) = raw;
    device.state = decode("devices", "device state", state, DeviceState::from_code)?;
    device.health = decode("devices", "device health", health, DeviceHealth::from_code)?;
    device.tags = device_tags_by_id(conn, id)?;
    Ok(device)
}

/// Reads one device by hostname.
pub(crate) fn read_device(conn: &Connection, hostname: &str) -> Result<Option<Device>, Error> {
    conn.query_row(
        &format!("{} WHERE d.hostname = ?1", *DEVICE_SELECT),
        [hostname],
        device_row,
    )
    .optional()
    .step("reading a device")?
    .map(|raw| finish_device(conn, raw))
    .transpose()
}

impl Store {
    /// The devices restricted to an owner group, as `(device row id, hostname, group)` by
    /// row id: lavabox's form of LAVA's per-group device permissions.
    pub fn device_group_restrictions(&self) -> Result<Vec<(i64, String, String)>, Error> {
        let step = "listing device restrictions";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT d.id, d.hostname, g.name FROM devices d \
                 JOIN groups g ON g.id = d.owner_group_id ORDER BY d.id",
            )
            .step(step)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .step(step)?
            .collect::<Result<Vec<_>, _>>()
            .step(step)
    }

    /// Creates a device of an existing type; [`Error::NotFound`] if the type does not exist,
    /// [`Error::AlreadyExists`] if the hostname is taken.
    pub fn create_device(&mut self, new: &NewDevice) -> Result<Device, Error> {
        if new.hostname.trim().is_empty() || new.hostname.contains(['/', ' ']) {
            return Err(Error::Invalid {
                what: "hostname",
                reason: format!("`{}` is empty or contains `/` or a space", new.hostname),
            });
        }
        let tx = self.write_tx("creating a device")?;
        let type_id = device_type_id(&tx, &new.device_type)?;
        let owner_user = opt_user_id(&tx, new.owner_user.as_deref())?;
        let owner_group = opt_group_id(&tx, new.owner_group.as_deref())?;
        tx.execute(
            "INSERT INTO devices (hostname, device_type_id, description, state, health, \
             dictionary, worker_name, is_public, owner_user_id, owner_group_id) \
             VALUES (?1, ?2, ?3, 0, ?4, ?5, \
             coalesce(?6, (SELECT hostname FROM workers WHERE own = 1)), ?7, ?8, ?9)",
            params![
                new.hostname,
                type_id,
                new.description,
                new.health.code(),
                new.dictionary,
                new.worker_name,
                new.is_public,
                owner_user,
                owner_group
            ],
        )
        .map_err(unique_or("device", &new.hostname, "creating a device"))?;
        let device = read_device(&tx, &new.hostname)?.ok_or_else(|| Error::NotFound {
            kind: "device",
            name: new.hostname.clone(),
        })?;
        tx.commit().step("creating a device")?;
        Ok(device)
    }

    /// The device called `hostname`.
    pub fn device(&self, hostname: &str) -> Result<Option<Device>, Error> {
        read_device(&self.conn, hostname)
    }

    /// Devices by hostname; Retired ones only if `include_retired`.
    pub fn devices(&self, include_retired: bool) -> Result<Vec<Device>, Error> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "{} WHERE (?1 OR d.health <> ?2) ORDER BY d.hostname",
                *DEVICE_SELECT
            ))
            .step("listing devices")?;
        let rows = stmt
            .query_map(
                params![include_retired, DeviceHealth::Retired.code()],
                device_row,
            )
            .step("listing devices")?
            .collect::<Result<Vec<_>, _>>()
            .step("listing devices")?;
        rows.into_iter()
            .map(|raw| finish_device(&self.conn, raw))
            .collect()
    }

    /// Deletes a device; refused while a job holds it. Its finished jobs keep their
    /// history without a device.
    pub fn delete_device(&mut self, hostname: &str) -> Result<(), Error> {
        let tx = self.write_tx("deleting a device")?;
        let device = read_device(&tx, hostname)?.ok_or_else(|| Error::NotFound {
            kind: "device",
            name: hostname.to_owned(),
        })?;
        if let Some(job) = device.current_job {
            return Err(Error::Invalid {
                what: "device deletion",
                reason: format!("job {job} holds device `{hostname}`; cancel it first"),
            });
        }
        tx.execute("DELETE FROM devices WHERE hostname = ?1", [hostname])
            .step("deleting a device")?;
        tx.commit().step("deleting a device")
    }

    /// Replaces the device dictionary of `hostname`.
    pub fn set_device_dictionary(&mut self, hostname: &str, dictionary: &str) -> Result<(), Error> {
        let n = SetColumns::new("devices", "hostname")
            .set("dictionary", dictionary.to_owned())
            .run(&self.conn, hostname, "setting a device dictionary")?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "device",
                name: hostname.to_owned(),
            });
        }
        Ok(())
    }

    /// Applies `update` to device `hostname`.
    pub fn update_device(
        &mut self,
        hostname: &str,
        update: &DeviceUpdate,
    ) -> Result<Device, Error> {
        let step = "updating a device";
        let tx = self.write_tx(step)?;
        let id = device_id(&tx, hostname)?;
        let type_id = match &update.device_type {
            Some(dt) => Some(device_type_id(&tx, dt)?),
            None => None,
        };
        let owner_user = match &update.owner_user {
            Some(v) => Some(opt_user_id(&tx, v.as_deref())?),
            None => None,
        };
        let owner_group = match &update.owner_group {
            Some(v) => Some(opt_group_id(&tx, v.as_deref())?),
            None => None,
        };
        SetColumns::new("devices", "id")
            .set_some("device_type_id", type_id)
            .set_some("description", update.description.clone())
            .set_some("worker_name", update.worker_name.clone())
            .set_some("is_public", update.is_public)
            .set_some("owner_user_id", owner_user)
            .set_some("owner_group_id", owner_group)
            .run(&tx, id, step)?;
        let device = read_device(&tx, hostname)?.ok_or_else(|| Error::NotFound {
            kind: "device",
            name: hostname.to_owned(),
        })?;
        tx.commit().step(step)?;
        Ok(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewDeviceType;
    use crate::store::testutil::store;

    #[test]
    fn group_restrictions_are_listed() {
        let (_dir, mut store) = store();
        store
            .create_device_type(&NewDeviceType::named("qemu"))
            .unwrap();
        store.create_group("lab").unwrap();
        store
            .create_device(&NewDevice::new("open01", "qemu"))
            .unwrap();
        let mut closed = NewDevice::new("closed01", "qemu");
        closed.owner_group = Some("lab".into());
        store.create_device(&closed).unwrap();
        let rows = store.device_group_restrictions().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].1.as_str(), rows[0].2.as_str()),
            ("closed01", "lab")
        );
    }

    #[test]
    fn devices_need_an_existing_type_and_unique_hostname() {
        let (_dir, mut store) = store();
        let err = store
            .create_device(&NewDevice::new("bbb01", "beaglebone-black"))
            .unwrap_err();
        assert_eq!(err.to_string(), "device type `beaglebone-black` not found");
        store
            .create_device_type(&NewDeviceType::named("beaglebone-black"))
            .unwrap();
        let mut new = NewDevice::new("bbb01", "beaglebone-black");
        new.dictionary = Some("{% extends 'beaglebone-black.jinja2' %}".into());
        let device = store.create_device(&new).unwrap();
        assert_eq!(device.state, DeviceState::Idle);
        assert_eq!(device.health, DeviceHealth::Unknown);
        assert_eq!(device.current_job, None);
        assert!(matches!(
            store.create_device(&new),
            Err(Error::AlreadyExists { kind: "device", .. })
        ));
        store.add_device_tag("bbb01", "usb").unwrap();
        store.add_device_tag("bbb01", "usb").unwrap();
        assert_eq!(store.device("bbb01").unwrap().unwrap().tags, ["usb"]);
        store.remove_device_tag("bbb01", "usb").unwrap();
        assert!(store.device("bbb01").unwrap().unwrap().tags.is_empty());

        store
            .set_device_health("bbb01", DeviceHealth::Retired)
            .unwrap();
        assert!(store.devices(false).unwrap().is_empty());
        assert_eq!(store.devices(true).unwrap().len(), 1);
        // A device type in use cannot be deleted behind the store's back.
        let err = store
            .conn
            .execute(
                "DELETE FROM device_types WHERE name = 'beaglebone-black'",
                [],
            )
            .step("deleting")
            .unwrap_err();
        assert!(matches!(err, Error::Constraint { .. }), "{err:?}");
    }

    #[test]
    fn update_device_fields() {
        let (_dir, mut store) = store();
        store
            .create_device_type(&NewDeviceType::named("qemu"))
            .unwrap();
        store
            .create_device_type(&NewDeviceType::named("kvm"))
            .unwrap();
        store.create_group("lab").unwrap();
        store.create_device(&NewDevice::new("q1", "qemu")).unwrap();
        let device = store
            .update_device(
                "q1",
                &DeviceUpdate {
                    device_type: Some("kvm".into()),
                    description: Some(Some("first".into())),
                    worker_name: Some(Some("pi".into())),
                    is_public: Some(false),
                    owner_group: Some(Some("lab".into())),
                    owner_user: None,
                },
            )
            .unwrap();
        assert_eq!(device.device_type, "kvm");
        assert_eq!(device.owner_group.as_deref(), Some("lab"));
        assert!(!device.is_public);
        store.set_device_dictionary("q1", "dict").unwrap();
        assert_eq!(
            store.device("q1").unwrap().unwrap().dictionary.as_deref(),
            Some("dict")
        );
        assert!(matches!(
            store.set_device_dictionary("nope", "dict"),
            Err(Error::NotFound { .. })
        ));
    }
}
