//! The quick start: a local control plane, a loopback "internet" for the examples, the chart's
//! CRDs and RBAC installed with helm, the operator running against it, and the examples applied.
//! Stays up until Ctrl-C; with DEMO_EXIT=1 it prints and exits (cleaning up either way).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::cdn::{
    CdnConfig, EDGECAST_ACCOUNT, EDGECAST_CLIENT_ID, EDGECAST_CLIENT_SECRET, EDGECAST_REST_TOKEN,
    FakeCdn,
};
use testkit::controlplane::{ControlPlane, die_with_parent, workspace_root};
use testkit::world::{World, serve_edgecast_delivery};

const NAMESPACE: &str = "shop";
const RELEASE_NAMESPACE: &str = "httpsdelivery-system";
/// How long the operator may take to reconcile every example and publish its Events.
const PATIENCE: Duration = Duration::from_secs(90);

fn step(text: &str) {
    eprintln!("==> {text}");
}

fn operator_binary() -> Result<PathBuf, String> {
    let path = std::env::var_os("HTTPSDELIVERY_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/httpsdelivery-operator"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the operator binary {} is missing: build it with `cargo build` (or run `make demo`)",
            path.display()
        ))
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The items of `kubectl get RESOURCE -n NAMESPACE -o json`.
fn list(cp: &ControlPlane, resource: &str) -> Result<Vec<Value>, String> {
    let json = run(
        cp.kubectl()
            .args(["get", resource, "-n", NAMESPACE, "-o", "json"]),
        &format!("kubectl get {resource}"),
    )?;
    let list: Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

fn conditions(delivery: &Value) -> impl Iterator<Item = &Value> {
    delivery["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
}

/// Every delivery has a Ready condition for its current generation.
fn all_reconciled(cp: &ControlPlane) -> Result<bool, String> {
    let deliveries = list(cp, "hd")?;
    Ok(!deliveries.is_empty()
        && deliveries.iter().all(|d| {
            let generation = &d["metadata"]["generation"];
            conditions(d).any(|c| c["type"] == "Ready" && &c["observedGeneration"] == generation)
        }))
}

/// Every step that is False has its Warning Event (the operator publishes it right after the
/// status), so that `kubectl describe` shows it.
fn all_warnings_published(cp: &ControlPlane) -> Result<bool, String> {
    let events = list(cp, "events.events.k8s.io")?;
    let published = |name: &Value, reason: &Value| {
        events.iter().any(|e| {
            e["type"] == "Warning" && &e["regarding"]["name"] == name && &e["reason"] == reason
        })
    };
    Ok(list(cp, "hd")?.iter().all(|d| {
        conditions(d)
            .filter(|c| c["type"] != "Ready" && c["status"] == "False")
            .all(|c| published(&d["metadata"]["name"], &c["reason"]))
    }))
}

/// Polls `done` until it holds; fails when the operator exits or after [`PATIENCE`].
async fn wait_until(
    what: &str,
    operator: &mut Child,
    log: &Path,
    mut done: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let started = Instant::now();
    let operator_log = || std::fs::read_to_string(log).unwrap_or_default();
    while !done()? {
        if let Ok(Some(status)) = operator.try_wait() {
            return Err(format!(
                "the operator exited ({status}); its log:\n{}",
                operator_log()
            ));
        }
        if started.elapsed() > PATIENCE {
            return Err(format!(
                "{what}: not within {PATIENCE:?}; operator log:\n{}",
                operator_log()
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

async fn demo() -> Result<(), String> {
    let exit_after_print = std::env::var("DEMO_EXIT").is_ok_and(|v| v == "1");
    let operator = operator_binary()?;
    let root = workspace_root();

    step("starting a local control plane (etcd and kube-apiserver from tools/bin)");
    let cp = ControlPlane::try_start()?;
    eprintln!(
        "    ready in {:.1}s at {}, files in {}",
        cp.startup_time().as_secs_f64(),
        cp.server(),
        cp.dir().display()
    );

    step(
        "starting the loopback internet: DNS zones, a CDN edge and an HTTPS origin on 127.0.0.0/8",
    );
    let world = World::start()
        .await
        .map_err(|e| format!("cannot start the loopback world: {e}"))?;
    eprintln!("    {}", world.summary());
    let cdn = FakeCdn::start(CdnConfig::default())
        .await
        .map_err(|e| format!("cannot start the fake CDN API: {e}"))?;
    serve_edgecast_delivery(&cdn, "api.shop.example", 1234, 1001);
    eprintln!(
        "    a fake Edgecast API at {} holds api.shop.example (provider mode)",
        cdn.base_url()
    );

    step("installing the CRD and RBAC with the chart (helm install)");
    let chart = root.join("charts/httpsdelivery-operator");
    run(
        cp.helm()
            .args(["install", "httpsdelivery-operator"])
            .arg(&chart)
            .args([
                "--namespace",
                RELEASE_NAMESPACE,
                "--create-namespace",
                "--wait=false",
            ]),
        "helm install",
    )?;
    cp.install_crds(root.join("crds"));

    step("running the operator against the control plane");
    let log = cp.dir().join("operator.log");
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(&operator);
    cmd.args(["run", "--metrics-addr", "127.0.0.1:0"])
        .args(world.probe_args())
        .env("KUBECONFIG", cp.kubeconfig_path())
        .stdout(Stdio::null())
        .stderr(log_file);
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", operator.display()))?;
    eprintln!("    log: {}", log.display());

    step("applying examples/: one healthy delivery and one broken delivery per step");
    run(
        cp.kubectl().args(["create", "namespace", NAMESPACE]),
        "kubectl create namespace",
    )?;
    run(
        cp.kubectl()
            .arg("apply")
            .arg("-f")
            .arg(root.join("examples")),
        "kubectl apply",
    )?;

    step("applying a provider-mode delivery: api.shop.example, read from the CDN's API");
    let provider = cp.dir().join("provider-mode.yaml");
    std::fs::write(&provider, provider_manifests(&cdn))
        .map_err(|e| format!("{}: {e}", provider.display()))?;
    run(
        cp.kubectl().arg("apply").arg("-f").arg(&provider),
        "kubectl apply (provider mode)",
    )?;

    step("waiting until every delivery is reconciled");
    let started = Instant::now();
    wait_until("every delivery reconciled", &mut child, &log, || {
        all_reconciled(&cp)
    })
    .await?;
    wait_until(
        "every failed step's Warning Event",
        &mut child,
        &log,
        || all_warnings_published(&cp),
    )
    .await?;
    eprintln!("    done in {:.1}s", started.elapsed().as_secs_f64());

    println!("$ kubectl get hd -n {NAMESPACE}");
    print!(
        "{}",
        run(
            cp.kubectl().args(["get", "hd", "-n", NAMESPACE]),
            "kubectl get hd"
        )?
    );
    println!();
    // The checks beyond the procedure (DnsHealthy, EdgeHttpOk) are the wide columns.
    println!("$ kubectl get hd -n {NAMESPACE} -o wide");
    print!(
        "{}",
        run(
            cp.kubectl()
                .args(["get", "hd", "-n", NAMESPACE, "-o", "wide"]),
            "kubectl get hd -o wide"
        )?
    );
    println!();
    println!("$ kubectl get cdnaccounts -n {NAMESPACE}");
    print!(
        "{}",
        run(
            cp.kubectl().args(["get", "cdnaccounts", "-n", NAMESPACE]),
            "kubectl get cdnaccounts"
        )?
    );
    println!();
    println!("$ kubectl describe hd moved-cname -n {NAMESPACE}");
    print!(
        "{}",
        run(
            cp.kubectl()
                .args(["describe", "hd", "moved-cname", "-n", NAMESPACE]),
            "kubectl describe"
        )?
    );

    if !exit_after_print {
        let stop = signals()?;
        println!(
            "\nThe demo is running. In another terminal:\n\n  export KUBECONFIG={}\n  kubectl get hd -n {NAMESPACE} -w\n\nthen fix a broken delivery and watch it turn Ready, for example:\n\n  kubectl patch hd wrong-platform -n {NAMESPACE} --type merge -p '{{\"spec\":{{\"edgeCname\":{{\"platform\":\"HttpLarge\"}}}}}}'\n  kubectl patch hd http-origin -n {NAMESPACE} --type merge -p '{{\"spec\":{{\"origin\":{{\"protocol\":\"HttpsOnly\",\"httpsEdgeProtocol\":true}}}}}}'\n  kubectl describe hd http-origin -n {NAMESPACE}\n\nkubectl and helm are in {}. The operator's log: {}\nCtrl-C stops everything.",
            cp.kubeconfig_path().display(),
            testkit::controlplane::tools_bin().display(),
            log.display()
        );
        // Piped output is block-buffered: show the instructions now, not at exit.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        stop.await;
        eprintln!();
        step("stopping the operator, the loopback world and the control plane");
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(world);
    drop(cdn);
    drop(cp);
    Ok(())
}

/// The provider-mode delivery `api`: its credentials Secret, the CdnAccount reading the fake
/// Edgecast API, and the delivery, which declares only its hostname, account and certificate ID.
fn provider_manifests(cdn: &FakeCdn) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: edgecast-credentials, namespace: {NAMESPACE}}}
stringData: {{rest_token: {EDGECAST_REST_TOKEN}, client_id: {EDGECAST_CLIENT_ID}, client_secret: {EDGECAST_CLIENT_SECRET}}}
---
apiVersion: httpsdelivery.dev/v1alpha1
kind: CdnAccount
metadata: {{name: edgecast, namespace: {NAMESPACE}}}
spec:
  provider: edgecast
  edgecast: {{accountNumber: "{EDGECAST_ACCOUNT}", baseUrl: "{base}", tokenUrl: "{base}/connect/token"}}
  credentialsSecretRef: {{name: edgecast-credentials}}
---
apiVersion: httpsdelivery.dev/v1alpha1
kind: HttpsDelivery
metadata: {{name: api, namespace: {NAMESPACE}}}
spec:
  hostname: api.shop.example
  certificate: {{}}
  cdn: {{accountRef: {{name: edgecast}}, certificateId: "1234"}}
"#,
        base = cdn.base_url()
    )
}

/// Registers for SIGINT and SIGTERM now (a signal that arrived before registration would kill
/// the process without cleanup); the returned future resolves on the first of them.
fn signals() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    })
}

fn main() {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(demo()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
