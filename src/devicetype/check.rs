//! Whether a device's dictionary is usable, and which health check it has: [`DeviceCheck`],
//! computed by [`Templates::check_device`] and cached per dictionary by [`DeviceChecks`], so
//! the scheduler renders a device once per dictionary or template change instead of on every
//! pass.
//!
//! A cached check is redone when its dictionary text changes (it is the key), when a template
//! or health check is written through [`Templates::write`] (the generation), or when a file it
//! read, or looked for and did not find, changed on disk (its [`Stamps`]: the CLI in another
//! process, an admin's editor). Checking that costs a few `stat` calls, no reads.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Templates;
use super::render::{Context, extends};
use super::stamp::Stamps;

/// What the scheduler needs to know about one device dictionary.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceCheck {
    /// Why the dictionary is unusable (missing, extends nothing, does not render), if it is.
    pub config_error: Option<String>,
    /// The template it extends, without `.jinja2`: the name its health check is filed under.
    pub template: Option<String>,
    /// The health-check job definition an admin installed for that template, if any.
    pub health_check: Option<String>,
    /// Why the health check could not be read, if it could not (it then counts as none).
    pub health_check_error: Option<String>,
}

impl Templates {
    /// Checks `dictionary` (a device's, `None` when it has none): renders it without job
    /// context and looks up the health check of the template it extends. Uncached.
    pub fn check_device(&self, dictionary: Option<&str>) -> DeviceCheck {
        self.check_device_stamped(dictionary, &mut Stamps::default())
    }

    /// [`Templates::check_device`], recording the files looked at into `stamps`.
    fn check_device_stamped(&self, dictionary: Option<&str>, stamps: &mut Stamps) -> DeviceCheck {
        let Some(dictionary) = dictionary else {
            return DeviceCheck {
                config_error: Some("no device dictionary".to_owned()),
                ..DeviceCheck::default()
            };
        };
        let Some(template) = extends(dictionary) else {
            return DeviceCheck {
                config_error: Some(
                    "the device dictionary extends no device-type template".to_owned(),
                ),
                ..DeviceCheck::default()
            };
        };
        let config_error = self
            .render_stamped(dictionary, &Context::new(), stamps)
            .err()
            .map(|e| e.to_string());
        let (health_check, health_check_error) =
            match self.health_check_stamped(&template, Some(stamps)) {
                Ok(found) => (found, None),
                Err(err) => (None, Some(err.to_string())),
            };
        DeviceCheck {
            config_error,
            template: Some(template),
            health_check,
            health_check_error,
        }
    }
}

/// One cached check.
#[derive(Debug)]
struct Entry {
    /// [`Templates::generation`] when it was computed.
    generation: u64,
    /// The files it looked at.
    stamps: Stamps,
    /// The result.
    check: Arc<DeviceCheck>,
}

/// Device checks cached by dictionary text; see the module documentation for when an entry is
/// redone. Entries of dictionaries no longer asked for are dropped at each round.
#[derive(Debug, Default)]
pub struct DeviceChecks {
    entries: HashMap<String, Entry>,
    /// Checks computed (rendered) so far, for tests and logs.
    renders: u64,
}

impl DeviceChecks {
    /// The check of each of `dictionaries` (in order; `None` for a device without one), from
    /// the cache where still valid, rendered otherwise.
    pub fn check_all(
        &mut self,
        templates: &Templates,
        dictionaries: &[Option<String>],
    ) -> Vec<Arc<DeviceCheck>> {
        let generation = templates.generation();
        let mut seen = HashMap::new();
        let mut wanted: HashSet<&str> = HashSet::new();
        let checks = dictionaries
            .iter()
            .map(|dictionary| {
                let Some(dictionary) = dictionary.as_deref() else {
                    return Arc::new(templates.check_device(None));
                };
                wanted.insert(dictionary);
                if let Some(entry) = self.entries.get(dictionary)
                    && entry.generation == generation
                    && entry.stamps.unchanged(&mut seen)
                {
                    return Arc::clone(&entry.check);
                }
                let mut stamps = Stamps::default();
                let check = Arc::new(templates.check_device_stamped(Some(dictionary), &mut stamps));
                self.renders += 1;
                self.entries.insert(
                    dictionary.to_owned(),
                    Entry {
                        generation,
                        stamps,
                        check: Arc::clone(&check),
                    },
                );
                check
            })
            .collect();
        self.entries.retain(|k, _| wanted.contains(k.as_str()));
        checks
    }

    /// How many checks were rendered (not answered from the cache) so far.
    pub fn renders(&self) -> u64 {
        self.renders
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devicetype::{FileKind, TemplateDir};

    const DICT: &str = "{% extends 'board.jinja2' %}\n{% set x = 1 %}\n";
    const TEMPLATE: &str = "{% extends 'base.jinja2' %}\n";

    fn dirs() -> (tempfile::TempDir, Templates) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("board.jinja2"), TEMPLATE).unwrap();
        let templates =
            Templates::from_dirs([TemplateDir::Admin(dir.path().to_owned())]).with_builtin();
        (dir, templates)
    }

    #[test]
    fn a_second_round_renders_nothing() {
        let (_dir, templates) = dirs();
        let mut cache = DeviceChecks::default();
        let dicts = vec![Some(DICT.to_owned()), Some(DICT.to_owned()), None];
        let first = cache.check_all(&templates, &dicts);
        assert_eq!(first[0].config_error, None, "{:?}", first[0]);
        assert_eq!(first[0].template.as_deref(), Some("board"));
        assert_eq!(
            first[2].config_error.as_deref(),
            Some("no device dictionary")
        );
        // Two devices with the same dictionary share one render.
        assert_eq!(cache.renders(), 1);
        let second = cache.check_all(&templates, &dicts);
        assert_eq!(cache.renders(), 1, "nothing rendered again");
        assert_eq!(first, second);
    }

    #[test]
    fn a_written_template_or_health_check_renders_again() {
        let (_dir, templates) = dirs();
        let mut cache = DeviceChecks::default();
        let dicts = vec![Some(DICT.to_owned())];
        cache.check_all(&templates, &dicts);
        templates
            .write(FileKind::Template, "board", "{% if %}\n")
            .unwrap();
        let broken = cache.check_all(&templates, &dicts);
        assert_eq!(cache.renders(), 2);
        assert!(broken[0].config_error.is_some());
        assert_eq!(broken[0].health_check, None);
        templates
            .write(FileKind::HealthCheck, "board", "job_name: hc\n")
            .unwrap();
        let checked = cache.check_all(&templates, &dicts);
        assert_eq!(cache.renders(), 3);
        assert_eq!(checked[0].health_check.as_deref(), Some("job_name: hc\n"));
    }

    #[test]
    fn a_file_changed_by_another_process_renders_again() {
        let (dir, templates) = dirs();
        let mut cache = DeviceChecks::default();
        let dicts = vec![Some(DICT.to_owned())];
        cache.check_all(&templates, &dicts);
        // Written behind the handle's back: no generation bump, only the stamps tell.
        std::fs::create_dir(dir.path().join("health-checks")).unwrap();
        std::fs::write(dir.path().join("health-checks/board.yaml"), "job_name: x\n").unwrap();
        let found = cache.check_all(&templates, &dicts);
        assert_eq!(cache.renders(), 2);
        assert_eq!(found[0].health_check.as_deref(), Some("job_name: x\n"));
        std::fs::write(dir.path().join("board.jinja2"), "{% if %}\n").unwrap();
        let broken = cache.check_all(&templates, &dicts);
        assert_eq!(cache.renders(), 3);
        assert!(broken[0].config_error.is_some());
    }

    #[test]
    fn shipped_directories_give_templates_but_no_health_checks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("board.jinja2"), TEMPLATE).unwrap();
        std::fs::create_dir(dir.path().join("health-checks")).unwrap();
        std::fs::write(dir.path().join("health-checks/board.yaml"), "job_name: x\n").unwrap();
        let shipped =
            Templates::from_dirs([TemplateDir::Shipped(dir.path().to_owned())]).with_builtin();
        let check = shipped.check_device(Some(DICT));
        assert_eq!((check.config_error, check.health_check), (None, None));
        let admin = Templates::new([dir.path()]).with_builtin();
        assert!(admin.check_device(Some(DICT)).health_check.is_some());
        // The compiled-in templates never carry a health check either.
        let builtin = Templates::builtin().check_device(Some("{% extends 'qemu.jinja2' %}\n"));
        assert_eq!(builtin.health_check, None);
    }

    #[test]
    fn a_changed_dictionary_renders_again_and_the_old_entry_goes() {
        let (_dir, templates) = dirs();
        let mut cache = DeviceChecks::default();
        cache.check_all(&templates, &[Some(DICT.to_owned())]);
        let other = format!("{DICT}{{% set y = 2 %}}\n");
        cache.check_all(&templates, &[Some(other)]);
        assert_eq!(cache.renders(), 2);
        assert_eq!(cache.entries.len(), 1);
    }
}
