//! Connections and accounts for the scenarios.

use std::net::SocketAddr;

use tonic::transport::Channel;
use videostore_proto::stock::{self, account_service_client::AccountServiceClient};

use crate::services;

/// `count` connections to the service at `addr`.
pub(crate) async fn channels(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect().await?,
        );
    }
    Ok(channels)
}

/// Registers a customer and returns their token.
pub(crate) async fn register(stock: SocketAddr, email: &str) -> anyhow::Result<String> {
    let channel = channels(stock, 1).await?.remove(0);
    let mut accounts = AccountServiceClient::new(channel);
    accounts
        .register(stock::RegisterRequest {
            email: email.into(),
            name: "Bench customer".into(),
            password: "bench password".into(),
        })
        .await?;
    Ok(accounts
        .sign_in(stock::SignInRequest { email: email.into(), password: "bench password".into() })
        .await?
        .into_inner()
        .token)
}

/// A staff token from the stock service at `stock`.
pub(crate) async fn staff_token(stock: SocketAddr) -> anyhow::Result<String> {
    let channel = channels(stock, 1).await?.remove(0);
    Ok(AccountServiceClient::new(channel)
        .sign_in(stock::SignInRequest {
            email: services::STAFF_EMAIL.into(),
            password: services::STAFF_PASSWORD.into(),
        })
        .await?
        .into_inner()
        .token)
}
