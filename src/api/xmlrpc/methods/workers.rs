//! `scheduler.workers.*`.

#[allow(clippy::wildcard_imports)]
use super::*;

#[allow(clippy::too_many_lines)]
pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    let caller = ctx.caller.clone();
    match name {
        "scheduler.workers.list" => {
            a.at_most(1)?;
            Ok(Value::Array(vec![Value::str(worker_name(ctx))]))
        }
        "scheduler.workers.show" => {
            a.at_most(1)?;
            let h = a.string(0, "hostname")?;
            if h.contains('/') {
                return Err(Fault::new(400, "Invalid worker name"));
            }
            let me = worker_name(ctx);
            if h != me {
                return Err(Fault::new(404, format!("Worker '{h}' was not found.")));
            }
            let superuser = caller.is_superuser();
            let devices = db(ctx, move |s| {
                Ok(s.devices(true)?
                    .into_iter()
                    .filter(|d| d.worker_name.as_deref().is_none_or(|w| w == h))
                    .map(|d| Value::String(d.hostname))
                    .collect::<Vec<_>>())
            })
            .await?;
            let mut m = vec![
                ("hostname".to_owned(), Value::str(me)),
                (
                    "description".to_owned(),
                    Value::str("lavabox appliance (built-in worker)"),
                ),
                ("state".to_owned(), Value::str("Online")),
                ("health".to_owned(), Value::str("Active")),
                ("devices".to_owned(), Value::Array(devices)),
                (
                    "last_ping".to_owned(),
                    Value::datetime(OffsetDateTime::now_utc()),
                ),
                ("job_limit".to_owned(), Value::Int(0)),
                ("version".to_owned(), Value::str("2023.01")),
                ("default_config".to_owned(), Value::Bool(true)),
                ("default_env".to_owned(), Value::Bool(true)),
                ("default_env_dut".to_owned(), Value::Bool(true)),
            ];
            if superuser {
                m.push(("token".into(), Value::str("")));
            }
            Ok(Value::Struct(m))
        }
        _ => Err(no_such_method(name)),
    }
}
