//! `k8s/` checked without a cluster (none can run on these machines): every overlay rendered by
//! the pinned kustomize (`kubectl kustomize`), validated strictly against the Kubernetes schema
//! (`kubernetes-validate`), and linted (`checkov`, each skipped check named in the manifest with
//! its reason). The rendered manifests are left in `target/k8s/` for a look.

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
