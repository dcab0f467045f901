//! `scheduler.workers.*`: the workers table, their health (which the scheduler honours) and
//! their `dispatcher.yaml` / `env.yaml` / `env-dut.yaml`.
//!
//! Simplification: lavabox has no remote workers, so no worker has an API token and `show`
//! never carries LAVA's superuser-only `token` field (lavacli prints it only when present).

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::store::{WorkerFile, WorkerHealth, WorkerUpdate};

/// A worker hostname argument: one path component, as LAVA checks with `pathlib`.
fn hostname(a: &Args<'_>) -> Result<String, Fault> {
    let h = a.string(0, "hostname")?;
    if h.is_empty() || h.contains('/') || h == "." || h == ".." {
        return Err(Fault::new(400, "Invalid worker name"));
    }
    Ok(h)
}

fn not_found(h: &str) -> Fault {
    Fault::new(404, format!("Worker '{h}' was not found."))
}

/// Which file a `get_*`/`set_*` method reads or writes, and LAVA's 404 text when unset.
fn file_of(name: &str) -> (WorkerFile, &'static str) {
    if name.ends_with("env_dut") {
        (WorkerFile::EnvDut, "an env-dut file")
    } else if name.ends_with("env") {
        (WorkerFile::Env, "an env file")
    } else {
        (WorkerFile::Config, "a dispatcher configuration")
    }
}

pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    match name {
        "scheduler.workers.list" => {
            a.at_most(0)?;
            db(ctx, |s| {
                Ok(Value::Array(
                    s.workers()?
                        .into_iter()
                        .map(|w| Value::String(w.hostname))
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.workers.show" => {
            a.at_most(1)?;
            let h = a.string(0, "hostname")?;
            // Devices registered without a worker are the appliance's own.
            let own = worker_name(ctx) == h;
            db(ctx, move |s| {
                let w = s.worker(&h)?.ok_or_else(|| not_found(&h))?;
                let mut devices: Vec<String> = s
                    .devices(true)?
                    .into_iter()
                    .filter(|d| match d.worker_name.as_deref() {
                        Some(name) => name == h,
                        None => own,
                    })
                    .map(|d| d.hostname)
                    .collect();
                devices.sort();
                Ok(Value::object([
                    ("hostname", Value::String(w.hostname.clone())),
                    ("description", Value::opt_str(w.description.clone())),
                    ("state", Value::str(w.state.as_str())),
                    ("health", Value::str(w.health.as_str())),
                    (
                        "devices",
                        Value::Array(devices.into_iter().map(Value::String).collect()),
                    ),
                    ("last_ping", Value::opt_datetime(w.last_ping)),
                    ("job_limit", Value::Int(i64::from(w.job_limit))),
                    ("version", Value::opt_str(w.version.clone())),
                    ("default_config", Value::Bool(w.config.is_none())),
                    ("default_env", Value::Bool(w.env.is_none())),
                    ("default_env_dut", Value::Bool(w.env_dut.is_none())),
                ]))
            })
            .await
        }
        "scheduler.workers.add" => {
            a.at_most(3)?;
            need_superuser(ctx, "lava_scheduler_app.add_worker")?;
            let h = hostname(&a)?;
            let description = a.opt_string(1, "description")?;
            let health = if a.opt_bool(2, "disabled", false)? {
                WorkerHealth::Retired
            } else {
                WorkerHealth::Active
            };
            db(ctx, move |s| {
                match s.create_worker(&h, description.as_deref(), health) {
                    Ok(_) => Ok(Value::Nil),
                    Err(store::Error::AlreadyExists { .. }) => {
                        Err(Fault::new(400, "Bad request: worker already exists?"))
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .await
        }
        "scheduler.workers.update" => {
            a.at_most(4)?;
            need_superuser(ctx, "lava_scheduler_app.change_worker")?;
            let h = a.string(0, "hostname")?;
            let description = a.opt_string(1, "description")?;
            let health = match a.opt_string(2, "health")? {
                None => None,
                Some(x) => Some(
                    WorkerHealth::from_upper(&x)
                        .ok_or_else(|| Fault::new(400, format!("Invalid health: {x}")))?,
                ),
            };
            let job_limit = match a.present(3) {
                None => None,
                Some(Value::Int(n)) => Some(u32::try_from(*n).map_err(|_| bad_job_limit())?),
                Some(_) => return Err(bad_job_limit()),
            };
            let update = WorkerUpdate {
                description,
                health,
                job_limit,
            };
            let status = db(ctx, move |s| match s.update_worker(&h, &update) {
                Err(store::Error::NotFound { .. }) => Err(not_found(&h)),
                other => Ok(other?),
            })
            .await?;
            if let Some(status) = status {
                ctx.app.worker_changed(&status);
            }
            Ok(Value::Nil)
        }
        "scheduler.workers.get_config"
        | "scheduler.workers.get_env"
        | "scheduler.workers.get_env_dut" => {
            a.at_most(1)?;
            let h = hostname(&a)?;
            let (which, what) = file_of(name);
            db(ctx, move |s| {
                let w = s.worker(&h)?.ok_or_else(|| not_found(&h))?;
                w.file(which)
                    .map(binary)
                    .ok_or_else(|| Fault::new(404, format!("Worker '{h}' does not have {what}")))
            })
            .await
        }
        "scheduler.workers.set_config"
        | "scheduler.workers.set_env"
        | "scheduler.workers.set_env_dut" => {
            a.at_most(2)?;
            need_superuser(ctx, "lava_scheduler_app.change_worker")?;
            let h = hostname(&a)?;
            let text = a.string(1, "config")?;
            let (which, _) = file_of(name);
            db(ctx, move |s| {
                // As LAVA: writing an empty file removes it, so the default applies again.
                let text = (!text.is_empty()).then_some(text.as_str());
                match s.set_worker_file(&h, which, text) {
                    Err(store::Error::NotFound { .. }) => Err(not_found(&h)),
                    other => Ok(other.map(|()| Value::Bool(true))?),
                }
            })
            .await
        }
        _ => Err(no_such_method(name)),
    }
}

/// LAVA 2023.01 raises this through a typo (`xmlrpc.client.fault`), so clients see an
/// internal-error fault; the message says what was wrong.
fn bad_job_limit() -> Fault {
    Fault::new(
        -32603,
        "Internal Server Error (contact server administrator for details): Invalid job limit",
    )
}
