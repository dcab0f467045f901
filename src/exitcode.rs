//! The process's exit codes and the rule that picks one from an error (pure).
//!
//! The appliance's unit restarts lavabox on failure, except for the two failures a restart
//! cannot mend: `RestartPreventExitStatus=78 65` in `systemd/lavabox.service`. A missing or
//! invalid configuration exits with [`EX_CONFIG`] (78), an unusable data partition or database
//! (unreadable, not a database, damaged, newer than this lavabox, a data directory that cannot
//! be made) with [`EX_DATAERR`] (65), each with one clear line on stderr, which the journal and
//! the console show; anything else is 1, which systemd restarts.

/// The `sysexits.h` code for a configuration error.
pub const EX_CONFIG: u8 = 78;
/// The `sysexits.h` code for unusable input data: here the database or its partition.
pub const EX_DATAERR: u8 = 65;
/// Any other failure: systemd restarts the service.
pub const FAILURE: u8 = 1;

/// The data directory (the appliance's data partition) cannot be created or used.
#[derive(Debug, thiserror::Error)]
#[error("the data directory {path} cannot be used (is the data partition mounted and writable?)")]
pub struct DataDirError {
    /// The data directory.
    pub path: std::path::PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// What kind of failure ended the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The configuration is missing or invalid: a restart would fail the same way.
    Config,
    /// The database or the data partition is unusable: a restart would fail the same way.
    Data,
    /// Anything else (a port taken, a transient error): worth a restart.
    Other,
}

impl Failure {
    /// Classifies `err` by the first cause in its chain that names a kind.
    pub fn of(err: &anyhow::Error) -> Failure {
        for cause in err.chain() {
            if cause.is::<crate::config::Error>() {
                return Failure::Config;
            }
            if cause.is::<DataDirError>() {
                return Failure::Data;
            }
            if let Some(store) = cause.downcast_ref::<crate::store::Error>() {
                if store.is_data_damage() {
                    return Failure::Data;
                }
                return Failure::Other;
            }
        }
        Failure::Other
    }

    /// The exit code.
    pub fn code(self) -> u8 {
        match self {
            Failure::Config => EX_CONFIG,
            Failure::Data => EX_DATAERR,
            Failure::Other => FAILURE,
        }
    }

    /// What the one error line says the failure was, beside its exit code. The line itself
    /// always starts `lavabox: error: `, the prefix scripts and tests already look for.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Config => "configuration error",
            Failure::Data => "data error",
            Failure::Other => "error",
        }
    }
}

/// The one line printed for `err` (its whole context chain on one line).
pub fn error_line(err: &anyhow::Error) -> String {
    let failure = Failure::of(err);
    let line = format!("{err:#}").replace('\n', " ");
    match failure {
        Failure::Other => format!("lavabox: error: {line}"),
        _ => format!(
            "lavabox: error: {line} ({}, exit {}: not restarted until fixed)",
            failure.label(),
            failure.code()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn config_err() -> anyhow::Error {
        let err = crate::config::Config::load(
            Some(std::path::Path::new("/nonexistent/lavabox.toml")),
            &crate::config::Overrides::default(),
        )
        .unwrap_err();
        anyhow::Error::new(err).context("loading the configuration")
    }

    #[test]
    fn a_missing_config_is_ex_config() {
        let err = config_err();
        assert_eq!(Failure::of(&err), Failure::Config);
        assert_eq!(Failure::of(&err).code(), 78);
        let line = error_line(&err);
        assert!(
            line.starts_with("lavabox: error: loading the configuration: cannot read configuration file /nonexistent/lavabox.toml"),
            "{line}"
        );
        assert!(
            line.ends_with("(configuration error, exit 78: not restarted until fixed)"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn a_bad_config_is_ex_config() {
        let err = crate::config::Config::from_toml(
            "listen = 12\n",
            std::path::Path::new("/etc/lavabox/lavabox.toml"),
        )
        .unwrap_err();
        let err = anyhow::Error::new(err).context("loading the configuration");
        assert_eq!(Failure::of(&err), Failure::Config);
        assert!(error_line(&err).contains("/etc/lavabox/lavabox.toml: line 1"));
    }

    #[test]
    fn a_damaged_database_is_ex_dataerr() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lavabox.db");
        std::fs::write(&db, vec![0x5a_u8; 8192]).unwrap();
        let err = crate::store::Store::open(&db)
            .map(|_| ())
            .with_context(|| format!("opening database {}", db.display()))
            .unwrap_err();
        assert_eq!(Failure::of(&err), Failure::Data, "{err:#}");
        assert_eq!(Failure::of(&err).code(), 65);
        let line = error_line(&err);
        assert!(line.contains("opening database"), "{line}");
        assert!(line.contains("not a database"), "{line}");
    }

    #[test]
    fn a_data_directory_that_cannot_be_made_is_ex_dataerr() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let path = file.join("data");
        let source = std::fs::create_dir_all(&path).unwrap_err();
        let err = anyhow::Error::new(DataDirError { path, source });
        assert_eq!(Failure::of(&err), Failure::Data);
        assert!(error_line(&err).contains("data partition"));
    }

    #[test]
    fn a_request_failure_is_restarted() {
        let err = anyhow::Error::new(crate::store::Error::NotFound {
            kind: "user",
            name: "x".into(),
        });
        assert_eq!(Failure::of(&err), Failure::Other);
        let err = anyhow::anyhow!("binding the HTTP listener to 0.0.0.0:80");
        assert_eq!(Failure::of(&err).code(), 1);
        assert_eq!(
            error_line(&err),
            "lavabox: error: binding the HTTP listener to 0.0.0.0:80"
        );
    }
}
