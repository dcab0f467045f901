//! What the job's directory (the directory of its log) holds besides the log, as LAVA's job
//! output directory does and `scheduler.jobs.configuration` serves: `device.yaml` (the
//! rendered device configuration) and the device's worker's `dispatcher.yaml`, `env.yaml` and
//! `env-dut.yaml` when the worker has them (absent files stay absent).

use std::path::Path;

use super::JobRun;
use crate::store::{AsyncStore, WorkerFile};

/// The worker files a job directory gets, by file name.
const WORKER_FILES: [(WorkerFile, &str); 3] = [
    (WorkerFile::Config, "dispatcher.yaml"),
    (WorkerFile::Env, "env.yaml"),
    (WorkerFile::EnvDut, "env-dut.yaml"),
];

/// Writes the job's configuration files next to its log. A failure is logged and the job
/// goes on: these files document the job, they do not run it.
pub(super) async fn write(store: &AsyncStore, run: &JobRun, device_yaml: &str) {
    let Some(dir) = run.log_path.parent() else {
        return;
    };
    write_one(dir, "device.yaml", device_yaml).await;
    let Some(worker) = run.device.worker_name.clone() else {
        return;
    };
    let worker = match store.call(move |s| s.worker(&worker)).await {
        Ok(Some(worker)) => worker,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(job = %run.job.id, "reading the device's worker: {e}");
            return;
        }
    };
    for (which, name) in WORKER_FILES {
        if let Some(text) = worker.file(which) {
            write_one(dir, name, text).await;
        }
    }
}

async fn write_one(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    let written = match tokio::fs::create_dir_all(dir).await {
        Ok(()) => tokio::fs::write(&path, text).await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        tracing::warn!("writing {}: {e}", path.display());
    }
}
