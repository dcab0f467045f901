//! `boot: {method: qemu}`: start the emulator (owned by the board) with the deployed images
//! and log in on its stdio.

use crate::dispatcher::JobError;
use crate::dispatcher::connection::Connection;
use crate::dispatcher::job::{JobCtx, hw_error};
use crate::pipeline::step::QemuWork;
use crate::testshell::overlay;

/// Boots the emulator.
pub(in crate::dispatcher) async fn run(
    ctx: &mut JobCtx<'_>,
    work: &QemuWork,
    namespace: Option<&str>,
) -> Result<(), JobError> {
    let mut words = work.command.clone();
    for (name, path, arg) in &ctx.images {
        let quoted = overlay::shell_quote(&path.to_string_lossy());
        match arg {
            Some(arg) => words.push(arg.replace(&format!("{{{name}}}"), &quoted)),
            None => words.push(format!("-drive format=raw,file={quoted}")),
        }
    }
    let cmdline = words.join(" ");
    ctx.log.info(format!("execute-qemu: {cmdline}"));
    ctx.conn = None;
    let console = ctx
        .board
        .start_emulator(&cmdline)
        .await
        .map_err(|e| hw_error(&e))?;
    let mut conn = Connection::open(console, ctx.log.clone()).await?;
    conn.set_char_delay(ctx.device.character_delays.boot);
    ctx.conn = Some(conn);
    ctx.login(&work.login, namespace).await
}
