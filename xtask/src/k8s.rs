//! `k8s/` checked without a cluster (none can run on these machines): every overlay rendered by
//! the pinned kustomize (`kubectl kustomize`), validated strictly against the Kubernetes schema
//! (`kubernetes-validate`), and linted (`checkov`, each skipped check named in the manifest with
//! its reason). The rendered manifests are left in `target/k8s/` for a look.
//!
//! The Ingress must also say what the local front door does (`crates/front-door`, the one
//! source of the routing table): the same paths to the same services, and the same timeouts,
//! buffering and body limit.

use std::{path::Path, process::Command};

use crate::{Result, root, run, tools};

/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.34";

/// Renders, validates and lints every overlay.
pub(crate) fn check() -> Result {
    let bin = tools::ensure_k8s_tools()?;
    let out = root().join("target/k8s");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let overlays = root().join("k8s/overlays");
    let mut names: Vec<String> = std::fs::read_dir(&overlays)
        .map_err(|e| format!("{}: {e}", overlays.display()))?
        .flatten()
        .filter(|entry| entry.path().join("kustomization.yaml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err("k8s/overlays holds no overlay".into());
    }
    for name in names {
        let rendered = render(&bin, &overlays.join(&name))?;
        routes_every_browser_service(&name, &String::from_utf8_lossy(&rendered))?;
        let file = out.join(format!("{name}.yaml"));
        std::fs::write(&file, rendered).map_err(|e| format!("{}: {e}", file.display()))?;
        agrees_with_the_front_door(&name, &documents(&bin, &file)?)?;
        let mut validate = Command::new(bin.join("kubernetes-validate"));
        validate.args(["--kubernetes-version", KUBERNETES, "--strict"]).arg(&file);
        run(validate, &format!("kubernetes-validate of the {name} overlay"))?;
        let mut lint = Command::new(bin.join("checkov"));
        lint.args([
            "--framework",
            "kubernetes",
            "--quiet",
            "--compact",
            "--skip-download",
            "--file",
        ])
        .arg(&file);
        run(lint, &format!("checkov of the {name} overlay"))?;
        eprintln!("xtask: k8s/overlays/{name} renders, validates and lints clean");
    }
    Ok(())
}

/// The browser app calls catalogue and stock directly over gRPC-Web, at the page's own host: the
/// Ingress must route every gRPC service of their contracts (`/package.Service/Method`) to them.
fn routes_every_browser_service(overlay: &str, rendered: &str) -> Result {
    for (package, folder) in
        [("videostore.catalogue.v1", "catalogue"), ("videostore.stock.v1", "stock")]
    {
        let proto = root().join(format!("proto/videostore/{folder}/v1/{folder}.proto"));
        let text =
            std::fs::read_to_string(&proto).map_err(|e| format!("{}: {e}", proto.display()))?;
        for service in text.lines().filter_map(|line| line.strip_prefix("service ")) {
            let service = service.trim_end_matches('{').trim();
            let path = format!("path: /{package}.{service}\n");
            if !rendered.contains(&path) {
                return Err(format!(
                    "the {overlay} overlay's Ingress does not route /{package}.{service}"
                ));
            }
        }
    }
    Ok(())
}

/// The rendered manifests as JSON values (PyYAML, from the tools' venv, reads the YAML).
fn documents(bin: &Path, file: &Path) -> Result<Vec<serde_json::Value>> {
    let output = Command::new(bin.join("python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(file)
        .output()
        .map_err(|e| format!("python: cannot start: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "reading {}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("reading {}: {e}", file.display()))
}

/// The overlay's Ingress routes exactly as `front_door::ROUTES`, with the front door's stream
/// timeouts, unbuffered, and with its body limit.
fn agrees_with_the_front_door(overlay: &str, documents: &[serde_json::Value]) -> Result {
    let ingresses: Vec<&serde_json::Value> =
        documents.iter().filter(|d| d["kind"] == "Ingress").collect();
    let [ingress] = ingresses[..] else {
        return Err(format!("the {overlay} overlay has {} Ingresses, not one", ingresses.len()));
    };
    let mut routes: Vec<(String, String, String, String)> = Vec::new();
    for rule in ingress["spec"]["rules"].as_array().into_iter().flatten() {
        for path in rule["http"]["paths"].as_array().into_iter().flatten() {
            let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
            routes.push((
                text(&path["path"]),
                text(&path["pathType"]),
                text(&path["backend"]["service"]["name"]),
                text(&path["backend"]["service"]["port"]["name"]),
            ));
        }
    }
    let mut expected: Vec<(String, String, String, String)> = front_door::ROUTES
        .iter()
        .map(|route| {
            (
                route.prefix.to_owned(),
                "Prefix".to_owned(),
                route.upstream.name().to_owned(),
                route.upstream.port_name().to_owned(),
            )
        })
        .collect();
    routes.sort();
    expected.sort();
    if routes != expected {
        return Err(format!(
            "the {overlay} overlay's Ingress routes {routes:?}; the front door routes {expected:?}"
        ));
    }
    let annotations = &ingress["metadata"]["annotations"];
    let timeout = front_door::STREAM_TIMEOUT_SECS.to_string();
    for (annotation, value) in [
        ("nginx.ingress.kubernetes.io/backend-protocol", "HTTP"),
        ("nginx.ingress.kubernetes.io/proxy-buffering", "off"),
        ("nginx.ingress.kubernetes.io/proxy-request-buffering", "off"),
        ("nginx.ingress.kubernetes.io/proxy-read-timeout", timeout.as_str()),
        ("nginx.ingress.kubernetes.io/proxy-send-timeout", timeout.as_str()),
        ("nginx.ingress.kubernetes.io/proxy-body-size", front_door::BODY_LIMIT),
    ] {
        if annotations[annotation].as_str() != Some(value) {
            return Err(format!(
                "the {overlay} overlay's Ingress has {annotation}: {}, the front door {value}",
                annotations[annotation]
            ));
        }
    }
    Ok(())
}

fn render(bin: &Path, overlay: &Path) -> Result<Vec<u8>> {
    let output = Command::new(bin.join("kubectl"))
        .arg("kustomize")
        .arg(overlay)
        .output()
        .map_err(|e| format!("kubectl kustomize: cannot start: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "kubectl kustomize {}: {}",
            overlay.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output.stdout)
}
