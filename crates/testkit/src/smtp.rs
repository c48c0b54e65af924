//! An SMTP relay for tests: it takes every message sent to it over a real socket and keeps it,
//! as a mail relay would, so a test can read what stock sent. It speaks just enough SMTP
//! (RFC 5321: EHLO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) for a real client.
//! Recipients whose address starts with `refused` are answered 550, as an unknown mailbox is.
//! [`SmtpRelay::start_tls`] speaks it inside TLS from the first byte (`smtps://`);
//! [`SmtpRelay::start_starttls`] offers STARTTLS (RFC 3207) and takes no mail before it, and
//! with a login also asks for AUTH PLAIN (RFC 4954) inside TLS, as a submission relay does.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};

/// A message the relay took.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope's recipients.
    pub to: Vec<String>,
    /// The message as sent (headers and body, CRLF), dots unstuffed.
    pub data: String,
}

/// The relay, on a free port of 127.0.0.1, until dropped.
pub struct SmtpRelay {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

/// How a relay speaks: TLS from the first byte or after STARTTLS, and whether it wants a login.
#[derive(Clone)]
struct Setup {
    tls: Option<TlsAcceptor>,
    starttls: bool,
    login: Option<(String, String)>,
}

impl SmtpRelay {
    /// Starts listening, plain.
    pub async fn start() -> Self {
        Self::listen(Setup { tls: None, starttls: false, login: None }).await
    }

    /// Starts listening, inside TLS with `config`'s certificate.
    pub async fn start_tls(config: Arc<ServerConfig>) -> Self {
        let tls = Some(TlsAcceptor::from(config));
        Self::listen(Setup { tls, starttls: false, login: None }).await
    }

    /// Starts listening in the clear, offering STARTTLS with `config`'s certificate and taking
    /// mail only after it; with `login` (user, password), only after AUTH PLAIN with it too.
    pub async fn start_starttls(config: Arc<ServerConfig>, login: Option<(&str, &str)>) -> Self {
        let tls = Some(TlsAcceptor::from(config));
        let login = login.map(|(user, password)| (user.to_owned(), password.to_owned()));
        Self::listen(Setup { tls, starttls: true, login }).await
    }

    async fn listen(setup: Setup) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = Arc::clone(&kept);
                let setup = setup.clone();
                tokio::spawn(async move {
                    let _ = connection(stream, &setup, &kept).await;
                });
            }
        });
        Self { addr, received, task }
    }

    /// Every message taken so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every message taken so far, once there is at least one or `wait` has passed (then none).
    pub async fn received_within(&self, wait: Duration) -> Vec<Received> {
        let until = Instant::now() + wait;
        loop {
            let received = self.received();
            if !received.is_empty() || Instant::now() >= until {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client's connection, through TLS where the setup says.
async fn connection(
    stream: TcpStream,
    setup: &Setup,
    kept: &Mutex<Vec<Received>>,
) -> std::io::Result<()> {
    match (&setup.tls, setup.starttls) {
        (Some(tls), false) => {
            let stream = tls.accept(stream).await?;
            session(stream, setup, Stage::Secure, kept).await?;
        }
        (Some(tls), true) => {
            if let Some(stream) = session(stream, setup, Stage::Plain, kept).await? {
                let stream = tls.accept(stream).await?;
                session(stream, setup, Stage::Upgraded, kept).await?;
            }
        }
        (None, _) => {
            session(stream, setup, Stage::Plain, kept).await?;
        }
    }
    Ok(())
}

/// Where a session stands with TLS.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// In the clear.
    Plain,
    /// Inside TLS from the first byte.
    Secure,
    /// Inside TLS after STARTTLS: no new greeting, the client says EHLO again.
    Upgraded,
}

/// Speaks SMTP on `stream` until QUIT or the end; gives the stream back when the client asked
/// for STARTTLS (answered 220), for the caller to start TLS on.
async fn session<S>(
    stream: S,
    setup: &Setup,
    stage: Stage,
    kept: &Mutex<Vec<Received>>,
) -> std::io::Result<Option<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    if stage != Stage::Upgraded {
        stream.write_all(b"220 relay.test ESMTP\r\n").await?;
        stream.flush().await?;
    }
    let secure = stage != Stage::Plain;
    let mut signed_in = setup.login.is_none();
    let mut to = Vec::new();
    while let Some(line) = next_line(&mut stream).await? {
        let verb = line.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase();
        let answer: String = match verb.as_str() {
            "EHLO" => {
                let mut answer = String::from("250-relay.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n");
                if setup.starttls && !secure {
                    answer.push_str("250-STARTTLS\r\n");
                }
                if setup.login.is_some() && secure {
                    answer.push_str("250-AUTH PLAIN\r\n");
                }
                answer + "250 OK\r\n"
            }
            "HELO" | "NOOP" => "250 OK\r\n".into(),
            "STARTTLS" if setup.starttls && !secure => {
                stream.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                stream.flush().await?;
                return Ok(Some(stream.into_inner()));
            }
            "AUTH" if setup.login.is_some() && secure => {
                let mut words = line.split(' ').skip(1);
                let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
                let mut response = words.next().map(str::to_owned);
                if mechanism == "PLAIN" && response.is_none() {
                    stream.write_all(b"334 \r\n").await?;
                    stream.flush().await?;
                    response = next_line(&mut stream).await?;
                }
                if mechanism == "PLAIN"
                    && response.as_deref().and_then(plain_login).as_ref() == setup.login.as_ref()
                {
                    signed_in = true;
                    "235 2.7.0 Authentication successful\r\n".into()
                } else {
                    "535 5.7.8 Authentication credentials invalid\r\n".into()
                }
            }
            "MAIL" if setup.starttls && !secure => {
                "530 5.7.0 Must issue a STARTTLS command first\r\n".into()
            }
            "MAIL" if !signed_in => "530 5.7.0 Authentication required\r\n".into(),
            "MAIL" | "RSET" => {
                to.clear();
                "250 OK\r\n".into()
            }
            "RCPT" => {
                let address = line
                    .split_once('<')
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map(|(address, _)| address.to_owned())
                    .unwrap_or_default();
                if address.starts_with("refused") {
                    "550 5.1.1 No such mailbox\r\n".into()
                } else {
                    to.push(address);
                    "250 OK\r\n".into()
                }
            }
            "DATA" => {
                stream.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                stream.flush().await?;
                let mut data = String::new();
                while let Some(line) = next_line(&mut stream).await? {
                    if line == "." {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                    data.push_str("\r\n");
                }
                let message = Received { to: std::mem::take(&mut to), data };
                kept.lock().unwrap().push(message);
                "250 OK: queued\r\n".into()
            }
            "QUIT" => {
                stream.write_all(b"221 Bye\r\n").await?;
                stream.flush().await?;
                return Ok(None);
            }
            _ => "502 Command not implemented\r\n".into(),
        };
        stream.write_all(answer.as_bytes()).await?;
        stream.flush().await?;
    }
    Ok(None)
}

/// The next line the client sent, without its CRLF; `None` at the end.
async fn next_line<S: AsyncRead + Unpin>(
    stream: &mut BufReader<S>,
) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(Some(line))
}

/// The user and password of an AUTH PLAIN response (base64 of `authzid NUL user NUL password`).
fn plain_login(response: &str) -> Option<(String, String)> {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(response.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let mut parts = decoded.split('\0');
    let (_authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    Some((user.to_owned(), password.to_owned()))
}
