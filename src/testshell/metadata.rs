//! The one rule for a test case's stored metadata, LAVA 2023.01's (`map_scanned_results`):
//! the YAML of the case's result dict — the same dict the job log's `results` entry holds —
//! which always has `case`, `definition` and `result`; an `extra` mapping is replaced by the
//! path of the file it was written to (`extra_path`), or null when the result has no level to
//! name that file by. A dict whose YAML exceeds LAVA's 4096 characters keeps only `case`,
//! `definition`, `result` and `error_type`.
//!
//! Clients parse it: lava-api reads every case's metadata as YAML with those three keys and
//! `extra` as a string, and fails on the first case that differs.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// LAVA's limit on a case's metadata text (longer metadata is stripped).
pub const MAX_METADATA: usize = 4096;

/// The keys every result dict has (LAVA refuses a result without them).
pub const REQUIRED: [&str; 3] = ["case", "definition", "result"];

/// Where LAVA writes a result's `extra` mapping, relative to the job's directory:
/// `metadata/<definition>-<case>-<level>.yaml`; `None` without a level (LAVA keeps no file).
pub fn extra_file(result: &Map<String, Value>) -> Option<String> {
    let text = |key: &str| match result.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    let name = format!(
        "{}-{}-{}.yaml",
        text("definition")?,
        text("case")?,
        text("level")?
    );
    // A name from the job's own strings: it must stay one file inside `metadata/`.
    if name.contains(['/', '\\', '\0']) || name.starts_with('.') {
        return None;
    }
    Some(format!("metadata/{name}"))
}

/// The metadata text of the case `result` records; `extra_path` is where its `extra` was
/// written (see the module documentation).
pub fn case_metadata(result: &Map<String, Value>, extra_path: Option<&str>) -> String {
    // Sorted keys, as PyYAML dumps a dict.
    let mut dict: BTreeMap<&str, Value> = result
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    for key in REQUIRED {
        dict.entry(key)
            .or_insert_with(|| Value::String(String::new()));
    }
    if dict.contains_key("extra") {
        dict.insert(
            "extra",
            extra_path.map_or(Value::Null, |p| Value::String(p.to_owned())),
        );
    }
    let text = dump(&dict);
    if text.len() <= MAX_METADATA {
        return text;
    }
    dict.retain(|k, _| REQUIRED.contains(k) || *k == "error_type");
    let text = dump(&dict);
    if text.len() <= MAX_METADATA {
        text
    } else {
        String::new()
    }
}

fn dump(dict: &BTreeMap<&str, Value>) -> String {
    // Serialising a map of JSON values cannot fail.
    serde_norway::to_string(dict).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_action_result_keeps_its_dict_with_extra_as_a_path() {
        let r = map(
            json!({"definition": "lava", "case": "http-download", "level": "1.1.1",
                           "namespace": "common", "duration": "0.26", "result": "pass",
                           "extra": {"size": 4096, "label": "kernel"}}),
        );
        assert_eq!(
            extra_file(&r).as_deref(),
            Some("metadata/lava-http-download-1.1.1.yaml")
        );
        let text = case_metadata(
            &r,
            Some("/data/jobs/7/metadata/lava-http-download-1.1.1.yaml"),
        );
        assert_eq!(
            text,
            "case: http-download\ndefinition: lava\nduration: '0.26'\n\
             extra: /data/jobs/7/metadata/lava-http-download-1.1.1.yaml\nlevel: 1.1.1\n\
             namespace: common\nresult: pass\n"
        );
        // Without a level there is no file: null, as LAVA.
        let mut r = r;
        r.remove("level");
        assert_eq!(extra_file(&r), None);
        assert!(case_metadata(&r, None).contains("extra: null\n"));
    }

    #[test]
    fn the_three_keys_are_always_there() {
        let text = case_metadata(&map(json!({"case": "validate", "result": "pass"})), None);
        let back: BTreeMap<String, Value> = serde_norway::from_str(&text).unwrap();
        for key in REQUIRED {
            assert!(back.contains_key(key), "{text}");
        }
        let failed = map(
            json!({"definition": "lava", "case": "job", "result": "fail",
                                "error_type": "Infrastructure", "error_msg": "x"}),
        );
        assert_eq!(
            case_metadata(&failed, None),
            "case: job\ndefinition: lava\nerror_msg: x\nerror_type: Infrastructure\nresult: fail\n"
        );
    }

    #[test]
    fn long_metadata_is_stripped_as_lava_strips_it() {
        let r = map(
            json!({"definition": "0_smoke", "case": "big", "result": "fail",
                           "error_type": "Test", "reference": "x".repeat(5000)}),
        );
        assert_eq!(
            case_metadata(&r, None),
            "case: big\ndefinition: 0_smoke\nerror_type: Test\nresult: fail\n"
        );
    }

    #[test]
    fn file_names_from_job_strings_stay_in_the_directory() {
        let r = map(json!({"definition": "../x", "case": "c", "level": "1", "result": "pass"}));
        assert_eq!(extra_file(&r), None);
    }
}
