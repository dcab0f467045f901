//! USB hub port power through the kernel's `port<N>/disable` attribute (Linux ≥ 6.0):
//! `<sysfs>/bus/usb/devices/<hub>/<hub>:1.0/port<N>/disable`, `1` cuts the port's power and
//! `0` restores it. It only cuts Vbus on hubs that really switch per port.
//!
//! **Warning:** a Raspberry Pi 4's and Pi 5's own USB ports are ganged: switching one port
//! switches them all. [`ganged_warning`] says so when the hub is one of the Pi's own; per-board
//! USB power needs an external hub that switches per port.

use std::path::{Path, PathBuf};

use super::relay::Line;
use crate::hw::Error;

/// The `disable` attribute of `port` on `hub` (a USB device name such as `1-1` or `usb2`)
/// under the sysfs root `sysfs`.
pub fn disable_path(sysfs: &Path, hub: &str, port: u32) -> PathBuf {
    sysfs
        .join("bus/usb/devices")
        .join(hub)
        .join(format!("{hub}:1.0"))
        .join(format!("port{port}"))
        .join("disable")
}

/// Checks the names and that the attribute exists.
pub fn check(sysfs: &Path, hub: &str, port: u32) -> Result<PathBuf, String> {
    if hub.is_empty() || hub.contains('/') || hub.starts_with('.') {
        return Err(format!(
            "'{hub}' is not a USB hub device name (like 1-1 or usb2)"
        ));
    }
    let hub_dir = sysfs.join("bus/usb/devices").join(hub);
    if !hub_dir.exists() {
        return Err(format!(
            "no USB device '{hub}' ({} is missing)",
            hub_dir.display()
        ));
    }
    let path = disable_path(sysfs, hub, port);
    if !path.exists() {
        return Err(format!(
            "USB hub '{hub}' has no switchable port {port} ({} is missing; the kernel needs \
             to be 6.0 or later and the hub must have a port {port})",
            path.display()
        ));
    }
    Ok(path)
}

/// The warning for a hub whose ports are ganged (a Pi 4's or Pi 5's own), if it is one.
pub fn ganged_warning(sysfs: &Path, hub: &str) -> Option<String> {
    let model = std::fs::read_to_string(sysfs.join("firmware/devicetree/base/model")).ok()?;
    let model = model.trim_end_matches('\0');
    let pi = [
        "Raspberry Pi 4",
        "Raspberry Pi 5",
        "Raspberry Pi 500",
        "Compute Module 4",
    ]
    .iter()
    .any(|m| model.contains(m));
    // The Pi's own hubs: its root hubs and, on a Pi 4, the VL805's hub behind them.
    let own = hub.starts_with("usb") || matches!(hub, "1-1" | "2-1");
    (pi && own).then(|| {
        format!(
            "USB hub '{hub}' is the {model}'s own: its ports switch together, so switching one \
             board's port switches every board on it; use an external per-port switching hub"
        )
    })
}

/// One hub port as a power [`Line`]: high = powered.
#[derive(Debug, Clone)]
pub struct UsbPort {
    /// Its `disable` attribute.
    pub path: PathBuf,
}

impl Line for UsbPort {
    fn drive(&mut self, high: bool) -> Result<(), Error> {
        std::fs::write(&self.path, if high { "0" } else { "1" })
            .map_err(|e| Error::Config(format!("cannot write {}: {e}", self.path.display())))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hw::PowerState;
    use crate::hw::power::relay::{Channel, Settings};
    use std::time::{Duration, Instant};

    /// A fake sysfs tree with hub `hub` and ports 1..=ports; returns the root.
    pub(crate) fn fake_sysfs(dir: &Path, hub: &str, ports: u32) {
        for p in 1..=ports {
            let port = dir
                .join("bus/usb/devices")
                .join(hub)
                .join(format!("{hub}:1.0/port{p}"));
            std::fs::create_dir_all(&port).unwrap();
            std::fs::write(port.join("disable"), "0\n").unwrap();
        }
    }

    #[test]
    fn a_port_is_switched_through_its_disable_attribute() {
        let dir = tempfile::tempdir().unwrap();
        fake_sysfs(dir.path(), "1-1.3", 4);
        let path = check(dir.path(), "1-1.3", 2).unwrap();
        let now = Instant::now();
        let settings = Settings {
            min_off: Duration::ZERO,
            ..Settings::default()
        };
        let mut ch =
            Channel::open(Box::new(UsbPort { path: path.clone() }), settings, now).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1");
        ch.switch(PowerState::On, now).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0");
        drop(ch);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "1",
            "off when let go"
        );
        // Port 1 was never touched.
        let other = disable_path(dir.path(), "1-1.3", 1);
        assert_eq!(std::fs::read_to_string(other).unwrap(), "0\n");
    }

    #[test]
    fn wrong_hubs_and_ports_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        fake_sysfs(dir.path(), "1-1", 2);
        assert!(
            check(dir.path(), "1-1", 3)
                .unwrap_err()
                .contains("no switchable port 3")
        );
        assert!(
            check(dir.path(), "2-1", 1)
                .unwrap_err()
                .contains("no USB device '2-1'")
        );
        assert!(check(dir.path(), "../x", 1).is_err());
    }

    #[test]
    fn a_pi_4s_own_hub_earns_the_ganged_warning() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("firmware/devicetree/base");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("model"), "Raspberry Pi 4 Model B Rev 1.4\0").unwrap();
        let w = ganged_warning(dir.path(), "1-1").unwrap();
        assert!(w.contains("switch together"), "{w}");
        assert_eq!(ganged_warning(dir.path(), "1-1.2"), None);
    }
}
