//! Benchmark: the operator at the API server's pace. N healthy deliveries (one wildcard target
//! CNAME, one shared origin, a Secret each) on a real control plane, side by side in the same
//! run with a raw client that server-side-applies the same status to N objects with the same
//! concurrency, as fast as the API server takes it.
//!
//!     make bench-scale N=10000      (cargo bench --bench scale -- 10000)
//!
//! Prints one table row: N, raw seconds, operator seconds (start to every delivery Ready), ratio,
//! time to the first Ready, reconciles, status writes, Secret GETs and LISTs, DNS queries and TLS
//! handshakes in the cycle, CPU per reconcile, peak RSS, and the API requests by verb (from
//! kube-apiserver's own /metrics) while the operator converged.

use futures::{StreamExt, TryStreamExt};
use httpsdelivery_operator::api::{HttpsDelivery, HttpsDeliverySpec, HttpsDeliveryStatus};
use httpsdelivery_operator::checks::{self, Memory, Targets, secret::SecretContent};
use httpsdelivery_operator::controller::publish;
use httpsdelivery_operator::probe::{Limits, ProbeConfig, Prober};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::controlplane::{ControlPlane, die_with_parent, workspace_root};
use testkit::dns::{DnsFixture, Zone};
use testkit::pki::{Leaf, LeafSpec, TestCa};
use testkit::tls::{SniCerts, TlsServer};

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");
const PORT: u16 = 8443;
/// Requests in flight, for the raw client and the operator's reconciles alike.
const CONCURRENCY: usize = 16;
const TARGET: &str = "cs1.wpc.bench-cdn.example";
const ORIGIN: &str = "origin.bench.example";
/// Longest wait for every delivery to be Ready.
const PATIENCE: Duration = Duration::from_secs(1800);

/// The loopback internet of the benchmark: `*.bench.example` CNAME the target, one edge with a
/// wildcard certificate, one origin.
struct World {
    dns: DnsFixture,
    _edge: TlsServer,
    _plain: testkit::edge_http::PlainHttpServer,
    _origin: TlsServer,
    ca_file: tempfile::NamedTempFile,
    leaf: Leaf,
}

impl World {
    async fn start() -> World {
        let ca = TestCa::new("Bench CDN Root CA");
        let leaf = ca.issue(LeafSpec::valid_for(["*.bench.example"]));
        let (edge_ip, origin_ip) = (Ipv4Addr::new(127, 79, 0, 1), Ipv4Addr::new(127, 79, 0, 2));
        let at = |ip: Ipv4Addr| SocketAddr::new(IpAddr::V4(ip), PORT);
        let edge = TlsServer::start(at(edge_ip), SniCerts::new().with_default(&leaf))
            .await
            .expect("the edge");
        let origin_leaf = ca.issue(LeafSpec::valid_for([ORIGIN]));
        let origin = TlsServer::start(at(origin_ip), SniCerts::new().with_default(&origin_leaf))
            .await
            .expect("the origin");
        // The edge's plain-HTTP side redirects to HTTPS (EdgeHttpOk); the zones' name server
        // is the fixture itself (DnsHealthy asks it directly).
        let plain = testkit::edge_http::PlainHttpServer::start(SocketAddr::new(
            IpAddr::V4(edge_ip),
            testkit::world::HTTP_PORT,
        ))
        .await
        .expect("the edge's plain-HTTP side");
        let dns = DnsFixture::start(vec![
            Zone::new("bench.example")
                .wildcard_cname("bench.example", TARGET)
                .a(ORIGIN, origin_ip)
                .a("ns1.bench.example", Ipv4Addr::LOCALHOST),
            Zone::new("bench-cdn.example")
                .a(TARGET, edge_ip)
                .a("ns1.bench-cdn.example", Ipv4Addr::LOCALHOST),
            Zone::new("example"),
        ])
        .await
        .expect("the DNS server");
        let ca_file = tempfile::NamedTempFile::new().expect("a CA file");
        std::fs::write(ca_file.path(), ca.cert_pem()).expect("write the CA file");
        World {
            dns,
            _edge: edge,
            _plain: plain,
            _origin: origin,
            ca_file,
            leaf,
        }
    }

    fn probe_args(&self) -> Vec<String> {
        let path = self.ca_file.path().display().to_string();
        let dns = self.dns.addr().to_string();
        let dns_port = self.dns.addr().port().to_string();
        let http_port = testkit::world::HTTP_PORT.to_string();
        [
            "--dns-server",
            &dns,
            "--ca-file",
            &path,
            "--https-port",
            "8443",
            "--http-port",
            &http_port,
            "--dns-authoritative-port",
            &dns_port,
            "--allow-cidr",
            "127.0.0.0/8",
        ]
        .map(str::to_string)
        .to_vec()
    }
}

fn spec(i: usize) -> HttpsDeliverySpec {
    let host = format!("h{i}.bench.example");
    serde_json::from_value(serde_json::json!({
        "hostname": host,
        "certificate": {"secretRef": {"name": format!("tls-{i}")}, "platform": "HttpLarge",
                        "targetCname": TARGET},
        "edgeCname": {"hostname": host, "platform": "HttpLarge", "origin": "shop",
                      "modifiedAt": "2026-01-01T00:00:00Z"},
        "origin": {"name": "shop", "host": ORIGIN, "port": PORT, "protocol": "HttpsOnly",
                   "httpsEdgeProtocol": true},
        "checks": {"recheckInterval": "10m"}
    }))
    .expect("bench spec")
}

fn secret(i: usize, leaf: &Leaf) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("tls-{i}")),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(BTreeMap::from([
            ("tls.crt".to_string(), leaf.chain_pem.clone()),
            ("tls.key".to_string(), leaf.key_pem.clone()),
        ])),
        ..Secret::default()
    }
}

/// Creates N deliveries (and their Secrets when `with_secrets`) in `ns`.
async fn populate(client: &kube::Client, ns: &str, n: usize, leaf: Option<&Leaf>) {
    let deliveries: Api<HttpsDelivery> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(0..n)
        .map(|i| {
            let (deliveries, secrets) = (deliveries.clone(), secrets.clone());
            async move {
                if let Some(leaf) = leaf {
                    secrets
                        .create(&PostParams::default(), &secret(i, leaf))
                        .await
                        .expect("create a Secret");
                }
                deliveries
                    .create(
                        &PostParams::default(),
                        &HttpsDelivery::new(&format!("d{i}"), spec(i)),
                    )
                    .await
                    .expect("create a delivery");
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

/// The status the operator would write for delivery 0, computed by the same engine.
async fn reference_status(world: &World) -> HttpsDeliveryStatus {
    let prober = Prober::new(&ProbeConfig {
        dns_servers: vec![world.dns.addr()],
        ca_files: vec![world.ca_file.path().to_path_buf()],
        https_port: PORT,
        http_port: testkit::world::HTTP_PORT,
        authoritative_port: world.dns.addr().port(),
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
        ..ProbeConfig::default()
    })
    .expect("prober");
    let spec = spec(0);
    let settings = spec.settings().expect("settings");
    let secret = SecretContent::Tls {
        cert_pem: world.leaf.chain_pem.clone().into_bytes(),
        key_pem: Some(checks::secret::SecretKey::from_pem(
            world.leaf.key_pem.clone().into_bytes(),
        )),
    };
    let limits = Limits {
        timeout: settings.timeout,
        max_age: settings.recheck_interval,
    };
    let now = jiff::Timestamp::now();
    let desired = spec.declared().expect("the bench declares every step");
    let observed = prober
        .observe(&Targets::of(&desired), Some(secret), limits, now)
        .await;
    let evaluation = checks::evaluate(
        &desired,
        &settings,
        &observed,
        &Memory::default(),
        None,
        now,
    );
    assert!(
        evaluation.ready().is_true(),
        "the bench world is healthy: {:?}",
        evaluation.ready()
    );
    publish::plan(None, &evaluation, Some(1), now)
        .status
        .expect("a first status")
}

/// Server-side applies `status` to the N deliveries of `ns`, CONCURRENCY at a time.
async fn raw_apply(client: &kube::Client, ns: &str, n: usize, status: &HttpsDeliveryStatus) -> f64 {
    let api: Api<HttpsDelivery> = Api::namespaced(client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": "httpsdelivery.dev/v1alpha1", "kind": "HttpsDelivery", "status": status,
    });
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, body) = (api.clone(), body.clone());
            async move {
                api.patch_status(
                    &format!("d{i}"),
                    &PatchParams::apply("bench-raw").force(),
                    &Patch::Apply(&body),
                )
                .await
                .expect("apply a status");
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    started.elapsed().as_secs_f64()
}

/// kube-apiserver's request counters: (verb, resource, subresource) -> count.
async fn apiserver_requests(client: &kube::Client) -> BTreeMap<(String, String, String), f64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client
        .request_text(request)
        .await
        .expect("apiserver /metrics");
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_string())
    };
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let (Some(verb), Some(resource)) = (label(line, "verb"), label(line, "resource")) else {
            continue;
        };
        let sub = label(line, "subresource").unwrap_or_default();
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry((verb, resource, sub)).or_insert(0.0) += value;
    }
    out
}

/// The counters of the operator's /metrics.
fn operator_counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn get(port: u16, path: &str) -> String {
    testkit::http::get(port, path)
        .map(|(_, body)| body)
        .unwrap_or_default()
}

/// CPU seconds and peak RSS (MiB) of a process, from /proc.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of stat(5); the split starts at field 3.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    (ticks / 100.0, hwm_kib / 1024.0)
}

/// Waits until every delivery of `ns` is Ready; returns (time to the first, time to all).
async fn wait_all_ready(client: &kube::Client, ns: &str, n: usize, started: Instant) -> (f64, f64) {
    let api: Api<HttpsDelivery> = Api::namespaced(client.clone(), ns);
    let mut ready: HashSet<String> = HashSet::new();
    let mut first = None;
    let stream = watcher::watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .applied_objects();
    let mut stream = std::pin::pin!(stream);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while ready.len() < n {
        let next = tokio::time::timeout_at(deadline, stream.try_next()).await;
        let Ok(Ok(Some(d))) = next else {
            panic!(
                "only {} of {n} deliveries Ready after {PATIENCE:?}",
                ready.len()
            );
        };
        let is_ready = d.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if is_ready {
            ready.insert(d.metadata.name.unwrap_or_default());
            first.get_or_insert_with(|| started.elapsed().as_secs_f64());
        }
    }
    (first.unwrap_or_default(), started.elapsed().as_secs_f64())
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .or_else(|| std::env::var("N").ok()?.parse().ok())
        .unwrap_or(1000);
    eprintln!(">> N = {n}; load average before: {}", loadavg());
    let cp = ControlPlane::start();
    cp.install_crds(workspace_root().join("crds"));
    let world = World::start().await;
    let client = cp.client().await;
    let (raw_ns, op_ns) = (
        cp.namespace("bench-raw").await,
        cp.namespace("bench-op").await,
    );
    let t = Instant::now();
    populate(&client, &raw_ns, n, None).await;
    populate(&client, &op_ns, n, Some(&world.leaf)).await;
    eprintln!(
        ">> created {n} deliveries twice and {n} Secrets in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let status = reference_status(&world).await;
    let raw_seconds = raw_apply(&client, &raw_ns, n, &status).await;
    eprintln!(">> raw client: {n} status applies in {raw_seconds:.1}s");

    let before = apiserver_requests(&client).await;
    let port = testkit::free_port();
    // BENCH_OPERATOR_WRAPPER runs the operator under a profiler (e.g. `heaptrack -o /tmp/op`);
    // the CPU and RSS columns then measure the wrapper's process.
    let mut cmd = match std::env::var("BENCH_OPERATOR_WRAPPER") {
        Ok(wrapper) if !wrapper.trim().is_empty() => {
            let mut words = wrapper.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap_or_default());
            cmd.args(words).arg(BIN);
            cmd
        }
        _ => Command::new(BIN),
    };
    cmd.arg("run")
        .args(["--watch-namespace", &op_ns])
        .arg(format!("--metrics-addr=127.0.0.1:{port}"))
        .arg(format!("--reconcile-concurrency={CONCURRENCY}"))
        .args(world.probe_args())
        .env("KUBECONFIG", cp.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    die_with_parent(&mut cmd);
    let started = Instant::now();
    let op = Operator(cmd.spawn().expect("start the operator"));
    let (first, all) = wait_all_ready(&client, &op_ns, n, started).await;
    let metrics = get(port, "/metrics");
    let (cpu, rss) = usage(op.0.id());
    let after = apiserver_requests(&client).await;
    drop(op);

    let reconciles = operator_counter(
        &metrics,
        "httpsdelivery_reconciliations_total{outcome=\"ok\"}",
    );
    let delta = |verb: &str, resource: &str, sub: &str| {
        let key = (verb.to_string(), resource.to_string(), sub.to_string());
        after.get(&key).copied().unwrap_or(0.0) - before.get(&key).copied().unwrap_or(0.0)
    };
    let mut by_verb: BTreeMap<String, f64> = BTreeMap::new();
    for (key, value) in &after {
        let d = value - before.get(key).copied().unwrap_or(0.0);
        if d > 0.0 {
            *by_verb.entry(key.0.clone()).or_insert(0.0) += d;
        }
    }
    println!(
        "| N | raw s | operator s | ratio | first Ready s | reconciles | status writes | Secret GETs / LISTs | DNS queries | TLS handshakes | CPU ms/reconcile | peak RSS MiB | API requests by verb |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {n} | {raw_seconds:.1} | {all:.1} | {:.2} | {first:.1} | {reconciles} | {} | {} / {} | {} | {} | {:.2} | {rss:.0} | {} |",
        all / raw_seconds,
        // Server-side apply is counted as the verb APPLY (other clients would PATCH).
        delta("APPLY", "httpsdeliveries", "status") + delta("PATCH", "httpsdeliveries", "status"),
        delta("GET", "secrets", ""),
        delta("LIST", "secrets", ""),
        operator_counter(&metrics, "httpsdelivery_dns_queries_total"),
        operator_counter(&metrics, "httpsdelivery_tls_handshakes_total"),
        cpu * 1000.0 / reconciles.max(1.0),
        by_verb
            .iter()
            .map(|(verb, count)| format!("{verb} {count}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    eprintln!(">> load average after: {}", loadavg());
}
