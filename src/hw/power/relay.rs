//! One switched power channel (a relay on a GPIO line, an expander output, a USB port): the
//! logic every locally switched backend shares, apart from how the level is written.
//!
//! - **active-low**: the code says on/off; [`Channel`] maps it to the electrical level.
//! - **safe state**: written as soon as the channel is opened (off unless the dictionary says
//!   `lavabox_safe_state: on`) and again when the channel is dropped or [`Channel::safe`] runs
//!   at shutdown.
//! - **minimum off-time**: an on that comes sooner than `min_off` after the last off waits
//!   out the rest ([`Channel::wait_before_on`]); a cycle is off, wait, on.
//! - **one owner**: a channel is opened once per process ([`super::channels::Channels`]) and
//!   shared by everything that switches it.
//!
//! [`Pin`] adapts any embedded-hal 1.0 [`OutputPin`] (gpiocdev, rppal, a mock) to [`Line`].

use std::time::{Duration, Instant};

use embedded_hal::digital::OutputPin;

use super::PowerState;
use crate::hw::Error;

/// Something that drives one electrical output high or low.
pub trait Line: Send + 'static {
    /// Drives the output high (`true`) or low.
    fn drive(&mut self, high: bool) -> Result<(), Error>;
}

/// An embedded-hal output pin as a [`Line`]; `what` names it in errors.
pub struct Pin<P> {
    /// The pin.
    pub pin: P,
    /// Its name for errors, e.g. `GPIO17 on /dev/gpiochip0`.
    pub what: String,
}

impl<P: OutputPin + Send + 'static> Line for Pin<P> {
    fn drive(&mut self, high: bool) -> Result<(), Error> {
        let done = if high {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        };
        done.map_err(|e| Error::Config(format!("cannot switch {}: {e:?}", self.what)))
    }
}

/// How a channel behaves, from the dictionary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// The relay (or its driver) switches the board on when the line is low.
    pub active_low: bool,
    /// The state written at start-up and shutdown.
    pub safe: PowerState,
    /// How long the board stays off before it may be switched on again.
    pub min_off: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            active_low: false,
            safe: PowerState::Off,
            min_off: Duration::from_secs(2),
        }
    }
}

impl Settings {
    /// The electrical level that means `state`.
    pub fn level(&self, state: PowerState) -> bool {
        (state == PowerState::On) != self.active_low
    }
}

/// One opened channel: the line, its settings and what it was last set to.
pub struct Channel {
    line: Box<dyn Line>,
    settings: Settings,
    state: PowerState,
    /// When the board was last switched off (`None`: not since start-up, or it is on).
    off_since: Option<Instant>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("settings", &self.settings)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Takes `line` and writes the safe state at once.
    pub fn open(
        mut line: Box<dyn Line>,
        settings: Settings,
        now: Instant,
    ) -> Result<Channel, Error> {
        line.drive(settings.level(settings.safe))?;
        Ok(Channel {
            line,
            settings,
            state: settings.safe,
            off_since: (settings.safe == PowerState::Off).then_some(now),
        })
    }

    /// The state last written.
    pub fn state(&self) -> PowerState {
        self.state
    }

    /// Its settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// How long an on at `now` must wait for the minimum off-time (zero when it is on already).
    pub fn wait_before_on(&self, now: Instant) -> Duration {
        match (self.state, self.off_since) {
            (PowerState::Off, Some(since)) => self
                .settings
                .min_off
                .saturating_sub(now.duration_since(since)),
            _ => Duration::ZERO,
        }
    }

    /// Writes `state` at `now`. An on before the minimum off-time has passed is refused; the
    /// caller waits [`Channel::wait_before_on`] first.
    pub fn switch(&mut self, state: PowerState, now: Instant) -> Result<(), Error> {
        if state == PowerState::On {
            let wait = self.wait_before_on(now);
            if !wait.is_zero() {
                return Err(Error::Config(format!(
                    "switched on {} ms before the minimum off-time had passed",
                    wait.as_millis()
                )));
            }
        }
        self.line.drive(self.settings.level(state))?;
        if state == PowerState::Off && self.state != PowerState::Off {
            self.off_since = Some(now);
        }
        if state == PowerState::On {
            self.off_since = None;
        }
        self.state = state;
        Ok(())
    }

    /// Writes the safe state (at shutdown).
    pub fn safe(&mut self, now: Instant) -> Result<(), Error> {
        let safe = self.settings.safe;
        if safe == PowerState::On && !self.wait_before_on(now).is_zero() {
            // Never violate the off-time, even at shutdown: leave it off.
            return Ok(());
        }
        self.switch(safe, now)
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let safe = self.settings.safe;
        if safe == PowerState::Off || self.wait_before_on(Instant::now()).is_zero() {
            let _ = self.line.drive(self.settings.level(safe));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};

    fn pin(expect: &[State]) -> Mock {
        let t: Vec<Transaction> = expect.iter().map(|s| Transaction::set(*s)).collect();
        Mock::new(&t)
    }

    fn line(mock: &Mock) -> Box<dyn Line> {
        Box::new(Pin {
            pin: mock.clone(),
            what: "mock".into(),
        })
    }

    const MIN_OFF: Duration = Duration::from_secs(2);

    #[test]
    fn opening_writes_the_safe_state_and_a_cycle_is_off_then_on() {
        // Active-high: off = low at open, then on, off, on, and off again when dropped.
        let mut mock = pin(&[State::Low, State::High, State::Low, State::High, State::Low]);
        let t0 = Instant::now();
        let settings = Settings {
            min_off: MIN_OFF,
            ..Settings::default()
        };
        let mut ch = Channel::open(line(&mock), settings, t0).unwrap();
        assert_eq!(ch.state(), PowerState::Off);
        // The start-up off counts: an on right away waits for the off-time.
        assert_eq!(ch.wait_before_on(t0), MIN_OFF);
        let t1 = t0 + MIN_OFF;
        ch.switch(PowerState::On, t1).unwrap();
        ch.switch(PowerState::Off, t1 + Duration::from_secs(10))
            .unwrap();
        ch.switch(PowerState::On, t1 + Duration::from_secs(12))
            .unwrap();
        drop(ch);
        mock.done();
    }

    #[test]
    fn active_low_inverts_every_level() {
        let mut mock = pin(&[State::High, State::Low, State::High]);
        let t0 = Instant::now();
        let settings = Settings {
            active_low: true,
            safe: PowerState::Off,
            min_off: Duration::ZERO,
        };
        let mut ch = Channel::open(line(&mock), settings, t0).unwrap();
        ch.switch(PowerState::On, t0).unwrap();
        ch.switch(PowerState::Off, t0).unwrap();
        std::mem::forget(ch); // no drop transaction expected beyond these
        mock.done();
    }

    #[test]
    fn an_on_too_soon_is_refused_and_the_wait_says_how_long() {
        let mut mock = pin(&[State::High, State::Low, State::Low, State::High]);
        let t0 = Instant::now();
        let settings = Settings {
            active_low: false,
            safe: PowerState::On,
            min_off: MIN_OFF,
        };
        // Safe state on: powered at open, so no wait.
        let mut ch = Channel::open(line(&mock), settings, t0).unwrap();
        assert_eq!(ch.wait_before_on(t0), Duration::ZERO);
        ch.switch(PowerState::Off, t0).unwrap();
        let soon = t0 + Duration::from_millis(500);
        assert_eq!(ch.wait_before_on(soon), Duration::from_millis(1500));
        let err = ch.switch(PowerState::On, soon).unwrap_err();
        assert!(err.to_string().contains("minimum off-time"), "{err}");
        // A second off does not restart the clock.
        ch.switch(PowerState::Off, soon).unwrap();
        assert_eq!(ch.wait_before_on(soon), Duration::from_millis(1500));
        ch.switch(PowerState::On, t0 + MIN_OFF).unwrap();
        std::mem::forget(ch);
        mock.done();
    }

    #[test]
    fn shutdown_leaves_a_board_off_whose_off_time_has_not_passed() {
        let mut mock = pin(&[State::Low, State::High, State::Low]);
        let t0 = Instant::now();
        let settings = Settings {
            active_low: false,
            safe: PowerState::Off,
            min_off: MIN_OFF,
        };
        let mut ch = Channel::open(line(&mock), settings, t0).unwrap();
        ch.switch(PowerState::On, t0 + MIN_OFF).unwrap();
        ch.safe(t0 + MIN_OFF).unwrap();
        assert_eq!(ch.state(), PowerState::Off);
        std::mem::forget(ch);
        mock.done();
    }
}
