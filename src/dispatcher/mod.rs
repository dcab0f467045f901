//! The dispatcher: runs one job's pipeline against one board and records its log and
//! results. It never changes job or device state; the scheduler's job task does that around
//! [`Dispatcher::run`] (Scheduled → Running before, Finished with the returned
//! [`JobEnd`] after), so every state transition stays in one place.

use std::net::IpAddr;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::devicetype::Templates;
use crate::model::ErrorType;
use crate::store::{AsyncStore, Device, Job, JobEnd};

/// What the dispatcher needs from the appliance's configuration.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Root of the built-in TFTP server; each job gets `<root>/<job id>/`.
    pub tftp_root: PathBuf,
    /// Where per-job work directories live (downloads, overlays); removed when a job ends.
    pub work_dir: PathBuf,
    /// The address boards use to reach this appliance (`{SERVER_IP}`).
    pub server_ip: IpAddr,
}

/// One job to run on one device.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// The job, already Scheduled on `device`.
    pub job: Job,
    /// The device it runs on, with its dictionary.
    pub device: Device,
    /// Where the job's log is appended, in LAVA's line format.
    pub log_path: PathBuf,
    /// Fires when the job is canceled; the dispatcher cleans up and ends with health Canceled.
    pub cancel: CancellationToken,
}

/// Runs jobs. Cheap to clone; one task per job.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    config: DispatcherConfig,
    store: AsyncStore,
    templates: Templates,
}

impl Dispatcher {
    /// A dispatcher writing results to `store` and rendering devices with `templates`.
    pub fn new(config: DispatcherConfig, store: AsyncStore, templates: Templates) -> Dispatcher {
        Dispatcher {
            config,
            store,
            templates,
        }
    }

    /// Runs the job to its end: validates it, builds the pipeline, deploys, boots, runs the
    /// tests, powers the device off. Results are stored as they arrive. Never panics out:
    /// every failure becomes the returned [`JobEnd`] (LAVA's error classes).
    ///
    /// CONTRACT PLACEHOLDER: the dispatcher work replaces this body.
    pub async fn run(&self, run: JobRun) -> JobEnd {
        let _ = (&self.config, &self.store, &self.templates, run);
        JobEnd::incomplete(ErrorType::Bug, "the dispatcher is not built yet")
    }
}
