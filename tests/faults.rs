//! Faults on the real control plane (issue 11): the API server or its etcd killed and started
//! again, the operator killed mid-reconcile, a namespace deleted under the operator, a DNS
//! server that goes silent, origins that hang, and a 409 on the status apply. Each test asserts
//! a recovery bound and prints what it measured (`cargo test --test faults --
//! --include-ignored --nocapture` shows the lines starting with `measured:`).
//!
//! A test that kills part of the control plane, or runs an operator watching every namespace,
//! has a control plane of its own ([`ControlPlane::start`]); the tests that only break the
//! operator or the world share one and keep to their namespace.

use http::{Method, Request, Response, StatusCode};
use httpsdelivery_operator::api::HttpsDelivery;
use httpsdelivery_operator::controller::{self, Context};
use httpsdelivery_operator::probe::{ProbeConfig, Prober};
use httpsdelivery_operator::telemetry::Metrics;
use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testkit::controlplane::{ControlPlane, Part, shared};
use testkit::dns::Mode;
use testkit::operator::{
    Operator, condition, count, events, eventually, has_condition, nudge, recheck,
};
use testkit::pki::LeafSpec;
use testkit::tls::SniCerts;
use testkit::world::{EDGE_HOSTNAMES, EXPIRED_HOSTNAME, World, example};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");

/// Bounds a wait for what should happen within seconds, generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

const READY: [&str; 3] = ["Ready", "True", "Verified"];
const ORIGIN_TIMED_OUT: [&str; 3] = ["OriginHttpsReady", "Unknown", "ProbeTimeout"];

/// The name the hanging origins answer to (an A record at the black hole's address).
const HANG_HOST: &str = "hang.shop.example";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Starts the operator probing the loopback world, on `namespace` or on all of them (see
/// [`Operator::start_in_world`]).
fn start(cp: &ControlPlane, world: &World, namespace: Option<&str>, extra: &[&str]) -> Operator {
    Operator::start_in_world(BIN, cp.kubeconfig_path(), world, namespace, extra)
}

/// A control plane of the test's own (it may kill parts of it), with the CRD installed.
fn private_control_plane() -> ControlPlane {
    let cp = tokio::task::block_in_place(ControlPlane::start);
    cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"));
    cp
}

/// A private control plane, the world, a namespace named after `prefix`, the operator on it,
/// and the healthy delivery `www` there, Ready.
async fn private_plane_with_ready_www(
    prefix: &str,
) -> (ControlPlane, World, String, Api<HttpsDelivery>, Operator) {
    let cp = private_control_plane();
    let world = World::start().await.expect("world");
    let ns = cp.namespace(prefix).await;
    let api: Api<HttpsDelivery> = Api::namespaced(cp.client().await, &ns);
    let op = start(&cp, &world, Some(&ns), &[]);
    let checks = json!({"recheckInterval": "1h", "timeout": "5s"});
    api.create(
        &PostParams::default(),
        &delivery(&ns, "www", "www.shop.example", checks),
    )
    .await
    .expect("create www");
    op.wait_for_condition(&api, "www", READY, PATIENCE).await;
    (cp, world, ns, api, op)
}

/// The healthy example as `namespace/name` for `hostname` (one the world's edge serves), with
/// test-sized check settings.
fn delivery(namespace: &str, name: &str, hostname: &str, checks: Value) -> HttpsDelivery {
    let mut d: HttpsDelivery = example("healthy.yaml");
    d.metadata.namespace = Some(namespace.into());
    d.metadata.name = Some(name.into());
    d.spec.hostname = hostname.into();
    d.spec.edge_cname.as_mut().expect("declared").hostname = hostname.into();
    d.spec.checks = Some(serde_json::from_value(checks).expect("check settings"));
    d
}

/// A delivery like [`delivery`] whose origin is `hang` (through [`HANG_HOST`]), with `sni` as
/// the origin's SNI name when given, so that each such delivery is a TLS endpoint of its own.
fn hanging(
    namespace: &str,
    name: &str,
    hostname: &str,
    hang: &Hang,
    sni: Option<&str>,
    checks: Value,
) -> HttpsDelivery {
    let mut d = delivery(namespace, name, hostname, checks);
    d.spec.origin.as_mut().expect("declared").host = HANG_HOST.into();
    d.spec.origin.as_mut().expect("declared").port = hang.addr.port();
    d.spec.origin.as_mut().expect("declared").sni_hostname = sni.map(str::to_owned);
    d
}

/// Makes `hang-0.shop.example` .. `hang-{count-1}.shop.example` deliverable hostnames of the
/// world (CNAMEs to the target CNAME, a wildcard certificate at the edge) and points
/// [`HANG_HOST`] at `hang_ip`, so that a delivery of one of them fails at its origin only.
fn add_hang_hostnames(world: &World, count: usize, hang_ip: Ipv4Addr) {
    world.dns.update(|zones| {
        let mut shop = zones[0].clone().a(HANG_HOST, hang_ip);
        for i in 0..count {
            shop = shop.cname(&format!("hang-{i}.shop.example"), "cs1.wpc.cdn.example");
        }
        zones[0] = shop;
    });
    let mut certs = SniCerts::new().with_leaf(
        &world
            .ca
            .issue(LeafSpec::valid_for([EXPIRED_HOSTNAME]).expired()),
    );
    for host in EDGE_HOSTNAMES.iter().copied().chain(["*.shop.example"]) {
        certs = certs.with_leaf(&world.ca.issue(LeafSpec::valid_for([host])));
    }
    world
        .edge
        .set_certs(certs)
        .expect("serve the edge certificates");
}

/// An origin that hangs: accepts TCP connections, reads what comes and never answers, so that a
/// TLS handshake with it can only time out. Counts the connections, so a test knows when a
/// probe (and so a reconcile) is in flight, which testkit's `start_blackhole` does not tell.
/// Stops, closing them, when dropped.
struct Hang {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Hang {
    async fn start(ip: Ipv4Addr) -> Hang {
        let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .await
            .expect("bind the hanging origin");
        let addr = listener.local_addr().expect("its address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                connections.spawn(async move {
                    let mut sink = [0u8; 4096];
                    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        });
        Hang {
            addr,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until it has accepted `n` connections in all.
    async fn wait_for(&self, n: usize, op: &Operator) {
        eventually(PATIENCE, async || {
            let seen = self.accepted();
            (seen >= n)
                .then_some(())
                .ok_or(format!("{seen} connections"))
        })
        .await
        .unwrap_or_else(|seen| {
            panic!(
                "the hanging origin did not see {n} connections ({seen}):\n{}",
                op.log()
            )
        });
    }
}

impl Drop for Hang {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every Event as `type reason (xCOUNT): note`, for failure messages.
fn listing(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} (x{}): {}",
                e.type_.as_deref().unwrap_or("?"),
                e.reason.as_deref().unwrap_or("?"),
                e.series.as_ref().map(|s| s.count).unwrap_or(1),
                e.note.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The conditions of a delivery as `type=status reason`, for failure messages.
fn conditions(d: &HttpsDelivery) -> String {
    d.status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| format!("{}={} {}", c.type_, c.status, c.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The conditions of `d` that are False.
fn false_conditions(d: &HttpsDelivery) -> Vec<String> {
    d.status
        .iter()
        .flat_map(|s| &s.conditions)
        .filter(|c| c.status == "False")
        .map(|c| format!("{} {}: {}", c.type_, c.reason, c.message))
        .collect()
}

/// Whether `d` carries a status written for its current generation.
fn status_is_current(d: &HttpsDelivery) -> bool {
    let generation = d.metadata.generation;
    d.status
        .as_ref()
        .is_some_and(|s| s.observed_generation == generation && !s.conditions.is_empty())
}

/// Polls `/readyz` of the operator until it answers `code`.
async fn readyz_becomes(op: &Operator, code: u16, within: Duration) -> Duration {
    let started = Instant::now();
    eventually(within, async || match op.http_status("/readyz") {
        Some(c) if c == code => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await
    .unwrap_or_else(|last| {
        panic!(
            "/readyz did not answer {code} within {within:?} (last: {last}):\n{}",
            op.log()
        )
    });
    started.elapsed()
}

/// Checks `probe` at every poll during `window`: a property that must hold for a while (and not
/// a wait for something to happen).
async fn holds(window: Duration, mut probe: impl AsyncFnMut() -> Result<(), String>) {
    let until = Instant::now() + window;
    while Instant::now() < until {
        if let Err(e) = probe().await {
            panic!("did not hold for {window:?}: {e}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates `d`, retrying while the API server is not answering yet (a client's pooled
/// connection to a restarted server fails once).
async fn create_soon(api: &Api<HttpsDelivery>, d: &HttpsDelivery) {
    eventually(PATIENCE, async || {
        match api.create(&PostParams::default(), d).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("create {:?}: {e}", d.metadata.name));
}

/// The sum of the samples of a metric family whose lines start with `prefix`.
fn metric_sum(op: &Operator, prefix: &str) -> f64 {
    op.metrics()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Failed reconciles so far, as both metrics count them.
fn reconcile_errors(op: &Operator) -> (u64, u64) {
    (
        metric_sum(op, "httpsdelivery_reconciliations_total{outcome=\"error\"}") as u64,
        metric_sum(op, "httpsdelivery_reconcile_errors_total{") as u64,
    )
}

/// Polls `/healthz` from a thread until stopped, keeping every answer other than 200.
struct HealthWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl HealthWatch {
    fn start(port: u16) -> HealthWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut polls, mut bad) = (0, Vec::new());
            while !flag.load(Ordering::SeqCst) {
                polls += 1;
                match testkit::http::get(port, "/healthz") {
                    Ok((200, _)) => {}
                    other => bad.push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (polls, bad)
        });
        HealthWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops polling; returns how many polls there were and the answers that were not 200.
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("the /healthz poller")
    }
}

// ---------------------------------------------------------------------------------------------
// 1. kube-apiserver killed and restarted
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn apiserver_restart_readiness_follows_and_new_deliveries_are_reconciled() {
    let (cp, _world, ns, api, op) = private_plane_with_ready_www("apiserver").await;
    let checks = json!({"recheckInterval": "1h", "timeout": "5s"});
    readyz_becomes(&op, 200, PATIENCE).await;

    let killed = Instant::now();
    cp.kill(Part::ApiServer);
    let not_ready_after = readyz_becomes(&op, 503, Duration::from_secs(10)).await;
    // It stays so while the server is down (the watch is retried, and fails, meanwhile).
    holds(Duration::from_secs(3), async || {
        match op.http_status("/readyz") {
            Some(503) => Ok(()),
            other => Err(format!(
                "/readyz answered {other:?} with the API server down"
            )),
        }
    })
    .await;
    assert_eq!(op.http_status("/healthz"), Some(200), "alive meanwhile");

    let restart_took = tokio::task::block_in_place(|| cp.restart(Part::ApiServer));
    let back = Instant::now();
    let down_for = killed.elapsed();

    // A delivery created after the server is back gets its status within 15 s of that, and
    // /readyz answers 200 again: both watched from the moment the server is back.
    create_soon(
        &api,
        &delivery(&ns, "after", "new.shop.example", checks.clone()),
    )
    .await;
    let (mut ready_again, mut status_after) = (None, None);
    let mut last = None;
    // Watched past the bound, so that a slow recovery is measured rather than only refused.
    let watch_for = Duration::from_secs(45);
    while (ready_again.is_none() || status_after.is_none()) && back.elapsed() < watch_for {
        if ready_again.is_none() && op.http_status("/readyz") == Some(200) {
            ready_again = Some(back.elapsed());
        }
        if status_after.is_none()
            && let Ok(d) = api.get("after").await
        {
            if status_is_current(&d) {
                status_after = Some(back.elapsed());
            }
            last = Some(d);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Printed before the bounds are checked, so that a failing run tells how slow it was.
    eprintln!(
        "measured: kube-apiserver killed: operator /readyz 503 after {not_ready_after:?}; \
         server down for {down_for:?} (restart to ready {restart_took:?}); after the server was \
         back: /readyz 200 again at {ready_again:?}, a new delivery had its status at \
         {status_after:?} (bound 15s; None: not within {watch_for:?})"
    );
    let report = format!(
        "after the server was back: /readyz 200 at {ready_again:?}, the new delivery's status \
         at {status_after:?}; last seen {:?}\n{}",
        last.as_ref().map(conditions),
        op.log()
    );
    let (Some(_), Some(status_after)) = (ready_again, status_after) else {
        panic!("not recovered within {watch_for:?}: {report}");
    };
    assert!(
        status_after < Duration::from_secs(15),
        "the new delivery's status came {status_after:?} after the server was back (bound \
         15s): {report}"
    );
    let d = last.expect("read");
    assert!(
        has_condition(&d, "Ready", "True", "Verified"),
        "{}",
        conditions(&d)
    );
    // The delivery from before still reconciles.
    let before = op.reconciles();
    nudge(&api, "www").await;
    op.wait_for(&api, "www", PATIENCE, "www reconciled", |d| {
        status_is_current(d) && has_condition(d, "Ready", "True", "Verified")
    })
    .await;
    assert!(op.reconciles() > before);
    assert!(!op.log().contains("panicked"), "{}", op.log());
}

// ---------------------------------------------------------------------------------------------
// 2. etcd and kube-apiserver restarted together
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn etcd_and_apiserver_restarted_together_statuses_converge() {
    let (cp, world, ns, api, op) = private_plane_with_ready_www("etcd").await;
    let checks = json!({"recheckInterval": "1h", "timeout": "5s"});

    let killed = Instant::now();
    cp.kill(Part::ApiServer);
    cp.kill(Part::Etcd);
    readyz_becomes(&op, 503, Duration::from_secs(10)).await;
    // The world changes while the cluster is away: www's CNAME is gone.
    world.dns.update(|zones| {
        zones[0] = zones[0].clone().remove("www.shop.example");
    });
    let restart_took =
        tokio::task::block_in_place(|| cp.restart(Part::Etcd) + cp.restart(Part::ApiServer));
    let back = Instant::now();
    let down_for = killed.elapsed();

    create_soon(
        &api,
        &delivery(&ns, "after", "new.shop.example", checks.clone()),
    )
    .await;
    op.wait_for_condition(&api, "after", READY, Duration::from_secs(30))
        .await;
    let new_ready = back.elapsed();
    assert!(new_ready < Duration::from_secs(30), "{new_ready:?}");
    // The stored delivery is still there (etcd kept its data) and follows the world.
    nudge(&api, "www").await;
    let d = op
        .wait_for_condition(
            &api,
            "www",
            ["DnsConfigured", "False", "NxDomain"],
            Duration::from_secs(30),
        )
        .await;
    let www_converged = back.elapsed();
    assert!(status_is_current(&d), "{}", conditions(&d));
    let ready_again = readyz_becomes(&op, 200, Duration::from_secs(5)).await;
    eprintln!(
        "measured: etcd and kube-apiserver killed for {down_for:?} (restart of both to ready \
         {restart_took:?}); after the server was back: a new delivery Ready in {new_ready:?} \
         (bound 30s), the stored one converged to the changed world in {www_converged:?}; \
         /readyz 200 (checked {ready_again:?} later)"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The operator SIGKILLed mid-reconcile and started again
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn operator_killed_mid_reconcile_restarts_without_duplicate_events() {
    let cp = shared();
    cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"));
    let world = World::start().await.expect("world");
    let ns = cp.namespace("sigkill").await;
    let client = cp.client().await;
    let api: Api<HttpsDelivery> = Api::namespaced(client.clone(), &ns);
    // Its origin's port will move to one that accepts and never answers.
    let hang = Hang::start(world.origin_ip).await;
    let checks = json!({"recheckInterval": "1h", "timeout": "3s"});
    let mut op = start(cp, &world, Some(&ns), &[]);
    api.create(
        &PostParams::default(),
        &delivery(&ns, "www", "www.shop.example", checks),
    )
    .await
    .expect("create www");
    op.wait_for_condition(&api, "www", READY, PATIENCE).await;

    // The origin starts hanging; the operator is killed while its probe waits on it.
    let hang_port = json!({"spec": {"origin": {"port": hang.addr.port()}}});
    api.patch("www", &PatchParams::default(), &Patch::Merge(&hang_port))
        .await
        .expect("move the origin");
    hang.wait_for(1, &op).await;
    op.kill().expect("killed");
    let d = api.get("www").await.expect("read www");
    assert_eq!(
        d.status.as_ref().and_then(|s| s.observed_generation),
        Some(1),
        "the killed operator wrote nothing for generation 2: {}",
        conditions(&d)
    );

    let restarted = Instant::now();
    let mut op = start(cp, &world, Some(&ns), &[]);
    let d = op
        .wait_for(&api, "www", PATIENCE, "the hanging origin reported", |d| {
            status_is_current(d) && has_condition(d, ORIGIN_TIMED_OUT[0], "Unknown", "ProbeTimeout")
        })
        .await;
    let converged = restarted.elapsed();
    assert!(false_conditions(&d).is_empty(), "{}", conditions(&d));
    let ev = wait_for_event(client.clone(), &ns, "www", "Warning", "ProbeTimeout", &op).await;
    assert_eq!(count(&ev, "Warning", "ProbeTimeout"), 1, "{}", listing(&ev));

    // Killed again in the middle of a reconcile that changes nothing: the next operator, which
    // remembers nothing, must not announce the same transition again.
    let connections = hang.accepted();
    nudge(&api, "www").await;
    hang.wait_for(connections + 1, &op).await;
    op.kill().expect("killed");
    let op = start(cp, &world, Some(&ns), &[]);
    readyz_becomes(&op, 200, PATIENCE).await;
    eventually(PATIENCE, async || match op.reconciles() {
        0 => Err("no reconcile yet".to_owned()),
        _ => Ok(()),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}:\n{}", op.log()));
    recheck(&op, &api, "www", 2).await;
    let ev = events(client.clone(), &ns, "www").await;
    assert_eq!(count(&ev, "Warning", "ProbeTimeout"), 1, "{}", listing(&ev));

    // The origin answers again: one Normal Event, and still one Warning.
    let healed = Instant::now();
    let good_port = json!({"spec": {"origin": {"port": testkit::world::PORT}}});
    api.patch("www", &PatchParams::default(), &Patch::Merge(&good_port))
        .await
        .expect("move the origin back");
    op.wait_for_condition(&api, "www", READY, PATIENCE).await;
    let ready_after = healed.elapsed();
    wait_for_event(client.clone(), &ns, "www", "Normal", "Verified", &op).await;
    recheck(&op, &api, "www", 2).await;
    let ev = events(client.clone(), &ns, "www").await;
    assert_eq!(count(&ev, "Warning", "ProbeTimeout"), 1, "{}", listing(&ev));
    assert_eq!(count(&ev, "Normal", "Verified"), 1, "{}", listing(&ev));
    assert_eq!(ev.len(), 2, "no other Event:\n{}", listing(&ev));
    eprintln!(
        "measured: operator SIGKILLed mid-reconcile: the restarted one converged in \
         {converged:?} (with a 3s probe timeout); after the origin healed, Ready in \
         {ready_after:?}; Events: 1 Warning ProbeTimeout, 1 Normal Verified across 3 operator \
         processes"
    );
}

/// Waits for an Event `type_ reason` about `name` and returns the Events then.
async fn wait_for_event(
    client: Client,
    ns: &str,
    name: &str,
    type_: &str,
    reason: &str,
    op: &Operator,
) -> Vec<Event> {
    eventually(PATIENCE, async || {
        let ev = events(client.clone(), ns, name).await;
        if count(&ev, type_, reason) > 0 {
            Ok(ev)
        } else {
            Err(listing(&ev))
        }
    })
    .await
    .unwrap_or_else(|ev| panic!("no {type_} {reason} Event among:\n{ev}\n{}", op.log()))
}

// ---------------------------------------------------------------------------------------------
// 4. A namespace deleted while its deliveries are being reconciled
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn namespace_deleted_mid_reconcile_is_no_error_and_spares_the_others() {
    const DOOMED: usize = 3;
    let cp = private_control_plane();
    let world = World::start().await.expect("world");
    let hang = Hang::start(Ipv4Addr::LOCALHOST).await;
    add_hang_hostnames(&world, DOOMED, Ipv4Addr::LOCALHOST);
    let client = cp.client().await;
    let (doomed_ns, kept_ns) = (cp.namespace("doomed").await, cp.namespace("kept").await);
    let doomed: Api<HttpsDelivery> = Api::namespaced(client.clone(), &doomed_ns);
    let kept: Api<HttpsDelivery> = Api::namespaced(client.clone(), &kept_ns);
    // Watching every namespace, as the operator does by default.
    let op = start(&cp, &world, None, &[]);
    let checks = json!({"recheckInterval": "1h", "timeout": "6s"});
    kept.create(
        &PostParams::default(),
        &delivery(&kept_ns, "www", "www.shop.example", checks.clone()),
    )
    .await
    .expect("create the kept delivery");
    op.wait_for_condition(&kept, "www", READY, PATIENCE).await;
    let reconciled = op.reconciles();
    let errors = reconcile_errors(&op);

    // Deliveries whose probes take 6 s (each its own origin endpoint, so that each holds one
    // connection while in flight).
    for i in 0..DOOMED {
        let host = format!("hang-{i}.shop.example");
        doomed
            .create(
                &PostParams::default(),
                &hanging(
                    &doomed_ns,
                    &format!("d{i}"),
                    &host,
                    &hang,
                    Some(&host),
                    checks.clone(),
                ),
            )
            .await
            .expect("create a doomed delivery");
    }
    hang.wait_for(DOOMED, &op).await;

    // The namespace is deleted. Without a controller-manager the test does what the namespace
    // controller does: delete what is in it, then finalize it.
    let deleting = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&doomed_ns, &DeleteParams::default())
        .await
        .expect("delete the namespace");
    doomed
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete its deliveries");
    let mut terminating = namespaces.get(&doomed_ns).await.expect("read it");
    terminating.spec = Some(NamespaceSpec {
        finalizers: Some(Vec::new()),
    });
    namespaces
        .replace_subresource("finalize", &doomed_ns, &PostParams::default(), &terminating)
        .await
        .expect("finalize it");
    eventually(PATIENCE, async || {
        match namespaces.get_opt(&doomed_ns).await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .expect("the namespace is gone");
    let gone_after = deleting.elapsed();
    assert!(
        gone_after < Duration::from_secs(5),
        "deleted while the reconciles were still in flight ({gone_after:?})"
    );

    // The reconciles in flight finish (their status write answered 404) as successes.
    let finished = op.reconciles_more(DOOMED as u64, PATIENCE).await;
    let finished_after = deleting.elapsed();
    assert!(
        finished >= reconciled + DOOMED as u64,
        "{reconciled} -> {finished}"
    );
    let log = op.log();
    assert!(!log.contains("reconcile failed"), "{log}");
    // Their status writes found nothing to write to.
    for line in log.lines().filter(|l| l.contains("status updated")) {
        assert!(
            !line.contains(&doomed_ns),
            "a status written in the deleted namespace: {line}"
        );
    }
    assert_eq!(
        reconcile_errors(&op),
        errors,
        "reconcile errors grew:\n{}",
        op.metrics()
    );

    // Other namespaces are unaffected: a new delivery there is reconciled at once.
    let created = Instant::now();
    kept.create(
        &PostParams::default(),
        &delivery(&kept_ns, "after", "new.shop.example", checks.clone()),
    )
    .await
    .expect("create a delivery in the other namespace");
    op.wait_for_condition(&kept, "after", READY, Duration::from_secs(15))
        .await;
    let other_ready = created.elapsed();
    recheck(&op, &kept, "www", 1).await;
    assert!(has_condition(
        &kept.get("www").await.expect("read www"),
        "Ready",
        "True",
        "Verified"
    ));
    assert_eq!(reconcile_errors(&op), errors, "{}", op.metrics());
    assert!(!op.log().contains("reconcile failed"), "{}", op.log());
    eprintln!(
        "measured: namespace deleted with {DOOMED} reconciles in flight: gone in \
         {gone_after:?}; the reconciles finished without error {finished_after:?} after the \
         deletion; a new delivery in another namespace Ready in {other_ready:?} (bound 15s); \
         reconcile errors {errors:?} before and after"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. The DNS server down, then back
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn dns_server_down_is_unknown_never_false_and_recovers() {
    let cp = shared();
    cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"));
    let world = World::start().await.expect("world");
    let ns = cp.namespace("dnsdown").await;
    let client = cp.client().await;
    let api: Api<HttpsDelivery> = Api::namespaced(client.clone(), &ns);
    let op = start(cp, &world, Some(&ns), &[]);
    let checks = json!({"recheckInterval": "1h", "timeout": "2s"});
    api.create(
        &PostParams::default(),
        &delivery(&ns, "www", "www.shop.example", checks),
    )
    .await
    .expect("create www");
    op.wait_for_condition(&api, "www", READY, PATIENCE).await;

    // Every status seen from here until the server is back: none may say False.
    let mut seen_false: Vec<String> = Vec::new();
    let mut wait_unknown = async |reason: &str| {
        let started = Instant::now();
        let d = eventually(PATIENCE, async || {
            let d = api.get("www").await.map_err(|e| e.to_string())?;
            seen_false.extend(false_conditions(&d));
            if status_is_current(&d) && has_condition(&d, "DnsConfigured", "Unknown", reason) {
                Ok(d)
            } else {
                Err(conditions(&d))
            }
        })
        .await
        .unwrap_or_else(|last| {
            panic!(
                "DnsConfigured did not turn Unknown {reason} (last: {last}):\n{}",
                op.log()
            )
        });
        (d, started.elapsed())
    };

    world.dns.set_mode(Mode::Silent);
    nudge(&api, "www").await;
    let (silent, silent_after) = wait_unknown("DnsTimeout").await;
    world.dns.set_mode(Mode::ServFail);
    nudge(&api, "www").await;
    let (failing, servfail_after) = wait_unknown("DnsServerFailure").await;
    assert!(
        seen_false.is_empty(),
        "False while DNS was down: {seen_false:#?}"
    );
    for d in [&silent, &failing] {
        assert!(false_conditions(d).is_empty(), "{}", conditions(d));
        let ready = condition(d, "Ready").expect("Ready");
        assert_eq!(ready.status, "Unknown", "{}", conditions(d));
    }
    // What left True while DNS was down: each announced once, each return announced once.
    let left_true: Vec<String> = silent
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .filter(|c| c.type_ != "Ready" && c.status != "True")
        .map(|c| c.type_.clone())
        .collect();

    world.dns.set_mode(Mode::Answer);
    let healed = Instant::now();
    nudge(&api, "www").await;
    op.wait_for(&api, "www", PATIENCE, "Ready again", |d| {
        status_is_current(d) && has_condition(d, "Ready", "True", "Verified")
    })
    .await;
    let recovered = healed.elapsed();
    let ev = wait_for_event(client.clone(), &ns, "www", "Normal", "Verified", &op).await;
    recheck(&op, &api, "www", 2).await;
    let ev_after = events(client.clone(), &ns, "www").await;
    assert_eq!(
        ev_after.len(),
        ev.len(),
        "Events while steady:\n{}",
        listing(&ev_after)
    );
    let warnings: i32 = ev
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| e.series.as_ref().map(|s| s.count).unwrap_or(1))
        .sum();
    assert_eq!(
        warnings as usize,
        left_true.len(),
        "one Warning per condition that left True ({left_true:?}):\n{}",
        listing(&ev)
    );
    assert_eq!(
        count(&ev, "Normal", "Verified") as usize,
        left_true.len(),
        "one Normal per condition back to True ({left_true:?}):\n{}",
        listing(&ev)
    );
    assert!(count(&ev, "Warning", "DnsTimeout") >= 1, "{}", listing(&ev));
    eprintln!(
        "measured: DNS server silent: DnsConfigured Unknown DnsTimeout {silent_after:?} after \
         the nudge (2s query timeout); SERVFAIL: Unknown DnsServerFailure in \
         {servfail_after:?}; back: Ready {recovered:?} after the nudge; never False; \
         {} Warning and {} Normal Events for {left_true:?}",
        warnings,
        count(&ev, "Normal", "Verified")
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Origins that hang: no worker can be held
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn hanging_origins_hold_no_worker_and_sigterm_exits_within_the_grace() {
    /// More than the default --reconcile-concurrency (16).
    const HANGING: usize = 20;
    const RECONCILE_TIMEOUT: Duration = Duration::from_secs(5);
    const GRACE: Duration = Duration::from_secs(2);
    let cp = private_control_plane();
    let world = World::start().await.expect("world");
    let hang = Hang::start(Ipv4Addr::LOCALHOST).await;
    add_hang_hostnames(&world, HANGING, Ipv4Addr::LOCALHOST);
    let client = cp.client().await;
    let (stuck_ns, other_ns) = (cp.namespace("stuck").await, cp.namespace("other").await);
    let stuck: Api<HttpsDelivery> = Api::namespaced(client.clone(), &stuck_ns);
    let other: Api<HttpsDelivery> = Api::namespaced(client.clone(), &other_ns);
    // Probes may take the longest a delivery may ask for: only the operator's deadline ends them.
    let checks = json!({"recheckInterval": "1h", "timeout": "60s"});
    for i in 0..HANGING {
        stuck
            .create(
                &PostParams::default(),
                &hanging(
                    &stuck_ns,
                    &format!("h{i}"),
                    &format!("hang-{i}.shop.example"),
                    &hang,
                    None,
                    checks.clone(),
                ),
            )
            .await
            .expect("create a hanging delivery");
    }
    let started = Instant::now();
    let mut op = start(
        &cp,
        &world,
        None,
        &[
            &format!("--reconcile-timeout={}s", RECONCILE_TIMEOUT.as_secs()),
            // Longer than a reconcile may last, far shorter than a probe may hang.
            &format!("--stall-timeout={}s", RECONCILE_TIMEOUT.as_secs() + 3),
            &format!("--shutdown-grace={}s", GRACE.as_secs()),
        ],
    );
    // From the moment its health server answers.
    eventually(PATIENCE, async || {
        op.http_status("/healthz")
            .map(drop)
            .ok_or("no answer".to_owned())
    })
    .await
    .unwrap_or_else(|e| panic!("/healthz: {e}\n{}", op.log()));
    let health = HealthWatch::start(op.metrics_port());
    // Every worker is now busy with a hanging origin (and more wait for one).
    hang.wait_for(1, &op).await;

    let created = Instant::now();
    other
        .create(
            &PostParams::default(),
            &delivery(&other_ns, "www", "www.shop.example", checks.clone()),
        )
        .await
        .expect("create a delivery in another namespace");
    let d = op
        .wait_for(
            &other,
            "www",
            RECONCILE_TIMEOUT + Duration::from_secs(5),
            "a status while every worker waits on a hanging origin",
            status_is_current,
        )
        .await;
    let other_status = created.elapsed();
    assert!(
        has_condition(&d, "Ready", "True", "Verified"),
        "{}",
        conditions(&d)
    );

    // The hanging ones: Unknown ProbeTimeout, never False, by the operator's deadline.
    let mut all_reported = Duration::ZERO;
    for i in 0..HANGING {
        let d = op
            .wait_for(&stuck, &format!("h{i}"), PATIENCE, "ProbeTimeout", |d| {
                status_is_current(d)
                    && has_condition(d, "OriginHttpsReady", "Unknown", "ProbeTimeout")
            })
            .await;
        all_reported = started.elapsed();
        assert!(false_conditions(&d).is_empty(), "h{i}: {}", conditions(&d));
        let ready = condition(&d, "Ready").expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("Unknown", "ProbeTimeout"),
            "h{i}"
        );
    }

    // SIGTERM while reconciles are in flight (they moved to another hanging origin).
    let hang2 = Hang::start(Ipv4Addr::LOCALHOST).await;
    let moved = json!({"spec": {"origin": {"port": hang2.addr.port()}}});
    for i in 0..HANGING {
        stuck
            .patch(
                &format!("h{i}"),
                &PatchParams::default(),
                &Patch::Merge(&moved),
            )
            .await
            .expect("move the origin");
    }
    hang2.wait_for(1, &op).await;
    let (polls, unhealthy) = health.finish();
    let exit = op
        .terminate(GRACE + Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 12 s after SIGTERM:\n{}", op.log()));
    let log = op.log();
    let bound = GRACE + Duration::from_secs(2);
    eprintln!(
        "measured: {HANGING} deliveries on hanging origins (60s probe timeout, \
         --reconcile-timeout {RECONCILE_TIMEOUT:?}): a new delivery in another namespace had its \
         status {other_status:?} after creation (bound {:?}); all hanging ones Unknown \
         ProbeTimeout {all_reported:?} after the operator started; /healthz not 200 in {} of \
         {polls} polls; SIGTERM with reconciles in flight: exit {:?} after {:?} (grace \
         {GRACE:?}, bound {bound:?})",
        RECONCILE_TIMEOUT + Duration::from_secs(5),
        unhealthy.len(),
        exit.status,
        exit.after,
    );
    assert!(
        exit.after < bound,
        "exited {:?} after SIGTERM (grace {GRACE:?}):\n{log}",
        exit.after
    );
    assert!(exit.status.success(), "{:?}:\n{log}", exit.status);
    assert!(
        log.contains("shutting down with reconciles still in flight"),
        "SIGTERM found no reconcile in flight, so the grace was not put to the test:\n{log}"
    );
    assert!(
        unhealthy.is_empty(),
        "/healthz was not 200 in {} of {polls} polls: {unhealthy:?}",
        unhealthy.len()
    );
    assert!(polls > 10, "{polls} polls of /healthz");
}

/// The probes in flight to one address at most (`httpsdelivery_operator::probe::PER_ADDRESS`).
const PER_ADDRESS: usize = httpsdelivery_operator::probe::PER_ADDRESS;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn probes_cut_by_the_reconcile_deadline_hold_no_probe_slot() {
    // As many hanging origins on the origin's own address as one address gets probe slots:
    // once the operator's deadline has cut their reconciles, nothing may still hold those
    // slots, or every other origin on that address waits for ever.
    let cp = shared();
    cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"));
    let world = World::start().await.expect("world");
    let hang = Hang::start(world.origin_ip).await;
    add_hang_hostnames(&world, PER_ADDRESS, world.origin_ip);
    let ns = cp.namespace("slots").await;
    let api: Api<HttpsDelivery> = Api::namespaced(cp.client().await, &ns);
    let op = start(cp, &world, Some(&ns), &["--reconcile-timeout=5s"]);
    let checks = json!({"recheckInterval": "1h", "timeout": "60s"});
    for i in 0..PER_ADDRESS {
        let host = format!("hang-{i}.shop.example");
        api.create(
            &PostParams::default(),
            &hanging(
                &ns,
                &format!("h{i}"),
                &host,
                &hang,
                Some(&host),
                checks.clone(),
            ),
        )
        .await
        .expect("create a hanging delivery");
    }
    hang.wait_for(PER_ADDRESS, &op).await;
    for i in 0..PER_ADDRESS {
        op.wait_for_condition(&api, &format!("h{i}"), ORIGIN_TIMED_OUT, PATIENCE)
            .await;
    }

    // Their reconciles are over. A healthy delivery whose origin shares the address.
    let created = Instant::now();
    api.create(
        &PostParams::default(),
        &delivery(&ns, "www", "www.shop.example", checks.clone()),
    )
    .await
    .expect("create www");
    let d = op
        .wait_for(&api, "www", PATIENCE, "a status", status_is_current)
        .await;
    let status_after = created.elapsed();
    eprintln!(
        "measured: {PER_ADDRESS} hanging origins on the healthy origin's address, cut by the \
         reconcile deadline: a new healthy delivery there had its status {status_after:?} after \
         creation: {}",
        conditions(&d)
    );
    assert!(
        has_condition(&d, "Ready", "True", "Verified"),
        "the origin {}:{} was not probed, its address's slots being held by probes whose \
         reconciles the deadline ended: {}\n{}",
        world.origin_ip,
        testkit::world::PORT,
        conditions(&d),
        op.log()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. A 409 Conflict on the status apply (mocked API server)
// ---------------------------------------------------------------------------------------------

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const STATUS_PATH: &str =
    "/apis/httpsdelivery.dev/v1alpha1/namespaces/shop/httpsdeliveries/www/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

/// A request the mocked API server received: method, path and JSON body.
#[derive(Debug)]
struct Received {
    method: Method,
    path: String,
    body: Value,
}

/// Answers the first status apply with 409 Conflict and everything after as a real API server
/// would, recording each request, until the client goes away.
async fn conflict_once(mut handle: Handle, object: HttpsDelivery) -> Vec<Received> {
    let mut received: Vec<Received> = Vec::new();
    while let Some((request, send)) = handle.next_request().await {
        let (method, path) = (request.method().clone(), request.uri().path().to_owned());
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let applies = received.iter().filter(|r| r.path == STATUS_PATH).count();
        let (code, answer) = match (&method, path.as_str()) {
            (&Method::PATCH, STATUS_PATH) if applies == 0 => (
                StatusCode::CONFLICT,
                json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "reason": "Conflict", "code": 409,
                    "message": "Operation cannot be fulfilled on httpsdeliveries.httpsdelivery.dev \"www\": the object has been modified; please apply your changes to the latest version and try again",
                    "details": {"name": "www", "group": "httpsdelivery.dev", "kind": "httpsdeliveries"},
                }),
            ),
            (&Method::PATCH, STATUS_PATH) => {
                let mut answer = serde_json::to_value(&object).expect("object");
                answer["status"] = body["status"].clone();
                answer["metadata"]["resourceVersion"] = json!("43");
                (StatusCode::OK, answer)
            }
            (&Method::POST, EVENTS_PATH) => (StatusCode::CREATED, body.clone()),
            _ => (
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"}),
            ),
        };
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&answer).expect("answer")))
                .expect("response"),
        );
        received.push(Received { method, path, body });
    }
    received
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_on_the_status_apply_is_retried() {
    let world = World::start().await.expect("the loopback world");
    let prober = Prober::new(&ProbeConfig {
        dns_servers: vec![world.dns.addr()],
        authoritative_port: world.dns.addr().port(),
        http_port: testkit::world::HTTP_PORT,
        ca_files: vec![world.ca_file().into()],
        https_port: testkit::world::PORT,
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("CIDR")],
        cache_window: Duration::ZERO,
        ..Default::default()
    })
    .expect("the prober");
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = Arc::new(Context::new(
        Client::new(service, "default"),
        prober,
        Metrics::new(),
        "faults-test",
    ));
    // The example pointed at another certificate's target CNAME: on first sight,
    // DnsConfigured is False, which is one Warning Event, to be sent after the status only.
    let mut object: HttpsDelivery = example("healthy.yaml");
    object.spec.certificate.target_cname = Some("cs2.wpc.cdn.example".into());
    object.metadata.uid = Some("6f1b2c3d-0000-4000-8000-000000000011".into());
    object.metadata.generation = Some(1);
    object.metadata.resource_version = Some("42".into());
    let server = tokio::spawn(conflict_once(handle, object.clone()));

    let guarded = DeserializeGuard(Ok(object.clone()));
    ctx.index.observe(&watcher::Event::Apply(guarded.clone()));
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        controller::reconcile(Arc::new(guarded), ctx.clone()),
    )
    .await
    .expect("the reconcile finishes");
    let took = started.elapsed();
    let metrics = ctx.metrics.encode();
    // The client goes away with the context; then the mocked server has seen everything.
    drop(ctx);
    let received = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the client is dropped")
        .expect("the mocked API server");
    let shapes: Vec<(String, &str)> = received
        .iter()
        .map(|r| (r.method.to_string(), r.path.as_str()))
        .collect();
    eprintln!(
        "measured: a 409 on the status apply: the reconcile returned {} after {took:?} having \
         sent {shapes:?}",
        match &result {
            Ok(_) => "Ok".to_owned(),
            Err(e) => format!("Err({e})"),
        }
    );
    assert!(
        result.is_ok(),
        "the reconcile failed on the 409 instead of applying again: {result:?}; requests: \
         {shapes:?}"
    );
    assert_eq!(
        shapes,
        vec![
            ("PATCH".to_owned(), STATUS_PATH),
            ("PATCH".to_owned(), STATUS_PATH),
            ("POST".to_owned(), EVENTS_PATH),
        ],
        "a second apply after the 409, then the one Event"
    );
    assert_eq!(
        received[0].body, received[1].body,
        "the same status applied again"
    );
    assert_eq!(received[2].body["reason"], "CnameTargetMismatch");
    let errors: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("httpsdelivery_reconcile_errors_total{"))
        .collect();
    assert!(errors.is_empty(), "counted as an error: {errors:?}");
}
