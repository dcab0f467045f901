//! Board power: a small trait ([`Power`]: switch on or off, cycle with a minimum off-time)
//! and its backends. [`command::CommandPower`] is LAVA's: the dictionary's
//! `power_on_command`, `power_off_command` and `hard_reset_command` lists. Relays and PDUs
//! are further backends of the same trait: a dictionary's `lavabox_power` variables
//! ([`spec`]) choose one of [`gpio`] (gpiocdev, or rppal with the `rpi` feature), [`i2c`]
//! (relay HATs), [`usb_port`] (hub port power) and [`pdu`] (a pdudaemon), all but the last
//! switched through one [`relay::Channel`] per line owned by [`channels::CHANNELS`].

pub mod channels;
pub mod command;
pub mod gpio;
pub mod i2c;
pub mod pdu;
pub mod relay;
pub mod spec;
pub mod usb_port;

use std::time::Duration;

use super::{BoxFuture, Error};

/// A board's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    /// Powered.
    On,
    /// Unpowered.
    Off,
}

/// How a power cycle was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycle {
    /// By the board's own reset (LAVA's `hard_reset_command`, recorded as `pdu-reboot`).
    HardReset,
    /// Off, then on again after the minimum off-time.
    OffOn,
}

/// Where a power backend says what it does, for the job log: each command it runs and what
/// the command printed.
pub trait Transcript: Send + Sync {
    /// `command` is about to run.
    fn command(&self, command: &str);
    /// One line the last command printed.
    fn output(&self, line: &str);
}

/// A [`Transcript`] that keeps nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Transcript for Silent {
    fn command(&self, _: &str) {}
    fn output(&self, _: &str) {}
}

/// Switches a board's power.
pub trait Power: Send + Sync + std::fmt::Debug {
    /// Switches the board on or off, each step bounded by `timeout`.
    /// [`Error::NoPowerControl`] when the board cannot be switched this way.
    fn set<'a>(
        &'a self,
        state: PowerState,
        timeout: Duration,
        out: &'a dyn Transcript,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// How long the board must stay off before it is switched on again.
    fn min_off_time(&self) -> Duration {
        Duration::ZERO
    }

    /// Power-cycles the board: off, at least [`Power::min_off_time`], on.
    fn cycle<'a>(
        &'a self,
        timeout: Duration,
        out: &'a dyn Transcript,
    ) -> BoxFuture<'a, Result<Cycle, Error>> {
        Box::pin(async move {
            self.set(PowerState::Off, timeout, out).await?;
            stay_off(self.min_off_time()).await;
            self.set(PowerState::On, timeout, out).await?;
            Ok(Cycle::OffOn)
        })
    }
}

/// Waits out a board's minimum off-time. No wait at all for none: tokio's timer has a 1 ms
/// resolution, so even a zero sleep would hold every power cycle up to the next tick.
pub(crate) async fn stay_off(min_off: Duration) {
    if !min_off.is_zero() {
        tokio::time::sleep(min_off).await;
    }
}
