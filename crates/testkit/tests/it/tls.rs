//! TLS on the services' ports, with certificates from a throwaway CA made here: gRPC, gRPC-Web
//! over HTTP/1.1 and REST over TLS; the store front reaching catalogue and stock over TLS,
//! checking them against the CA; and clients that trust another CA, or speak plain HTTP,
//! refused.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use testkit::grpc_web;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use videostore_kit::config::{DataConfig, ServerConfig};
use videostore_proto::{
    aggregator::{self as agg, storefront_service_client::StorefrontServiceClient},
    catalogue::{self as cat, catalogue_service_client::CatalogueServiceClient},
};

/// A CA, a certificate it signed for localhost and 127.0.0.1, and another CA.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    pub(crate) other_ca_pem: String,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let authority = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
            (params.self_signed(&key).unwrap(), key)
        };
        let (ca, ca_key) = authority("videostore test CA");
        let (other, _) = authority("someone else's CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let cert =
            rcgen::CertificateParams::new(names).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self { dir, ca_pem: ca.pem(), other_ca_pem: other.pem() }
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn server(&self) -> ServerConfig {
        ServerConfig {
            tls_cert: Some(self.path("cert.pem")),
            tls_key: Some(self.path("key.pem")),
            ..ServerConfig::for_tests("127.0.0.1:0".parse().unwrap())
        }
    }
}

async fn grpc_channel(addr: SocketAddr, ca_pem: &str) -> Result<Channel, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_speak_tls_to_callers_and_to_each_other() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let data_config = DataConfig {
        data_dir: data.path().to_path_buf(),
        // The key pair the first service makes in the data folder, as on a laptop.
        token_verify_keys: None,
        database_pool: 8,
    };
    let catalogue = catalogue::startup::Application::build(
        catalogue::config::Config {
            server: pki.server(),
            seed: true,
            ..testkit::TestStore::catalogue_config(data.path())
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let catalogue_addr = catalogue.local_addr();
    tokio::spawn(catalogue.run());
    let stock = stock::startup::Application::build(
        stock::config::Config {
            server: pki.server(),
            data: data_config,
            signing: videostore_kit::config::SigningConfig { token_signing_key: None },
            database_url: None,
            token_ttl_minutes: 60,
            refresh_ttl_hours: 24,
            max_open_rentals: 10,
            max_purchases_per_day: 20,
            sign_ins_per_minute: 0,
            writes_per_minute: 0,
            max_watches: 20_000,
            watches_per_client: 100,
            seed: true,
            staff_email: None,
            staff_password: None,
            staff_promote_existing: false,
            mail_dir: None,
            smtp_url: None,
            smtp_ca: None,
            mail_from: None,
            public_url: "https://shop.test".into(),
            watch_heartbeat_ms: 15_000,
            request_id_ttl_hours: 24,
        },
        Arc::new(stock::clock::SystemClock),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let stock_addr = stock.local_addr();
    tokio::spawn(stock.run());
    // The store front calls both by name over TLS, checking their certificate against the CA.
    let aggregator = aggregator::startup::Application::build(
        aggregator::config::Config {
            server: pki.server(),
            catalogue_addr: format!("https://localhost:{}", catalogue_addr.port()),
            stock_addr: format!("https://localhost:{}", stock_addr.port()),
            tls_ca: Some(pki.path("ca.pem")),
            stock_timeout_ms: 2_000,
            default_deadline_ms: 3_000,
            web_dir: testkit::web_dir(),
            public_catalogue_url: None,
            public_stock_url: None,
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let aggregator_addr = aggregator.local_addr();
    tokio::spawn(aggregator.run());

    // gRPC (HTTP/2) over TLS, while another client connected and never says hello: handshakes
    // do not wait for each other (the silent one would hold a queue for 10 s).
    let _silent = tokio::net::TcpStream::connect(catalogue_addr).await.unwrap();
    let film = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let channel = grpc_channel(catalogue_addr, &pki.ca_pem).await.unwrap();
        CatalogueServiceClient::new(channel).get_movie(cat::GetMovieRequest { id: 3 }).await
    })
    .await
    .expect("a silent client holds up nobody")
    .unwrap()
    .into_inner();
    assert_eq!(film.id, 3);

    // gRPC-Web over HTTP/1.1 over TLS, as a browser without HTTP/2 would call it.
    let https = https_client(&pki.ca_pem);
    let reply = grpc_web::call_with(
        &https,
        &format!("https://localhost:{}", catalogue_addr.port()),
        "/videostore.catalogue.v1.CatalogueService/GetMovie",
        &cat::GetMovieRequest { id: 3 },
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(reply.version, reqwest::Version::HTTP_11);
    assert_eq!(reply.grpc_status(), Some(0), "{}", reply.grpc_message());
    assert_eq!(reply.decode::<cat::Movie>()[0].title, film.title);

    // The store front's page needs catalogue and stock, both reached over TLS.
    let channel = grpc_channel(aggregator_addr, &pki.ca_pem).await.unwrap();
    let page = StorefrontServiceClient::new(channel)
        .get_movie_page(agg::GetMoviePageRequest { movie_id: 3, related_limit: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.movie.unwrap().title, film.title);
    assert!(page.stock.and_then(|stock| stock.availability).is_some(), "stock answered");

    // REST over TLS.
    let rest = https
        .get(format!("https://localhost:{}/api/movies/3", aggregator_addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 200);
    let body: serde_json::Value = rest.json().await.unwrap();
    assert_eq!((body["id"].as_i64(), body["title"].as_str()), (Some(3), Some(film.title.as_str())));

    // Someone else's CA is refused, and so is plain HTTP on a TLS port.
    assert!(grpc_channel(catalogue_addr, &pki.other_ca_pem).await.is_err());
    let wrong = https_client(&pki.other_ca_pem)
        .get(format!("https://localhost:{}/api/movies/3", aggregator_addr.port()))
        .send()
        .await;
    assert!(wrong.is_err(), "{wrong:?}");
    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{}/api/movies/3", aggregator_addr.port()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    shutdown.cancel();
}
