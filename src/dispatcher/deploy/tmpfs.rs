//! `deploy: {to: tmpfs}`: the images an emulator boots, downloaded into the job's work
//! directory, the test overlay appended to a cpio initrd.

use super::{add_overlay, file_name};
use crate::dispatcher::JobError;
use crate::dispatcher::job::JobCtx;
use crate::pipeline::Pipeline;
use crate::pipeline::step::ImageWork;

/// Downloads the images; the boot passes them to the emulator.
pub(in crate::dispatcher) async fn run(
    ctx: &mut JobCtx<'_>,
    pipeline: &Pipeline,
    images: &[ImageWork],
    namespace: Option<&str>,
) -> Result<(), JobError> {
    let dir = ctx
        .dispatcher
        .config
        .work_dir
        .join(ctx.job_id.to_string())
        .join("tmpfs");
    let client = ctx.dispatcher.http_client()?;
    let mut staged = Vec::new();
    for work in images {
        let image = &work.image;
        let name = file_name(&image.resource, &image.name);
        let mut path = ctx
            .download(&client, &work.download, &dir, namespace)
            .await?
            .path;
        if work.add_overlay && ctx.has_tests {
            let overlay = ctx.overlay(pipeline).await?.clone();
            let dest = dir.join(format!("{name}.lava"));
            ctx.log.info(format!(
                "adding the overlay {} to {}",
                overlay.root, image.name
            ));
            add_overlay(&overlay, path, dest.clone(), false).await?;
            path = dest;
        }
        staged.push((image.name.clone(), path, image.image_arg.clone()));
    }
    ctx.images = staged;
    Ok(())
}
