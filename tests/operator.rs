//! The operator end to end: the real binary (`run`) against the real control plane, with the
//! loopback DNS and TLS world standing in for the CDN, the DNS provider and the origin.

use httpsdelivery_operator::api::{HttpsDelivery, SecretReference};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};
use testkit::controlplane::{ControlPlane, shared};
use testkit::operator::{
    Operator, condition, count, events, eventually, has_condition, nudge, recheck, tls_secret,
};
use testkit::pki::{Leaf, LeafSpec};
use testkit::world::{World, example};

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");

/// The field manager the operator applies status under.
const FIELD_MANAGER: &str = "httpsdelivery-operator";

/// Bounds a wait for what should happen within seconds, generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

const READY: [&str; 3] = ["Ready", "True", "Verified"];
const PROPAGATING: [&str; 3] = ["EdgeCnamePropagated", "False", "Propagating"];
const PROPAGATED: [&str; 3] = ["EdgeCnamePropagated", "True", "Propagated"];

/// How many reconciles a window must hold in which no duplicate Event may appear (each caused
/// by a new generation, see [`recheck`]), so that the window is not trivially empty.
const RECHECKS: u64 = 3;

/// Starts the operator on `namespace`, probing the loopback world (see
/// [`Operator::start_in_world`]).
fn start(cp: &ControlPlane, world: &World, namespace: &str, extra: &[&str]) -> Operator {
    Operator::start_in_world(BIN, cp.kubeconfig_path(), world, Some(namespace), extra)
}

/// The healthy example in `namespace`, with test-sized check settings.
fn healthy(namespace: &str, name: &str, checks: serde_json::Value) -> HttpsDelivery {
    let mut d: HttpsDelivery = example("healthy.yaml");
    d.metadata.namespace = Some(namespace.into());
    d.metadata.name = Some(name.into());
    d.spec.checks = Some(serde_json::from_value(checks).expect("check settings"));
    d
}

async fn events_of(cp: &ControlPlane, namespace: &str, name: &str) -> Vec<Event> {
    events(cp.client().await, namespace, name).await
}

/// The Secret `www-tls` (a valid certificate for www.shop.example), the operator, then the
/// healthy delivery `www` referencing that Secret, rechecked hourly.
async fn start_with_secret_backed_www(
    cp: &ControlPlane,
    world: &World,
    ns: &str,
    api: &Api<HttpsDelivery>,
) -> (Operator, Api<Secret>) {
    let secrets: Api<Secret> = Api::namespaced(cp.client().await, ns);
    let leaf = world.ca.issue(LeafSpec::valid_for(["www.shop.example"]));
    secrets
        .create(&PostParams::default(), &tls_secret("www-tls", &leaf))
        .await
        .expect("create the Secret");
    let op = start(cp, world, ns, &[]);
    let mut d = healthy(ns, "www", json!({"recheckInterval": "1h"}));
    d.spec.certificate.secret_ref = Some(SecretReference {
        name: "www-tls".into(),
    });
    api.create(&PostParams::default(), &d)
        .await
        .expect("create the delivery");
    (op, secrets)
}

/// Waits for the Event `type_ reason` of `name`, then has the operator recheck it
/// [`RECHECKS`] times (so that a repeated Event had its chances), and returns the Events then.
async fn events_after_rechecks(
    cp: &ControlPlane,
    api: &Api<HttpsDelivery>,
    name: &str,
    op: &Operator,
    type_: &str,
    reason: &str,
) -> Vec<Event> {
    let ns = api.namespace().unwrap_or_default().to_string();
    let ns = ns.as_str();
    eventually(PATIENCE, async || {
        let ev = events_of(cp, ns, name).await;
        if count(&ev, type_, reason) > 0 {
            Ok(())
        } else {
            Err(format!("{ev:#?}"))
        }
    })
    .await
    .unwrap_or_else(|ev| panic!("no {type_} {reason} Event among {ev}\n{}", op.log()));
    recheck(op, api, name, RECHECKS).await;
    events_of(cp, ns, name).await
}

/// Creates the healthy example as `name` and waits until it is Ready.
async fn create_ready(
    api: &Api<HttpsDelivery>,
    ns: &str,
    name: &str,
    checks: serde_json::Value,
    op: &Operator,
) -> HttpsDelivery {
    api.create(&PostParams::default(), &healthy(ns, name, checks))
        .await
        .expect("create the delivery");
    op.wait_for_condition(api, name, READY, PATIENCE).await
}

/// The status is written by server-side apply under the operator's field manager and by
/// nothing else: besides the creator's entry, exactly one managedFields entry, for the status
/// subresource, operation Apply, owning the status fields.
fn assert_status_applied_by_the_operator(d: &HttpsDelivery) {
    let entries = d.metadata.managed_fields.as_deref().unwrap_or_default();
    let [creator, operator] = entries else {
        panic!("not the creator plus one status manager: {entries:#?}");
    };
    let (creator, operator) = if creator.subresource.is_some() {
        (operator, creator)
    } else {
        (creator, operator)
    };
    assert_eq!(
        (creator.operation.as_deref(), creator.subresource.as_deref()),
        (Some("Update"), None),
        "the creator's entry: {entries:#?}"
    );
    assert_eq!(
        (
            operator.manager.as_deref(),
            operator.operation.as_deref(),
            operator.subresource.as_deref()
        ),
        (Some(FIELD_MANAGER), Some("Apply"), Some("status")),
        "{entries:#?}"
    );
    let owned = &operator.fields_v1.as_ref().expect("fieldsV1").0["f:status"];
    for field in ["f:conditions", "f:observedGeneration", "f:dns"] {
        assert!(
            owned.get(field).is_some(),
            "{FIELD_MANAGER} does not own status {field}: {owned:#}"
        );
    }
    let creator_owns = &creator.fields_v1.as_ref().expect("fieldsV1").0;
    assert!(
        creator_owns.get("f:status").is_none(),
        "the creator owns status fields: {creator_owns:#}"
    );
}

/// What the real kubectl prints; fails the test when it fails.
fn kubectl(cp: &ControlPlane, args: &[&str]) -> String {
    let mut cmd = cp.kubectl();
    cmd.args(args);
    testkit::process::succeed(&format!("kubectl {args:?}"), cmd, None)
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
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn healthy_delivery_is_ready_then_dns_breaks_and_heals_with_one_event_each() {
    let (cp, world, ns, api) = setup("dns").await;
    let op = start(cp, &world, &ns, &[]);
    let d = create_ready(&api, &ns, "www", json!({"recheckInterval": "1h"}), &op).await;
    let status = d.status.clone().expect("status");
    assert_eq!(status.observed_generation, Some(1));
    let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(
        types,
        [
            "CertificateValid",
            "EdgeCnameConfigured",
            "EdgeCnamePropagated",
            "OriginHttpsReady",
            "DnsConfigured",
            "EdgeServing",
            "EdgeHttpOk",
            "DnsHealthy",
            "Ready"
        ]
    );
    assert!(
        status.conditions.iter().all(|c| c.status == "True"),
        "{:#?}",
        status.conditions
    );
    let http = status.http.clone().expect("HTTP evidence");
    assert_eq!(http.alpn.as_deref(), Some("h2"), "{http:?}");
    assert_eq!(
        status.dns.expect("dns evidence").chain,
        vec!["www.shop.example. IN CNAME cs1.wpc.cdn.example."]
    );
    assert_eq!(
        status.certificate.expect("certificate evidence").dns_names,
        vec!["www.shop.example"]
    );
    assert_status_applied_by_the_operator(&d);

    // The customer's DNS provider now points the hostname at another certificate's target.
    world.dns.update(|zones| {
        zones[0] = zones[0]
            .clone()
            .remove("www.shop.example")
            .cname("www.shop.example", "cs2.wpc.cdn.example");
    });
    nudge(&api, "www").await;
    let d = op
        .wait_for_condition(
            &api,
            "www",
            ["DnsConfigured", "False", "CnameTargetMismatch"],
            PATIENCE,
        )
        .await;
    assert!(has_condition(&d, "Ready", "False", "CnameTargetMismatch"));
    // Several more rechecks while broken: still exactly one Warning.
    let ev = events_after_rechecks(cp, &api, "www", &op, "Warning", "CnameTargetMismatch").await;
    assert_eq!(count(&ev, "Warning", "CnameTargetMismatch"), 1, "{ev:#?}");

    world.dns.set_zones(world.zones());
    nudge(&api, "www").await;
    op.wait_for_condition(&api, "www", READY, PATIENCE).await;
    let ev = events_after_rechecks(cp, &api, "www", &op, "Normal", "Verified").await;
    assert_eq!(count(&ev, "Normal", "Verified"), 1, "{ev:#?}");
    assert_eq!(count(&ev, "Warning", "CnameTargetMismatch"), 1, "{ev:#?}");
    assert_status_applied_by_the_operator(&api.get("www").await.expect("read back"));

    // kubectl describe (the real kubectl) shows the conditions with their messages and the Events.
    let text = kubectl(cp, &["describe", "hd", "www", "-n", &ns]);
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
    let text = kubectl(cp, &["get", "hd", "-n", &ns]);
    assert!(
        text.contains("www.shop.example") && text.contains("True") && text.contains("Verified"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn rotating_the_secret_to_an_expired_certificate_is_seen_within_seconds() {
    let (cp, world, ns, api) = setup("rotate").await;
    let (op, secrets) = start_with_secret_backed_www(cp, &world, &ns, &api).await;
    op.wait_for_condition(
        &api,
        "www",
        ["CertificateValid", "True", "Verified"],
        PATIENCE,
    )
    .await;

    let expired = world
        .ca
        .issue(LeafSpec::valid_for(["www.shop.example"]).expired());
    let started = Instant::now();
    rotate(&secrets, "www-tls", &expired).await;
    let d = op
        .wait_for_condition(
            &api,
            "www",
            ["CertificateValid", "False", "Expired"],
            Duration::from_secs(15),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "not at the next recheck (1h)"
    );
    let message = condition(&d, "CertificateValid")
        .expect("CertificateValid")
        .message;
    assert!(
        message.contains("Secret/www-tls") && message.contains("expired on"),
        "{message}"
    );
    assert!(!op.log().contains("PRIVATE KEY") && !message.contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn an_edge_cname_change_propagates_without_outside_help() {
    let (cp, world, ns, api) = setup("propagate").await;
    let op = start(cp, &world, &ns, &[]);
    let mut d = healthy(
        &ns,
        "www",
        json!({"recheckInterval": "1h", "propagationDelay": "5s"}),
    );
    d.spec.edge_cname.as_mut().expect("declared").modified_at = None;
    api.create(&PostParams::default(), &d)
        .await
        .expect("create the delivery");
    // Without modifiedAt the operator starts the clock when it first sees the configuration.
    let seen = op
        .wait_for_condition(&api, "www", PROPAGATING, PATIENCE)
        .await;
    assert!(
        seen.status.as_ref().is_some_and(|s| s.edge_cname.is_some()),
        "change tracking is recorded"
    );
    op.wait_for_condition(&api, "www", PROPAGATED, PATIENCE)
        .await;
    op.wait_for_condition(&api, "www", READY, PATIENCE).await;

    // A change of the edge CNAME (a new origin name, and the origin renamed to match) restarts the clock.
    let patch = json!({"spec": {"edgeCname": {"origin": "shop-origin-2"}, "origin": {"name": "shop-origin-2"}}});
    api.patch("www", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("change the edge CNAME");
    op.wait_for_condition(&api, "www", PROPAGATING, PATIENCE)
        .await;
    op.wait_for_condition(&api, "www", PROPAGATED, PATIENCE)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn steady_state_writes_nothing() {
    let (cp, world, ns, api) = setup("steady").await;
    let op = start(cp, &world, &ns, &[]);
    // The shortest recheck the schema allows: the window below holds two real rechecks.
    create_ready(&api, &ns, "www", json!({"recheckInterval": "30s"}), &op).await;
    let before = api
        .get("www")
        .await
        .expect("read")
        .metadata
        .resource_version;
    let events_before = events_of(cp, &ns, "www").await.len();
    let reconciles_before = op.reconciles();
    let reconciles_after = op.reconciles_more(2, Duration::from_secs(90)).await;
    let after = api
        .get("www")
        .await
        .expect("read")
        .metadata
        .resource_version;
    assert_eq!(
        before, after,
        "a status write in steady state, during {reconciles_before} -> {reconciles_after} \
         reconciles"
    );
    assert_eq!(
        events_of(cp, &ns, "www").await.len(),
        events_before,
        "an Event in steady state"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn two_replicas_elect_one_writer_and_fail_over() {
    let (cp, world, ns, api) = setup("leader").await;
    let lease_flags = ["--leader-elect", "--lease-duration", "4s"];
    let mut a = start(
        cp,
        &world,
        &ns,
        &[&lease_flags[..], &["--identity", "replica-a"]].concat(),
    );
    let leases: Api<Lease> = Api::namespaced(cp.client().await, &ns);
    let holder_is = |who: &'static str| {
        let leases = leases.clone();
        async move || {
            let holder = leases
                .get_opt("httpsdelivery-operator")
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity);
            if holder.as_deref() == Some(who) {
                Ok(())
            } else {
                Err(format!("the Lease is held by {holder:?}"))
            }
        }
    };
    // Let a take the lease first.
    eventually(PATIENCE, holder_is("replica-a"))
        .await
        .unwrap_or_else(|e| panic!("replica-a never became leader ({e}):\n{}", a.log()));
    let b = start(
        cp,
        &world,
        &ns,
        &[&lease_flags[..], &["--identity", "replica-b"]].concat(),
    );
    create_ready(&api, &ns, "www", json!({"recheckInterval": "1h"}), &a).await;
    // Only the leader works: while a rechecks, b's metrics show no reconcile, and the status
    // has the one writer.
    recheck(&a, &api, "www", RECHECKS).await;
    assert_eq!(b.reconciles(), 0, "the follower reconciled:\n{}", b.log());
    assert_status_applied_by_the_operator(&api.get("www").await.expect("read"));

    // The leader dies without releasing the lease; b takes over within the lease time.
    let killed = Instant::now();
    a.kill();
    eventually(Duration::from_secs(15), holder_is("replica-b"))
        .await
        .unwrap_or_else(|e| panic!("replica-b did not take over ({e}):\n{}", b.log()));
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(4 + 5 + 2),
        "failover took {took:?}"
    );
    // b now reconciles: break DNS and see b write it.
    world.dns.update(|zones| {
        zones[0] = zones[0].clone().remove("www.shop.example");
    });
    nudge(&api, "www").await;
    let d = b
        .wait_for_condition(
            &api,
            "www",
            ["DnsConfigured", "False", "NxDomain"],
            PATIENCE,
        )
        .await;
    assert!(b.reconciles() > 0);
    assert_status_applied_by_the_operator(&d);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn the_older_delivery_keeps_a_hostname_and_the_other_takes_over_when_it_goes() {
    let (cp, world, ns, api) = setup("conflict").await;
    let op = start(cp, &world, &ns, &[]);
    let first = create_ready(&api, &ns, "first", json!({"recheckInterval": "1h"}), &op).await;
    // Creation timestamps have a one-second resolution: "second" must be created in a later
    // second to be the younger one.
    let first_created = first
        .metadata
        .creation_timestamp
        .expect("creationTimestamp")
        .0;
    eventually(Duration::from_secs(5), async || {
        let now = jiff::Timestamp::now();
        if now.as_second() > first_created.as_second() {
            Ok(())
        } else {
            Err(format!("still {now}"))
        }
    })
    .await
    .expect("the clock moves on");
    let second = api
        .create(
            &PostParams::default(),
            &healthy(&ns, "second", json!({"recheckInterval": "1h"})),
        )
        .await
        .expect("create the second delivery");
    let second_created = second
        .metadata
        .creation_timestamp
        .expect("creationTimestamp")
        .0;
    assert!(
        second_created > first_created,
        "second ({second_created}) is younger than first ({first_created})"
    );
    let d = op
        .wait_for_condition(
            &api,
            "second",
            ["Ready", "False", "HostnameConflict"],
            PATIENCE,
        )
        .await;
    let message = condition(&d, "Ready").expect("Ready").message;
    assert!(message.contains(&format!("{ns}/first")), "{message}");
    assert!(
        has_condition(
            &api.get("first").await.expect("read first"),
            "Ready",
            "True",
            "Verified"
        ),
        "the older one keeps it"
    );
    // The owner goes away: the other is Ready within seconds, not at its 1h recheck.
    api.delete("first", &Default::default())
        .await
        .expect("delete first");
    op.wait_for_condition(&api, "second", READY, Duration::from_secs(15))
        .await;
    // The deleted delivery's per-object metrics are dropped (checked every 15 s).
    assert!(op.metric_lines("name=\"second\"") > 0);
    eventually(PATIENCE, async || match op.metric_lines("name=\"first\"") {
        0 => Ok(()),
        n => Err(format!("{n} lines")),
    })
    .await
    .unwrap_or_else(|n| panic!("metrics of the deleted delivery linger: {n}"));
}

/// Replaces the certificate and key of Secret `name` with `leaf`'s (a rotation).
async fn rotate(secrets: &Api<Secret>, name: &str, leaf: &Leaf) {
    secrets
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(tls_secret(name, leaf)),
        )
        .await
        .unwrap_or_else(|e| panic!("rotate Secret {name}: {e}"));
}

/// The value of the counter `name` on the operator's /metrics.
fn counter(op: &Operator, name: &str) -> u64 {
    let text = op.metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn first_convergence_is_one_reconcile_and_one_write_per_delivery() {
    // The operator's own status write changes the object (resourceVersion, status) but not its
    // generation: it must not trigger a second reconcile, a second Secret read or more probes.
    let (cp, world, ns, api) = setup("converge").await;
    let (op, secrets) = start_with_secret_backed_www(cp, &world, &ns, &api).await;
    let ready = op.wait_for_condition(&api, "www", READY, PATIENCE).await;
    let written = ready.metadata.resource_version.clone();
    // Time for a self-triggered pass to happen if there were one (the write's watch event
    // arrives in milliseconds).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(op.reconciles(), 1, "one reconcile\n{}", op.log());
    assert_eq!(counter(&op, "httpsdelivery_secret_reads_total"), 1);
    let now = api.get("www").await.expect("get");
    assert_eq!(now.metadata.resource_version, written, "one status write");

    // A new generation is reconciled, and reads the unchanged Secret from the cache.
    api.patch(
        "www",
        &PatchParams::apply("test").force(),
        &Patch::Apply(json!({
            "apiVersion": "httpsdelivery.dev/v1alpha1", "kind": "HttpsDelivery",
            "spec": {"checks": {"recheckInterval": "2h"}}
        })),
    )
    .await
    .expect("change the spec");
    eventually(PATIENCE, async || {
        let n = op.reconciles();
        (n == 2).then_some(()).ok_or(format!("{n}"))
    })
    .await
    .unwrap_or_else(|n| panic!("{n} reconciles after a spec change\n{}", op.log()));
    assert_eq!(
        counter(&op, "httpsdelivery_secret_reads_total"),
        1,
        "an unchanged Secret is not read again"
    );

    // A changed Secret is read again, once.
    let renewed = world.ca.issue(LeafSpec::valid_for(["www.shop.example"]));
    rotate(&secrets, "www-tls", &renewed).await;
    eventually(PATIENCE, async || {
        let reads = counter(&op, "httpsdelivery_secret_reads_total");
        (reads == 2).then_some(()).ok_or(format!("{reads}"))
    })
    .await
    .unwrap_or_else(|n| panic!("{n} Secret reads after a rotation\n{}", op.log()));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn secrets_present_at_start_are_listed_not_fetched_one_by_one() {
    // A restart with many deliveries must not send one GET per Secret: the first read lists
    // the referenced Secrets in pages; only a later change is fetched on its own.
    const DELIVERIES: usize = 30;
    let (cp, world, ns, api) = setup("listed").await;
    let secrets: Api<Secret> = Api::namespaced(cp.client().await, &ns);
    let leaf = world.ca.issue(LeafSpec::valid_for(["*.shop.example"]));
    // A TLS Secret nobody references is not kept.
    secrets
        .create(&PostParams::default(), &tls_secret("unused", &leaf))
        .await
        .expect("create the unused Secret");
    for i in 0..DELIVERIES {
        let name = format!("d{i}");
        secrets
            .create(&PostParams::default(), &tls_secret(&name, &leaf))
            .await
            .expect("create a Secret");
        let mut d = healthy(&ns, &name, json!({"recheckInterval": "1h"}));
        d.spec.hostname = format!("{name}.shop.example");
        d.spec.certificate.secret_ref = Some(SecretReference { name });
        api.create(&PostParams::default(), &d)
            .await
            .expect("create a delivery");
    }
    let op = start(cp, &world, &ns, &[]);
    for i in 0..DELIVERIES {
        op.wait_for_condition(
            &api,
            &format!("d{i}"),
            ["CertificateValid", "True", "Verified"],
            PATIENCE,
        )
        .await;
    }
    let reads = |name| counter(&op, name);
    assert_eq!(
        (
            reads("httpsdelivery_secret_reads_total"),
            reads("httpsdelivery_secret_gets_total")
        ),
        (DELIVERIES as u64, 0),
        "every referenced Secret read once, by the list\n{}",
        op.log()
    );

    // A rotated Secret is fetched on its own, once.
    let renewed = world.ca.issue(LeafSpec::valid_for(["d7.shop.example"]));
    rotate(&secrets, "d7", &renewed).await;
    eventually(PATIENCE, async || {
        match (
            reads("httpsdelivery_secret_reads_total"),
            reads("httpsdelivery_secret_gets_total"),
        ) {
            (r, 1) if r == DELIVERIES as u64 + 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap_or_else(|n| panic!("(reads, GETs) after a rotation: {n}\n{}", op.log()));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn the_status_is_no_secret_oracle_and_a_label_selector_scopes_what_is_read() {
    let (cp, world, ns, api) = setup("secrets").await;
    let secrets: Api<Secret> = Api::namespaced(cp.client().await, &ns);
    let leaf = world.ca.issue(LeafSpec::valid_for(["www.shop.example"]));
    let mut opaque = tls_secret("opaque", &leaf);
    opaque.type_ = Some("Opaque".into());
    secrets
        .create(&PostParams::default(), &opaque)
        .await
        .expect("create an Opaque Secret");
    let mut labelled = tls_secret("labelled", &leaf);
    labelled.metadata.labels = Some([("certs".to_string(), "cdn".to_string())].into());
    for s in [labelled, tls_secret("unlabelled", &leaf)] {
        secrets
            .create(&PostParams::default(), &s)
            .await
            .expect("create a Secret");
    }
    let op = start(cp, &world, &ns, &["--secret-label-selector", "certs=cdn"]);
    let create = async |name: &str, secret: &str| {
        let mut d = healthy(&ns, name, json!({"recheckInterval": "1h"}));
        d.spec.hostname = "www.shop.example".into();
        d.spec.certificate.secret_ref = Some(SecretReference {
            name: secret.into(),
        });
        api.create(&PostParams::default(), &d)
            .await
            .expect("create the delivery");
    };
    create("labelled", "labelled").await;
    op.wait_for_condition(
        &api,
        "labelled",
        ["CertificateValid", "True", "Verified"],
        PATIENCE,
    )
    .await;
    for (name, secret) in [
        ("opaque", "opaque"),
        ("missing", "missing"),
        ("unlabelled", "unlabelled"),
    ] {
        create(name, secret).await;
    }
    // Another type and no Secret at all read the same; a Secret outside the selector is never read.
    let words = |d: &HttpsDelivery| condition(d, "CertificateValid").expect("condition").message;
    let opaque = op
        .wait_for_condition(
            &api,
            "opaque",
            ["CertificateValid", "False", "SecretNotAllowed"],
            PATIENCE,
        )
        .await;
    let missing = op
        .wait_for_condition(
            &api,
            "missing",
            ["CertificateValid", "False", "SecretNotAllowed"],
            PATIENCE,
        )
        .await;
    let unlabelled = op
        .wait_for_condition(
            &api,
            "unlabelled",
            ["CertificateValid", "False", "SecretNotAllowed"],
            PATIENCE,
        )
        .await;
    assert_eq!(
        words(&opaque).replace("opaque", "X"),
        words(&missing).replace("missing", "X"),
        "a Secret of another type reads like a missing one"
    );
    assert!(
        words(&unlabelled).contains("certs=cdn") && !words(&unlabelled).contains("Opaque"),
        "{}",
        words(&unlabelled)
    );
    assert_eq!(
        counter(&op, "httpsdelivery_secret_reads_total"),
        1,
        "only the labelled Secret was read"
    );
    drop(op);

    // Without a selector: the Opaque Secret still reads as missing, with the same words.
    let op = start(cp, &world, &ns, &[]);
    nudge(&api, "opaque").await;
    nudge(&api, "missing").await;
    let opaque = op
        .wait_for_condition(
            &api,
            "opaque",
            ["CertificateValid", "False", "SecretNotFound"],
            PATIENCE,
        )
        .await;
    let missing = op
        .wait_for_condition(
            &api,
            "missing",
            ["CertificateValid", "False", "SecretNotFound"],
            PATIENCE,
        )
        .await;
    assert_eq!(
        words(&opaque).replace("opaque", "X"),
        words(&missing).replace("missing", "X")
    );
    assert!(
        words(&missing).starts_with("no kubernetes.io/tls Secret named missing"),
        "{}",
        words(&missing)
    );
    assert_eq!(
        counter(&op, "httpsdelivery_secret_reads_total"),
        2,
        "the two TLS Secrets named (labelled, unlabelled) are read; the Opaque one never"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn many_claims_on_one_hostname_converge_in_one_pass_and_unrelated_changes_recheck_nobody() {
    const CLAIMS: usize = 40;
    let (cp, world, ns, api) = setup("fanout").await;
    let op = start(cp, &world, &ns, &[]);
    let owner = create_ready(&api, &ns, "owner", json!({"recheckInterval": "1h"}), &op).await;
    // creationTimestamp has whole seconds, and a tie goes to the name: let the clock pass the
    // owner's second so that every claim is younger.
    let born = owner
        .metadata
        .creation_timestamp
        .as_ref()
        .expect("creationTimestamp")
        .0
        .as_second();
    eventually(PATIENCE, async || {
        let now = jiff::Timestamp::now().as_second();
        (now > born).then_some(()).ok_or(format!("{now}"))
    })
    .await
    .expect("the clock moves");
    for i in 0..CLAIMS {
        api.create(
            &PostParams::default(),
            &healthy(&ns, &format!("claim-{i}"), json!({"recheckInterval": "1h"})),
        )
        .await
        .expect("create a claim");
    }
    let mut other = healthy(&ns, "other", json!({"recheckInterval": "1h"}));
    other.spec.hostname = "platform.shop.example".into();
    other.spec.edge_cname.as_mut().expect("declared").hostname = "platform.shop.example".into();
    api.create(&PostParams::default(), &other)
        .await
        .expect("create an unrelated delivery");
    for i in 0..CLAIMS {
        op.wait_for_condition(
            &api,
            &format!("claim-{i}"),
            ["Ready", "False", "HostnameConflict"],
            PATIENCE,
        )
        .await;
    }
    op.wait_for_condition(&api, "other", READY, PATIENCE).await;
    // One reconcile each: the younger claims never change the owner, so nobody is re-checked.
    let converged = op.reconciles();
    assert!(
        converged <= (CLAIMS as u64 + 2) * 11 / 10,
        "{converged} reconciles for {} deliveries",
        CLAIMS + 2
    );
    // A new generation of an unrelated delivery re-checks it alone, not the losers.
    nudge(&api, "other").await;
    eventually(PATIENCE, async || {
        let n = op.reconciles();
        (n > converged).then_some(n).ok_or(format!("{n}"))
    })
    .await
    .unwrap_or_else(|n| panic!("no reconcile of the nudged delivery ({n})\n{}", op.log()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(op.reconciles(), converged + 1, "losers were re-checked");

    // The owner goes: the oldest loser takes the hostname over, and every claimant is looked at.
    api.delete("owner", &Default::default())
        .await
        .expect("delete the owner");
    op.wait_for_condition(&api, "claim-0", READY, PATIENCE)
        .await;
    op.wait_for_condition(
        &api,
        &format!("claim-{}", CLAIMS - 1),
        ["Ready", "False", "HostnameConflict"],
        PATIENCE,
    )
    .await;
    // The last claim was re-checked when the owner changed hands: it names the new owner.
    let last = format!("claim-{}", CLAIMS - 1);
    eventually(PATIENCE, async || {
        let d = api.get(&last).await.map_err(|e| e.to_string())?;
        let message = condition(&d, "Ready")
            .map(|c| c.message)
            .unwrap_or_default();
        message.contains("/claim-0,").then_some(()).ok_or(message)
    })
    .await
    .unwrap_or_else(|m| panic!("{last} does not name the new owner: {m}"));
}
