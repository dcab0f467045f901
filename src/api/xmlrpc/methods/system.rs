//! `system.*`: introspection, version, the caller's identity and permission queries, plus
//! `scheduler.get_publisher_event_socket`.

#[allow(clippy::wildcard_imports)]
use super::*;

#[allow(clippy::too_many_lines)]
pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    let caller = ctx.caller.clone();
    match name {
        "system.listMethods" => Ok(Value::Array(
            METHODS.iter().map(|m| Value::str(*m)).collect(),
        )),
        "system.methodHelp" => {
            let m = a.string(0, "method_name")?;
            Ok(Value::str(if METHODS.contains(&m.as_str()) {
                format!("{m}: see LAVA 2023.01 XML-RPC documentation")
            } else {
                String::new()
            }))
        }
        "system.methodSignature" => {
            let m = a.string(0, "method_name")?;
            Ok(match m.as_str() {
                "system.methodHelp" => Value::Array(vec![Value::str("str"), Value::str("str")]),
                "system.multicall" => Value::Array(vec![Value::str("array"), Value::str("array")]),
                m if METHODS.contains(&m) => Value::str("undef"),
                _ => Value::str(""),
            })
        }
        "system.multicall" => {
            let calls = match a.req(0, "subcalls")? {
                Value::Array(c) => c.clone(),
                _ => {
                    return Err(Fault::new(
                        -32602,
                        "system.multicall expected a list of methods to call",
                    ));
                }
            };
            let mut out = Vec::with_capacity(calls.len());
            for sub in calls {
                let r = multicall_one(ctx, sub).await;
                out.push(match r {
                    Ok(v) => Value::Array(vec![v]),
                    Err(f) => Value::object([
                        ("faultCode", Value::Int(f.code)),
                        ("faultString", Value::str(f.message)),
                    ]),
                });
            }
            Ok(Value::Array(out))
        }
        "system.getCapabilities" => {
            let spec = |url: &str, v: i64| {
                Value::object([("specUrl", Value::str(url)), ("specVersion", Value::Int(v))])
            };
            Ok(Value::object([
                (
                    "introspect",
                    spec(
                        "http://xmlrpc-c.sourceforge.net/xmlrpc-c/introspection.html",
                        1,
                    ),
                ),
                (
                    "faults_interop",
                    spec(
                        "http://xmlrpc-epi.sourceforge.net/specs/rfc.fault_codes.php",
                        20010516,
                    ),
                ),
                (
                    "auth_token",
                    spec("https://validation.linaro.org/api/help/", 1),
                ),
            ]))
        }
        // LAVA keeps this V1 call as a stub that always answers false.
        "system.user_can_view_bundles" => {
            a.at_most(2)?;
            Ok(Value::Bool(false))
        }
        "system.version" => Ok(Value::str("2023.01")),
        "system.api_version" => Ok(Value::Int(2)),
        "system.whoami" => Ok(Value::opt_str(caller.username().map(str::to_owned))),
        "system.master_config" => {
            let cfg = ctx.app.config();
            Ok(Value::object([
                ("EVENT_TOPIC", Value::str(cfg.events.topic.clone())),
                ("EVENT_SOCKET", Value::str(ctx.app.event_socket())),
                ("EVENT_NOTIFICATION", Value::Bool(true)),
                ("LOG_SIZE_LIMIT", Value::Int(10)),
            ]))
        }
        "system.user_can_view_jobs"
        | "system.user_can_view_devices"
        | "system.user_can_submit_to_types" => {
            a.at_most(2)?;
            let list = a.list(0, "job_list")?;
            let target = target_user(ctx, &a).await?;
            let name = name.to_owned();
            db(ctx, move |s| {
                let mut out = Vec::new();
                match name.as_str() {
                    "system.user_can_view_jobs" => {
                        for v in list {
                            let key = match &v {
                                Value::Int(n) => n.to_string(),
                                Value::String(s) => s.clone(),
                                _ => continue,
                            };
                            match submit::find_job(s, &target, &key) {
                                Ok(_) => out.push((key, Value::Bool(true))),
                                Err(SubmitError::JobHidden { .. }) => {
                                    out.push((key, Value::Bool(false)))
                                }
                                Err(_) => {}
                            }
                        }
                    }
                    "system.user_can_view_devices" => {
                        let devices = s.devices(true)?;
                        let mut per_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
                        for v in list {
                            let Value::String(h) = v else { continue };
                            if let Some(d) = devices.iter().find(|d| d.hostname == h) {
                                per_type.entry(d.device_type.clone()).or_default().push(
                                    Value::Struct(vec![(
                                        d.hostname.clone(),
                                        Value::object([
                                            ("visible", Value::Bool(may_view_device(&target, d))),
                                            ("is_pipeline", Value::Bool(true)),
                                            ("exclusive", Value::Bool(true)),
                                        ]),
                                    )]),
                                );
                            }
                        }
                        out = per_type
                            .into_iter()
                            .map(|(k, v)| (k, Value::Array(v)))
                            .collect();
                    }
                    _ => {
                        let devices = s.devices(false)?;
                        for v in list {
                            let Value::String(t) = v else { continue };
                            if let Some(dt) = s.device_type(&t)? {
                                let ok = (dt.display || target.is_superuser())
                                    && devices.iter().any(|d| {
                                        d.device_type == dt.name
                                            && submit::may_submit_to(&target, d)
                                    });
                                out.push((t, Value::Bool(ok)));
                            }
                        }
                    }
                }
                Ok(Value::Struct(out))
            })
            .await
        }

        "scheduler.get_publisher_event_socket" => Ok(Value::str(ctx.app.event_socket())),
        _ => Err(no_such_method(name)),
    }
}

async fn target_user(ctx: &Ctx, a: &Args<'_>) -> Result<Caller, Fault> {
    let me = need_user(ctx)?.to_owned();
    let Some(other) = a.opt_string(1, "username")? else {
        return Ok(ctx.caller.clone());
    };
    if other == me {
        return Ok(ctx.caller.clone());
    }
    if !ctx.caller.is_superuser() {
        return Err(Fault::new(
            401,
            "Permission denied: only superusers may check other users.",
        ));
    }
    db(ctx, move |s| {
        let user = s
            .user(&other)?
            .ok_or_else(|| Fault::new(404, format!("Username {other} not found")))?;
        let groups = s.user_groups(&other)?.into_iter().map(|g| g.name).collect();
        Ok(Caller {
            user: Some(crate::access::CallerUser {
                id: user.id,
                username: user.username,
                is_superuser: user.is_superuser,
                groups,
            }),
        })
    })
    .await
}

async fn multicall_one(ctx: &Ctx, sub: Value) -> R {
    let bad = |m: &str| Err(Fault::new(-32602, m.to_owned()));
    let Value::Struct(members) = sub else {
        return bad("system.multicall expected struct");
    };
    let mut method = None;
    let mut params = None;
    let mut extra = Vec::new();
    for (k, v) in members {
        match k.as_str() {
            "methodName" => method = Some(v),
            "params" => params = Some(v),
            _ => extra.push(format!("'{k}'")),
        }
    }
    let Some(method) = method else {
        return bad("system.multicall methodName not specified");
    };
    let Value::String(method) = method else {
        return bad("system.multicall methodName must be a string");
    };
    let Some(params) = params else {
        return bad("system.multicall params not specified");
    };
    let Value::Array(params) = params else {
        return bad("system.multicall params must be an array");
    };
    if !extra.is_empty() {
        extra.sort();
        return bad(&format!(
            "system.multicall specified additional arguments [{}]",
            extra.join(", ")
        ));
    }
    if method == "system.multicall" {
        return bad("system.multicall cannot be nested");
    }
    dispatch(ctx, &method, params).await
}
