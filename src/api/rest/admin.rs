//! The administrative writes of LAVA's REST API: create (POST), update (PUT/PATCH) and
//! delete (DELETE) devices, device types, aliases and tags, and set a device dictionary.
//!
//! LAVA guards these with Django model permissions; lavabox has no per-model permissions,
//! so they are the superuser's, the account that holds every permission in LAVA. Anonymous
//! callers get 401, other users 403, as DRF answers. Answers follow DRF's viewsets: 201 with
//! the new object, 200 with the updated one, 204 with no body after a delete, and
//! `{"field": ["message"]}` (400) for bad or duplicate values.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::objects::{DeviceIds, device_json, device_type_json, tag_json};
use super::submission::body_fields;
use super::{ApiError, Caller};
use crate::access::CallerUser;
use crate::app::App;
use crate::model::DeviceHealth;
use crate::store::{
    self, DeviceTypeUpdate, DeviceUpdate, HealthDenominator, NewDevice, NewDeviceType,
};

/// The superuser behind a write, or DRF's 401/403.
pub(super) fn require_admin(caller: &Caller) -> Result<&CallerUser, ApiError> {
    let user = super::auth::require_user(caller)?;
    if user.is_superuser {
        Ok(user)
    } else {
        Err(ApiError::Forbidden(
            "You do not have permission to perform this action.",
        ))
    }
}

/// A write request's body fields.
pub(super) struct Fields(HashMap<String, Value>);

/// The superuser behind a request without a body (deletes, superuser-only reads), or
/// DRF's 401/403.
pub(super) struct Admin;

impl FromRequestParts<App> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Admin, ApiError> {
        require_admin(&Caller::from_request_parts(parts, app).await?).map(|_| Admin)
    }
}

/// The body fields of a superuser's write: extracting it checks the caller first (DRF's
/// 401/403), then decodes the JSON or form body, so a non-admin learns nothing about the
/// fields it sent. Every REST write with a body takes it as its last argument.
pub(super) struct AdminFields(pub(super) Fields);

impl FromRequest<App> for AdminFields {
    type Rejection = Response;

    async fn from_request(request: Request, app: &App) -> Result<AdminFields, Response> {
        let (mut parts, body) = request.into_parts();
        let caller = Caller::from_request_parts(&mut parts, app)
            .await
            .map_err(IntoResponse::into_response)?;
        require_admin(&caller).map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let bytes = Bytes::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(IntoResponse::into_response)?;
        Fields::read(&headers, &bytes)
            .map(AdminFields)
            .map_err(IntoResponse::into_response)
    }
}

impl Fields {
    pub(super) fn read(headers: &HeaderMap, body: &Bytes) -> Result<Fields, ApiError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        body_fields(content_type, body).map(Fields)
    }

    /// The raw value of field `name`, if the body has it.
    pub(super) fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A text field: `None` when absent, `Some(None)` for JSON `null` or an empty form value.
    pub(super) fn text(&self, name: &str) -> Result<Option<Option<String>>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) if s.is_empty() => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(_) => Err(ApiError::field(name, "Not a valid string.")),
        }
    }

    /// A text field that must be present and non-empty.
    pub(super) fn required(&self, name: &str) -> Result<String, ApiError> {
        self.text(name)?
            .flatten()
            .ok_or_else(|| ApiError::field(name, "This field is required."))
    }

    /// A boolean as DRF's `BooleanField` reads JSON or form values.
    pub(super) fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) if n.as_i64() == Some(1) => Ok(Some(true)),
            Some(Value::Number(n)) if n.as_i64() == Some(0) => Ok(Some(false)),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" => Ok(Some(false)),
                _ => Err(ApiError::field(name, "Must be a valid boolean.")),
            },
            Some(_) => Err(ApiError::field(name, "Must be a valid boolean.")),
        }
    }

    /// A non-negative integer.
    pub(super) fn number(&self, name: &str) -> Result<Option<u32>, ApiError> {
        let bad = || ApiError::field(name, "A valid integer is required.");
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(bad),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A choice parsed with `FromStr`, reported as DRF reports an invalid choice.
    pub(super) fn choice<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.text(name)?.flatten() {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| ApiError::field(name, format!("\"{text}\" is not a valid choice."))),
        }
    }
}

/// A store error of a write as DRF words it: duplicates and missing related objects are
/// field errors (400) on `field`, a missing target is 404.
pub(super) fn write_error(err: store::Error, field: &str) -> ApiError {
    match err {
        store::Error::AlreadyExists { kind, .. } => {
            ApiError::field(field, format!("{kind} with this {field} already exists."))
        }
        store::Error::NotFound {
            kind: "device type",
            name,
        } => ApiError::field(
            "device_type",
            format!("Object with name={name} does not exist."),
        ),
        store::Error::Invalid { what, reason } => {
            ApiError::field(field, format!("invalid {what}: {reason}"))
        }
        other => other.into(),
    }
}

pub(super) fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Runs a create in the store; a store error becomes DRF's answer for `field` (the unique
/// one: a duplicate is reported there).
pub(super) async fn create<T: Send + 'static>(
    app: &App,
    field: &'static str,
    make: impl FnOnce(&mut store::Store) -> Result<T, store::Error> + Send + 'static,
) -> Result<T, ApiError> {
    app.store()
        .call(move |s| Ok(make(s)))
        .await?
        .map_err(|err| write_error(err, field))
}

/// The DELETE endpoints (their handlers take [`Admin`]): 204 with no body once `remove` succeeded, 404
/// when there was nothing to remove.
pub(super) async fn delete(
    app: &App,
    remove: impl FnOnce(&mut store::Store) -> Result<(), store::Error> + Send + 'static,
) -> Result<Response, ApiError> {
    app.store().call(remove).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A device's wire form, read back after a write.
fn device_value(s: &store::Store, hostname: &str) -> Result<Value, store::Error> {
    let device = s.device(hostname)?.ok_or_else(|| store::Error::NotFound {
        kind: "device",
        name: hostname.to_owned(),
    })?;
    Ok(device_json(&device, &DeviceIds::load(s)?))
}

/// `POST /devices/`: `hostname`, `device_type` required; `description`, `worker_host`,
/// `health` optional.
pub async fn create_device(
    State(app): State<App>,
    AdminFields(fields): AdminFields,
) -> Result<Response, ApiError> {
    let mut new = NewDevice::new(
        fields.required("hostname")?,
        fields.required("device_type")?,
    );
    new.description = fields.text("description")?.flatten();
    new.worker_name = fields.text("worker_host")?.flatten();
    if let Some(health) = fields.choice::<DeviceHealth>("health")? {
        new.health = health;
    }
    let value = create(&app, "hostname", move |s| {
        s.create_device(&new)
            .and_then(|d| device_value(s, &d.hostname))
    })
    .await?;
    app.wake_scheduler();
    Ok(created(value))
}

/// `PUT`/`PATCH /devices/<hostname>/`: the hostname is read-only; the other writable fields
/// change when given.
pub async fn update_device(
    State(app): State<App>,
    Path(hostname): Path<String>,
    AdminFields(fields): AdminFields,
) -> Result<Json<Value>, ApiError> {
    let update = DeviceUpdate {
        device_type: fields.text("device_type")?.flatten(),
        description: fields.text("description")?,
        worker_name: fields.text("worker_host")?,
        ..DeviceUpdate::default()
    };
    let health = fields.choice::<DeviceHealth>("health")?;
    let (value, changes) = app
        .store()
        .call(move |s| {
            Ok((|| {
                s.update_device(&hostname, &update)?;
                let changes = match health {
                    Some(health) => s.set_device_health(&hostname, health)?,
                    None => store::Changes::default(),
                };
                Ok((device_value(s, &hostname)?, changes))
            })())
        })
        .await?
        .map_err(|err| match err {
            store::Error::NotFound { kind: "device", .. } => ApiError::NotFound,
            other => write_error(other, "device_type"),
        })?;
    app.changed(&changes);
    Ok(Json(value))
}

/// `DELETE /devices/<hostname>/`.
pub async fn delete_device(
    State(app): State<App>,
    _admin: Admin,
    Path(hostname): Path<String>,
) -> Result<Response, ApiError> {
    delete(&app, move |s| s.delete_device(&hostname)).await
}

/// `POST /devices/<hostname>/dictionary/` with `dictionary`: replaces the Jinja2 device
/// dictionary after checking that it renders.
pub async fn set_dictionary(
    State(app): State<App>,
    Path(hostname): Path<String>,
    AdminFields(fields): AdminFields,
) -> Result<Json<Value>, ApiError> {
    let dictionary = fields.required("dictionary")?;
    render_check(&app, dictionary.clone())
        .await?
        .map_err(|err| ApiError::Message(format!("Device dictionary invalid: {err}")))?;
    app.store()
        .call(move |s| s.set_device_dictionary(&hostname, &dictionary))
        .await?;
    Ok(Json(
        json!({ "message": "device config successfully updated" }),
    ))
}

/// `POST /devices/<hostname>/set_health/` with `health` (any case) and `reason`: 202
/// `{"message": "OK"}`, or 400 `{"message": "Wrong device health X"}` as LAVA words it.
/// The change is announced like every health change; lavabox keeps no device admin log, so
/// `reason` is only traced.
pub async fn set_health(
    State(app): State<App>,
    Path(hostname): Path<String>,
    AdminFields(fields): AdminFields,
) -> Result<Response, ApiError> {
    let reason = fields.text("reason")?.flatten();
    let wanted = fields
        .text("health")?
        .flatten()
        .map(|h| h.to_uppercase())
        .unwrap_or_else(|| "None".to_owned());
    let health = wanted.parse::<DeviceHealth>().ok();
    let changes = app
        .store()
        .call(move |s| {
            if s.device(&hostname)?.is_none() {
                return Ok(Err(ApiError::NotFound));
            }
            let Some(health) = health else {
                return Ok(Err(ApiError::Message(format!(
                    "Wrong device health {wanted}"
                ))));
            };
            tracing::info!(device = %hostname, %health, reason = ?reason, "health set over REST");
            s.set_device_health(&hostname, health).map(Ok)
        })
        .await??;
    app.changed(&changes);
    Ok((StatusCode::ACCEPTED, Json(json!({ "message": "OK" }))).into_response())
}

/// `POST /devices/validate/` with the dictionary as the body: 200 with the verdict, 400 when
/// the body is empty. Anyone may ask, as in LAVA.
pub async fn validate_dictionary(
    State(app): State<App>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let dictionary = String::from_utf8_lossy(&body).into_owned();
    if dictionary.trim().is_empty() {
        return Err(ApiError::BadRequest(
            json!({ "device": "Device dictionary is required." }),
        ));
    }
    let verdict = render_check(&app, dictionary).await?;
    Ok(Json(match verdict {
        Ok(()) => json!({ "message": "Device dictionary valid." }),
        Err(err) => json!({ "message": format!("Device dictionary invalid: {err}") }),
    }))
}

/// Renders `dictionary` against the templates off the async workers, and checks the native
/// power it chooses against this machine (`hw::check_power`); the inner result is the verdict.
async fn render_check(app: &App, dictionary: String) -> Result<Result<(), String>, ApiError> {
    let hw = app.config().hw.clone();
    app.templates()
        .call(move |templates| {
            let device = templates
                .render(&dictionary, &crate::devicetype::Context::new())
                .map_err(|e| e.to_string())?;
            crate::hw::check_power(&device.config, &hw).map(drop)
        })
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))
}

fn device_type_value(s: &store::Store, name: &str) -> Result<Value, store::Error> {
    let dt = s.device_type(name)?.ok_or_else(|| store::Error::NotFound {
        kind: "device type",
        name: name.to_owned(),
    })?;
    Ok(device_type_json(&dt, &s.aliases()?))
}

/// The device-type fields both create and update take.
fn device_type_update(fields: &Fields) -> Result<DeviceTypeUpdate, ApiError> {
    Ok(DeviceTypeUpdate {
        description: fields.text("description")?,
        health_frequency: fields.number("health_frequency")?,
        health_denominator: fields.choice::<HealthDenominator>("health_denominator")?,
        disable_health_check: fields.boolean("disable_health_check")?,
        display: fields.boolean("display")?,
        owners_only: fields.boolean("owners_only")?,
    })
}

/// `POST /devicetypes/`: `name` required, LAVA's defaults for the rest.
pub async fn create_device_type(
    State(app): State<App>,
    AdminFields(fields): AdminFields,
) -> Result<Response, ApiError> {
    let name = fields.required("name")?;
    let u = device_type_update(&fields)?;
    let defaults = NewDeviceType::named(name);
    let new = NewDeviceType {
        description: u.description.flatten(),
        health_frequency: u.health_frequency.unwrap_or(defaults.health_frequency),
        health_denominator: u.health_denominator.unwrap_or(defaults.health_denominator),
        disable_health_check: u
            .disable_health_check
            .unwrap_or(defaults.disable_health_check),
        display: u.display.unwrap_or(defaults.display),
        owners_only: u.owners_only.unwrap_or(defaults.owners_only),
        ..defaults
    };
    let value = create(&app, "name", move |s| {
        s.create_device_type(&new)
            .and_then(|dt| device_type_value(s, &dt.name))
    })
    .await?;
    Ok(created(value))
}

/// `PUT`/`PATCH /devicetypes/<name>/`.
pub async fn update_device_type(
    State(app): State<App>,
    Path(name): Path<String>,
    AdminFields(fields): AdminFields,
) -> Result<Json<Value>, ApiError> {
    let update = device_type_update(&fields)?;
    let value = app
        .store()
        .call(move |s| {
            s.update_device_type(&name, &update)?;
            device_type_value(s, &name)
        })
        .await?;
    app.wake_scheduler();
    Ok(Json(value))
}

/// `DELETE /devicetypes/<name>/`.
pub async fn delete_device_type(
    State(app): State<App>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    delete(&app, move |s| s.delete_device_type(&name)).await
}

/// `POST /aliases/`: `name`, `device_type`.
pub async fn create_alias(
    State(app): State<App>,
    AdminFields(fields): AdminFields,
) -> Result<Response, ApiError> {
    let (name, device_type) = (fields.required("name")?, fields.required("device_type")?);
    let answer = json!({ "name": name, "device_type": device_type });
    create(&app, "name", move |s| s.add_alias(&name, &device_type)).await?;
    Ok(created(answer))
}

/// `DELETE /aliases/<name>/`.
pub async fn delete_alias(
    State(app): State<App>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    delete(&app, move |s| s.remove_alias(&name)).await
}

/// `POST /tags/`: `name`, optional `description`.
pub async fn create_tag(
    State(app): State<App>,
    AdminFields(fields): AdminFields,
) -> Result<Response, ApiError> {
    let name = fields.required("name")?;
    let description = fields.text("description")?.flatten();
    let tag = create(&app, "name", move |s| {
        s.create_tag(&name, description.as_deref())
    })
    .await?;
    Ok(created(tag_json(&tag)))
}

/// The tag `id` of a `/tags/<id>/` path; any other text is not found.
fn tag_id(id: &str) -> Result<store::TagId, ApiError> {
    id.parse().map(store::TagId).map_err(|_| ApiError::NotFound)
}

/// `PUT`/`PATCH /tags/<id>/`: `name` and `description` change when given.
pub async fn update_tag(
    State(app): State<App>,
    Path(id): Path<String>,
    AdminFields(fields): AdminFields,
) -> Result<Json<Value>, ApiError> {
    let id = tag_id(&id)?;
    let name = fields.text("name")?.flatten();
    let description = fields.text("description")?;
    let tag = app
        .store()
        .call(move |s| {
            Ok(s.update_tag(
                id,
                name.as_deref(),
                description.as_ref().map(Option::as_deref),
            ))
        })
        .await?
        .map_err(|err| write_error(err, "name"))?;
    Ok(Json(tag_json(&tag)))
}

/// `DELETE /tags/<id>/`.
pub async fn delete_tag(
    State(app): State<App>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = tag_id(&id)?;
    delete(&app, move |s| {
        let tag = s.tags()?.into_iter().find(|t| t.id == id);
        let tag = tag.ok_or_else(|| store::Error::NotFound {
            kind: "tag",
            name: id.0.to_string(),
        })?;
        s.delete_tag(&tag.name)
    })
    .await
}

/// `PUT`/`PATCH /aliases/<name>/`: `name` (a rename) and `device_type` change when given.
pub async fn update_alias(
    State(app): State<App>,
    Path(name): Path<String>,
    AdminFields(fields): AdminFields,
) -> Result<Json<Value>, ApiError> {
    let new_name = fields.text("name")?.flatten();
    let device_type = fields.text("device_type")?.flatten();
    let answer = app
        .store()
        .call(move |s| {
            Ok((|| {
                s.update_alias(&name, new_name.as_deref(), device_type.as_deref())?;
                let current = new_name.unwrap_or(name);
                Ok(s.aliases()?.into_iter().find(|(a, _)| *a == current))
            })())
        })
        .await?
        .map_err(|err| match err {
            store::Error::NotFound { kind: "alias", .. } => ApiError::NotFound,
            other => write_error(other, "name"),
        })?;
    let (name, device_type) = answer.ok_or(ApiError::NotFound)?;
    Ok(Json(json!({ "name": name, "device_type": device_type })))
}
