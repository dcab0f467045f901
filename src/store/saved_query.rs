//! Saved result queries (LAVA's `lava_results_app` Query): an owner's named condition string
//! with its entity, description, flags and results limit. `results.run_query`, notify's
//! named compare queries and `lavabox query` use them.
//!
//! They are always evaluated live through [`Store::custom_query`] (LAVA keeps non-live
//! queries in a materialized view that `refresh_query` rebuilds); refreshing only stamps
//! `last_updated`. The condition string is validated by [`QuerySpec::parse`] before it is
//! stored and parsed again when read, so a stored query always runs.

use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use super::condition::QuerySpec;
use super::error::{Error, Step, unique_or};
use super::joblist::Viewer;
use super::query::QueryRows;
use super::users::{group_id, user_id};
use super::{Store, now, opt_ts_from_sql, ts_from_sql, ts_to_sql};

/// LAVA's smallest results limit (`MinValueValidator(20)`).
pub const MIN_QUERY_LIMIT: u32 = 20;

/// Identifies a saved query row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SavedQueryId(pub i64);

/// A saved query about to be stored.
#[derive(Debug, Clone)]
pub struct NewSavedQuery {
    /// Owner's username.
    pub owner: String,
    /// Name, unique per owner; a slug (letters, digits, `-`, `_`), as LAVA's.
    pub name: String,
    /// What it returns and how it filters.
    pub spec: QuerySpec,
    /// Free text.
    pub description: String,
    /// A group whose members may run and refresh it like the owner.
    pub group: Option<String>,
    /// Listed for everyone in LAVA's UI (lavabox has no UI; kept for the record).
    pub is_published: bool,
    /// LAVA's live flag: a live query has no results limit and cannot be refreshed.
    pub is_live: bool,
    /// Hidden from LAVA's query lists.
    pub is_archived: bool,
    /// Results limit of a non-live query (at least [`MIN_QUERY_LIMIT`]).
    pub limit: u32,
}

impl NewSavedQuery {
    /// A query with LAVA's defaults: unpublished, not live, not archived, limit 200.
    pub fn new(owner: impl Into<String>, name: impl Into<String>, spec: QuerySpec) -> Self {
        NewSavedQuery {
            owner: owner.into(),
            name: name.into(),
            spec,
            description: String::new(),
            group: None,
            is_published: false,
            is_live: false,
            is_archived: false,
            limit: 200,
        }
    }
}

/// A stored query.
#[derive(Debug, Clone)]
pub struct SavedQuery {
    /// Row id.
    pub id: SavedQueryId,
    /// Owner's username.
    pub owner: String,
    /// Name, unique per owner.
    pub name: String,
    /// What it returns and how it filters.
    pub spec: QuerySpec,
    /// Free text.
    pub description: String,
    /// The group whose members may use it like the owner.
    pub group: Option<String>,
    /// Published.
    pub is_published: bool,
    /// Live.
    pub is_live: bool,
    /// Archived.
    pub is_archived: bool,
    /// Results limit of a non-live query.
    pub limit: u32,
    /// When it was last refreshed.
    pub last_updated: Option<OffsetDateTime>,
    /// When it was created.
    pub created: OffsetDateTime,
}

impl SavedQuery {
    /// LAVA's `is_accessible_by`: superusers, the owner and members of the query's group may
    /// run and refresh it (being published does not matter to the API).
    pub fn accessible_by(&self, username: &str, is_superuser: bool, groups: &[String]) -> bool {
        is_superuser
            || self.owner == username
            || self.group.as_ref().is_some_and(|g| groups.contains(g))
    }

    /// How many rows a run asking for `requested` returns: a non-live query's results stop at
    /// its own limit (LAVA's materialized view holds that many), a live one's do not.
    pub fn rows_limit(&self, requested: u32) -> u32 {
        if self.is_live {
            requested
        } else {
            requested.min(self.limit)
        }
    }
}

fn validate(new: &NewSavedQuery) -> Result<(), Error> {
    let slug = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if new.name.is_empty() || new.name.len() > 1024 || !new.name.chars().all(slug) {
        return Err(Error::Invalid {
            what: "query name",
            reason: format!(
                "`{}` must be 1 to 1024 letters, digits, `-` or `_` (a slug, as in LAVA)",
                new.name
            ),
        });
    }
    if new.limit < MIN_QUERY_LIMIT {
        return Err(Error::Invalid {
            what: "query limit",
            reason: format!("{} is below LAVA's minimum of {MIN_QUERY_LIMIT}", new.limit),
        });
    }
    Ok(())
}

const COLUMNS: &str = "q.id, u.username, q.name, q.entity, q.conditions, q.description, \
     g.name, q.is_published, q.is_live, q.is_archived, q.result_limit, q.last_updated, q.created";
const FROM: &str =
    "FROM queries q JOIN users u ON u.id = q.owner_id LEFT JOIN groups g ON g.id = q.group_id";

type Row = (
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    bool,
    bool,
    bool,
    u32,
    Option<String>,
    String,
);

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Row::try_from(r)
}

fn from_row(row: Row) -> Result<SavedQuery, Error> {
    let (id, owner, name, entity, conditions, description, group, published, live, archived) = (
        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9,
    );
    let (limit, last_updated, created) = (row.10, row.11, row.12);
    let spec = QuerySpec::parse(&entity, &conditions).map_err(|e| Error::Corrupt {
        table: "queries",
        detail: format!("query ~{owner}/{name}: {e}"),
    })?;
    Ok(SavedQuery {
        id: SavedQueryId(id),
        owner,
        name,
        spec,
        description,
        group,
        is_published: published,
        is_live: live,
        is_archived: archived,
        limit,
        last_updated: opt_ts_from_sql("queries", last_updated)?,
        created: ts_from_sql("queries", &created)?,
    })
}

impl Store {
    /// Stores a query; [`Error::AlreadyExists`] if the owner has one of that name, and
    /// [`Error::NotFound`] for an unknown owner or group.
    pub fn add_saved_query(&mut self, new: &NewSavedQuery) -> Result<SavedQuery, Error> {
        validate(new)?;
        let step = "adding a saved query";
        let tx = self.write_tx(step)?;
        let owner = user_id(&tx, &new.owner)?;
        let group = new.group.as_deref().map(|g| group_id(&tx, g)).transpose()?;
        tx.execute(
            "INSERT INTO queries (owner_id, group_id, name, description, entity, conditions, \
             is_published, is_live, is_archived, result_limit, created) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                owner.0,
                group.map(|g| g.0),
                new.name,
                new.description,
                new.spec.entity().as_str(),
                new.spec.text(),
                new.is_published,
                new.is_live,
                new.is_archived,
                new.limit,
                ts_to_sql(now()),
            ],
        )
        .map_err(unique_or(
            "query",
            &format!("~{}/{}", new.owner, new.name),
            step,
        ))?;
        let id = tx.last_insert_rowid();
        let query = tx
            .query_row(
                &format!("SELECT {COLUMNS} {FROM} WHERE q.id = ?1"),
                [id],
                read_row,
            )
            .step(step)?;
        tx.commit().step(step)?;
        from_row(query)
    }

    /// `owner`'s query called `name`.
    pub fn saved_query(&self, owner: &str, name: &str) -> Result<Option<SavedQuery>, Error> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} {FROM} WHERE u.username = ?1 AND q.name = ?2"),
                [owner, name],
                read_row,
            )
            .optional()
            .step("reading a saved query")?
            .map(from_row)
            .transpose()
    }

    /// Every saved query, by owner then name.
    pub fn saved_queries(&self) -> Result<Vec<SavedQuery>, Error> {
        let step = "listing saved queries";
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} {FROM} ORDER BY u.username, q.name"
            ))
            .step(step)?;
        let rows = stmt
            .query_map([], read_row)
            .step(step)?
            .collect::<Result<Vec<_>, _>>()
            .step(step)?;
        rows.into_iter().map(from_row).collect()
    }

    /// Deletes `owner`'s query `name`; [`Error::NotFound`] if there is none.
    pub fn remove_saved_query(&mut self, owner: &str, name: &str) -> Result<(), Error> {
        let removed = self
            .conn
            .execute(
                "DELETE FROM queries WHERE name = ?2 AND owner_id = \
                 (SELECT id FROM users WHERE username = ?1)",
                [owner, name],
            )
            .step("removing a saved query")?;
        if removed == 0 {
            return Err(Error::NotFound {
                kind: "query",
                name: format!("~{owner}/{name}"),
            });
        }
        Ok(())
    }

    /// Stamps the query's `last_updated` with now (a refresh: results are always live) and
    /// returns the stamp.
    pub fn refresh_saved_query(&mut self, id: SavedQueryId) -> Result<OffsetDateTime, Error> {
        let at = now();
        let changed = self
            .conn
            .execute(
                "UPDATE queries SET last_updated = ?2 WHERE id = ?1",
                params![id.0, ts_to_sql(at)],
            )
            .step("refreshing a saved query")?;
        if changed == 0 {
            return Err(Error::NotFound {
                kind: "query",
                name: id.0.to_string(),
            });
        }
        Ok(at)
    }

    /// Runs `query` as `viewer` sees the jobs, newest first, at most
    /// [`SavedQuery::rows_limit`]`(requested)` rows.
    pub fn run_saved_query(
        &self,
        query: &SavedQuery,
        viewer: Viewer,
        requested: u32,
    ) -> Result<QueryRows, Error> {
        self.custom_query(
            query.spec.entity(),
            query.spec.conditions(),
            viewer,
            query.rows_limit(requested),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewUser, testutil};

    fn spec(text: &str) -> QuerySpec {
        QuerySpec::parse("testjob", text).expect(text)
    }

    #[test]
    fn stores_finds_runs_and_removes() {
        let (_dir, mut s) = testutil::store();
        let alice = s.create_user(&NewUser::named("alice")).unwrap();
        let bob = s.create_user(&NewUser::named("bob")).unwrap();
        s.create_group("lab").unwrap();
        let mut new = NewSavedQuery::new("alice", "mine", spec("submitter__alice"));
        new.description = "alice's jobs".into();
        new.group = Some("lab".into());
        new.limit = 20;
        let q = s.add_saved_query(&new).unwrap();
        assert_eq!((q.owner.as_str(), q.name.as_str()), ("alice", "mine"));
        assert_eq!(q.group.as_deref(), Some("lab"));
        assert_eq!(q.spec.text(), "submitter__alice");
        assert!(q.last_updated.is_none());
        // Names are unique per owner only.
        assert!(matches!(
            s.add_saved_query(&new),
            Err(Error::AlreadyExists { .. })
        ));
        s.add_saved_query(&NewSavedQuery::new("bob", "mine", spec("")))
            .unwrap();
        for (owner, name) in [("carol", "x"), ("alice", "bad name"), ("alice", "")] {
            let err = s
                .add_saved_query(&NewSavedQuery::new(owner, name, spec("")))
                .unwrap_err();
            assert!(
                matches!(err, Error::NotFound { .. } | Error::Invalid { .. }),
                "{err}"
            );
        }
        let mut low = NewSavedQuery::new("alice", "low", spec(""));
        low.limit = 19;
        assert!(matches!(
            s.add_saved_query(&low),
            Err(Error::Invalid { .. })
        ));
        let names: Vec<_> = s
            .saved_queries()
            .unwrap()
            .into_iter()
            .map(|q| format!("{}/{}", q.owner, q.name))
            .collect();
        assert_eq!(names, ["alice/mine", "bob/mine"]);

        // Runs with the caller's job visibility, newest first, within the query's limit.
        let (public, personal) = testutil::public_and_personal_jobs(&mut s, "alice");
        let q = s.saved_query("alice", "mine").unwrap().expect("stored");
        let ids = |rows: QueryRows| match rows {
            QueryRows::Jobs(j) => j.into_iter().map(|j| j.job.id).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            ids(s.run_saved_query(&q, Viewer::User(alice.id), 200).unwrap()),
            [personal, public]
        );
        assert_eq!(
            ids(s.run_saved_query(&q, Viewer::User(bob.id), 200).unwrap()),
            [public]
        );
        assert_eq!(
            ids(s.run_saved_query(&q, Viewer::Anyone, 1).unwrap()),
            [personal]
        );

        let at = s.refresh_saved_query(q.id).unwrap();
        let q = s.saved_query("alice", "mine").unwrap().expect("stored");
        assert_eq!(
            q.last_updated.map(|t| t.unix_timestamp()),
            Some(at.unix_timestamp())
        );
        s.remove_saved_query("alice", "mine").unwrap();
        assert!(s.saved_query("alice", "mine").unwrap().is_none());
        assert!(matches!(
            s.remove_saved_query("alice", "mine"),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn access_and_limits_follow_lava() {
        let mut q = SavedQuery {
            id: SavedQueryId(1),
            owner: "alice".into(),
            name: "q".into(),
            spec: spec(""),
            description: String::new(),
            group: Some("lab".into()),
            is_published: true,
            is_live: false,
            is_archived: false,
            limit: 50,
            last_updated: None,
            created: OffsetDateTime::UNIX_EPOCH,
        };
        let lab = ["lab".to_owned()];
        assert!(q.accessible_by("alice", false, &[]));
        assert!(q.accessible_by("bob", false, &lab));
        assert!(q.accessible_by("root", true, &[]));
        // Published or not, other users may not run it through the API.
        assert!(!q.accessible_by("bob", false, &["other".to_owned()]));
        assert_eq!(q.rows_limit(200), 50);
        assert_eq!(q.rows_limit(10), 10);
        q.is_live = true;
        assert_eq!(q.rows_limit(200), 200);
    }
}
