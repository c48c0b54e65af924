//! `signup`, `confirm`, `signin` and `signout`, and the saved session: an access token that lives minutes,
//! refreshed with the refresh token when it is about to expire.

use std::process::ExitCode;

use anyhow::Context;
use videostore_proto::stock::{self, account_service_client::AccountServiceClient};

use super::{call_error, channel};
use crate::{Cli, format};

/// Starts a customer account: the code to finish it is mailed.
pub(crate) async fn signup(
    cli: &Cli,
    email: &str,
    name: &str,
    password: &str,
) -> anyhow::Result<ExitCode> {
    let mut accounts = AccountServiceClient::new(channel(&cli.stock).await?);
    let registered = accounts
        .register(stock::RegisterRequest {
            email: email.to_owned(),
            name: name.to_owned(),
            password: password.to_owned(),
        })
        .await
        .map_err(call_error)?
        .into_inner();
    println!(
        "A confirmation code is on its way to {email}. Finish with `videostore confirm <code>` \
         before {}.",
        format::time(registered.confirm_before.as_ref())
    );
    Ok(ExitCode::SUCCESS)
}

/// Finishes a signup with the mailed code; the new account is signed in.
pub(crate) async fn confirm(cli: &Cli, code: &str, password: &str) -> anyhow::Result<ExitCode> {
    let mut accounts = AccountServiceClient::new(channel(&cli.stock).await?);
    let request =
        stock::ConfirmEmailRequest { code: code.to_owned(), password: password.to_owned() };
    let signed_in = accounts.confirm_email(request).await.map_err(call_error)?.into_inner();
    let name = save_session(cli, &signed_in)?;
    println!("Welcome, {name}! Your account is ready, and you are signed in.");
    Ok(ExitCode::SUCCESS)
}

/// Saves a new session for the next commands; the account's name.
fn save_session(cli: &Cli, signed_in: &stock::SignInResponse) -> anyhow::Result<String> {
    let path = cli.token_file().context("no place to save the token: set --token-file")?;
    let saved = Saved::of(signed_in);
    save_private(&path, &saved.to_json()).with_context(|| format!("saving {}", path.display()))?;
    Ok(signed_in.account.as_ref().map(|a| a.name.clone()).unwrap_or_default())
}

/// Signs in and saves the token for the next commands.
pub(crate) async fn signin(cli: &Cli, email: &str, password: &str) -> anyhow::Result<ExitCode> {
    let mut accounts = AccountServiceClient::new(channel(&cli.stock).await?);
    let signed_in = accounts
        .sign_in(stock::SignInRequest { email: email.to_owned(), password: password.to_owned() })
        .await
        .map_err(call_error)?
        .into_inner();
    let name = save_session(cli, &signed_in)?;
    println!("Signed in as {name} until {}.", format::time(signed_in.refresh_expire_time.as_ref()));
    Ok(ExitCode::SUCCESS)
}

/// Signs the account out everywhere and forgets the saved session.
pub(crate) async fn signout(cli: &Cli) -> anyhow::Result<ExitCode> {
    let path = cli.token_file().context("no saved session: set --token-file")?;
    let Some(saved) = Saved::load(&path)? else {
        println!("Not signed in.");
        return Ok(ExitCode::SUCCESS);
    };
    let mut accounts = AccountServiceClient::new(channel(&cli.stock).await?);
    let signed_out =
        accounts.sign_out(stock::SignOutRequest { refresh_token: saved.refresh_token }).await;
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    match signed_out {
        Ok(_) => println!("Signed out everywhere."),
        // Already over: nothing is left to end.
        Err(status) if status.code() == tonic::Code::Unauthenticated => println!("Signed out."),
        Err(status) => return Err(call_error(status)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The bearer token to send: the saved one, refreshed first when it expires within a minute.
pub(crate) async fn saved_token(cli: &Cli) -> anyhow::Result<String> {
    let path = cli.token_file().context("no token: run `videostore signin` first")?;
    let saved = Saved::load(&path)?.context("not signed in: run `videostore signin` first")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    if saved.expires_at > now + 60 {
        return Ok(saved.token);
    }
    let mut accounts = AccountServiceClient::new(channel(&cli.stock).await?);
    let refreshed = accounts
        .refresh(stock::RefreshRequest { refresh_token: saved.refresh_token })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::Unauthenticated => {
                anyhow::anyhow!("the session has ended: run `videostore signin` again")
            }
            _ => call_error(status),
        })?
        .into_inner();
    let saved = Saved::of(&refreshed);
    save_private(&path, &saved.to_json()).with_context(|| format!("saving {}", path.display()))?;
    Ok(saved.token)
}

/// The session `signin` saves: JSON, the owner's only.
struct Saved {
    token: String,
    /// Unix seconds.
    expires_at: i64,
    refresh_token: String,
}

impl Saved {
    fn of(response: &stock::SignInResponse) -> Self {
        Self {
            token: response.token.clone(),
            expires_at: response.expire_time.as_ref().map_or(0, |time| time.seconds),
            refresh_token: response.refresh_token.clone(),
        }
    }

    fn to_json(&self) -> String {
        serde_json::json!({
            "token": self.token,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
        })
        .to_string()
    }

    /// The saved session, if there is one.
    fn load(path: &std::path::Path) -> anyhow::Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
            anyhow::anyhow!("{} is not a saved session: run `videostore signin`", path.display())
        })?;
        let field = |name: &str| json.get(name).and_then(serde_json::Value::as_str);
        match (
            field("token"),
            json.get("expires_at").and_then(serde_json::Value::as_i64),
            field("refresh_token"),
        ) {
            (Some(token), Some(expires_at), Some(refresh_token)) => Ok(Some(Self {
                token: token.to_owned(),
                expires_at,
                refresh_token: refresh_token.to_owned(),
            })),
            _ => {
                anyhow::bail!("{} is not a saved session: run `videostore signin`", path.display())
            }
        }
    }
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
