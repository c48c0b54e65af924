//! `catalogue`: serves the film catalogue until SIGINT or SIGTERM.

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// mimalloc: the services allocate and free many small strings per call (films, frames), where
/// glibc's allocator spent a quarter of a bulk export in `malloc_consolidate` and friends.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = catalogue::config::Config::parse();
    videostore_kit::telemetry::init("catalogue");
    let shutdown = CancellationToken::new();
    videostore_kit::shutdown::cancel_on_signal(shutdown.clone());
    let app = catalogue::startup::Application::build(config, shutdown).await?;
    tracing::info!(addr = %app.local_addr(), "catalogue serving");
    app.run().await?;
    tracing::info!("catalogue stopped");
    Ok(())
}
