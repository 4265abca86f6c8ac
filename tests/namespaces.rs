//! Watching what a team owns: several listed namespaces (a Role in each) or the namespaces
//! carrying a label (picked up and let go without a restart), on the real control plane, with
//! the operator authenticated as the chart's own ServiceAccount.

use httpsdelivery_operator::api::HttpsDelivery;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use testkit::controlplane::{ControlPlane, shared};
use testkit::operator::{Operator, condition, eventually};
use testkit::process::{fail, succeed};
use testkit::world::{World, example};

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");
const CHART: &str = "httpsdelivery-operator";
const HD: &str = "httpsdeliveries.httpsdelivery.dev";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Installs the chart as `release` in `namespace`; returns its ServiceAccount's name and user.
fn helm_install(cp: &ControlPlane, release: &str, namespace: &str, set: &str) -> (String, String) {
    let chart = root().join("charts").join(CHART);
    let mut cmd = cp.helm();
    cmd.args(["install", release])
        .arg(&chart)
        .args(["--namespace", namespace, "--set", set]);
    succeed(&format!("helm install --set {set}"), cmd, None);
    let sa = format!("{release}-{CHART}");
    let user = format!("system:serviceaccount:{namespace}:{sa}");
    (sa, user)
}

/// The healthy example as `namespace/www`.
async fn create_www(deliveries: &Api<HttpsDelivery>, namespace: &str) {
    let mut delivery: HttpsDelivery = example("healthy.yaml");
    delivery.metadata.namespace = Some(namespace.to_owned());
    deliveries
        .create(&PostParams::default(), &delivery)
        .await
        .unwrap_or_else(|e| panic!("create {namespace}/www: {e}"));
}

async fn status_of(api: &Api<HttpsDelivery>) -> Option<String> {
    let d = api.get("www").await.ok()?;
    condition(&d, "Ready").map(|c| format!("{} {} {}", c.status, c.reason, c.message))
}

/// The operator, as ServiceAccount `namespace/name`, with `args` (and the directory of its
/// kubeconfig, to keep while it runs).
fn operator_as(
    cp: &ControlPlane,
    world: &World,
    (namespace, name): (&str, &str),
    args: &[String],
) -> (Operator, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("operator.kubeconfig");
    cp.service_account_kubeconfig(namespace, name, &kubeconfig);
    let mut all = args.to_vec();
    all.extend(world.probe_args());
    (Operator::start(BIN, &kubeconfig, all), dir)
}

/// The control plane with the CRDs, a loopback world, and a namespace to install the chart in.
async fn setup(release: &str) -> (&'static ControlPlane, World, String) {
    let cp = shared();
    cp.install_crds(root().join("crds"));
    let world = World::start().await.expect("the loopback world");
    let namespace = cp.namespace(release).await;
    (cp, world, namespace)
}

/// The operator's per-delivery series of `namespace`, in its /metrics.
fn series_in(op: &Operator, namespace: &str) -> usize {
    op.metric_lines(&format!("namespace=\"{namespace}\""))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn two_listed_namespaces_are_reconciled_by_one_operator_and_a_third_is_ignored_and_unreadable()
 {
    let (cp, world, release) = setup("ns-list").await;
    let a = cp.namespace("team-a").await;
    let b = cp.namespace("team-b").await;
    let other = cp.namespace("other").await;
    let set = format!("watchNamespaces={{{a},{b}}}");
    let (sa, user) = helm_install(cp, "list", &release, &set);

    // What the chart's ServiceAccount may read: the two namespaces, nothing else.
    let who = ["--as", user.as_str()];
    for ns in [&a, &b] {
        for args in [
            vec!["list", HD, "-n", ns],
            vec!["watch", HD, "-n", ns],
            vec!["patch", HD, "--subresource=status", "-n", ns],
            vec!["watch", "secrets", "-n", ns],
        ] {
            cp.assert_can_i(&who, &args, true);
        }
    }
    for args in [
        vec!["list", HD, "-n", &other],
        vec!["get", HD, "-n", &other],
        vec!["get", "secrets", "-n", &other],
        vec!["list", HD, "--all-namespaces"],
        vec!["list", "namespaces"],
    ] {
        cp.assert_can_i(&who, &args, false);
    }

    // The same delivery in all three, the ignored one first: were it watched, it would be
    // reconciled first.
    let admin = cp.client().await;
    let apis: Vec<Api<HttpsDelivery>> = [&other, &a, &b]
        .iter()
        .map(|ns| Api::namespaced(admin.clone(), ns))
        .collect();
    for (api, ns) in apis.iter().zip([&other, &a, &b]) {
        create_www(api, ns).await;
        tokio::time::sleep(Duration::from_millis(1100)).await; // distinct creation times
    }
    let (op, _dir) = operator_as(
        cp,
        &world,
        (&release, &sa),
        &[format!("--watch-namespace={a},{b}")],
    );
    op.wait_for_condition(
        &apis[1],
        "www",
        ["Ready", "True", "Verified"],
        Duration::from_secs(60),
    )
    .await;
    // One index over both namespaces: b's delivery claims the hostname a's already holds.
    let b_www = op
        .wait_for_condition(
            &apis[2],
            "www",
            ["Ready", "False", "HostnameConflict"],
            Duration::from_secs(30),
        )
        .await;
    let message = condition(&b_www, "Ready")
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains(&format!("{a}/www")), "{message}");
    // The third namespace is not looked at: no status, no series, nothing refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        status_of(&apis[0]).await,
        None,
        "{other}/www was reconciled"
    );
    assert_eq!(series_in(&op, &other), 0);
    assert!(series_in(&op, &a) > 0 && series_in(&op, &b) > 0);
    let log = op.log();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn a_namespace_that_gains_the_label_is_picked_up_and_one_that_loses_it_let_go_without_a_restart()
 {
    let (cp, world, release) = setup("ns-selector").await;
    let labelled = cp.namespace("labelled").await;
    let later = cp.namespace("later").await;
    // A label no other test uses: the namespaces of this test only.
    let team = release.clone();
    let admin = cp.client().await;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let label = |ns: &str, value: Option<&str>| {
        let namespaces = namespaces.clone();
        let patch = serde_json::json!({"metadata": {"labels": {"team": value}}});
        let ns = ns.to_owned();
        async move {
            namespaces
                .patch(&ns, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap_or_else(|e| panic!("label namespace {ns}: {e}"));
        }
    };
    label(&labelled, Some(&team)).await;

    let set = format!("watchNamespaceSelector=team={team}");
    let (sa, user) = helm_install(cp, "sel", &release, &set);
    cp.assert_can_i(&["--as", &user], &["watch", "namespaces"], true);
    cp.assert_can_i(&["--as", &user], &["list", HD, "--all-namespaces"], true);

    let in_labelled: Api<HttpsDelivery> = Api::namespaced(admin.clone(), &labelled);
    let in_later: Api<HttpsDelivery> = Api::namespaced(admin.clone(), &later);
    create_www(&in_labelled, &labelled).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut delivery: HttpsDelivery = example("healthy.yaml");
    delivery.metadata.namespace = Some(later.clone());
    delivery.spec.hostname = "www.split.example".into();
    in_later
        .create(&PostParams::default(), &delivery)
        .await
        .expect("create later/www");

    let (op, _dir) = operator_as(
        cp,
        &world,
        (&release, &sa),
        &[format!("--watch-namespace-selector=team={team}")],
    );
    op.wait_for_condition(
        &in_labelled,
        "www",
        ["Ready", "True", "Verified"],
        Duration::from_secs(60),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status_of(&in_later).await, None, "{later} has no label yet");

    // The label arrives: the same process picks the namespace up.
    label(&later, Some(&team)).await;
    eventually(Duration::from_secs(30), async || {
        let d = in_later.get("www").await.map_err(|e| e.to_string())?;
        match condition(&d, "Ready") {
            Some(_) => Ok(()),
            None => Err(format!("{later}/www has no Ready yet")),
        }
    })
    .await
    .unwrap_or_else(|last| panic!("{last}\n{}", op.log()));

    // The label goes: the namespace is let go, its series dropped (every 15 s).
    label(&labelled, None).await;
    eventually(Duration::from_secs(40), async || {
        match series_in(&op, &labelled) {
            0 => Ok(()),
            n => Err(format!("{n} series of {labelled} still exported")),
        }
    })
    .await
    .unwrap_or_else(|last| panic!("{last}\n{}", op.log()));
    assert!(series_in(&op, &later) > 0);
    assert_eq!(op.http_status("/readyz"), Some(200));

    // It comes back, unchanged (same generation): reconciled again, series and all.
    label(&labelled, Some(&team)).await;
    eventually(Duration::from_secs(30), async || {
        match series_in(&op, &labelled) {
            0 => Err(format!(
                "{labelled} rejoined but its delivery was not reconciled"
            )),
            _ => Ok(()),
        }
    })
    .await
    .unwrap_or_else(|last| panic!("{last}\n{}", op.log()));
}

#[test]
fn a_list_and_a_selector_together_are_refused_before_anything_starts() {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "run",
        "--watch-namespace=shop",
        "--watch-namespace-selector=team=web",
    ])
    .env("KUBECONFIG", "/nonexistent");
    let stderr = fail("run with both scopes", cmd);
    assert!(stderr.contains("cannot be used together"), "{stderr}");
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--watch-namespace=shop,Blog"])
        .env("KUBECONFIG", "/nonexistent");
    let stderr = fail("run with a bad namespace", cmd);
    assert!(
        stderr.contains("\"Blog\": not a namespace name"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn a_selector_the_api_server_refuses_stops_the_start_with_an_error_naming_it() {
    let cp = shared();
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--metrics-addr=127.0.0.1:0",
            "--watch-namespace-selector=team in (web",
        ])
        .env("KUBECONFIG", cp.kubeconfig_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the operator");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the operator kept running with a selector the API server refuses");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--watch-namespace-selector \"team in (web\"")
            && stderr.contains("refused"),
        "{stderr}"
    );
}
