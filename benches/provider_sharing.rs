//! Provider mode's request sharing and budget, measured: N deliveries of one Edgecast account
//! (N edge CNAMEs on HTTP Large, one certificate, one origin) read from the fake Edgecast API
//! on loopback, 16 at a time as the operator reconciles them, once through one shared account
//! (the operator's way) and once with an account per delivery (the baseline), in the same run.
//!
//! `cargo bench --bench provider_sharing -- [N] [REQUESTS_PER_SECOND]` (default 1000 and 200).

use futures::StreamExt;
use httpsdelivery_operator::api::account::CdnAccountSpec;
use httpsdelivery_operator::probe::ProbeConfig;
use httpsdelivery_operator::provider::account::Account;
use httpsdelivery_operator::provider::http::ApiClients;
use httpsdelivery_operator::provider::view::Handles;
use httpsdelivery_operator::provider::{build_account, read};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::cdn::{
    CdnConfig, CustomerOrigin, EDGECAST_ACCOUNT, EDGECAST_REST_TOKEN, EdgeCname,
    EdgecastCertificate, FakeCdn, Propagation,
};

const CONCURRENCY: usize = 16;

fn host(i: usize) -> String {
    format!("h{i}.bench.example")
}

async fn fake(n: usize) -> FakeCdn {
    let fake = FakeCdn::start(CdnConfig::default())
        .await
        .expect("fake CDN");
    fake.edit(|s| {
        let names: Vec<String> = (0..n).map(host).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        s.edgecast.put_certificate(&EdgecastCertificate::active(
            1234,
            &refs,
            "wpc.0001.cdn.example",
        ));
        for (i, name) in names.iter().enumerate() {
            let id = 10_000 + i as i64;
            s.edgecast
                .put_edge_cname(EDGECAST_ACCOUNT, &EdgeCname::new(id, name, 2001));
            s.edgecast
                .set_edge_cname_propagation(id, &Propagation::propagated());
        }
        s.edgecast.put_origin(
            EDGECAST_ACCOUNT,
            &CustomerOrigin::https_only(2001, "origin", "origin.bench.example"),
        );
    });
    fake
}

fn account(fake: &FakeCdn, rate: u32) -> Arc<Account> {
    let spec: CdnAccountSpec = serde_json::from_value(json!({
        "provider": "edgecast",
        "edgecast": {"accountNumber": EDGECAST_ACCOUNT, "baseUrl": fake.base_url()},
        "credentialsSecretRef": {"name": "bench"},
        "requestsPerSecond": rate,
    }))
    .expect("account spec");
    let probe = ProbeConfig {
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
        ..ProbeConfig::default()
    };
    let api = ApiClients::for_probe_config(&probe)
        .expect("client")
        .namespaced;
    let credentials = BTreeMap::from([("rest_token".to_string(), EDGECAST_REST_TOKEN.to_string())]);
    Arc::new(build_account(&spec, &credentials, api, None).expect("account"))
}

struct Run {
    seconds: f64,
    requests: usize,
    ready: usize,
}

/// Reads every delivery, 16 at a time; `shared`: one account for all, else one each. The
/// request count includes the fake's log of every request (token requests: none, REST only).
async fn run(n: usize, rate: u32, shared: bool) -> Run {
    let fake = fake(n).await;
    let one = account(&fake, rate);
    let handles = Handles {
        certificate_id: "1234".into(),
        edge_id: None,
    };
    let started = Instant::now();
    let ready = futures::stream::iter(0..n)
        .map(|i| {
            let account = if shared {
                one.clone()
            } else {
                account(&fake, rate)
            };
            let handles = handles.clone();
            async move {
                read(&account, &handles, &host(i), Duration::from_secs(600))
                    .await
                    .is_ok_and(|v| v.edge.is_some() && v.origin.is_some())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    Run {
        seconds: started.elapsed().as_secs_f64(),
        requests: fake.requests().len(),
        ready,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rate: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let shared = run(n, rate, true).await;
    // The baseline shares nothing and has no budget (an account each): what 1 delivery = 1
    // set of requests would send.
    let baseline = run(n, u32::MAX / 2, false).await;
    println!("{n} deliveries of one Edgecast account, {CONCURRENCY} at a time, loopback fake API");
    println!(
        "{:<34} {:>9} {:>8} {:>6} {:>12}",
        "mode", "requests", "seconds", "read", "requests/s"
    );
    for (name, r) in [
        (format!("shared account, budget {rate}/s"), &shared),
        ("account per delivery, no budget".to_string(), &baseline),
    ] {
        println!(
            "{name:<34} {:>9} {:>8.1} {:>6} {:>12.0}",
            r.requests,
            r.seconds,
            r.ready,
            r.requests as f64 / r.seconds.max(1e-9)
        );
    }
    // The budget (GCRA) allows a burst of one second's worth, then `rate` per second.
    let allowed = f64::from(rate) * (1.0 + shared.seconds);
    println!(
        "requests: {:.2}x fewer shared; within the budget (at most {rate} + {rate}/s x {:.1} s = {allowed:.0}): {}",
        baseline.requests as f64 / shared.requests.max(1) as f64,
        shared.seconds,
        shared.requests as f64 <= allowed
    );
    assert_eq!(
        (shared.ready, baseline.ready),
        (n, n),
        "every delivery read"
    );
}
