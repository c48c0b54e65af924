//! `stock`: serves stock, rentals and accounts until SIGINT or SIGTERM.

use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    videostore_kit::runtime::build()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let config = stock::config::Config::parse();
    videostore_kit::telemetry::init("stock");
    if !videostore_kit::runtime::WITHOUT_LIFO_SLOT {
        tracing::warn!("built without --cfg tokio_unstable: the runtime keeps its LIFO slot");
    }
    let shutdown = CancellationToken::new();
    videostore_kit::shutdown::cancel_on_signal(shutdown.clone());
    let app =
        stock::startup::Application::build(config, Arc::new(stock::clock::SystemClock), shutdown)
            .await?;
    tracing::info!(addr = %app.local_addr(), "stock serving");
    app.run().await?;
    tracing::info!("stock stopped");
    Ok(())
}
