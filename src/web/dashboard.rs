//! The dashboard (`/`, LAVA's `/scheduler/`): every device the visitor may see with its
//! state, health, current job and for how long; queue depth and oldest wait per device type;
//! running jobs; recent failures; the appliance's health. Live: `/scheduler/live` is an SSE
//! stream of the re-rendered dashboard body, sent after bus events (gathered for
//! [`SETTLE`], so a burst of changes is one render) and every [`REFRESH`] for the clocks and
//! health, which no event announces.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::access::{self, Caller};
use crate::app::App;
use crate::model::{JobHealth, JobState};
use crate::store::{JobFilter, JobOrder, JobOrderField, Store};

use super::{Page, Visitor, render, render_text, view};

/// How long after an event the dashboard waits for more before rendering.
const SETTLE: Duration = Duration::from_millis(150);
/// How often the dashboard is re-rendered without events (durations, health).
const REFRESH: Duration = Duration::from_secs(10);

/// Everything the dashboard shows that the store holds, as `caller` may see it.
pub fn data(s: &Store, caller: &Caller, now: OffsetDateTime) -> Result<Value, crate::store::Error> {
    let viewer = caller.viewer();
    let jobs = |states: Vec<JobState>, limit: u64| {
        s.jobs(&JobFilter {
            states,
            viewer,
            limit: Some(limit),
            ..JobFilter::default()
        })
    };
    let active = jobs(
        vec![JobState::Scheduled, JobState::Running, JobState::Canceling],
        500,
    )?;
    let devices: Vec<Value> = s
        .devices(false)?
        .iter()
        .filter(|d| access::may_use_device(caller, d))
        .map(|d| {
            let current = d
                .current_job
                .and_then(|id| active.iter().find(|j| j.id == id));
            view::device(d, current, now)
        })
        .collect();
    let queued = s.jobs(&JobFilter {
        states: vec![JobState::Submitted, JobState::Scheduling],
        viewer,
        order: JobOrder {
            field: JobOrderField::Id,
            descending: false,
        },
        ..JobFilter::default()
    })?;
    let mut queue: BTreeMap<String, (u64, OffsetDateTime)> = BTreeMap::new();
    for j in &queued {
        let key = j.requested_device_type.clone().unwrap_or_default();
        let entry = queue.entry(key).or_insert((0, j.submit_time));
        entry.0 += 1;
        entry.1 = entry.1.min(j.submit_time);
    }
    let queue: Vec<Value> = queue
        .into_iter()
        .map(|(ty, (n, oldest))| {
            json!({ "device_type": ty, "depth": n, "oldest": view::span((now - oldest).whole_seconds()) })
        })
        .collect();
    let failures = s.jobs(&JobFilter {
        states: vec![JobState::Finished],
        health: Some(JobHealth::Incomplete),
        viewer,
        order: JobOrder {
            field: JobOrderField::EndTime,
            descending: true,
        },
        limit: Some(10),
        ..JobFilter::default()
    })?;
    Ok(json!({
        "devices": devices,
        "queue": queue,
        "queued": queued.len(),
        "running": active.iter().map(|j| view::job(j, now)).collect::<Vec<_>>(),
        "failures": failures.iter().map(|j| view::job(j, now)).collect::<Vec<_>>(),
        "now": view::time(now),
    }))
}

async fn gather(app: &App, caller: &Caller) -> Result<Value, Page> {
    let c = caller.clone();
    let now = OffsetDateTime::now_utc();
    let mut value = app.store().call(move |s| data(s, &c, now)).await?;
    let dir = app.config().data_dir.clone();
    let health = tokio::task::spawn_blocking(move || view::health(&dir))
        .await
        .unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("health".into(), health);
    }
    Ok(value)
}

/// `GET /`: the dashboard.
pub async fn page(State(app): State<App>, visitor: Visitor) -> Result<Response, Page> {
    let value = gather(&app, &visitor.caller).await?;
    render("dashboard.html", &visitor, value)
}

/// `GET /scheduler/live`: the dashboard body, re-rendered on changes (`event: dashboard`).
pub async fn live(State(app): State<App>, visitor: Visitor) -> Response {
    Sse::new(dashboard_stream(app, visitor))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn dashboard_stream(app: App, visitor: Visitor) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut events = app.events().subscribe();
    async_stream(move |tx| async move {
        loop {
            let html = match gather(&app, &visitor.caller).await {
                Ok(value) => render_text("_dashboard.html", &visitor, value),
                Err(e) => Err(e),
            };
            match html {
                Ok(html) => {
                    if tx
                        .send(Event::default().event("dashboard").data(html))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(err) => tracing::warn!(error = %err, "dashboard live render"),
            }
            tokio::select! {
                got = events.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = got {
                        return;
                    }
                    // Gather the rest of a burst (a job end is a device and a job change).
                    tokio::time::sleep(SETTLE).await;
                    while events.try_recv().is_ok() {}
                }
                () = tokio::time::sleep(REFRESH) => {}
                () = tx.closed() => return,
            }
        }
    })
}

/// A stream fed by a task through a small channel; the task stops when the client goes.
pub fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::CallerUser;
    use crate::store::testutil::{lab, qemu_job};
    use crate::store::{NewDevice, NewUser, Visibility};

    #[test]
    fn the_dashboard_shows_what_the_caller_may_see() {
        let (_dir, mut s) = lab();
        let bob = s.create_user(&NewUser::named("bob")).unwrap();
        let mut private = NewDevice::new("hidden-01", "qemu");
        private.is_public = false;
        private.owner_user = Some("alice".into());
        s.create_device(&private).unwrap();
        s.insert_job(&qemu_job()).unwrap();
        let mut personal = qemu_job();
        personal.visibility = Visibility::Personal;
        personal.description = "alice's own".into();
        s.insert_job(&personal).unwrap();
        let now = OffsetDateTime::now_utc();
        let bob = Caller {
            user: Some(CallerUser {
                id: bob.id,
                username: "bob".into(),
                is_superuser: false,
                groups: Vec::new(),
            }),
        };
        let alice_user = s.user("alice").unwrap().unwrap();
        let alice = Caller {
            user: Some(CallerUser {
                id: alice_user.id,
                username: "alice".into(),
                is_superuser: false,
                groups: Vec::new(),
            }),
        };
        for (caller, devices, queued) in [(Caller::anonymous(), 2, 1), (bob, 2, 1), (alice, 3, 2)] {
            let v = data(&s, &caller, now).unwrap();
            assert_eq!(v["devices"].as_array().unwrap().len(), devices, "{v}");
            assert_eq!(v["queued"], queued, "{v}");
            assert_eq!(v["queue"][0]["device_type"], "qemu");
            assert_eq!(v["queue"][0]["depth"], queued);
        }
    }
}
