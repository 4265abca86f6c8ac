//! The operator end to end: the real binary (`run`) against the real control plane, with the
//! loopback DNS and TLS world standing in for the CDN, the DNS provider and the origin.

use httpsdelivery_operator::api::HttpsDelivery;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::controlplane::{ControlPlane, die_with_parent, shared};
use testkit::pki::LeafSpec;
use testkit::world::World;

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");

/// A running operator process; killed when dropped. Its log is kept for failure messages.
struct Operator {
    child: Child,
    log: std::path::PathBuf,
    metrics_port: u16,
}

impl Operator {
    fn start(cp: &ControlPlane, world: &World, namespace: &str, extra: &[&str]) -> Operator {
        let log = std::env::temp_dir().join(format!(
            "hd-operator-{namespace}-{}.log",
            std::process::id() ^ rand_port() as u32
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let metrics_port = rand_port();
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .args(["--watch-namespace", namespace])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(world.probe_args())
            .args(extra)
            .env("KUBECONFIG", cp.kubeconfig_path())
            .env("RUST_LOG", "info,httpsdelivery_operator=debug")
            .stdout(Stdio::null())
            .stderr(file);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start the operator");
        Operator {
            child,
            log,
            metrics_port,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn rand_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The healthy example in `namespace`, with test-sized check settings.
fn healthy(namespace: &str, name: &str, checks: serde_json::Value) -> HttpsDelivery {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/healthy.yaml"
    ))
    .unwrap();
    let mut d: HttpsDelivery = serde_yaml::from_str(&text).unwrap();
    d.metadata.namespace = Some(namespace.into());
    d.metadata.name = Some(name.into());
    d.spec.checks = Some(serde_json::from_value(checks).unwrap());
    d
}

fn condition(d: &HttpsDelivery, type_: &str) -> Option<(String, String, String)> {
    d.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Polls until `pred` holds on the object, or fails with what was last seen and the log.
async fn wait_for(
    api: &Api<HttpsDelivery>,
    name: &str,
    within: Duration,
    op: &Operator,
    what: &str,
    pred: impl Fn(&HttpsDelivery) -> bool,
) -> HttpsDelivery {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < within {
        if let Ok(d) = api.get(name).await {
            if pred(&d) {
                return d;
            }
            last = Some(d);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "timed out after {within:?} waiting for {what}; last status: {:#?}\noperator log:\n{}",
        last.and_then(|d| d.status),
        op.log()
    );
}

fn is(d: &HttpsDelivery, type_: &str, status: &str, reason: &str) -> bool {
    condition(d, type_).is_some_and(|(s, r, _)| s == status && r == reason)
}

async fn events(cp: &ControlPlane, namespace: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(cp.client().await, namespace);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// Events with `reason`, counting each repetition of a series.
fn count(events: &[Event], type_: &str, reason: &str) -> i32 {
    events
        .iter()
        .filter(|e| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason))
        .map(|e| e.series.as_ref().map(|s| s.count).unwrap_or(1))
        .sum()
}

/// Creates the healthy example as `name` and waits until it is Ready.
async fn create_ready(
    api: &Api<HttpsDelivery>,
    ns: &str,
    name: &str,
    checks: serde_json::Value,
    op: &Operator,
) {
    api.create(&PostParams::default(), &healthy(ns, name, checks))
        .await
        .unwrap();
    wait_for(
        api,
        name,
        Duration::from_secs(30),
        op,
        &format!("{name} Ready=True"),
        |d| is(d, "Ready", "True", "Verified"),
    )
    .await;
}

async fn setup(prefix: &str) -> (&'static ControlPlane, World, String, Api<HttpsDelivery>) {
    let cp = shared();
    cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"));
    let world = World::start().await.expect("world");
    let ns = cp.namespace(prefix).await;
    let api = Api::namespaced(cp.client().await, &ns);
    (cp, world, ns, api)
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_delivery_is_ready_then_dns_breaks_and_heals_with_one_event_each() {
    let (cp, world, ns, api) = setup("dns").await;
    let op = Operator::start(cp, &world, &ns, &[]);
    api.create(
        &PostParams::default(),
        &healthy(&ns, "www", json!({"recheckInterval": "1s"})),
    )
    .await
    .unwrap();
    let d = wait_for(
        &api,
        "www",
        Duration::from_secs(30),
        &op,
        "Ready=True",
        |d| is(d, "Ready", "True", "Verified"),
    )
    .await;
    let status = d.status.unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.conditions.len(), 7);
    assert_eq!(
        status.dns.unwrap().chain,
        vec!["www.shop.example. IN CNAME cs1.wpc.cdn.example."]
    );
    assert_eq!(
        status.certificate.unwrap().dns_names,
        vec!["www.shop.example"]
    );

    // The customer's DNS provider now points the hostname at another certificate's target.
    world.dns.update(|zones| {
        zones[0] = zones[0]
            .clone()
            .remove("www.shop.example")
            .cname("www.shop.example", "cs2.wpc.cdn.example");
    });
    let d = wait_for(
        &api,
        "www",
        Duration::from_secs(20),
        &op,
        "DnsConfigured=False",
        |d| is(d, "DnsConfigured", "False", "CnameTargetMismatch"),
    )
    .await;
    assert!(is(&d, "Ready", "False", "CnameTargetMismatch"));
    // Several more rechecks while broken: still exactly one Warning.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ev = events(cp, &ns, "www").await;
    assert_eq!(count(&ev, "Warning", "CnameTargetMismatch"), 1, "{ev:#?}");

    world.dns.set_zones(world.zones());
    wait_for(
        &api,
        "www",
        Duration::from_secs(20),
        &op,
        "Ready=True again",
        |d| is(d, "Ready", "True", "Verified"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ev = events(cp, &ns, "www").await;
    assert_eq!(count(&ev, "Normal", "Verified"), 1, "{ev:#?}");
    assert_eq!(count(&ev, "Warning", "CnameTargetMismatch"), 1, "{ev:#?}");

    // kubectl describe (the real kubectl) shows the conditions with their messages and the Events.
    let out = cp
        .kubectl()
        .args(["describe", "hd", "www", "-n", &ns])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "Type:                  DnsConfigured",
        "Reason:                Verified",
        "dig www.shop.example reaches the target CNAME cs1.wpc.cdn.example",
        "Warning  CnameTargetMismatch",
        "Normal   Verified",
    ] {
        assert!(
            text.contains(needle),
            "`kubectl describe` lacks {needle:?}:\n{text}"
        );
    }
    let out = cp
        .kubectl()
        .args(["get", "hd", "-n", &ns])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("www.shop.example") && text.contains("True") && text.contains("Verified"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_secret_to_an_expired_certificate_is_seen_within_seconds() {
    let (cp, world, ns, api) = setup("rotate").await;
    let secrets: Api<Secret> = Api::namespaced(cp.client().await, &ns);
    let tls_secret = |leaf: &testkit::pki::Leaf| -> Secret {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "www-tls"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": leaf.chain_pem, "tls.key": leaf.key_pem}
        }))
        .unwrap()
    };
    let good = world.ca.issue(LeafSpec::valid_for(["www.shop.example"]));
    secrets
        .create(&PostParams::default(), &tls_secret(&good))
        .await
        .unwrap();
    let op = Operator::start(cp, &world, &ns, &[]);
    let mut d = healthy(&ns, "www", json!({"recheckInterval": "1h"}));
    d.spec.certificate.secret_ref = Some(httpsdelivery_operator::api::SecretReference {
        name: "www-tls".into(),
    });
    api.create(&PostParams::default(), &d).await.unwrap();
    wait_for(
        &api,
        "www",
        Duration::from_secs(30),
        &op,
        "CertificateValid=True",
        |d| is(d, "CertificateValid", "True", "Verified"),
    )
    .await;

    let expired = world
        .ca
        .issue(LeafSpec::valid_for(["www.shop.example"]).expired());
    let started = Instant::now();
    secrets
        .patch(
            "www-tls",
            &PatchParams::apply("test").force(),
            &Patch::Apply(tls_secret(&expired)),
        )
        .await
        .unwrap();
    let d = wait_for(
        &api,
        "www",
        Duration::from_secs(15),
        &op,
        "CertificateValid=False Expired",
        |d| is(d, "CertificateValid", "False", "Expired"),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "not at the next recheck (1h)"
    );
    let (_, _, message) = condition(&d, "CertificateValid").unwrap();
    assert!(
        message.contains("Secret/www-tls") && message.contains("expired on"),
        "{message}"
    );
    assert!(!op.log().contains("PRIVATE KEY") && !message.contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edge_cname_change_propagates_without_outside_help() {
    let (cp, world, ns, api) = setup("propagate").await;
    let op = Operator::start(cp, &world, &ns, &[]);
    let mut d = healthy(
        &ns,
        "www",
        json!({"recheckInterval": "1h", "propagationDelay": "5s"}),
    );
    d.spec.edge_cname.modified_at = None;
    api.create(&PostParams::default(), &d).await.unwrap();
    // Without modifiedAt the operator starts the clock when it first sees the configuration.
    let seen = wait_for(
        &api,
        "www",
        Duration::from_secs(30),
        &op,
        "Propagating",
        |d| is(d, "EdgeCnamePropagated", "False", "Propagating"),
    )
    .await;
    assert!(
        seen.status.as_ref().unwrap().edge_cname.is_some(),
        "change tracking is recorded"
    );
    wait_for(
        &api,
        "www",
        Duration::from_secs(20),
        &op,
        "Propagated",
        |d| {
            is(d, "EdgeCnamePropagated", "True", "Propagated") && is(d, "Ready", "True", "Verified")
        },
    )
    .await;

    // A change of the edge CNAME (a new origin name, and the origin renamed to match) restarts the clock.
    let patch = json!({"spec": {"edgeCname": {"origin": "shop-origin-2"}, "origin": {"name": "shop-origin-2"}}});
    api.patch("www", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(
        &api,
        "www",
        Duration::from_secs(20),
        &op,
        "Propagating after the change",
        |d| is(d, "EdgeCnamePropagated", "False", "Propagating"),
    )
    .await;
    wait_for(
        &api,
        "www",
        Duration::from_secs(20),
        &op,
        "Propagated after the change",
        |d| is(d, "EdgeCnamePropagated", "True", "Propagated"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_state_writes_nothing() {
    let (cp, world, ns, api) = setup("steady").await;
    let op = Operator::start(cp, &world, &ns, &[]);
    create_ready(&api, &ns, "www", json!({"recheckInterval": "1s"}), &op).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = api.get("www").await.unwrap().metadata.resource_version;
    let events_before = events(cp, &ns, "www").await.len();
    let reconciles_before = reconciles(op.metrics_port).await;
    // Five recheck cycles.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = api.get("www").await.unwrap().metadata.resource_version;
    assert_eq!(before, after, "no status write in steady state");
    assert_eq!(
        events(cp, &ns, "www").await.len(),
        events_before,
        "no Event in steady state"
    );
    let reconciles_after = reconciles(op.metrics_port).await;
    assert!(
        reconciles_after >= reconciles_before + 3,
        "it did recheck: {reconciles_before} -> {reconciles_after}"
    );
}

/// The ok-reconcile counter from /metrics.
async fn reconciles(port: u16) -> u64 {
    let text = http_get(port, "/metrics").await;
    text.lines()
        .filter(|l| {
            l.starts_with("httpsdelivery_reconciliations_total") && l.contains("outcome=\"ok\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// How many /metrics lines mention `needle`.
async fn metric_lines(port: u16, needle: &str) -> usize {
    http_get(port, "/metrics")
        .await
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics server");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_elect_one_writer_and_fail_over() {
    let (cp, world, ns, api) = setup("leader").await;
    let lease_flags = ["--leader-elect", "--lease-duration", "4s"];
    let mut a = Operator::start(
        cp,
        &world,
        &ns,
        &[&lease_flags[..], &["--identity", "replica-a"]].concat(),
    );
    // Let a take the lease first.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cp.client().await, &ns);
    let holder = || async {
        leases
            .get_opt("httpsdelivery-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let start = Instant::now();
    while holder().await.as_deref() != Some("replica-a") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "replica-a never became leader:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b = Operator::start(
        cp,
        &world,
        &ns,
        &[&lease_flags[..], &["--identity", "replica-b"]].concat(),
    );
    create_ready(&api, &ns, "www", json!({"recheckInterval": "1s"}), &a).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Only the leader writes: the status has one manager besides the creator, and b's metrics
    // show no reconcile.
    assert_eq!(
        reconciles(b.metrics_port).await,
        0,
        "the follower reconciled:\n{}",
        b.log()
    );
    assert!(reconciles(a.metrics_port).await > 0);

    // The leader dies without releasing the lease; b takes over within the lease time.
    let killed = Instant::now();
    a.kill();
    while holder().await.as_deref() != Some("replica-b") {
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "replica-b did not take over:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(4 + 5 + 2),
        "failover took {took:?}"
    );
    // b now reconciles: break DNS and see b write it.
    world.dns.update(|zones| {
        zones[0] = zones[0].clone().remove("www.shop.example");
    });
    wait_for(
        &api,
        "www",
        Duration::from_secs(20),
        &b,
        "b reports NxDomain",
        |d| is(d, "DnsConfigured", "False", "NxDomain"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_older_delivery_keeps_a_hostname_and_the_other_takes_over_when_it_goes() {
    let (cp, world, ns, api) = setup("conflict").await;
    let op = Operator::start(cp, &world, &ns, &[]);
    create_ready(&api, &ns, "first", json!({"recheckInterval": "1h"}), &op).await;
    // Creation timestamps have a one-second resolution: make "second" clearly younger.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    api.create(
        &PostParams::default(),
        &healthy(&ns, "second", json!({"recheckInterval": "1h"})),
    )
    .await
    .unwrap();
    let d = wait_for(
        &api,
        "second",
        Duration::from_secs(30),
        &op,
        "second HostnameConflict",
        |d| is(d, "Ready", "False", "HostnameConflict"),
    )
    .await;
    assert!(
        condition(&d, "Ready")
            .unwrap()
            .2
            .contains(&format!("{ns}/first"))
    );
    assert!(
        is(
            &api.get("first").await.unwrap(),
            "Ready",
            "True",
            "Verified"
        ),
        "the older one keeps it"
    );
    // The owner goes away: the other is Ready within seconds, not at its 1h recheck.
    api.delete("first", &Default::default()).await.unwrap();
    wait_for(
        &api,
        "second",
        Duration::from_secs(15),
        &op,
        "second Ready after first is deleted",
        |d| is(d, "Ready", "True", "Verified"),
    )
    .await;
    // The deleted delivery's per-object metrics are dropped (checked every 15 s).
    assert!(metric_lines(op.metrics_port, "name=\"second\"").await > 0);
    let started = Instant::now();
    while metric_lines(op.metrics_port, "name=\"first\"").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "metrics of the deleted delivery linger"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
