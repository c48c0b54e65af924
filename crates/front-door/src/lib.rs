//! The store's front door on a laptop: Debian's nginx in front of the services with the same
//! routing table as the Kubernetes Ingress (`k8s/base/ingress.yaml`), so the production shape
//! can be tried, and tested, without a cluster.
//!
//! - One HTTPS host. Browsers speak HTTP/2 to it, so a page is not held to six connections
//!   (live streams included) as it would be over HTTP/1.1.
//! - Paths route like gRPC names methods (`/package.Service/Method`): the catalogue's and
//!   stock's services to them, everything else to the store front (the app, REST, its
//!   gRPC-Web). Health and reflection are not routed to catalogue or stock; the store front
//!   serves them on its admin port only.
//! - HTTP/1.1 to the backends (tonic-web), no buffering either way (live streams), timeouts of
//!   an hour for idle streams, N replicas of each service balanced per request, a replica that
//!   refuses connections skipped for a second.
//!
//! [`ROUTES`] and the other constants are the one source: `cargo xtask k8s` checks that the
//! rendered Ingress says the same.

use std::{
    fmt::Write as _,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A service behind the front door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The catalogue's replicas.
    Catalogue,
    /// Stock's replicas.
    Stock,
    /// The store front's replicas.
    Aggregator,
}

impl Upstream {
    /// The name of its Kubernetes Service (and of its nginx upstream).
    pub fn name(self) -> &'static str {
        match self {
            Self::Catalogue => "catalogue",
            Self::Stock => "stock",
            Self::Aggregator => "aggregator",
        }
    }

    /// The name of the Service port the Ingress sends to.
    pub fn port_name(self) -> &'static str {
        match self {
            Self::Catalogue | Self::Stock => "grpc",
            Self::Aggregator => "http",
        }
    }
}

/// A path prefix (Kubernetes `pathType: Prefix`: the path itself, or it followed by `/…`) and
/// where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `/package.Service`, or `/` for everything else.
    pub prefix: &'static str,
    /// Where it goes.
    pub upstream: Upstream,
}

/// The routing table of the public host (the Ingress's, and the front door's).
pub const ROUTES: &[Route] = &[
    Route { prefix: "/videostore.catalogue.v1.CatalogueService", upstream: Upstream::Catalogue },
    Route { prefix: "/videostore.stock.v1.StockService", upstream: Upstream::Stock },
    Route { prefix: "/videostore.stock.v1.AccountService", upstream: Upstream::Stock },
    Route { prefix: "/", upstream: Upstream::Aggregator },
];

/// How long a stream may stay silent before the proxy closes it, in seconds. Stock's live
/// streams send a heartbeat every 15 s, well inside it.
pub const STREAM_TIMEOUT_SECS: u64 = 3600;

/// The largest request body the proxy passes on (staff imports stream in several messages).
pub const BODY_LIMIT: &str = "4m";

/// The replicas of each service.
#[derive(Debug, Clone, Default)]
pub struct Backends {
    /// Catalogue replicas.
    pub catalogue: Vec<SocketAddr>,
    /// Stock replicas.
    pub stock: Vec<SocketAddr>,
    /// Store front replicas.
    pub aggregator: Vec<SocketAddr>,
}

impl Backends {
    fn of(&self, upstream: Upstream) -> &[SocketAddr] {
        match upstream {
            Upstream::Catalogue => &self.catalogue,
            Upstream::Stock => &self.stock,
            Upstream::Aggregator => &self.aggregator,
        }
    }
}

/// nginx's configuration for the front door, with its files (certificate, logs, pid, temp
/// folders) in `dir`.
pub fn nginx_config(dir: &Path, listen: SocketAddr, backends: &Backends) -> String {
    let dir = dir.display();
    let mut conf = String::new();
    // Under root, nginx's workers would run as `nobody`, who cannot enter a private folder.
    if running_as_root() {
        conf.push_str("user root;\n");
    }
    let _ = write!(
        conf,
        "daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/temp/body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;
    types {{ }}
    default_type application/octet-stream;
    server_tokens off;
"
    );
    for upstream in [Upstream::Catalogue, Upstream::Stock, Upstream::Aggregator] {
        let _ = writeln!(conf, "    upstream {} {{", upstream.name());
        for addr in backends.of(upstream) {
            // A replica that refuses a connection is left out for a second, then tried again
            // (a refused connection costs little; a longer pause, with every replica just
            // restarted, would answer 502 for that long).
            let _ = writeln!(conf, "        server {addr} max_fails=1 fail_timeout=1s;");
        }
        conf.push_str("        keepalive 32;\n    }\n");
    }
    let _ = write!(
        conf,
        "    server {{
        listen {listen} ssl http2;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size {BODY_LIMIT};
        keepalive_timeout {STREAM_TIMEOUT_SECS}s;
        # HTTP/1.1 to tonic-web, on kept-alive connections.
        proxy_http_version 1.1;
        proxy_set_header Connection \"\";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # Live streams: every message passes at once, in both directions.
        proxy_buffering off;
        proxy_request_buffering off;
        proxy_read_timeout {STREAM_TIMEOUT_SECS}s;
        proxy_send_timeout {STREAM_TIMEOUT_SECS}s;
        proxy_connect_timeout 5s;
"
    );
    for route in ROUTES {
        let upstream = route.upstream.name();
        if route.prefix == "/" {
            let _ = writeln!(conf, "        location / {{ proxy_pass http://{upstream}; }}");
        } else {
            let prefix = route.prefix;
            let _ =
                writeln!(conf, "        location = {prefix} {{ proxy_pass http://{upstream}; }}");
            let _ =
                writeln!(conf, "        location {prefix}/ {{ proxy_pass http://{upstream}; }}");
        }
    }
    conf.push_str("    }\n}\n");
    conf
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // `/proc/self` belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Where Debian's nginx is (`cargo xtask tools` installs it).
pub const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx front door.
pub struct FrontDoor {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl FrontDoor {
    /// Writes the configuration into `dir` (and a local CA and certificate for `localhost` and
    /// 127.0.0.1, unless `dir` already holds them), starts nginx on `listen`, and waits until it
    /// accepts connections.
    pub fn start(dir: &Path, listen: SocketAddr, backends: &Backends) -> anyhow::Result<Self> {
        for upstream in [Upstream::Catalogue, Upstream::Stock, Upstream::Aggregator] {
            if backends.of(upstream).is_empty() {
                bail!("the front door needs at least one {} address", upstream.name());
            }
        }
        if listen.port() == 0 {
            bail!("nginx cannot report the port it picked: choose one (see `free_port`)");
        }
        std::fs::create_dir_all(dir.join("temp"))
            .with_context(|| format!("creating {}", dir.display()))?;
        Certificate::ensure(dir)?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_config(dir, listen, backends))
            .with_context(|| format!("writing {}", conf.display()))?;
        let error_log = dir.join("error.log");
        let mut child = Command::new(NGINX)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            // Before the configuration is read, nginx logs to its compiled-in file (under
            // /var/log, not writable by everyone); `-e` sends that to the folder too.
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {NGINX} (install it: `cargo xtask tools`)"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                bail!("nginx exited at start ({status}): {log}");
            }
            if TcpStream::connect_timeout(&listen, Duration::from_millis(100)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("nginx did not listen on {listen} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, addr: listen, dir: dir.to_path_buf() })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA that signed its certificate (PEM), for clients to trust.
    pub fn ca_pem(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(self.dir.join("ca.pem")).context("reading the front door's CA")
    }

    /// The process id of nginx's master.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether nginx is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops nginx (fast shutdown: open streams are closed) and waits for it.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if self.is_running() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A port on 127.0.0.1 free a moment ago (nginx cannot be given port 0 and say which it took).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The front door's certificate files in a folder: `ca.pem` (to trust), `cert.pem`, `key.pem`.
struct Certificate;

impl Certificate {
    /// Makes a local CA and a certificate it signs for `localhost` and 127.0.0.1, unless the
    /// folder has them (so a browser told to trust the CA once keeps trusting it).
    fn ensure(dir: &Path) -> anyhow::Result<()> {
        let files = ["ca.pem", "cert.pem", "key.pem"].map(|file| dir.join(file));
        if files.iter().all(|file| file.is_file()) {
            return Ok(());
        }
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        ca.distinguished_name.push(rcgen::DnType::CommonName, "Video store local CA");
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca = ca.self_signed(&ca_key)?;
        let key = rcgen::KeyPair::generate()?;
        let mut leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        leaf.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &ca, &ca_key)?;
        write_private(&files[2], &key.serialize_pem())?;
        std::fs::write(&files[1], cert.pem())?;
        std::fs::write(&files[0], ca.pem())?;
        Ok(())
    }
}

/// Writes a file only its owner can read (created afresh).
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_routes_every_prefix_and_lists_every_replica() {
        let backends = Backends {
            catalogue: vec!["127.0.0.1:1001".parse().unwrap(), "127.0.0.1:1002".parse().unwrap()],
            stock: vec!["127.0.0.1:2001".parse().unwrap()],
            aggregator: vec!["127.0.0.1:3001".parse().unwrap()],
        };
        let conf = nginx_config(Path::new("/d"), "127.0.0.1:8443".parse().unwrap(), &backends);
        for addr in ["127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:2001", "127.0.0.1:3001"] {
            assert!(conf.contains(&format!("server {addr} ")), "{addr} missing:\n{conf}");
        }
        assert!(conf.contains(
            "location /videostore.stock.v1.AccountService/ { proxy_pass http://stock; }"
        ));
        assert!(conf.contains("location / { proxy_pass http://aggregator; }"));
        assert!(conf.contains("listen 127.0.0.1:8443 ssl http2;"));
    }

    #[test]
    fn a_certificate_is_made_once_and_its_key_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        Certificate::ensure(dir.path()).unwrap();
        let first = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        Certificate::ensure(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(), first);
        let mode = std::fs::metadata(dir.path().join("key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
