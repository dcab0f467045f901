//! Device types (name and health-check settings) and their aliases.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::error::{Error, Step, unique_or};
use super::update::SetColumns;
use super::{Store, decode};

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
        let step = "updating a device type";
        let tx = self.write_tx(step)?;
        let id = device_type_id(&tx, name)?;
        SetColumns::new("device_types", "id")
            .set_some("description", update.description.clone())
            .set_some("health_frequency", update.health_frequency)
            .set_some(
                "health_denominator",
                update.health_denominator.map(HealthDenominator::code),
            )
            .set_some("disable_health_check", update.disable_health_check)
            .set_some("display", update.display)
            .set_some("owners_only", update.owners_only)
            .run(&tx, id, step)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::store;

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
    fn aliases_update_in_place() {
        let (_dir, mut store) = store();
        store
            .create_device_type(&NewDeviceType::named("qemu"))
            .unwrap();
        store
            .create_device_type(&NewDeviceType::named("bbb"))
            .unwrap();
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
}
