//! `stock`: serves stock, rentals and accounts until SIGINT or SIGTERM.

use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = stock::config::Config::parse();
    videostore_kit::telemetry::init("stock");
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
