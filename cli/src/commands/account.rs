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
    save_private(&path, &signed_in.token).with_context(|| format!("saving {}", path.display()))?;
    let name = signed_in.account.map(|a| a.name).unwrap_or_default();
    println!("Signed in as {name} until {}.", format::time(signed_in.expire_time.as_ref()));
    Ok(ExitCode::SUCCESS)
}

/// Writes `contents` to `path` readable by its owner only: a new file (0600) beside it, then
/// renamed over it, so the token is never readable by others, not even for a moment, and a
/// crash leaves the old one or the new one whole.
fn save_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::DirBuilderExt, os::unix::fs::OpenOptionsExt};
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.new", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}
