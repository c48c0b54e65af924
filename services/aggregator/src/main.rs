//! `aggregator`: serves the store front until SIGINT or SIGTERM.

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// mimalloc: every page is a fan-out of small allocations (two calls out, one in); glibc's
/// malloc and free were a fifth of the aggregator's time under load (perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    videostore_kit::runtime::build()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let config = aggregator::config::Config::parse();
    videostore_kit::telemetry::init("aggregator");
    if !videostore_kit::runtime::WITHOUT_LIFO_SLOT {
        tracing::warn!("built without --cfg tokio_unstable: the runtime keeps its LIFO slot");
    }
    let shutdown = CancellationToken::new();
    videostore_kit::shutdown::cancel_on_signal(shutdown.clone());
    let app = aggregator::startup::Application::build(config, shutdown).await?;
    tracing::info!(addr = %app.local_addr(), "aggregator serving");
    app.run().await?;
    tracing::info!("aggregator stopped");
    Ok(())
}
