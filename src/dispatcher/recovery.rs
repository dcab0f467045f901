//! Powering a board off outside any job: at start-up, for the boards whose job a crash closed
//! (`scheduler::recover` through `JobRunner::power_off`). The board may still be running
//! whatever the dead job booted; its dictionary's power-off commands stop it.

use std::time::Duration;

use super::Dispatcher;
use crate::devicetype::Context;
use crate::store::Device;

/// How long one power-off command may take, as on a job's own power-off.
const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(60);

impl Dispatcher {
    /// Renders `device`'s dictionary (off the runtime) and runs its power-off commands through
    /// the dispatcher's command runner. Never fails: a device without a usable dictionary or
    /// a failing command is logged, and the other commands still run.
    pub async fn power_off_device(&self, device: &Device) {
        let hostname = device.hostname.as_str();
        let Some(dictionary) = device.dictionary.clone() else {
            tracing::warn!(device = hostname, "cannot power off: no device dictionary");
            return;
        };
        let templates = self.templates.clone();
        let rendered =
            tokio::task::spawn_blocking(move || templates.render(&dictionary, &Context::new()))
                .await;
        let config = match rendered {
            Ok(Ok(rendered)) => rendered.config,
            Ok(Err(err)) => {
                tracing::warn!(device = hostname, error = %err, "cannot power off: the device dictionary does not render");
                return;
            }
            Err(err) => {
                tracing::error!(device = hostname, error = %err, "cannot power off: rendering failed");
                return;
            }
        };
        for command in &config.commands.power_off {
            match self.hardware.runner.run(command, POWER_OFF_TIMEOUT).await {
                Ok(_) => tracing::info!(device = hostname, command, "powered off"),
                Err(err) => {
                    tracing::warn!(device = hostname, command, error = %err, "power-off command failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::devicetype::Templates;
    use crate::dispatcher::{Dispatcher, DispatcherConfig, Hardware};
    use crate::hw::fake::FakeRunner;
    use crate::store::{AsyncStore, NewDevice, NewDeviceType};

    #[tokio::test]
    async fn runs_the_dictionarys_power_off_commands() {
        let (dir, mut s) = crate::store::testutil::store();
        s.create_device_type(&NewDeviceType::named("qemu-uboot-arm"))
            .unwrap();
        let mut new = NewDevice::new("b1", "qemu-uboot-arm");
        new.dictionary = Some(
            "{% extends 'qemu-uboot-arm.jinja2' %}\n{% set connection_command = 'c' %}\n\
             {% set power_off_command = ['off-1', 'off-2'] %}\n{% set power_on_command = 'on' %}\n"
                .to_owned(),
        );
        let device = s.create_device(&new).unwrap();
        let mut bare = device.clone();
        bare.dictionary = None;
        let runner = FakeRunner {
            failing: vec!["off-1".into()],
            ..FakeRunner::default()
        };
        let config = DispatcherConfig {
            tftp_root: dir.path().join("tftp"),
            work_dir: dir.path().join("work"),
            server_ip: "127.0.0.1".parse().unwrap(),
        };
        let dispatcher = Dispatcher::new(config, AsyncStore::new(s), Templates::builtin())
            .with_hardware(Hardware {
                runner: Arc::new(runner.clone()),
                console: None,
            });
        dispatcher.power_off_device(&device).await;
        // The first command fails; the second still runs.
        assert_eq!(runner.commands(), vec!["off-1", "off-2"]);
        dispatcher.power_off_device(&bare).await;
        assert_eq!(
            runner.commands().len(),
            2,
            "nothing to run without a dictionary"
        );
    }
}
