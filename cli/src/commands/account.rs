//! `signup` and `signin`.

use std::process::ExitCode;

use anyhow::Context;
use videostore_proto::stock::{self, account_service_client::AccountServiceClient};

use super::{call_error, channel};
use crate::{Cli, format};

/// Creates a customer account.
pub(crate) async fn signup(
    cli: &Cli,
    email: &str,
    name: &str,
    password: &str,
) -> anyhow::Result<ExitCode> {
    let mut accounts = AccountServiceClient::new(channel(&cli.stock).await?);
    let account = accounts
        .register(stock::RegisterRequest {
            email: email.to_owned(),
            name: name.to_owned(),
            password: password.to_owned(),
        })
        .await
        .map_err(call_error)?
        .into_inner();
    println!("Welcome, {}! Account {} created; now `videostore signin`.", account.name, account.id);
    Ok(ExitCode::SUCCESS)
}

/// Signs in and saves the token for the next commands.
pub(crate) async fn signin(cli: &Cli, email: &str, password: &str) -> anyhow::Result<ExitCode> {
    let mut accounts = AccountServiceClient::new(channel(&cli.stock).await?);
    let signed_in = accounts
        .sign_in(stock::SignInRequest { email: email.to_owned(), password: password.to_owned() })
        .await
        .map_err(call_error)?
        .into_inner();
    let path = cli.token_file().context("no place to save the token: set --token-file")?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, &signed_in.token)
        .with_context(|| format!("saving {}", path.display()))?;
    let name = signed_in.account.map(|a| a.name).unwrap_or_default();
    println!("Signed in as {name} until {}.", format::time(signed_in.expire_time.as_ref()));
    Ok(ExitCode::SUCCESS)
}
