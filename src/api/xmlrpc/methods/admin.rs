//! The administrators' `system.*` helpers: `set_user_groups`, the per-group device and
//! device-type permissions, and `pipeline_network_map`.
//!
//! LAVA's staff flag is lavabox's superuser. Per-object permissions map onto what lavabox's
//! model holds: a device is public or restricted to its owner user and one owner group, so
//! granting a group `view_device` or `submit_to_device` restricts the device to that group
//! and revoking it makes the device public again; `change_device` and the device-type
//! permissions have no per-object form here and are refused with a 400 that says so.

#[allow(clippy::wildcard_imports)]
use super::*;

/// LAVA's device permission codenames that restrict who sees and uses a device.
const DEVICE_ACCESS_PERMS: [&str; 2] = ["view_device", "submit_to_device"];
/// Codenames that exist in LAVA but have no per-object form in lavabox.
const DEVICE_OTHER_PERMS: [&str; 3] = ["change_device", "add_device", "delete_device"];
const DEVICE_TYPE_PERMS: [&str; 5] = [
    "view_devicetype",
    "submit_to_devicetype",
    "change_devicetype",
    "add_devicetype",
    "delete_devicetype",
];

/// The codename of `app.codename` or `codename`, as LAVA's permission managers take it.
fn codename(perm: &str) -> &str {
    perm.split_once('.').map_or(perm, |(_, c)| c)
}

fn bad(msg: impl Into<String>) -> Fault {
    Fault::new(400, msg)
}

/// A string argument that LAVA type-checks with its own message.
fn str_arg(a: &Args<'_>, i: usize, what: &str, msg: &str) -> Result<String, Fault> {
    match a.req(i, what)? {
        Value::String(s) => Ok(s.clone()),
        _ => Err(bad(msg)),
    }
}

pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    match name {
        "system.set_user_groups" => {
            a.at_most(2)?;
            need_user(ctx)?;
            if !ctx.caller.is_superuser() {
                return Err(Fault::new(403, "forbidden"));
            }
            let email = a.string(0, "user")?;
            let Value::Array(items) = a.req(1, "groups")? else {
                return Err(bad("groups must be a list"));
            };
            let groups: Vec<String> = items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            db(ctx, move |s| {
                // LAVA looks the user up by e-mail address.
                let user = s
                    .users()?
                    .into_iter()
                    .find(|u| !email.is_empty() && u.email == email)
                    .ok_or_else(|| bad("please use an existing user"))?;
                let skipped = s.set_user_groups(&user.username, &groups)?;
                if !skipped.is_empty() {
                    tracing::debug!(user = %user.username, ?skipped, "set_user_groups: skipped groups which do not exist");
                }
                Ok(Value::Nil)
            })
            .await
        }
        "system.assign_perm_device" | "system.revoke_perm_device" => {
            a.at_most(3)?;
            need_superuser(ctx, "lava_scheduler_app.change_device")?;
            let perm = a.string(0, "perm")?;
            let device = str_arg(&a, 1, "device", "device argument must be a string")?;
            let group = a.string(2, "group")?;
            let assign = name.starts_with("system.assign");
            let changes = db(ctx, move |s| {
                if !s.groups()?.iter().any(|g| g.name == group) {
                    return Err(bad("please use existing group name"));
                }
                let d = s
                    .device(&device)?
                    .ok_or_else(|| bad("please use existing device hostname"))?;
                let code = codename(&perm);
                if DEVICE_OTHER_PERMS.contains(&code) {
                    return Err(bad(format!(
                        "Bad request: lavabox has no per-device '{code}' permission; \
                         only superusers change devices"
                    )));
                }
                if !DEVICE_ACCESS_PERMS.contains(&code) {
                    return Err(bad("Please use existing permission codename"));
                }
                let update = if assign {
                    if let Some(other) = d.owner_group.as_deref().filter(|g| *g != group) {
                        return Err(bad(format!(
                            "Bad request: device '{device}' is already restricted to group \
                             '{other}'; a lavabox device has one owner group"
                        )));
                    }
                    DeviceUpdate {
                        owner_group: Some(Some(group)),
                        is_public: Some(false),
                        ..DeviceUpdate::default()
                    }
                } else if d.owner_group.as_deref() == Some(group.as_str()) {
                    DeviceUpdate {
                        owner_group: Some(None),
                        // Still restricted if a user owns it.
                        is_public: Some(d.owner_user.is_none()),
                        ..DeviceUpdate::default()
                    }
                } else {
                    // LAVA: removing a permission the group does not have is a no-op.
                    return Ok(false);
                };
                s.update_device(&device, &update)?;
                Ok(true)
            })
            .await?;
            if changes {
                ctx.app.wake_scheduler();
            }
            Ok(Value::Nil)
        }
        "system.assign_perm_device_type" | "system.revoke_perm_device_type" => {
            a.at_most(3)?;
            need_superuser(ctx, "lava_scheduler_app.change_devicetype")?;
            let perm = a.string(0, "perm")?;
            let device_type = str_arg(&a, 1, "device_type", "device_type name must be a string")?;
            let group = a.string(2, "group")?;
            db(ctx, move |s| {
                if !s.groups()?.iter().any(|g| g.name == group) {
                    return Err(bad("please use existing group name"));
                }
                if s.device_type(&device_type)?.is_none() {
                    return Err(bad("please use existing device type name"));
                }
                if !DEVICE_TYPE_PERMS.contains(&codename(&perm)) {
                    return Err(bad("Please use existing permission codename"));
                }
                Err(bad(
                    "Bad request: lavabox has no per-group device-type permissions; \
                     restrict the devices of the type instead (system.assign_perm_device)",
                ))
            })
            .await
        }
        "system.pipeline_network_map" => {
            a.at_most(1)?;
            need_user(ctx)?;
            let switch = a.opt_string(0, "switch")?.filter(|s| !s.is_empty());
            let caller = ctx.caller.clone();
            let devices = db(ctx, move |s| {
                Ok(s.devices(true)?
                    .into_iter()
                    .filter(|d| may_view_device(&caller, d))
                    .collect::<Vec<_>>())
            })
            .await?;
            let map = ctx
                .app
                .templates()
                .call(move |templates| network_map(templates, &devices))
                .await
                .map_err(|e| Fault::new(-32603, e.to_string()))?;
            let out = match switch {
                None => json!({ "switches": map }),
                Some(sw) => map.get(&sw).cloned().ok_or_else(|| {
                    Fault::new(
                        404,
                        format!(
                            "No switch '{sw}' was found in the network map of supported devices."
                        ),
                    )
                })?,
            };
            Ok(Value::String(yaml_text(&out)))
        }
        _ => Err(no_such_method(name)),
    }
}

/// `{switch: [{port, device: {interface, mac, sysfs, hostname}}]}` from the `interfaces`,
/// `map`, `mac_addr` and `sysfs` of each device's rendered configuration; a device whose
/// dictionary does not render, or has no interfaces, is left out.
fn network_map(
    templates: &crate::devicetype::Templates,
    devices: &[Device],
) -> serde_json::Map<String, serde_json::Value> {
    let mut switches = serde_json::Map::new();
    for d in devices {
        let Some(dict) = d.dictionary.as_deref() else {
            continue;
        };
        let Ok(yaml) = templates.render_yaml(dict, &crate::devicetype::Context::new()) else {
            continue;
        };
        let Ok(params) = serde_norway::from_str::<serde_json::Value>(&yaml) else {
            continue;
        };
        let Some(interfaces) = params.get("interfaces").and_then(|v| v.as_array()) else {
            continue;
        };
        for iface in interfaces.iter().filter_map(|i| i.as_str()) {
            let Some(ports) = params
                .get("map")
                .and_then(|m| m.get(iface))
                .and_then(|m| m.as_object())
            else {
                continue;
            };
            for (sw, port) in ports {
                let entry = json!({
                    "port": port,
                    "device": {
                        "interface": iface,
                        "mac": params.get("mac_addr").and_then(|m| m.get(iface)).cloned().unwrap_or_default(),
                        "sysfs": params.get("sysfs").and_then(|m| m.get(iface)).cloned().unwrap_or_default(),
                        "hostname": d.hostname,
                    },
                });
                let list = switches
                    .entry(sw.clone())
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                if let serde_json::Value::Array(items) = list
                    && !items.iter().any(|e| e.get("port") == Some(port))
                {
                    items.push(entry);
                }
            }
        }
    }
    switches
}
