//! Channels to the services behind the store front, balanced per request over their replicas.
//!
//! A service is configured as one address or several, comma-separated
//! (`http://stock-0:50052,http://stock-1:50052`), and a host name counts for every address it
//! resolves to, as a Kubernetes headless Service's name does. A connection to a ClusterIP-like
//! single address would stick to one replica for its whole life (one HTTP/2 connection carries
//! every call), so calls are balanced here instead, per request (power of two choices).
//!
//! One task per service resolves the names again and asks each replica's standard health check
//! every [`PROBE`]: a replica that stops answering SERVING is taken out of the balance, and put
//! back once it answers again. A single address given as an IP is used as it is, with no task.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri, channel::Change};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How often the replicas are resolved and checked.
const PROBE: Duration = Duration::from_secs(1);
/// How long a replica has to answer its health check.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// How the replicas of one configured address are reached: over TLS for `https://`, checking
/// the certificate against the configured CA and the address's host name.
#[derive(Clone)]
struct Reach {
    tls: Option<ClientTlsConfig>,
    purpose: Purpose,
}

/// What a channel carries, which decides its HTTP/2 flow-control windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Short calls: the default windows.
    Calls,
    /// Up to `exports` long downloads, each of which may stop reading while its own client
    /// stalls. The connection's window has room for every one of them to fill its stream's, so
    /// that stalled downloads never hold up the others (with the defaults, 5 MiB for the
    /// connection and 2 MiB per stream, three stalled ones stop every call on it).
    Exports {
        /// How many run at once at most.
        exports: u32,
    },
}

/// An export stream's flow-control window: how much of it waits in the aggregator at most.
const EXPORT_STREAM_WINDOW: u32 = 1024 * 1024;

impl Reach {
    fn of(named: &Uri, ca: Option<&[u8]>, purpose: Purpose) -> anyhow::Result<Self> {
        if named.scheme_str() != Some("https") {
            return Ok(Self { tls: None, purpose });
        }
        let ca = ca.with_context(|| {
            format!("{named} is https: set VIDEOSTORE_TLS_CA to the CA that signs its certificate")
        })?;
        let host = named.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(host.to_owned());
        Ok(Self { tls: Some(tls), purpose })
    }

    /// The settings of every connection to a replica at `uri`.
    fn endpoint(&self, uri: Uri) -> Endpoint {
        let endpoint = Endpoint::from(uri)
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let endpoint = match self.purpose {
            Purpose::Calls => endpoint,
            Purpose::Exports { exports } => endpoint
                .initial_stream_window_size(EXPORT_STREAM_WINDOW)
                .initial_connection_window_size(EXPORT_STREAM_WINDOW * (exports + 1)),
        };
        match &self.tls {
            // Only fails for a plain http:// URI, which never gets a TLS config here.
            Some(tls) => endpoint.tls_config(tls.clone()).expect("an https endpoint takes TLS"),
            None => endpoint,
        }
    }
}

/// A channel whose calls have client spans and carry their trace context
/// ([`videostore_kit::trace`]).
pub(crate) type Traced = videostore_kit::trace::TraceClient<Channel>;

/// `channel`, its calls traced.
pub(crate) fn traced(channel: Channel) -> Traced {
    tower::Layer::layer(&videostore_kit::trace::TraceClientLayer, channel)
}

/// A channel to the service at `addresses` (see the module's description), balanced when there
/// may be several replicas, with its own connections, set up for `purpose`. The balancing task
/// ends at `shutdown`.
pub(crate) fn channel(
    service: &'static str,
    addresses: &str,
    ca: Option<&[u8]>,
    purpose: Purpose,
    shutdown: CancellationToken,
) -> anyhow::Result<Channel> {
    let uris = addresses
        .split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .map(|address| {
            address
                .parse::<Uri>()
                .ok()
                .filter(|uri| {
                    matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some()
                        && uri.port_u16().is_some()
                })
                .with_context(|| {
                    format!("{service} address {address:?} is not like http://host:port")
                })
        })
        .collect::<anyhow::Result<Vec<Uri>>>()?;
    anyhow::ensure!(!uris.is_empty(), "no {service} address is configured");
    let uris = uris
        .into_iter()
        .map(|uri| Ok((Reach::of(&uri, ca, purpose)?, uri)))
        .collect::<anyhow::Result<Vec<(Reach, Uri)>>>()?;
    let single_ip = uris.len() == 1
        && uris[0].1.host().is_some_and(|host| host.parse::<std::net::IpAddr>().is_ok());
    if single_ip {
        let (reach, uri) = &uris[0];
        return Ok(reach.endpoint(uri.clone()).connect_lazy());
    }
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    tokio::spawn(follow(service, uris, changes, shutdown));
    Ok(channel)
}

/// Keeps the balance to the replicas that answer SERVING.
async fn follow(
    service: &'static str,
    uris: Vec<(Reach, Uri)>,
    changes: tokio::sync::mpsc::Sender<Change<SocketAddr, Endpoint>>,
    shutdown: CancellationToken,
) {
    // The replicas in the balance, and a health client for every replica known.
    let mut serving: HashSet<SocketAddr> = HashSet::new();
    let mut probes: HashMap<SocketAddr, HealthClient<Channel>> = HashMap::new();
    let mut every = tokio::time::interval(PROBE);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let replicas = resolve(&uris).await;
        probes.retain(|address, _| replicas.contains_key(address));
        let checks = replicas.iter().map(|(address, uri)| {
            let probe = probes
                .entry(*address)
                .or_insert_with(|| {
                    let (reach, uri) = uri;
                    let endpoint = reach.endpoint(replica_uri(uri, *address));
                    HealthClient::new(endpoint.connect_timeout(PROBE_TIMEOUT).connect_lazy())
                })
                .clone();
            async move { (*address, uri, is_serving(probe).await) }
        });
        for (address, uri, up) in futures::future::join_all(checks).await {
            let change = match (up, serving.contains(&address)) {
                (true, false) => {
                    tracing::info!(service, %address, "replica serving: in the balance");
                    serving.insert(address);
                    let (reach, uri) = uri;
                    Change::Insert(address, reach.endpoint(replica_uri(uri, address)))
                }
                (false, true) => {
                    tracing::warn!(service, %address, "replica not serving: out of the balance");
                    serving.remove(&address);
                    Change::Remove(address)
                }
                _ => continue,
            };
            if changes.send(change).await.is_err() {
                return; // The channel is gone.
            }
        }
        // Replicas whose name no longer resolves to them leave too.
        let gone: Vec<SocketAddr> =
            serving.iter().filter(|address| !replicas.contains_key(address)).copied().collect();
        for address in gone {
            tracing::info!(service, %address, "replica no longer named: out of the balance");
            serving.remove(&address);
            if changes.send(Change::Remove(address)).await.is_err() {
                return;
            }
        }
    }
}

/// Every address the configured names resolve to now, each with the URI it came from.
async fn resolve(uris: &[(Reach, Uri)]) -> HashMap<SocketAddr, &(Reach, Uri)> {
    let mut replicas = HashMap::new();
    for named in uris {
        let uri = &named.1;
        let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else { continue };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match tokio::net::lookup_host((host, port)).await {
            Ok(addresses) => {
                for address in addresses {
                    replicas.insert(address, named);
                }
            }
            Err(error) => tracing::warn!(%host, %error, "cannot resolve a replica's name"),
        }
    }
    replicas
}

/// `uri` with its host replaced by `address`: one replica of the name.
fn replica_uri(uri: &Uri, address: SocketAddr) -> Uri {
    let scheme = uri.scheme_str().unwrap_or("http");
    format!("{scheme}://{address}").parse().expect("a socket address is a valid authority")
}

/// Whether the replica answers its health check with SERVING in time.
async fn is_serving(mut probe: HealthClient<Channel>) -> bool {
    let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
    request.set_timeout(PROBE_TIMEOUT);
    match tokio::time::timeout(PROBE_TIMEOUT, probe.check(request)).await {
        Ok(Ok(answer)) => answer.into_inner().status == ServingStatus::Serving as i32,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_are_checked_and_names_resolve_to_every_address() {
        let token = CancellationToken::new();
        assert!(
            channel("stock", "stock:50052", None, Purpose::Calls, token.clone()).is_err(),
            "no scheme"
        );
        assert!(
            channel("stock", "http://stock", None, Purpose::Calls, token.clone()).is_err(),
            "no port"
        );
        assert!(channel("stock", " , ", None, Purpose::Calls, token.clone()).is_err(), "nothing");
        let https = channel("stock", "https://stock:50052", None, Purpose::Calls, token.clone());
        assert!(https.is_err_and(|e| e.to_string().contains("VIDEOSTORE_TLS_CA")), "no CA");
        let uri: Uri = "http://localhost:50052".parse().unwrap();
        let uris = vec![(Reach::of(&uri, None, Purpose::Calls).unwrap(), uri)];
        let resolved = resolve(&uris).await;
        assert!(resolved.keys().any(|a| a.ip().is_loopback() && a.port() == 50052));
        let one = replica_uri(&uris[0].1, "127.0.0.1:7".parse().unwrap());
        assert_eq!(one.to_string(), "http://127.0.0.1:7/");
        token.cancel();
    }
}
