//! Jobs: the list with filters and paging, the job page (metadata, pipeline, MultiNode
//! siblings, results, the log viewer), the log's line ranges, search and live stream,
//! cancel and resubmit, submission with validation as you type, and the results pages.
//!
//! The log is read through [`LogIndex`] (ranges by line number, server-side level filters
//! and search), never whole. The live stream (`/scheduler/job/<id>/live`) sends new lines as
//! `event: lines` with the next line number as the SSE id (a reconnect resumes exactly, from
//! `Last-Event-ID`), the job's state as `event: state` when the bus announces a change, and
//! `event: end` once the job is Finished and every line is sent. Log growth is not an event
//! on the bus (the dispatcher's writer is the file's only announcer): the stream waits on an
//! inotify watch of the file (`web::follow`), woken by the writer's batches (at most every
//! `dispatcher::log::WRITE_DELAY`), and looks at the file every [`TAIL`] only when the
//! kernel refuses a watch.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::app::App;
use crate::events::Event as BusEvent;
use crate::jobdef;
use crate::model::{JobHealth, JobId, JobState};
use crate::store::joblog;
use crate::store::{Case, JobCond, JobFilter, JobText, TextMatch};
use crate::submit::{self, Submitted};

use super::dashboard::async_stream;
use super::logindex::{Extent, LogIndex, View};
use super::{Page, Visitor, render, render_text, view};

/// How often a running job's log file is looked at for new lines when it cannot be watched
/// (see the module docs).
const TAIL: Duration = crate::dispatcher::log::WRITE_DELAY;
/// The most lines one range request or live event carries.
pub const MAX_LINES: u64 = 2000;
/// Jobs per list page.
const PAGE: u64 = 25;

/// The job list's filters (`/scheduler/alljobs?state=&health=&device=&submitter=&q=&page=`).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    health: Option<String>,
    device: Option<String>,
    submitter: Option<String>,
    q: Option<String>,
    page: Option<u64>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `GET /scheduler/alljobs`.
pub async fn list(
    State(app): State<App>,
    visitor: Visitor,
    Query(q): Query<ListQuery>,
) -> Result<Response, Page> {
    let mut filter = JobFilter {
        viewer: visitor.caller.viewer(),
        ..JobFilter::default()
    };
    if let Some(s) = nonempty(&q.state) {
        filter.states = vec![
            s.parse::<JobState>()
                .map_err(|e| Page::BadRequest(e.to_string()))?,
        ];
    }
    if let Some(h) = nonempty(&q.health) {
        filter.health = Some(
            h.parse::<JobHealth>()
                .map_err(|e| Page::BadRequest(e.to_string()))?,
        );
    }
    filter.actual_device = nonempty(&q.device).map(str::to_owned);
    filter.submitter = nonempty(&q.submitter).map(str::to_owned);
    if let Some(text) = nonempty(&q.q) {
        filter.conds.push(JobCond::Text(
            JobText::Description,
            TextMatch::Contains,
            Case::Insensitive,
            text.to_owned(),
        ));
    }
    let page = q.page.unwrap_or(1).max(1);
    let count_filter = filter.clone();
    filter.offset = (page - 1) * PAGE;
    filter.limit = Some(PAGE);
    let (jobs, total) = app
        .store()
        .call(move |s| Ok((s.jobs(&filter)?, s.count_jobs(&count_filter)?)))
        .await?;
    let now = OffsetDateTime::now_utc();
    let pages = total.div_ceil(PAGE).max(1);
    let keep = |k: &str, v: &Option<String>| {
        nonempty(v)
            .map(|v| format!("&{k}={}", view::url_encode(v)))
            .unwrap_or_default()
    };
    let query = [
        keep("state", &q.state),
        keep("health", &q.health),
        keep("device", &q.device),
        keep("submitter", &q.submitter),
        keep("q", &q.q),
    ]
    .concat();
    render(
        "jobs.html",
        &visitor,
        json!({
            "jobs": jobs.iter().map(|j| view::job(j, now)).collect::<Vec<_>>(),
            "total": total,
            "page": page,
            "pages": pages,
            "prev": (page > 1).then(|| format!("?page={}{query}", page - 1)),
            "next": (page < pages).then(|| format!("?page={}{query}", page + 1)),
            "f": {
                "state": q.state, "health": q.health, "device": q.device,
                "submitter": q.submitter, "q": q.q,
            },
            "states": JobState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "healths": JobHealth::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        }),
    )
}

/// The job `id` as `visitor` may see it (404 otherwise, as for a job that does not exist).
async fn visible_job(app: &App, visitor: &Visitor, id: &str) -> Result<crate::store::Job, Page> {
    let caller = visitor.caller.clone();
    let id = id.to_owned();
    Ok(app
        .store()
        .call(move |s| Ok(submit::find_job(s, &caller, &id)))
        .await??)
}

fn index_of(app: &App, id: JobId) -> LogIndex {
    LogIndex::new(&joblog::log_path(&app.config().data_dir, id))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, super::logindex::Error> + Send + 'static,
) -> Result<T, Page> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Page::Internal(e.to_string()))?
        .map_err(Page::from)
}

/// The pipeline table: each action's start line paired with its end.
fn pipeline(markers: &[super::logindex::Marker], finished: bool) -> Vec<Value> {
    let mut rows = Vec::new();
    for (i, m) in markers
        .iter()
        .enumerate()
        .filter(|(_, m)| m.kind == "start")
    {
        let end = markers[i + 1..]
            .iter()
            .find(|e| e.kind == "end" && e.level == m.level && e.name == m.name);
        let depth = m.level.matches('.').count();
        rows.push(json!({
            "level": m.level,
            "name": m.name,
            "depth": depth,
            "line": m.line + 1,
            "fold": end.filter(|e| e.line > m.line + 1).map(|e| format!("{}-{}", m.line + 1, e.line)),
            "timeout": m.detail.strip_prefix("timeout ").unwrap_or(&m.detail),
            "duration": end.map(|e| e.detail.strip_prefix("duration ").unwrap_or(&e.detail).to_owned()),
            "status": match (end, finished) {
                (Some(_), _) => "done",
                (None, true) => "stopped",
                (None, false) => "running",
            },
        }));
    }
    rows
}

/// `GET /scheduler/job/<id>`: the job page.
pub async fn page(
    State(app): State<App>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, Page> {
    let job = visible_job(&app, &visitor, &id).await?;
    let caller = visitor.caller.clone();
    let (jid, group) = (job.id, job.target_group.clone());
    let (metadata, cases, siblings) = app
        .store()
        .call(move |s| {
            let siblings = match group {
                Some(g) => s.jobs(&JobFilter {
                    target_group: Some(g),
                    viewer: caller.viewer(),
                    ..JobFilter::default()
                })?,
                None => Vec::new(),
            };
            Ok((
                s.job_metadata(jid)?,
                s.test_cases(jid, None, 0, Some(200))?,
                siblings,
            ))
        })
        .await?;
    let ix = index_of(&app, job.id);
    let (extent, markers) = blocking(move || {
        let e = ix.extend()?;
        Ok((e, ix.markers(e)?))
    })
    .await?;
    let now = OffsetDateTime::now_utc();
    let may_change =
        visitor.caller.is_superuser() || visitor.caller.username() == Some(job.submitter.as_str());
    let finished = job.state == JobState::Finished;
    render(
        "job.html",
        &visitor,
        json!({
            "job": view::job(&job, now),
            "num": job.id.0,
            "definition": job.original_definition,
            "metadata": metadata.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "cases": cases.iter().map(|c| json!({
                "suite": c.suite, "name": c.name, "result": c.result.as_str(),
                "measurement": c.measurement, "units": c.units,
                "line": c.start_log_line.map(|l| l + 1),
            })).collect::<Vec<_>>(),
            "siblings": siblings.iter().map(|j| view::job(j, now)).collect::<Vec<_>>(),
            "pipeline": pipeline(&markers, finished),
            "lines": extent.lines,
            "can_cancel": may_change && !matches!(job.state, JobState::Finished | JobState::Canceling),
            "can_resubmit": visitor.caller.user.is_some(),
            "levels": super::logindex::LEVELS,
        }),
    )
}

/// `?start=&count=&levels=` of a line-range request.
#[derive(Debug, Deserialize)]
pub struct LinesQuery {
    #[serde(default)]
    start: u64,
    count: Option<u64>,
    levels: Option<String>,
    hide: Option<String>,
}

/// `GET /scheduler/job/<id>/lines`: lines by number from the index (`{"total", "rows"}`),
/// or with `levels=a,b` and `hide=from-to,…` (folded actions) by position among the lines
/// the view shows.
pub async fn lines(
    State(app): State<App>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(q): Query<LinesQuery>,
) -> Result<Response, Page> {
    let job = visible_job(&app, &visitor, &id).await?;
    let ix = index_of(&app, job.id);
    let count = q.count.unwrap_or(200).min(MAX_LINES);
    let view = View::parse(q.levels.as_deref(), q.hide.as_deref());
    let (extent, total, rows) = blocking(move || {
        let e = ix.extend()?;
        let (total, rows) = ix.rows(e, q.start, count, &view)?;
        Ok((e, total, rows))
    })
    .await?;
    Ok(Json(json!({
        "total": total,
        "lines": extent.lines,
        "rows": rows,
        "finished": job.state == JobState::Finished,
    }))
    .into_response())
}

/// `?q=&from=` of a search.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: String,
    #[serde(default)]
    from: u64,
}

/// `GET /scheduler/job/<id>/search`: the first 100 lines from `from` containing `q`.
pub async fn search(
    State(app): State<App>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(q): Query<SearchQuery>,
) -> Result<Response, Page> {
    let job = visible_job(&app, &visitor, &id).await?;
    let ix = index_of(&app, job.id);
    let found = blocking(move || {
        let e = ix.extend()?;
        ix.search(e, &q.q, q.from, 100)
    })
    .await?;
    Ok(Json(json!({ "rows": found })).into_response())
}

/// `?from=` of the live stream (a reconnect's `Last-Event-ID` wins).
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    #[serde(default)]
    from: u64,
}

/// `GET /scheduler/job/<id>/live`: the SSE stream of the job's new log lines and states.
pub async fn live(
    State(app): State<App>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(q): Query<LiveQuery>,
    headers: HeaderMap,
) -> Result<Response, Page> {
    let job = visible_job(&app, &visitor, &id).await?;
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(q.from);
    Ok(Sse::new(log_stream(app, job, from))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn state_event(state: JobState, health: JobHealth) -> Event {
    Event::default().event("state").data(
        json!({
            "state": state.as_str(),
            "health": health.as_str(),
            "class": view::job_class(state, health),
        })
        .to_string(),
    )
}

fn log_stream(
    app: App,
    job: crate::store::Job,
    mut from: u64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // Subscribe before reading anything, so no change between the read and the wait is lost.
    let mut events = app.events().subscribe();
    let ix = index_of(&app, job.id);
    // Likewise the log file's watch: a write after the read below wakes the wait.
    let log = joblog::log_path(&app.config().data_dir, job.id);
    let mut growth = match super::follow::LogFollower::new(&log) {
        Ok(f) => Some(f),
        Err(err) => {
            tracing::warn!(error = %err, job = %job.id, "no inotify watch on the log: looking at it every {TAIL:?}");
            None
        }
    };
    async_stream(move |tx| async move {
        let mut finished = job.state == JobState::Finished;
        if tx.send(state_event(job.state, job.health)).await.is_err() {
            return;
        }
        loop {
            let at = ix.clone();
            let read = tokio::task::spawn_blocking(move || {
                let e: Extent = at.extend()?;
                let (_, rows) = at.rows(e, from, MAX_LINES, &View::default())?;
                Ok::<_, super::logindex::Error>((e, rows))
            })
            .await;
            let (extent, rows) = match read {
                Ok(Ok(r)) => r,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, job = %job.id, "live log");
                    return;
                }
                Err(_) => return,
            };
            if let Some(last) = rows.last() {
                from = last.n + 1;
                let data = json!({ "rows": rows, "lines": extent.lines }).to_string();
                let event = Event::default()
                    .event("lines")
                    .id(from.to_string())
                    .data(data);
                if tx.send(event).await.is_err() {
                    return;
                }
                if from < extent.lines {
                    continue;
                }
            }
            if finished {
                let _ = tx
                    .send(Event::default().event("end").data(from.to_string()))
                    .await;
                return;
            }
            tokio::select! {
                got = events.recv() => match got {
                    Ok(published) => {
                        if let BusEvent::Job(change) = &published.event && change.id == job.id {
                            finished = change.state == JobState::Finished;
                            if tx.send(state_event(change.state, change.health)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Missed events: read the state from the store instead.
                        let id = job.id;
                        if let Ok(Some(j)) = app.store().call(move |s| s.job(id)).await {
                            finished = j.state == JobState::Finished;
                            let _ = tx.send(state_event(j.state, j.health)).await;
                        }
                    }
                    Err(_) => return,
                },
                grown = log_growth(&mut growth) => {
                    if let Err(err) = grown {
                        tracing::warn!(error = %err, job = %job.id, "log watch failed: looking at it every {TAIL:?}");
                        growth = None;
                    }
                }
                () = tx.closed() => return,
            }
        }
    })
}

/// Resolves when the job's log may have grown: its inotify watch, or without one (inotify
/// refused, e.g. out of watches) the dispatcher's write delay.
async fn log_growth(growth: &mut Option<super::follow::LogFollower>) -> std::io::Result<()> {
    match growth {
        Some(f) => f.changed().await,
        None => {
            tokio::time::sleep(TAIL).await;
            Ok(())
        }
    }
}

/// `POST /scheduler/job/<id>/cancel`.
pub async fn cancel(
    State(app): State<App>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, Page> {
    if visitor.caller.user.is_none() {
        return Err(Page::Login(format!("/scheduler/job/{id}")));
    }
    submit::cancel(&app, &visitor.caller, &id).await?;
    Ok(Redirect::to(&format!("/scheduler/job/{}", view::url_encode(&id))).into_response())
}

fn first_id(s: &Submitted) -> String {
    match s {
        Submitted::Single(id) => id.to_string(),
        Submitted::MultiNode(subs) => subs.first().map(|(_, sub)| sub.clone()).unwrap_or_default(),
    }
}

/// `POST /scheduler/job/<id>/resubmit`.
pub async fn resubmit(
    State(app): State<App>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, Page> {
    if visitor.caller.user.is_none() {
        return Err(Page::Login(format!("/scheduler/job/{id}")));
    }
    let created = submit::resubmit(&app, &visitor.caller, &id).await?;
    Ok(Redirect::to(&format!("/scheduler/job/{}", first_id(&created))).into_response())
}

/// The submission form.
#[derive(Debug, Deserialize)]
pub struct SubmitForm {
    #[serde(default)]
    definition: String,
}

/// The validator's problems, each at its line (the validation APIs' check: no typed
/// definition is built).
fn problems(text: &str) -> Vec<Value> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    match jobdef::validate_str_mode(text, jobdef::Mode::Lenient) {
        Ok(_) => Vec::new(),
        Err(found) => found
            .iter()
            .map(|p| json!({ "line": p.line, "path": p.path.to_string(), "message": p.describe() }))
            .collect(),
    }
}

/// [`problems`] under the same bound on concurrent parses as every API's validation
/// (`submit::parse_limited`), so checking as one types is no way around it.
async fn checked(text: String) -> Vec<Value> {
    submit::parse_limited(move || problems(&text))
        .await
        .unwrap_or_default()
}

/// `GET /scheduler/jobsubmit`.
pub async fn submit_page(visitor: Visitor) -> Result<Response, Page> {
    if visitor.caller.user.is_none() {
        return Err(Page::Login("/scheduler/jobsubmit".into()));
    }
    render(
        "submit.html",
        &visitor,
        json!({ "definition": "", "problems": [] }),
    )
}

/// `POST /scheduler/jobsubmit`: submits through `submit::submit`, then shows the new job;
/// a refused definition comes back with the reason and the problems at their lines.
pub async fn submit(
    State(app): State<App>,
    visitor: Visitor,
    Form(form): Form<SubmitForm>,
) -> Result<Response, Page> {
    if visitor.caller.user.is_none() {
        return Err(Page::Login("/scheduler/jobsubmit".into()));
    }
    match submit::submit(&app, &visitor.caller, &form.definition).await {
        Ok(created) => {
            Ok(Redirect::to(&format!("/scheduler/job/{}", first_id(&created))).into_response())
        }
        Err(submit::SubmitError::Store(e)) => Err(Page::from(e)),
        Err(err) => {
            let text = form.definition.clone();
            let found = checked(text).await;
            let mut response = render(
                "submit.html",
                &visitor,
                json!({ "definition": form.definition, "error": err.to_string(), "problems": found }),
            )?;
            *response.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(response)
        }
    }
}

/// `POST /scheduler/jobsubmit/validate` (htmx, as the visitor types): the validator's
/// problems as an HTML fragment.
pub async fn validate(visitor: Visitor, Form(form): Form<SubmitForm>) -> Result<Response, Page> {
    if form.definition.len() > jobdef::MAX_JOB_SIZE {
        return Err(Page::BadRequest("the definition is too large".into()));
    }
    let found = checked(form.definition).await;
    let html = render_text(
        "_problems.html",
        &visitor,
        json!({ "problems": found, "checked": true }),
    )?;
    Ok(axum::response::Html(html).into_response())
}

async fn results_page(
    app: App,
    visitor: Visitor,
    id: String,
    suite: Option<String>,
) -> Result<Response, Page> {
    let job = visible_job(&app, &visitor, &id).await?;
    let jid = job.id;
    let wanted = suite.clone();
    let (suites, cases) = app
        .store()
        .call(move |s| {
            Ok((
                s.test_suites(jid)?,
                s.test_cases(jid, wanted.as_deref(), 0, Some(5000))?,
            ))
        })
        .await?;
    if let Some(name) = &suite
        && !suites.iter().any(|s| &s.name == name)
    {
        return Err(Page::NotFound(format!("Suite {name} not found")));
    }
    let summary: Vec<Value> = suites
        .iter()
        .filter(|s| suite.as_ref().is_none_or(|w| *w == s.name))
        .map(|s| {
            let of = |r: &str| cases.iter().filter(|c| c.suite == s.name && c.result.as_str() == r).count();
            json!({ "name": s.name, "pass": of("pass"), "fail": of("fail"), "skip": of("skip"), "unknown": of("unknown") })
        })
        .collect();
    let now = OffsetDateTime::now_utc();
    render(
        "results.html",
        &visitor,
        json!({
            "job": view::job(&job, now),
            "num": job.id.0,
            "suite": suite,
            "suites": summary,
            "cases": cases.iter().map(|c| json!({
                "suite": c.suite, "name": c.name, "result": c.result.as_str(),
                "measurement": c.measurement, "units": c.units,
                "line": c.start_log_line.map(|l| l + 1),
            })).collect::<Vec<_>>(),
        }),
    )
}

/// `GET /results/<job>`: every suite and case of a job, with the exports.
pub async fn results(
    State(app): State<App>,
    visitor: Visitor,
    Path(job): Path<String>,
) -> Result<Response, Page> {
    results_page(app, visitor, job, None).await
}

/// `GET /results/<job>/<suite>`.
pub async fn suite_results(
    State(app): State<App>,
    visitor: Visitor,
    Path((job, suite)): Path<(String, String)>,
) -> Result<Response, Page> {
    results_page(app, visitor, job, Some(suite)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::logindex::marker;

    #[test]
    fn the_pipeline_pairs_starts_with_ends() {
        let m = [
            marker(0, "start: 1 deploy (timeout 10s)").unwrap(),
            marker(3, "start: 1.1 download (timeout 5s)").unwrap(),
            marker(7, "end: 1.1 download (duration 0.20)").unwrap(),
            marker(9, "end: 1 deploy (duration 0.50)").unwrap(),
            marker(10, "start: 2 boot (timeout 60s)").unwrap(),
        ];
        let rows = pipeline(&m, false);
        let show: Vec<(String, u64, String)> = rows
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().into(),
                    r["line"].as_u64().unwrap(),
                    r["status"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            show,
            [
                ("deploy".into(), 1, "done".into()),
                ("download".into(), 4, "done".into()),
                ("boot".into(), 11, "running".into())
            ]
        );
        assert_eq!(rows[1]["depth"], 1);
        assert_eq!(rows[0]["duration"], "0.50");
        assert_eq!(pipeline(&m, true)[2]["status"], "stopped");
    }

    #[test]
    fn problems_carry_their_lines() {
        let found = problems("job_name: x\nactions: 3\n");
        assert!(!found.is_empty());
        assert!(found.iter().all(|p| p["line"].as_u64().is_some()));
        assert!(problems("  ").is_empty());
    }
}
