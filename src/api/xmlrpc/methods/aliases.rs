//! `scheduler.aliases.*`: device-type aliases by alias name.

#[allow(clippy::wildcard_imports)]
use super::*;

#[allow(clippy::too_many_lines)]
pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    let caller = ctx.caller.clone();
    match name {
        "scheduler.aliases.list" => {
            db(ctx, move |s| {
                Ok(Value::Array(
                    s.aliases()?
                        .into_iter()
                        .map(|(a, _)| Value::String(a))
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.aliases.show" => {
            a.at_most(1)?;
            let alias = a.string(0, "name")?;
            db(ctx, move |s| {
                let (a, t) = s
                    .aliases()?
                    .into_iter()
                    .find(|(a, _)| *a == alias)
                    .ok_or_else(|| Fault::new(404, format!("Alias '{alias}' was not found.")))?;
                let visible = s
                    .device_type(&t)?
                    .is_some_and(|dt| dt.display || caller.is_superuser());
                Ok(Value::object([
                    ("name", Value::String(a)),
                    (
                        "device_type",
                        Value::String(if visible { t } else { String::new() }),
                    ),
                ]))
            })
            .await
        }
        "scheduler.aliases.add" => {
            a.at_most(2)?;
            let alias = a.string(0, "name")?;
            let dt = a.string(1, "device_type_name")?;
            need_superuser(ctx, "lava_scheduler_app.add_alias")?;
            db(ctx, move |s| {
                if s.device_type(&dt)?.is_none() {
                    return Err(Fault::new(
                        400,
                        format!("Bad request: device-type '{dt}' does not exist"),
                    ));
                }
                if s.aliases()?.iter().any(|(a, _)| *a == alias) {
                    return Err(Fault::new(
                        400,
                        format!("Bad request: alias '{alias}' already exists"),
                    ));
                }
                s.add_alias(&alias, &dt)?;
                Ok(Value::Nil)
            })
            .await
        }
        "scheduler.aliases.delete" => {
            a.at_most(1)?;
            let alias = a.string(0, "name")?;
            need_superuser(ctx, "lava_scheduler_app.delete_alias")?;
            db(ctx, move |s| {
                if !s.aliases()?.iter().any(|(a, _)| *a == alias) {
                    return Err(Fault::new(404, format!("Alias '{alias}' was not found.")));
                }
                s.remove_alias(&alias)?;
                Ok(Value::Nil)
            })
            .await
        }
        _ => Err(no_such_method(name)),
    }
}
