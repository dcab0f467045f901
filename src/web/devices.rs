//! Devices: the list, the device page (dictionary raw and rendered, tags, health-check
//! history, recent jobs) and, for superusers, what LAVA needs Django admin for: health
//! (Maintenance, back to Good, Unknown to run a health check first), tags, adding a device
//! from a dictionary and adding a device type. A device the visitor may not use is absent,
//! as in the APIs (`access::may_use_device`).

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::access;
use crate::app::App;
use crate::model::DeviceHealth;
use crate::store::{self, JobFilter, NewDevice, NewDeviceType};

use super::{Page, Visitor, render, view};

fn require_admin(visitor: &Visitor, back: &str) -> Result<(), Page> {
    match &visitor.caller.user {
        None => Err(Page::Login(back.to_owned())),
        Some(u) if u.is_superuser => Ok(()),
        Some(_) => Err(Page::Forbidden(
            "Only superusers may change devices.".into(),
        )),
    }
}

/// `GET /scheduler/alldevices`.
pub async fn list(State(app): State<App>, visitor: Visitor) -> Result<Response, Page> {
    let caller = visitor.caller.clone();
    let devices = app
        .store()
        .call(move |s| {
            Ok(s.devices(true)?
                .into_iter()
                .filter(|d| access::may_use_device(&caller, d))
                .collect::<Vec<_>>())
        })
        .await?;
    let now = OffsetDateTime::now_utc();
    render(
        "devices.html",
        &visitor,
        json!({ "devices": devices.iter().map(|d| view::device(d, None, now)).collect::<Vec<_>>() }),
    )
}

/// `GET /scheduler/device/<name>`.
pub async fn page(
    State(app): State<App>,
    visitor: Visitor,
    Path(name): Path<String>,
) -> Result<Response, Page> {
    let caller = visitor.caller.clone();
    let host = name.clone();
    let found = app
        .store()
        .call(move |s| {
            let Some(device) = s
                .device(&host)?
                .filter(|d| access::may_use_device(&caller, d))
            else {
                return Ok(None);
            };
            let recent = |health_check| JobFilter {
                actual_device: Some(host.clone()),
                health_check,
                viewer: caller.viewer(),
                limit: Some(15),
                ..JobFilter::default()
            };
            let jobs = s.jobs(&recent(None))?;
            let checks = s.jobs(&recent(Some(true)))?;
            let current = match device.current_job {
                Some(id) => s
                    .job(id)?
                    .filter(|j| crate::submit::can_view(s, &caller, j).unwrap_or(false)),
                None => None,
            };
            Ok(Some((device, jobs, checks, current, s.tags()?)))
        })
        .await?;
    let Some((device, jobs, checks, current, tags)) = found else {
        return Err(Page::NotFound(format!("Device {name} not found")));
    };
    let rendered = match device.dictionary.clone() {
        Some(dict) => Some(
            app.templates()
                .call(move |t| t.render_yaml(&dict, &crate::devicetype::Context::new()))
                .await
                .map_err(|e| Page::Internal(e.to_string()))?
                .map_err(|e| format!("{e:#}")),
        ),
        None => None,
    };
    let now = OffsetDateTime::now_utc();
    render(
        "device.html",
        &visitor,
        json!({
            "device": view::device(&device, current.as_ref(), now),
            "dictionary": device.dictionary,
            "rendered": rendered.as_ref().and_then(|r| r.as_ref().ok()),
            "render_error": rendered.as_ref().and_then(|r| r.as_ref().err()),
            "jobs": jobs.iter().map(|j| view::job(j, now)).collect::<Vec<_>>(),
            "checks": checks.iter().map(|j| view::job(j, now)).collect::<Vec<_>>(),
            "all_tags": tags.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            "healths": ["Good", "Unknown", "Maintenance", "Retired"],
        }),
    )
}

/// The health form.
#[derive(Debug, Deserialize)]
pub struct HealthForm {
    health: String,
    #[serde(default)]
    reason: String,
}

/// `POST /scheduler/device/<name>/health`: the admin's health change, announced like every
/// change (Unknown makes the scheduler run the type's health check before user jobs).
pub async fn set_health(
    State(app): State<App>,
    visitor: Visitor,
    Path(name): Path<String>,
    Form(form): Form<HealthForm>,
) -> Result<Response, Page> {
    let back = format!("/scheduler/device/{}", view::url_encode(&name));
    require_admin(&visitor, &back)?;
    let health: DeviceHealth = form
        .health
        .parse()
        .map_err(|e: crate::model::UnknownName| Page::BadRequest(e.to_string()))?;
    let host = name.clone();
    let user = visitor.caller.display_name().to_owned();
    let changes = app
        .store()
        .call(move |s| {
            tracing::info!(device = %host, %health, reason = %form.reason, %user, "health set in the web UI");
            s.set_device_health(&host, health)
        })
        .await?;
    app.changed(&changes);
    Ok(Redirect::to(&back).into_response())
}

/// The tags form: the device's whole tag list, comma or space separated.
#[derive(Debug, Deserialize)]
pub struct TagsForm {
    #[serde(default)]
    tags: String,
}

/// `POST /scheduler/device/<name>/tags`: makes the device's tags the given ones (unknown
/// tags are created).
pub async fn set_tags(
    State(app): State<App>,
    visitor: Visitor,
    Path(name): Path<String>,
    Form(form): Form<TagsForm>,
) -> Result<Response, Page> {
    let back = format!("/scheduler/device/{}", view::url_encode(&name));
    require_admin(&visitor, &back)?;
    let wanted: Vec<String> = form
        .tags
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let host = name.clone();
    app.store()
        .call(move |s| {
            let device = s.device(&host)?.ok_or_else(|| store::Error::NotFound {
                kind: "device",
                name: host.clone(),
            })?;
            let known: Vec<String> = s.tags()?.into_iter().map(|t| t.name).collect();
            for tag in &wanted {
                if !known.contains(tag) {
                    s.create_tag(tag, None)?;
                }
                if !device.tags.contains(tag) {
                    s.add_device_tag(&host, tag)?;
                }
            }
            for tag in device.tags.iter().filter(|t| !wanted.contains(t)) {
                s.remove_device_tag(&host, tag)?;
            }
            Ok(())
        })
        .await?;
    app.wake_scheduler();
    Ok(Redirect::to(&back).into_response())
}

/// `GET /scheduler/devices/add`.
pub async fn add_page(State(app): State<App>, visitor: Visitor) -> Result<Response, Page> {
    require_admin(&visitor, "/scheduler/devices/add")?;
    let types = app.store().call(|s| s.device_types()).await?;
    render(
        "device_add.html",
        &visitor,
        json!({ "types": types.iter().map(|t| t.name.clone()).collect::<Vec<_>>(), "form": {} }),
    )
}

/// The add-device form.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct AddForm {
    hostname: String,
    device_type: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    dictionary: String,
}

/// `POST /scheduler/devices/add`: checks that the dictionary renders (as REST's dictionary
/// upload does), then creates the device with it; health Unknown, so its health check runs
/// first where the type has one.
pub async fn add(
    State(app): State<App>,
    visitor: Visitor,
    Form(form): Form<AddForm>,
) -> Result<Response, Page> {
    require_admin(&visitor, "/scheduler/devices/add")?;
    let refuse = |app: App, visitor: Visitor, form: AddForm, error: String| async move {
        let types = app.store().call(|s| s.device_types()).await?;
        let mut r = render(
            "device_add.html",
            &visitor,
            json!({ "types": types.iter().map(|t| t.name.clone()).collect::<Vec<_>>(), "form": form, "error": error }),
        )?;
        *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
        Ok::<Response, Page>(r)
    };
    let hostname = form.hostname.trim().to_owned();
    if hostname.is_empty() || hostname.contains('/') {
        return refuse(
            app,
            visitor,
            form,
            "The hostname is required and may not contain '/'.".into(),
        )
        .await;
    }
    let dictionary = form.dictionary.replace("\r\n", "\n");
    if !dictionary.trim().is_empty() {
        let dict = dictionary.clone();
        let verdict = app
            .templates()
            .call(move |t| {
                t.render_yaml(&dict, &crate::devicetype::Context::new())
                    .map(drop)
            })
            .await
            .map_err(|e| Page::Internal(e.to_string()))?;
        if let Err(err) = verdict {
            return refuse(
                app,
                visitor,
                form,
                format!("Device dictionary invalid: {err:#}"),
            )
            .await;
        }
    }
    let mut new = NewDevice::new(hostname.clone(), form.device_type.trim());
    new.description = Some(form.description.clone()).filter(|d| !d.trim().is_empty());
    new.dictionary = Some(dictionary).filter(|d| !d.trim().is_empty());
    new.worker_name = Some(app.config().instance.clone());
    match app.store().call(move |s| s.create_device(&new)).await {
        Ok(_) => {}
        Err(err @ (store::Error::AlreadyExists { .. } | store::Error::NotFound { .. })) => {
            return refuse(app, visitor, form, format!("{err}")).await;
        }
        Err(err) => return Err(err.into()),
    }
    app.wake_scheduler();
    Ok(Redirect::to(&format!(
        "/scheduler/device/{}",
        view::url_encode(&hostname)
    ))
    .into_response())
}

/// The add-device-type form.
#[derive(Debug, Deserialize)]
pub struct TypeForm {
    name: String,
}

/// `POST /scheduler/device_types/add`: a device type (its template is looked up by name).
pub async fn add_type(
    State(app): State<App>,
    visitor: Visitor,
    Form(form): Form<TypeForm>,
) -> Result<Response, Page> {
    require_admin(&visitor, "/scheduler/devices/add")?;
    let name = form.name.trim().to_owned();
    if name.is_empty() {
        return Err(Page::BadRequest("The device type needs a name.".into()));
    }
    app.store()
        .call(move |s| s.create_device_type(&NewDeviceType::named(name)))
        .await
        .map_err(|e| match e {
            store::Error::AlreadyExists { .. } => Page::BadRequest(e.to_string()),
            other => other.into(),
        })?;
    Ok(Redirect::to("/scheduler/devices/add").into_response())
}
