//! Where device-type templates and health checks come from.
//!
//! This is the only part of `devicetype` that touches the file system: everything else works
//! on the text handed out by [`Templates::load`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Error;
use super::stamp::Stamps;

/// The templates shipped in the repository's `device-types/` directory, compiled into the binary
/// so a bare `lavabox` works from any directory.
const BUILTIN: &[(&str, &str)] = &[
    (
        "base.jinja2",
        include_str!("../../device-types/base.jinja2"),
    ),
    (
        "base-uboot.jinja2",
        include_str!("../../device-types/base-uboot.jinja2"),
    ),
    (
        "bcm2711-rpi-4-b.jinja2",
        include_str!("../../device-types/bcm2711-rpi-4-b.jinja2"),
    ),
    (
        "beaglebone-black.jinja2",
        include_str!("../../device-types/beaglebone-black.jinja2"),
    ),
    ("lxc.jinja2", include_str!("../../device-types/lxc.jinja2")),
    (
        "qemu.jinja2",
        include_str!("../../device-types/qemu.jinja2"),
    ),
    (
        "qemu-uboot-arm.jinja2",
        include_str!("../../device-types/qemu-uboot-arm.jinja2"),
    ),
];

/// Suffix of device-type template files.
const TEMPLATE_SUFFIX: &str = ".jinja2";

/// Sub-directory of a template directory that holds health-check job definitions.
const HEALTH_CHECKS: &str = "health-checks";

/// The files of a device type that the APIs write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Its Jinja2 template, `<name>.jinja2`.
    Template,
    /// Its health-check job definition, `health-checks/<name>.yaml`.
    HealthCheck,
}

/// A template directory and what it may provide.
///
/// LAVA runs a health check only when the admin installed one. The package's own shipped
/// directory holds example health checks whose assets live where the appliance image puts
/// them, so it provides templates only: the demo, the lab and the image install the examples
/// they can run into an admin directory (the data directory's `device-types/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateDir {
    /// An admin's directory (the data directory, `/etc/lavabox/device-types`, a configured
    /// one): templates and health checks.
    Admin(PathBuf),
    /// The templates shipped with lavabox: templates only, its `health-checks/` is ignored.
    Shipped(PathBuf),
}

/// One place templates are looked up in.
#[derive(Clone)]
enum Layer {
    /// A directory on disk, read at every lookup so edits apply to the next render.
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Whether its `health-checks/` counts (an admin's directory, not a shipped one).
        health_checks: bool,
    },
    /// Files held in memory, keyed by their path relative to a template directory
    /// (`qemu.jinja2`, `health-checks/qemu.yaml`).
    Memory {
        /// Shown in "not found" messages.
        label: &'static str,
        /// The files.
        files: BTreeMap<String, String>,
        /// Whether its `health-checks/` counts (never for the compiled-in templates).
        health_checks: bool,
    },
}

impl std::fmt::Debug for Layer {
    /// Names the source without dumping the text of in-memory files.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::Dir { dir, health_checks } => f
                .debug_struct("Dir")
                .field("dir", dir)
                .field("health_checks", health_checks)
                .finish(),
            Layer::Memory {
                label,
                files,
                health_checks,
            } => f
                .debug_struct("Memory")
                .field("label", label)
                .field("files", &files.keys().collect::<Vec<_>>())
                .field("health_checks", health_checks)
                .finish(),
        }
    }
}

impl Layer {
    /// Reads `relative` (already checked to be a safe relative path) from this layer. With
    /// `stamps`, a directory lookup first records the file's stamp (present or not), so a
    /// cached render can tell later whether this lookup would now read something else.
    fn read(&self, relative: &str, stamps: Option<&mut Stamps>) -> Result<Option<String>, Error> {
        match self {
            Layer::Dir { dir, .. } => {
                let path = dir.join(relative);
                if let Some(stamps) = stamps {
                    stamps.record(&path);
                }
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(Some(text)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(Error::Io { path, source }),
                }
            }
            Layer::Memory { files, .. } => Ok(files.get(relative).cloned()),
        }
    }

    /// Whether health checks are looked up in this layer.
    fn has_health_checks(&self) -> bool {
        match self {
            Layer::Dir { health_checks, .. } | Layer::Memory { health_checks, .. } => {
                *health_checks
            }
        }
    }

    /// Names of the top-level template files of this layer.
    fn template_names(&self) -> Result<Vec<String>, Error> {
        match self {
            Layer::Dir { dir, .. } => {
                let entries = match std::fs::read_dir(dir) {
                    Ok(entries) => entries,
                    // A configured directory that does not exist yet simply holds nothing.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(source) => {
                        return Err(Error::Io {
                            path: dir.clone(),
                            source,
                        });
                    }
                };
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|source| Error::Io {
                        path: dir.clone(),
                        source,
                    })?;
                    if let Some(name) = entry.file_name().to_str()
                        && name.ends_with(TEMPLATE_SUFFIX)
                    {
                        names.push(name.to_owned());
                    }
                }
                Ok(names)
            }
            Layer::Memory { files, .. } => Ok(files
                .keys()
                .filter(|k| !k.contains('/') && k.ends_with(TEMPLATE_SUFFIX))
                .cloned()
                .collect()),
        }
    }

    /// How this layer is named in messages.
    fn describe(&self) -> String {
        match self {
            Layer::Dir { dir, .. } => dir.display().to_string(),
            Layer::Memory { label, .. } => (*label).to_owned(),
        }
    }
}

/// A handle on the device-type templates: an ordered list of sources searched first to last,
/// as LAVA searches `/etc/lava-server/dispatcher-config/device-types` before
/// `/usr/share/lava-server/device-types`.
///
/// Cheap to clone and safe to share between threads. Files are read at every lookup (no cache),
/// so a template changed through the API is used by the next render; callers that cache what
/// they rendered ([`super::DeviceChecks`]) watch [`Templates::generation`] and the files' stamps.
#[derive(Debug, Clone)]
pub struct Templates {
    layers: Arc<Vec<Layer>>,
    /// Bumped by every [`Templates::write`], shared by all clones.
    generation: Arc<AtomicU64>,
}

impl Templates {
    /// Templates looked up in `dirs`, in order (the first directory holding a file wins);
    /// every directory may hold health checks.
    pub fn new<P: AsRef<Path>>(dirs: impl IntoIterator<Item = P>) -> Self {
        Templates::from_dirs(
            dirs.into_iter()
                .map(|d| TemplateDir::Admin(d.as_ref().to_path_buf())),
        )
    }

    /// Templates looked up in `dirs`, in order; only [`TemplateDir::Admin`] directories
    /// provide health checks.
    pub fn from_dirs(dirs: impl IntoIterator<Item = TemplateDir>) -> Self {
        Templates::from_layers(
            dirs.into_iter()
                .map(|d| match d {
                    TemplateDir::Admin(dir) => Layer::Dir {
                        dir,
                        health_checks: true,
                    },
                    TemplateDir::Shipped(dir) => Layer::Dir {
                        dir,
                        health_checks: false,
                    },
                })
                .collect(),
        )
    }

    /// Only the templates shipped with lavabox (the repository's `device-types/`), compiled in.
    pub fn builtin() -> Self {
        Templates::from_layers(vec![builtin_layer()])
    }

    /// These sources, then the compiled-in shipped templates as the last resort.
    #[must_use]
    pub fn with_builtin(self) -> Self {
        let mut layers = Arc::unwrap_or_clone(self.layers);
        layers.push(builtin_layer());
        Templates {
            layers: Arc::new(layers),
            generation: self.generation,
        }
    }

    fn from_layers(layers: Vec<Layer>) -> Self {
        Templates {
            layers: Arc::new(layers),
            generation: Arc::default(),
        }
    }

    /// How many times [`Templates::write`] changed a file through this handle (or a clone).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Templates held in memory: `files` maps paths relative to a template directory
    /// (`qemu.jinja2`, `health-checks/qemu.yaml`) to their text. Meant for tests and previews.
    pub fn from_memory<K: Into<String>, V: Into<String>>(
        files: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Templates::from_layers(vec![Layer::Memory {
            label: "in-memory templates",
            files: files
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            health_checks: true,
        }])
    }

    /// The first directory source: where LAVA writes templates and health checks it is given
    /// through the API (`<dir>/<name>.jinja2`, `<dir>/health-checks/<name>.yaml`).
    pub fn writable_dir(&self) -> Option<&Path> {
        self.layers.iter().find_map(|layer| match layer {
            Layer::Dir { dir, .. } => Some(dir.as_path()),
            Layer::Memory { .. } => None,
        })
    }

    /// Writes `text` as the `kind` file of device type `name` into [`Templates::writable_dir`]
    /// (`<dir>/<name>.jinja2` or `<dir>/health-checks/<name>.yaml`), creating directories as
    /// needed, and returns its path. Lookups read directories at every call, so the next
    /// render or health check uses it; the generation is bumped so cached renders are redone.
    pub fn write(&self, kind: FileKind, name: &str, text: &str) -> Result<PathBuf, Error> {
        let dir = self.writable_dir().ok_or(Error::NotWritable)?;
        let path = match kind {
            FileKind::Template => dir.join(template_file_name(name)?),
            FileKind::HealthCheck => {
                if !is_plain_file_name(name) {
                    return Err(Error::InvalidName(name.to_owned()));
                }
                dir.join(HEALTH_CHECKS).join(format!("{name}.yaml"))
            }
        };
        let write = |path: &Path| -> io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // Write beside the target and rename, so a render never reads half a file.
            let partial = path.with_extension("partial");
            std::fs::write(&partial, text)?;
            std::fs::rename(&partial, path)
        };
        let written = write(&path).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        });
        // Bumped even on failure: a rename may have happened before the error.
        self.generation.fetch_add(1, Ordering::AcqRel);
        written?;
        Ok(path)
    }

    /// The text of the template file `file_name` (e.g. `qemu.jinja2`) from the first source that
    /// has it, or `None`. Names that are not plain file names are never found.
    pub fn load(&self, file_name: &str) -> Result<Option<String>, Error> {
        self.load_stamped(file_name, None)
    }

    /// [`Templates::load`], recording the stamps of the files looked at into `stamps`.
    pub(crate) fn load_stamped(
        &self,
        file_name: &str,
        stamps: Option<&mut Stamps>,
    ) -> Result<Option<String>, Error> {
        if !is_plain_file_name(file_name) {
            return Ok(None);
        }
        self.read_first(file_name, stamps)
    }

    /// The Jinja2 source of a device type, for `devicetypes/<name>/template` and
    /// `scheduler.device_types.get_template`: `name` may be given with or without `.jinja2`.
    pub fn template_source(&self, name: &str) -> Result<String, Error> {
        let file_name = template_file_name(name)?;
        self.read_first(&file_name, None)?
            .ok_or_else(|| self.not_found(&file_name))
    }

    /// The device types available as templates: every `*.jinja2` in any source whose name does
    /// not start with `base` (LAVA's rule), without the suffix, sorted and without duplicates.
    pub fn device_types(&self) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for layer in self.layers.iter() {
            for file in layer.template_names()? {
                if !file.starts_with("base")
                    && let Some(stem) = file.strip_suffix(TEMPLATE_SUFFIX)
                {
                    names.push(stem.to_owned());
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The health-check job definition for devices whose dictionary extends `template_name`
    /// (without `.jinja2`): `health-checks/<template_name>.yaml`, else `.yml`, in the first source
    /// that has either and may hold health checks (never the shipped or compiled-in
    /// templates, see [`TemplateDir`]). `None` means those devices have no health check.
    pub fn health_check(&self, template_name: &str) -> Result<Option<String>, Error> {
        self.health_check_stamped(template_name, None)
    }

    /// [`Templates::health_check`], recording the stamps of the files looked at into `stamps`.
    pub(crate) fn health_check_stamped(
        &self,
        template_name: &str,
        mut stamps: Option<&mut Stamps>,
    ) -> Result<Option<String>, Error> {
        if !is_plain_file_name(template_name) {
            return Err(Error::InvalidName(template_name.to_owned()));
        }
        for layer in self.layers.iter().filter(|l| l.has_health_checks()) {
            for ext in ["yaml", "yml"] {
                let relative = format!("{HEALTH_CHECKS}/{template_name}.{ext}");
                if let Some(text) = layer.read(&relative, stamps.as_deref_mut())? {
                    return Ok(Some(text));
                }
            }
        }
        Ok(None)
    }

    /// The not-found error for `file_name`, listing the sources searched.
    pub(crate) fn not_found(&self, file_name: &str) -> Error {
        let searched: Vec<String> = self.layers.iter().map(Layer::describe).collect();
        Error::TemplateNotFound {
            name: file_name.to_owned(),
            searched: if searched.is_empty() {
                "no template sources".to_owned()
            } else {
                searched.join(", ")
            },
        }
    }

    /// Reads `relative` from the first layer that has it.
    fn read_first(
        &self,
        relative: &str,
        mut stamps: Option<&mut Stamps>,
    ) -> Result<Option<String>, Error> {
        for layer in self.layers.iter() {
            if let Some(text) = layer.read(relative, stamps.as_deref_mut())? {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }
}

/// `qemu` or `qemu.jinja2` → `qemu.jinja2`; rejects path-like names and hidden files
/// as LAVA does (`Invalid device-type`).
fn template_file_name(name: &str) -> Result<String, Error> {
    if !is_plain_file_name(name) {
        return Err(Error::InvalidName(name.to_owned()));
    }
    Ok(if name.ends_with(TEMPLATE_SUFFIX) {
        name.to_owned()
    } else {
        format!("{name}{TEMPLATE_SUFFIX}")
    })
}

/// True for a non-empty single path component that is not hidden (so not `.` or `..`).
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

fn builtin_layer() -> Layer {
    Layer::Memory {
        label: "built-in templates",
        files: BUILTIN
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect(),
        // The shipped health checks are examples with the appliance's asset paths: an admin
        // installs them, they are never compiled in.
        health_checks: false,
    }
}

/// Names of the compiled-in templates, for the test that keeps them in step with `device-types/`.
pub fn builtin_template_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(name, _)| *name)
}
