//! The exact requests a reconcile sends to the API server, against a mocked API server (the
//! controller-rs `ApiServerVerifier` pattern) and the loopback world of the examples.

use http::{Method, Request, Response, StatusCode};
use httpsdelivery_operator::api::{DnsEvidence, HttpsDelivery, HttpsDeliveryStatus};
use httpsdelivery_operator::controller::{self, Context, FIELD_MANAGER};
use httpsdelivery_operator::probe::{ProbeConfig, Prober};
use httpsdelivery_operator::telemetry::Metrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use testkit::json::condition;
use testkit::world::{World, example};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const STATUS_PATH: &str =
    "/apis/httpsdelivery.dev/v1alpha1/namespaces/shop/httpsdeliveries/www/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
const IDENTITY: &str = "reconcile-requests-test";
const UID: &str = "6f1b2c3d-0000-4000-8000-000000000001";
const GENERATION: i64 = 4;
/// Transition time planted in an existing status, so that a moved one is told apart.
const PLANTED_TIME: &str = "2026-01-01T00:00:00Z";
/// The condition types the operator owns, in the order it writes them.
const CONDITION_TYPES: [&str; 9] = [
    "CertificateValid",
    "EdgeCnameConfigured",
    "EdgeCnamePropagated",
    "OriginHttpsReady",
    "DnsConfigured",
    "EdgeServing",
    "EdgeHttpOk",
    "DnsHealthy",
    "Ready",
];
/// Bounds a whole reconcile (probes included) so a hang fails instead of stalling the suite.
const RECONCILE_LIMIT: Duration = Duration::from_secs(60);
/// How long the API server must stay silent after the reconcile returned.
const QUIET: Duration = Duration::from_millis(300);

/// What the API server is expected to receive during one reconcile, in order.
enum Scenario {
    /// One server-side apply of the status, nothing else.
    StatusApply(HttpsDelivery),
    /// One server-side apply of the status, then one Event creation.
    StatusApplyThenEvent(HttpsDelivery),
    /// No request at all.
    Silence,
}

/// The bodies the verifier received, for the tests' assertions on content.
#[derive(Default)]
struct Seen {
    status_apply: Option<Value>,
    event: Option<Value>,
}

struct ApiServerVerifier(Handle);

impl ApiServerVerifier {
    /// Answers the scenario's requests in order; once `done` fires (the reconcile returned), the
    /// server must stay quiet. Any unexpected request panics the task, which the test re-raises.
    fn run(
        self,
        scenario: Scenario,
        mut done: oneshot::Receiver<()>,
    ) -> JoinHandle<(Seen, Handle)> {
        tokio::spawn(async move {
            let mut handle = self.0;
            let mut seen = Seen::default();
            match scenario {
                Scenario::StatusApply(object) => {
                    seen.status_apply = Some(status_apply(&mut handle, &mut done, &object).await);
                }
                Scenario::StatusApplyThenEvent(object) => {
                    seen.status_apply = Some(status_apply(&mut handle, &mut done, &object).await);
                    seen.event = Some(event_create(&mut handle, &mut done).await);
                }
                Scenario::Silence => {}
            }
            tokio::select! {
                request = handle.next_request() => {
                    if let Some((request, _)) = request {
                        panic!("unexpected request during the reconcile: {} {}", request.method(), request.uri());
                    }
                }
                _ = &mut done => {}
            }
            // After the reconcile returned, nothing may follow.
            if let Ok(Some((request, _))) = tokio::time::timeout(QUIET, handle.next_request()).await
            {
                panic!(
                    "unexpected request after the reconcile: {} {}",
                    request.method(),
                    request.uri()
                );
            }
            (seen, handle)
        })
    }
}

impl ApiServerVerifier {
    /// Runs `action` (a reconcile, or one API call) while the verifier plays `scenario`, and
    /// re-raises the verifier's failures.
    async fn verify<T>(
        self,
        scenario: Scenario,
        action: impl Future<Output = T>,
    ) -> (T, Seen, Handle) {
        let (done_tx, done_rx) = oneshot::channel();
        let verifier = self.run(scenario, done_rx);
        let result = action.await;
        let _ = done_tx.send(());
        match verifier.await {
            Ok((seen, handle)) => (result, seen, handle),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("verifier: {e}"),
        }
    }
}

/// Waits for the next request; the reconcile returning first means it was never sent.
async fn expect_request(
    handle: &mut Handle,
    done: &mut oneshot::Receiver<()>,
    what: &str,
) -> (
    Request<Body>,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    tokio::select! {
        request = handle.next_request() => request.unwrap_or_else(|| panic!("the client went away before {what}")),
        _ = done => panic!("the reconcile returned without sending {what}"),
    }
}

fn query_pairs(request: &Request<Body>) -> BTreeSet<(String, String)> {
    request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn content_type(request: &Request<Body>) -> String {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn json_body(request: Request<Body>) -> Value {
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .expect("request body");
    serde_json::from_slice(&bytes).expect("request body is JSON")
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    let bytes = serde_json::to_vec(body).expect("response body");
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(bytes))
            .expect("response"),
    );
}

/// Asserts the shape of a status apply and answers with the object carrying the applied status.
async fn status_apply(
    handle: &mut Handle,
    done: &mut oneshot::Receiver<()>,
    object: &HttpsDelivery,
) -> Value {
    let (request, send) = expect_request(handle, done, "the status apply").await;
    assert_eq!(request.method(), Method::PATCH, "{}", request.uri());
    assert_eq!(request.uri().path(), STATUS_PATH);
    let expected_query: BTreeSet<(String, String)> =
        [("fieldManager", FIELD_MANAGER), ("force", "true")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(
        query_pairs(&request),
        expected_query,
        "query of {}",
        request.uri()
    );
    assert_eq!(content_type(&request), "application/apply-patch+yaml");
    let body = json_body(request).await;
    let keys: BTreeSet<&str> = body
        .as_object()
        .expect("body is an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["apiVersion", "kind", "status"]),
        "{body:#}"
    );
    assert_eq!(body["apiVersion"], "httpsdelivery.dev/v1alpha1");
    assert_eq!(body["kind"], "HttpsDelivery");

    let mut answer = serde_json::to_value(object).expect("object");
    answer["status"] = body["status"].clone();
    answer["metadata"]["resourceVersion"] = json!("43");
    respond(send, StatusCode::OK, &answer);
    body
}

/// Asserts the shape of an Event creation and answers with the posted Event.
async fn event_create(handle: &mut Handle, done: &mut oneshot::Receiver<()>) -> Value {
    let (request, send) = expect_request(handle, done, "the Event").await;
    assert_eq!(request.method(), Method::POST, "{}", request.uri());
    assert_eq!(request.uri().path(), EVENTS_PATH);
    assert_eq!(
        query_pairs(&request),
        BTreeSet::new(),
        "query of {}",
        request.uri()
    );
    assert_eq!(content_type(&request), "application/json");
    let body = json_body(request).await;
    assert_eq!(body["apiVersion"], "events.k8s.io/v1");
    assert_eq!(body["kind"], "Event");
    assert_eq!(body["metadata"]["namespace"], "shop");
    respond(send, StatusCode::CREATED, &body);
    body
}

/// The healthy example as the API server would hand it to the controller.
fn healthy_delivery() -> HttpsDelivery {
    let mut d: HttpsDelivery = example("healthy.yaml");
    assert_eq!(
        (d.metadata.namespace.as_deref(), d.metadata.name.as_deref()),
        (Some("shop"), Some("www"))
    );
    d.metadata.uid = Some(UID.into());
    d.metadata.generation = Some(GENERATION);
    d.metadata.resource_version = Some("42".into());
    d.metadata.creation_timestamp = Some(Time(PLANTED_TIME.parse().expect("time")));
    d
}

/// A Context on a mocked client, with a prober pointed at the loopback world.
struct Harness {
    ctx: Arc<Context>,
    handle: Option<Handle>,
}

impl Harness {
    fn new(world: &World) -> Result<Harness, Box<dyn std::error::Error + Send + Sync>> {
        let prober = Prober::new(&ProbeConfig {
            dns_servers: vec![world.dns.addr()],
            authoritative_port: world.dns.addr().port(),
            http_port: testkit::world::HTTP_PORT,
            ca_files: vec![world.ca_file().into()],
            https_port: testkit::world::PORT,
            allow_cidrs: vec!["127.0.0.0/8".parse()?],
            // Each reconcile of a test looks at the world as it is now.
            cache_window: std::time::Duration::ZERO,
            ..Default::default()
        })?;
        let (mock_service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(mock_service, "default");
        let ctx = Arc::new(Context::new(client, prober, Metrics::new(), IDENTITY));
        Ok(Harness {
            ctx,
            handle: Some(handle),
        })
    }

    /// Reconciles `object` (also put into the index, as the watch would) while the verifier
    /// plays `scenario`; re-raises the verifier's failures.
    async fn reconcile(
        &mut self,
        object: &HttpsDelivery,
        scenario: Scenario,
    ) -> (
        Result<kube::runtime::controller::Action, controller::Error>,
        Seen,
    ) {
        let guarded = DeserializeGuard(Ok(object.clone()));
        self.ctx
            .index
            .observe(&watcher::Event::Apply(guarded.clone()));
        let handle = self
            .handle
            .take()
            .expect("the handle is back after each reconcile");
        let reconcile = tokio::time::timeout(
            RECONCILE_LIMIT,
            controller::reconcile(Arc::new(guarded), self.ctx.clone()),
        );
        let (result, seen, handle) = ApiServerVerifier(handle).verify(scenario, reconcile).await;
        self.handle = Some(handle);
        (result.expect("the reconcile finishes"), seen)
    }
}

/// The structure every applied status has: the operator's conditions, each a complete
/// `metav1.Condition` at the object's generation, and the DNS evidence.
fn assert_status_structure(status: &Value) {
    assert_eq!(status["observedGeneration"], GENERATION, "{status:#}");
    let conditions = status["conditions"].as_array().expect("conditions");
    let types: Vec<&str> = conditions
        .iter()
        .map(|c| c["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, CONDITION_TYPES);
    for c in conditions {
        let keys: BTreeSet<&str> = c
            .as_object()
            .expect("condition")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "type",
                "status",
                "reason",
                "message",
                "lastTransitionTime",
                "observedGeneration"
            ]),
            "{c:#}"
        );
        assert!(
            ["True", "False", "Unknown"].contains(&c["status"].as_str().expect("status")),
            "{c:#}"
        );
        assert!(!c["reason"].as_str().expect("reason").is_empty(), "{c:#}");
        assert!(!c["message"].as_str().expect("message").is_empty(), "{c:#}");
        assert_eq!(c["observedGeneration"], GENERATION, "{c:#}");
        let t = c["lastTransitionTime"]
            .as_str()
            .expect("lastTransitionTime");
        t.parse::<jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("lastTransitionTime {t:?}: {e}"));
    }
    assert!(status["dns"]["chain"].is_array(), "{status:#}");
}

fn chain(status: &Value) -> Vec<&str> {
    status["dns"]["chain"]
        .as_array()
        .expect("dns.chain")
        .iter()
        .map(|l| l.as_str().expect("chain line"))
        .collect()
}

/// The loopback world, a harness probing it, and the healthy example after its first
/// reconcile, with the status body that reconcile applied.
async fn after_first_sight() -> (World, Harness, HttpsDelivery, Value) {
    let world = World::start().await.expect("the loopback world");
    let mut harness = Harness::new(&world).expect("the harness");
    let object = healthy_delivery();
    let (result, seen) = harness
        .reconcile(&object, Scenario::StatusApply(object.clone()))
        .await;
    if let Err(e) = result {
        panic!("first reconcile: {e}");
    }
    assert!(
        seen.event.is_none(),
        "no transition on a healthy first sight: {:#?}",
        seen.event
    );
    let applied = seen.status_apply.expect("the status apply");
    (world, harness, object, applied)
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_status_is_one_forced_server_side_apply_of_the_status() -> TestResult {
    let (mock_service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(mock_service, "default");
    let object = healthy_delivery();
    let status = HttpsDeliveryStatus {
        observed_generation: Some(GENERATION),
        conditions: vec![Condition {
            type_: "DnsConfigured".into(),
            status: "True".into(),
            reason: "Verified".into(),
            message: "dig www.shop.example reaches the target CNAME cs1.wpc.cdn.example.".into(),
            last_transition_time: Time(PLANTED_TIME.parse()?),
            observed_generation: Some(GENERATION),
        }],
        certificate: None,
        dns: Some(DnsEvidence {
            chain: vec!["www.shop.example. IN CNAME cs1.wpc.cdn.example.".into()],
            addresses: vec!["127.77.1.1".into()],
            ..DnsEvidence::default()
        }),
        http: None,
        edge_cname: None,
        compacted: None,
    };

    let (result, seen, _handle) = ApiServerVerifier(handle)
        .verify(
            Scenario::StatusApply(object),
            controller::apply_status(&client, "shop", "www", &status),
        )
        .await;
    result?;

    let body = seen.status_apply.expect("the status apply");
    assert_eq!(
        body,
        json!({
            "apiVersion": "httpsdelivery.dev/v1alpha1",
            "kind": "HttpsDelivery",
            "status": {
                "observedGeneration": GENERATION,
                "conditions": [{
                    "type": "DnsConfigured",
                    "status": "True",
                    "reason": "Verified",
                    "message": "dig www.shop.example reaches the target CNAME cs1.wpc.cdn.example.",
                    "lastTransitionTime": PLANTED_TIME,
                    "observedGeneration": GENERATION,
                }],
                "dns": {
                    "chain": ["www.shop.example. IN CNAME cs1.wpc.cdn.example."],
                    "addresses": ["127.77.1.1"],
                },
            },
        })
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn first_sight_of_a_healthy_delivery_applies_a_verified_status_and_no_event() -> TestResult {
    // No Event either: no transition on a healthy first sight.
    let (_world, _harness, object, applied) = after_first_sight().await;
    assert!(object.status.is_none());
    let status = &applied["status"];
    assert_status_structure(status);
    for type_ in CONDITION_TYPES {
        let c = condition(status, type_);
        assert_eq!(c["status"], "True", "{c:#}");
    }
    assert_eq!(condition(status, "Ready")["reason"], "Verified");
    assert_eq!(condition(status, "DnsConfigured")["reason"], "Verified");
    assert_eq!(
        chain(status),
        ["www.shop.example. IN CNAME cs1.wpc.cdn.example."]
    );
    // All conditions appeared together, so they share one transition time.
    let times: BTreeSet<&str> = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| c["lastTransitionTime"].as_str().expect("time"))
        .collect();
    assert_eq!(times.len(), 1, "{times:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_status_is_not_written_again() -> TestResult {
    let (_world, mut harness, mut object, applied) = after_first_sight().await;

    // The watch now delivers the object with exactly the status that was applied.
    object.status = Some(serde_json::from_value(applied["status"].clone())?);
    object.metadata.resource_version = Some("43".into());
    let (result, seen) = harness.reconcile(&object, Scenario::Silence).await;
    result?;
    assert!(seen.status_apply.is_none() && seen.event.is_none());

    // Checked explicitly as well: the reconcile returned and the API server heard nothing.
    let handle = harness.handle.as_mut().expect("handle");
    assert!(
        tokio::time::timeout(QUIET, handle.next_request())
            .await
            .is_err(),
        "the API server received a request after an unchanged reconcile"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_cname_applies_the_status_then_one_warning_event() -> TestResult {
    let (world, mut harness, mut object, mut applied) = after_first_sight().await;
    assert_eq!(
        condition(&applied["status"], "DnsConfigured")["status"],
        "True"
    );

    // The stored status is the applied one, with its transitions planted in the past so that a
    // moved transition time can be told from an unmoved one.
    for c in applied["status"]["conditions"]
        .as_array_mut()
        .expect("conditions")
    {
        c["lastTransitionTime"] = json!(PLANTED_TIME);
    }
    object.status = Some(serde_json::from_value(applied["status"].clone())?);
    object.metadata.resource_version = Some("43".into());

    world.dns.update(|zones| {
        zones[0] = zones[0]
            .clone()
            .remove("www.shop.example")
            .cname("www.shop.example", "cs2.wpc.cdn.example")
    });
    let started = jiff::Timestamp::now();
    let (result, seen) = harness
        .reconcile(&object, Scenario::StatusApplyThenEvent(object.clone()))
        .await;
    let finished = jiff::Timestamp::now();
    result?;

    let status = &seen.status_apply.expect("the status apply")["status"];
    assert_status_structure(status);
    let dns = condition(status, "DnsConfigured");
    assert_eq!(
        (&dns["status"], &dns["reason"]),
        (&json!("False"), &json!("CnameTargetMismatch")),
        "{dns:#}"
    );
    let ready = condition(status, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("CnameTargetMismatch")),
        "{ready:#}"
    );
    assert_eq!(
        chain(status),
        ["www.shop.example. IN CNAME cs2.wpc.cdn.example."]
    );
    for type_ in CONDITION_TYPES {
        let c = condition(status, type_);
        let t: jiff::Timestamp = c["lastTransitionTime"].as_str().expect("time").parse()?;
        if type_ == "DnsConfigured" || type_ == "Ready" {
            // The reconcile reads the clock itself: its transition time lies within the
            // reconcile (serialized to the second, so compared to the second).
            assert!(
                (started.as_second()..=finished.as_second()).contains(&t.as_second()),
                "{type_} moved to the time of the reconcile ({started} .. {finished}): {c:#}"
            );
        } else {
            assert_eq!(c["status"], "True", "{c:#}");
            assert_eq!(
                c["lastTransitionTime"], PLANTED_TIME,
                "{type_} did not change: {c:#}"
            );
        }
    }

    let event = seen.event.expect("the Event");
    assert_eq!(event["type"], "Warning", "{event:#}");
    assert_eq!(event["reason"], "CnameTargetMismatch", "{event:#}");
    assert_eq!(event["action"], "Check", "{event:#}");
    let note = event["note"].as_str().expect("note");
    assert!(note.starts_with("DnsConfigured:"), "{note}");
    assert!(note.contains("cs2.wpc.cdn.example"), "{note}");
    assert_eq!(event["reportingController"], FIELD_MANAGER);
    assert_eq!(event["reportingInstance"], IDENTITY);
    // kube's `Resource::object_ref` names the object by uid, not by resourceVersion.
    assert_eq!(
        event["regarding"],
        json!({
            "apiVersion": HttpsDelivery::api_version(&()),
            "kind": "HttpsDelivery",
            "namespace": "shop",
            "name": "www",
            "uid": UID,
        })
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unparsable_checks_duration_is_ready_false_invalid_spec_and_one_warning() -> TestResult {
    // A value the CRD's rule refuses today, as an object stored before the rule would hold it:
    // never silently replaced by the default.
    let (_world, mut harness, mut object, applied) = after_first_sight().await;
    object.status = Some(serde_json::from_value(applied["status"].clone())?);
    object.metadata.generation = Some(GENERATION + 1);
    object.spec.checks = Some(serde_json::from_value(json!({"timeout": "10 minutes"}))?);
    let (result, seen) = harness
        .reconcile(&object, Scenario::StatusApplyThenEvent(object.clone()))
        .await;
    let action = result?;
    assert_eq!(
        action,
        kube::runtime::controller::Action::await_change(),
        "nothing to recheck until the object changes"
    );
    let status = &seen.status_apply.expect("the status apply")["status"];
    let ready = condition(status, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("InvalidSpec")),
        "{ready:#}"
    );
    let message = ready["message"].as_str().expect("message");
    assert!(
        message.contains("spec.checks.timeout") && message.contains("10 minutes"),
        "{message}"
    );
    for type_ in CONDITION_TYPES.iter().filter(|t| **t != "Ready") {
        let c = condition(status, type_);
        assert_eq!(
            (&c["status"], &c["reason"]),
            (&json!("Unknown"), &json!("InvalidSpec")),
            "{c:#}"
        );
    }
    assert_eq!(
        status["edgeCname"], applied["status"]["edgeCname"],
        "the edge CNAME tracking is kept"
    );
    let event = seen.event.expect("one Event");
    assert_eq!(
        (&event["type"], &event["reason"]),
        (&json!("Warning"), &json!("InvalidSpec")),
        "{event:#}"
    );
    assert!(
        event["note"]
            .as_str()
            .is_some_and(|n| n.contains("spec.checks.timeout")),
        "{event:#}"
    );
    Ok(())
}
