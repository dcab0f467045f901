//! `boot: {method: minimal}`: attach to the console, reset the board unless the job says not
//! to, and log in.

use crate::dispatcher::JobError;
use crate::dispatcher::job::JobCtx;
use crate::pipeline::step::MinimalWork;

/// Boots the board as it boots by itself.
pub(in crate::dispatcher) async fn run(
    ctx: &mut JobCtx<'_>,
    work: &MinimalWork,
    namespace: Option<&str>,
) -> Result<(), JobError> {
    ctx.connect().await?;
    if let Some(reset) = &work.reset {
        ctx.reset(reset, namespace).await?;
    }
    ctx.login(&work.login, namespace).await
}
