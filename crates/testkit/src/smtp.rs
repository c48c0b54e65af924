//! An SMTP relay for tests: it takes every message sent to it over a real socket and keeps it,
//! as a mail relay would, so a test can read what stock sent. It speaks just enough SMTP
//! (RFC 5321: EHLO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) for a real client.
//! Recipients whose address starts with `refused` are answered 550, as an unknown mailbox is.
//! [`SmtpRelay::start_tls`] speaks it inside TLS from the first byte (`smtps://`).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpListener,
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

impl SmtpRelay {
    /// Starts listening, plain.
    pub async fn start() -> Self {
        Self::listen(None).await
    }

    /// Starts listening, inside TLS with `config`'s certificate.
    pub async fn start_tls(config: Arc<ServerConfig>) -> Self {
        Self::listen(Some(TlsAcceptor::from(config))).await
    }

    async fn listen(tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = Arc::clone(&kept);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = match tls {
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => session(stream, kept).await,
                            Err(error) => Err(error),
                        },
                        None => session(stream, kept).await,
                    };
                });
            }
        });
        Self { addr, received, task }
    }

    /// Every message taken so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for SmtpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session<S>(stream: S, kept: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let mut lines = BufReader::new(reader).lines();
    writer.write_all(b"220 relay.test ESMTP\r\n").await?;
    writer.flush().await?;
    let mut to = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let verb = line.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" => b"250-relay.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 OK\r\n",
            "HELO" | "NOOP" => b"250 OK\r\n",
            "MAIL" => {
                to.clear();
                b"250 OK\r\n"
            }
            "RSET" => {
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                let address = line
                    .split_once('<')
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map(|(address, _)| address.to_owned())
                    .unwrap_or_default();
                if address.starts_with("refused") {
                    b"550 5.1.1 No such mailbox\r\n"
                } else {
                    to.push(address);
                    b"250 OK\r\n"
                }
            }
            "DATA" => {
                writer.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                writer.flush().await?;
                let mut data = String::new();
                while let Some(line) = lines.next_line().await? {
                    if line == "." {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                    data.push_str("\r\n");
                }
                let message = Received { to: std::mem::take(&mut to), data };
                kept.lock().unwrap().push(message);
                b"250 OK: queued\r\n"
            }
            "QUIT" => {
                writer.write_all(b"221 Bye\r\n").await?;
                writer.flush().await?;
                return Ok(());
            }
            _ => b"502 Command not implemented\r\n",
        };
        writer.write_all(answer).await?;
        writer.flush().await?;
    }
    Ok(())
}
