//! LAVA's power backend: the dictionary's power and reset command lists, run through a
//! [`CommandRunner`].

use std::sync::Arc;
use std::time::Duration;

use super::{Cycle, Power, PowerState, Transcript};
use crate::hw::{BoxFuture, CommandRunner, Error};

/// Power by commands (`power_on_command`, `power_off_command`, `hard_reset_command`).
#[derive(Debug, Clone)]
pub struct CommandPower {
    /// Runs the commands.
    pub runner: Arc<dyn CommandRunner>,
    /// `power_on_command`.
    pub on: Vec<String>,
    /// `power_off_command`.
    pub off: Vec<String>,
    /// `hard_reset_command`: a cycle runs these instead of off and on when there are any.
    pub hard_reset: Vec<String>,
    /// Minimum off-time of an off-on cycle (none for LAVA's commands, which wait themselves).
    pub min_off: Duration,
}

impl CommandPower {
    /// Runs `commands` in order, stopping at the first failure unless `all`; returns the
    /// first failure.
    async fn run(
        &self,
        commands: &[String],
        timeout: Duration,
        out: &dyn Transcript,
        all: bool,
    ) -> Result<(), Error> {
        let mut first_err = None;
        for command in commands {
            out.command(command);
            match self.runner.run(command, timeout).await {
                Ok(done) => done.output.lines().for_each(|l| out.output(l)),
                Err(e) => {
                    e.output()
                        .unwrap_or_default()
                        .lines()
                        .for_each(|l| out.output(l));
                    if !all {
                        return Err(e);
                    }
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Power for CommandPower {
    fn set<'a>(
        &'a self,
        state: PowerState,
        timeout: Duration,
        out: &'a dyn Transcript,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            match state {
                PowerState::On if self.on.is_empty() => Err(Error::NoPowerControl),
                PowerState::On => self.run(&self.on, timeout, out, false).await,
                PowerState::Off if self.off.is_empty() => Err(Error::NoPowerControl),
                // Every off command runs, even after one failed: off is the safe state.
                PowerState::Off => self.run(&self.off, timeout, out, true).await,
            }
        })
    }

    fn min_off_time(&self) -> Duration {
        self.min_off
    }

    fn cycle<'a>(
        &'a self,
        timeout: Duration,
        out: &'a dyn Transcript,
    ) -> BoxFuture<'a, Result<Cycle, Error>> {
        Box::pin(async move {
            if !self.hard_reset.is_empty() {
                self.run(&self.hard_reset, timeout, out, false).await?;
                return Ok(Cycle::HardReset);
            }
            if self.off.is_empty() && self.on.is_empty() {
                return Err(Error::NoPowerControl);
            }
            self.run(&self.off, timeout, out, false).await?;
            super::stay_off(self.min_off).await;
            self.run(&self.on, timeout, out, false).await?;
            Ok(Cycle::OffOn)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::fake::FakeRunner;
    use crate::hw::power::Silent;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Transcript for Lines {
        fn command(&self, command: &str) {
            self.0.lock().unwrap().push(format!("$ {command}"));
        }
        fn output(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
    }

    fn power(runner: &FakeRunner, hard_reset: &[&str]) -> CommandPower {
        CommandPower {
            runner: Arc::new(runner.clone()),
            on: vec!["on-1".into(), "on-2".into()],
            off: vec!["off-1".into(), "off-2".into()],
            hard_reset: hard_reset.iter().map(|s| (*s).to_owned()).collect(),
            min_off: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn a_cycle_is_the_hard_reset_when_there_is_one() {
        let runner = FakeRunner::default();
        let lines = Lines::default();
        let how = power(&runner, &["reset"])
            .cycle(Duration::from_secs(1), &lines)
            .await;
        assert_eq!(how.unwrap(), Cycle::HardReset);
        assert_eq!(runner.commands(), ["reset"]);
        let how = power(&runner, &[])
            .cycle(Duration::from_secs(1), &lines)
            .await;
        assert_eq!(how.unwrap(), Cycle::OffOn);
        assert_eq!(
            runner.commands(),
            ["reset", "off-1", "off-2", "on-1", "on-2"]
        );
        assert_eq!(lines.0.lock().unwrap()[0], "$ reset");
    }

    #[tokio::test]
    async fn every_off_command_runs_even_after_a_failure() {
        let runner = FakeRunner {
            failing: vec!["off-1".into()],
            ..FakeRunner::default()
        };
        let err = power(&runner, &[])
            .set(PowerState::Off, Duration::from_secs(1), &Silent)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("off-1"), "{err}");
        assert_eq!(runner.commands(), ["off-1", "off-2"]);
        // On stops at the first failure, as a cycle does.
        let runner = FakeRunner {
            failing: vec!["on-1".into()],
            ..FakeRunner::default()
        };
        let p = power(&runner, &[]);
        assert!(
            p.set(PowerState::On, Duration::from_secs(1), &Silent)
                .await
                .is_err()
        );
        assert_eq!(runner.commands(), ["on-1"]);
    }

    #[tokio::test]
    async fn no_commands_is_no_power_control() {
        let p = CommandPower {
            runner: Arc::new(FakeRunner::default()),
            on: Vec::new(),
            off: Vec::new(),
            hard_reset: Vec::new(),
            min_off: Duration::ZERO,
        };
        let t = Duration::from_secs(1);
        assert!(matches!(
            p.cycle(t, &Silent).await,
            Err(Error::NoPowerControl)
        ));
        assert!(matches!(
            p.set(PowerState::Off, t, &Silent).await,
            Err(Error::NoPowerControl)
        ));
    }
}
