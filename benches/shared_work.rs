//! Benchmark: 1,000 deliveries sharing 10 target CNAMEs and 5 origins, checked against loopback
//! fixtures, with the per-run sharing of DNS walks and TLS probes (what `check` does) and without
//! it (a fresh probe session per delivery: the baseline), in the same run.
//!
//!     cargo bench --bench shared_work            (or: make bench)
//!     DELIVERIES=200 cargo bench --bench shared_work

use httpsdelivery_operator::api::{HttpsDelivery, HttpsDeliverySpec};
use httpsdelivery_operator::checks::{self, Memory};
use httpsdelivery_operator::cli::{check_all, input};
use httpsdelivery_operator::probe::{Limits, ProbeConfig, Prober};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use testkit::dns::{DnsFixture, Zone};
use testkit::pki::{LeafSpec, TestCa};
use testkit::tls::{SniCerts, TlsServer};

const TARGETS: usize = 10;
const ORIGINS: usize = 5;
const PORT: u16 = 8443;

fn spec(i: usize) -> HttpsDeliverySpec {
    let host = format!("h{i}.bench.example");
    let origin = format!("origin{}.bench.example", i % ORIGINS);
    serde_json::from_value(serde_json::json!({
        "hostname": host,
        "certificate": {"platform": "HttpLarge", "targetCname": format!("cs{}.wpc.cdn.example", i % TARGETS)},
        "edgeCname": {"hostname": host, "platform": "HttpLarge", "origin": format!("o{}", i % ORIGINS),
                      "modifiedAt": "2026-01-01T00:00:00Z"},
        "origin": {"name": format!("o{}", i % ORIGINS), "host": origin, "port": PORT,
                   "protocol": "HttpsOnly", "httpsEdgeProtocol": true}
    }))
    .expect("bench spec")
}

struct Run {
    seconds: f64,
    ready: usize,
    dns_queries: u64,
    tls_handshakes: u64,
    http_requests: u64,
}

fn config(dns: SocketAddr, ca_file: &std::path::Path) -> ProbeConfig {
    ProbeConfig {
        dns_servers: vec![dns],
        ca_files: vec![ca_file.to_path_buf()],
        https_port: PORT,
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
        // The zones' name server is the fixture itself (DnsHealthy asks it directly).
        authoritative_port: dns.port(),
        http_port: testkit::world::HTTP_PORT,
        // One run of the engine is one cycle, as in `check`.
        cache_window: Duration::MAX,
        ..ProbeConfig::default()
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("DELIVERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let ca = TestCa::new("Bench Root");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write CA");

    // Ten edge addresses (one per target CNAME) serving a wildcard, five origins.
    let base = (std::process::id() % 200) as u8 + 20;
    let wildcard = ca.issue(LeafSpec::valid_for(["*.bench.example"]));
    let mut servers = Vec::new();
    let mut plain = Vec::new();
    let mut shop = Zone::new("bench.example");
    let mut cdn = Zone::new("cdn.example");
    for t in 0..TARGETS {
        let ip = Ipv4Addr::new(127, 81, base, t as u8 + 1);
        servers.push(
            TlsServer::start(
                SocketAddr::new(IpAddr::V4(ip), PORT),
                SniCerts::single(&wildcard),
            )
            .await
            .expect("edge"),
        );
        // The edge's plain-HTTP side, which redirects to HTTPS (EdgeHttpOk).
        plain.push(
            testkit::edge_http::PlainHttpServer::start(SocketAddr::new(
                IpAddr::V4(ip),
                testkit::world::HTTP_PORT,
            ))
            .await
            .expect("plain HTTP edge"),
        );
        cdn = cdn.a(&format!("cs{t}.wpc.cdn.example"), ip);
    }
    for o in 0..ORIGINS {
        let ip = Ipv4Addr::new(127, 82, base, o as u8 + 1);
        let name = format!("origin{o}.bench.example");
        let leaf = ca.issue(LeafSpec::valid_for([name.clone()]));
        servers.push(
            TlsServer::start(
                SocketAddr::new(IpAddr::V4(ip), PORT),
                SniCerts::single(&leaf),
            )
            .await
            .expect("origin"),
        );
        shop = shop.a(&name, ip);
    }
    for i in 0..n {
        shop = shop.cname(
            &format!("h{i}.bench.example"),
            &format!("cs{}.wpc.cdn.example", i % TARGETS),
        );
    }
    let shop = shop.a("ns1.bench.example", Ipv4Addr::LOCALHOST);
    let cdn = cdn.a("ns1.cdn.example", Ipv4Addr::LOCALHOST);
    let tld = Zone::new("example");
    let dns = DnsFixture::start(vec![shop, cdn, tld]).await.expect("dns");

    let manifests = input::Manifests {
        deliveries: (0..n)
            .map(|i| input::LoadedDelivery {
                namespace: "bench".into(),
                name: format!("d{i}"),
                delivery: HttpsDelivery::new(&format!("d{i}"), spec(i)),
                origin: "bench".into(),
            })
            .collect(),
        ..Default::default()
    };
    let now = jiff::Timestamp::now();

    // Shared: one session for the whole run, as `check` does.
    let probe_config = config(dns.addr(), &ca_file);
    let prober = Prober::new(&probe_config).expect("prober");
    // No delivery is in provider mode: no account is built.
    let accounts =
        httpsdelivery_operator::cli::cdn::CliAccounts::new(&manifests, &probe_config, |_| None);
    let start = Instant::now();
    let results = check_all(&prober, &accounts, &manifests, now, false).await;
    let shared = Run {
        seconds: start.elapsed().as_secs_f64(),
        ready: results
            .iter()
            .filter(|r| r.evaluation.ready().is_true())
            .count(),
        dns_queries: prober.counters().dns_queries,
        tls_handshakes: prober.counters().tls_handshakes,
        http_requests: prober.counters().http_requests,
    };

    // Baseline: the same engine with a fresh session per delivery, same concurrency bound.
    let prober = Prober::new(&config(dns.addr(), &ca_file)).expect("prober");
    let start = Instant::now();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let futures = manifests.deliveries.iter().map(|d| {
        let prober = &prober;
        let limit = limit.clone();
        async move {
            let _permit = limit.acquire_owned().await.ok();
            let settings = d.delivery.spec.settings().unwrap_or_default();
            let Ok(spec) = &d.delivery.spec.declared() else {
                return false;
            };
            let limits = Limits {
                timeout: Duration::from_secs(10),
                max_age: Duration::MAX,
            };
            let observed = prober
                .unshared()
                .observe(&checks::Targets::of(spec), None, limits, now)
                .await;
            checks::evaluate(spec, &settings, &observed, &Memory::default(), None, now)
                .ready()
                .is_true()
        }
    });
    let ready = futures::future::join_all(futures)
        .await
        .into_iter()
        .filter(|r| *r)
        .count();
    let baseline = Run {
        seconds: start.elapsed().as_secs_f64(),
        ready,
        dns_queries: prober.counters().dns_queries,
        tls_handshakes: prober.counters().tls_handshakes,
        http_requests: prober.counters().http_requests,
    };
    drop(servers);

    println!("{n} deliveries, {TARGETS} target CNAMEs, {ORIGINS} origins, loopback fixtures");
    println!(
        "{:<28} {:>12} {:>10} {:>12} {:>15} {:>14}",
        "mode", "deliveries/s", "ready", "DNS queries", "TLS handshakes", "HTTP requests"
    );
    for (name, r) in [
        ("shared (check)", &shared),
        ("baseline (no sharing)", &baseline),
    ] {
        println!(
            "{:<28} {:>12.0} {:>10} {:>12} {:>15} {:>14}",
            name,
            n as f64 / r.seconds,
            r.ready,
            r.dns_queries,
            r.tls_handshakes,
            r.http_requests
        );
    }
    println!(
        "per delivery (shared): {:.2} DNS queries, {:.2} TLS handshakes, {:.2} HTTP requests",
        shared.dns_queries as f64 / n as f64,
        shared.tls_handshakes as f64 / n as f64,
        shared.http_requests as f64 / n as f64
    );
    println!(
        "ratios shared/baseline: throughput x{:.2}, DNS queries x{:.3}, TLS handshakes x{:.3}",
        baseline.seconds / shared.seconds,
        shared.dns_queries as f64 / baseline.dns_queries.max(1) as f64,
        shared.tls_handshakes as f64 / baseline.tls_handshakes.max(1) as f64
    );
    if shared.ready != n || baseline.ready != n {
        eprintln!("error: not every delivery was ready; the benchmark setup is broken");
        std::process::exit(1);
    }
}
