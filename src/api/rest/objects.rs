//! Devices, device types, workers (the appliance itself), tags, aliases and `/system/`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::filter::{self, CHOICE, FieldSpec, Filterable, Kind, TEXT, Val};
use super::page::Params;
use super::{ApiError, Caller};
use crate::access::may_use_device as may_view_device;
use crate::app::App;
use crate::model::LAVA_VERSION;
use crate::store::{Device, DeviceType, Store};

const DEVICE_STATES: &[&str] = &["Idle", "Reserved", "Running"];
const DEVICE_HEALTHS: &[&str] = &[
    "Good",
    "Unknown",
    "Looping",
    "Bad",
    "Maintenance",
    "Retired",
];

const DEVICE_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "hostname",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "description",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "device_version",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "state",
        kind: Kind::Choice(DEVICE_STATES, true),
        lookups: CHOICE,
    },
    FieldSpec {
        name: "health",
        kind: Kind::Choice(DEVICE_HEALTHS, false),
        lookups: CHOICE,
    },
    FieldSpec {
        name: "device_type",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "device_type__name",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "worker_host",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "worker_host__hostname",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "tags__name",
        kind: Kind::Text,
        lookups: TEXT,
    },
];

impl Filterable for Device {
    fn values(&self, field: &str) -> Vec<Val> {
        let text = |s: &str| Val::Text(s.to_owned());
        vec![match field {
            "hostname" => text(&self.hostname),
            "description" => self.description.as_deref().map_or(Val::Null, text),
            "device_version" => Val::Null,
            "state" => text(self.state.as_str()),
            "health" => text(self.health.as_str()),
            "device_type" | "device_type__name" => text(&self.device_type),
            "worker_host" | "worker_host__hostname" => {
                self.worker_name.as_deref().map_or(Val::Null, text)
            }
            "tags__name" => return self.tags.iter().map(|t| text(t)).collect(),
            _ => Val::Null,
        }]
    }
}

/// The wire form of a device (`DeviceSerializer`).
#[derive(Debug, Serialize)]
struct DeviceJson<'a> {
    hostname: &'a str,
    device_type: &'a str,
    device_version: Option<&'a str>,
    physical_owner: Option<i64>,
    physical_group: Option<i64>,
    description: Option<&'a str>,
    tags: Vec<i64>,
    state: &'static str,
    health: &'static str,
    last_health_report_job: Option<i64>,
    worker_host: Option<&'a str>,
    is_synced: bool,
}

/// Id maps for the foreign keys in device objects.
pub(super) struct DeviceIds {
    tags: HashMap<String, i64>,
    users: HashMap<String, i64>,
    groups: HashMap<String, i64>,
}

impl DeviceIds {
    pub(super) fn load(s: &Store) -> Result<DeviceIds, crate::store::Error> {
        Ok(DeviceIds {
            tags: s.tags()?.into_iter().map(|t| (t.name, t.id.0)).collect(),
            users: s
                .users()?
                .into_iter()
                .map(|u| (u.username, u.id.0))
                .collect(),
            groups: s.groups()?.into_iter().map(|g| (g.name, g.id.0)).collect(),
        })
    }
}

pub(super) fn device_json(device: &Device, ids: &DeviceIds) -> Value {
    serde_json::to_value(DeviceJson {
        hostname: &device.hostname,
        device_type: &device.device_type,
        device_version: None,
        physical_owner: device
            .owner_user
            .as_ref()
            .and_then(|u| ids.users.get(u).copied()),
        physical_group: device
            .owner_group
            .as_ref()
            .and_then(|g| ids.groups.get(g).copied()),
        description: device.description.as_deref(),
        tags: device
            .tags
            .iter()
            .filter_map(|t| ids.tags.get(t).copied())
            .collect(),
        state: device.state.as_str(),
        health: device.health.as_str(),
        last_health_report_job: device.last_health_report_job.map(|j| j.0),
        worker_host: device.worker_name.as_deref(),
        is_synced: false,
    })
    .unwrap_or(Value::Null)
}

/// `GET /devices/` (`?all=1` includes Retired devices).
pub async fn devices(
    State(app): State<App>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let conds = filter::parse(&params, DEVICE_FIELDS)?;
    let page = params.page();
    let all = params
        .get("all")
        .is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    let ordering = filter::ordering(
        &params,
        &["hostname", "device_type", "state", "health", "description"],
    );
    let (count, results) = app
        .store()
        .call(move |s| {
            let ids = DeviceIds::load(s)?;
            let mut devices: Vec<Device> = s
                .devices(all)?
                .into_iter()
                .filter(|d| may_view_device(&caller, d) && filter::matches(d, &conds))
                .collect();
            if let Some((field, desc)) = ordering {
                filter::sort_by_field(&mut devices, field, desc);
            }
            let count = devices.len() as u64;
            let results: Vec<Value> = page
                .slice(devices)
                .iter()
                .map(|d| device_json(d, &ids))
                .collect();
            Ok((count, results))
        })
        .await?;
    Ok(Json(params.paginated(page, count, results)))
}

async fn visible_device(
    app: &App,
    caller: &Caller,
    hostname: String,
) -> Result<(Device, Value), ApiError> {
    let caller = caller.clone();
    app.store()
        .call(move |s| {
            let Some(device) = s.device(&hostname)? else {
                return Ok(None);
            };
            if !may_view_device(&caller, &device) {
                return Ok(None);
            }
            let json = device_json(&device, &DeviceIds::load(s)?);
            Ok(Some((device, json)))
        })
        .await?
        .ok_or(ApiError::NotFound)
}

/// `GET /devices/<hostname>/`.
pub async fn device(
    State(app): State<App>,
    caller: Caller,
    Path(hostname): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(visible_device(&app, &caller, hostname).await?.1))
}

fn typed(body: String, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `GET /devices/<hostname>/dictionary/?render=1&context=<yaml>`: the Jinja2 dictionary,
/// or the rendered device configuration.
pub async fn dictionary(
    State(app): State<App>,
    caller: Caller,
    Path(hostname): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let (device, _) = visible_device(&app, &caller, hostname).await?;
    let dictionary = device.dictionary.ok_or(ApiError::NotFound)?;
    let render = params
        .get("render")
        .is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    if !render {
        return Ok(typed(dictionary, "text/plain"));
    }
    let context: crate::devicetype::Context = match params.get("context") {
        None | Some("") => crate::devicetype::Context::new(),
        Some(text) => match serde_norway::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(Value::Null) => crate::devicetype::Context::new(),
            _ => {
                return Err(ApiError::detail(
                    "Job Context '{}' is not a dictionary".replace("{}", text),
                ));
            }
        },
    };
    let rendered = app
        .templates()
        .call(move |templates| templates.render_yaml(&dictionary, &context))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .map_err(|err| {
            ApiError::detail(format!("Unable to render the device dictionary: {err}"))
        })?;
    Ok(typed(rendered, "application/yaml"))
}

/// The wire form of a device type.
#[derive(Debug, Serialize)]
struct DeviceTypeJson<'a> {
    name: &'a str,
    architecture: Option<&'a str>,
    processor: Option<&'a str>,
    cpu_model: Option<&'a str>,
    aliases: Vec<&'a str>,
    bits: Option<i64>,
    cores: [i64; 0],
    core_count: Option<i64>,
    description: Option<&'a str>,
    health_frequency: u32,
    disable_health_check: bool,
    health_denominator: &'static str,
    display: bool,
}

pub(super) fn device_type_json(dt: &DeviceType, aliases: &[(String, String)]) -> Value {
    serde_json::to_value(DeviceTypeJson {
        name: &dt.name,
        architecture: None,
        processor: None,
        cpu_model: None,
        aliases: aliases
            .iter()
            .filter(|(_, t)| *t == dt.name)
            .map(|(a, _)| a.as_str())
            .collect(),
        bits: None,
        cores: [],
        core_count: None,
        description: dt.description.as_deref(),
        health_frequency: dt.health_frequency,
        disable_health_check: dt.disable_health_check,
        health_denominator: dt.health_denominator.as_str(),
        display: dt.display,
    })
    .unwrap_or(Value::Null)
}

const DEVICE_TYPE_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "name",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "description",
        kind: Kind::Text,
        lookups: TEXT,
    },
    FieldSpec {
        name: "display",
        kind: Kind::Bool,
        lookups: filter::EXACT,
    },
    FieldSpec {
        name: "health_disabled",
        kind: Kind::Bool,
        lookups: filter::EXACT,
    },
];

impl Filterable for DeviceType {
    fn values(&self, field: &str) -> Vec<Val> {
        vec![match field {
            "name" => Val::Text(self.name.clone()),
            "description" => self.description.clone().map_or(Val::Null, Val::Text),
            "display" => Val::Bool(self.display),
            "health_disabled" => Val::Bool(self.disable_health_check),
            _ => Val::Null,
        }]
    }
}

/// `GET /devicetypes/` (hidden types only for superusers).
pub async fn device_types(
    State(app): State<App>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let conds = filter::parse(&params, DEVICE_TYPE_FIELDS)?;
    let page = params.page();
    let superuser = caller.is_superuser();
    let (count, results) = app
        .store()
        .call(move |s| {
            let aliases = s.aliases()?;
            let mut types: Vec<DeviceType> = s
                .device_types()?
                .into_iter()
                .filter(|t| (t.display || superuser) && filter::matches(t, &conds))
                .collect();
            types.sort_by(|a, b| a.name.cmp(&b.name));
            let count = types.len() as u64;
            let results: Vec<Value> = page
                .slice(types)
                .iter()
                .map(|t| device_type_json(t, &aliases))
                .collect();
            Ok((count, results))
        })
        .await?;
    Ok(Json(params.paginated(page, count, results)))
}

async fn visible_type(app: &App, caller: &Caller, name: String) -> Result<Value, ApiError> {
    let superuser = caller.is_superuser();
    app.store()
        .call(move |s| {
            let aliases = s.aliases()?;
            Ok(s.device_type(&name)?
                .filter(|t| t.display || superuser)
                .map(|t| device_type_json(&t, &aliases)))
        })
        .await?
        .ok_or(ApiError::NotFound)
}

/// `GET /devicetypes/<name>/`.
pub async fn device_type(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(visible_type(&app, &caller, name).await?))
}

/// `GET /devicetypes/<name>/template/`: the Jinja2 template.
pub async fn template(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    visible_type(&app, &caller, name.clone()).await?;
    let source = app
        .templates()
        .call(move |templates| templates.template_source(&name))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .map_err(|_| ApiError::NotFound)?;
    Ok(typed(source, "text/plain"))
}

/// `GET /devicetypes/<name>/health_check/`: the health-check job definition.
pub async fn health_check(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    visible_type(&app, &caller, name.clone()).await?;
    let source = app
        .templates()
        .call(move |templates| templates.health_check(&name))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .ok_or_else(|| ApiError::detail("Health-check file not found."))?;
    Ok(typed(source, "application/yaml"))
}

/// `GET /tags/`.
pub async fn tags(State(app): State<App>, params: Params) -> Result<Json<Value>, ApiError> {
    let page = params.page();
    let name = params.get("name").map(str::to_owned);
    let mut tags = app.store().call(|s| s.tags()).await?;
    tags.retain(|t| name.as_ref().is_none_or(|n| *n == t.name));
    tags.sort_by_key(|t| t.id);
    let count = tags.len() as u64;
    let results = page.slice(tags).into_iter().map(|t| tag_json(&t)).collect();
    Ok(Json(params.paginated(page, count, results)))
}

/// `GET /tags/<id>/`.
pub async fn tag(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = id.parse::<i64>().map_err(|_| ApiError::NotFound)?;
    let tag = app
        .store()
        .call(|s| s.tags())
        .await?
        .into_iter()
        .find(|t| t.id.0 == id)
        .ok_or(ApiError::NotFound)?;
    Ok(Json(tag_json(&tag)))
}

/// The wire form of a tag (`TagSerializer`).
pub(super) fn tag_json(tag: &crate::store::Tag) -> Value {
    json!({ "id": tag.id.0, "name": tag.name, "description": tag.description })
}

/// `GET /aliases/`.
pub async fn aliases(State(app): State<App>, params: Params) -> Result<Json<Value>, ApiError> {
    let page = params.page();
    let mut aliases = app.store().call(|s| s.aliases()).await?;
    if let Some(dt) = params.get("device_type") {
        aliases.retain(|(_, t)| t == dt);
    }
    if let Some(name) = params.get("name") {
        aliases.retain(|(a, _)| a == name);
    }
    aliases.sort();
    let count = aliases.len() as u64;
    let results = page
        .slice(aliases)
        .into_iter()
        .map(|(name, device_type)| json!({ "name": name, "device_type": device_type }))
        .collect();
    Ok(Json(params.paginated(page, count, results)))
}

/// `GET /aliases/<name>/`.
pub async fn alias(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (name, device_type) = app
        .store()
        .call(|s| s.aliases())
        .await?
        .into_iter()
        .find(|(a, _)| *a == name)
        .ok_or(ApiError::NotFound)?;
    Ok(Json(json!({ "name": name, "device_type": device_type })))
}

/// `GET /system/version/`.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": LAVA_VERSION }))
}

/// `GET /system/whoami/`.
pub async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({ "user": caller.username().unwrap_or("") }))
}

/// `GET /system/master_config/`.
pub async fn master_config(State(app): State<App>) -> Json<Value> {
    let events = &app.config().events;
    Json(json!({
        "EVENT_TOPIC": events.topic,
        "EVENT_SOCKET": app.event_socket(),
        "EVENT_NOTIFICATION": true,
        "LOG_SIZE_LIMIT": 10,
    }))
}
