-- Web UI accounts: a password (an argon2id PHC string, never the password) per user, and
-- login sessions stored as the SHA-256 of the cookie's secret, as API tokens are.
CREATE TABLE user_passwords (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    phc        TEXT    NOT NULL CHECK (phc LIKE '$argon2%'),
    changed    TEXT    NOT NULL
);

CREATE TABLE web_sessions (
    id             INTEGER PRIMARY KEY,
    secret_sha256  BLOB    NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created        TEXT    NOT NULL,
    last_seen      TEXT    NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
