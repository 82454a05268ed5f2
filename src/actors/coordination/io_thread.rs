//! The coordination clients' I/O thread, as ZooKeeper's client `SendThread`: one thread per
//! process, with a tokio runtime of its own, runs every session's heartbeats and connection
//! I/O (the embedded client's pings, the remote client's connection manager and reader, the
//! ZooKeeper crate's session task). A session's liveness then does not depend on the arbiter
//! that opened it: a broker arbiter busy for seconds (10 000 logs created in one LeaderAndIsr)
//! used to hold back its pings until the session expired.
//!
//! Only session upkeep runs here; requests are still made and awaited by their callers (a
//! channel or an actor address works from any thread). The thread starts on first use and
//! lives as long as the process: its tasks hold no actix state, so it outlives any actix
//! `System` (tests start and stop many). Fault injection does not touch it: a paused or cut
//! session is a link switch ([`super::LinkSwitch`]), not a stalled thread.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::error::{CoordinationError, Result};

static RUNTIME: OnceLock<std::result::Result<Handle, String>> = OnceLock::new();

fn start() -> std::result::Result<Handle, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building the coordination I/O runtime: {e}"))?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("coordination-io".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .map_err(|e| format!("starting the coordination I/O thread: {e}"))?;
    Ok(handle)
}

fn handle() -> Result<&'static Handle> {
    RUNTIME
        .get_or_init(start)
        .as_ref()
        .map_err(|e| CoordinationError::Other(e.clone()))
}

/// Runs `future` on the I/O thread, detached (the handle may be dropped).
pub(crate) fn spawn<F>(future: F) -> Result<JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(handle()?.spawn(future))
}

/// Runs `future` on the I/O thread and waits for its output. Sockets opened inside it (and
/// tasks it spawns) belong to the I/O thread's runtime.
pub(crate) async fn run<F>(future: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn(future)?
        .await
        .map_err(|e| CoordinationError::Other(format!("coordination I/O task: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix::test]
    async fn work_runs_on_the_one_coordination_io_thread() {
        let here = std::thread::current().id();
        let first = run(async { std::thread::current().id() }).await.unwrap();
        let second = run(async { std::thread::current().id() }).await.unwrap();
        assert_ne!(first, here);
        assert_eq!(first, second);
    }
}
