//! Optional TLS on a service's port (rustls, with the `ring` provider), and the CA its clients
//! verify the services with.
//!
//! A server with a certificate and key speaks TLS on its one port to every kind of caller: it
//! offers HTTP/2 (gRPC) and HTTP/1.1 (gRPC-Web and REST from clients that speak only that) by
//! ALPN. (tonic's own server TLS offers h2 only, and a client offering only http/1.1 then fails
//! its handshake: the TLS test's gRPC-Web call over HTTP/1.1 fails that way.) Handshakes run concurrently, each bounded by [`HANDSHAKE_TIMEOUT`], so a slow or silent
//! client holds up nobody else.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpStream, sync::mpsc};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
    server::TlsStream,
};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};

/// A server's TLS settings.
pub type ServerTls = rustls::ServerConfig;

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side: the certificate chain and key from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the TLS key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("the TLS certificate and key do not go together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS connections made on `incoming`'s TCP connections; failed handshakes are dropped (and
/// logged at DEBUG: they are the callers' business).
pub fn incoming<I>(
    incoming: I,
    config: Arc<rustls::ServerConfig>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>>
where
    I: Stream<Item = Result<TcpStream, std::io::Error>> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(config);
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        tokio::pin!(incoming);
        loop {
            let next = tokio::select! {
                next = incoming.next() => next,
                // The server stopped taking connections.
                () = sender.closed() => return,
            };
            let Some(connection) = next else { return };
            match connection {
                Ok(tcp) => {
                    let (acceptor, sender) = (acceptor.clone(), sender.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => {
                                let _ = sender.send(Ok(tls)).await;
                            }
                            Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    });
                }
                Err(error) => {
                    if sender.send(Err(error)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    ReceiverStream::new(receiver)
}

/// The CA certificate (PEM) that signs the services' certificates, for their clients.
pub fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem =
        std::fs::read(path).with_context(|| format!("reading the TLS CA {}", path.display()))?;
    anyhow::ensure!(
        CertificateDer::pem_slice_iter(&pem).next().is_some_and(|cert| cert.is_ok()),
        "{} holds no PEM certificate",
        path.display()
    );
    Ok(pem)
}
