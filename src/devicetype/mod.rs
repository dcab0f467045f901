//! Device-type templates and device dictionaries → typed device configuration.

use std::path::Path;

/// Why a device dictionary cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

/// Checks that a device dictionary renders against the templates in `template_dirs`
/// (searched in order) and returns the name of the template it extends, without `.jinja2`.
///
/// PLACEHOLDER for the integration contract; the device-type work replaces the body.
pub fn check_dictionary(template_dirs: &[&Path], dictionary: &str) -> Result<String, Error> {
    let _ = template_dirs;
    let re =
        regex::Regex::new(r#"\{%-?\s*extends\s+['"]([^'"]+)\.jinja2['"]"#).expect("static regex");
    re.captures(dictionary)
        .map(|c| c[1].to_owned())
        .ok_or_else(|| Error("the dictionary has no {% extends '<type>.jinja2' %} line".into()))
}
