//! The store behind the front door (Debian's nginx with the Ingress's routes, HTTPS and HTTP/2),
//! with replicas of catalogue and stock: the production shape, on 127.0.0.1.
//!
//! Stock's replicas behind the door each run on a Tokio runtime of their own, so that a test
//! can kill one like a crashed process: every task and socket of it goes at once, open streams
//! end without trailers, and the port refuses connections.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use front_door::{Backends, FrontDoor};
use tokio_util::sync::CancellationToken;

use crate::{Backend, Service, TestStore};

/// A stock server on a runtime of its own.
pub struct IsolatedStock {
    /// Where it listens.
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl IsolatedStock {
    /// Kills it at once, like `kill -9` of its process (dropping it does the same).
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for IsolatedStock {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// [`TestStore`] behind the front door.
pub struct FrontedStore {
    /// The store: its catalogue is one of the catalogue replicas behind the door; its own stock
    /// server is not behind it (on SQLite it is the only one, and is).
    pub store: TestStore,
    /// More catalogue replicas behind the door.
    pub catalogue_replicas: Vec<Service>,
    /// Stock replicas behind the door (PostgreSQL only), by index; `None` while killed.
    pub stock_replicas: Vec<Option<IsolatedStock>>,
    stock_addrs: Vec<SocketAddr>,
    /// The store front behind the door, with health and reflection on a private port.
    pub aggregator: Service,
    /// The store front's private port.
    pub aggregator_admin: SocketAddr,
    /// nginx.
    pub door: FrontDoor,
    _dir: tempfile::TempDir,
}

impl FrontedStore {
    /// The store on `backend` with `replicas` of catalogue and stock (more than one needs
    /// PostgreSQL), one store front, and nginx in front of them on a free port.
    pub async fn start(backend: Backend, replicas: usize) -> Self {
        assert!(replicas >= 1);
        assert!(replicas == 1 || backend == Backend::Postgres, "replicas share PostgreSQL");
        let store = TestStore::start_on(backend).await;
        let mut catalogue_replicas = Vec::new();
        let mut stock_replicas = Vec::new();
        let mut stock_addrs = Vec::new();
        if backend == Backend::Postgres {
            for _ in 1..replicas {
                catalogue_replicas.push(store.spawn_catalogue_replica().await);
            }
            for _ in 0..replicas {
                let replica = spawn_isolated_stock(&store, "127.0.0.1:0".parse().unwrap()).await;
                stock_addrs.push(replica.addr);
                stock_replicas.push(Some(replica));
            }
        } else {
            stock_addrs.push(store.stock().addr);
        }
        let catalogue_addrs: Vec<SocketAddr> = std::iter::once(store.catalogue.addr)
            .chain(catalogue_replicas.iter().map(|replica| replica.addr))
            .collect();
        let list = |addrs: &[SocketAddr]| {
            addrs.iter().map(|addr| format!("http://{addr}")).collect::<Vec<_>>().join(",")
        };
        let mut config = TestStore::aggregator_config(
            &list(&catalogue_addrs),
            &list(&stock_addrs),
            Duration::from_millis(300),
        );
        config.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        config.public_catalogue_url = Some("/".into());
        config.public_stock_url = Some("/".into());
        let (aggregator, admin) = TestStore::spawn_aggregator_with(config).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let backends = Backends {
            catalogue: catalogue_addrs,
            stock: stock_addrs.clone(),
            aggregator: vec![aggregator.addr],
        };
        let listen: SocketAddr =
            format!("127.0.0.1:{}", front_door::free_port().unwrap()).parse().unwrap();
        let path = dir.path().to_path_buf();
        let door = tokio::task::spawn_blocking(move || FrontDoor::start(&path, listen, &backends))
            .await
            .unwrap()
            .expect("nginx starts (cargo xtask test installs Debian's nginx)");
        Self {
            store,
            catalogue_replicas,
            stock_replicas,
            stock_addrs,
            aggregator,
            aggregator_admin: admin.expect("an admin address"),
            door,
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.door.url()
    }

    /// An HTTP client that trusts the front door's CA and speaks HTTP/2 to it (by ALPN).
    pub fn https_client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.door.ca_pem().unwrap().as_bytes()).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .build()
            .unwrap()
    }

    /// Kills stock replica `index` at once.
    pub fn kill_stock(&mut self, index: usize) {
        self.stock_replicas[index].take().expect("the replica runs").kill();
    }

    /// Starts stock replica `index` again, on its port.
    pub async fn restart_stock(&mut self, index: usize) {
        assert!(self.stock_replicas[index].is_none(), "the replica runs");
        let replica = spawn_isolated_stock(&self.store, self.stock_addrs[index]).await;
        self.stock_replicas[index] = Some(replica);
    }

    /// Stops everything.
    pub async fn stop(self) {
        self.door.stop();
        self.aggregator.stop().await;
        drop(self.stock_replicas);
        for replica in self.catalogue_replicas {
            replica.stop().await;
        }
        self.store.stop().await;
    }
}

/// A stock replica on `listen`, on the store's PostgreSQL database, on a runtime of its own.
async fn spawn_isolated_stock(store: &TestStore, listen: SocketAddr) -> IsolatedStock {
    let config = crate::stock_config(
        store.dir.path(),
        &store.keys,
        listen,
        store.heartbeat_ms,
        store.stock_database.clone(),
    );
    let clock: Arc<dyn stock::clock::Clock> = store.clock.clone();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let app = runtime
            .block_on(stock::startup::Application::build(config, clock, CancellationToken::new()))
            .expect("stock starts");
        let addr = app.local_addr();
        runtime.spawn(app.run());
        let _ = sender.send(IsolatedStock { addr, runtime: Some(runtime) });
    });
    receiver.await.expect("the replica's thread hands it over")
}
