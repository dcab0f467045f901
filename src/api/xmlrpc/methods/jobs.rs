//! `scheduler.jobs.*` and the legacy flat job methods (`scheduler.submit_job`, `job_details`, …).

#[allow(clippy::wildcard_imports)]
use super::*;

#[allow(clippy::too_many_lines)]
pub(super) async fn call(ctx: &Ctx, name: &str, a: Args<'_>) -> R {
    let caller = ctx.caller.clone();
    match name {
        "scheduler.jobs.submit" | "scheduler.submit_job" => {
            a.at_most(1)?;
            let def = a.string(0, "job_data")?;
            Ok(submitted(submit::submit(&ctx.app, &caller, &def).await?))
        }
        "scheduler.jobs.resubmit" | "scheduler.resubmit_job" => {
            a.at_most(1)?;
            let id = a.job_id(0)?;
            Ok(submitted(submit::resubmit(&ctx.app, &caller, &id).await?))
        }
        "scheduler.jobs.cancel" | "scheduler.cancel_job" => {
            a.at_most(1)?;
            let id = a.job_id(0)?;
            submit::cancel(&ctx.app, &caller, &id).await?;
            Ok(Value::Bool(true))
        }
        "scheduler.jobs.validate" => {
            a.at_most(2)?;
            let def = a.string(0, "definition")?;
            let mode = if a.opt_bool(1, "strict", false)? {
                jobdef::Mode::Strict
            } else {
                jobdef::Mode::Lenient
            };
            submit::parse_limited(move || validate_result(&def, mode))
                .await
                .map_err(|e| Fault::new(-32603, e.to_string()))
        }
        "scheduler.validate_yaml" => {
            a.at_most(1)?;
            let def = a.string(0, "yaml_string")?;
            match submit::parse_limited(move || {
                jobdef::validate_str_mode(&def, jobdef::Mode::Lenient)
            })
            .await
            .map_err(|e| Fault::new(-32603, e.to_string()))?
            {
                Ok(()) => Ok(Value::Nil),
                Err(problems) => Err(Fault::new(
                    400,
                    format!(
                        "Invalid YAML submission: {}",
                        problems
                            .first()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    ),
                )),
            }
        }
        "scheduler.jobs.list" => {
            a.at_most(6)?;
            let state = match a.opt_string(0, "state")? {
                None => None,
                Some(s) => Some(
                    s.parse::<JobState>()
                        .map_err(|_| Fault::new(400, format!("Invalid state '{s}'")))?,
                ),
            };
            let health = match a.opt_string(1, "health")? {
                None => None,
                Some(h) => Some(
                    h.parse::<JobHealth>()
                        .map_err(|_| Fault::new(400, format!("Invalid health '{h}'")))?,
                ),
            };
            let page = a.page(2)?;
            let since = a.opt_int(4, "since")?.unwrap_or(0);
            let verbose = a.opt_bool(5, "verbose", false)?;
            let filter = JobFilter {
                states: state.into_iter().collect(),
                health,
                ended_since: (since > 0)
                    .then(|| OffsetDateTime::now_utc() - time::Duration::minutes(since)),
                ..newest_first(&caller, page)
            };
            let jobs = db(ctx, move |s| Ok(s.jobs(&filter)?)).await?;
            Ok(Value::Array(
                jobs.iter()
                    .map(|j| {
                        let mut m = vec![
                            ("id".to_owned(), job_key(j)),
                            ("description".to_owned(), Value::str(j.description.clone())),
                            (
                                "device_type".to_owned(),
                                Value::opt_str(j.requested_device_type.clone()),
                            ),
                            ("health".to_owned(), Value::str(j.health.as_str())),
                            ("state".to_owned(), Value::str(j.state.as_str())),
                            ("submitter".to_owned(), Value::str(j.submitter.clone())),
                        ];
                        if verbose {
                            m.push((
                                "actual_device".into(),
                                Value::opt_str(j.actual_device.clone()),
                            ));
                            m.push(("start_time".into(), py_str_time(j.start_time)));
                            m.push(("end_time".into(), py_str_time(j.end_time)));
                            m.push((
                                "error_msg".into(),
                                Value::opt_str(j.failure_comment.clone()),
                            ));
                            m.push((
                                "error_type".into(),
                                Value::opt_str(j.error_type.map(|e| e.as_str())),
                            ));
                        }
                        Value::Struct(m)
                    })
                    .collect(),
            ))
        }
        "scheduler.jobs.queue" => {
            a.at_most(3)?;
            let types: Vec<String> = match a.present(0) {
                None => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
                Some(other) => return Err(a.wrong("device_types", "a list", other)),
            };
            let page = a.page(1)?;
            let filter = JobFilter {
                states: vec![JobState::Submitted],
                requested_device_types: types,
                ..newest_first(&caller, page)
            };
            let jobs = db(ctx, move |s| Ok(s.jobs(&filter)?)).await?;
            Ok(Value::Array(
                jobs.iter()
                    .map(|j| {
                        Value::object([
                            ("id", job_key(j)),
                            ("description", Value::str(j.description.clone())),
                            (
                                "requested_device_type",
                                Value::opt_str(j.requested_device_type.clone()),
                            ),
                            ("submitter", Value::str(j.submitter.clone())),
                        ])
                    })
                    .collect(),
            ))
        }
        "scheduler.jobs.show"
        | "scheduler.jobs.definition"
        | "scheduler.job_details"
        | "scheduler.job_health"
        | "scheduler.job_state"
        | "scheduler.jobs.configuration" => {
            a.at_most(1)?;
            let id = a.job_id(0)?;
            let job = db(ctx, move |s| find_job(s, &caller, &id)).await?;
            Ok(match name {
                "scheduler.jobs.show" => job_show(&job),
                "scheduler.jobs.definition" => Value::str(if job.multinode_definition.is_empty() {
                    job.original_definition.clone()
                } else {
                    job.multinode_definition.clone()
                }),
                "scheduler.job_details" => job_details(&job),
                "scheduler.jobs.configuration" => {
                    if !matches!(
                        job.state,
                        JobState::Running | JobState::Canceling | JobState::Finished
                    ) {
                        return Err(Fault::new(
                            404,
                            format!("Job '{}' has not started yet", job.id.0),
                        ));
                    }
                    // Written into the job's directory by the job path at job start; read
                    // with tokio::fs, on the blocking pool.
                    let dir = ctx.app.config().job_dir(job.id);
                    let mut files = vec![Value::Base64(job.definition.clone().into_bytes())];
                    for f in ["device.yaml", "dispatcher.yaml", "env.yaml", "env-dut.yaml"] {
                        files.push(match tokio::fs::read(dir.join(f)).await {
                            Ok(b) => Value::Base64(b),
                            Err(_) => Value::Nil,
                        });
                    }
                    Value::Array(files)
                }
                _ => {
                    let (k, v) = if name == "scheduler.job_health" {
                        ("job_health", job.health.as_str())
                    } else {
                        ("job_state", job.state.as_str())
                    };
                    let mut m = vec![
                        ("job_id".to_owned(), Value::Int(job.id.0)),
                        (k.to_owned(), Value::str(v)),
                    ];
                    if let Some(sub) = &job.sub_id {
                        m.push(("sub_id".into(), Value::str(sub.clone())));
                    }
                    Value::Struct(m)
                }
            })
        }
        "scheduler.jobs.logs" => {
            a.at_most(3)?;
            let id = a.job_id(0)?;
            let start = u64::try_from(a.opt_int(1, "start")?.unwrap_or(0).max(0)).unwrap_or(0);
            let end = a
                .opt_int(2, "end")?
                .map(|e| u64::try_from(e.max(0)).unwrap_or(0));
            let job = db(ctx, move |s| find_job(s, &caller, &id)).await?;
            // "Finished" is the job's state; the text is the file at the path rule, read
            // after the store call, on the blocking pool.
            let finished = job.state == JobState::Finished;
            let path = ctx.app.config().job_log_path(job.id);
            let data = store::joblog::read_text_blocking(path, start, end)
                .await
                .map_err(|e| internal_error("reading the job log", &e))?;
            let data = if data.is_empty() {
                "[]".to_owned()
            } else {
                data
            };
            Ok(Value::Array(vec![Value::Bool(finished), binary(data)]))
        }
        "scheduler.job_output" => {
            a.at_most(2)?;
            let id = a.job_id(0)?;
            let offset = u64::try_from(a.opt_int(1, "offset")?.unwrap_or(0).max(0)).unwrap_or(0);
            let job = db(ctx, move |s| find_job(s, &caller, &id)).await?;
            let path = ctx.app.config().job_log_path(job.id);
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|_| Fault::new(404, "Job output not found."))?;
            let from = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            Ok(Value::Base64(
                bytes.get(from..).unwrap_or_default().to_vec(),
            ))
        }
        "scheduler.all_jobs" => {
            let filter = JobFilter {
                states: vec![
                    JobState::Submitted,
                    JobState::Scheduling,
                    JobState::Scheduled,
                    JobState::Running,
                    JobState::Canceling,
                ],
                viewer: caller.viewer(),
                ..JobFilter::default()
            };
            let jobs = db(ctx, move |s| Ok(s.jobs(&filter)?)).await?;
            Ok(Value::Array(
                jobs.iter()
                    .map(|j| {
                        Value::Array(vec![
                            Value::Int(j.id.0),
                            Value::str(j.description.clone()),
                            Value::str(j.state.legacy_status(j.health).as_str().to_lowercase()),
                            Value::opt_str(j.actual_device.clone()),
                            Value::opt_str(j.requested_device_type.clone()),
                            Value::opt_str(j.sub_id.clone()),
                        ])
                    })
                    .collect(),
            ))
        }
        "scheduler.get_recent_jobs_for_device" | "scheduler.get_recent_jobs_for_device_type" => {
            a.at_most(3)?;
            let target = a.opt_string(0, "device")?.unwrap_or_default();
            if target.is_empty() {
                let what = if name.ends_with("device") {
                    "device"
                } else {
                    "device_type"
                };
                return Err(Fault::new(
                    400,
                    format!("Bad request: {what} was not specified."),
                ));
            }
            let count = a.opt_int(1, "count")?.unwrap_or(1);
            if count < 0 {
                return Err(Fault::new(400, "Bad request: count must not be negative."));
            }
            let restrict = a.opt_bool(2, "restrict_to_user", false)?;
            let by_device = name.ends_with("device");
            db(ctx, move |s| {
                let mut filter = JobFilter {
                    states: vec![JobState::Finished],
                    viewer: caller.viewer(),
                    order: JobOrder {
                        field: JobOrderField::EndTime,
                        descending: true,
                    },
                    limit: Some(u64::try_from(count).unwrap_or(0)),
                    submitter: if restrict {
                        caller.username().map(str::to_owned)
                    } else {
                        None
                    },
                    ..JobFilter::default()
                };
                if by_device {
                    find_device(s, &caller, &target)?;
                    filter.actual_device = Some(target);
                } else {
                    find_device_type(s, &caller, &target)?;
                    filter.requested_device_types = vec![target];
                }
                Ok(Value::Array(
                    s.jobs(&filter)?
                        .iter()
                        .map(|j| {
                            let mut m = vec![
                                ("id".to_owned(), Value::Int(j.id.0)),
                                ("description".to_owned(), Value::str(j.description.clone())),
                                (
                                    "status".to_owned(),
                                    Value::str(j.state.legacy_status(j.health).as_str()),
                                ),
                            ];
                            if !by_device {
                                m.push(("device".into(), Value::opt_str(j.actual_device.clone())));
                            }
                            Value::Struct(m)
                        })
                        .collect(),
                ))
            })
            .await
        }
        "scheduler.pending_jobs_by_device_type" => {
            a.at_most(1)?;
            let all = a.opt_bool(0, "all", false)?;
            db(ctx, move |s| {
                let mut counts: BTreeMap<String, i64> = BTreeMap::new();
                for dt in s.device_types()? {
                    if all || dt.display {
                        counts.insert(dt.name, 0);
                    }
                }
                let filter = JobFilter {
                    states: vec![JobState::Submitted],
                    ..JobFilter::default()
                };
                for j in s.jobs(&filter)? {
                    if let Some(c) = j.requested_device_type.and_then(|t| counts.get_mut(&t)) {
                        *c += 1;
                    }
                }
                Ok(Value::Struct(
                    counts
                        .into_iter()
                        .map(|(k, v)| (k, Value::Int(v)))
                        .collect(),
                ))
            })
            .await
        }
        _ => Err(no_such_method(name)),
    }
}

fn ids(list: &[Value]) -> Value {
    Value::Array(list.to_vec())
}

fn submitted(s: Submitted) -> Value {
    match s {
        Submitted::Single(id) => Value::Int(id.0),
        Submitted::MultiNode(subs) => ids(&subs
            .into_iter()
            .map(|(_, sub)| Value::String(sub))
            .collect::<Vec<_>>()),
    }
}

fn visibility_str(v: &store::Visibility) -> String {
    match v {
        store::Visibility::Public => "Public".into(),
        store::Visibility::Personal => "Personal".into(),
        store::Visibility::Group(g) => format!("Group ({})", g.join(", ")),
    }
}

fn job_show(job: &Job) -> Value {
    Value::object([
        ("id", job_key(job)),
        ("description", Value::str(job.description.clone())),
        ("device", Value::opt_str(job.actual_device.clone())),
        (
            "device_type",
            Value::opt_str(job.requested_device_type.clone()),
        ),
        ("health_check", Value::Bool(job.health_check)),
        ("pipeline", Value::Bool(true)),
        ("health", Value::str(job.health.as_str())),
        ("state", Value::str(job.state.as_str())),
        ("submitter", Value::str(job.submitter.clone())),
        ("submit_time", Value::datetime(job.submit_time)),
        ("start_time", Value::opt_datetime(job.start_time)),
        ("end_time", Value::opt_datetime(job.end_time)),
        (
            "tags",
            Value::Array(job.tags.iter().cloned().map(Value::String).collect()),
        ),
        ("visibility", Value::str(visibility_str(&job.visibility))),
        (
            "failure_comment",
            Value::opt_str(job.failure_comment.clone()),
        ),
    ])
}

fn job_details(job: &Job) -> Value {
    Value::object([
        ("id", Value::Int(job.id.0)),
        ("sub_id", Value::str(job.sub_id.clone().unwrap_or_default())),
        ("target_group", Value::opt_str(job.target_group.clone())),
        ("submitter_username", Value::str(job.submitter.clone())),
        ("description", Value::str(job.description.clone())),
        ("definition", Value::str(job.definition.clone())),
        (
            "original_definition",
            Value::str(job.original_definition.clone()),
        ),
        (
            "multinode_definition",
            Value::str(job.multinode_definition.clone()),
        ),
        ("priority", Value::Int(i64::from(job.priority.value()))),
        ("health_check", Value::Bool(job.health_check)),
        (
            "is_public",
            Value::Bool(job.visibility == store::Visibility::Public),
        ),
        (
            "requested_device_type_id",
            Value::opt_str(job.requested_device_type.clone()),
        ),
        (
            "actual_device_id",
            Value::opt_str(job.actual_device.clone()),
        ),
        ("submit_time", Value::datetime(job.submit_time)),
        ("start_time", Value::opt_datetime(job.start_time)),
        ("end_time", Value::opt_datetime(job.end_time)),
        (
            "failure_comment",
            Value::opt_str(job.failure_comment.clone()),
        ),
        ("pipeline_compatibility", Value::Int(0)),
        (
            "status",
            Value::str(job.state.legacy_status(job.health).as_str()),
        ),
        ("state", Value::str(job.state.as_str())),
        ("health", Value::str(job.health.as_str())),
        (
            "absolute_url",
            Value::str(format!("/scheduler/job/{}", job.id.0)),
        ),
        ("is_pipeline", Value::Bool(true)),
    ])
}

fn validate_result(definition: &str, mode: jobdef::Mode) -> Value {
    match jobdef::validate_str_mode(definition, mode) {
        Ok(_) => Value::Struct(Vec::new()),
        Err(problems) => {
            let Some(p) = problems.first() else {
                return Value::Struct(Vec::new());
            };
            let mut parts: Vec<String> = Vec::new();
            for seg in &p.path.0 {
                match seg {
                    jobdef::error::Segment::Key(k) => parts.push(k.clone()),
                    jobdef::error::Segment::Index(n) => match parts.last_mut() {
                        Some(last) => last.push_str(&format!("[{n}]")),
                        None => parts.push(format!("[{n}]")),
                    },
                }
            }
            let path: Vec<String> = parts
                .iter()
                .map(|s| format!("'{}'", s.replace('\'', "\\'")))
                .collect();
            Value::object([
                ("path", Value::str(format!("[{}]", path.join(", ")))),
                ("msg", Value::str(p.describe())),
            ])
        }
    }
}

/// The jobs `caller` may see, newest first, one `page` of them (`jobs.list`, `jobs.queue`).
fn newest_first(caller: &Caller, page: Page) -> JobFilter {
    JobFilter {
        viewer: caller.viewer(),
        order: JobOrder {
            field: JobOrderField::Id,
            descending: true,
        },
        offset: page.offset,
        limit: Some(page.limit),
        ..JobFilter::default()
    }
}
