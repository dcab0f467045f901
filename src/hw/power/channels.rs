//! The process's switched power channels: each line (GPIO line, expander output, USB port)
//! is opened once, on first use, and kept for the process's life, so it has one owner and
//! its state survives from job to job; [`Channels::shutdown`] writes every safe state when
//! the appliance stops. [`ChannelPower`] is a channel as a board's [`Power`], and
//! [`check`] is what the dictionary's add-time validation asks of this machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::i2c::{Expander, ExpanderLine};
use super::pdu::PduPower;
use super::relay::{Channel, Line, Settings};
use super::spec::{Backend, PowerSpec};
use super::{Power, PowerState, Transcript};
use crate::hw::{BoxFuture, Error};

/// Where the machine-dependent backends look, from the `[hw]` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// The sysfs root (default `/sys`; tests use a fake tree).
    pub sysfs: PathBuf,
    /// The pdudaemon a dictionary without `lavabox_pdu_url` talks to.
    pub pdu_url: String,
}

impl Default for Env {
    fn default() -> Env {
        Env {
            sysfs: PathBuf::from("/sys"),
            pdu_url: format!("http://127.0.0.1:{}", super::pdu::DEFAULT_PORT),
        }
    }
}

/// One open channel with its name.
#[derive(Debug)]
struct Open {
    what: String,
    channel: Arc<Mutex<Channel>>,
}

/// The open channels and expanders, by what they drive.
#[derive(Debug, Default)]
pub struct Channels {
    open: Mutex<BTreeMap<String, Open>>,
    expanders: Mutex<BTreeMap<ExpanderKey, Arc<Mutex<Expander>>>>,
}

/// An I2C expander is shared by every channel on it: one per bus and address.
type ExpanderKey = (PathBuf, u8);

impl std::fmt::Debug for Expander {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Expander")
    }
}

/// The process's channels.
pub static CHANNELS: LazyLock<Channels> = LazyLock::new(Channels::default);

/// A channel as listed by the admin commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// What it drives, e.g. `GPIO17 on /dev/gpiochip0 (pinctrl-rp1)`.
    pub what: String,
    /// Its state now.
    pub state: PowerState,
}

impl Channels {
    /// The channel `key` (opening it with `open` the first time).
    fn get(
        &self,
        key: String,
        what: String,
        settings: Settings,
        open: impl FnOnce(bool) -> Result<Box<dyn Line>, Error>,
    ) -> Result<(String, Arc<Mutex<Channel>>), Error> {
        let mut map = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(o) = map.get(&key) {
            return Ok((o.what.clone(), Arc::clone(&o.channel)));
        }
        let line = open(settings.level(settings.safe))?;
        let channel = Arc::new(Mutex::new(Channel::open(line, settings, Instant::now())?));
        tracing::info!(channel = %what, safe = ?settings.safe, "power channel opened");
        map.insert(
            key,
            Open {
                what: what.clone(),
                channel: Arc::clone(&channel),
            },
        );
        Ok((what, channel))
    }

    /// The [`Power`] of `spec` (whose machine resources [`check`] accepted).
    pub fn power(&self, spec: &PowerSpec, env: &Env) -> Result<Arc<dyn Power>, Error> {
        let settings = spec.settings;
        let (what, channel) = match &spec.backend {
            Backend::Gpio { line, chip } => {
                let found = super::gpio::find_line(line, chip.as_deref()).map_err(Error::Config)?;
                let what = format!("{line} on {} ({})", found.chip.display(), found.label);
                self.get(
                    format!("gpio:{}:{}", found.chip.display(), found.offset),
                    what.clone(),
                    settings,
                    |high| {
                        let pin = super::gpio::CdevPin::request(&found, high)?;
                        Ok(Box::new(super::relay::Pin { pin, what }))
                    },
                )?
            }
            Backend::Rpi { bcm } => self.rpi(*bcm, settings)?,
            Backend::I2c {
                bus,
                address,
                kind,
                channel,
            } => {
                let expander = {
                    let mut exps = self
                        .expanders
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    match exps.get(&(bus.clone(), *address)) {
                        Some(e) => Arc::clone(e),
                        None => {
                            let e = Arc::new(Mutex::new(Expander::new(
                                super::i2c::open_bus(bus)?,
                                bus.display().to_string(),
                                *address,
                                *kind,
                            )));
                            exps.insert((bus.clone(), *address), Arc::clone(&e));
                            e
                        }
                    }
                };
                let what = format!(
                    "{kind:?} {:#04x} output {channel} on {}",
                    address,
                    bus.display()
                );
                let bit = *channel;
                self.get(
                    format!("i2c:{}:{address}:{channel}", bus.display()),
                    what,
                    settings,
                    move |_| Ok(Box::new(ExpanderLine { expander, bit })),
                )?
            }
            Backend::UsbPort { hub, port } => {
                let path = super::usb_port::check(&env.sysfs, hub, *port).map_err(Error::Config)?;
                self.get(
                    format!("usb:{}", path.display()),
                    format!("USB hub {hub} port {port}"),
                    settings,
                    move |_| Ok(Box::new(super::usb_port::UsbPort { path })),
                )?
            }
            Backend::Pdudaemon { url, target, delay } => {
                let http = reqwest::Client::builder()
                    .build()
                    .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
                return Ok(Arc::new(PduPower {
                    url: url.clone().unwrap_or_else(|| env.pdu_url.clone()),
                    target: target.clone(),
                    delay: *delay,
                    min_off: settings.min_off,
                    http,
                }));
            }
        };
        Ok(Arc::new(ChannelPower { what, channel }))
    }

    #[cfg(feature = "rpi")]
    fn rpi(&self, bcm: u8, settings: Settings) -> Result<(String, Arc<Mutex<Channel>>), Error> {
        let what = format!("GPIO{bcm} (rppal)");
        self.get(format!("rpi:{bcm}"), what.clone(), settings, |high| {
            let pin = super::gpio::rppal_pin(bcm, high)?;
            Ok(Box::new(super::relay::Pin { pin, what }))
        })
    }

    #[cfg(not(feature = "rpi"))]
    fn rpi(&self, _bcm: u8, _settings: Settings) -> Result<(String, Arc<Mutex<Channel>>), Error> {
        Err(Error::Config(RPI_MISSING.into()))
    }

    /// Every open channel and its state.
    pub fn list(&self) -> Vec<Listed> {
        let map = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        map.values()
            .map(|o| Listed {
                what: o.what.clone(),
                state: o
                    .channel
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .state(),
            })
            .collect()
    }

    /// Writes every channel's safe state (the appliance is stopping).
    pub fn shutdown(&self) {
        let map = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for o in map.values() {
            let mut ch = o.channel.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = ch.safe(Instant::now()) {
                tracing::error!(channel = %o.what, error = %e, "cannot write the safe state");
            }
        }
    }
}

#[cfg(not(feature = "rpi"))]
const RPI_MISSING: &str = "lavabox_power: rpi needs lavabox built with the `rpi` feature; `gpio` (the GPIO character device) works on a Pi too";

/// What the dictionary's add-time check asks of this machine: the line, bus, hub port or
/// URL `spec` names must exist. Returns warnings to show (a Pi's ganged USB ports).
pub fn check(spec: &PowerSpec, env: &Env) -> Result<Vec<String>, String> {
    match &spec.backend {
        Backend::Gpio { line, chip } => {
            super::gpio::find_line(line, chip.as_deref()).map(|_| vec![])
        }
        Backend::Rpi { .. } => {
            #[cfg(feature = "rpi")]
            {
                Ok(vec![])
            }
            #[cfg(not(feature = "rpi"))]
            {
                Err(RPI_MISSING.into())
            }
        }
        Backend::I2c { bus, .. } => {
            if Path::new(bus).exists() {
                Ok(vec![])
            } else {
                Err(format!(
                    "no I2C bus {} (enable I2C: dtparam=i2c_arm=on in config.txt)",
                    bus.display()
                ))
            }
        }
        Backend::UsbPort { hub, port } => {
            super::usb_port::check(&env.sysfs, hub, *port)?;
            Ok(super::usb_port::ganged_warning(&env.sysfs, hub)
                .into_iter()
                .collect())
        }
        Backend::Pdudaemon { .. } => Ok(vec![]),
    }
}

/// A switched channel as a board's power.
#[derive(Debug)]
pub struct ChannelPower {
    what: String,
    channel: Arc<Mutex<Channel>>,
}

impl ChannelPower {
    fn lock(&self) -> std::sync::MutexGuard<'_, Channel> {
        self.channel.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state last written.
    pub fn state(&self) -> PowerState {
        self.lock().state()
    }
}

impl Power for ChannelPower {
    fn set<'a>(
        &'a self,
        state: PowerState,
        _timeout: Duration,
        out: &'a dyn Transcript,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let word = match state {
                PowerState::On => "on",
                PowerState::Off => "off",
            };
            out.command(&format!("power {word}: {}", self.what));
            loop {
                if state == PowerState::On {
                    let wait = self.lock().wait_before_on(Instant::now());
                    if !wait.is_zero() {
                        out.output(&format!(
                            "waiting {:.1} s for the minimum off-time",
                            wait.as_secs_f64()
                        ));
                        tokio::time::sleep(wait).await;
                    }
                }
                let channel = Arc::clone(&self.channel);
                let done = tokio::task::spawn_blocking(move || {
                    let mut ch = channel.lock().unwrap_or_else(PoisonError::into_inner);
                    if state == PowerState::On && !ch.wait_before_on(Instant::now()).is_zero() {
                        // Switched off again meanwhile: wait once more.
                        return None;
                    }
                    Some(ch.switch(state, Instant::now()))
                })
                .await
                .map_err(|e| Error::Config(format!("power switch task failed: {e}")))?;
                if let Some(done) = done {
                    return done;
                }
            }
        })
    }

    fn min_off_time(&self) -> Duration {
        self.lock().settings().min_off
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::power::Silent;
    use crate::hw::power::pdu::Target;

    #[tokio::test]
    async fn a_usb_port_channel_has_one_owner_and_keeps_its_off_time() {
        let dir = tempfile::tempdir().unwrap();
        crate::hw::power::usb_port::tests::fake_sysfs(dir.path(), "3-1", 2);
        let env = Env {
            sysfs: dir.path().to_owned(),
            ..Env::default()
        };
        let spec = PowerSpec {
            backend: Backend::UsbPort {
                hub: "3-1".into(),
                port: 2,
            },
            settings: Settings {
                min_off: Duration::from_millis(200),
                ..Settings::default()
            },
        };
        check(&spec, &env).unwrap();
        let channels = Channels::default();
        let a = channels.power(&spec, &env).unwrap();
        let b = channels.power(&spec, &env).unwrap();
        assert_eq!(channels.list().len(), 1, "one owner for the line");
        let file = dir.path().join("bus/usb/devices/3-1/3-1:1.0/port2/disable");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1");
        let t0 = Instant::now();
        a.set(PowerState::On, Duration::from_secs(1), &Silent)
            .await
            .unwrap();
        // The start-up off counts towards the off-time.
        assert!(
            t0.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "0");
        let t1 = Instant::now();
        b.cycle(Duration::from_secs(1), &Silent).await.unwrap();
        assert!(t1.elapsed() >= Duration::from_millis(200));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "0");
        channels.shutdown();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1");
        assert_eq!(channels.list()[0].state, PowerState::Off);
    }

    #[test]
    fn missing_machine_resources_are_refused_with_the_reason() {
        let env = Env {
            sysfs: "/nonexistent".into(),
            ..Env::default()
        };
        let spec = |backend| PowerSpec {
            backend,
            settings: Settings::default(),
        };
        let err = check(
            &spec(Backend::I2c {
                bus: "/dev/i2c-77".into(),
                address: 0x20,
                kind: super::super::i2c::Kind::Pcf8574,
                channel: 0,
            }),
            &env,
        )
        .unwrap_err();
        assert!(err.contains("no I2C bus /dev/i2c-77"), "{err}");
        let err = check(
            &spec(Backend::UsbPort {
                hub: "1-1".into(),
                port: 1,
            }),
            &env,
        )
        .unwrap_err();
        assert!(err.contains("no USB device '1-1'"), "{err}");
        if gpiocdev::chip::chips().unwrap_or_default().is_empty() {
            let err = check(
                &spec(Backend::Gpio {
                    line: "GPIO17".into(),
                    chip: None,
                }),
                &env,
            )
            .unwrap_err();
            assert!(err.contains("no GPIO line named 'GPIO17'"), "{err}");
        }
        let err = check(
            &spec(Backend::Gpio {
                line: "NO-SUCH-LINE-NAME".into(),
                chip: None,
            }),
            &env,
        )
        .unwrap_err();
        assert!(err.contains("NO-SUCH-LINE-NAME"), "{err}");
        assert!(
            check(
                &spec(Backend::Pdudaemon {
                    url: None,
                    target: Target::Alias("b".into()),
                    delay: None
                }),
                &env
            )
            .is_ok()
        );
    }
}
