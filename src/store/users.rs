//! Users, groups and API tokens.
//!
//! A token secret is 128 characters of `[0-9a-z]` (LAVA's format) from the OS random source.
//! Only its SHA-256 is stored, under a UNIQUE index: a lookup is by hash, so the time it
//! takes does not depend on how much of a guessed secret is right.

use rusqlite::{OptionalExtension, Row, params};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::error::{Error, Step, unique_or};
use super::update::SetColumns;
use super::{Store, now, opt_ts_from_sql, ts_from_sql, ts_to_sql};
use crate::model::{GroupId, UserId};

/// A token's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenId(pub i64);

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Row id.
    pub id: UserId,
    /// Unique login name.
    pub username: String,
    /// E-mail address, possibly empty.
    pub email: String,
    /// Superusers may do everything.
    pub is_superuser: bool,
    /// Inactive users cannot authenticate.
    pub is_active: bool,
    /// When the account was created.
    pub date_joined: OffsetDateTime,
}

/// What [`Store::create_user`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Unique login name.
    pub username: String,
    /// E-mail address, possibly empty.
    pub email: String,
    /// Whether the user is a superuser.
    pub is_superuser: bool,
}

impl NewUser {
    /// An ordinary user with no e-mail address.
    pub fn named(username: impl Into<String>) -> NewUser {
        NewUser {
            username: username.into(),
            email: String::new(),
            is_superuser: false,
        }
    }
}

/// A group of users (job visibility, device ownership).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Row id.
    pub id: GroupId,
    /// Unique name.
    pub name: String,
}

/// An API token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Row id.
    pub id: TokenId,
    /// Owner.
    pub user: UserId,
    /// Free text.
    pub description: String,
    /// Creation time.
    pub created: OffsetDateTime,
    /// Last successful authentication with it.
    pub last_used: Option<OffsetDateTime>,
}

/// A freshly created token and its secret, which is not stored and cannot be shown again.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    /// The stored token.
    pub token: Token,
    /// The secret to hand to the user.
    pub secret: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &self.token)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Length of a token secret, as in LAVA.
const SECRET_LEN: usize = 128;
/// Characters of a token secret, as in LAVA.
const SECRET_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A uniformly random secret of [`SECRET_LEN`] characters from [`SECRET_ALPHABET`].
fn new_secret() -> Result<String, Error> {
    let mut secret = String::with_capacity(SECRET_LEN);
    let mut buf = [0u8; 64];
    while secret.len() < SECRET_LEN {
        getrandom::fill(&mut buf).map_err(Error::Random)?;
        for &byte in &buf {
            // Rejection sampling: 252 = 7 * 36, so `byte % 36` stays uniform.
            if byte < 252 && secret.len() < SECRET_LEN {
                secret.push(char::from(SECRET_ALPHABET[usize::from(byte % 36)]));
            }
        }
    }
    Ok(secret)
}

/// The stored form of a secret.
fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Columns read by [`user_from_row`].
const USER_COLUMNS: &str = "u.id, u.username, u.email, u.is_superuser, u.is_active, u.date_joined";

/// A raw user row; the timestamp is parsed afterwards.
type UserRow = (i64, String, String, bool, bool, String);

fn user_row(row: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn user_from_row(raw: UserRow) -> Result<User, Error> {
    let (id, username, email, is_superuser, is_active, joined) = raw;
    Ok(User {
        id: UserId(id),
        username,
        email,
        is_superuser,
        is_active,
        date_joined: ts_from_sql("users", &joined)?,
    })
}

type TokenRow = (i64, i64, String, String, Option<String>);

fn token_row(row: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn token_from_row(raw: TokenRow) -> Result<Token, Error> {
    let (id, user, description, created, last_used) = raw;
    Ok(Token {
        id: TokenId(id),
        user: UserId(user),
        description,
        created: ts_from_sql("api_tokens", &created)?,
        last_used: opt_ts_from_sql("api_tokens", last_used)?,
    })
}

/// The id of `username`, or [`Error::NotFound`].
pub(crate) fn user_id(conn: &rusqlite::Connection, username: &str) -> Result<UserId, Error> {
    conn.query_row(
        "SELECT id FROM users WHERE username = ?1",
        [username],
        |row| row.get(0),
    )
    .optional()
    .step("looking up a user")?
    .map(UserId)
    .ok_or_else(|| Error::NotFound {
        kind: "user",
        name: username.to_owned(),
    })
}

/// The id of group `name`, or [`Error::NotFound`].
pub(crate) fn group_id(conn: &rusqlite::Connection, name: &str) -> Result<GroupId, Error> {
    conn.query_row("SELECT id FROM groups WHERE name = ?1", [name], |row| {
        row.get(0)
    })
    .optional()
    .step("looking up a group")?
    .map(GroupId)
    .ok_or_else(|| Error::NotFound {
        kind: "group",
        name: name.to_owned(),
    })
}

impl Store {
    /// Creates a user; [`Error::AlreadyExists`] if the name is taken.
    pub fn create_user(&mut self, new: &NewUser) -> Result<User, Error> {
        if new.username.trim().is_empty() || new.username.chars().any(char::is_whitespace) {
            return Err(Error::Invalid {
                what: "username",
                reason: format!("`{}` is empty or contains white space", new.username),
            });
        }
        let joined = now();
        self.conn
            .execute(
                "INSERT INTO users (username, email, is_superuser, is_active, date_joined) \
                 VALUES (?1, ?2, ?3, 1, ?4)",
                params![new.username, new.email, new.is_superuser, ts_to_sql(joined)],
            )
            .map_err(unique_or("user", &new.username, "creating a user"))?;
        Ok(User {
            id: UserId(self.conn.last_insert_rowid()),
            username: new.username.clone(),
            email: new.email.clone(),
            is_superuser: new.is_superuser,
            is_active: true,
            date_joined: joined,
        })
    }

    /// The user called `username`.
    pub fn user(&self, username: &str) -> Result<Option<User>, Error> {
        self.conn
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.username = ?1"),
                [username],
                user_row,
            )
            .optional()
            .step("reading a user")?
            .map(user_from_row)
            .transpose()
    }

    /// The user with row id `id`.
    pub fn user_by_id(&self, id: UserId) -> Result<Option<User>, Error> {
        self.conn
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?1"),
                [id.0],
                user_row,
            )
            .optional()
            .step("reading a user")?
            .map(user_from_row)
            .transpose()
    }

    /// Every user, by username.
    pub fn users(&self) -> Result<Vec<User>, Error> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {USER_COLUMNS} FROM users u ORDER BY u.username"
            ))
            .step("listing users")?;
        let rows = stmt
            .query_map([], user_row)
            .step("listing users")?
            .collect::<Result<Vec<_>, _>>()
            .step("listing users")?;
        rows.into_iter().map(user_from_row).collect()
    }

    /// Activates or deactivates a user; inactive users cannot authenticate.
    pub fn set_user_active(&mut self, username: &str, active: bool) -> Result<(), Error> {
        let n = SetColumns::new("users", "username")
            .set("is_active", active)
            .run(&self.conn, username, "updating a user")?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "user",
                name: username.to_owned(),
            });
        }
        Ok(())
    }

    /// Creates a group; [`Error::AlreadyExists`] if the name is taken.
    pub fn create_group(&mut self, name: &str) -> Result<Group, Error> {
        if name.trim().is_empty() {
            return Err(Error::Invalid {
                what: "group name",
                reason: "it is empty".into(),
            });
        }
        self.conn
            .execute("INSERT INTO groups (name) VALUES (?1)", [name])
            .map_err(unique_or("group", name, "creating a group"))?;
        Ok(Group {
            id: GroupId(self.conn.last_insert_rowid()),
            name: name.to_owned(),
        })
    }

    /// Every group, by name.
    pub fn groups(&self) -> Result<Vec<Group>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name FROM groups ORDER BY name")
            .step("listing groups")?;
        let groups = stmt
            .query_map([], |row| {
                Ok(Group {
                    id: GroupId(row.get(0)?),
                    name: row.get(1)?,
                })
            })
            .step("listing groups")?
            .collect::<Result<Vec<_>, _>>()
            .step("listing groups")?;
        Ok(groups)
    }

    /// Adds `username` to `group` (no-op if already a member).
    pub fn add_group_member(&mut self, group: &str, username: &str) -> Result<(), Error> {
        let tx = self.write_tx("adding a group member")?;
        let gid = group_id(&tx, group)?;
        let uid = user_id(&tx, username)?;
        tx.execute(
            "INSERT OR IGNORE INTO group_members (group_id, user_id) VALUES (?1, ?2)",
            params![gid.0, uid.0],
        )
        .step("adding a group member")?;
        tx.commit().step("adding a group member")
    }

    /// Makes `username` a member of exactly the existing groups among `groups` (names that
    /// are no group are skipped, as LAVA's `set_user_groups` does); returns the skipped names.
    pub fn set_user_groups(
        &mut self,
        username: &str,
        groups: &[String],
    ) -> Result<Vec<String>, Error> {
        let step = "setting a user's groups";
        let tx = self.write_tx(step)?;
        let uid = user_id(&tx, username)?;
        tx.execute("DELETE FROM group_members WHERE user_id = ?1", [uid.0])
            .step(step)?;
        let mut skipped = Vec::new();
        for g in groups {
            let gid: Option<i64> = tx
                .query_row("SELECT id FROM groups WHERE name = ?1", [g], |r| r.get(0))
                .optional()
                .step(step)?;
            match gid {
                Some(gid) => {
                    tx.execute(
                        "INSERT OR IGNORE INTO group_members (group_id, user_id) VALUES (?1, ?2)",
                        params![gid, uid.0],
                    )
                    .step(step)?;
                }
                None => skipped.push(g.clone()),
            }
        }
        tx.commit().step(step)?;
        Ok(skipped)
    }

    /// The groups `username` belongs to, by name.
    pub fn user_groups(&self, username: &str) -> Result<Vec<Group>, Error> {
        let uid = user_id(&self.conn, username)?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT g.id, g.name FROM groups g JOIN group_members m ON m.group_id = g.id \
                 WHERE m.user_id = ?1 ORDER BY g.name",
            )
            .step("listing a user's groups")?;
        let groups = stmt
            .query_map([uid.0], |row| {
                Ok(Group {
                    id: GroupId(row.get(0)?),
                    name: row.get(1)?,
                })
            })
            .step("listing a user's groups")?
            .collect::<Result<Vec<_>, _>>()
            .step("listing a user's groups")?;
        Ok(groups)
    }

    /// The usernames in `group`, sorted.
    pub fn group_members(&self, group: &str) -> Result<Vec<String>, Error> {
        let gid = group_id(&self.conn, group)?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT u.username FROM users u JOIN group_members m ON m.user_id = u.id \
                 WHERE m.group_id = ?1 ORDER BY u.username",
            )
            .step("listing group members")?;
        let names = stmt
            .query_map([gid.0], |row| row.get(0))
            .step("listing group members")?
            .collect::<Result<Vec<String>, _>>()
            .step("listing group members")?;
        Ok(names)
    }

    /// Creates an API token for `username`. The secret is in the result and nowhere else.
    pub fn create_token(&mut self, username: &str, description: &str) -> Result<NewToken, Error> {
        let secret = new_secret()?;
        let created = now();
        let tx = self.write_tx("creating a token")?;
        let uid = user_id(&tx, username)?;
        tx.execute(
            "INSERT INTO api_tokens (user_id, secret_sha256, description, created) \
             VALUES (?1, ?2, ?3, ?4)",
            params![uid.0, hash_secret(&secret), description, ts_to_sql(created)],
        )
        .step("creating a token")?;
        let id = TokenId(tx.last_insert_rowid());
        tx.commit().step("creating a token")?;
        Ok(NewToken {
            token: Token {
                id,
                user: uid,
                description: description.to_owned(),
                created,
                last_used: None,
            },
            secret,
        })
    }

    /// The tokens of `username`, oldest first.
    pub fn tokens(&self, username: &str) -> Result<Vec<Token>, Error> {
        let uid = user_id(&self.conn, username)?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, user_id, description, created, last_used FROM api_tokens \
                 WHERE user_id = ?1 ORDER BY id",
            )
            .step("listing tokens")?;
        let rows = stmt
            .query_map([uid.0], token_row)
            .step("listing tokens")?
            .collect::<Result<Vec<_>, _>>()
            .step("listing tokens")?;
        rows.into_iter().map(token_from_row).collect()
    }

    /// Deletes a token of `username`; [`Error::NotFound`] if it has no such token.
    pub fn delete_token(&mut self, username: &str, token: TokenId) -> Result<(), Error> {
        let uid = user_id(&self.conn, username)?;
        let n = self
            .conn
            .execute(
                "DELETE FROM api_tokens WHERE id = ?1 AND user_id = ?2",
                params![token.0, uid.0],
            )
            .step("deleting a token")?;
        if n == 0 {
            return Err(Error::NotFound {
                kind: "token",
                name: token.0.to_string(),
            });
        }
        Ok(())
    }

    /// XML-RPC authentication: the active user `username` if `secret` is one of its tokens.
    /// Bumps the token's `last_used`.
    pub fn authenticate(&mut self, username: &str, secret: &str) -> Result<Option<User>, Error> {
        self.authenticate_by(Some(username), secret)
    }

    /// REST authentication (`Authorization: Token <secret>`): the active owner of `secret`.
    /// Bumps the token's `last_used`.
    pub fn authenticate_token(&mut self, secret: &str) -> Result<Option<User>, Error> {
        self.authenticate_by(None, secret)
    }

    fn authenticate_by(
        &mut self,
        username: Option<&str>,
        secret: &str,
    ) -> Result<Option<User>, Error> {
        let hash = hash_secret(secret);
        let found = self
            .conn
            .query_row(
                &format!(
                    "SELECT t.id, {USER_COLUMNS} FROM api_tokens t JOIN users u ON u.id = t.user_id \
                     WHERE t.secret_sha256 = ?1 AND (?2 IS NULL OR u.username = ?2) \
                     AND u.is_active = 1"
                ),
                params![hash, username],
                |row| {
                    let token: i64 = row.get(0)?;
                    let user = (
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                    );
                    Ok((token, user))
                },
            )
            .optional()
            .step("authenticating a token")?;
        let Some((token, user)) = found else {
            return Ok(None);
        };
        SetColumns::new("api_tokens", "id")
            .set("last_used", ts_to_sql(now()))
            .run(&self.conn, token, "recording token use")?;
        user_from_row(user).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::store;

    #[test]
    fn users_round_trip_and_duplicates() {
        let (_dir, mut store) = store();
        let alice = store
            .create_user(&NewUser {
                username: "alice".into(),
                email: "alice@example.com".into(),
                is_superuser: true,
            })
            .unwrap();
        assert_eq!(store.user("alice").unwrap().as_ref(), Some(&alice));
        assert_eq!(store.user_by_id(alice.id).unwrap().as_ref(), Some(&alice));
        let err = store.create_user(&NewUser::named("alice")).unwrap_err();
        assert!(
            matches!(&err, Error::AlreadyExists { kind: "user", name } if name == "alice"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "user `alice` already exists");
        assert!(matches!(
            store.create_user(&NewUser::named("bad name")),
            Err(Error::Invalid { .. })
        ));
        store.create_user(&NewUser::named("bob")).unwrap();
        let names: Vec<_> = store
            .users()
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
    }

    #[test]
    fn groups_and_members() {
        let (_dir, mut store) = store();
        store.create_user(&NewUser::named("alice")).unwrap();
        store.create_group("lab").unwrap();
        assert!(matches!(
            store.create_group("lab"),
            Err(Error::AlreadyExists { kind: "group", .. })
        ));
        store.add_group_member("lab", "alice").unwrap();
        store.add_group_member("lab", "alice").unwrap();
        assert_eq!(store.group_members("lab").unwrap(), ["alice"]);
        assert_eq!(store.user_groups("alice").unwrap()[0].name, "lab");
        assert!(matches!(
            store.add_group_member("lab", "nobody"),
            Err(Error::NotFound { kind: "user", .. })
        ));
    }

    #[test]
    fn tokens_authenticate_by_hash() {
        let (_dir, mut store) = store();
        store.create_user(&NewUser::named("alice")).unwrap();
        store.create_user(&NewUser::named("bob")).unwrap();
        let new = store.create_token("alice", "ci").unwrap();
        assert_eq!(new.secret.len(), SECRET_LEN);
        assert!(
            new.secret
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
        assert!(!format!("{new:?}").contains(&new.secret));
        let other = store.create_token("alice", "second").unwrap();
        assert_ne!(new.secret, other.secret);

        let user = store.authenticate("alice", &new.secret).unwrap();
        assert_eq!(user.map(|u| u.username).as_deref(), Some("alice"));
        assert!(store.authenticate("bob", &new.secret).unwrap().is_none());
        assert!(store.authenticate("alice", "wrong").unwrap().is_none());
        let by_secret = store.authenticate_token(&other.secret).unwrap();
        assert_eq!(by_secret.map(|u| u.username).as_deref(), Some("alice"));

        let tokens = store.tokens("alice").unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(tokens[0].last_used.is_some());
        // Nothing stored equals the secret.
        let stored: Vec<u8> = store
            .conn
            .query_row(
                "SELECT secret_sha256 FROM api_tokens WHERE id = ?1",
                [new.token.id.0],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(stored, hash_secret(&new.secret));

        store.set_user_active("alice", false).unwrap();
        assert!(store.authenticate("alice", &new.secret).unwrap().is_none());
        store.set_user_active("alice", true).unwrap();
        store.delete_token("alice", new.token.id).unwrap();
        assert!(store.authenticate("alice", &new.secret).unwrap().is_none());
        assert!(matches!(
            store.create_token("nobody", ""),
            Err(Error::NotFound { kind: "user", .. })
        ));
    }
}
