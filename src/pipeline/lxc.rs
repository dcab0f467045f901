//! `deploy: {to: lxc}` and `boot: {method: lxc}`: the `lava-lxc` protocol's container
//! (LAVA's `lxc-deploy` and `lxc-boot` trees).

use super::step::{self, LxcBootWork, LxcDeployWork, Pattern};
use super::{Error, Node, Resolver, Work, overlay_node, renumber};
use crate::devicetype::DeviceConfig;
use crate::devicetype::InfoEntry;
use crate::hw::lxc::DeviceMatch;
use crate::jobdef::action::test::TestDefinition;
use crate::jobdef::protocol::Lxc;
use crate::jobdef::yaml;

/// The job's lava-lxc protocol, or the Job error a deploy or boot to lxc without one is.
fn protocol(r: &Resolver<'_>, what: &str) -> Result<Lxc, Error> {
    match r.job.protocols.lxc_protocol() {
        None => Err(Error::job(format!(
            "{what} needs the lava-lxc protocol (protocols.lava-lxc)"
        ))),
        Some(Err(e)) => Err(Error::job(e)),
        Some(Ok(p)) => Ok(p),
    }
}

/// The devices of `device_info`/`static_info` entries.
pub(super) fn device_matches(entries: &[InfoEntry]) -> Vec<DeviceMatch> {
    let get = |e: &InfoEntry, k: &str| e.get(k).filter(|v| !v.is_empty()).cloned();
    entries
        .iter()
        .map(|e| DeviceMatch {
            board_id: get(e, "board_id"),
            usb_vendor_id: get(e, "usb_vendor_id"),
            usb_product_id: get(e, "usb_product_id"),
            usb_serial_driver: get(e, "usb_serial_driver"),
            fs_label: get(e, "fs_label"),
        })
        .filter(|d| d != &DeviceMatch::default())
        .collect()
}

fn packages(params: &yaml::Node) -> Vec<String> {
    params
        .get("packages")
        .and_then(yaml::Node::as_seq)
        .map(|s| {
            s.iter()
                .filter_map(|p| p.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn deploy(
    r: &Resolver<'_>,
    index: usize,
    params: &yaml::Node,
    device: &DeviceConfig,
    overlay: Option<&[&TestDefinition]>,
) -> Result<(Node, Work), Error> {
    let protocol = protocol(r, "deploy to lxc")?;
    let packages = packages(params);
    let mut children: Vec<(&str, &[&str])> = vec![
        ("lxc-create-action", &[]),
        ("lxc-create-udev-rule-action", &[]),
        ("lxc-start", &[]),
    ];
    if !packages.is_empty() {
        children.push(("lxc-apt-update", &[]));
        children.push(("lxc-apt-install", &[]));
    }
    children.push(("apply-lxc-overlay", &[]));
    let mut root = r.tree(index, "lxc-deploy", &children);
    if let Some(defs) = overlay {
        let at = root.children.len() - 1;
        root.children
            .insert(at, overlay_node(r, defs, root.timeout));
        renumber(&mut root, &(index + 1).to_string());
    }
    let apt = if packages.is_empty() {
        None
    } else {
        Some((
            step::node(&root, "lxc-apt-update")?,
            step::node(&root, "lxc-apt-install")?,
        ))
    };
    let work = LxcDeployWork {
        protocol,
        packages,
        devices: device_matches(&device.device_info),
        overlay: overlay.is_some(),
        create: step::node(&root, "lxc-create-action")?,
        udev: step::node(&root, "lxc-create-udev-rule-action")?,
        start: step::node(&root, "lxc-start")?,
        apt,
    };
    Ok((root, Work::LxcDeploy(Box::new(work))))
}

pub(super) fn boot(
    r: &Resolver<'_>,
    index: usize,
    params: &yaml::Node,
    device: &DeviceConfig,
) -> Result<(Node, Work), Error> {
    let protocol = protocol(r, "boot method lxc")?;
    let prompts = params
        .get("prompts")
        .map(|p| match p.as_seq() {
            Some(seq) => seq.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>(),
            None => p.as_str().into_iter().collect(),
        })
        .unwrap_or_default()
        .into_iter()
        .map(|p| Pattern::regex("prompts", p))
        .collect::<Result<Vec<_>, _>>()?;
    if prompts.is_empty() {
        return Err(Error::job("boot method lxc needs prompts"));
    }
    let root = r.tree(
        index,
        "lxc-boot",
        &[
            ("lxc-start", &[]),
            ("lxc-add-static", &[]),
            ("connect-lxc", &[]),
            ("expect-shell-connection", &[]),
            ("export-device-env", &[]),
        ],
    );
    let mut devices = device_matches(&device.device_info);
    devices.extend(device_matches(&device.static_info));
    let work = LxcBootWork {
        protocol,
        start: step::node(&root, "lxc-start")?,
        devices,
        connect: step::node(&root, "connect-lxc")?,
        prompts,
    };
    Ok((root, Work::LxcBoot(Box::new(work))))
}
