//! Device tags: the tag list, and which devices carry which tags (jobs require them).

use rusqlite::{Connection, OptionalExtension, params};

use super::Store;
use super::devices::device_id;
use super::error::{Error, Step, unique_or};

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

pub(super) fn device_tags_by_id(conn: &Connection, id: i64) -> Result<Vec<String>, Error> {
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

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::store;

    #[test]
    fn tags_update_in_place() {
        let (_dir, mut store) = store();
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
    }
}
