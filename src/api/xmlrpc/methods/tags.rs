//! `scheduler.tags.*`: device tags.

#[allow(clippy::wildcard_imports)]
use super::*;

#[allow(clippy::too_many_lines)]
pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    let caller = ctx.caller.clone();
    match name {
        "scheduler.tags.list" => {
            db(ctx, move |s| {
                Ok(Value::Array(
                    s.tags()?
                        .into_iter()
                        .map(|t| {
                            Value::object([
                                ("name", Value::String(t.name)),
                                ("description", Value::opt_str(t.description)),
                            ])
                        })
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.tags.show" => {
            a.at_most(1)?;
            let tag = a.string(0, "name")?;
            db(ctx, move |s| {
                let t = s
                    .tags()?
                    .into_iter()
                    .find(|t| t.name == tag)
                    .ok_or_else(|| Fault::new(404, format!("Tag '{tag}' was not found.")))?;
                let devices: Vec<Value> = s
                    .devices(true)?
                    .into_iter()
                    .filter(|d| d.tags.contains(&tag) && may_view_device(&caller, d))
                    .map(|d| Value::String(d.hostname))
                    .collect();
                Ok(Value::object([
                    ("name", Value::String(t.name)),
                    ("description", Value::opt_str(t.description)),
                    ("devices", Value::Array(devices)),
                ]))
            })
            .await
        }
        "scheduler.tags.delete" => {
            a.at_most(1)?;
            let tag = a.string(0, "name")?;
            need_superuser(ctx, "lava_scheduler_app.delete_tag")?;
            db(ctx, move |s| match s.delete_tag(&tag) {
                Err(store::Error::NotFound { .. }) => {
                    Err(Fault::new(404, format!("Tag '{tag}' was not found.")))
                }
                // Simplification: LAVA drops the tag from old jobs too; lavabox keeps job
                // history intact and refuses.
                Err(store::Error::Constraint { .. }) => Err(Fault::new(
                    400,
                    format!("Bad request: tag '{tag}' is required by existing jobs"),
                )),
                other => Ok(other.map(|()| Value::Nil)?),
            })
            .await
        }
        "scheduler.tags.add" => {
            a.at_most(2)?;
            let tag = a.string(0, "name")?;
            let description = a.opt_string(1, "description")?;
            need_superuser(ctx, "lava_scheduler_app.add_tag")?;
            db(ctx, move |s| {
                if s.tags()?.iter().any(|t| t.name == tag) {
                    return Err(Fault::new(400, "Bad request: tag already exists?"));
                }
                s.create_tag(&tag, description.as_deref())?;
                Ok(Value::Nil)
            })
            .await
        }
        _ => Err(no_such_method(name)),
    }
}
