//! The device-dictionary variables of ours that choose a native power backend, read from the
//! rendered device configuration (`base.jinja2` renders them under `lavabox_power:`).
//! Pure parsing: what exists on this machine is checked by [`super::channels::check`].
//!
//! | variable | backends | meaning |
//! |---|---|---|
//! | `lavabox_power` | — | `gpio`, `rpi`, `i2c`, `usb_port` or `pdudaemon`; unset: LAVA's power commands |
//! | `lavabox_gpio_line` | gpio, rpi | the line's name, e.g. `GPIO17` |
//! | `lavabox_gpio_chip` | gpio | only look on the chip with this label (`pinctrl-rp1`) or path |
//! | `lavabox_active_low` | gpio, rpi, i2c | the relay switches the board on when the line is low |
//! | `lavabox_safe_state` | gpio, rpi, i2c, usb_port | `off` (default) or `on`: written at start-up and shutdown |
//! | `lavabox_min_off_seconds` | all | minimum off-time before power-on (default 2; pdudaemon: its reboot delay) |
//! | `lavabox_i2c_bus` | i2c | `/dev/i2c-1` (default) |
//! | `lavabox_i2c_address` | i2c | the expander's address, `0x20` or 32 |
//! | `lavabox_i2c_expander` | i2c | `pcf8574`, `pcf8574a` or `mcp23017` |
//! | `lavabox_i2c_channel` | i2c | the relay's output, from 0 |
//! | `lavabox_usb_hub` | usb_port | the hub's USB device name, e.g. `1-1.3` |
//! | `lavabox_usb_port` | usb_port | the hub's port number, from 1 |
//! | `lavabox_pdu_url` | pdudaemon | `http://HOST:PORT` (default the appliance's own served API) |
//! | `lavabox_pdu_hostname`, `lavabox_pdu_port` | pdudaemon | the PDU's name and outlet |
//! | `lavabox_pdu_alias` | pdudaemon | or a pdudaemon alias instead |
//! | `lavabox_pdu_delay` | pdudaemon | seconds a reboot keeps the board off |

use std::path::PathBuf;
use std::time::Duration;

use serde_norway::Value;

use super::PowerState;
use super::i2c::Kind;
use super::pdu::Target;
use super::relay::Settings;

/// The key the templates render our variables under.
pub const KEY: &str = "lavabox_power";

/// A native backend, as the dictionary describes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// A GPIO character-device line, found by name.
    Gpio {
        /// Line name, e.g. `GPIO17`.
        line: String,
        /// Chip label or path restricting the search.
        chip: Option<String>,
    },
    /// A Raspberry Pi header line through rppal (feature `rpi`).
    Rpi {
        /// BCM number.
        bcm: u8,
    },
    /// A relay on an I2C port expander.
    I2c {
        /// `/dev/i2c-N`.
        bus: PathBuf,
        /// 7-bit address.
        address: u8,
        /// Which expander.
        kind: Kind,
        /// Output, from 0.
        channel: u8,
    },
    /// A USB hub port's power.
    UsbPort {
        /// Hub device name.
        hub: String,
        /// Port number.
        port: u32,
    },
    /// A pdudaemon outlet.
    Pdudaemon {
        /// Base URL, `None` for the appliance's own served API.
        url: Option<String>,
        /// The outlet.
        target: Target,
        /// Reboot delay.
        delay: Option<u32>,
    },
}

/// A dictionary's native power: the backend and its channel settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerSpec {
    /// The backend.
    pub backend: Backend,
    /// Active-low, safe state, minimum off-time.
    pub settings: Settings,
}

fn text(map: &Value, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn need(map: &Value, key: &str, backend: &str) -> Result<String, String> {
    text(map, key)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("lavabox_power: {backend} needs lavabox_{key}"))
}

fn number<T: std::str::FromStr>(s: &str, key: &str) -> Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("lavabox_{key}: '{s}' is not a valid number"))
}

fn flag(map: &Value, key: &str) -> Result<bool, String> {
    match text(map, key)
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("false" | "0" | "no" | "off" | "") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(other) => Err(format!("lavabox_{key}: '{other}' is not true or false")),
    }
}

/// An I2C address as `0x20`, `32` or `0o40`.
fn address(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let n = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    };
    match n {
        Some(a) if (0x03..=0x77).contains(&a) => Ok(a),
        _ => Err(format!(
            "lavabox_i2c_address: '{s}' is not a 7-bit I2C device address (0x03 to 0x77)"
        )),
    }
}

/// The native power the rendered configuration `raw` describes, `None` when the dictionary
/// sets no `lavabox_power` (LAVA's commands then). `default_min_off` applies when the
/// dictionary sets no `lavabox_min_off_seconds`.
pub fn parse(raw: &Value, default_min_off: Duration) -> Result<Option<PowerSpec>, String> {
    let Some(map) = raw.get(KEY) else {
        return Ok(None);
    };
    if !map.is_mapping() {
        return Err("lavabox_power: expected the variables of base.jinja2".into());
    }
    let Some(name) = text(map, "backend").filter(|b| !b.is_empty()) else {
        return Ok(None);
    };
    let min_off = match text(map, "min_off_seconds") {
        None => default_min_off,
        Some(s) => {
            let secs: f64 = number(&s, "min_off_seconds")?;
            if !(0.0..=600.0).contains(&secs) {
                return Err(format!(
                    "lavabox_min_off_seconds: {s} is outside 0 to 600 seconds"
                ));
            }
            Duration::from_secs_f64(secs)
        }
    };
    let safe = match text(map, "safe_state").as_deref() {
        None | Some("off") => PowerState::Off,
        Some("on") => PowerState::On,
        Some(other) => {
            return Err(format!("lavabox_safe_state: '{other}' is not on or off"));
        }
    };
    let settings = Settings {
        active_low: flag(map, "active_low")?,
        safe,
        min_off,
    };
    let backend = match name.as_str() {
        "gpio" => Backend::Gpio {
            line: need(map, "gpio_line", "gpio")?,
            chip: text(map, "gpio_chip").filter(|c| !c.is_empty()),
        },
        "rpi" => Backend::Rpi {
            bcm: super::gpio::bcm_number(&need(map, "gpio_line", "rpi")?)
                .map_err(|e| format!("lavabox_gpio_line: {e}"))?,
        },
        "i2c" => {
            let kind = Kind::parse(&need(map, "i2c_expander", "i2c")?)
                .map_err(|e| format!("lavabox_i2c_expander: {e}"))?;
            let channel: u8 = number(&need(map, "i2c_channel", "i2c")?, "i2c_channel")?;
            if channel >= kind.channels() {
                return Err(format!(
                    "lavabox_i2c_channel: {channel} is beyond the expander's {} outputs (0 to {})",
                    kind.channels(),
                    kind.channels() - 1
                ));
            }
            Backend::I2c {
                bus: text(map, "i2c_bus")
                    .unwrap_or_else(|| "/dev/i2c-1".into())
                    .into(),
                address: address(&need(map, "i2c_address", "i2c")?)?,
                kind,
                channel,
            }
        }
        "usb_port" => Backend::UsbPort {
            hub: need(map, "usb_hub", "usb_port")?,
            port: number(&need(map, "usb_port", "usb_port")?, "usb_port")?,
        },
        "pdudaemon" => {
            let url = text(map, "pdu_url").filter(|u| !u.is_empty());
            if let Some(u) = &url {
                super::pdu::check_url(u).map_err(|e| format!("lavabox_pdu_url: {e}"))?;
            }
            let target = match (text(map, "pdu_alias"), text(map, "pdu_hostname")) {
                (Some(alias), None) if !alias.is_empty() => Target::Alias(alias),
                (None, Some(hostname)) if !hostname.is_empty() => Target::Port {
                    hostname,
                    port: need(map, "pdu_port", "pdudaemon")?,
                },
                (Some(_), Some(_)) => {
                    return Err(
                        "lavabox_power: pdudaemon takes lavabox_pdu_alias or lavabox_pdu_hostname, not both"
                            .into(),
                    );
                }
                _ => {
                    return Err(
                        "lavabox_power: pdudaemon needs lavabox_pdu_hostname and lavabox_pdu_port, or lavabox_pdu_alias"
                            .into(),
                    );
                }
            };
            let delay = text(map, "pdu_delay")
                .map(|d| number(&d, "pdu_delay"))
                .transpose()?;
            Backend::Pdudaemon { url, target, delay }
        }
        other => {
            return Err(format!(
                "lavabox_power: unknown backend '{other}' (known: gpio, rpi, i2c, usb_port, pdudaemon)"
            ));
        }
    };
    Ok(Some(PowerSpec { backend, settings }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devicetype::Templates;

    fn spec(sets: &str) -> Result<Option<PowerSpec>, String> {
        let dict = format!("{{% extends 'qemu-uboot-arm.jinja2' %}}\n{sets}");
        let cfg = Templates::builtin()
            .render(&dict, &serde_json::Map::new())
            .unwrap()
            .config;
        parse(&cfg.raw, Duration::from_secs(2))
    }

    #[test]
    fn no_lavabox_power_is_lavas_commands() {
        assert_eq!(spec("{% set power_on_command = 'x' %}\n"), Ok(None));
    }

    #[test]
    fn the_dictionary_variables_choose_and_describe_a_backend() {
        let s = spec(
            "{% set lavabox_power = 'gpio' %}\n{% set lavabox_gpio_line = 'GPIO17' %}\n\
             {% set lavabox_active_low = true %}\n{% set lavabox_min_off_seconds = 3.5 %}\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            s.backend,
            Backend::Gpio {
                line: "GPIO17".into(),
                chip: None
            }
        );
        assert!(s.settings.active_low);
        assert_eq!(s.settings.safe, PowerState::Off);
        assert_eq!(s.settings.min_off, Duration::from_millis(3500));

        let s = spec(
            "{% set lavabox_power = 'i2c' %}\n{% set lavabox_i2c_expander = 'mcp23017' %}\n\
             {% set lavabox_i2c_address = '0x21' %}\n{% set lavabox_i2c_channel = 15 %}\n\
             {% set lavabox_safe_state = 'on' %}\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            s.backend,
            Backend::I2c {
                bus: "/dev/i2c-1".into(),
                address: 0x21,
                kind: Kind::Mcp23017,
                channel: 15
            }
        );
        assert_eq!(s.settings.safe, PowerState::On);
        assert_eq!(s.settings.min_off, Duration::from_secs(2));

        let s = spec(
            "{% set lavabox_power = 'pdudaemon' %}\n{% set lavabox_pdu_hostname = 'pdu1' %}\n\
             {% set lavabox_pdu_port = 3 %}\n{% set lavabox_pdu_url = 'http://pdu.lab:16421' %}\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            s.backend,
            Backend::Pdudaemon {
                url: Some("http://pdu.lab:16421".into()),
                target: Target::Port {
                    hostname: "pdu1".into(),
                    port: "3".into()
                },
                delay: None
            }
        );
    }

    #[test]
    fn wrong_values_are_refused_with_the_reason() {
        let cases = [
            (
                "{% set lavabox_power = 'relay' %}",
                "unknown backend 'relay'",
            ),
            (
                "{% set lavabox_power = 'gpio' %}",
                "needs lavabox_gpio_line",
            ),
            (
                "{% set lavabox_power = 'rpi' %}{% set lavabox_gpio_line = 'GPIO77' %}",
                "not a Raspberry Pi GPIO",
            ),
            (
                "{% set lavabox_power = 'i2c' %}{% set lavabox_i2c_expander = 'pcf8574' %}{% set lavabox_i2c_address = '0x20' %}{% set lavabox_i2c_channel = 8 %}",
                "beyond the expander's 8 outputs",
            ),
            (
                "{% set lavabox_power = 'i2c' %}{% set lavabox_i2c_expander = 'pcf8574' %}{% set lavabox_i2c_address = '0x99' %}{% set lavabox_i2c_channel = 1 %}",
                "not a 7-bit I2C device address",
            ),
            (
                "{% set lavabox_power = 'pdudaemon' %}{% set lavabox_pdu_hostname = 'pdu1' %}",
                "needs lavabox_pdu_port",
            ),
            (
                "{% set lavabox_power = 'pdudaemon' %}{% set lavabox_pdu_alias = 'b' %}{% set lavabox_pdu_url = 'ftp://x' %}",
                "must start with http://",
            ),
            (
                "{% set lavabox_power = 'usb_port' %}{% set lavabox_usb_hub = '1-1' %}{% set lavabox_usb_port = 'two' %}",
                "'two' is not a valid number",
            ),
            (
                "{% set lavabox_power = 'gpio' %}{% set lavabox_gpio_line = 'GPIO1' %}{% set lavabox_safe_state = 'maybe' %}",
                "not on or off",
            ),
        ];
        for (sets, want) in cases {
            let err = spec(sets).unwrap_err();
            assert!(err.contains(want), "{sets}: {err}");
        }
    }
}
