//! Provider mode end to end: the real operator on the real control plane reads steps 1 to 4
//! from a fake Edgecast API on loopback (testkit's FakeCdn, speaking the documented shapes and
//! checking the `TOK:`/Bearer headers), with the loopback DNS and TLS world for the probes.

use httpsdelivery_operator::api::HttpsDelivery;
use httpsdelivery_operator::api::account::{CdnAccount, CdnAccountSpec};
use httpsdelivery_operator::cli::cdn::{AKAMAI_ENV, EDGECAST_ENV};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;
use testkit::cdn::{
    Activation, CdnConfig, CpsDeployment, CpsDeployments, EDGECAST_ACCOUNT, EDGECAST_CLIENT_ID,
    EDGECAST_CLIENT_SECRET, EDGECAST_REST_TOKEN, EdgeCname, EdgeGridCredentials, EdgeHostname,
    Enrollment, FakeCdn, Propagation, Property, PropertyHostname,
};
use testkit::controlplane::{ControlPlane, shared};
use testkit::operator::{Operator, condition, count, events, eventually, nudge};
use testkit::world::{World, serve_edgecast_delivery};

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");
const PATIENCE: Duration = Duration::from_secs(40);
const READY: [&str; 3] = ["Ready", "True", "Verified"];
const CERTIFICATE_ID: i64 = 1234;
const EDGE_CNAME_ID: i64 = 1001;
const ORIGIN_ID: i64 = EDGE_CNAME_ID + 1000;

/// What Edgecast has for www.shop.example when all is well, matching the loopback world: the
/// certificate deployed on HTTP Large with the world's target CNAME, the edge CNAME pointing at
/// the customer origin on the world's origin port, propagated.
async fn healthy_cdn() -> FakeCdn {
    let fake = FakeCdn::start(CdnConfig::default())
        .await
        .expect("fake CDN");
    serve_edgecast_delivery(&fake, "www.shop.example", CERTIFICATE_ID, EDGE_CNAME_ID);
    fake
}

/// The control plane with the CRDs, the loopback world, a namespace and its delivery API.
async fn setup(prefix: &str) -> (&'static ControlPlane, World, String, Api<HttpsDelivery>) {
    let cp = shared();
    cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"));
    let world = World::start().await.expect("world");
    let ns = cp.namespace(prefix).await;
    let api = Api::namespaced(cp.client().await, &ns);
    (cp, world, ns, api)
}

/// The operator on `ns`; the CDN is looked at again every 2 s while it is in flux.
fn start(cp: &ControlPlane, world: &World, ns: &str) -> Operator {
    let extra = ["--min-recheck-interval=2s"];
    Operator::start_in_world(BIN, cp.kubeconfig_path(), world, Some(ns), &extra)
}

/// The credentials Secret and a CdnAccount `edgecast` reading `fake`.
async fn create_account(cp: &ControlPlane, ns: &str, fake: &FakeCdn, rest_token: &str) {
    let client = cp.client().await;
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "edgecast-credentials", "namespace": ns},
        "stringData": {
            "rest_token": rest_token,
            "client_id": EDGECAST_CLIENT_ID,
            "client_secret": EDGECAST_CLIENT_SECRET,
        },
    }))
    .expect("the Secret");
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the credentials Secret");
    let spec: CdnAccountSpec = serde_json::from_value(json!({
        "provider": "edgecast",
        "edgecast": {
            "accountNumber": EDGECAST_ACCOUNT,
            "baseUrl": fake.base_url(),
            "tokenUrl": format!("{}/connect/token", fake.base_url()),
        },
        "credentialsSecretRef": {"name": "edgecast-credentials"},
    }))
    .expect("the account spec");
    let mut account = CdnAccount::new("edgecast", spec);
    account.metadata.namespace = Some(ns.into());
    Api::<CdnAccount>::namespaced(client, ns)
        .create(&PostParams::default(), &account)
        .await
        .expect("create the CdnAccount");
}

/// The credentials Secret `name` in `ns`.
async fn create_credentials(cp: &ControlPlane, ns: &str, name: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "stringData": {"rest_token": EDGECAST_REST_TOKEN},
    }))
    .expect("the Secret");
    Api::<Secret>::namespaced(cp.client().await, ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the credentials Secret");
}

/// A provider-mode delivery: the hostname, the account and the certificate's ID, nothing else.
fn provider_delivery(ns: &str, name: &str, hostname: &str) -> HttpsDelivery {
    serde_json::from_value(json!({
        "apiVersion": "httpsdelivery.dev/v1alpha1", "kind": "HttpsDelivery",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "hostname": hostname,
            "certificate": {},
            "cdn": {"accountRef": {"name": "edgecast"}, "certificateId": CERTIFICATE_ID.to_string()},
            "checks": {"recheckInterval": "1h"},
        },
    }))
    .expect("the delivery")
}

async fn condition_of(
    api: &Api<HttpsDelivery>,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let d = api.get(name).await.ok()?;
    condition(&d, type_).map(|c| (c.status, c.reason, c.message))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn a_delivery_is_ready_from_the_cdns_truth_and_drift_is_reported_side_by_side() {
    let (cp, world, ns, api) = setup("provider-ready").await;
    let fake = healthy_cdn().await;
    create_account(cp, &ns, &fake, EDGECAST_REST_TOKEN).await;
    let op = start(cp, &world, &ns);
    api.create(
        &PostParams::default(),
        &provider_delivery(&ns, "www", "www.shop.example"),
    )
    .await
    .expect("create the delivery");
    let d = op.wait_for_condition(&api, "www", READY, PATIENCE).await;
    let sync = condition(&d, "InSyncWithCdn").expect("InSyncWithCdn");
    assert_eq!(
        (sync.status.as_str(), sync.reason.as_str()),
        ("True", "InSync")
    );
    let propagated = condition(&d, "EdgeCnamePropagated").expect("step 3");
    assert!(
        propagated.message.contains("edgecast reports"),
        "{}",
        propagated.message
    );
    // The probes ran on the CDN's values: the chain reached its target CNAME.
    let chain = d
        .status
        .as_ref()
        .and_then(|s| s.dns.clone())
        .expect("dns")
        .chain;
    assert_eq!(chain, ["www.shop.example. IN CNAME cs1.wpc.cdn.example."]);

    // The account says its API answered.
    let accounts: Api<CdnAccount> = Api::namespaced(cp.client().await, &ns);
    op.wait_for_condition(&accounts, "edgecast", READY, PATIENCE)
        .await;

    // Git declares an origin host the CDN does not have: False, field by field.
    let patch = json!({"spec": {"origin": {
        "name": "shop-origin", "host": "old-origin.shop.example", "port": 8443,
        "protocol": "HttpsOnly", "httpsEdgeProtocol": true,
    }}});
    api.patch("www", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("declare an origin");
    let d = op
        .wait_for_condition(
            &api,
            "www",
            ["InSyncWithCdn", "False", "DeclaredDiffersFromCdn"],
            PATIENCE,
        )
        .await;
    let sync = condition(&d, "InSyncWithCdn").expect("InSyncWithCdn");
    assert!(
        sync.message.contains(r#"spec.origin.host: declared "old-origin.shop.example", the CDN has "origin.shop.example""#),
        "{}",
        sync.message
    );
    let ready = condition(&d, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "DeclaredDiffersFromCdn")
    );
    // Every request carried the account's credentials.
    assert!(
        fake.requests().iter().all(|r| r.authorized),
        "{:#?}",
        fake.requests()
    );
    // Each request is counted by provider, endpoint template and outcome; no ID, no token.
    let metrics = op.metrics();
    for series in [
        r#"httpsdelivery_provider_requests_total{provider="edgecast",endpoint="cps.certificate",outcome="ok"}"#,
        r#"httpsdelivery_provider_requests_total{provider="edgecast",endpoint="mcc.cnames",outcome="ok"}"#,
        r#"httpsdelivery_provider_request_duration_seconds_count{provider="edgecast",endpoint="mcc.cname.status",outcome="ok"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert!(
        !metrics.contains(EDGECAST_REST_TOKEN) && !metrics.contains("certificates/"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn propagation_is_followed_and_an_outage_is_unknown_then_true_with_one_event_each_way() {
    let (cp, world, ns, api) = setup("provider-flux").await;
    let fake = healthy_cdn().await;
    fake.edit(|s| {
        s.edgecast
            .set_edge_cname_propagation(EDGE_CNAME_ID, &Propagation::propagating(50.0))
    });
    create_account(cp, &ns, &fake, EDGECAST_REST_TOKEN).await;
    let op = start(cp, &world, &ns);
    api.create(
        &PostParams::default(),
        &provider_delivery(&ns, "www", "www.shop.example"),
    )
    .await
    .expect("create the delivery");
    let d = op
        .wait_for_condition(
            &api,
            "www",
            ["EdgeCnamePropagated", "False", "Propagating"],
            PATIENCE,
        )
        .await;
    let step3 = condition(&d, "EdgeCnamePropagated").expect("step 3");
    assert!(
        step3.message.contains("75% propagated"),
        "{}",
        step3.message
    );
    // Done at the CDN: followed without any change to the object.
    fake.edit(|s| {
        s.edgecast
            .set_edge_cname_propagation(EDGE_CNAME_ID, &Propagation::propagated())
    });
    op.wait_for_condition(&api, "www", READY, PATIENCE).await;

    // The API goes down: Unknown, never False. (A Ready delivery is looked at again at its
    // recheck interval, an hour here: a change of the object stands in for it.)
    fake.fail("/v2/mcc/*", 503);
    fake.fail("/sec/cps/*", 503);
    // Answers are shared for --min-recheck-interval (2 s): let the last ones age out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    nudge(&api, "www").await;
    let d = op
        .wait_for_condition(
            &api,
            "www",
            ["Ready", "Unknown", "ProviderUnavailable"],
            PATIENCE,
        )
        .await;
    for type_ in [
        "CertificateValid",
        "EdgeCnameConfigured",
        "EdgeCnamePropagated",
        "OriginHttpsReady",
        "InSyncWithCdn",
    ] {
        let c = condition(&d, type_).expect(type_);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "ProviderUnavailable"),
            "{type_}"
        );
    }
    fake.clear_faults();
    op.wait_for_condition(&api, "www", READY, PATIENCE).await;
    // Give a duplicate its chance, then count.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ev = events(cp.client().await, &ns, "www").await;
    assert_eq!(count(&ev, "Warning", "ProviderUnavailable"), 1, "{ev:#?}");
    let back: Vec<_> = ev
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Normal"))
        .filter(|e| {
            e.note
                .as_deref()
                .is_some_and(|n| !n.starts_with("EdgeCnamePropagated"))
        })
        .collect();
    assert_eq!(
        back.len(),
        1,
        "one Normal Event for the API's return: {back:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn refused_credentials_are_the_accounts_false_and_the_deliveries_unknown() {
    let (cp, world, ns, api) = setup("provider-auth").await;
    let fake = healthy_cdn().await;
    let wrong = "not-the-token-xxxxxxxx";
    create_account(cp, &ns, &fake, wrong).await;
    let op = start(cp, &world, &ns);
    let accounts: Api<CdnAccount> = Api::namespaced(cp.client().await, &ns);
    let account = op
        .wait_for_condition(
            &accounts,
            "edgecast",
            ["Ready", "False", "Unauthorized"],
            PATIENCE,
        )
        .await;
    let said = serde_json::to_string(&account.status).expect("status");
    assert!(!said.contains(wrong), "{said}");
    api.create(
        &PostParams::default(),
        &provider_delivery(&ns, "www", "www.shop.example"),
    )
    .await
    .expect("create the delivery");
    let d = op
        .wait_for_condition(
            &api,
            "www",
            ["Ready", "Unknown", "ProviderUnauthorized"],
            PATIENCE,
        )
        .await;
    assert!(
        !serde_json::to_string(&d.status)
            .expect("status")
            .contains(wrong)
    );
    assert!(!op.log().contains(wrong), "the token reached the log");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn twenty_deliveries_of_one_account_share_each_api_answer() {
    let (cp, world, ns, api) = setup("provider-share").await;
    let fake = healthy_cdn().await;
    let hosts: Vec<String> = (0..20).map(|i| format!("h{i}.shop.example")).collect();
    fake.edit(|s| {
        for (i, host) in hosts.iter().enumerate() {
            s.edgecast.put_edge_cname(
                EDGECAST_ACCOUNT,
                &EdgeCname::new(EDGE_CNAME_ID + 1 + i as i64, host, ORIGIN_ID),
            );
            s.edgecast.set_edge_cname_propagation(
                EDGE_CNAME_ID + 1 + i as i64,
                &Propagation::propagated(),
            );
        }
    });
    create_account(cp, &ns, &fake, EDGECAST_REST_TOKEN).await;
    // The default 30 s minimum recheck: one cycle is what is counted.
    let op = Operator::start_in_world(BIN, cp.kubeconfig_path(), &world, Some(&ns), &[]);
    for (i, host) in hosts.iter().enumerate() {
        api.create(
            &PostParams::default(),
            &provider_delivery(&ns, &format!("d{i}"), host),
        )
        .await
        .expect("create a delivery");
    }
    eventually(PATIENCE, async || {
        let mut missing = Vec::new();
        for i in 0..hosts.len() {
            if condition_of(&api, &format!("d{i}"), "InSyncWithCdn")
                .await
                .is_none()
            {
                missing.push(i);
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no verdict yet: {missing:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log()));
    let list = format!("/v2/mcc/customers/{EDGECAST_ACCOUNT}/cnames/httplarge");
    let certificate = format!("/sec/cps/v2.0/certificates/{CERTIFICATE_ID}");
    assert_eq!(fake.count("GET", &list), 1, "one listing for 20 deliveries");
    assert_eq!(
        fake.count("GET", &certificate),
        1,
        "one certificate read for 20 deliveries"
    );
    let origins = format!("/v2/mcc/customers/{EDGECAST_ACCOUNT}/origins/httplarge");
    assert_eq!(
        fake.count("GET", &origins),
        1,
        "one origin listing for 20 deliveries"
    );
}

/// The manifests `check` is given in provider mode: the account (pointing at `fake`), the
/// delivery, and, when `token` is given, the credentials Secret.
fn check_manifests(fake: &FakeCdn, token: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a directory");
    let mut yaml = format!(
        r#"apiVersion: httpsdelivery.dev/v1alpha1
kind: CdnAccount
metadata: {{name: edgecast, namespace: shop}}
spec:
  provider: edgecast
  edgecast: {{accountNumber: "{EDGECAST_ACCOUNT}", baseUrl: "{base}", tokenUrl: "{base}/connect/token"}}
  credentialsSecretRef: {{name: edgecast-credentials}}
---
apiVersion: httpsdelivery.dev/v1alpha1
kind: HttpsDelivery
metadata: {{name: www, namespace: shop}}
spec:
  hostname: www.shop.example
  certificate: {{}}
  cdn: {{accountRef: {{name: edgecast}}, certificateId: "{CERTIFICATE_ID}"}}
"#,
        base = fake.base_url()
    );
    if let Some(token) = token {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: edgecast-credentials, namespace: shop}}\n\
             stringData: {{rest_token: {token}, client_id: {EDGECAST_CLIENT_ID}, client_secret: {EDGECAST_CLIENT_SECRET}}}\n"
        ));
    }
    std::fs::write(dir.path().join("shop.yaml"), yaml).expect("write the manifests");
    dir
}

/// `check -f DIR -o json` against the world, with `env` set; exit code and stdout.
async fn run_check(
    world: &World,
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["check", "-f"])
        .arg(dir)
        .args(["-o", "json"])
        .args(world.probe_args());
    // Only what the test gives: no credentials from the machine's environment.
    for (var, _) in EDGECAST_ENV.iter().chain(AKAMAI_ENV.iter()) {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run check"))
        .await
        .expect("join");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn ready_of(report: &str) -> (String, String) {
    let report: serde_json::Value = serde_json::from_str(report).expect("JSON report");
    let ready = testkit::json::condition(&report["deliveries"][0], "Ready");
    (
        ready["status"].as_str().unwrap_or_default().into(),
        ready["reason"].as_str().unwrap_or_default().into(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reads_the_cdn_with_credentials_from_a_secret_or_the_environment() {
    let world = World::start().await.expect("world");
    let fake = healthy_cdn().await;

    let with_secret = check_manifests(&fake, Some(EDGECAST_REST_TOKEN));
    let (code, out) = run_check(&world, with_secret.path(), &[]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(ready_of(&out), ("True".into(), "Verified".into()), "{out}");
    assert!(
        !out.contains(EDGECAST_REST_TOKEN) && !out.contains(EDGECAST_CLIENT_SECRET),
        "{out}"
    );

    // Without the Secret: Unknown, exit 1, and the message says where credentials come from.
    let without = check_manifests(&fake, None);
    let (code, out) = run_check(&world, without.path(), &[]).await;
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        ready_of(&out),
        ("Unknown".into(), "ProviderUnauthorized".into()),
        "{out}"
    );
    assert!(out.contains("HTTPSDELIVERY_EDGECAST_REST_TOKEN"), "{out}");

    // The same from the environment.
    let env = [("HTTPSDELIVERY_EDGECAST_REST_TOKEN", EDGECAST_REST_TOKEN)];
    let (code, out) = run_check(&world, without.path(), &env).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains(EDGECAST_REST_TOKEN), "{out}");

    // A wrong token: Unknown, never a crash, and not repeated.
    let wrong = check_manifests(&fake, Some("wrong-token-xxxx"));
    let (code, out) = run_check(&world, wrong.path(), &[]).await;
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        ready_of(&out),
        ("Unknown".into(), "ProviderUnauthorized".into()),
        "{out}"
    );
    assert!(!out.contains("wrong-token-xxxx"), "{out}");
}

/// What Akamai has for www.shop.example when all is well, matching the loopback world:
/// enrollment 10 deployed to production; property prp_1000 version 3 active on PRODUCTION,
/// its hostname pointing at the world's target CNAME as a secure edge hostname; its origin
/// behavior reaching the world's origin over HTTPS.
async fn healthy_akamai() -> FakeCdn {
    let fake = FakeCdn::start(CdnConfig::default())
        .await
        .expect("fake CDN");
    fake.edit(|s| {
        let a = &mut s.akamai;
        a.put_contract("ctr_C-0000", "DIRECT_CUSTOMER");
        a.put_enrollment(&Enrollment::new(
            10,
            "www.shop.example",
            &["www.shop.example"],
        ));
        a.set_deployments(
            10,
            &CpsDeployments {
                production: Some(CpsDeployment {
                    certificate_pem: "-----BEGIN CERTIFICATE-----\n...".into(),
                    trust_chain_pem: String::new(),
                    expiry: "2030-01-01T00:00:00Z".into(),
                    key_algorithm: "RSA".into(),
                    dns_names: vec!["www.shop.example".into()],
                    secure_network: "enhanced-tls".into(),
                }),
                staging: None,
            },
        );
        a.put_property(&Property {
            property_id: "prp_1000".into(),
            property_name: "shop".into(),
            contract_id: "ctr_C-0000".into(),
            group_id: "grp_1".into(),
            latest_version: 3,
            production_version: Some(3),
            staging_version: None,
        });
        a.set_property_hostnames(
            "prp_1000",
            3,
            &[PropertyHostname {
                cname_from: "www.shop.example".into(),
                cname_to: "cs1.wpc.cdn.example".into(),
                edge_hostname_id: "ehn_2000".into(),
                cert_provisioning_type: "CPS_MANAGED".into(),
            }],
        );
        a.put_edge_hostname(&EdgeHostname {
            edge_hostname_id: "ehn_2000".into(),
            domain_prefix: "cs1.wpc.cdn".into(),
            domain_suffix: "example".into(),
            secure: true,
            status: "CREATED".into(),
        });
        a.put_activation(&Activation {
            activation_id: "atv_3000".into(),
            property_id: "prp_1000".into(),
            property_name: "shop".into(),
            property_version: 3,
            network: "PRODUCTION".into(),
            status: "ACTIVE".into(),
        });
        a.set_rules(
            "prp_1000",
            3,
            json!({
                "name": "default", "criteria": [], "children": [],
                "behaviors": [{"name": "origin", "options": {
                    "originType": "CUSTOMER", "hostname": "origin.shop.example",
                    "httpPort": 80, "httpsPort": 8443, "originSni": true,
                }}],
            }),
        );
    });
    fake
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reads_an_akamai_account_with_edgegrid_credentials_from_the_environment() {
    let world = World::start().await.expect("world");
    let fake = healthy_akamai().await;
    let dir = tempfile::tempdir().expect("a directory");
    let yaml = format!(
        r#"apiVersion: httpsdelivery.dev/v1alpha1
kind: CdnAccount
metadata: {{name: akamai, namespace: shop}}
spec:
  provider: akamai
  akamai: {{contractId: ctr_C-0000, groupId: grp_1, baseUrl: "{}"}}
  credentialsSecretRef: {{name: akamai-edgerc}}
---
apiVersion: httpsdelivery.dev/v1alpha1
kind: HttpsDelivery
metadata: {{name: www, namespace: shop}}
spec:
  hostname: www.shop.example
  certificate: {{}}
  cdn: {{accountRef: {{name: akamai}}, certificateId: "10", edgeCnameId: prp_1000}}
"#,
        fake.base_url()
    );
    std::fs::write(dir.path().join("shop.yaml"), yaml).expect("write");
    let known = EdgeGridCredentials::placeholder();
    let host = fake.addr().to_string();
    let env = [
        ("AKAMAI_HOST", host.as_str()),
        ("AKAMAI_CLIENT_TOKEN", known.client_token.as_str()),
        ("AKAMAI_CLIENT_SECRET", known.client_secret.as_str()),
        ("AKAMAI_ACCESS_TOKEN", known.access_token.as_str()),
    ];
    let (code, out) = run_check(&world, dir.path(), &env).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(ready_of(&out), ("True".into(), "Verified".into()), "{out}");
    assert!(!out.contains(&known.client_secret), "{out}");
    // Every request was signed, and the signature verified.
    let requests = fake.requests();
    assert!(
        !requests.is_empty() && requests.iter().all(|r| r.authorized),
        "{requests:#?}"
    );

    // A wrong secret: Unknown, never False, never repeated.
    let wrong = "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy=";
    let mut env = env;
    env[2] = ("AKAMAI_CLIENT_SECRET", wrong);
    let (code, out) = run_check(&world, dir.path(), &env).await;
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        ready_of(&out),
        ("Unknown".into(), "ProviderUnauthorized".into()),
        "{out}"
    );
    assert!(!out.contains(wrong), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn a_cluster_account_reads_its_secret_from_the_operators_namespace_only() {
    use httpsdelivery_operator::api::account::{ClusterCdnAccount, ClusterCdnAccountSpec};
    let (cp, world, ns, api) = setup("provider-cluster").await;
    let operator_ns = cp.namespace("provider-operator").await;
    let fake = healthy_cdn().await;
    // The same Secret name in the delivery's namespace must not be what is used.
    create_credentials(cp, &ns, "cluster-credentials").await;
    let name = format!("edgecast-{ns}");
    let spec: CdnAccountSpec = serde_json::from_value(json!({
        "provider": "edgecast",
        "edgecast": {"accountNumber": EDGECAST_ACCOUNT, "baseUrl": fake.base_url()},
        "credentialsSecretRef": {"name": "cluster-credentials"},
    }))
    .expect("the account spec");
    let accounts: Api<ClusterCdnAccount> = Api::all(cp.client().await);
    accounts
        .create(
            &PostParams::default(),
            &ClusterCdnAccount::new(&name, ClusterCdnAccountSpec { account: spec }),
        )
        .await
        .expect("create the ClusterCdnAccount");
    let mut args = vec![
        "--watch-namespace".to_owned(),
        ns.clone(),
        "--operator-namespace".to_owned(),
        operator_ns.clone(),
        "--min-recheck-interval=2s".to_owned(),
    ];
    args.extend(world.probe_args());
    let op = Operator::start(BIN, cp.kubeconfig_path(), args);
    let mut d = provider_delivery(&ns, "www", "www.shop.example");
    if let Some(cdn) = d.spec.cdn.as_mut() {
        cdn.account_ref =
            serde_json::from_value(json!({"kind": "ClusterCdnAccount", "name": name}))
                .expect("reference");
    }
    api.create(&PostParams::default(), &d)
        .await
        .expect("create the delivery");
    let d = op
        .wait_for_condition(
            &api,
            "www",
            ["Ready", "Unknown", "ProviderUnauthorized"],
            PATIENCE,
        )
        .await;
    let ready = condition(&d, "Ready").expect("Ready");
    assert!(ready.message.contains(&operator_ns), "{}", ready.message);
    // In the operator's namespace, it is used.
    create_credentials(cp, &operator_ns, "cluster-credentials").await;
    op.wait_for_condition(&api, "www", READY, Duration::from_secs(60))
        .await;
    let _ = accounts.delete(&name, &Default::default()).await;
}

/// A namespaced CdnAccount's base URL is a namespace user's input and passes the target guard;
/// a ClusterCdnAccount's is the administrators' and may be any address. Without
/// `--allow-cidr`, loopback is refused to the one and not to the other.
#[tokio::test(flavor = "multi_thread")]
async fn only_a_namespaced_accounts_base_url_is_held_to_the_target_guard() {
    let world = World::start().await.expect("world");
    let fake = healthy_cdn().await;
    let dir = check_manifests(&fake, Some(EDGECAST_REST_TOKEN));
    let cluster = std::fs::read_to_string(dir.path().join("shop.yaml"))
        .expect("read")
        .replacen(
            "kind: CdnAccount\nmetadata: {name: edgecast, namespace: shop}",
            "kind: ClusterCdnAccount\nmetadata: {name: edgecast}",
            1,
        )
        .replace(
            "accountRef: {name: edgecast}",
            "accountRef: {kind: ClusterCdnAccount, name: edgecast}",
        );
    let cluster_dir = tempfile::tempdir().expect("a directory");
    std::fs::write(cluster_dir.path().join("shop.yaml"), cluster).expect("write");
    let no_allow: Vec<String> = {
        let args = world.probe_args();
        let at = args
            .iter()
            .position(|a| a == "--allow-cidr")
            .expect("the flag");
        [&args[..at], &args[at + 2..]].concat()
    };
    for (dir, status, reason) in [
        (dir.path(), "Unknown", "ProviderUnauthorized"),
        (cluster_dir.path(), "True", "InSync"),
    ] {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["check", "-f"])
            .arg(dir)
            .args(["-o", "json"])
            .args(&no_allow);
        let out = cmd.output().expect("run check");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        let sync = testkit::json::condition(&report["deliveries"][0], "InSyncWithCdn");
        assert_eq!(
            (sync["status"].as_str(), sync["reason"].as_str()),
            (Some(status), Some(reason)),
            "{report:#}"
        );
        if status == "Unknown" {
            assert!(
                sync["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("--allow-cidr"),
                "{sync}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn an_akamai_delivery_is_ready_from_cps_and_papi_and_follows_a_new_activation() {
    let (cp, world, ns, api) = setup("provider-akamai").await;
    let fake = healthy_akamai().await;
    let known = EdgeGridCredentials::placeholder();
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "akamai-edgerc", "namespace": ns},
        "stringData": {
            "host": fake.addr().to_string(), "client_token": known.client_token,
            "client_secret": known.client_secret, "access_token": known.access_token,
        },
    }))
    .expect("the Secret");
    Api::<Secret>::namespaced(cp.client().await, &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the Secret");
    let spec: CdnAccountSpec = serde_json::from_value(json!({
        "provider": "akamai",
        "akamai": {"contractId": "ctr_C-0000", "groupId": "grp_1", "baseUrl": fake.base_url()},
        "credentialsSecretRef": {"name": "akamai-edgerc"},
    }))
    .expect("the account spec");
    let mut account = CdnAccount::new("akamai", spec);
    account.metadata.namespace = Some(ns.clone());
    let accounts: Api<CdnAccount> = Api::namespaced(cp.client().await, &ns);
    accounts
        .create(&PostParams::default(), &account)
        .await
        .expect("create the CdnAccount");
    let op = start(cp, &world, &ns);
    let mut d = provider_delivery(&ns, "www", "www.shop.example");
    d.spec.cdn = serde_json::from_value(json!({
        "accountRef": {"name": "akamai"}, "certificateId": "10", "edgeCnameId": "prp_1000",
    }))
    .expect("cdn");
    api.create(&PostParams::default(), &d)
        .await
        .expect("create the delivery");
    let d = op.wait_for_condition(&api, "www", READY, PATIENCE).await;
    let step3 = condition(&d, "EdgeCnamePropagated").expect("step 3");
    assert!(
        step3.message.contains("akamai reports"),
        "{}",
        step3.message
    );
    op.wait_for_condition(&accounts, "akamai", READY, PATIENCE)
        .await;

    // A new version is being activated on PRODUCTION: step 3 follows it to ACTIVE.
    let activation = |status: &str| Activation {
        activation_id: "atv_3001".into(),
        property_id: "prp_1000".into(),
        property_name: "shop".into(),
        property_version: 3,
        network: "PRODUCTION".into(),
        status: status.into(),
    };
    fake.edit(|s| s.akamai.put_activation(&activation("ZONE_2")));
    tokio::time::sleep(Duration::from_secs(3)).await;
    nudge(&api, "www").await;
    op.wait_for_condition(
        &api,
        "www",
        ["EdgeCnamePropagated", "False", "Propagating"],
        PATIENCE,
    )
    .await;
    fake.edit(|s| s.akamai.put_activation(&activation("ACTIVE")));
    op.wait_for_condition(&api, "www", READY, PATIENCE).await;
    assert!(
        fake.requests().iter().all(|r| r.authorized),
        "every request signed"
    );
}
