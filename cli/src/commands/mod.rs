//! One module per group of commands; each command is a function taking the parsed [`Cli`].

pub(crate) mod account;
pub(crate) mod desk;
pub(crate) mod health;
pub(crate) mod import;
pub(crate) mod movies;
pub(crate) mod shop;
pub(crate) mod watch;

use std::time::Duration;

use anyhow::Context;
use tonic::transport::Channel;

/// A connection to the service at `address`.
pub(crate) async fn channel(address: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(address.to_owned())
        .with_context(|| format!("invalid address {address:?}"))?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .with_context(|| format!("cannot reach {address}"))
}

/// A failed call as a human message: the service's message, with the code for scripts.
pub(crate) fn call_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}
