//! The operator binary as a test's child process: started with the test's arguments against a
//! control plane, killed when dropped, with its log and its /metrics at hand; and the waits a
//! test needs on the objects it reconciles.

use crate::controlplane::die_with_parent;
use crate::pki::Leaf;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(200);

/// What `run` reads from its environment: removed, so that only a test's arguments count.
const FLAG_ENV: [&str; 6] = [
    "WATCH_NAMESPACE",
    "LEASE_NAMESPACE",
    "POD_NAME",
    "POD_NAMESPACE",
    "AUDIT_ROUTES",
    "GENERATE_FROM_ROUTES",
];

/// Overrides the operator's log filter (`RUST_LOG`) in tests, e.g.
/// `kube_runtime=debug,info,httpsdelivery_operator=debug` to follow its watches.
pub const LOG_FILTER_ENV: &str = "HTTPSDELIVERY_OPERATOR_LOG";

fn log_filter() -> String {
    std::env::var(LOG_FILTER_ENV)
        .ok()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "info,httpsdelivery_operator=debug".to_owned())
}

/// The counter of successful reconciles on /metrics.
const RECONCILES_OK: &str = "httpsdelivery_reconciliations_total{outcome=\"ok\"}";

/// A running `httpsdelivery-operator run`; killed when dropped.
pub struct Operator {
    child: Child,
    log: PathBuf,
    metrics_port: u16,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts `bin run --metrics-addr 127.0.0.1:PORT ARGS...` with `KUBECONFIG=kubeconfig`, and
    /// debug logs of the operator's own module (so that a refused watch or a skipped write
    /// shows in a failure message), or the filter in `$HTTPSDELIVERY_OPERATOR_LOG`.
    pub fn start<I, S>(bin: impl AsRef<Path>, kubeconfig: impl AsRef<Path>, args: I) -> Operator
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let bin = bin.as_ref();
        let dir = tempfile::Builder::new()
            .prefix("hd-operator-")
            .tempdir()
            .unwrap_or_else(|e| panic!("a temp dir for the operator's log: {e}"));
        let log = dir.path().join("operator.log");
        let log_file =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let metrics_port = crate::free_port();
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            .args(args)
            .env("KUBECONFIG", kubeconfig.as_ref())
            .env("RUST_LOG", log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for var in FLAG_ENV {
            cmd.env_remove(var);
        }
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Operator {
            child,
            log,
            metrics_port,
            _dir: dir,
        }
    }

    /// Starts it probing the loopback `world` (its probe flags), on `namespace` or on all of
    /// them, followed by `extra`. Observations are not shared across reconciles (a cache window
    /// of 0s), so that a reconcile a test causes sees the world as the test just made it.
    pub fn start_in_world(
        bin: impl AsRef<Path>,
        kubeconfig: impl AsRef<Path>,
        world: &crate::world::World,
        namespace: Option<&str>,
        extra: &[&str],
    ) -> Operator {
        let mut args = vec!["--probe-cache-window=0s".to_owned()];
        if let Some(ns) = namespace {
            args.extend(["--watch-namespace".to_owned(), ns.to_owned()]);
        }
        args.extend(world.probe_args());
        args.extend(extra.iter().map(|a| a.to_string()));
        Operator::start(bin, kubeconfig, args)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The port of its health (/healthz, /readyz) and metrics server.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// The status code of `GET path` on its health and metrics server; None while it does not
    /// answer.
    pub fn http_status(&self, path: &str) -> Option<u16> {
        crate::http::get(self.metrics_port, path)
            .ok()
            .map(|(code, _)| code)
    }

    /// Its /metrics text; fails the test with its log when the server does not answer.
    pub fn metrics(&self) -> String {
        match crate::http::get(self.metrics_port, "/metrics") {
            Ok((200, text)) => text,
            Ok((code, text)) => panic!("/metrics answered {code}: {text}\n{}", self.log()),
            Err(e) => panic!("/metrics: {e}\noperator log:\n{}", self.log()),
        }
    }

    /// Successful reconciles so far.
    pub fn reconciles(&self) -> u64 {
        reconciles_in(&self.metrics())
    }

    /// How many /metrics lines mention `needle`.
    pub fn metric_lines(&self, needle: &str) -> usize {
        self.metrics()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until it has reconciled `more` times more than now, and returns the count then.
    /// A test that expects nothing to happen in a window holds the window with this: it proves
    /// the operator did run in it.
    pub async fn reconciles_more(&self, more: u64, within: Duration) -> u64 {
        let from = self.reconciles();
        eventually(within, async || {
            let now = self.reconciles();
            if now >= from + more {
                Ok(now)
            } else {
                Err(format!("{from} -> {now} reconciles"))
            }
        })
        .await
        .unwrap_or_else(|last| {
            panic!(
                "not {more} more reconciles within {within:?} ({last})\noperator log:\n{}",
                self.log()
            )
        })
    }

    /// Polls until `pred` holds on the object `name`; fails with the status last seen and the
    /// operator's log.
    pub async fn wait_for<K>(
        &self,
        api: &Api<K>,
        name: &str,
        within: Duration,
        what: &str,
        pred: impl Fn(&K) -> bool,
    ) -> K
    where
        K: Clone + DeserializeOwned + Debug + Serialize,
    {
        eventually(within, async || match api.get(name).await {
            Ok(object) if pred(&object) => Ok(object),
            Ok(object) => Err(format!("{:#}", status_of(&object))),
            Err(e) => Err(format!("cannot read {name}: {e}")),
        })
        .await
        .unwrap_or_else(|last| {
            panic!(
                "timed out after {within:?} waiting for {what}; last status: {last}\n\
                 operator log:\n{}",
                self.log()
            )
        })
    }

    /// Polls until the object's condition `[type, status, reason]` is as given (see
    /// [`wait_for`](Self::wait_for)).
    pub async fn wait_for_condition<K>(
        &self,
        api: &Api<K>,
        name: &str,
        [type_, status, reason]: [&str; 3],
        within: Duration,
    ) -> K
    where
        K: Clone + DeserializeOwned + Debug + Serialize,
    {
        let what = format!("{name} {type_}={status} {reason}");
        self.wait_for(api, name, within, &what, |object| {
            has_condition(object, type_, status, reason)
        })
        .await
    }

    /// Kills it with SIGKILL (a crash, an OOM kill, a node lost) and reaps it; idempotent.
    /// Returns how it ended and how long the reaping took, or None if it could not be reaped.
    pub fn kill(&mut self) -> Option<Exit> {
        let started = Instant::now();
        let _ = self.child.kill();
        let status = self.child.wait().ok()?;
        Some(Exit {
            status,
            after: started.elapsed(),
        })
    }

    /// Sends SIGTERM (what Kubernetes sends a Pod it stops) and waits up to `within` for the
    /// process to exit on its own. Returns how it ended and how long after the signal, or None
    /// when it was still running then (it is killed, so that it does not outlive the test).
    pub fn terminate(&mut self, within: Duration) -> Option<Exit> {
        let started = Instant::now();
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(Exit {
                status,
                after: Duration::ZERO,
            });
        }
        // Not yet reaped, so the pid is still this child's (a zombie at worst).
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        if unsafe { libc::kill(pid, libc::SIGTERM) } == -1 {
            panic!(
                "SIGTERM to the operator (pid {pid}): {}",
                std::io::Error::last_os_error()
            );
        }
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(Exit {
                    status,
                    after: started.elapsed(),
                });
            }
            if started.elapsed() >= within {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How an operator process ended.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    pub status: std::process::ExitStatus,
    /// From the signal until it was reaped.
    pub after: Duration,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The successful reconciles counted in a /metrics text.
pub fn reconciles_in(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(RECONCILES_OK))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Calls `probe` every 200 ms until it returns Ok, for at most `within`; then its last Err
/// (which should say what it saw).
pub async fn eventually<T>(
    within: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(done) => return Ok(done),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

fn status_of(object: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(object)
        .map(|o| o["status"].clone())
        .unwrap_or_default()
}

/// The condition `type_` in the object's `status.conditions`.
pub fn condition(object: &impl Serialize, type_: &str) -> Option<Condition> {
    status_of(object)["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| serde_json::from_value(c.clone()).ok())
}

/// Whether the object's condition `type_` has `status` and `reason`.
pub fn has_condition(object: &impl Serialize, type_: &str, status: &str, reason: &str) -> bool {
    condition(object, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

/// A `kubernetes.io/tls` Secret named `name` holding `leaf`'s chain and key.
pub fn tls_secret(name: &str, leaf: &Leaf) -> Secret {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": leaf.chain_pem, "tls.key": leaf.key_pem},
    }))
    .expect("a kubernetes.io/tls Secret")
}

/// How long [`recheck`] waits for each reconcile.
const RECHECK_PATIENCE: Duration = Duration::from_secs(30);

/// A new generation of the delivery `name` (`spec.checks.expiryWarning` toggles between 720h
/// and 721h, which changes no verdict), so that the operator reconciles it now rather than at
/// its next recheck (recheckInterval is at least 30s).
pub async fn nudge<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let object = api.get(name).await.expect("read the delivery");
    let current = serde_json::to_value(&object).expect("serializable");
    let next = match current["spec"]["checks"]["expiryWarning"].as_str() {
        Some("720h") => "721h",
        _ => "720h",
    };
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"checks": {"expiryWarning": next}}})),
    )
    .await
    .expect("change the spec");
}

/// Makes `op` reconcile `name` `times` more times, one new generation after another.
pub async fn recheck<K>(op: &Operator, api: &Api<K>, name: &str, times: u64)
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    for _ in 0..times {
        let before = op.reconciles();
        nudge(api, name).await;
        eventually(RECHECK_PATIENCE, async || {
            let n = op.reconciles();
            (n > before).then_some(()).ok_or(format!("{n}"))
        })
        .await
        .unwrap_or_else(|n| panic!("no reconcile after a new generation ({n}):\n{}", op.log()));
    }
}

/// The Events about the object `name` in `namespace`.
pub async fn events(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, namespace);
    api.list(&kube::api::ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// Events with `type_` and `reason`, counting each repetition of a series.
pub fn count(events: &[k8s_openapi::api::events::v1::Event], type_: &str, reason: &str) -> i32 {
    events
        .iter()
        .filter(|e| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason))
        .map(|e| e.series.as_ref().map(|s| s.count).unwrap_or(1))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reconciles_sums_the_ok_outcome_only() {
        let metrics = "\
# TYPE httpsdelivery_reconciliations_total counter
httpsdelivery_reconciliations_total{outcome=\"ok\"} 7
httpsdelivery_reconciliations_total{outcome=\"error\"} 2
httpsdelivery_reconcile_errors_total{error=\"status_patch\"} 2
";
        assert_eq!(reconciles_in(metrics), 7);
        assert_eq!(reconciles_in(""), 0);
    }

    #[test]
    fn conditions_are_read_from_the_status() {
        let object = json!({"status": {"conditions": [{
            "type": "Ready", "status": "False", "reason": "NxDomain",
            "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z",
        }]}});
        assert!(has_condition(&object, "Ready", "False", "NxDomain"));
        assert!(!has_condition(&object, "Ready", "True", "Verified"));
        assert_eq!(condition(&object, "Ready").unwrap().message, "m");
        assert!(condition(&json!({}), "Ready").is_none());
    }

    #[tokio::test]
    async fn eventually_returns_the_first_ok_or_the_last_err() {
        let mut calls = 0;
        let got = eventually(Duration::from_secs(5), async || {
            calls += 1;
            if calls == 3 {
                Ok(calls)
            } else {
                Err(format!("call {calls}"))
            }
        })
        .await;
        assert_eq!(got, Ok(3));
        let never: Result<(), String> =
            eventually(Duration::ZERO, async || Err("still no".to_owned())).await;
        assert_eq!(never, Err("still no".to_owned()));
    }

    #[test]
    fn tls_secret_holds_chain_and_key() {
        let ca = crate::pki::TestCa::new("Test Root");
        let leaf = ca.issue(crate::pki::LeafSpec::valid_for(["www.shop.example"]));
        let secret = tls_secret("www-tls", &leaf);
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = secret.string_data.expect("stringData");
        assert_eq!(data["tls.crt"], leaf.chain_pem);
        assert_eq!(data["tls.key"], leaf.key_pem);
    }
}
