//! `catalogue`: serves the film catalogue until SIGINT or SIGTERM.

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// mimalloc: a bulk read allocates and frees several strings per film, where glibc's allocator
/// spent a quarter of an export in `malloc_consolidate` and friends. (Stock keeps the system
/// allocator: with mimalloc each held watch stream cost three times the memory.)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    videostore_kit::runtime::build()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let config = catalogue::config::Config::parse();
    videostore_kit::telemetry::init("catalogue");
    if !videostore_kit::runtime::WITHOUT_LIFO_SLOT {
        tracing::warn!("built without --cfg tokio_unstable: the runtime keeps its LIFO slot");
    }
    let shutdown = CancellationToken::new();
    videostore_kit::shutdown::cancel_on_signal(shutdown.clone());
    let app = catalogue::startup::Application::build(config, shutdown).await?;
    tracing::info!(addr = %app.local_addr(), "catalogue serving");
    app.run().await?;
    tracing::info!("catalogue stopped");
    Ok(())
}
