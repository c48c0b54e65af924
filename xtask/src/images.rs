//! `cargo xtask images`: the three services as OCI images, `FROM scratch` with one static binary
//! (musl) each and a numeric non-root user: the runtime stages of `images/Dockerfile`, built by
//! podman without a daemon (`--storage-driver vfs`; running containers is not possible on the
//! machines this is built on) and saved as OCI archives in `target/images/`. The binaries are
//! built here and handed to podman as the Dockerfile's `build` stage (a build context of that
//! name), since that stage's Rust image cannot be pulled here; Docker users run it as written.
//!
//! Then the proof that they are self-contained: each archive is unpacked, its layers extracted
//! into an otherwise empty folder, and the three binaries run from those folders (`chroot`, as
//! their image's user) wired to each other; the store front's REST film endpoint must answer
//! with a film, which takes all three.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Result, cargo, root, run, tools};

/// The target the binaries are built for: static, with nothing to find at run time.
const TARGET: &str = "x86_64-unknown-linux-musl";
/// The services, and the user their images run as.
const SERVICES: [&str; 3] = ["catalogue", "stock", "aggregator"];
const USER: &str = "10001:10001";

/// Builds, saves and checks the images.
pub(crate) fn build() -> Result {
    tools::ensure_image_tools(TARGET)?;
    if !root().join("dist/index.html").is_file() {
        tools::ensure(false)?;
        tools::build_web()?;
    }
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "--target", TARGET]);
    for service in SERVICES {
        build.args(["-p", service]);
    }
    run(build, &format!("building the services for {TARGET}"))?;
    let out = root().join("target/images");
    // What the Dockerfile's `build` stage leaves in /out.
    let stage = out.join("build");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("out/tmp")).map_err(|e| format!("{e}"))?;
    for service in SERVICES {
        let binary = root().join("target").join(TARGET).join("release").join(service);
        std::fs::copy(&binary, stage.join("out").join(service))
            .map_err(|e| format!("{}: {e}", binary.display()))?;
    }
    copy_dir(&root().join("dist"), &stage.join("out/web"))?;
    for service in SERVICES {
        let tag = format!("videostore/{service}:dev");
        let mut image = podman();
        image
            .args(["build", "--quiet", "--target", service, "-t", &tag])
            .arg("--build-context")
            .arg(format!("build={}", stage.display()))
            .arg("-f")
            .arg(root().join("images/Dockerfile"))
            .arg(&stage);
        run(image, &format!("podman build of {tag}"))?;
        let archive = out.join(format!("{service}.tar"));
        let _ = std::fs::remove_file(&archive);
        let mut save = podman();
        save.args(["save", "--quiet", "--format", "oci-archive", "-o"]).arg(&archive).arg(&tag);
        run(save, &format!("podman save of {tag}"))?;
        let size = std::fs::metadata(&archive).map_err(|e| format!("{e}"))?.len();
        eprintln!("xtask: {tag}: {} ({:.1} MiB)", archive.display(), size as f64 / 1048576.0);
    }
    check(&out)
}

fn podman() -> Command {
    let mut command = Command::new("podman");
    command.args(["--storage-driver", "vfs"]);
    command
}

/// Runs the three images' binaries, each from its own unpacked image, and asks for a film.
fn check(out: &Path) -> Result {
    let ports: Vec<u16> = SERVICES.iter().map(|_| free_port()).collect::<Result<_>>()?;
    let mut running = Running(Vec::new());
    for (service, port) in SERVICES.iter().zip(&ports) {
        let rootfs = out.join(format!("{service}-root"));
        unpack(&out.join(format!("{service}.tar")), &rootfs)?;
        // By its path: the environment is cleared, PATH with it.
        let mut command = Command::new("/usr/sbin/chroot");
        command
            .arg(format!("--userspec={USER}"))
            .arg(&rootfs)
            .arg(format!("/app/{service}"))
            .env_clear()
            .env(format!("{}_LISTEN_ADDR", service.to_uppercase()), format!("127.0.0.1:{port}"))
            .env("VIDEOSTORE_DATA_DIR", "/tmp/data")
            .env("AGGREGATOR_WEB_DIR", "/app/web")
            .env("CATALOGUE_SERVICE_ADDR", format!("http://127.0.0.1:{}", ports[0]))
            .env("STOCK_SERVICE_ADDR", format!("http://127.0.0.1:{}", ports[1]))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        let child = command.spawn().map_err(|e| format!("chroot {service}: {e}"))?;
        running.0.push(child);
    }
    let started = Instant::now();
    loop {
        match get(ports[2], "/api/movies/1") {
            Ok(answer) if answer.starts_with("HTTP/1.1 200") && answer.contains("\"title\"") => {
                eprintln!(
                    "xtask: the images' binaries, each alone in its unpacked image, serve a film \
                     ({:.1} s after starting)",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            _ if started.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_millis(200));
            }
            answer => {
                return Err(format!(
                    "the images' binaries did not serve a film within a minute: {answer:?}"
                ));
            }
        }
    }
}

/// The processes started from the images; ended (by PID) when dropped.
struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Extracts every layer of the OCI archive `archive` into `rootfs` (emptied first).
fn unpack(archive: &Path, rootfs: &Path) -> Result {
    let layout = rootfs.with_extension("oci");
    for dir in [&layout, &rootfs.to_path_buf()] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut untar = Command::new("tar");
    untar.arg("-xf").arg(archive).arg("-C").arg(&layout);
    run(untar, "unpacking an image archive")?;
    let json = |path: PathBuf| -> Result<serde_json::Value> {
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let blob = |digest: &serde_json::Value| -> Result<PathBuf> {
        let digest = digest.as_str().ok_or("a digest is not a string")?;
        let (algorithm, hex) = digest.split_once(':').ok_or("a digest without an algorithm")?;
        Ok(layout.join("blobs").join(algorithm).join(hex))
    };
    let index = json(layout.join("index.json"))?;
    let manifest = json(blob(&index["manifests"][0]["digest"])?)?;
    let layers = manifest["layers"].as_array().ok_or("an image manifest without layers")?;
    for layer in layers {
        let mut extract = Command::new("tar");
        extract.arg("-xf").arg(blob(&layer["digest"])?).arg("-C").arg(rootfs);
        run(extract, "extracting an image layer")?;
    }
    Ok(())
}

pub(crate) fn free_port() -> Result<u16> {
    front_door::free_port().map_err(|e| format!("a free port: {e}"))
}

/// A plain HTTP/1.1 GET on 127.0.0.1: the status line, headers and body as text.
fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

fn copy_dir(from: &Path, to: &Path) -> Result {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| format!("{e}"))?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| format!("{}: {e}", target.display()))?;
        }
    }
    Ok(())
}
