//! What every service's `main` does: read its configuration from flags and environment, start
//! the runtime and logging, turn SIGINT/SIGTERM into a graceful shutdown, then build the server
//! and serve until that shutdown has finished.

use std::{future::Future, net::SocketAddr};

use tokio_util::sync::CancellationToken;

use crate::{runtime, shutdown, telemetry};

/// A server that has bound its port and is ready to serve.
pub trait Server {
    /// The address it listens on.
    fn local_addr(&self) -> SocketAddr;
    /// Serves until the shutdown token given to its builder is cancelled and in-flight calls
    /// have finished.
    fn run(self) -> impl Future<Output = anyhow::Result<()>>;
}

/// Runs the service `name`: `build` gets the parsed configuration and the shutdown token.
pub fn main<C, S, F>(
    name: &'static str,
    build: impl FnOnce(C, CancellationToken) -> F,
) -> anyhow::Result<()>
where
    C: clap::Parser,
    S: Server,
    F: Future<Output = anyhow::Result<S>>,
{
    // Before the runtime starts, so that `--help` and bad flags exit at once.
    let config = C::parse();
    runtime::build()?.block_on(async move {
        let telemetry = telemetry::init(name);
        if !runtime::WITHOUT_LIFO_SLOT {
            tracing::warn!("built without --cfg tokio_unstable: the runtime keeps its LIFO slot");
        }
        let shutdown = CancellationToken::new();
        shutdown::cancel_on_signal(shutdown.clone());
        let server = build(config, shutdown).await?;
        tracing::info!(service = name, addr = %server.local_addr(), "serving");
        let served = server.run().await;
        telemetry.shutdown().await;
        served?;
        tracing::info!(service = name, "stopped");
        Ok(())
    })
}
