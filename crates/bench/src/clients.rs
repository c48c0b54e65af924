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

/// Registers a customer as a customer does (Register, then the code from the mail) and returns
/// their token. An address that has an account already (data kept from an earlier run) signs in
/// with the bench's password instead.
pub(crate) async fn register(running: &services::Running, email: &str) -> anyhow::Result<String> {
    let channel = channels(running.stock, 1).await?.remove(0);
    let request = tonic::Request::new(stock::RegisterRequest {
        email: email.into(),
        name: "Bench customer".into(),
        password: PASSWORD.into(),
    });
    register_with(&mut AccountServiceClient::new(channel), &running.mailbox, request).await
}

/// The password of the bench's customers.
pub(crate) const PASSWORD: &str = "bench password";

/// Sends `request` (Register, with the bench's password) and finishes it with the mailed code;
/// the new account's token.
pub(crate) async fn register_with(
    accounts: &mut AccountServiceClient<Channel>,
    mailbox: &::stock::mail::Mailbox,
    request: tonic::Request<stock::RegisterRequest>,
) -> anyhow::Result<String> {
    let email = request.get_ref().email.clone();
    // The confirmation comes from the same client (its X-Forwarded-For, when it has one).
    let metadata = request.metadata().clone();
    let before = mailbox.to(&email)?.len();
    accounts.register(request).await?;
    let wait = std::time::Duration::from_secs(10);
    let mail = mailbox.next_to(&email, before, wait).await?;
    let mail = mail.ok_or_else(|| anyhow::anyhow!("no mail to {email} within 10 s"))?;
    let signed_in = match mail.confirmation_code() {
        Some(code) => {
            let confirm =
                stock::ConfirmEmailRequest { code: code.to_owned(), password: PASSWORD.into() };
            accounts.confirm_email(from_client(&metadata, confirm)).await?
        }
        None => {
            let sign_in = stock::SignInRequest { email, password: PASSWORD.into() };
            accounts.sign_in(from_client(&metadata, sign_in)).await?
        }
    };
    Ok(signed_in.into_inner().token)
}

/// `message` with `metadata` (the client's X-Forwarded-For, when it names one).
fn from_client<T>(metadata: &tonic::metadata::MetadataMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = metadata.clone();
    request
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
