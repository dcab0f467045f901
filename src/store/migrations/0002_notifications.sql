-- Schema version 2: job notification outcomes and outbound callback secrets.

-- One row per delivery target of a notification firing (a job notifies at Running and/or
-- Finished, so a target can appear once per firing state).
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- The job state that fired it: 3 = Running, 5 = Finished.
    job_state   INTEGER NOT NULL CHECK (job_state IN (3, 5)),
    method      TEXT    NOT NULL CHECK (method IN ('email', 'irc', 'callback')),
    -- E-mail address, `nick@server` for IRC, or the callback URL as written.
    target      TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error  TEXT,
    created     TEXT    NOT NULL,
    updated     TEXT    NOT NULL,
    CHECK ((status = 'failed') = (last_error IS NOT NULL))
);
CREATE INDEX notifications_job ON notifications (job_id, id);

-- Secrets a user's notification callbacks send, by name (LAVA's `token:` names one of the
-- submitter's tokens). These are outbound credentials for the user's own web services, so
-- they are kept in clear, unlike API tokens, which are stored hashed.
CREATE TABLE callback_secrets (
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name     TEXT    NOT NULL CHECK (name <> ''),
    secret   TEXT    NOT NULL,
    created  TEXT    NOT NULL,
    PRIMARY KEY (user_id, name)
) WITHOUT ROWID;
