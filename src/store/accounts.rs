//! Web accounts: a password per user (stored only as the PHC string of a memory-hard hash,
//! which `web::password` computes and checks off the store) and login sessions (stored only
//! as the SHA-256 of the cookie's secret, as API tokens are, so a copy of the database lets
//! nobody in).

use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::error::{Error, Step};
use super::users::user_id;
use super::{Store, User, now, ts_from_sql, ts_to_sql};
use crate::model::UserId;

/// How long a session lives without being used; a login lasts while its user keeps using it.
pub const SESSION_IDLE: Duration = Duration::from_secs(14 * 24 * 3600);

/// How stale `last_seen` may get before a use writes it again (one write per minute of use,
/// not one per request).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A live session: who it is, read back from the secret in the cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's user (active).
    pub user: User,
}

fn session_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A fresh session secret: 32 random bytes, hex.
fn new_session_secret() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Store {
    /// Sets `username`'s password to the PHC string `phc` and ends the user's sessions (a
    /// changed password logs every browser out).
    pub fn set_password(&mut self, username: &str, phc: &str) -> Result<(), Error> {
        let step = "setting a password";
        let tx = self.write_tx(step)?;
        let id = user_id(&tx, username)?;
        tx.execute(
            "INSERT INTO user_passwords (user_id, phc, changed) VALUES (?1, ?2, ?3) \
             ON CONFLICT (user_id) DO UPDATE SET phc = excluded.phc, changed = excluded.changed",
            params![id.0, phc, ts_to_sql(now())],
        )
        .step(step)?;
        tx.execute("DELETE FROM web_sessions WHERE user_id = ?1", [id.0])
            .step(step)?;
        tx.commit().step(step)
    }

    /// The active user `username` and the PHC string of their password; `None` for an
    /// unknown or inactive user, or one without a password.
    pub fn password_of(&self, username: &str) -> Result<Option<(User, String)>, Error> {
        let Some(user) = self.user(username)?.filter(|u| u.is_active) else {
            return Ok(None);
        };
        let phc: Option<String> = self
            .conn
            .query_row(
                "SELECT phc FROM user_passwords WHERE user_id = ?1",
                [user.id.0],
                |row| row.get(0),
            )
            .optional()
            .step("reading a password")?;
        Ok(phc.map(|phc| (user, phc)))
    }

    /// Starts a session for `user`; returns the secret for the cookie (shown only here).
    pub fn create_session(&mut self, user: UserId) -> Result<String, Error> {
        let secret = new_session_secret()?;
        let at = ts_to_sql(now());
        self.conn
            .execute(
                "INSERT INTO web_sessions (secret_sha256, user_id, created, last_seen) \
                 VALUES (?1, ?2, ?3, ?3)",
                params![session_hash(&secret), user.0, at],
            )
            .step("creating a session")?;
        Ok(secret)
    }

    /// The session whose cookie secret is `secret`, if it exists, was used within
    /// [`SESSION_IDLE`] and its user is active; marks it used. An expired session is deleted.
    pub fn session(&mut self, secret: &str) -> Result<Option<Session>, Error> {
        let step = "reading a session";
        let hash = session_hash(secret);
        let found: Option<(i64, i64, String)> = self
            .conn
            .query_row(
                "SELECT id, user_id, last_seen FROM web_sessions WHERE secret_sha256 = ?1",
                [&hash],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .step(step)?;
        let Some((id, user, last_seen)) = found else {
            return Ok(None);
        };
        let at = now();
        let idle = at - ts_from_sql("web_sessions", &last_seen)?;
        if idle > SESSION_IDLE {
            self.conn
                .execute("DELETE FROM web_sessions WHERE id = ?1", [id])
                .step(step)?;
            return Ok(None);
        }
        let Some(user) = self.user_by_id(UserId(user))?.filter(|u| u.is_active) else {
            return Ok(None);
        };
        if idle > TOUCH_EVERY {
            self.conn
                .execute(
                    "UPDATE web_sessions SET last_seen = ?2 WHERE id = ?1",
                    params![id, ts_to_sql(at)],
                )
                .step(step)?;
        }
        Ok(Some(Session { user }))
    }

    /// Ends the session whose cookie secret is `secret` (logging out); unknown ones are
    /// already ended.
    pub fn delete_session(&mut self, secret: &str) -> Result<(), Error> {
        self.conn
            .execute(
                "DELETE FROM web_sessions WHERE secret_sha256 = ?1",
                [session_hash(secret)],
            )
            .step("ending a session")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::NewUser;
    use crate::store::testutil::store;

    #[test]
    fn sessions_are_stored_hashed_and_end_with_a_new_password() {
        let (_dir, mut s) = store();
        let alice = s.create_user(&NewUser::named("alice")).unwrap();
        assert!(s.password_of("alice").unwrap().is_none());
        s.set_password("alice", "$argon2id$v=19$x").unwrap();
        let (user, phc) = s.password_of("alice").unwrap().unwrap();
        assert_eq!((user.id, phc.as_str()), (alice.id, "$argon2id$v=19$x"));
        let secret = s.create_session(alice.id).unwrap();
        assert_eq!(secret.len(), 64);
        let stored: Vec<u8> = s
            .conn
            .query_row("SELECT secret_sha256 FROM web_sessions", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, secret.as_bytes());
        assert_eq!(s.session(&secret).unwrap().unwrap().user.id, alice.id);
        assert!(s.session("not-a-session").unwrap().is_none());
        s.set_password("alice", "$argon2id$v=19$y").unwrap();
        assert!(s.session(&secret).unwrap().is_none());
        let again = s.create_session(alice.id).unwrap();
        s.delete_session(&again).unwrap();
        assert!(s.session(&again).unwrap().is_none());
        // Only memory-hard hashes are stored.
        assert!(s.set_password("alice", "plain").is_err());
    }

    #[test]
    fn inactive_users_have_no_password_nor_session() {
        let (_dir, mut s) = store();
        let bob = s.create_user(&NewUser::named("bob")).unwrap();
        s.set_password("bob", "$argon2id$v=19$x").unwrap();
        let secret = s.create_session(bob.id).unwrap();
        s.set_user_active("bob", false).unwrap();
        assert!(s.password_of("bob").unwrap().is_none());
        assert!(s.session(&secret).unwrap().is_none());
    }
}
