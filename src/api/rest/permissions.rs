//! `/permissions/devices/` and `/permissions/devicetypes/`: LAVA's per-group object
//! permissions, superuser only, mapped onto lavabox's simpler model.
//!
//! A lavabox device is public or restricted to one owner group, whose members alone may see
//! it and submit to it. So a restricted device *is* two LAVA rows, `view_device` and
//! `submit_to_device` for its group, and that is how it is listed; the row id is
//! `2 × device row id + 0 | 1`, stable while the restriction lasts. Creating either row
//! restricts the device to the group; deleting either makes the device public again (both
//! rows go). What the model cannot hold is refused with a 400 that says so: other device
//! permissions (`change_device`…), a second group on one device, changing a row in place, and
//! every device-type permission.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::ApiError;
use super::admin::{Admin, AdminFields, Fields, created};
use super::page::Params;
use crate::app::App;
use crate::store::{self, DeviceUpdate};

/// The per-device permissions a group restriction stands for, in row-id order.
const DEVICE_PERMS: [&str; 2] = ["view_device", "submit_to_device"];

/// LAVA's other per-device permission codenames, which lavabox keeps for superusers.
const OTHER_DEVICE_PERMS: [&str; 3] = ["add_device", "change_device", "delete_device"];

/// One LAVA `GroupDevicePermission` row.
struct Row {
    id: i64,
    group: String,
    permission: &'static str,
    device: String,
}

impl Row {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "group": self.group,
            "permission": self.permission,
            "device": self.device,
        })
    }
}

fn rows(s: &store::Store) -> Result<Vec<Row>, store::Error> {
    Ok(s.device_group_restrictions()?
        .into_iter()
        .flat_map(|(device_id, device, group)| {
            DEVICE_PERMS
                .iter()
                .zip(0..)
                .map(move |(permission, k)| Row {
                    id: device_id * 2 + k,
                    group: group.clone(),
                    permission,
                    device: device.clone(),
                })
        })
        .collect())
}

async fn find(app: &App, id: String) -> Result<Row, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::NotFound)?;
    app.store()
        .call(move |s| Ok(rows(s)?.into_iter().find(|r| r.id == id)))
        .await?
        .ok_or(ApiError::NotFound)
}

/// `GET /permissions/devices/`.
pub async fn devices(
    State(app): State<App>,
    _admin: Admin,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let page = params.page();
    let all = app.store().call(|s| rows(s)).await?;
    let count = all.len() as u64;
    let results = page.slice(all).iter().map(Row::json).collect();
    Ok(Json(params.paginated(page, count, results)))
}

/// `GET /permissions/devices/<id>/`.
pub async fn device(
    State(app): State<App>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(find(&app, id).await?.json()))
}

/// The permission codename of a new row, or DRF's field error.
fn device_permission(fields: &Fields) -> Result<&'static str, ApiError> {
    let codename = fields.required("permission")?;
    if let Some(known) = DEVICE_PERMS.iter().find(|p| **p == codename) {
        return Ok(known);
    }
    let text = if OTHER_DEVICE_PERMS.contains(&codename.as_str()) {
        format!("lavabox has no per-group '{codename}' permission: only superusers change devices")
    } else {
        format!("Object with codename={codename} does not exist.")
    };
    Err(ApiError::field("permission", text))
}

/// `POST /permissions/devices/` with `group`, `permission`, `device`: restricts the device to
/// the group.
pub async fn create_device(
    State(app): State<App>,
    AdminFields(fields): AdminFields,
) -> Result<Response, ApiError> {
    let group = fields.required("group")?;
    let permission = device_permission(&fields)?;
    let hostname = fields.required("device")?;
    let row = app
        .store()
        .call(move |s| Ok(restrict(s, group, permission, hostname)))
        .await??;
    app.wake_scheduler();
    Ok(created(row.json()))
}

/// Restricts `hostname` to `group` unless the model cannot hold it; returns the new row.
fn restrict(
    s: &mut store::Store,
    group: String,
    permission: &'static str,
    hostname: String,
) -> Result<Row, ApiError> {
    if !s.groups()?.iter().any(|g| g.name == group) {
        return Err(ApiError::field(
            "group",
            format!("Object with name={group} does not exist."),
        ));
    }
    let device = s.device(&hostname)?.ok_or_else(|| {
        ApiError::field(
            "device",
            format!("Invalid pk \"{hostname}\" - object does not exist."),
        )
    })?;
    match device.owner_group.as_deref() {
        Some(owner) if owner == group => {
            return Err(ApiError::BadRequest(json!({
                "non_field_errors": ["The fields group, permission, device must make a unique set."]
            })));
        }
        Some(owner) => {
            return Err(ApiError::detail(format!(
                "device '{hostname}' is already restricted to group '{owner}'; \
                 a lavabox device has one owner group"
            )));
        }
        None => {}
    }
    s.update_device(
        &hostname,
        &DeviceUpdate {
            owner_group: Some(Some(group.clone())),
            is_public: Some(false),
            ..DeviceUpdate::default()
        },
    )?;
    rows(s)?
        .into_iter()
        .find(|r| r.device == hostname && r.permission == permission)
        .ok_or_else(|| ApiError::Internal(format!("restriction of {hostname} not stored")))
}

/// `DELETE /permissions/devices/<id>/`: the device becomes public again (unless a user owns
/// it), so both of its rows go.
pub async fn delete_device(
    State(app): State<App>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = find(&app, id).await?;
    super::admin::delete(&app, move |s| {
        let owner_user = s.device(&row.device)?.and_then(|d| d.owner_user);
        s.update_device(
            &row.device,
            &DeviceUpdate {
                owner_group: Some(None),
                is_public: Some(owner_user.is_none()),
                ..DeviceUpdate::default()
            },
        )
        .map(drop)
    })
    .await
}

/// `PUT`/`PATCH /permissions/devices/<id>/`: refused, since a row stands for the device's
/// whole restriction.
pub async fn update_device(
    State(app): State<App>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    find(&app, id).await?;
    Err(ApiError::detail(
        "lavabox cannot change a device permission in place: delete it and create another",
    ))
}

/// `GET /permissions/devicetypes/`: always empty, lavabox has no device-type permissions.
pub async fn device_types(_admin: Admin, params: Params) -> Result<Json<Value>, ApiError> {
    let page = params.page();
    Ok(Json(params.paginated(page, 0, Vec::new())))
}

/// `/permissions/devicetypes/<id>/`: there are no rows to find.
pub async fn device_type(_admin: Admin) -> Result<Json<Value>, ApiError> {
    Err(ApiError::NotFound)
}

/// `POST /permissions/devicetypes/`: refused with the reason.
pub async fn create_device_type(_admin: Admin) -> Result<Json<Value>, ApiError> {
    Err(ApiError::detail(
        "lavabox has no per-group device-type permissions; \
         restrict the devices of the type instead (/permissions/devices/)",
    ))
}
