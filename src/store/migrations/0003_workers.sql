-- Workers: LAVA's dispatcher hosts. On the appliance there is normally one (the box itself,
-- named after `instance`), but LAVA clients list, show and update workers, so they are rows.
-- state: Online 0, Offline 1. health: Active 0, Maintenance 1, Retired 2 (LAVA's codes).
-- config / env / env_dut hold a worker's dispatcher.yaml, env.yaml and env-dut.yaml when an
-- administrator set one; NULL means the built-in default.

CREATE TABLE workers (
    id           INTEGER PRIMARY KEY,
    hostname     TEXT    NOT NULL UNIQUE
                 CHECK (length(hostname) BETWEEN 1 AND 200 AND instr(hostname, '/') = 0),
    description  TEXT,
    state        INTEGER NOT NULL DEFAULT 1 CHECK (state IN (0, 1)),
    health       INTEGER NOT NULL DEFAULT 0 CHECK (health BETWEEN 0 AND 2),
    last_ping    TEXT,
    job_limit    INTEGER NOT NULL DEFAULT 0 CHECK (job_limit >= 0),
    version      TEXT,
    config       TEXT,
    env          TEXT,
    env_dut      TEXT
);

-- Devices already name their worker; those names become (offline) workers.
INSERT OR IGNORE INTO workers (hostname)
    SELECT DISTINCT worker_name FROM devices
    WHERE worker_name IS NOT NULL AND worker_name <> '' AND instr(worker_name, '/') = 0;
