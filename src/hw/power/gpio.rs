//! GPIO relay lines: the kernel's GPIO character device through gpiocdev (uAPI v2, any
//! Linux board), and rppal on a Raspberry Pi (cargo feature `rpi`). Both end as an
//! embedded-hal [`OutputPin`] under [`super::relay::Pin`], so the relay logic is the same.
//!
//! Lines are found by **name** (`GPIO17`), optionally only on the chip with a given label
//! (`pinctrl-rp1`, `pinctrl-bcm2711`), never by chip number: the Pi 5's kernel moved its
//! header chip from `gpiochip4` to `gpiochip0`. The line request is held for the process's
//! life ([`super::channels::Channels`]): once its file descriptor closes, the kernel may let
//! the line float back to its default.

use std::path::PathBuf;

use embedded_hal::digital::{ErrorKind, ErrorType, OutputPin};
use gpiocdev::line::Value;

use crate::hw::Error;

/// Where a named line is: the chip's path and label and the line's offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLine {
    /// `/dev/gpiochipN`.
    pub chip: PathBuf,
    /// The chip's label, e.g. `pinctrl-rp1`.
    pub label: String,
    /// The line's offset on the chip.
    pub offset: u32,
}

/// Finds the line named `name`, only on the chip labelled `chip` if given (a chip's path,
/// such as `/dev/gpiochip0`, is accepted as well). Errors name what was looked at.
pub fn find_line(name: &str, chip: Option<&str>) -> Result<FoundLine, String> {
    let chips = gpiocdev::chip::chips().unwrap_or_default();
    if chips.is_empty() {
        return Err(format!(
            "no GPIO line named '{name}': this machine has no GPIO character device (/dev/gpiochip*)"
        ));
    }
    let mut labels = Vec::new();
    let mut found = Vec::new();
    for path in chips {
        let Ok(c) = gpiocdev::chip::Chip::from_path(&path) else {
            continue;
        };
        let Ok(info) = c.info() else { continue };
        labels.push(format!("{} ({})", path.display(), info.label));
        if let Some(want) = chip
            && want != info.label
            && std::path::Path::new(want) != path
        {
            continue;
        }
        let Ok(lines) = c.line_info_iter() else {
            continue;
        };
        for line in lines.flatten() {
            if line.name == name {
                found.push(FoundLine {
                    chip: path.clone(),
                    label: info.label.clone(),
                    offset: line.offset,
                });
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(match chip {
            Some(c) => format!(
                "no GPIO line named '{name}' on chip '{c}' (chips: {})",
                labels.join(", ")
            ),
            None => format!("no GPIO line named '{name}' (chips: {})", labels.join(", ")),
        }),
        _ => Err(format!(
            "GPIO line name '{name}' is on several chips ({}): set lavabox_gpio_chip to one label",
            found
                .iter()
                .map(|f| f.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// One requested gpiocdev output line as an embedded-hal [`OutputPin`].
#[derive(Debug)]
pub struct CdevPin {
    request: gpiocdev::Request,
    offset: u32,
}

/// A gpiocdev failure as embedded-hal sees it.
#[derive(Debug)]
pub struct CdevError(pub gpiocdev::Error);

impl embedded_hal::digital::Error for CdevError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl ErrorType for CdevPin {
    type Error = CdevError;
}

impl OutputPin for CdevPin {
    fn set_low(&mut self) -> Result<(), CdevError> {
        self.request
            .set_value(self.offset, Value::Inactive)
            .map_err(CdevError)
    }
    fn set_high(&mut self) -> Result<(), CdevError> {
        self.request
            .set_value(self.offset, Value::Active)
            .map_err(CdevError)
    }
}

impl CdevPin {
    /// Requests `line` as an output already at `high`, so it never glitches to the other
    /// level (the relay logic writes the same level again right after).
    pub fn request(line: &FoundLine, high: bool) -> Result<CdevPin, Error> {
        let request = gpiocdev::Request::builder()
            .on_chip(&line.chip)
            .with_consumer("lavabox")
            .with_line(line.offset)
            .as_output(if high { Value::Active } else { Value::Inactive })
            .request()
            .map_err(|e| {
                Error::Config(format!(
                    "cannot request GPIO line {} of {}: {e}",
                    line.offset,
                    line.chip.display()
                ))
            })?;
        Ok(CdevPin {
            request,
            offset: line.offset,
        })
    }
}

/// The BCM number of a Pi header line name: `GPIO17`, `BCM17` or `17`.
pub fn bcm_number(name: &str) -> Result<u8, String> {
    let digits = name
        .strip_prefix("GPIO")
        .or_else(|| name.strip_prefix("BCM"))
        .unwrap_or(name);
    match digits.parse::<u8>() {
        Ok(n) if n <= 53 => Ok(n),
        _ => Err(format!(
            "'{name}' is not a Raspberry Pi GPIO (GPIO0 to GPIO27 on the header, at most GPIO53)"
        )),
    }
}

/// The Pi's line `bcm` through rppal, as an output already at `high`.
#[cfg(feature = "rpi")]
pub fn rppal_pin(bcm: u8, high: bool) -> Result<rppal::gpio::OutputPin, Error> {
    let gpio = rppal::gpio::Gpio::new()
        .map_err(|e| Error::Config(format!("cannot open the Raspberry Pi's GPIO: {e}")))?;
    let pin = gpio
        .get(bcm)
        .map_err(|e| Error::Config(format!("cannot take GPIO{bcm}: {e}")))?;
    let mut pin = if high {
        pin.into_output_high()
    } else {
        pin.into_output_low()
    };
    // The relay logic writes the safe state itself when it lets go.
    pin.set_reset_on_drop(false);
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pi_line_names_map_to_bcm_numbers() {
        assert_eq!(bcm_number("GPIO17"), Ok(17));
        assert_eq!(bcm_number("BCM4"), Ok(4));
        assert_eq!(bcm_number("27"), Ok(27));
        assert!(bcm_number("GPIO99").unwrap_err().contains("GPIO99"));
        assert!(bcm_number("PA7").is_err());
    }

    /// The gpiocdev backend against the kernel's gpio-sim. It needs configfs and the gpio-sim
    /// driver; without them (this machine's kernel has neither) it says so and passes.
    #[test]
    fn gpiocdev_against_gpio_sim_where_the_kernel_offers_it() {
        if !std::path::Path::new("/sys/kernel/config/gpio-sim").is_dir() {
            eprintln!(
                "SKIPPED: the kernel offers no gpio-sim (no /sys/kernel/config/gpio-sim); \
                 the gpiocdev backend is tested on a kernel with CONFIG_GPIO_SIM"
            );
            return;
        }
        let sim = gpio_sim::Sim::new("lavabox-test", &["GPIO17"]).expect("gpio-sim bank");
        let line = find_line("GPIO17", None).expect("the simulated line is found by name");
        assert_eq!(line.chip, sim.chip);
        let mut pin = CdevPin::request(&line, false).unwrap();
        assert_eq!(sim.level(0), Some(false));
        pin.set_high().unwrap();
        assert_eq!(sim.level(0), Some(true));
        assert!(find_line("GPIO99", None).unwrap_err().contains("GPIO99"));
    }

    /// Opt-in suite on a real Pi: `LAVABOX_PI_GPIO=GPIO17 cargo test --lib hw::power::gpio`
    /// with nothing but a relay (or nothing) on that line.
    #[test]
    fn real_pi_line_when_asked() {
        let Ok(name) = std::env::var("LAVABOX_PI_GPIO") else {
            eprintln!("SKIPPED: set LAVABOX_PI_GPIO=GPIO17 on a Raspberry Pi to run this");
            return;
        };
        let line = find_line(&name, None).expect("the header line is found by name");
        let mut pin = CdevPin::request(&line, false).unwrap();
        pin.set_high().unwrap();
        pin.set_low().unwrap();
    }

    /// A gpio-sim bank made through configfs (root only), removed when dropped.
    mod gpio_sim {
        use std::fs;
        use std::path::PathBuf;

        pub struct Sim {
            dir: PathBuf,
            pub chip: PathBuf,
        }

        impl Sim {
            pub fn new(name: &str, lines: &[&str]) -> std::io::Result<Sim> {
                let dir = PathBuf::from("/sys/kernel/config/gpio-sim").join(name);
                let bank = dir.join("bank0");
                fs::create_dir_all(&bank)?;
                fs::write(bank.join("num_lines"), lines.len().to_string())?;
                for (i, l) in lines.iter().enumerate() {
                    let d = bank.join(format!("line{i}"));
                    fs::create_dir_all(&d)?;
                    fs::write(d.join("name"), l)?;
                }
                fs::write(dir.join("live"), "1")?;
                let chip_name = fs::read_to_string(bank.join("chip_name"))?;
                Ok(Sim {
                    chip: PathBuf::from("/dev").join(chip_name.trim()),
                    dir,
                })
            }

            /// The level the simulated line is driven to.
            pub fn level(&self, offset: u32) -> Option<bool> {
                let name = fs::read_to_string(self.dir.join("bank0/chip_name")).ok()?;
                let dev = fs::read_to_string(self.dir.join("dev_name")).ok()?;
                let path = format!(
                    "/sys/devices/platform/{}/{}/sim_gpio{offset}/value",
                    dev.trim(),
                    name.trim()
                );
                Some(fs::read_to_string(path).ok()?.trim() == "1")
            }
        }

        impl Drop for Sim {
            fn drop(&mut self) {
                let _ = fs::write(self.dir.join("live"), "0");
                let bank = self.dir.join("bank0");
                if let Ok(entries) = fs::read_dir(&bank) {
                    for e in entries.flatten() {
                        if e.path().is_dir() {
                            let _ = fs::remove_dir(e.path());
                        }
                    }
                }
                let _ = fs::remove_dir(&bank);
                let _ = fs::remove_dir(&self.dir);
            }
        }
    }
}
