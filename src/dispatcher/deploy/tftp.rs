//! `deploy: {to: tftp}`: the kernel, device tree, ramdisk (with the test overlay appended),
//! modules and OP-TEE image, staged in `<tftp root>/<job id>/` for the bootloader to load.

use std::collections::BTreeMap;

use super::{add_overlay, file_name};
use crate::dispatcher::JobError;
use crate::dispatcher::job::JobCtx;
use crate::pipeline::Pipeline;
use crate::pipeline::step::{Download, TftpWork};

/// Stages the deploy's files; the boot substitutes their paths (`{KERNEL}`, `{RAMDISK}`…).
pub(in crate::dispatcher) async fn run(
    ctx: &mut JobCtx<'_>,
    pipeline: &Pipeline,
    work: &TftpWork,
    namespace: Option<&str>,
) -> Result<(), JobError> {
    let dir = ctx.dispatcher.config.tftp_root.join(ctx.job_id.to_string());
    let client = ctx.dispatcher.http_client()?;
    let job = ctx.job_id.to_string();
    let fetch = async |ctx: &JobCtx<'_>, d: &Download| {
        let fetched = ctx.download(&client, d, &dir, namespace).await?;
        Ok::<_, JobError>((fetched.path, file_name(&d.resource, &d.label)))
    };
    let (_, kernel) = fetch(ctx, &work.kernel).await?;
    let mut files = BTreeMap::new();
    files.insert("KERNEL", format!("{job}/{kernel}"));
    if let Some(dtb) = &work.dtb {
        let (_, name) = fetch(ctx, dtb).await?;
        files.insert("DTB", format!("{job}/{name}"));
    }
    let ramdisk = match &work.ramdisk {
        Some((d, install_overlay)) => Some((fetch(ctx, d).await?, *install_overlay)),
        None => None,
    };
    if let Some(modules) = &work.modules {
        fetch(ctx, modules).await?;
        ctx.log
            .info("modules downloaded (not installed into the ramdisk)");
    }
    if let Some(tee) = &work.tee {
        let (_, name) = fetch(ctx, tee).await?;
        files.insert("TEE", format!("{job}/{name}"));
    }
    if let Some(((path, name), install_overlay)) = ramdisk {
        if ctx.has_tests && install_overlay {
            let overlay = ctx.overlay(pipeline).await?.clone();
            let dest = dir.join("ramdisk.cpio.gz");
            ctx.log.info(format!(
                "adding the overlay {} to the ramdisk",
                overlay.root
            ));
            add_overlay(&overlay, path, dest, true).await?;
            files.insert("RAMDISK", format!("{job}/ramdisk.cpio.gz"));
        } else {
            files.insert("RAMDISK", format!("{job}/{name}"));
        }
    }
    ctx.kernel_type = work.kernel_type;
    ctx.tftp_files = files;
    Ok(())
}
