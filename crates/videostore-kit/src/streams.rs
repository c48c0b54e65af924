//! Places for long streams (live availability, a catalogue's change feed, lookups): at most so
//! many open in one process, and from one client address. A stream takes a place when it opens
//! and gives it back when it is dropped, however it ends. Past either cap the call is refused
//! at once (RESOURCE_EXHAUSTED, retry in a few seconds) instead of holding memory for ever.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::{TrustedProxies, client_ip, client_key};

/// How many long streams one process and one client may hold.
#[derive(Debug, Clone, Copy)]
pub struct StreamCaps {
    /// In all.
    pub per_process: usize,
    /// From one client address; 0 for no limit.
    pub per_client: u32,
}

/// Whose cap a refused stream met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamsFull {
    /// This process holds as many as it may (another replica may have room).
    Process,
    /// This client address holds as many as it may.
    Client,
}

impl StreamsFull {
    /// Whose streams, for a message: `this server (…)` or `this address`.
    pub fn whose(self) -> &'static str {
        match self {
            Self::Process => "this server (another replica may have room)",
            Self::Client => "this address",
        }
    }
}

/// Long streams open per client address.
type Clients = Arc<Mutex<HashMap<IpAddr, u32>>>;

/// The places of one process.
#[derive(Debug)]
pub struct StreamPlaces {
    places: Arc<Semaphore>,
    clients: Clients,
    per_client: u32,
    trusted: TrustedProxies,
    open: Gauge,
}

/// A stream's place: given back when dropped.
#[derive(Debug)]
pub struct StreamPlace {
    _place: OwnedSemaphorePermit,
    client: Option<(IpAddr, Clients)>,
    open: Gauge,
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        self.open.dec();
        if let Some((client, clients)) = &self.client {
            let mut clients = clients.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = clients.get_mut(client) {
                *count -= 1;
                if *count == 0 {
                    clients.remove(client);
                }
            }
        }
    }
}

impl StreamPlaces {
    /// Places as `caps` say; `trusted` proxies' `X-Forwarded-For` names the client.
    pub fn new(caps: StreamCaps, trusted: TrustedProxies) -> Self {
        Self {
            places: Arc::new(Semaphore::new(caps.per_process)),
            clients: Arc::default(),
            per_client: caps.per_client,
            trusted,
            open: Gauge::default(),
        }
    }

    /// Streams open now (for `/metrics`).
    pub fn open(&self) -> Gauge {
        self.open.clone()
    }

    /// A place for a stream of the request's client, or which cap is full.
    pub fn take<T>(&self, request: &tonic::Request<T>) -> Result<StreamPlace, StreamsFull> {
        let place =
            Arc::clone(&self.places).try_acquire_owned().map_err(|_| StreamsFull::Process)?;
        let peer = request.remote_addr().map(|addr| addr.ip());
        let client = client_ip(peer, request.metadata(), &self.trusted).map(client_key);
        let client = match client {
            Some(client) if self.per_client > 0 => client,
            _ => return Ok(self.opened(place, None)),
        };
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let count = clients.entry(client).or_insert(0);
        if *count >= self.per_client {
            return Err(StreamsFull::Client);
        }
        *count += 1;
        Ok(self.opened(place, Some((client, Arc::clone(&self.clients)))))
    }

    fn opened(
        &self,
        place: OwnedSemaphorePermit,
        client: Option<(IpAddr, Clients)>,
    ) -> StreamPlace {
        self.open.inc();
        StreamPlace { _place: place, client, open: self.open.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(address: &str) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        let addr: std::net::SocketAddr = format!("{address}:1234").parse().unwrap();
        request.extensions_mut().insert(tonic::transport::server::TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(addr),
        });
        request
    }

    #[test]
    fn places_are_capped_per_client_and_per_process_and_given_back() {
        let places = StreamPlaces::new(
            StreamCaps { per_process: 3, per_client: 2 },
            TrustedProxies::default(),
        );
        let a1 = places.take(&from("192.0.2.1")).unwrap();
        let _a2 = places.take(&from("192.0.2.1")).unwrap();
        assert_eq!(places.take(&from("192.0.2.1")).unwrap_err(), StreamsFull::Client);
        let _b1 = places.take(&from("192.0.2.2")).unwrap();
        assert_eq!(places.take(&from("192.0.2.3")).unwrap_err(), StreamsFull::Process);
        assert_eq!(places.open().get(), 3);
        drop(a1);
        assert_eq!(places.open().get(), 2);
        let _a3 = places.take(&from("192.0.2.1")).unwrap();
    }
}
