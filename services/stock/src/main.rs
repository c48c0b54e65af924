//! `stock`: serves stock, rentals and accounts until SIGINT or SIGTERM.

use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    videostore_kit::run::main("stock", |config, shutdown| {
        stock::startup::Application::build(config, Arc::new(stock::clock::SystemClock), shutdown)
    })
}
