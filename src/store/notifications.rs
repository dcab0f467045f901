//! Notification outcomes (one row per delivery target of a firing, pending until its
//! retries end) and the users' outbound callback secrets, which a callback's `token:` names.

use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use super::error::{Error, Step};
use super::users::user_id;
use super::{Store, now, ts_from_sql, ts_to_sql};
use crate::model::{JobId, JobState};

/// How a notification is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationMethod {
    /// E-mail through the SMTP relay.
    Email,
    /// An IRC private message.
    Irc,
    /// An HTTP callback.
    Callback,
}

impl NotificationMethod {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationMethod::Email => "email",
            NotificationMethod::Irc => "irc",
            NotificationMethod::Callback => "callback",
        }
    }

    fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "email" => Ok(NotificationMethod::Email),
            "irc" => Ok(NotificationMethod::Irc),
            "callback" => Ok(NotificationMethod::Callback),
            other => Err(corrupt(format!("unknown method `{other}`"))),
        }
    }
}

/// Where one delivery stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationStatus {
    /// Being delivered (or retried).
    Pending,
    /// Delivered after this many attempts.
    Sent {
        /// Attempts it took.
        attempts: u32,
    },
    /// Every attempt failed.
    Failed {
        /// Attempts made (0: not attempted, e.g. no SMTP relay configured).
        attempts: u32,
        /// The last attempt's error.
        error: String,
    },
}

impl NotificationStatus {
    /// The stored and wire name: `pending`, `sent` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Sent { .. } => "sent",
            NotificationStatus::Failed { .. } => "failed",
        }
    }
}

/// Identifies a notification row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotificationId(pub i64);

/// A delivery target about to be notified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// How.
    pub method: NotificationMethod,
    /// E-mail address, `nick@server`, or the callback URL as written.
    pub target: String,
}

/// One stored delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The row.
    pub id: NotificationId,
    /// The job.
    pub job: JobId,
    /// The job state that fired it (Running or Finished).
    pub job_state: JobState,
    /// How.
    pub method: NotificationMethod,
    /// To whom or where.
    pub target: String,
    /// Where it stands.
    pub status: NotificationStatus,
    /// When the firing started.
    pub created: OffsetDateTime,
    /// When the status last changed.
    pub updated: OffsetDateTime,
}

fn corrupt(detail: String) -> Error {
    Error::Corrupt {
        table: "notifications",
        detail,
    }
}

impl Store {
    /// Records the targets of one firing of `job`'s notifications (at `state`) as pending;
    /// returns their ids in the same order.
    pub fn add_notifications(
        &mut self,
        job: JobId,
        state: JobState,
        targets: &[NewNotification],
    ) -> Result<Vec<NotificationId>, Error> {
        let step = "recording notifications";
        if !matches!(state, JobState::Running | JobState::Finished) {
            return Err(Error::Invalid {
                what: "notification",
                reason: format!("notifications fire at Running or Finished, not {state}"),
            });
        }
        let tx = self.write_tx(step)?;
        let at = ts_to_sql(now());
        let mut ids = Vec::with_capacity(targets.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO notifications (job_id, job_state, method, target, created, \
                     updated) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                )
                .step(step)?;
            for t in targets {
                stmt.execute(params![
                    job.0,
                    state.code(),
                    t.method.as_str(),
                    t.target,
                    at
                ])
                .step(step)?;
                ids.push(NotificationId(tx.last_insert_rowid()));
            }
        }
        tx.commit().step(step)?;
        Ok(ids)
    }

    /// Records how a delivery ended.
    pub fn finish_notification(
        &mut self,
        id: NotificationId,
        status: &NotificationStatus,
    ) -> Result<(), Error> {
        let (attempts, error) = match status {
            NotificationStatus::Pending => (0, None),
            NotificationStatus::Sent { attempts } => (*attempts, None),
            NotificationStatus::Failed { attempts, error } => (*attempts, Some(error.as_str())),
        };
        let updated = self
            .conn
            .execute(
                "UPDATE notifications SET status = ?2, attempts = ?3, last_error = ?4, \
                 updated = ?5 WHERE id = ?1",
                params![id.0, status.as_str(), attempts, error, ts_to_sql(now())],
            )
            .step("recording a notification outcome")?;
        if updated == 0 {
            return Err(Error::NotFound {
                kind: "notification",
                name: id.0.to_string(),
            });
        }
        Ok(())
    }

    /// A job's notifications, oldest first.
    pub fn notifications(&self, job: JobId) -> Result<Vec<Notification>, Error> {
        let step = "reading notifications";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, job_state, method, target, status, attempts, last_error, created, \
                 updated FROM notifications WHERE job_id = ?1 ORDER BY id",
            )
            .step(step)?;
        type Row = (
            i64,
            i64,
            String,
            String,
            String,
            u32,
            Option<String>,
            String,
            String,
        );
        let rows = stmt
            .query_map([job.0], |r| r.try_into())
            .step(step)?
            .collect::<Result<Vec<Row>, _>>()
            .step(step)?;
        rows.into_iter()
            .map(
                |(id, state, method, target, status, attempts, error, created, updated)| {
                    let status = match (status.as_str(), error) {
                        ("pending", _) => NotificationStatus::Pending,
                        ("sent", _) => NotificationStatus::Sent { attempts },
                        ("failed", Some(error)) => NotificationStatus::Failed { attempts, error },
                        (other, _) => return Err(corrupt(format!("bad status `{other}`"))),
                    };
                    Ok(Notification {
                        id: NotificationId(id),
                        job,
                        job_state: JobState::from_code(state)
                            .ok_or_else(|| corrupt(format!("bad job state {state}")))?,
                        method: NotificationMethod::parse(&method)?,
                        target,
                        status,
                        created: ts_from_sql("notifications", &created)?,
                        updated: ts_from_sql("notifications", &updated)?,
                    })
                },
            )
            .collect()
    }

    /// Sets `username`'s outbound callback secret `name` (replacing an earlier one).
    pub fn set_callback_secret(
        &mut self,
        username: &str,
        name: &str,
        secret: &str,
    ) -> Result<(), Error> {
        if name.trim().is_empty() || secret.is_empty() {
            return Err(Error::Invalid {
                what: "callback secret",
                reason: "the name and the secret must not be empty".into(),
            });
        }
        let user = user_id(&self.conn, username)?;
        self.conn
            .execute(
                "INSERT INTO callback_secrets (user_id, name, secret, created) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (user_id, name) DO UPDATE SET secret = ?3, created = ?4",
                params![user.0, name, secret, ts_to_sql(now())],
            )
            .step("setting a callback secret")?;
        Ok(())
    }

    /// Removes `username`'s callback secret `name`; [`Error::NotFound`] if there is none.
    pub fn remove_callback_secret(&mut self, username: &str, name: &str) -> Result<(), Error> {
        let user = user_id(&self.conn, username)?;
        let removed = self
            .conn
            .execute(
                "DELETE FROM callback_secrets WHERE user_id = ?1 AND name = ?2",
                params![user.0, name],
            )
            .step("removing a callback secret")?;
        if removed == 0 {
            return Err(Error::NotFound {
                kind: "callback secret",
                name: format!("{username}/{name}"),
            });
        }
        Ok(())
    }

    /// The names of `username`'s callback secrets (never the secrets), sorted.
    pub fn callback_secret_names(&self, username: &str) -> Result<Vec<String>, Error> {
        let step = "listing callback secrets";
        let user = user_id(&self.conn, username)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM callback_secrets WHERE user_id = ?1 ORDER BY name")
            .step(step)?;
        stmt.query_map([user.0], |r| r.get(0))
            .step(step)?
            .collect::<Result<Vec<String>, _>>()
            .step(step)
    }

    /// The secret `username` stored as `name`, if any.
    pub fn callback_secret(&self, username: &str, name: &str) -> Result<Option<String>, Error> {
        self.conn
            .query_row(
                "SELECT s.secret FROM callback_secrets s JOIN users u ON u.id = s.user_id \
                 WHERE u.username = ?1 AND s.name = ?2",
                params![username, name],
                |r| r.get(0),
            )
            .optional()
            .step("reading a callback secret")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::store;
    use crate::store::{NewJob, NewUser};

    const JOB: &str =
        "device_type: qemu\njob_name: n\ntimeouts:\n  job: {minutes: 1}\nactions: []\n";

    #[test]
    fn outcomes_move_from_pending_to_sent_or_failed() {
        let (_dir, mut store) = store();
        store.create_user(&NewUser::named("alice")).unwrap();
        let job = store.insert_job(&NewJob::new("alice", JOB)).unwrap();
        let targets = [
            NewNotification {
                method: NotificationMethod::Email,
                target: "a@example.com".into(),
            },
            NewNotification {
                method: NotificationMethod::Callback,
                target: "http://127.0.0.1:9/hook".into(),
            },
        ];
        assert!(matches!(
            store.add_notifications(job.id, JobState::Scheduled, &targets),
            Err(Error::Invalid { .. })
        ));
        let ids = store
            .add_notifications(job.id, JobState::Finished, &targets)
            .unwrap();
        let pending = store.notifications(job.id).unwrap();
        assert_eq!(pending.len(), 2);
        assert!(
            pending
                .iter()
                .all(|n| n.status == NotificationStatus::Pending)
        );
        store
            .finish_notification(ids[0], &NotificationStatus::Sent { attempts: 1 })
            .unwrap();
        let failed = NotificationStatus::Failed {
            attempts: 3,
            error: "connection refused".into(),
        };
        store.finish_notification(ids[1], &failed).unwrap();
        let done = store.notifications(job.id).unwrap();
        assert_eq!(done[0].method, NotificationMethod::Email);
        assert_eq!(done[0].status, NotificationStatus::Sent { attempts: 1 });
        assert_eq!(done[1].status, failed);
        assert_eq!(done[1].job_state, JobState::Finished);
        assert!(matches!(
            store.finish_notification(NotificationId(999), &failed),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn version_1_databases_upgrade_with_their_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let mut old = Store::open_with(&path, &crate::store::migrate::MIGRATIONS[..1]).unwrap();
            assert_eq!(old.schema_version().unwrap(), 1);
            old.create_user(&NewUser::named("alice")).unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            crate::store::SCHEMA_VERSION
        );
        store.set_callback_secret("alice", "ci", "s").unwrap();
        let job = store.insert_job(&NewJob::new("alice", JOB)).unwrap();
        assert!(store.notifications(job.id).unwrap().is_empty());
    }

    #[test]
    fn callback_secrets_by_name() {
        let (_dir, mut store) = store();
        store.create_user(&NewUser::named("alice")).unwrap();
        store.create_user(&NewUser::named("bob")).unwrap();
        store.set_callback_secret("alice", "ci", "s3cret").unwrap();
        store.set_callback_secret("alice", "ci", "s3cret2").unwrap();
        assert_eq!(
            store.callback_secret("alice", "ci").unwrap().as_deref(),
            Some("s3cret2")
        );
        assert_eq!(store.callback_secret("bob", "ci").unwrap(), None);
        assert_eq!(store.callback_secret_names("alice").unwrap(), ["ci"]);
        assert!(matches!(
            store.set_callback_secret("alice", " ", "x"),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            store.set_callback_secret("carol", "ci", "x"),
            Err(Error::NotFound { .. })
        ));
        store.remove_callback_secret("alice", "ci").unwrap();
        assert!(matches!(
            store.remove_callback_secret("alice", "ci"),
            Err(Error::NotFound { .. })
        ));
    }
}
