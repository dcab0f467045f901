//! `scheduler.devices.*`, `scheduler.devices.tags.*` and the legacy flat device methods.

#[allow(clippy::wildcard_imports)]
use super::*;

#[allow(clippy::too_many_lines)]
pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    let caller = ctx.caller.clone();
    match name {
        "scheduler.validate_pipeline_devices" => {
            a.at_most(1)?;
            let target = a.opt_string(0, "name")?.filter(|n| !n.is_empty());
            let devices = db(ctx, move |s| {
                let all: Vec<Device> = s
                    .devices(false)?
                    .into_iter()
                    .filter(|d| may_view_device(&caller, d))
                    .collect();
                // A device-type name first, then a hostname, as LAVA looks them up.
                let chosen: Vec<Device> = match &target {
                    None => all,
                    Some(n) => {
                        let by_type: Vec<Device> =
                            all.iter().filter(|d| &d.device_type == n).cloned().collect();
                        if by_type.is_empty() {
                            all.into_iter().filter(|d| &d.hostname == n).collect()
                        } else {
                            by_type
                        }
                    }
                };
                if chosen.is_empty() {
                    return Err(Fault::new(
                        404,
                        match &target {
                            Some(n) => format!(
                                "No devices found with hostname or device type name {n}, visible by the user"
                            ),
                            None => "No pipeline devices visible by user were found on this instance."
                                .to_owned(),
                        },
                    ));
                }
                Ok(chosen)
            })
            .await?;
            let text = ctx
                .app
                .templates()
                .call(move |templates| {
                    let mut out = serde_json::Map::new();
                    for d in devices {
                        let verdict = match d.dictionary.as_deref() {
                            None => json!({"Invalid": "Missing device dictionary"}),
                            Some(dict) => {
                                match templates
                                    .render_yaml(dict, &crate::devicetype::Context::new())
                                {
                                    Ok(_) => json!({"Valid": null}),
                                    Err(e) => json!({"Invalid": e.to_string()}),
                                }
                            }
                        };
                        out.insert(d.hostname, verdict);
                    }
                    serde_norway::to_string(&serde_json::Value::Object(out)).unwrap_or_default()
                })
                .await
                .map_err(|e| Fault::new(-32603, e.to_string()))?;
            Ok(binary(text))
        }
        "scheduler.all_devices" => {
            db(ctx, move |s| {
                Ok(Value::Array(
                    s.devices(false)?
                        .iter()
                        .filter(|d| may_view_device(&caller, d))
                        .map(|d| {
                            Value::Array(vec![
                                Value::str(d.hostname.clone()),
                                Value::str(d.device_type.clone()),
                                Value::str(legacy_device_status(d)),
                                d.current_job.map_or(Value::Nil, |j| Value::Int(j.0)),
                                Value::Bool(true),
                            ])
                        })
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.get_device_status" => {
            a.at_most(1)?;
            let h = a.opt_string(0, "hostname")?.unwrap_or_default();
            if h.is_empty() {
                return Err(Fault::new(400, "Bad request: Hostname was not specified."));
            }
            db(ctx, move |s| {
                let d = find_device(s, &caller, &h)?;
                Ok(Value::object([
                    ("hostname", Value::str(d.hostname.clone())),
                    ("status", Value::str(legacy_device_status(&d))),
                    ("job", d.current_job.map_or(Value::Nil, |j| Value::Int(j.0))),
                    ("offline_since", Value::Nil),
                    ("offline_by", Value::Nil),
                    ("is_pipeline", Value::Bool(true)),
                ]))
            })
            .await
        }
        "scheduler.put_into_maintenance_mode" | "scheduler.put_into_online_mode" => {
            a.at_most(3)?;
            let h = a.opt_string(0, "hostname")?.unwrap_or_default();
            if h.is_empty() {
                return Err(Fault::new(400, "Bad request: Hostname was not specified."));
            }
            if a.opt_string(1, "reason")?.unwrap_or_default().is_empty() {
                return Err(Fault::new(400, "Bad request: Reason was not specified."));
            }
            need_user(ctx)?;
            let health = if name.ends_with("maintenance_mode") {
                DeviceHealth::Maintenance
            } else {
                DeviceHealth::Unknown
            };
            let changes = db(ctx, move |s| {
                find_device(s, &caller, &h)?;
                if !caller.is_superuser() {
                    return Err(Fault::new(
                        403,
                        format!(
                            "User '{}' is missing permission lava_scheduler_app.change_device .",
                            caller.display_name()
                        ),
                    ));
                }
                Ok(s.set_device_health(&h, health)?)
            })
            .await?;
            ctx.app.changed(&changes);
            Ok(Value::Nil)
        }
        "scheduler.devices.list" => {
            a.at_most(2)?;
            let show_all = a.opt_bool(0, "show_all", false)?;
            a.opt_bool(1, "offline_info", false)?;
            db(ctx, move |s| {
                let mut devices = s.devices(show_all)?;
                devices.sort_by(|x, y| x.hostname.cmp(&y.hostname));
                Ok(Value::Array(
                    devices
                        .iter()
                        .filter(|d| may_view_device(&caller, d))
                        .map(|d| {
                            Value::object([
                                ("hostname", Value::str(d.hostname.clone())),
                                ("type", Value::str(d.device_type.clone())),
                                ("health", Value::str(d.health.as_str())),
                                ("state", Value::str(d.state.as_str())),
                                (
                                    "current_job",
                                    d.current_job.map_or(Value::Nil, |j| Value::Int(j.0)),
                                ),
                                ("pipeline", Value::Bool(true)),
                            ])
                        })
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.devices.show" => {
            a.at_most(1)?;
            let h = a.string(0, "hostname")?;
            let worker = worker_name(ctx);
            db(ctx, move |s| {
                let d = find_device(s, &caller, &h)?;
                let health_job = s
                    .device_type(&d.device_type)?
                    .is_some_and(|dt| !dt.disable_health_check);
                Ok(Value::object([
                    ("hostname", Value::str(d.hostname.clone())),
                    ("device_type", Value::str(d.device_type.clone())),
                    ("health", Value::str(d.health.as_str())),
                    ("state", Value::str(d.state.as_str())),
                    ("health_job", Value::Bool(health_job)),
                    (
                        "description",
                        Value::str(d.description.clone().unwrap_or_default()),
                    ),
                    ("pipeline", Value::Bool(true)),
                    ("has_device_dict", Value::Bool(d.dictionary.is_some())),
                    (
                        "worker",
                        Value::str(d.worker_name.clone().unwrap_or(worker)),
                    ),
                    (
                        "current_job",
                        d.current_job.map_or(Value::Nil, |j| Value::Int(j.0)),
                    ),
                    (
                        "tags",
                        Value::Array(d.tags.iter().cloned().map(Value::String).collect()),
                    ),
                ]))
            })
            .await
        }
        "scheduler.devices.add" => {
            a.at_most(8)?;
            let hostname = a.string(0, "hostname")?;
            let type_name = a.string(1, "type_name")?;
            let worker = a.string(2, "worker_hostname")?;
            let user = a.opt_string(3, "user_name")?;
            let group = a.opt_string(4, "group_name")?;
            let public = a.opt_bool(5, "public", true)?;
            let health = match a.opt_string(6, "health")? {
                None => DeviceHealth::Unknown,
                Some(h) => {
                    health_from_upper(&h).ok_or_else(|| Fault::new(400, "Invalid health"))?
                }
            };
            let description = a.opt_string(7, "description")?;
            need_superuser(ctx, "lava_scheduler_app.add_device")?;
            let changes_hint = hostname.clone();
            db(ctx, move |s| {
                if s.worker(&worker)?.is_none() {
                    return Err(Fault::new(404, format!("Unable to find worker '{worker}'")));
                }
                if s.device_type(&type_name)?.is_none() {
                    return Err(Fault::new(
                        404,
                        format!("Unable to find device-type '{type_name}'"),
                    ));
                }
                if s.device(&hostname)?.is_some() {
                    return Err(Fault::new(400, "Bad request: device already exists?"));
                }
                let mut new = NewDevice::new(hostname, type_name);
                new.worker_name = Some(worker);
                new.owner_user = user;
                new.owner_group = group;
                new.is_public = public;
                new.health = health;
                new.description = description;
                s.create_device(&new)?;
                Ok(())
            })
            .await?;
            tracing::info!(device = %changes_hint, "device added");
            ctx.app.wake_scheduler();
            Ok(Value::Nil)
        }
        "scheduler.devices.update" => {
            a.at_most(8)?;
            let hostname = a.string(0, "hostname")?;
            let worker = a.opt_string(1, "worker_hostname")?;
            let user = a.opt_string(2, "user_name")?;
            let group = a.opt_string(3, "group_name")?;
            let public = a.opt_bool_tri(4, "public")?;
            let health = match a.opt_string(5, "health")? {
                None => None,
                Some(h) => Some(
                    health_from_upper(&h)
                        .ok_or_else(|| Fault::new(400, format!("Health '{h}' is invalid")))?,
                ),
            };
            let description = a.opt_string(6, "description")?;
            let device_type = a.opt_string(7, "device_type")?;
            need_superuser(ctx, "lava_scheduler_app.change_device")?;
            let changes = db(ctx, move |s| {
                find_device(s, &caller, &hostname)?;
                let update = DeviceUpdate {
                    device_type,
                    description: description.map(Some),
                    worker_name: worker.map(Some),
                    is_public: public,
                    owner_user: user.map(Some),
                    owner_group: group.map(Some),
                };
                s.update_device(&hostname, &update)?;
                match health {
                    Some(h) => Ok(s.set_device_health(&hostname, h)?),
                    None => Ok(store::Changes::default()),
                }
            })
            .await?;
            ctx.app.changed(&changes);
            ctx.app.wake_scheduler();
            Ok(Value::Nil)
        }
        "scheduler.devices.get_dictionary"
        | "scheduler.get_device_config"
        | "scheduler.export_device_dictionary" => {
            a.at_most(3)?;
            let h = a.string(0, "hostname")?;
            let (render, ctx_arg) = match name {
                "scheduler.devices.get_dictionary" => {
                    (a.opt_bool(1, "render", false)?, a.opt_string(2, "context")?)
                }
                "scheduler.get_device_config" => (true, a.opt_string(1, "context")?),
                _ => (false, None),
            };
            let legacy_config = name == "scheduler.get_device_config";
            let dict = db(ctx, move |s| {
                let d = match find_device(s, &caller, &h) {
                    Err(f) if legacy_config && f.code == 403 => {
                        return Err(Fault::new(
                            401,
                            format!("Permission denied for user to device {h}"),
                        ));
                    }
                    other => other?,
                };
                d.dictionary.ok_or_else(|| {
                    Fault::new(404, format!("Device '{h}' does not have a configuration"))
                })
            })
            .await?;
            if !render {
                return Ok(binary(dict));
            }
            let context = match ctx_arg {
                None => crate::devicetype::Context::new(),
                Some(text) => match serde_norway::from_str::<serde_json::Value>(&text) {
                    Ok(serde_json::Value::Object(m)) => m,
                    Ok(serde_json::Value::Null) => crate::devicetype::Context::new(),
                    _ => {
                        return Err(Fault::new(
                            400,
                            "Job Context '{}' is not valid: not a mapping",
                        ));
                    }
                },
            };
            let rendered = ctx
                .app
                .templates()
                .call(move |templates| templates.render_yaml(&dict, &context))
                .await
                .map_err(|e| Fault::new(-32603, e.to_string()))?
                .map_err(|e| {
                    Fault::new(
                        400,
                        format!("Unable to render the device configuration: {e}"),
                    )
                })?;
            Ok(binary(rendered))
        }
        "scheduler.devices.set_dictionary" | "scheduler.import_device_dictionary" => {
            a.at_most(2)?;
            let h = a.string(0, "hostname")?;
            let dict = a.string(1, "dictionary")?;
            need_superuser(ctx, "lava_scheduler_app.change_device")?;
            let legacy = name == "scheduler.import_device_dictionary";
            // LAVA stores a dictionary unchecked; lavabox still refuses one whose native
            // power (`lavabox_power`) names a line, bus, port or PDU this machine lacks.
            let hw = ctx.app.config().hw.clone();
            let d2 = dict.clone();
            let power = ctx
                .app
                .templates()
                .call(move |templates| {
                    match templates.render(&d2, &crate::devicetype::Context::new()) {
                        Ok(device) => crate::hw::check_power(&device.config, &hw).map(drop),
                        Err(_) => Ok(()),
                    }
                })
                .await
                .map_err(|e| Fault::new(-32603, e.to_string()))?;
            if let Err(reason) = power {
                return Err(Fault::new(
                    400,
                    format!("Device dictionary invalid: {reason}"),
                ));
            }
            let h2 = h.clone();
            db(ctx, move |s| {
                find_device(s, &caller, &h2)?;
                s.set_device_dictionary(&h2, &dict)?;
                Ok(())
            })
            .await?;
            ctx.app.wake_scheduler();
            Ok(if legacy {
                Value::str(format!("Device dictionary updated for {h}"))
            } else {
                Value::Bool(true)
            })
        }
        "scheduler.devices.tags.add"
        | "scheduler.devices.tags.delete"
        | "scheduler.devices.tags.list" => {
            let h = a.string(0, "hostname")?;
            if name.ends_with("list") {
                a.at_most(1)?;
                return db(ctx, move |s| {
                    let d = find_device(s, &caller, &h)?;
                    Ok(Value::Array(
                        d.tags.into_iter().map(Value::String).collect(),
                    ))
                })
                .await;
            }
            a.at_most(2)?;
            let tag = a.string(1, "name")?;
            need_superuser(ctx, "lava_scheduler_app.change_device")?;
            let add = name.ends_with("add");
            db(ctx, move |s| {
                let d = find_device(s, &caller, &h)?;
                let exists = s.tags()?.iter().any(|t| t.name == tag);
                if add {
                    if !exists {
                        s.create_tag(&tag, None)?;
                    }
                    if !d.tags.contains(&tag) {
                        s.add_device_tag(&h, &tag)?;
                    }
                } else {
                    if !exists {
                        return Err(Fault::new(404, format!("Tag '{tag}' was not found.")));
                    }
                    s.remove_device_tag(&h, &tag)?;
                }
                Ok(Value::Nil)
            })
            .await
        }
        _ => Err(no_such_method(name)),
    }
}

fn health_from_upper(s: &str) -> Option<DeviceHealth> {
    DeviceHealth::ALL
        .iter()
        .copied()
        .find(|h| h.as_str().to_ascii_uppercase() == s)
}
