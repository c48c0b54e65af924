//! `stock`: serves stock, rentals and accounts until SIGINT or SIGTERM.

use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // One committed change wakes every watcher's stream task at once. With the LIFO slot, each
    // task's frame woke its connection's task to run next, which wrote that one frame alone:
    // a syscall per watcher. Without it, a connection's frames queue up and go in one write.
    #[cfg(tokio_unstable)]
    runtime.disable_lifo_slot();
    runtime.build()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let config = stock::config::Config::parse();
    videostore_kit::telemetry::init("stock");
    #[cfg(not(tokio_unstable))]
    tracing::warn!(
        "built without --cfg tokio_unstable (RUSTFLAGS overrides .cargo/config.toml): \
         changes reach many watchers more slowly"
    );
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
