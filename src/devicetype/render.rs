//! Device dictionary + templates + job context → rendered YAML → [`DeviceConfig`].
//!
//! The engine is set up as LAVA sets up Jinja2 for device dictionaries: `trim_blocks` on,
//! autoescape off, undefined variables rendering as nothing, and the job `context:` mapping
//! given as template variables (so a job can override whatever a template reads through
//! `default()`, but not what the dictionary or the device type sets outright).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use super::stamp::Stamps;
use super::{DeviceConfig, Error, Templates};

/// The job `context:` mapping (or an empty map), passed to the templates as variables.
pub type Context = serde_json::Map<String, serde_json::Value>;

/// The name errors use for the device dictionary itself.
const DICTIONARY_NAME: &str = "device dictionary";

/// A device dictionary rendered for one job (or for the API).
#[derive(Debug, Clone)]
pub struct RenderedDevice {
    /// The rendered YAML text, as `scheduler.devices.get_dictionary(render=True)` returns it.
    pub yaml: String,
    /// The typed configuration read from `yaml`.
    pub config: DeviceConfig,
}

impl Templates {
    /// Renders `dictionary` (a LAVA device dictionary: `{% extends '<type>.jinja2' %}` plus
    /// `{% set … %}` lines) with the job `context`, and reads the result into a typed
    /// [`DeviceConfig`].
    pub fn render(&self, dictionary: &str, context: &Context) -> Result<RenderedDevice, Error> {
        let yaml = self.render_yaml(dictionary, context)?;
        let config = DeviceConfig::from_yaml(&yaml)?;
        Ok(RenderedDevice { yaml, config })
    }

    /// Renders `dictionary` with `context` to YAML text without reading it further, as LAVA's
    /// `get_dictionary(render=True)` does.
    pub fn render_yaml(&self, dictionary: &str, context: &Context) -> Result<String, Error> {
        self.render_yaml_recorded(dictionary, context, None)
    }

    /// [`Templates::render`], recording into `stamps` every file on disk the render looked
    /// up, so a cached result can be checked later without rendering ([`super::DeviceChecks`]).
    pub(crate) fn render_stamped(
        &self,
        dictionary: &str,
        context: &Context,
        stamps: &mut Stamps,
    ) -> Result<RenderedDevice, Error> {
        let recorder = Arc::new(Mutex::new(Stamps::default()));
        let yaml = self.render_yaml_recorded(dictionary, context, Some(Arc::clone(&recorder)));
        stamps.extend(std::mem::take(
            &mut *recorder.lock().unwrap_or_else(PoisonError::into_inner),
        ));
        let yaml = yaml?;
        let config = DeviceConfig::from_yaml(&yaml)?;
        Ok(RenderedDevice { yaml, config })
    }

    /// [`Templates::render_yaml`], with the loader recording stamps into `recorder` if given.
    fn render_yaml_recorded(
        &self,
        dictionary: &str,
        context: &Context,
        recorder: Option<Arc<Mutex<Stamps>>>,
    ) -> Result<String, Error> {
        // Name a missing device type plainly instead of as an engine error on line 1.
        if let Some(target) = extends_target(dictionary)
            && load_recorded(self, &target, recorder.as_deref())?.is_none()
        {
            return Err(self.not_found(&target));
        }
        let env = self.environment(recorder)?;
        let template = env
            .template_from_named_str(DICTIONARY_NAME, dictionary)
            .map_err(template_error)?;
        template
            .render(context_value(context))
            .map_err(template_error)
    }

    /// A fresh engine whose loader reads from these sources (recording what it looked at into
    /// `recorder`, if given). Built per render, so template edits apply at once and no state
    /// is shared between renders.
    fn environment(
        &self,
        recorder: Option<Arc<Mutex<Stamps>>>,
    ) -> Result<Environment<'static>, Error> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .build()
            .map_err(template_error)?;
        env.set_syntax(syntax);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        super::pycompat::install(&mut env);
        let templates = self.clone();
        env.set_loader(move |name| {
            load_recorded(&templates, name, recorder.as_deref())
                .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))
        });
        Ok(env)
    }
}

/// [`Templates::load`], recording stamps into `recorder` if given.
fn load_recorded(
    templates: &Templates,
    name: &str,
    recorder: Option<&Mutex<Stamps>>,
) -> Result<Option<String>, Error> {
    match recorder {
        Some(recorder) => templates.load_stamped(
            name,
            Some(&mut recorder.lock().unwrap_or_else(PoisonError::into_inner)),
        ),
        None => templates.load(name),
    }
}

/// The device type a dictionary extends, without its extension, as LAVA's `get_extends`:
/// `None` unless there is exactly one `{% extends '<name>' %}` with a literal name.
pub fn extends(dictionary: &str) -> Option<String> {
    let target = extends_target(dictionary)?;
    Some(match target.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
        _ => target,
    })
}

/// The literal template name of the single `extends` tag of `dictionary`, outside comments.
fn extends_target(dictionary: &str) -> Option<String> {
    static COMMENT: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"(?s)\{#.*?#\}").expect("static regex"));
    static EXTENDS: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r#"\{%[-+]?\s*extends\s+(?:'([^']*)'|"([^"]*)")\s*[-+]?%\}"#)
            .expect("static regex")
    });
    let code = COMMENT.replace_all(dictionary, "");
    let mut found = EXTENDS.captures_iter(&code);
    let first = found.next()?;
    if found.next().is_some() {
        return None;
    }
    first
        .get(1)
        .or_else(|| first.get(2))
        .map(|m| m.as_str().to_owned())
}

/// An engine error as ours, keeping the failing file and line.
fn template_error(e: minijinja::Error) -> Error {
    let message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    Error::Template {
        file: e.name().unwrap_or(DICTIONARY_NAME).to_owned(),
        line: e.line(),
        message,
    }
}

/// The job context as template variables.
fn context_value(context: &Context) -> Value {
    Value::from(
        context
            .iter()
            .map(|(k, v)| (k.clone(), json_value(v)))
            .collect::<BTreeMap<String, Value>>(),
    )
}

fn json_value(value: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => items.iter().map(json_value).collect(),
        J::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect::<BTreeMap<String, Value>>(),
        ),
    }
}

/// Checks that a device dictionary renders against the templates in `template_dirs`
/// (searched in order) into a usable configuration, and returns the name of the template it
/// extends, without `.jinja2` (the name its health check is filed under).
pub fn check_dictionary(
    template_dirs: &[&std::path::Path],
    dictionary: &str,
) -> Result<String, Error> {
    let name = extends(dictionary).ok_or(Error::NoExtends)?;
    Templates::new(template_dirs).render(dictionary, &Context::new())?;
    Ok(name)
}
