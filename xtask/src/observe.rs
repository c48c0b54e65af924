//! `cargo xtask up --observe`: Debian's Prometheus beside the store, scraping every service's
//! `/metrics` and evaluating the recording rules in `k8s/components/observability/prometheus/rules.yml` (request
//! rate, error ratio and p99 per RPC). Its data lives in `data/prometheus`; its page is printed.
//!
//! `check` (part of `cargo xtask test`): `promtool` checks the rules, runs their unit tests
//! (`rules.test.yml`) and checks a configuration as `up --observe` writes it.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use crate::{Result, root, run, tools};

/// The recording rules.
fn rules() -> PathBuf {
    root().join("k8s/components/observability/prometheus/rules.yml")
}

/// A Prometheus configuration scraping each `(job, addresses)` every 5 s.
fn config(jobs: &[(&str, Vec<String>)]) -> String {
    let mut text = format!(
        "# Written by `cargo xtask up --observe`; rewritten at every start.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 15s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n",
        rules().display()
    );
    for (job, addresses) in jobs {
        let targets =
            addresses.iter().map(|address| format!("'{address}'")).collect::<Vec<_>>().join(", ");
        text.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: [{targets}]\n"
        ));
    }
    text
}

/// Prometheus, running.
pub(crate) struct Prometheus {
    child: Child,
    /// Its web page.
    pub(crate) url: String,
}

impl Prometheus {
    /// Starts Prometheus on `listen`, keeping its data under `data/prometheus`, scraping `jobs`;
    /// returns once it answers (within 30 s).
    pub(crate) fn start(data: &Path, listen: &str, jobs: &[(&str, Vec<String>)]) -> Result<Self> {
        tools::ensure_prometheus()?;
        let dir = data.join("prometheus");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config(jobs)).map_err(|e| format!("{}: {e}", file.display()))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--log.level=warn")
            .spawn()
            .map_err(|e| format!("starting prometheus: {e}"))?;
        let mut prometheus = Self { child, url: format!("http://{listen}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(listen).is_err() {
            if !prometheus.is_running() {
                return Err("prometheus exited during start-up (see its log above)".into());
            }
            if Instant::now() > deadline {
                prometheus.stop();
                return Err(format!("prometheus did not listen on {listen} within 30 s"));
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(prometheus)
    }

    /// Whether it is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it (SIGTERM: it writes its data out), waiting at most 10 s.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }
}

/// The rules checked and unit-tested, and a configuration as `up --observe` writes it checked.
pub(crate) fn check() -> Result {
    tools::ensure_prometheus()?;
    let mut rules_check = Command::new("promtool");
    rules_check.args(["check", "rules"]).arg(rules());
    run(rules_check, "promtool check rules")?;
    let mut rules_test = Command::new("promtool");
    rules_test
        .args(["test", "rules", "rules.test.yml"])
        .current_dir(root().join("k8s/components/observability/prometheus"));
    run(rules_test, "promtool test rules")?;
    let dir = root().join("target/observe");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join("prometheus.yml");
    let jobs = [
        ("catalogue", vec!["127.0.0.1:50051".to_owned(), "127.0.0.1:50061".to_owned()]),
        ("stock", vec!["127.0.0.1:50052".to_owned()]),
        ("aggregator", vec!["127.0.0.1:8080".to_owned()]),
    ];
    std::fs::write(&file, config(&jobs)).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut config_check = Command::new("promtool");
    config_check.args(["check", "config"]).arg(&file);
    run(config_check, "promtool check config (as up --observe writes it)")?;
    dashboard_queries_parse(&dir)
}

/// The Grafana dashboard is JSON whose every query is PromQL that Prometheus accepts, using
/// only recording rules that exist: `promtool check rules` on its queries as rules.
fn dashboard_queries_parse(dir: &Path) -> Result {
    let path = root().join("k8s/components/observability/grafana/videostore-red.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let rules = std::fs::read_to_string(rules()).map_err(|e| format!("rules.yml: {e}"))?;
    let mut checked = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut count = 0;
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str().filter(|expr| !expr.trim().is_empty()) else {
                return Err(format!(
                    "dashboard panel {:?} has a target without a query",
                    panel["title"]
                ));
            };
            // Recording rules it reads must exist.
            for word in expr.split(|c: char| !(c.is_alphanumeric() || c == ':' || c == '_')) {
                if word.starts_with("videostore:") && !rules.contains(&format!("record: {word}\n"))
                {
                    return Err(format!("the dashboard reads {word}, which no rule records"));
                }
            }
            // The variable as Grafana fills it for "All".
            let expr = expr.replace("$service", ".*");
            checked.push_str(&format!(
                "      - record: dashboard:query_{count}\n        expr: {}\n",
                serde_json::to_string(&expr).expect("a string")
            ));
            count += 1;
        }
    }
    if count == 0 {
        return Err("the dashboard has no queries".into());
    }
    let file = dir.join("dashboard-queries.yml");
    std::fs::write(&file, checked).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut check = Command::new("promtool");
    check.args(["check", "rules"]).arg(&file);
    run(check, "promtool check rules (the Grafana dashboard's queries)")
}
