//! Workers: the dispatcher hosts devices belong to, with LAVA's state, health and the
//! per-worker configuration files (`dispatcher.yaml`, `env.yaml`, `env-dut.yaml`).
//!
//! Devices name their worker by hostname (`devices.worker_name`); the scheduler reads a
//! worker's health here to leave the devices of a worker in Maintenance or Retired alone.

use std::fmt;

use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::error::{Error, Step, unique_or};
use super::update::SetColumns;
use super::{Store, decode, opt_ts_from_sql, ts_to_sql};

/// A worker's connection state (LAVA's codes: Online 0, Offline 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// The worker's dispatcher is running (for the appliance: `lavabox serve` runs).
    Online,
    /// Not running.
    Offline,
}

impl WorkerState {
    /// LAVA's integer code.
    pub fn code(self) -> i64 {
        match self {
            WorkerState::Online => 0,
            WorkerState::Offline => 1,
        }
    }

    /// The state for a code.
    pub fn from_code(code: i64) -> Option<WorkerState> {
        match code {
            0 => Some(WorkerState::Online),
            1 => Some(WorkerState::Offline),
            _ => None,
        }
    }

    /// LAVA's display name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Online => "Online",
            WorkerState::Offline => "Offline",
        }
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A worker's health (LAVA's codes: Active 0, Maintenance 1, Retired 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerHealth {
    /// Its devices take jobs.
    Active,
    /// Its devices finish what they run but are given nothing new.
    Maintenance,
    /// Out of service for good.
    Retired,
}

impl WorkerHealth {
    /// Every health, in code order.
    pub const ALL: [WorkerHealth; 3] = [
        WorkerHealth::Active,
        WorkerHealth::Maintenance,
        WorkerHealth::Retired,
    ];

    /// LAVA's integer code.
    pub fn code(self) -> i64 {
        match self {
            WorkerHealth::Active => 0,
            WorkerHealth::Maintenance => 1,
            WorkerHealth::Retired => 2,
        }
    }

    /// The health for a code.
    pub fn from_code(code: i64) -> Option<WorkerHealth> {
        WorkerHealth::ALL.into_iter().find(|h| h.code() == code)
    }

    /// LAVA's display name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerHealth::Active => "Active",
            WorkerHealth::Maintenance => "Maintenance",
            WorkerHealth::Retired => "Retired",
        }
    }

    /// The health for LAVA's upper-case API key (`ACTIVE`, `MAINTENANCE`, `RETIRED`).
    pub fn from_upper(key: &str) -> Option<WorkerHealth> {
        WorkerHealth::ALL
            .into_iter()
            .find(|h| h.as_str().eq_ignore_ascii_case(key) && key == key.to_ascii_uppercase())
    }

    /// Whether devices of a worker with this health may be given new jobs.
    pub fn takes_jobs(self) -> bool {
        self == WorkerHealth::Active
    }
}

impl fmt::Display for WorkerHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the per-worker files LAVA keeps beside its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerFile {
    /// `dispatcher.yaml`.
    Config,
    /// `env.yaml`.
    Env,
    /// `env-dut.yaml`.
    EnvDut,
}

impl WorkerFile {
    fn column(self) -> &'static str {
        match self {
            WorkerFile::Config => "config",
            WorkerFile::Env => "env",
            WorkerFile::EnvDut => "env_dut",
        }
    }
}

/// A stored worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// Its hostname (unique, no `/`).
    pub hostname: String,
    /// Free text.
    pub description: Option<String>,
    /// Online or Offline.
    pub state: WorkerState,
    /// Active, Maintenance or Retired.
    pub health: WorkerHealth,
    /// When it was last seen running.
    pub last_ping: Option<OffsetDateTime>,
    /// How many jobs it runs at once; 0 means no limit.
    pub job_limit: u32,
    /// The software version it last reported.
    pub version: Option<String>,
    /// Its `dispatcher.yaml`, when one was set.
    pub config: Option<String>,
    /// Its `env.yaml`, when one was set.
    pub env: Option<String>,
    /// Its `env-dut.yaml`, when one was set.
    pub env_dut: Option<String>,
}

impl Worker {
    /// The file `which`, when one was set.
    pub fn file(&self, which: WorkerFile) -> Option<&str> {
        match which {
            WorkerFile::Config => self.config.as_deref(),
            WorkerFile::Env => self.env.as_deref(),
            WorkerFile::EnvDut => self.env_dut.as_deref(),
        }
    }
}

/// What `workers.update` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerUpdate {
    /// New description.
    pub description: Option<String>,
    /// New health.
    pub health: Option<WorkerHealth>,
    /// New job limit.
    pub job_limit: Option<u32>,
}

/// A worker whose state or health changed, for the `.worker` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    /// The worker.
    pub hostname: String,
    /// Its state after the change.
    pub state: WorkerState,
    /// Its health after the change.
    pub health: WorkerHealth,
}

const COLUMNS: &str = "hostname, description, state, health, last_ping, job_limit, version, \
                       config, env, env_dut";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(Worker, i64, i64, Option<String>)> {
    Ok((
        Worker {
            hostname: row.get(0)?,
            description: row.get(1)?,
            state: WorkerState::Offline,
            health: WorkerHealth::Active,
            last_ping: None,
            job_limit: row.get(5)?,
            version: row.get(6)?,
            config: row.get(7)?,
            env: row.get(8)?,
            env_dut: row.get(9)?,
        },
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn finish(raw: (Worker, i64, i64, Option<String>)) -> Result<Worker, Error> {
    let (mut w, state, health, ping) = raw;
    w.state = decode("workers", "worker state", state, WorkerState::from_code)?;
    w.health = decode("workers", "worker health", health, WorkerHealth::from_code)?;
    w.last_ping = opt_ts_from_sql("workers", ping)?;
    Ok(w)
}

fn read_worker(conn: &Connection, hostname: &str) -> Result<Option<Worker>, Error> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM workers WHERE hostname = ?1"),
        [hostname],
        from_row,
    )
    .optional()
    .step("reading a worker")?
    .map(finish)
    .transpose()
}

fn check_hostname(hostname: &str) -> Result<(), Error> {
    if hostname.trim().is_empty() || hostname.contains('/') {
        return Err(Error::Invalid {
            what: "worker name",
            reason: format!("`{hostname}` is empty or contains a path separator"),
        });
    }
    Ok(())
}

fn not_found(hostname: &str) -> Error {
    Error::NotFound {
        kind: "worker",
        name: hostname.to_owned(),
    }
}

impl Store {
    /// Every worker, by hostname.
    pub fn workers(&self) -> Result<Vec<Worker>, Error> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM workers ORDER BY hostname"))
            .step("listing workers")?;
        stmt.query_map([], from_row)
            .step("listing workers")?
            .map(|r| r.step("listing workers").and_then(finish))
            .collect()
    }

    /// The worker `hostname`, if it exists.
    pub fn worker(&self, hostname: &str) -> Result<Option<Worker>, Error> {
        read_worker(&self.conn, hostname)
    }

    /// Creates an Offline worker; [`Error::AlreadyExists`] if the name is taken. Its
    /// `last_ping` starts at the creation time, as LAVA's does.
    pub fn create_worker(
        &mut self,
        hostname: &str,
        description: Option<&str>,
        health: WorkerHealth,
    ) -> Result<Worker, Error> {
        check_hostname(hostname)?;
        self.conn
            .execute(
                "INSERT INTO workers (hostname, description, health, last_ping) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    hostname,
                    description,
                    health.code(),
                    ts_to_sql(super::now())
                ],
            )
            .map_err(unique_or("worker", hostname, "creating a worker"))?;
        read_worker(&self.conn, hostname)?.ok_or_else(|| not_found(hostname))
    }

    /// Creates the appliance's own worker `hostname` unless it exists, marks it as the one
    /// devices without a worker belong to, and gives it every device left without one (added
    /// by the command line before the first start, or before this rule existed).
    pub fn ensure_own_worker(&mut self, hostname: &str) -> Result<(), Error> {
        check_hostname(hostname)?;
        let step = "registering the appliance's worker";
        let tx = self.write_tx(step)?;
        tx.execute(
            "INSERT OR IGNORE INTO workers (hostname, last_ping) VALUES (?1, ?2)",
            params![hostname, ts_to_sql(super::now())],
        )
        .step(step)?;
        tx.execute(
            "UPDATE workers SET own = (hostname = ?1) WHERE own != (hostname = ?1)",
            params![hostname],
        )
        .step(step)?;
        tx.execute(
            "UPDATE devices SET worker_name = ?1 WHERE worker_name IS NULL",
            params![hostname],
        )
        .step(step)?;
        tx.commit().step(step)?;
        Ok(())
    }

    /// Applies `update`; returns the new status when state or health changed.
    pub fn update_worker(
        &mut self,
        hostname: &str,
        update: &WorkerUpdate,
    ) -> Result<Option<WorkerStatus>, Error> {
        let step = "updating a worker";
        let tx = self.write_tx(step)?;
        let before = read_worker(&tx, hostname)?.ok_or_else(|| not_found(hostname))?;
        tx.execute(
            "UPDATE workers SET description = coalesce(?2, description), \
             health = coalesce(?3, health), job_limit = coalesce(?4, job_limit) \
             WHERE hostname = ?1",
            params![
                hostname,
                update.description,
                update.health.map(WorkerHealth::code),
                update.job_limit
            ],
        )
        .step(step)?;
        tx.commit().step(step)?;
        Ok(update
            .health
            .filter(|h| *h != before.health)
            .map(|health| WorkerStatus {
                hostname: hostname.to_owned(),
                state: before.state,
                health,
            }))
    }

    /// Deletes worker `hostname`; its devices are left with no worker, as LAVA's foreign key
    /// (`SET_NULL`) leaves them. [`Error::NotFound`] if there is no such worker.
    pub fn delete_worker(&mut self, hostname: &str) -> Result<(), Error> {
        let step = "deleting a worker";
        let tx = self.write_tx(step)?;
        let n = tx
            .execute("DELETE FROM workers WHERE hostname = ?1", [hostname])
            .step(step)?;
        if n == 0 {
            return Err(not_found(hostname));
        }
        tx.execute(
            "UPDATE devices SET worker_name = NULL WHERE worker_name = ?1",
            [hostname],
        )
        .step(step)?;
        tx.commit().step(step)
    }

    /// Stores (or, with `None`, clears back to the default) one of the worker's files.
    pub fn set_worker_file(
        &mut self,
        hostname: &str,
        which: WorkerFile,
        text: Option<&str>,
    ) -> Result<(), Error> {
        let n = SetColumns::new("workers", "hostname")
            .set(which.column(), text.map(str::to_owned))
            .run(&self.conn, hostname, "storing a worker file")?;
        if n == 0 {
            return Err(not_found(hostname));
        }
        Ok(())
    }

    /// Records that worker `hostname` runs (`Online`) or stopped (`Offline`), creating it if
    /// needed, and stamps `last_ping` and `version`; returns the new status when the state
    /// changed.
    pub fn set_worker_running(
        &mut self,
        hostname: &str,
        state: WorkerState,
        version: &str,
    ) -> Result<Option<WorkerStatus>, Error> {
        check_hostname(hostname)?;
        let step = "recording a worker's state";
        let tx = self.write_tx(step)?;
        tx.execute(
            "INSERT OR IGNORE INTO workers (hostname) VALUES (?1)",
            [hostname],
        )
        .step(step)?;
        let before = read_worker(&tx, hostname)?.ok_or_else(|| not_found(hostname))?;
        tx.execute(
            "UPDATE workers SET state = ?2, last_ping = ?3, version = ?4 WHERE hostname = ?1",
            params![hostname, state.code(), ts_to_sql(super::now()), version],
        )
        .step(step)?;
        tx.commit().step(step)?;
        Ok((before.state != state).then(|| WorkerStatus {
            hostname: hostname.to_owned(),
            state,
            health: before.health,
        }))
    }

    /// The hostnames of workers whose devices must not be given new jobs.
    pub fn workers_not_taking_jobs(&self) -> Result<Vec<String>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT hostname FROM workers WHERE health <> ?1 ORDER BY hostname")
            .step("listing workers in maintenance")?;
        stmt.query_map([WorkerHealth::Active.code()], |r| r.get(0))
            .step("listing workers in maintenance")?
            .collect::<Result<Vec<_>, _>>()
            .step("listing workers in maintenance")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil;

    #[test]
    fn create_update_and_files() {
        let (_dir, mut s) = testutil::store();
        let w = s
            .create_worker("w1", Some("bench"), WorkerHealth::Active)
            .unwrap();
        assert_eq!(w.state, WorkerState::Offline);
        assert_eq!(w.job_limit, 0);
        assert!(matches!(
            s.create_worker("w1", None, WorkerHealth::Active),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            s.create_worker("a/b", None, WorkerHealth::Active),
            Err(Error::Invalid { .. })
        ));
        let change = s
            .update_worker(
                "w1",
                &WorkerUpdate {
                    health: Some(WorkerHealth::Maintenance),
                    job_limit: Some(3),
                    ..WorkerUpdate::default()
                },
            )
            .unwrap();
        assert_eq!(
            change,
            Some(WorkerStatus {
                hostname: "w1".into(),
                state: WorkerState::Offline,
                health: WorkerHealth::Maintenance
            })
        );
        let w = s.worker("w1").unwrap().unwrap();
        assert_eq!(
            (w.health, w.job_limit, w.description.as_deref()),
            (WorkerHealth::Maintenance, 3, Some("bench"))
        );
        assert_eq!(s.workers_not_taking_jobs().unwrap(), vec!["w1".to_owned()]);
        // Same health again: no change to announce.
        let again = WorkerUpdate {
            health: Some(WorkerHealth::Maintenance),
            ..WorkerUpdate::default()
        };
        assert_eq!(s.update_worker("w1", &again).unwrap(), None);
        s.set_worker_file("w1", WorkerFile::Env, Some("overrides: {}\n"))
            .unwrap();
        let w = s.worker("w1").unwrap().unwrap();
        assert_eq!(w.file(WorkerFile::Env), Some("overrides: {}\n"));
        assert_eq!(w.file(WorkerFile::Config), None);
        assert!(matches!(
            s.set_worker_file("nope", WorkerFile::Env, None),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            s.update_worker("nope", &WorkerUpdate::default()),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn devices_without_a_worker_belong_to_the_appliances_own() {
        let (_dir, mut s) = testutil::store();
        s.create_device_type(&crate::store::NewDeviceType::named("qemu"))
            .unwrap();
        // Added before the appliance first started (the command line): adopted at start.
        s.create_device(&crate::store::NewDevice::new("early01", "qemu"))
            .unwrap();
        assert_eq!(s.device("early01").unwrap().unwrap().worker_name, None);
        s.create_worker("w1", None, WorkerHealth::Active).unwrap();
        s.ensure_own_worker("box").unwrap();
        s.ensure_own_worker("box").unwrap();
        let worker = |s: &Store, host: &str| s.device(host).unwrap().unwrap().worker_name;
        assert_eq!(worker(&s, "early01").as_deref(), Some("box"));
        // Added later without a worker: the own worker; with one: that one.
        s.create_device(&crate::store::NewDevice::new("late01", "qemu"))
            .unwrap();
        assert_eq!(worker(&s, "late01").as_deref(), Some("box"));
        let mut other = crate::store::NewDevice::new("other01", "qemu");
        other.worker_name = Some("w1".into());
        s.create_device(&other).unwrap();
        assert_eq!(worker(&s, "other01").as_deref(), Some("w1"));
        // A renamed instance: the new name is the own worker.
        s.ensure_own_worker("box2").unwrap();
        s.create_device(&crate::store::NewDevice::new("new01", "qemu"))
            .unwrap();
        assert_eq!(worker(&s, "new01").as_deref(), Some("box2"));
    }

    #[test]
    fn deleting_a_worker_frees_its_devices() {
        let (_dir, mut s) = testutil::store();
        s.create_worker("w1", None, WorkerHealth::Active).unwrap();
        s.create_device_type(&crate::store::NewDeviceType::named("qemu"))
            .unwrap();
        let mut device = crate::store::NewDevice::new("qemu01", "qemu");
        device.worker_name = Some("w1".into());
        s.create_device(&device).unwrap();
        s.delete_worker("w1").unwrap();
        assert_eq!(s.worker("w1").unwrap(), None);
        assert_eq!(s.device("qemu01").unwrap().unwrap().worker_name, None);
        assert!(matches!(s.delete_worker("w1"), Err(Error::NotFound { .. })));
    }

    #[test]
    fn running_creates_and_reports_state_changes() {
        let (_dir, mut s) = testutil::store();
        let first = s
            .set_worker_running("box", WorkerState::Online, "1.0")
            .unwrap();
        assert_eq!(first.map(|c| c.state), Some(WorkerState::Online));
        assert_eq!(
            s.set_worker_running("box", WorkerState::Online, "1.0")
                .unwrap(),
            None
        );
        let w = s.worker("box").unwrap().unwrap();
        assert!(w.last_ping.is_some());
        assert_eq!(w.version.as_deref(), Some("1.0"));
        let off = s
            .set_worker_running("box", WorkerState::Offline, "1.0")
            .unwrap();
        assert_eq!(off.map(|c| c.state), Some(WorkerState::Offline));
        assert_eq!(s.workers().unwrap().len(), 1);
    }

    #[test]
    fn health_keys_are_upper_case_only() {
        assert_eq!(
            WorkerHealth::from_upper("MAINTENANCE"),
            Some(WorkerHealth::Maintenance)
        );
        assert_eq!(WorkerHealth::from_upper("Maintenance"), None);
        assert_eq!(WorkerHealth::from_upper("BROKEN"), None);
        for h in WorkerHealth::ALL {
            assert_eq!(WorkerHealth::from_code(h.code()), Some(h));
        }
    }
}
