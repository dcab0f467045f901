//! Device types, aliases, tags and devices.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::error::{Error, Step, unique_or};
use super::jobs::{self, Changes, CurrentJob, DeviceChange};
use super::{Store, decode};
use crate::model::{DeviceHealth, DeviceState, JobId};

/// LAVA's unit for a device type's health-check frequency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HealthDenominator {
    /// Every `health_frequency` hours (LAVA code 0, the default).
    #[default]
    Hours,
    /// Every `health_frequency` jobs (LAVA code 1).
    Jobs,
}

impl HealthDenominator {
    /// LAVA's integer code.
    pub fn code(self) -> i64 {
        match self {
            HealthDenominator::Hours => 0,
            HealthDenominator::Jobs => 1,
        }
    }

    /// The value for LAVA's integer code.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(HealthDenominator::Hours),
            1 => Some(HealthDenominator::Jobs),
            _ => None,
        }
    }

    /// LAVA's API name, `hours` or `jobs`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthDenominator::Hours => "hours",
            HealthDenominator::Jobs => "jobs",
        }
    }
}

impl std::str::FromStr for HealthDenominator {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "hours" => Ok(HealthDenominator::Hours),
            "jobs" => Ok(HealthDenominator::Jobs),
            _ => Err(Error::Invalid {
                what: "health denominator",
                reason: format!("`{s}` is neither `hours` nor `jobs`"),
            }),
        }
    }
}

/// A device type: a name plus health-check settings (the template is whatever a device's
/// dictionary extends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceType {
    /// Unique name, e.g. `beaglebone-black`.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// How often a health check is due, in [`DeviceType::health_denominator`] units.
    pub health_frequency: u32,
    /// Hours or jobs.
    pub health_denominator: HealthDenominator,
    /// No health checks for devices of this type.
    pub disable_health_check: bool,
    /// Hidden types are not listed.
    pub display: bool,
    /// Only owners may submit to it.
    pub owners_only: bool,
}

/// What [`Store::create_device_type`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeviceType {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Health-check frequency.
    pub health_frequency: u32,
    /// Hours or jobs.
    pub health_denominator: HealthDenominator,
    /// No health checks.
    pub disable_health_check: bool,
    /// Listed.
    pub display: bool,
    /// Only owners may submit to it.
    pub owners_only: bool,
}

impl NewDeviceType {
    /// LAVA's defaults: a health check every 24 hours, displayed.
    pub fn named(name: impl Into<String>) -> NewDeviceType {
        NewDeviceType {
            name: name.into(),
            description: None,
            health_frequency: 24,
            health_denominator: HealthDenominator::Hours,
            disable_health_check: false,
            display: true,
            owners_only: false,
        }
    }
}

/// Changes for [`Store::update_device_type`]; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceTypeUpdate {
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// New frequency.
    pub health_frequency: Option<u32>,
    /// New denominator.
    pub health_denominator: Option<HealthDenominator>,
    /// New health-check switch.
    pub disable_health_check: Option<bool>,
    /// New visibility.
    pub display: Option<bool>,
    /// New owners-only switch.
    pub owners_only: Option<bool>,
}

/// A tag's row id (the REST API lists tags by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TagId(pub i64);

/// A device tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Row id.
    pub id: TagId,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
}

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

const DEVICE_TYPE_COLUMNS: &str = "name, description, health_frequency, health_denominator, \
     disable_health_check, display, owners_only";

fn device_type_row(row: &Row<'_>) -> rusqlite::Result<(DeviceType, i64)> {
    let frequency: i64 = row.get(2)?;
    Ok((
        DeviceType {
            name: row.get(0)?,
            description: row.get(1)?,
            health_frequency: u32::try_from(frequency).unwrap_or(u32::MAX),
            health_denominator: HealthDenominator::Hours,
            disable_health_check: row.get(4)?,
            display: row.get(5)?,
            owners_only: row.get(6)?,
        },
        row.get(3)?,
    ))
}

fn device_type_from_row(raw: (DeviceType, i64)) -> Result<DeviceType, Error> {
    let (mut dt, denominator) = raw;
    dt.health_denominator = decode(
        "device_types",
        "health denominator",
        denominator,
        HealthDenominator::from_code,
    )?;
    Ok(dt)
}

/// Every device type, by name.
pub(crate) fn list_device_types(conn: &Connection) -> Result<Vec<DeviceType>, Error> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {DEVICE_TYPE_COLUMNS} FROM device_types ORDER BY name"
        ))
        .step("listing device types")?;
    let rows = stmt
        .query_map([], device_type_row)
        .step("listing device types")?
        .collect::<Result<Vec<_>, _>>()
        .step("listing device types")?;
    rows.into_iter().map(device_type_from_row).collect()
}

/// The row id of device type `name` (aliases not followed), or [`Error::NotFound`].
pub(crate) fn device_type_id(conn: &Connection, name: &str) -> Result<i64, Error> {
    conn.query_row("SELECT id FROM device_types WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
    .step("looking up a device type")?
    .ok_or_else(|| Error::NotFound {
        kind: "device type",
        name: name.to_owned(),
    })
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

/// The row id of tag `name`, or [`Error::NotFound`].
pub(crate) fn tag_id(conn: &Connection, name: &str) -> Result<i64, Error> {
    conn.query_row("SELECT id FROM tags WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .step("looking up a tag")?
        .ok_or_else(|| Error::NotFound {
            kind: "tag",
            name: name.to_owned(),
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

const DEVICE_SELECT: &str = "SELECT d.id, d.hostname, t.name, d.description, d.state, d.health, \
     d.dictionary, d.worker_name, d.is_public, ou.username, og.name, d.last_health_report_job, \
     (SELECT j.id FROM jobs j WHERE j.actual_device_id = d.id AND j.state IN (1, 2, 3, 4) \
      ORDER BY j.id LIMIT 1) \
     FROM devices d JOIN device_types t ON t.id = d.device_type_id \
     LEFT JOIN users ou ON ou.id = d.owner_user_id \
     LEFT JOIN groups og ON og.id = d.owner_group_id";

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

fn device_tags_by_id(conn: &Connection, id: i64) -> Result<Vec<String>, Error> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT g.name FROM tags g JOIN device_tags dt ON dt.tag_id = g.id \
             WHERE dt.device_id = ?1 ORDER BY g.name",
        )
        .step("reading device tags")?;
    stmt.query_map([id], |r| r.get(0))
        .step("reading device tags")?
        .collect::<Result<Vec<String>, _>>()
        .step("reading device tags")
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
        &format!("{DEVICE_SELECT} WHERE d.hostname = ?1"),
        [hostname],
        device_row,
    )
    .optional()
    .step("reading a device")?
    .map(|raw| finish_device(conn, raw))
    .transpose()
}

impl Store {
    /// Creates a device type; [`Error::AlreadyExists`] if the name is taken.
    pub fn create_device_type(&mut self, new: &NewDeviceType) -> Result<DeviceType, Error> {
        if new.name.trim().is_empty() || new.name.contains(['/', ' ']) {
            return Err(Error::Invalid {
                what: "device type name",
                reason: format!("`{}` is empty or contains `/` or a space", new.name),
            });
        }
        self.conn
            .execute(
                "INSERT INTO device_types (name, description, health_frequency, \
                 health_denominator, disable_health_check, display, owners_only) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    new.name,
                    new.description,
                    new.health_frequency,
                    new.health_denominator.code(),
                    new.disable_health_check,
                    new.display,
                    new.owners_only
                ],
            )
            .map_err(unique_or(
                "device type",
                &new.name,
                "creating a device type",
            ))?;
        Ok(DeviceType {
            name: new.name.clone(),
            description: new.description.clone(),
            health_frequency: new.health_frequency,
            health_denominator: new.health_denominator,
            disable_health_check: new.disable_health_check,
            display: new.display,
            owners_only: new.owners_only,
        })
    }

    /// The device type called `name` (not an alias).
    pub fn device_type(&self, name: &str) -> Result<Option<DeviceType>, Error> {
        self.conn
            .query_row(
                &format!("SELECT {DEVICE_TYPE_COLUMNS} FROM device_types WHERE name = ?1"),
                [name],
                device_type_row,
            )
            .optional()
            .step("reading a device type")?
            .map(device_type_from_row)
            .transpose()
    }

    /// The device type called `name`, or the one `name` is an alias of.
    pub fn resolve_device_type(&self, name: &str) -> Result<Option<DeviceType>, Error> {
        if let Some(dt) = self.device_type(name)? {
            return Ok(Some(dt));
        }
        self.conn
            .query_row(
                &format!(
                    "SELECT {DEVICE_TYPE_COLUMNS} FROM device_types WHERE id = \
                     (SELECT device_type_id FROM aliases WHERE name = ?1)"
                ),
                [name],
                device_type_row,
            )
            .optional()
            .step("resolving a device type alias")?
            .map(device_type_from_row)
            .transpose()
    }

    /// Every device type, by name (hidden ones too).
    pub fn device_types(&self) -> Result<Vec<DeviceType>, Error> {
        list_device_types(&self.conn)
    }

    /// Applies `update` to device type `name`.
    pub fn update_device_type(
        &mut self,
        name: &str,
        update: &DeviceTypeUpdate,
    ) -> Result<DeviceType, Error> {
        let tx = self.write_tx("updating a device type")?;
        let id = device_type_id(&tx, name)?;
        let step = "updating a device type";
        if let Some(description) = &update.description {
            tx.execute(
                "UPDATE device_types SET description = ?2 WHERE id = ?1",
                params![id, description],
            )
            .step(step)?;
        }
        if let Some(v) = update.health_frequency {
            tx.execute(
                "UPDATE device_types SET health_frequency = ?2 WHERE id = ?1",
                params![id, v],
            )
            .step(step)?;
        }
        if let Some(v) = update.health_denominator {
            tx.execute(
                "UPDATE device_types SET health_denominator = ?2 WHERE id = ?1",
                params![id, v.code()],
            )
            .step(step)?;
        }
        if let Some(v) = update.disable_health_check {
            tx.execute(
                "UPDATE device_types SET disable_health_check = ?2 WHERE id = ?1",
                params![id, v],
            )
            .step(step)?;
        }
        if let Some(v) = update.display {
            tx.execute(
                "UPDATE device_types SET display = ?2 WHERE id = ?1",
                params![id, v],
            )
            .step(step)?;
        }
        if let Some(v) = update.owners_only {
            tx.execute(
                "UPDATE device_types SET owners_only = ?2 WHERE id = ?1",
                params![id, v],
            )
            .step(step)?;
        }
        tx.commit().step(step)?;
        self.device_type(name)?.ok_or_else(|| Error::NotFound {
            kind: "device type",
            name: name.to_owned(),
        })
    }

    /// Deletes a device type; refused ([`Error::Constraint`]) while devices or jobs use it.
    pub fn delete_device_type(&mut self, name: &str) -> Result<(), Error> {
        let n = self
            .conn
            .execute("DELETE FROM device_types WHERE name = ?1", [name])
            .step("deleting a device type")?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "device type",
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// Makes `alias` another name for `device_type`.
    pub fn add_alias(&mut self, alias: &str, device_type: &str) -> Result<(), Error> {
        let tx = self.write_tx("adding an alias")?;
        let id = device_type_id(&tx, device_type)?;
        tx.execute(
            "INSERT INTO aliases (name, device_type_id) VALUES (?1, ?2)",
            params![alias, id],
        )
        .map_err(unique_or("alias", alias, "adding an alias"))?;
        tx.commit().step("adding an alias")
    }

    /// Removes an alias; [`Error::NotFound`] if there is none.
    pub fn remove_alias(&mut self, alias: &str) -> Result<(), Error> {
        let n = self
            .conn
            .execute("DELETE FROM aliases WHERE name = ?1", [alias])
            .step("removing an alias")?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "alias",
                name: alias.to_owned(),
            });
        }
        Ok(())
    }

    /// Every alias as `(alias, device type)`, by alias.
    pub fn aliases(&self) -> Result<Vec<(String, String)>, Error> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.name, t.name FROM aliases a JOIN device_types t \
                 ON t.id = a.device_type_id ORDER BY a.name",
            )
            .step("listing aliases")?;
        stmt.query_map([], |r| r.try_into())
            .step("listing aliases")?
            .collect::<Result<Vec<_>, _>>()
            .step("listing aliases")
    }

    /// Creates a tag; [`Error::AlreadyExists`] if the name is taken.
    pub fn create_tag(&mut self, name: &str, description: Option<&str>) -> Result<Tag, Error> {
        if name.trim().is_empty() {
            return Err(Error::Invalid {
                what: "tag name",
                reason: "it is empty".into(),
            });
        }
        self.conn
            .execute(
                "INSERT INTO tags (name, description) VALUES (?1, ?2)",
                params![name, description],
            )
            .map_err(unique_or("tag", name, "creating a tag"))?;
        Ok(Tag {
            id: TagId(self.conn.last_insert_rowid()),
            name: name.to_owned(),
            description: description.map(str::to_owned),
        })
    }

    /// Every tag, by name.
    pub fn tags(&self) -> Result<Vec<Tag>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, description FROM tags ORDER BY name")
            .step("listing tags")?;
        stmt.query_map([], |r| {
            Ok(Tag {
                id: TagId(r.get(0)?),
                name: r.get(1)?,
                description: r.get(2)?,
            })
        })
        .step("listing tags")?
        .collect::<Result<Vec<_>, _>>()
        .step("listing tags")
    }

    /// Deletes a tag (and with it every device's use of it); [`Error::NotFound`] if missing.
    pub fn delete_tag(&mut self, name: &str) -> Result<(), Error> {
        let n = self
            .conn
            .execute("DELETE FROM tags WHERE name = ?1", [name])
            .step("deleting a tag")?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "tag",
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// Renames a tag and/or changes its description (`Some(None)` clears it); returns the
    /// tag as stored, [`Error::NotFound`] if there is no tag `id`.
    pub fn update_tag(
        &mut self,
        id: TagId,
        name: Option<&str>,
        description: Option<Option<&str>>,
    ) -> Result<Tag, Error> {
        let step = "updating a tag";
        if name.is_some_and(|n| n.trim().is_empty()) {
            return Err(Error::Invalid {
                what: "tag name",
                reason: "it is empty".into(),
            });
        }
        let tx = self.write_tx(step)?;
        let n = tx
            .execute(
                "UPDATE tags SET name = coalesce(?2, name), \
                 description = CASE WHEN ?3 THEN ?4 ELSE description END WHERE id = ?1",
                params![id.0, name, description.is_some(), description.flatten()],
            )
            .map_err(unique_or("tag", name.unwrap_or_default(), step))?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "tag",
                name: id.0.to_string(),
            });
        }
        let tag = tx
            .query_row(
                "SELECT id, name, description FROM tags WHERE id = ?1",
                [id.0],
                |r| {
                    Ok(Tag {
                        id: TagId(r.get(0)?),
                        name: r.get(1)?,
                        description: r.get(2)?,
                    })
                },
            )
            .step(step)?;
        tx.commit().step(step)?;
        Ok(tag)
    }

    /// Renames alias `alias` and/or points it at another device type; [`Error::NotFound`] if
    /// the alias or the device type does not exist.
    pub fn update_alias(
        &mut self,
        alias: &str,
        new_name: Option<&str>,
        device_type: Option<&str>,
    ) -> Result<(), Error> {
        let step = "updating an alias";
        let tx = self.write_tx(step)?;
        let type_id = device_type.map(|t| device_type_id(&tx, t)).transpose()?;
        let n = tx
            .execute(
                "UPDATE aliases SET name = coalesce(?2, name), \
                 device_type_id = coalesce(?3, device_type_id) WHERE name = ?1",
                params![alias, new_name, type_id],
            )
            .map_err(unique_or("alias", new_name.unwrap_or(alias), step))?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "alias",
                name: alias.to_owned(),
            });
        }
        tx.commit().step(step)
    }

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

    /// Tags a device, creating the tag if needed (as LAVA's `devices.tags.add`).
    pub fn add_device_tag(&mut self, hostname: &str, tag: &str) -> Result<(), Error> {
        if tag.trim().is_empty() {
            return Err(Error::Invalid {
                what: "tag name",
                reason: "it is empty".into(),
            });
        }
        let tx = self.write_tx("tagging a device")?;
        let device = device_id(&tx, hostname)?;
        tx.execute("INSERT OR IGNORE INTO tags (name) VALUES (?1)", [tag])
            .step("tagging a device")?;
        let tag = tag_id(&tx, tag)?;
        tx.execute(
            "INSERT OR IGNORE INTO device_tags (device_id, tag_id) VALUES (?1, ?2)",
            params![device, tag],
        )
        .step("tagging a device")?;
        tx.commit().step("tagging a device")
    }

    /// Removes a tag from a device; [`Error::NotFound`] if it was not tagged so.
    pub fn remove_device_tag(&mut self, hostname: &str, tag: &str) -> Result<(), Error> {
        let tx = self.write_tx("untagging a device")?;
        let device = device_id(&tx, hostname)?;
        let tag_row = tag_id(&tx, tag)?;
        let n = tx
            .execute(
                "DELETE FROM device_tags WHERE device_id = ?1 AND tag_id = ?2",
                params![device, tag_row],
            )
            .step("untagging a device")?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "device tag",
                name: format!("{hostname}:{tag}"),
            });
        }
        tx.commit().step("untagging a device")
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
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9)",
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
                "{DEVICE_SELECT} WHERE (?1 OR d.health <> 5) ORDER BY d.hostname"
            ))
            .step("listing devices")?;
        let rows = stmt
            .query_map([include_retired], device_row)
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
        let n = self
            .conn
            .execute(
                "UPDATE devices SET dictionary = ?2 WHERE hostname = ?1",
                params![hostname, dictionary],
            )
            .step("setting a device dictionary")?;
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
        if let Some(dt) = &update.device_type {
            let type_id = device_type_id(&tx, dt)?;
            tx.execute(
                "UPDATE devices SET device_type_id = ?2 WHERE id = ?1",
                params![id, type_id],
            )
            .step(step)?;
        }
        if let Some(v) = &update.description {
            tx.execute(
                "UPDATE devices SET description = ?2 WHERE id = ?1",
                params![id, v],
            )
            .step(step)?;
        }
        if let Some(v) = &update.worker_name {
            tx.execute(
                "UPDATE devices SET worker_name = ?2 WHERE id = ?1",
                params![id, v],
            )
            .step(step)?;
        }
        if let Some(v) = update.is_public {
            tx.execute(
                "UPDATE devices SET is_public = ?2 WHERE id = ?1",
                params![id, v],
            )
            .step(step)?;
        }
        if let Some(v) = &update.owner_user {
            let uid = opt_user_id(&tx, v.as_deref())?;
            tx.execute(
                "UPDATE devices SET owner_user_id = ?2 WHERE id = ?1",
                params![id, uid],
            )
            .step(step)?;
        }
        if let Some(v) = &update.owner_group {
            let gid = opt_group_id(&tx, v.as_deref())?;
            tx.execute(
                "UPDATE devices SET owner_group_id = ?2 WHERE id = ?1",
                params![id, gid],
            )
            .step(step)?;
        }
        let device = read_device(&tx, hostname)?.ok_or_else(|| Error::NotFound {
            kind: "device",
            name: hostname.to_owned(),
        })?;
        tx.commit().step(step)?;
        Ok(device)
    }

    /// Sets a device's health (admin action, `put_into_maintenance_mode`, ...).
    ///
    /// Retiring a device cancels the job holding it, in the same transaction.
    pub fn set_device_health(
        &mut self,
        hostname: &str,
        health: DeviceHealth,
    ) -> Result<Changes, Error> {
        let step = "setting device health";
        let tx = self.write_tx(step)?;
        let device = read_device(&tx, hostname)?.ok_or_else(|| Error::NotFound {
            kind: "device",
            name: hostname.to_owned(),
        })?;
        let mut changes = Changes::default();
        if device.health != health {
            tx.execute(
                "UPDATE devices SET health = ?2 WHERE hostname = ?1",
                params![hostname, health.code()],
            )
            .step(step)?;
            record_device(&tx, &device.hostname, device.state, health, &mut changes)?;
        }
        if health == DeviceHealth::Retired
            && let Some(job) = device.current_job
        {
            jobs::cancel_in(&tx, job, &mut changes)?;
        }
        tx.commit().step(step)?;
        Ok(changes)
    }
}

/// Updates the device's state (and health, when given) inside a job transition.
pub(crate) fn set_device_state(
    conn: &Connection,
    device_row_id: i64,
    state: DeviceState,
    health: Option<DeviceHealth>,
    changes: &mut Changes,
) -> Result<(), Error> {
    let step = "updating device state";
    let (hostname, old_state, old_health): (String, i64, i64) = conn
        .query_row(
            "SELECT hostname, state, health FROM devices WHERE id = ?1",
            [device_row_id],
            |r| r.try_into(),
        )
        .step(step)?;
    let old_health = decode(
        "devices",
        "device health",
        old_health,
        DeviceHealth::from_code,
    )?;
    let new_health = health.unwrap_or(old_health);
    if old_state == state.code() && old_health == new_health {
        return Ok(());
    }
    conn.execute(
        "UPDATE devices SET state = ?2, health = ?3 WHERE id = ?1",
        params![device_row_id, state.code(), new_health.code()],
    )
    .step(step)?;
    record_device(conn, &hostname, state, new_health, changes)
}

/// Records a device's change with what its event shows, read in the same transaction: its
/// type, worker and the job holding it now.
fn record_device(
    conn: &Connection,
    hostname: &str,
    state: DeviceState,
    health: DeviceHealth,
    changes: &mut Changes,
) -> Result<(), Error> {
    let step = "reading a changed device";
    let (device_type, worker, job, sub_id): (String, Option<String>, Option<i64>, Option<String>) =
        conn.prepare_cached(
            "SELECT t.name, d.worker_name, j.id, \
             CASE WHEN j.target_group IS NULL THEN NULL ELSE j.sub_id END \
             FROM devices d JOIN device_types t ON t.id = d.device_type_id \
             LEFT JOIN jobs j ON j.id = (SELECT c.id FROM jobs c \
               WHERE c.actual_device_id = d.id AND c.state IN (1, 2, 3, 4) ORDER BY c.id LIMIT 1) \
             WHERE d.hostname = ?1",
        )
        .step(step)?
        .query_row([hostname], |r| r.try_into())
        .step(step)?;
    changes.device(DeviceChange {
        hostname: hostname.to_owned(),
        state,
        health,
        device_type,
        worker,
        job: job.map(|id| CurrentJob {
            id: JobId(id),
            sub_id,
        }),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::store;

    #[test]
    fn tags_and_aliases_update_in_place() {
        let (_dir, mut store) = store();
        store
            .create_device_type(&NewDeviceType::named("qemu"))
            .unwrap();
        store
            .create_device_type(&NewDeviceType::named("bbb"))
            .unwrap();
        let usb = store.create_tag("usb", Some("has USB")).unwrap();
        store.create_tag("hdmi", None).unwrap();
        let renamed = store.update_tag(usb.id, Some("usb3"), None).unwrap();
        assert_eq!(
            (renamed.name.as_str(), renamed.description.as_deref()),
            ("usb3", Some("has USB"))
        );
        let cleared = store.update_tag(usb.id, None, Some(None)).unwrap();
        assert_eq!((cleared.name.as_str(), cleared.description), ("usb3", None));
        assert!(matches!(
            store.update_tag(usb.id, Some("hdmi"), None),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.update_tag(TagId(999), None, None),
            Err(Error::NotFound { .. })
        ));

        store.add_alias("kvm", "qemu").unwrap();
        store.update_alias("kvm", None, Some("bbb")).unwrap();
        store.update_alias("kvm", Some("beagle"), None).unwrap();
        assert_eq!(
            store.aliases().unwrap(),
            vec![("beagle".to_owned(), "bbb".to_owned())]
        );
        assert!(matches!(
            store.update_alias("beagle", None, Some("nope")),
            Err(Error::NotFound {
                kind: "device type",
                ..
            })
        ));
        assert!(matches!(
            store.update_alias("kvm", None, None),
            Err(Error::NotFound { kind: "alias", .. })
        ));
    }

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
    fn device_types_and_aliases() {
        let (_dir, mut store) = store();
        let dt = store
            .create_device_type(&NewDeviceType::named("qemu"))
            .unwrap();
        assert_eq!(store.device_type("qemu").unwrap(), Some(dt.clone()));
        assert!(matches!(
            store.create_device_type(&NewDeviceType::named("qemu")),
            Err(Error::AlreadyExists {
                kind: "device type",
                ..
            })
        ));
        store.add_alias("kvm", "qemu").unwrap();
        assert_eq!(store.resolve_device_type("kvm").unwrap(), Some(dt));
        assert_eq!(store.device_type("kvm").unwrap(), None);
        assert!(matches!(
            store.add_alias("kvm", "qemu"),
            Err(Error::AlreadyExists { kind: "alias", .. })
        ));
        assert!(matches!(
            store.add_alias("x", "nope"),
            Err(Error::NotFound {
                kind: "device type",
                ..
            })
        ));
        let updated = store
            .update_device_type(
                "qemu",
                &DeviceTypeUpdate {
                    health_frequency: Some(3),
                    health_denominator: Some(HealthDenominator::Jobs),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(updated.health_frequency, 3);
        assert_eq!(updated.health_denominator, HealthDenominator::Jobs);
        assert_eq!(store.aliases().unwrap(), [("kvm".into(), "qemu".into())]);
        store.remove_alias("kvm").unwrap();
        assert!(store.resolve_device_type("kvm").unwrap().is_none());
        assert_eq!("jobs".parse::<HealthDenominator>().unwrap().code(), 1);
        assert!("days".parse::<HealthDenominator>().is_err());
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
