//! `scheduler.device_types.*`, their aliases, and the legacy `all_device_types` /
//! `get_device_type_by_alias`.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::devicetype::FileKind;

#[allow(clippy::too_many_lines)]
pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    let caller = ctx.caller.clone();
    match name {
        "scheduler.all_device_types" => {
            db(ctx, move |s| {
                let devices = s.devices(false)?;
                Ok(Value::Array(
                    s.device_types()?
                        .iter()
                        .filter(|dt| dt.display || caller.is_superuser())
                        .map(|dt| {
                            let of: Vec<&Device> = devices
                                .iter()
                                .filter(|d| d.device_type == dt.name)
                                .collect();
                            let idle = of
                                .iter()
                                .filter(|d| legacy_device_status(d) == "idle")
                                .count();
                            let busy = of.iter().filter(|d| d.state != DeviceState::Idle).count();
                            let offline = of
                                .iter()
                                .filter(|d| legacy_device_status(d) == "offline")
                                .count();
                            Value::object([
                                ("name", Value::str(dt.name.clone())),
                                ("idle", Value::Int(i64::try_from(idle).unwrap_or(0))),
                                ("busy", Value::Int(i64::try_from(busy).unwrap_or(0))),
                                ("offline", Value::Int(i64::try_from(offline).unwrap_or(0))),
                            ])
                        })
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.device_types.list" => {
            a.at_most(1)?;
            let show_all = a.opt_bool(0, "show_all", false)?;
            let template_names = ctx
                .app
                .templates()
                .call(|templates| templates.device_types())
                .await
                .map_err(|e| Fault::new(-32603, e.to_string()))?
                .unwrap_or_default();
            db(ctx, move |s| {
                let devices = s.devices(false)?;
                let mut out = Vec::new();
                let types = s.device_types()?;
                for dt in types
                    .iter()
                    .filter(|dt| dt.display || caller.is_superuser())
                {
                    let n = devices.iter().filter(|d| d.device_type == dt.name).count();
                    out.push(Value::object([
                        ("name", Value::str(dt.name.clone())),
                        ("devices", Value::Int(i64::try_from(n).unwrap_or(0))),
                        ("installed", Value::Bool(true)),
                        ("template", Value::Bool(template_names.contains(&dt.name))),
                    ]));
                }
                if show_all {
                    for t in template_names
                        .iter()
                        .filter(|t| !types.iter().any(|dt| &dt.name == *t))
                    {
                        out.push(Value::object([
                            ("name", Value::str(t.clone())),
                            ("devices", Value::Int(0)),
                            ("installed", Value::Bool(false)),
                            ("template", Value::Bool(true)),
                        ]));
                    }
                }
                Ok(Value::Array(out))
            })
            .await
        }
        "scheduler.device_types.show" => {
            a.at_most(1)?;
            let n = a.string(0, "name")?;
            let tn = n.clone();
            let has_template = ctx
                .app
                .templates()
                .call(move |templates| templates.template_source(&tn).is_ok())
                .await
                .unwrap_or(false);
            db(ctx, move |s| {
                let dt = find_device_type(s, &caller, &n)?;
                let aliases: Vec<Value> = s
                    .aliases()?
                    .into_iter()
                    .filter(|(_, t)| *t == dt.name)
                    .map(|(a, _)| Value::String(a))
                    .collect();
                let devices: Vec<Value> = s
                    .devices(false)?
                    .into_iter()
                    .filter(|d| d.device_type == dt.name && may_view_device(&caller, d))
                    .map(|d| Value::String(d.hostname))
                    .collect();
                Ok(Value::object([
                    ("name", Value::str(dt.name.clone())),
                    ("description", Value::opt_str(dt.description.clone())),
                    ("display", Value::Bool(dt.display)),
                    ("health_disabled", Value::Bool(dt.disable_health_check)),
                    (
                        "health_denominator",
                        Value::str(dt.health_denominator.as_str()),
                    ),
                    (
                        "health_frequency",
                        Value::Int(i64::from(dt.health_frequency)),
                    ),
                    ("aliases", Value::Array(aliases)),
                    ("devices", Value::Array(devices)),
                    ("default_template", Value::Bool(has_template)),
                ]))
            })
            .await
        }
        "scheduler.device_types.add" | "scheduler.device_types.update" => {
            let is_add = name.ends_with("add");
            a.at_most(if is_add { 6 } else { 7 })?;
            let n = a.string(0, "name")?;
            let description = a.opt_string(1, "description")?;
            let display = a.opt_bool_tri(2, "display")?;
            let owners_only = a.opt_bool_tri(3, "owners_only")?;
            let freq = a.opt_int(4, "health_frequency")?;
            let denom = match a.opt_string(5, "health_denominator")? {
                None => None,
                Some(d) => Some(d.parse::<HealthDenominator>().map_err(|_| {
                    Fault::new(
                        400,
                        format!("Bad request: invalid health_denominator '{d}'"),
                    )
                })?),
            };
            let disabled = if is_add {
                None
            } else {
                a.opt_bool_tri(6, "health_disabled")?
            };
            let freq = match freq {
                None => None,
                Some(f) => Some(
                    u32::try_from(f)
                        .map_err(|_| Fault::new(400, "Bad request: invalid health_frequency"))?,
                ),
            };
            need_superuser(ctx, "lava_scheduler_app.change_devicetype")?;
            db(ctx, move |s| {
                if is_add {
                    if s.device_type(&n)?.is_some() {
                        return Err(Fault::new(
                            400,
                            "Bad request: device-type name is already used.",
                        ));
                    }
                    let mut new = NewDeviceType::named(n);
                    new.description = description;
                    new.display = display.unwrap_or(true);
                    new.owners_only = owners_only.unwrap_or(false);
                    if let Some(f) = freq {
                        new.health_frequency = f;
                    }
                    if let Some(d) = denom {
                        new.health_denominator = d;
                    }
                    s.create_device_type(&new)?;
                } else {
                    find_device_type(s, &caller, &n)?;
                    s.update_device_type(
                        &n,
                        &DeviceTypeUpdate {
                            description: description.map(Some),
                            health_frequency: freq,
                            health_denominator: denom,
                            disable_health_check: disabled,
                            display,
                            owners_only,
                        },
                    )?;
                }
                Ok(Value::Nil)
            })
            .await
        }
        "scheduler.device_types.get_template" | "scheduler.device_types.get_health_check" => {
            a.at_most(1)?;
            let n = a.string(0, "name")?;
            if n.starts_with('.') || n.contains('/') || n.contains('\\') {
                return Err(Fault::new(400, "Invalid device-type"));
            }
            let health = name.ends_with("health_check");
            let found = ctx
                .app
                .templates()
                .call(move |templates| {
                    if health {
                        let stem = n.strip_suffix(".yaml").unwrap_or(&n).to_owned();
                        templates.health_check(&stem).ok().flatten().ok_or(n)
                    } else {
                        templates.template_source(&n).map_err(|_| n)
                    }
                })
                .await
                .map_err(|e| Fault::new(-32603, e.to_string()))?;
            match found {
                Ok(text) => Ok(binary(text)),
                Err(n) if health => {
                    Err(Fault::new(404, format!("Health-check '{n}' was not found")))
                }
                Err(n) => Err(Fault::new(404, format!("Device-type '{n}' was not found"))),
            }
        }
        "scheduler.device_types.set_template" | "scheduler.device_types.set_health_check" => {
            a.at_most(2)?;
            let n = a.string(0, "name")?;
            let config = a.string(1, "config")?;
            if n.starts_with('.') || n.contains('/') || n.contains('\\') || n.is_empty() {
                return Err(Fault::new(400, "Invalid device-type"));
            }
            need_superuser(ctx, "lava_scheduler_app.change_devicetype")?;
            // Health checks live in `health-checks/<name>.yaml` beside the templates, where
            // `get_health_check` and the scheduler read them; `Templates::write` puts them there.
            let (kind, n) = if name.ends_with("health_check") {
                let bare = n.strip_suffix(".yaml").map(str::to_owned);
                (FileKind::HealthCheck, bare.unwrap_or(n))
            } else {
                (FileKind::Template, n)
            };
            ctx.app
                .templates()
                .call(move |templates| templates.write(kind, &n, &config))
                .await
                .map_err(|e| Fault::new(-32603, e.to_string()))?
                .map_err(|e| {
                    let why = match e {
                        crate::devicetype::Error::Write { source, .. } => source.to_string(),
                        other => other.to_string(),
                    };
                    Fault::new(
                        400,
                        format!("Unable to write device-type configuration: {why}"),
                    )
                })?;
            ctx.app.wake_scheduler();
            Ok(Value::Nil)
        }
        "scheduler.device_types.aliases.add"
        | "scheduler.device_types.aliases.delete"
        | "scheduler.device_types.aliases.list" => {
            let dt = a.string(0, "name")?;
            if name.ends_with("list") {
                a.at_most(1)?;
                return db(ctx, move |s| {
                    let dt = find_device_type(s, &caller, &dt)?;
                    Ok(Value::Array(
                        s.aliases()?
                            .into_iter()
                            .filter(|(_, t)| *t == dt.name)
                            .map(|(a, _)| Value::String(a))
                            .collect(),
                    ))
                })
                .await;
            }
            a.at_most(2)?;
            let alias = a.string(1, "alias")?;
            need_superuser(ctx, "lava_scheduler_app.change_devicetype")?;
            let add = name.ends_with("add");
            db(ctx, move |s| {
                find_device_type(s, &caller, &dt)?;
                if add {
                    s.add_alias(&alias, &dt)?;
                } else {
                    match s.aliases()?.iter().find(|(a, _)| *a == alias) {
                        Some((_, t)) if *t == dt => s.remove_alias(&alias)?,
                        _ => {
                            return Err(Fault::new(404, format!("Alias '{alias}' was not found.")));
                        }
                    }
                }
                Ok(Value::Nil)
            })
            .await
        }
        "scheduler.get_device_type_by_alias" => {
            a.at_most(1)?;
            let alias = a.string(0, "alias")?;
            db(ctx, move |s| {
                let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
                for (a, t) in s.aliases()? {
                    if a.contains(&alias) {
                        out.entry(a).or_default().push(Value::String(t));
                    }
                }
                Ok(Value::Struct(
                    out.into_iter().map(|(k, v)| (k, Value::Array(v))).collect(),
                ))
            })
            .await
        }
        _ => Err(no_such_method(name)),
    }
}
