//! `boot: {method: u-boot}`: reset the board, stop autoboot, type the boot commands with the
//! deployed files' paths and the device's load addresses substituted, then log in. `boot:
//! {method: bootloader, bootloader: u-boot}` does the same and stays at U-Boot's prompt.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::substitute;
use crate::devicetype::KernelType;
use crate::dispatcher::JobError;
use crate::dispatcher::job::{JobCtx, wait_error};
use crate::dispatcher::lava_suite::ActionResult;
use crate::model::ErrorType;
use crate::pipeline::step::{Pattern, UBootWork};

/// Boots the board through U-Boot.
pub(in crate::dispatcher) async fn run(
    ctx: &mut JobCtx<'_>,
    work: &UBootWork,
    namespace: Option<&str>,
) -> Result<(), JobError> {
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    values.insert("SERVER_IP", ctx.dispatcher.config.server_ip.to_string());
    for (k, v) in &ctx.tftp_files {
        values.insert(k, v.clone());
    }
    let kind = ctx
        .kernel_type
        .map(|k| k.as_str())
        .and_then(KernelType::from_job)
        .unwrap_or(KernelType::Zimage);
    let overlay_started = Instant::now();
    let addresses = ctx.device.parameters.addresses(kind);
    if let Some(addr) = addresses {
        values.insert("KERNEL_ADDR", addr.kernel.clone());
        values.insert("RAMDISK_ADDR", addr.ramdisk.clone());
        values.insert("DTB_ADDR", addr.dtb.clone());
        if let Some(tee) = &addr.tee {
            values.insert("TEE_ADDR", tee.clone());
        }
        let ramdisk = if ctx.tftp_files.contains_key("RAMDISK") {
            addr.ramdisk.clone()
        } else {
            "-".into()
        };
        values.insert(
            "BOOTX",
            format!(
                "{} {} {} {}",
                kind.boot_command(),
                addr.kernel,
                ramdisk,
                addr.dtb
            ),
        );
    }
    let commands: Vec<String> = work
        .commands
        .iter()
        .filter_map(|c| {
            let s = substitute(c, &values);
            if s.is_none() {
                ctx.log
                    .debug(format!("dropping '{c}': a placeholder has no value"));
            }
            s
        })
        .collect();

    if let Some(addr) = addresses {
        // LAVA's `bootloader-overlay` reports the addresses it substituted.
        let done = ActionResult::new(
            "bootloader-overlay",
            work.overlay.level.clone(),
            namespace,
            overlay_started.elapsed(),
        )
        .with("kernel_addr", addr.kernel.as_str())
        .with("dtb_addr", addr.dtb.as_str())
        .with("ramdisk_addr", addr.ramdisk.as_str())
        .with("tee_addr", addr.tee.as_deref());
        ctx.record_action(done).await;
    }
    ctx.connect().await?;
    ctx.reset(&work.reset, namespace).await?;
    let int_node = &work.interrupt_node;
    let cmd_node = &work.commands_node;
    let prompt = work.prompt.get().clone();
    let conn = ctx.conn()?;
    if let Some(int) = &work.interrupt {
        let err = wait_error("bootloader-interrupt", int_node.connection_timeout);
        conn.expect(&[int.prompt.get().clone()], int_node.connection_timeout)
            .await
            .map_err(&err)?;
        if int.newline {
            conn.sendline(&int.text).await.map_err(&err)?;
        } else {
            conn.send(&int.text).await.map_err(&err)?;
        }
        conn.expect(std::slice::from_ref(&prompt), int_node.connection_timeout)
            .await
            .map_err(&err)?;
    }
    let err = wait_error("bootloader-commands", cmd_node.connection_timeout);
    let mut patterns = vec![prompt];
    patterns.extend(work.errors.iter().map(|e| e.get().clone()));
    let last = commands.len().saturating_sub(1);
    for (i, cmd) in commands.iter().enumerate() {
        conn.sendline(cmd).await.map_err(&err)?;
        // Wait for the echo first: prompts printed before it (an interrupt key pressed
        // twice, an empty line) must not count as this command's prompt.
        conn.expect(
            &[Pattern::literal(cmd).get().clone()],
            cmd_node.connection_timeout,
        )
        .await
        .map_err(&err)?;
        if i == last && work.login.is_some() {
            patterns[0] = work.kernel_start.get().clone();
        }
        let m = conn
            .expect(&patterns, cmd_node.connection_timeout)
            .await
            .map_err(&err)?;
        if m.index > 0 {
            return Err(JobError::new(
                ErrorType::Infrastructure,
                format!("U-Boot error: {}", m.text),
            ));
        }
    }
    match &work.login {
        Some(login) => ctx.login(login, namespace).await,
        // `method: bootloader`: the job goes on at the bootloader's prompt.
        None => Ok(()),
    }
}
