//! Device-type templates and device dictionaries → typed device configuration.
//!
//! A device dictionary is LAVA's Jinja2 file that `{% extends '<type>.jinja2' %}` and sets
//! variables; the template chain (`<type>.jinja2` → `base-uboot.jinja2` → `base.jinja2`)
//! renders it, with the job `context:` as extra variables, into the YAML device configuration
//! LAVA's dispatcher reads. This module owns that rendering ([`Templates::render`]) and the
//! typed reading of the result ([`DeviceConfig`]).
//!
//! Templates come from an ordered list of sources ([`Templates`]): directories searched first
//! to last, and optionally the templates shipped in the repository's `device-types/`, which are
//! compiled in. Only [`Templates`] reads files; rendering and parsing work on text. Health
//! checks come only from directories an admin owns ([`TemplateDir::Admin`]), never from the
//! shipped or compiled-in templates.
//!
//! Async callers go through [`AsyncTemplates`], which does every read and render on the
//! blocking pool and caches each device's [`DeviceCheck`] (rendered once per dictionary or
//! template change: [`DeviceChecks`], with the [`Stamps`] of the files a render read).
//!
//! Architecture invariant: this module knows nothing about jobs, the store, hardware or the
//! API; it never panics on input and reports the failing file and line.

mod asynctemplates;
mod check;
mod config;
mod error;
mod node;
mod pycompat;
mod render;
mod source;
mod stamp;
mod yaml;

#[cfg(test)]
mod tests;

pub use asynctemplates::AsyncTemplates;
pub use check::{DeviceCheck, DeviceChecks};
pub use config::{
    Actions, BootActions, CharacterDelays, Commands, Connection, Constants, DeployActions,
    DeployParameters, DeviceConfig, GuestDisk, InfoEntry, KernelType, LoadAddresses, Parameters,
    PosixConstants, QemuMethod, SshParameters, Timeouts, UBootConstants, UBootInterrupt,
    UBootMethod, UBootParameters, UserCommand,
};
pub use error::Error;
pub use render::{Context, RenderedDevice, check_dictionary, extends};
pub use source::{FileKind, TemplateDir, Templates, builtin_template_names};
pub use stamp::Stamps;
