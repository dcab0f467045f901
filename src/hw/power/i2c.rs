//! I2C relay HATs: a port expander (PCF8574/PCF8574A, MCP23017) driving the relays, over
//! embedded-hal's [`I2c`] (linux-embedded-hal's `I2cdev` on `/dev/i2c-N`, a mock in tests).
//!
//! One [`Expander`] per bus and address keeps a shadow of its output register, so switching
//! one channel never disturbs the others; each channel is an [`ExpanderLine`]. The safe level
//! goes to the output latch *before* a pin is made an output (MCP23017), and a PCF8574's
//! untouched bits stay at its power-on high.

use std::sync::{Arc, Mutex, PoisonError};

use embedded_hal::i2c::I2c;

use super::relay::Line;
use crate::hw::Error;

/// Which expander a HAT carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PCF8574 / PCF8574A: 8 quasi-bidirectional pins, one byte written is the port.
    Pcf8574,
    /// MCP23017: 16 pins, IODIR and OLAT registers (BANK = 0).
    Mcp23017,
}

impl Kind {
    /// Parses a dictionary's `lavabox_i2c_expander`.
    pub fn parse(name: &str) -> Result<Kind, String> {
        match name.to_ascii_lowercase().as_str() {
            "pcf8574" | "pcf8574a" => Ok(Kind::Pcf8574),
            "mcp23017" => Ok(Kind::Mcp23017),
            _ => Err(format!(
                "unknown I2C expander '{name}' (known: pcf8574, pcf8574a, mcp23017)"
            )),
        }
    }

    /// How many channels it has.
    pub fn channels(self) -> u8 {
        match self {
            Kind::Pcf8574 => 8,
            Kind::Mcp23017 => 16,
        }
    }
}

const MCP_IODIRA: u8 = 0x00;
const MCP_OLATA: u8 = 0x14;

/// A type-erased I2C bus, so every expander is one type.
pub trait Bus: Send + 'static {
    /// Writes `bytes` to `address`.
    fn write(&mut self, address: u8, bytes: &[u8]) -> Result<(), String>;
}

impl<T: I2c + Send + 'static> Bus for T {
    fn write(&mut self, address: u8, bytes: &[u8]) -> Result<(), String> {
        I2c::write(self, address, bytes).map_err(|e| format!("{e:?}"))
    }
}

/// One expander chip: the bus, its address and the shadow registers.
pub struct Expander {
    bus: Box<dyn Bus>,
    what: String,
    address: u8,
    kind: Kind,
    /// Output latch as last written (power-on defaults: PCF8574 all high, MCP23017 all low).
    out: u16,
    /// MCP23017 direction register (1 = input, the power-on default).
    dir: u16,
}

impl Expander {
    /// An expander at `address` on `bus`; nothing is written until a channel opens.
    pub fn new(bus: Box<dyn Bus>, what: String, address: u8, kind: Kind) -> Expander {
        Expander {
            bus,
            what,
            address,
            kind,
            out: match kind {
                Kind::Pcf8574 => 0xff,
                Kind::Mcp23017 => 0,
            },
            dir: 0xffff,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.bus.write(self.address, bytes).map_err(|e| {
            Error::Config(format!(
                "I2C write to {} at {:#04x} failed: {e}",
                self.what, self.address
            ))
        })
    }

    /// Sets channel `bit` to `high` (and makes it an output).
    fn set(&mut self, bit: u8, high: bool) -> Result<(), Error> {
        let mask = 1u16 << bit;
        let out = if high {
            self.out | mask
        } else {
            self.out & !mask
        };
        match self.kind {
            Kind::Pcf8574 => self.write(&[out as u8])?,
            Kind::Mcp23017 => {
                let [lo, hi] = out.to_le_bytes();
                self.write(&[MCP_OLATA, lo, hi])?;
                if self.dir & mask != 0 {
                    let dir = self.dir & !mask;
                    let [lo, hi] = dir.to_le_bytes();
                    self.write(&[MCP_IODIRA, lo, hi])?;
                    self.dir = dir;
                }
            }
        }
        self.out = out;
        Ok(())
    }
}

/// One channel of a shared [`Expander`] as a relay [`Line`].
pub struct ExpanderLine {
    /// The expander.
    pub expander: Arc<Mutex<Expander>>,
    /// The channel, from 0.
    pub bit: u8,
}

impl Line for ExpanderLine {
    fn drive(&mut self, high: bool) -> Result<(), Error> {
        self.expander
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set(self.bit, high)
    }
}

/// Opens `/dev/i2c-N` as a [`Bus`].
pub fn open_bus(path: &std::path::Path) -> Result<Box<dyn Bus>, Error> {
    let dev = linux_embedded_hal::I2cdev::new(path)
        .map_err(|e| Error::Config(format!("cannot open I2C bus {}: {e}", path.display())))?;
    Ok(Box::new(dev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::PowerState;
    use crate::hw::power::relay::{Channel, Settings};
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
    use std::time::{Duration, Instant};

    fn expander(mock: &Mock, kind: Kind) -> Arc<Mutex<Expander>> {
        Arc::new(Mutex::new(Expander::new(
            Box::new(mock.clone()),
            "/dev/i2c-1".into(),
            0x20,
            kind,
        )))
    }

    #[test]
    fn an_active_low_pcf8574_hat_switches_one_bit_and_keeps_the_others() {
        let mut mock = Mock::new(&[
            // Channel 2 opens off (active-low: high) — the power-on pattern stays.
            Transaction::write(0x20, vec![0xff]),
            // Channel 5 opens off too.
            Transaction::write(0x20, vec![0xff]),
            // Channel 2 on: its bit goes low, the others stay high.
            Transaction::write(0x20, vec![0xfb]),
            // Channel 5 on.
            Transaction::write(0x20, vec![0xdb]),
            // Channel 2 off.
            Transaction::write(0x20, vec![0xdf]),
        ]);
        let exp = expander(&mock, Kind::Pcf8574);
        let settings = Settings {
            active_low: true,
            safe: PowerState::Off,
            min_off: Duration::ZERO,
        };
        let now = Instant::now();
        let line = |bit| {
            Box::new(ExpanderLine {
                expander: Arc::clone(&exp),
                bit,
            })
        };
        let mut two = Channel::open(line(2), settings, now).unwrap();
        let mut five = Channel::open(line(5), settings, now).unwrap();
        two.switch(PowerState::On, now).unwrap();
        five.switch(PowerState::On, now).unwrap();
        two.switch(PowerState::Off, now).unwrap();
        std::mem::forget((two, five));
        mock.done();
    }

    #[test]
    fn an_mcp23017_latches_the_safe_level_before_the_pin_becomes_an_output() {
        let mut mock = Mock::new(&[
            // Channel 9 off (active-high: low): OLAT first, then IODIR with bit 9 cleared.
            Transaction::write(0x20, vec![MCP_OLATA, 0x00, 0x00]),
            Transaction::write(0x20, vec![MCP_IODIRA, 0xff, 0xfd]),
            // On: only OLAT changes.
            Transaction::write(0x20, vec![MCP_OLATA, 0x00, 0x02]),
        ]);
        let exp = expander(&mock, Kind::Mcp23017);
        let settings = Settings {
            active_low: false,
            safe: PowerState::Off,
            min_off: Duration::ZERO,
        };
        let now = Instant::now();
        let mut ch = Channel::open(
            Box::new(ExpanderLine {
                expander: exp,
                bit: 9,
            }),
            settings,
            now,
        )
        .unwrap();
        ch.switch(PowerState::On, now).unwrap();
        std::mem::forget(ch);
        mock.done();
    }

    #[test]
    fn expander_names_are_checked() {
        assert_eq!(Kind::parse("PCF8574A"), Ok(Kind::Pcf8574));
        assert!(Kind::parse("pca9999").unwrap_err().contains("pca9999"));
        assert_eq!(Kind::Mcp23017.channels(), 16);
    }
}
