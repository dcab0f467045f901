-- Schema version 1: users, devices, jobs, results and the job log index.
-- States, healths and result codes are LAVA 2023.01's integer codes (see src/model.rs).
-- Timestamps are UTC text, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so text order is time order.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 150),
    email         TEXT    NOT NULL DEFAULT '',
    is_superuser  INTEGER NOT NULL DEFAULT 0 CHECK (is_superuser IN (0, 1)),
    is_active     INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    date_joined   TEXT    NOT NULL
);

CREATE TABLE groups (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 150)
);

CREATE TABLE group_members (
    group_id  INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_user ON group_members (user_id);

-- Only the SHA-256 of a token secret is kept; the secret is shown once, at creation.
CREATE TABLE api_tokens (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_sha256  BLOB    NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    description    TEXT    NOT NULL DEFAULT '',
    created        TEXT    NOT NULL,
    last_used      TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE device_types (
    id                    INTEGER PRIMARY KEY,
    name                  TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    description           TEXT,
    -- LAVA: health_denominator 0 = hours, 1 = jobs.
    health_frequency      INTEGER NOT NULL DEFAULT 24 CHECK (health_frequency >= 0),
    health_denominator    INTEGER NOT NULL DEFAULT 0 CHECK (health_denominator IN (0, 1)),
    disable_health_check  INTEGER NOT NULL DEFAULT 0 CHECK (disable_health_check IN (0, 1)),
    display               INTEGER NOT NULL DEFAULT 1 CHECK (display IN (0, 1)),
    owners_only           INTEGER NOT NULL DEFAULT 0 CHECK (owners_only IN (0, 1))
);

CREATE TABLE aliases (
    name            TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    device_type_id  INTEGER NOT NULL REFERENCES device_types (id) ON DELETE CASCADE
);

CREATE TABLE tags (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 50),
    description  TEXT
);

CREATE TABLE devices (
    id                      INTEGER PRIMARY KEY,
    hostname                TEXT    NOT NULL UNIQUE CHECK (length(hostname) BETWEEN 1 AND 200),
    device_type_id          INTEGER NOT NULL REFERENCES device_types (id) ON DELETE RESTRICT,
    description             TEXT,
    state                   INTEGER NOT NULL DEFAULT 0 CHECK (state BETWEEN 0 AND 2),
    health                  INTEGER NOT NULL DEFAULT 1 CHECK (health BETWEEN 0 AND 5),
    dictionary              TEXT,
    worker_name             TEXT,
    is_public               INTEGER NOT NULL DEFAULT 1 CHECK (is_public IN (0, 1)),
    owner_user_id           INTEGER REFERENCES users (id) ON DELETE SET NULL,
    owner_group_id          INTEGER REFERENCES groups (id) ON DELETE SET NULL,
    last_health_report_job  INTEGER REFERENCES jobs (id) ON DELETE SET NULL
);
CREATE INDEX devices_type ON devices (device_type_id);

CREATE TABLE device_tags (
    device_id  INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    tag_id     INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (device_id, tag_id)
) WITHOUT ROWID;

-- AUTOINCREMENT: a job id is never reused, even after the newest job is deleted.
CREATE TABLE jobs (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    submitter_id              INTEGER NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    description               TEXT    NOT NULL DEFAULT '',
    definition                TEXT    NOT NULL,
    original_definition       TEXT    NOT NULL,
    multinode_definition      TEXT    NOT NULL DEFAULT '',
    state                     INTEGER NOT NULL DEFAULT 0 CHECK (state BETWEEN 0 AND 5),
    health                    INTEGER NOT NULL DEFAULT 0 CHECK (health BETWEEN 0 AND 3),
    priority                  INTEGER NOT NULL DEFAULT 50 CHECK (priority BETWEEN 0 AND 100),
    -- 0 = personal, 1 = public, 2 = group (see job_viewing_groups).
    visibility                INTEGER NOT NULL DEFAULT 1 CHECK (visibility BETWEEN 0 AND 2),
    requested_device_type_id  INTEGER REFERENCES device_types (id) ON DELETE RESTRICT,
    actual_device_id          INTEGER REFERENCES devices (id) ON DELETE SET NULL,
    health_check              INTEGER NOT NULL DEFAULT 0 CHECK (health_check IN (0, 1)),
    target_group              TEXT,
    sub_id                    TEXT,
    submit_time               TEXT    NOT NULL,
    start_time                TEXT,
    end_time                  TEXT,
    failure_comment           TEXT,
    error_type                INTEGER CHECK (error_type BETWEEN 0 AND 8),
    queue_timeout_secs        INTEGER CHECK (queue_timeout_secs >= 0),
    -- LAVA: health stays Unknown until the job is Finished, and a Finished job has a health.
    CHECK ((state = 5) = (health <> 0)),
    CHECK ((state = 5) = (end_time IS NOT NULL)),
    CHECK ((target_group IS NULL) = (sub_id IS NULL))
);
CREATE INDEX jobs_state ON jobs (state, priority DESC, submit_time);
CREATE INDEX jobs_device ON jobs (actual_device_id, state);
CREATE INDEX jobs_target_group ON jobs (target_group) WHERE target_group IS NOT NULL;
CREATE UNIQUE INDEX jobs_sub_id ON jobs (sub_id) WHERE sub_id IS NOT NULL;

CREATE TABLE job_viewing_groups (
    job_id    INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    group_id  INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, group_id)
) WITHOUT ROWID;

CREATE TABLE job_tags (
    job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    tag_id  INTEGER NOT NULL REFERENCES tags (id) ON DELETE RESTRICT,
    PRIMARY KEY (job_id, tag_id)
) WITHOUT ROWID;

CREATE TABLE job_metadata (
    id      INTEGER PRIMARY KEY,
    job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name    TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    UNIQUE (job_id, name)
);

CREATE TABLE test_suites (
    id      INTEGER PRIMARY KEY,
    job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name    TEXT    NOT NULL CHECK (length(name) >= 1),
    UNIQUE (job_id, name)
);

CREATE TABLE test_sets (
    id        INTEGER PRIMARY KEY,
    suite_id  INTEGER NOT NULL REFERENCES test_suites (id) ON DELETE CASCADE,
    name      TEXT    NOT NULL CHECK (length(name) >= 1),
    UNIQUE (suite_id, name)
);

CREATE TABLE test_cases (
    id              INTEGER PRIMARY KEY,
    suite_id        INTEGER NOT NULL REFERENCES test_suites (id) ON DELETE CASCADE,
    test_set_id     INTEGER REFERENCES test_sets (id) ON DELETE CASCADE,
    name            TEXT    NOT NULL CHECK (length(name) >= 1),
    result          INTEGER NOT NULL CHECK (result BETWEEN 0 AND 3),
    measurement     REAL,
    units           TEXT    NOT NULL DEFAULT '',
    metadata        TEXT,
    start_log_line  INTEGER CHECK (start_log_line >= 0),
    end_log_line    INTEGER CHECK (end_log_line >= 0),
    logged          TEXT    NOT NULL
);
CREATE INDEX test_cases_suite ON test_cases (suite_id, id);

-- The log itself is an append-only file (see store::joblog); this indexes where it lives.
CREATE TABLE job_logs (
    job_id    INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    path      TEXT    NOT NULL,
    created   TEXT    NOT NULL,
    finished  INTEGER NOT NULL DEFAULT 0 CHECK (finished IN (0, 1))
);
