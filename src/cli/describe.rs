//! `lavabox describe JOB (--device NAME | --dictionary FILE) [--templates DIR]...`: builds the
//! pipeline of a job for a device without running anything and prints it as the job log's
//! `pipeline:` (levels, LAVA's action names, resolved timeouts), or says which action of the
//! job the device cannot run and exits non-zero.
//!
//! The device is one of the data directory's (its stored dictionary) or a dictionary file;
//! templates are looked up as `serve` does, after any `--templates` directories, so LAVA's own
//! device-type templates (`/usr/share/lava-server/device-types`) work too and an admin can
//! check a whole job archive against a lab before migrating it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::devicetype::{TemplateDir, Templates};
use crate::jobdef::action::ActionKind;
use crate::jobdef::{self, JobDefinition};
use crate::store::Store;

/// Where the device comes from.
pub enum DeviceSource<'a> {
    /// A device of the data directory.
    Stored(&'a str),
    /// A device dictionary file.
    Dictionary(&'a Path),
}

/// Describes each of `jobs` on the device; exit 0 only if every job can run there.
pub fn run(
    config: &Config,
    jobs: &[PathBuf],
    device: DeviceSource<'_>,
    templates: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let (dictionary, name) = match device {
        DeviceSource::Stored(host) => {
            let db = config.database_path();
            let store =
                Store::open(&db).with_context(|| format!("opening database {}", db.display()))?;
            let device = store
                .device(host)
                .context("reading the device")?
                .with_context(|| format!("no device '{host}'"))?;
            let dict = device
                .dictionary
                .with_context(|| format!("device '{host}' has no dictionary"))?;
            (dict, host.to_owned())
        }
        DeviceSource::Dictionary(file) => (
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
            file.display().to_string(),
        ),
    };
    let dirs: Vec<TemplateDir> = templates
        .iter()
        .cloned()
        .map(TemplateDir::Admin)
        .chain(std::iter::once(TemplateDir::Admin(
            config.data_dir.join("device-types"),
        )))
        .chain(config.template_dirs.iter().cloned().map(TemplateDir::Admin))
        .collect();
    let templates = Templates::from_dirs(dirs).with_builtin();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut all_ok = true;
    for file in jobs {
        let shown = file.display();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                all_ok = false;
                writeln!(out, "{shown}: cannot read: {e}")?;
                continue;
            }
        };
        match describe(&text, &dictionary, &templates) {
            Ok(pipeline) => {
                writeln!(out, "{shown}: pipeline on {name}:")?;
                out.write_all(pipeline.as_bytes())?;
            }
            Err(why) => {
                all_ok = false;
                writeln!(out, "{shown}: cannot run on {name}: {why}")?;
            }
        }
    }
    out.flush()?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The pipeline description of `job` on the device of `dictionary`, or why it cannot run
/// (naming the action the device cannot run).
pub fn describe(job: &str, dictionary: &str, templates: &Templates) -> Result<String, String> {
    let definition = jobdef::parse_str(job).map_err(|problems| {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!("invalid job definition: {}", text.join("; "))
    })?;
    let mut context = serde_json::Map::new();
    for (key, value) in &definition.context {
        if let Ok(v) = serde_json::to_value(value.to_serde()) {
            context.insert(key.clone(), v);
        }
    }
    let rendered = templates
        .render(dictionary, &context)
        .map_err(|e| format!("Configuration error: {e}"))?;
    match crate::pipeline::build(&definition, &rendered.config) {
        Ok(p) => Ok(p.describe()),
        Err(e) => Err(match failing_action(&definition, &rendered.config) {
            Some(at) => format!("{at}: {} error: {}", e.error_type, e.message),
            None => format!("{} error: {}", e.error_type, e.message),
        }),
    }
}

/// The first action whose pipeline cannot be built (each prefix of the job is built in
/// turn: building is pure and cheap), as `actions[N] (deploy to: fastboot)`.
fn failing_action(job: &JobDefinition, device: &crate::devicetype::DeviceConfig) -> Option<String> {
    (1..=job.actions.len()).find_map(|n| {
        let mut prefix = job.clone();
        prefix.actions.truncate(n);
        crate::pipeline::build(&prefix, device).err().map(|_| {
            let action = &job.actions[n - 1];
            let what = match &action.kind {
                ActionKind::Deploy(d) => format!("deploy to: {}", d.to().as_str()),
                ActionKind::Boot(b) => format!("boot method: {}", b.method().as_str()),
                ActionKind::Test(_) => "test".to_owned(),
                ActionKind::Command(c) => format!("command {}", c.name),
            };
            format!("actions[{}] ({what})", n - 1)
        })
    })
}
