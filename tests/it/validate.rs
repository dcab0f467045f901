//! Integration tests: `lavabox validate` on the job fixtures, hostile files, both validation
//! modes through `scheduler.jobs.validate` with Python's XML-RPC client, and the differential
//! check against LAVA's own Python schemas (when they are installed).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jobs")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn validate(files: &[PathBuf]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lavabox"))
        .arg("validate")
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run lavabox: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn valid_fixtures_print_ok_and_exit_zero() {
    let files = fixtures("valid");
    assert!(files.len() >= 50, "only {} valid fixtures", files.len());
    let output = validate(&files);
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), files.len(), "{out}");
    for (line, file) in lines.iter().zip(&files) {
        assert_eq!(*line, format!("{}: ok", file.display()));
    }
    assert_eq!(output.status.code(), Some(0), "{out}");
}

#[test]
fn invalid_fixtures_print_located_errors_and_exit_one() {
    let files = fixtures("invalid");
    assert!(files.len() >= 50, "only {} invalid fixtures", files.len());
    for file in &files {
        let output = validate(std::slice::from_ref(file));
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{}: {out}", file.display());
        assert!(!out.is_empty(), "{}: no output", file.display());
        let prefix = format!("{}: error at ", file.display());
        for line in out.lines() {
            assert!(line.starts_with(&prefix), "{line}");
            assert!(line.contains(" (line "), "{line}");
        }
    }
}

#[test]
fn known_messages_and_locations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jobs/invalid");
    let cases = [
        (
            "boot-uboot-typo.yaml",
            "error at actions[0].boot.method (line 8): unknown action type (expected one of: barebox,",
        ),
        (
            "deploy-tftp-no-kernel.yaml",
            "error at actions[0].deploy.kernel (line 8): needs a kernel to deploy",
        ),
        (
            "priority-200.yaml",
            "error at priority (line 4): Invalid job priority: 200. Should be in [0, 100]",
        ),
        (
            "context-unknown-key.yaml",
            "error at context.kernel (line 7): extra keys not allowed",
        ),
        (
            "timeout-int.yaml",
            "error at timeouts.job (line 5): expected a dictionary",
        ),
        (
            "namespace-partial.yaml",
            "error at actions (line 8): When using namespaces, every action should have a namespace",
        ),
        (
            "yaml-syntax.yaml",
            "error at (root) (line 9): invalid YAML:",
        ),
    ];
    for (name, expect) in cases {
        let file = dir.join(name);
        let out = stdout(&validate(std::slice::from_ref(&file)));
        let expect = format!("{}: {expect}", file.display());
        assert!(
            out.lines().any(|l| l.starts_with(&expect)),
            "expected `{expect}` in:\n{out}"
        );
    }
}

#[test]
fn strict_invalid_fixtures_pass_lenient_cli_validation() {
    let files = fixtures("strict-invalid");
    assert!(files.len() >= 10, "only {} fixtures", files.len());
    let output = validate(&files);
    let out = stdout(&output);
    for file in &files {
        assert!(
            out.lines().any(|l| l == format!("{}: ok", file.display())),
            "{out}"
        );
    }
    assert_eq!(output.status.code(), Some(0), "{out}");
}

/// `scheduler.jobs.validate(definition, strict)` from Python's `xmlrpc.client`, on every
/// fixture: each directory says what LAVA answers in each mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmlrpc_validate_in_both_modes() {
    let srv = crate::xmlrpc::start().await;
    let script = r#"
import sys, xmlrpc.client
proxy = xmlrpc.client.ServerProxy("http://%s/RPC2" % sys.argv[1])
for path in sys.argv[2:]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    default = proxy.scheduler.jobs.validate(text)
    lenient = proxy.scheduler.jobs.validate(text, False)
    strict = proxy.scheduler.jobs.validate(text, True)
    assert default == lenient, (path, default, lenient)
    for answer in (lenient, strict):
        assert answer == {} or set(answer) == {"path", "msg"}, (path, answer)
    print("%s lenient=%s strict=%s" % (path, "ok" if lenient == {} else "error", "ok" if strict == {} else "error"))
"#;
    let mut expected = Vec::new();
    for (dir, lenient, strict) in [
        ("valid", "ok", "ok"),
        ("invalid", "error", "error"),
        ("strict-invalid", "ok", "error"),
    ] {
        for file in fixtures(dir) {
            expected.push(format!(
                "{} lenient={lenient} strict={strict}",
                file.display()
            ));
        }
    }
    let files: Vec<PathBuf> = ["valid", "invalid", "strict-invalid"]
        .iter()
        .flat_map(|d| fixtures(d))
        .collect();
    let addr = srv.addr.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("/usr/bin/python3")
            .args(["-c", script, &addr])
            .args(&files)
            .output()
    })
    .await
    .unwrap_or_else(|e| panic!("join: {e}"))
    .unwrap_or_else(|e| panic!("python: {e}"));
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Vec<&str> = out.lines().collect();
    let wrong: Vec<String> = expected
        .iter()
        .filter(|line| !got.contains(&line.as_str()))
        .cloned()
        .collect();
    assert!(
        wrong.is_empty(),
        "expected but not answered:\n{}\n\ngot:\n{out}",
        wrong.join("\n")
    );
}

#[test]
fn mixed_files_and_unreadable_file() {
    let good = fixtures("valid").into_iter().next().unwrap_or_default();
    let missing = PathBuf::from("/nonexistent/lavabox/job.yaml");
    let output = validate(&[missing.clone(), good.clone()]);
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with(&format!("{}: error", missing.display()))),
        "{out}"
    );
    assert_eq!(
        lines.get(1).copied(),
        Some(format!("{}: ok", good.display()).as_str())
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn hostile_files_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let mut laughs = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    for pair in names.windows(2) {
        let (prev, name) = (pair[0], pair[1]);
        let refs = vec![format!("*{prev}"); 9].join(", ");
        laughs.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    let laughs_file = dir.path().join("laughs.yaml");
    let big_file = dir.path().join("big.yaml");
    let binary_file = dir.path().join("binary.yaml");
    let deep_file = dir.path().join("deep.yaml");
    let writes = [
        (&laughs_file, laughs.into_bytes()),
        (&big_file, {
            let mut big = b"job_name: big\n".to_vec();
            big.resize(2_621_441, b'#');
            big
        }),
        (&binary_file, b"job_name: caf\xe9\n".to_vec()),
        (&deep_file, "[".repeat(1_000_000).into_bytes()),
    ];
    for (path, bytes) in &writes {
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write: {e}"));
    }
    let start = Instant::now();
    let output = validate(&[
        laughs_file.clone(),
        big_file.clone(),
        binary_file.clone(),
        deep_file.clone(),
    ]);
    assert!(start.elapsed() < Duration::from_secs(10));
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let expect = [
        (&laughs_file, "aliases expand to more than"),
        (&big_file, "too large"),
        (&binary_file, "(line 1): job definition is not valid UTF-8"),
        (&deep_file, "(line 1): invalid YAML"),
    ];
    for (file, fragment) in expect {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{}: error", file.display()))
                    && l.contains(fragment)),
            "{} should say `{fragment}`:\n{out}",
            file.display()
        );
    }
}

/// Runs `tests/lava_schema_check.py` when LAVA's Python code is there (CI installs it with
/// `tests/install-lava-reference.sh`); otherwise says why it is skipped.
#[test]
fn fixtures_agree_with_lava_python_schemas() {
    let root = std::env::var("LAVA_REFERENCE_ROOT")
        .unwrap_or_else(|_| "/opt/lava-reference/usr/lib/python3/dist-packages".to_owned());
    let probe = Command::new("/usr/bin/python3")
        .args(["-c", "import sys, yaml, voluptuous; sys.path.insert(0, sys.argv[1]); import lava_common.schemas"])
        .arg(&root)
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!(
                "skipped: LAVA reference not importable from {root} (run tests/install-lava-reference.sh)"
            );
            return;
        }
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("/usr/bin/python3")
        .arg(manifest.join("tests/lava_schema_check.py"))
        .arg("--lava-root")
        .arg(&root)
        .arg(manifest.join("tests/fixtures/jobs"))
        .output()
        .unwrap_or_else(|e| panic!("python: {e}"));
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `lavabox validate --strict`: the strict-only fixtures pass leniently and fail strictly,
/// with located errors.
#[test]
fn strict_flag_refuses_unknown_keys() {
    let files = fixtures("strict-invalid");
    assert!(!files.is_empty(), "no strict-invalid fixtures");
    let lenient = validate(&files);
    assert_eq!(lenient.status.code(), Some(0), "{}", stdout(&lenient));
    for file in &files {
        let output = Command::new(env!("CARGO_BIN_EXE_lavabox"))
            .args(["validate", "--strict"])
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("cannot run lavabox: {e}"));
        let out = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{}: {out}", file.display());
        assert!(
            out.starts_with(&format!("{}: error at ", file.display())),
            "{out}"
        );
    }
}
