//! Webhook callbacks: the job data set LAVA POSTs (or a plain GET), URL placeholders, the
//! token header.

use serde_json::{Map, Value, json};

use super::JobData;
use crate::jobdef::notify::{Callback, CallbackMethod, ContentType, Dataset};
use crate::model::JobHealth;
use crate::pyfmt::py_isoformat_tz;

/// Python's `str(datetime)` of an optional time, `"None"` when unset.
fn py_time(t: Option<time::OffsetDateTime>) -> String {
    t.map_or_else(|| "None".to_owned(), |t| py_isoformat_tz(t, ' '))
}

/// The fields every data set has (`minimal`).
pub fn minimal(data: &JobData) -> Map<String, Value> {
    let job = &data.job;
    let status = job.state.legacy_status(job.health);
    let mut m = Map::new();
    m.insert("id".into(), json!(job.id.0));
    m.insert("status".into(), json!(status.code()));
    m.insert(
        "status_string".into(),
        json!(status.as_str().to_lowercase()),
    );
    m.insert("state".into(), json!(job.state.code()));
    m.insert("state_string".into(), json!(job.state.as_str()));
    m.insert("health".into(), json!(job.health.code()));
    m.insert("health_string".into(), json!(job.health.as_str()));
    m.insert("submit_time".into(), json!(py_time(Some(job.submit_time))));
    m.insert("start_time".into(), json!(py_time(job.start_time)));
    m.insert("end_time".into(), json!(py_time(job.end_time)));
    m.insert("submitter_username".into(), json!(job.submitter));
    m.insert(
        "failure_comment".into(),
        json!(
            job.failure_comment
                .as_deref()
                .filter(|_| job.health != JobHealth::Unknown)
        ),
    );
    m.insert("priority".into(), json!(job.priority.value()));
    m.insert("description".into(), json!(job.description));
    m.insert("actual_device_id".into(), json!(job.actual_device));
    m.insert("definition".into(), json!(job.definition));
    m.insert(
        "metadata".into(),
        Value::Array(
            data.metadata
                .iter()
                .map(|(k, v)| json!({ k.as_str(): v }))
                .collect(),
        ),
    );
    m
}

/// Results as LAVA sends them: suite name → YAML text of the suite's test-case list.
fn results(data: &JobData) -> Map<String, Value> {
    let mut suites: Vec<(String, Vec<Value>)> = Vec::new();
    for c in &data.results {
        let case = json!({
            "id": c.id.0,
            "job": c.job.0,
            "suite": c.suite,
            "name": c.name,
            "result": c.result.as_str(),
            "measurement": c.measurement.map(|m| m.to_string()),
            "unit": c.units,
            "set": c.test_set,
            "logged": py_isoformat_tz(c.logged, ' '),
            "log_start_line": c.start_log_line,
            "log_end_line": c.end_log_line,
            "metadata": c.metadata,
        });
        match suites.iter_mut().find(|(s, _)| *s == c.suite) {
            Some((_, list)) => list.push(case),
            None => suites.push((c.suite.clone(), vec![case])),
        }
    }
    suites
        .into_iter()
        .map(|(suite, cases)| {
            let yaml = serde_norway::to_string(&cases).unwrap_or_default();
            (suite, Value::String(yaml))
        })
        .collect()
}

/// The body for `dataset`, with `token` if one is configured.
pub fn body(data: &JobData, callback: &Callback) -> Map<String, Value> {
    let mut m = minimal(data);
    if let Some(token) = &callback.token {
        m.insert("token".into(), json!(token));
    }
    if matches!(callback.dataset, Dataset::Logs | Dataset::All) {
        m.insert("log".into(), json!(data.log.as_deref().unwrap_or_default()));
    }
    if matches!(callback.dataset, Dataset::Results | Dataset::All) {
        m.insert("results".into(), Value::Object(results(data)));
    }
    m
}

/// Replaces `{ NAME }` placeholders (upper case, optional spaces) with the job's field
/// `name` from the minimal data set (`{ID}`, `{STATUS}`, `{STATUS_STRING}`,
/// `{DESCRIPTION}`, `{SUBMITTER}`, `{DEVICE}`…); unknown names stay as written.
pub fn expand_url(url: &str, fields: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = after[..close].trim();
        let key = match name {
            "SUBMITTER" => "submitter_username".to_owned(),
            "DEVICE" | "ACTUAL_DEVICE" => "actual_device_id".to_owned(),
            other => other.to_lowercase(),
        };
        let known = !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_');
        match fields.get(&key).filter(|_| known) {
            Some(Value::String(s)) => out.push_str(&encode(s, true)),
            Some(Value::Null) => out.push_str("None"),
            Some(v) => out.push_str(&encode(&v.to_string(), true)),
            None => out.push_str(&rest[open..open + close + 2]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Percent-encodes for a URL path or a form (`space` → `+` in forms).
fn encode(text: &str, path: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' if !path => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` of a flat map; nested values are sent as JSON text.
pub fn form(fields: &Map<String, Value>) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => "None".to_owned(),
                other => other.to_string(),
            };
            format!("{}={}", encode(k, false), encode(&text, false))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Makes one attempt at `callback`.
pub async fn call(
    client: &reqwest::Client,
    data: &JobData,
    callback: &Callback,
) -> Result<(), String> {
    let minimal = minimal(data);
    let url = expand_url(&callback.url, &minimal);
    let mut request = match callback.method {
        CallbackMethod::Get => client.get(&url),
        CallbackMethod::Post => {
            let body = body(data, callback);
            match callback.content_type {
                ContentType::Json => client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(Value::Object(body).to_string()),
                ContentType::Urlencoded => client
                    .post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form(&body)),
            }
        }
    };
    if let Some(token) = &callback.token {
        request = request.header(callback.header.as_str(), token.as_str());
    }
    let response = request.send().await.map_err(|e| {
        // reqwest's own wording ("error sending request") hides the cause that matters.
        if e.is_timeout() {
            format!("{url}: no answer within the timeout")
        } else if e.is_connect() {
            format!("{url}: cannot connect: {e}")
        } else {
            format!("{url}: {e}")
        }
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{url}: HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        let mut m = Map::new();
        m.insert("id".into(), json!(12));
        m.insert("status".into(), json!(2));
        m.insert("status_string".into(), json!("complete"));
        m.insert("description".into(), json!("a b/c"));
        let check = |url: &str, expect: &str| assert_eq!(expand_url(url, &m), expect, "{url}");
        check("http://h/{ID}/{STATUS}", "http://h/12/2");
        check(
            "http://h/{ ID }?s={STATUS_STRING}",
            "http://h/12?s=complete",
        );
        check("http://h/{DESCRIPTION}", "http://h/a%20b%2Fc");
        check("http://h/{NOPE}/{id}/{", "http://h/{NOPE}/{id}/{");
    }

    #[test]
    fn form_encoding() {
        let mut m = Map::new();
        m.insert("a".into(), json!("x y&z"));
        m.insert("n".into(), json!(3));
        m.insert("none".into(), Value::Null);
        assert_eq!(form(&m), "a=x+y%26z&n=3&none=None");
    }
}
