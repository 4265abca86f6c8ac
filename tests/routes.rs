//! Routes as a source, end to end: the operator binary with `--audit-routes` (and
//! `--generate-from-routes`) against the real control plane, with and without the Gateway API
//! CRDs (HTTPRoute from sigs.k8s.io/gateway-api, `make gateway-api-crds`).

use httpsdelivery_operator::api::HttpsDelivery;
use httpsdelivery_operator::controller::routes::{
    ROUTES_FIELD_MANAGER, RouteKey, RouteKind, generated_name,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::PostParams;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use testkit::controlplane::{ControlPlane, shared, workspace_root};
use testkit::operator::{Operator, count, events, eventually};
use testkit::world::{World, example};

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");

/// Bounds a wait for what should happen within seconds, generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// The Gateway API CRDs `make gateway-api-crds` copies; a test that needs them fails without.
fn gateway_api_crds() -> PathBuf {
    let dir = workspace_root().join("tools/crds/gateway-api");
    assert!(
        dir.join("gateway.networking.k8s.io_httproutes.yaml")
            .exists(),
        "{} has no HTTPRoute CRD: run `make gateway-api-crds` (make test does)",
        dir.display()
    );
    dir
}

/// The shared control plane with the operator's and the Gateway API CRDs, the loopback world
/// and a namespace of the test's own.
async fn setup(prefix: &str) -> (&'static ControlPlane, World, String) {
    let cp = shared();
    cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"));
    cp.install_crds(gateway_api_crds());
    let world = World::start().await.expect("world");
    let ns = cp.namespace(prefix).await;
    (cp, world, ns)
}

/// `kubectl apply -n NS -f -` of `yaml`.
fn apply(cp: &ControlPlane, ns: &str, yaml: &str) {
    let mut cmd = cp.kubectl();
    cmd.args(["apply", "-n", ns, "-f", "-"]);
    testkit::process::succeed("kubectl apply", cmd, Some(yaml));
}

/// An Ingress with `www.shop.example` in a rule and `api.shop.example` in its TLS section.
fn ingress(name: &str, rule_host: &str, tls_host: &str, annotations: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  rules:
  - host: {rule_host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: shop, port: {{number: 80}}}}}}}}
  tls:
  - hosts: [{tls_host}]
"
    )
}

/// The healthy example as `name`, for `hostname`.
fn delivery(ns: &str, name: &str, hostname: &str) -> HttpsDelivery {
    let mut d: HttpsDelivery = example("healthy.yaml");
    d.metadata.namespace = Some(ns.into());
    d.metadata.name = Some(name.into());
    d.spec.hostname = hostname.into();
    if let Some(edge) = d.spec.edge_cname.as_mut() {
        edge.hostname = hostname.into();
    }
    d
}

async fn create(api: &Api<HttpsDelivery>, d: &HttpsDelivery) {
    api.create(&PostParams::default(), d)
        .await
        .unwrap_or_else(|e| panic!("create {:?}: {e}", d.metadata.name));
}

/// The series of `httpsdelivery_uncovered_hostnames` in `ns`, as `KIND/NAME/HOSTNAME`; Err
/// while the operator does not answer.
fn uncovered(op: &Operator, ns: &str) -> Result<BTreeSet<String>, String> {
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let len = line[start..].find('"')?;
        Some(line[start..start + len].to_owned())
    };
    let text = match testkit::http::get(op.metrics_port(), "/metrics") {
        Ok((200, text)) => text,
        other => return Err(format!("/metrics: {other:?}")),
    };
    Ok(text
        .lines()
        .filter(|l| l.starts_with("httpsdelivery_uncovered_hostnames{"))
        .filter(|l| label(l, "namespace").as_deref() == Some(ns))
        .inspect(|l| assert!(l.ends_with("} 1"), "{l}"))
        .filter_map(|l| {
            Some(format!(
                "{}/{}/{}",
                label(l, "kind")?,
                label(l, "name")?,
                label(l, "hostname")?
            ))
        })
        .collect())
}

async fn wait_uncovered(op: &Operator, ns: &str, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    eventually(PATIENCE, async || {
        let now = uncovered(op, ns)?;
        if now == expected {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await
    .unwrap_or_else(|last| {
        panic!(
            "uncovered hostnames are {last}, not {expected:?}\n{}",
            op.log()
        )
    });
}

/// Waits until `name` has an Event `type_ reason` whose note contains `says`; returns its Events.
async fn wait_event(
    cp: &ControlPlane,
    op: &Operator,
    ns: &str,
    name: &str,
    [type_, reason, says]: [&str; 3],
) -> Vec<Event> {
    eventually(PATIENCE, async || {
        let ev = events(cp.client().await, ns, name).await;
        let found = ev.iter().any(|e| {
            e.type_.as_deref() == Some(type_)
                && e.reason.as_deref() == Some(reason)
                && e.note.as_deref().unwrap_or_default().contains(says)
        });
        if found {
            Ok(ev)
        } else {
            Err(format!("{ev:#?}"))
        }
    })
    .await
    .unwrap_or_else(|ev| {
        panic!(
            "no {type_} {reason} Event saying {says:?} on {name}: {ev}\n{}",
            op.log()
        )
    })
}

fn key(kind: RouteKind, ns: &str, name: &str) -> RouteKey {
    RouteKey {
        kind,
        namespace: ns.into(),
        name: name.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin) and make gateway-api-crds: run make test"]
async fn uncovered_ingress_and_http_route_hostnames_are_reported_until_a_delivery_covers_them() {
    let (cp, world, ns) = setup("routes-audit").await;
    // A second watched namespace (--watch-namespace A,B: one watch of each).
    let team_b = cp.namespace("routes-audit-b").await;
    apply(
        cp,
        &team_b,
        &ingress("blog", "blog.shop.example", "blog.shop.example", ""),
    );
    let api: Api<HttpsDelivery> = Api::namespaced(cp.client().await, &ns);
    create(&api, &delivery(&ns, "www", "www.shop.example")).await;
    apply(
        cp,
        &ns,
        &ingress("shop", "www.shop.example", "api.shop.example", ""),
    );
    apply(
        cp,
        &ns,
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: gateway}]
  hostnames: [img.shop.example, cdn.shop.example, '*.static.shop.example']
",
    );
    let op = Operator::start_in_world(
        BIN,
        cp.kubeconfig_path(),
        &world,
        Some(&format!("{ns},{team_b}")),
        &["--audit-routes"],
    );

    // www is covered; the wildcard is never reported (no delivery can name it).
    let (api_host, cdn, img) = (
        "Ingress/shop/api.shop.example",
        "HTTPRoute/web/cdn.shop.example",
        "HTTPRoute/web/img.shop.example",
    );
    wait_uncovered(&op, &ns, &[cdn, img, api_host]).await;
    wait_uncovered(&op, &team_b, &["Ingress/blog/blog.shop.example"]).await;
    let log = op.log();
    assert!(
        log.contains("auditing the hostnames of Ingress and HTTPRoute"),
        "{log}"
    );
    let [normal, uncovered] = ["Normal", "UncoveredHostname"];
    wait_event(
        cp,
        &op,
        &ns,
        "shop",
        [normal, uncovered, "api.shop.example"],
    )
    .await;
    wait_event(cp, &op, &ns, "web", [normal, uncovered, "img.shop.example"]).await;
    wait_event(cp, &op, &ns, "web", [normal, uncovered, "cdn.shop.example"]).await;

    // A delivery for img appears: its series goes, the others stay.
    create(&api, &delivery(&ns, "img", "img.shop.example")).await;
    wait_uncovered(&op, &ns, &[cdn, api_host]).await;
    // Further passes (new deliveries, a new route whose hostname is covered) tell nothing again.
    apply(
        cp,
        &ns,
        &ingress("other", "www.shop.example", "www.shop.example", ""),
    );
    create(&api, &delivery(&ns, "api", "api.shop.example")).await;
    create(&api, &delivery(&ns, "cdn", "cdn.shop.example")).await;
    wait_uncovered(&op, &ns, &[]).await;
    // One Event per uncovered hostname, each its own (not folded into another's series).
    for (route, hostnames) in [("shop", 1), ("web", 2)] {
        let ev = events(cp.client().await, &ns, route).await;
        assert_eq!(count(&ev, normal, uncovered), hostnames, "{route}: {ev:#?}");
        assert_eq!(ev.len(), hostnames as usize, "{route}: {ev:#?}");
    }
    assert!(events(cp.client().await, &ns, "other").await.is_empty());
    // A delivery in one watched namespace covers a route's hostname in the other.
    wait_uncovered(&op, &team_b, &["Ingress/blog/blog.shop.example"]).await;
    create(&api, &delivery(&ns, "blog", "blog.shop.example")).await;
    wait_uncovered(&op, &team_b, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn without_the_gateway_api_ingresses_are_still_audited_and_the_operator_stays_healthy() {
    // A control plane of its own: the shared one has the Gateway API CRDs installed.
    let cp = ControlPlane::start();
    cp.install_crds(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"));
    let world = World::start().await.expect("world");
    let ns = cp.namespace("routes-nogw").await;
    apply(
        &cp,
        &ns,
        &ingress("shop", "api.shop.example", "api.shop.example", ""),
    );
    let op = Operator::start_in_world(
        BIN,
        cp.kubeconfig_path(),
        &world,
        Some(&ns),
        &["--audit-routes"],
    );
    wait_uncovered(&op, &ns, &["Ingress/shop/api.shop.example"]).await;
    let log = op.log();
    assert!(log.contains("HTTPRoute is not audited"), "{log}");
    assert!(!log.contains("the watch failed"), "{log}");
    for path in ["/healthz", "/readyz"] {
        eventually(PATIENCE, async || match op.http_status(path) {
            Some(200) => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .await
        .unwrap_or_else(|s| panic!("{path} answers {s}\n{}", op.log()));
    }
    // And it keeps auditing: a delivery for the hostname clears its series.
    let api: Api<HttpsDelivery> = Api::namespaced(cp.client().await, &ns);
    create(&api, &delivery(&ns, "api", "api.shop.example")).await;
    wait_uncovered(&op, &ns, &[]).await;
}

/// A template for the healthy example's CDN settings: its spec without the hostnames.
const TEMPLATE: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: cdn}
data:
  spec: |
    certificate: {platform: HttpLarge, targetCname: cs1.wpc.cdn.example}
    edgeCname: {platform: HttpLarge, origin: shop-origin, modifiedAt: '2026-11-01T10:00:00Z'}
    origin: {name: shop-origin, host: origin.shop.example, port: 8443, protocol: HttpsOnly, httpsEdgeProtocol: true}
    checks: {recheckInterval: 1h}
";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin) and make gateway-api-crds: run make test"]
async fn annotated_routes_get_deliveries_from_their_template_and_hand_written_ones_win() {
    let (cp, world, ns) = setup("routes-gen").await;
    let client = cp.client().await;
    let api: Api<HttpsDelivery> = Api::namespaced(client.clone(), &ns);
    apply(cp, &ns, TEMPLATE);
    apply(
        cp,
        &ns,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata:\n  spec: 'certificate: {platform: Nope}'\n",
    );
    create(&api, &delivery(&ns, "hand", "api.shop.example")).await;
    let template = "httpsdelivery.dev/template: cdn";
    apply(
        cp,
        &ns,
        &ingress("shop", "www.shop.example", "api.shop.example", template),
    );
    apply(
        cp,
        &ns,
        &ingress(
            "broken",
            "bad.shop.example",
            "bad.shop.example",
            "httpsdelivery.dev/template: bad",
        ),
    );
    let op = Operator::start_in_world(
        BIN,
        cp.kubeconfig_path(),
        &world,
        Some(&ns),
        &["--audit-routes", "--generate-from-routes"],
    );

    // www: generated, owned by the Ingress, applied by the routes' field manager.
    let shop = key(RouteKind::Ingress, &ns, "shop");
    let www = generated_name(&shop, "www.shop.example");
    let d = op
        .wait_for(&api, &www, PATIENCE, "the generated delivery", |_| true)
        .await;
    let ingress: Ingress = Api::namespaced(client.clone(), &ns)
        .get("shop")
        .await
        .expect("the Ingress");
    let owners = d.metadata.owner_references.clone().unwrap_or_default();
    let [owner] = owners.as_slice() else {
        panic!("not one owner: {owners:#?}")
    };
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.api_version.as_str()
        ),
        ("Ingress", "shop", "networking.k8s.io/v1")
    );
    assert_eq!(Some(&owner.uid), ingress.metadata.uid.as_ref());
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(false), Some(false))
    );
    let managers: Vec<_> = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.as_deref(),
                m.operation.as_deref(),
                m.subresource.as_deref(),
            )
        })
        .collect();
    assert!(
        managers.contains(&(Some(ROUTES_FIELD_MANAGER), Some("Apply"), None)),
        "{managers:?}"
    );
    assert_eq!(
        d.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .map(String::as_str),
        Some(ROUTES_FIELD_MANAGER)
    );
    assert_eq!(d.spec.hostname, "www.shop.example");
    assert_eq!(
        d.spec.edge_cname.as_ref().map(|e| e.hostname.as_str()),
        Some("www.shop.example")
    );
    wait_event(cp, &op, &ns, "shop", ["Normal", "DeliveryGenerated", &www]).await;

    // api: the hand-written delivery wins, and it is said on the route.
    let hand = format!("{ns}/hand");
    wait_event(
        cp,
        &op,
        &ns,
        "shop",
        ["Warning", "HostnameAlreadyDelivered", &hand],
    )
    .await;
    let api_name = generated_name(&shop, "api.shop.example");
    assert!(
        api.get_opt(&api_name).await.expect("read").is_none(),
        "{api_name} was generated"
    );

    // bad: the template is refused by name, and the hostname stays uncovered.
    let named = format!("ConfigMap {ns}/bad");
    let ev = wait_event(
        cp,
        &op,
        &ns,
        "broken",
        ["Warning", "TemplateInvalid", &named],
    )
    .await;
    let note = ev
        .iter()
        .find(|e| e.reason.as_deref() == Some("TemplateInvalid"))
        .and_then(|e| e.note.clone())
        .unwrap_or_default();
    assert!(note.contains("certificate.platform"), "{note}");
    wait_uncovered(&op, &ns, &["Ingress/broken/bad.shop.example"]).await;
    let broken = key(RouteKind::Ingress, &ns, "broken");
    assert!(
        api.get_opt(&generated_name(&broken, "bad.shop.example"))
            .await
            .expect("read")
            .is_none()
    );

    // A hand-written delivery for www appears: the generated one is deleted, and it is said.
    create(&api, &delivery(&ns, "www-hand", "www.shop.example")).await;
    eventually(PATIENCE, async || match api.get_opt(&www).await {
        Ok(None) => Ok(()),
        other => Err(format!(
            "{:?}",
            other.map(|d| d.map(|d| d.metadata.deletion_timestamp))
        )),
    })
    .await
    .unwrap_or_else(|s| panic!("{www} is still there: {s}\n{}", op.log()));
    wait_event(
        cp,
        &op,
        &ns,
        "shop",
        [
            "Warning",
            "HostnameAlreadyDelivered",
            &format!("{ns}/www-hand"),
        ],
    )
    .await;
    let ev = events(client, &ns, "shop").await;
    assert_eq!(count(&ev, "Normal", "DeliveryGenerated"), 1, "{ev:#?}");
    assert_eq!(count(&ev, "Normal", "UncoveredHostname"), 0, "{ev:#?}");
}
