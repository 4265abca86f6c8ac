//! The Helm chart (`charts/httpsdelivery-operator`) and the plain manifests rendered from it
//! (`deploy/httpsdelivery-operator.yaml`), with the real helm and kubectl against the real
//! control plane: lint, schema, server-side dry runs, install/upgrade/uninstall, drift, and
//! least privilege proven by running the real operator binary as the chart's ServiceAccount.

use httpsdelivery_operator::api::{HttpsDelivery, SecretReference};
use httpsdelivery_operator::controller::routes::{RouteKey, RouteKind, generated_name};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::controlplane::{ControlPlane, shared};
use testkit::operator::{Operator, eventually, has_condition, tls_secret};
use testkit::pki::LeafSpec;
use testkit::process::{assert_success, fail, run, succeed, text};
use testkit::world::{World, example};

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");
/// The name the plain manifests are rendered with, and the Lease name the operator uses.
const NAME: &str = "httpsdelivery-operator";
/// The namespace of the plain manifests (`make manifests`).
const MANIFESTS_NAMESPACE: &str = "httpsdelivery-system";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    root().join("charts").join(NAME)
}

fn chart() -> String {
    chart_dir().display().to_string()
}

// ---------------------------------------------------------------------------------------------
// Running helm and kubectl

fn helm(cp: &ControlPlane, args: &[&str]) -> Command {
    let mut cmd = cp.helm();
    cmd.args(args);
    cmd
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> Command {
    let mut cmd = cp.kubectl();
    cmd.args(args);
    cmd
}

/// `helm template RELEASE CHART -n NAMESPACE ARGS...`.
fn template(cp: &ControlPlane, release: &str, namespace: &str, args: &[&str]) -> String {
    let mut cmd = helm(
        cp,
        &["template", release, &chart(), "--namespace", namespace],
    );
    cmd.args(args);
    succeed(&format!("helm template {args:?}"), cmd, None)
}

/// `kubectl apply --dry-run=server -f -`: the API server validates and admits every object
/// (schemas, RBAC escalation checks, defaulting) without storing it.
fn apply_dry_run(cp: &ControlPlane, manifest: &str) -> String {
    succeed(
        "kubectl apply --dry-run=server",
        kubectl(cp, &["apply", "--dry-run=server", "-o", "name", "-f", "-"]),
        Some(manifest),
    )
}

// ---------------------------------------------------------------------------------------------
// Reading rendered manifests

/// The documents of a multi-document YAML stream, as JSON values (empty documents skipped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("{e}:\n{yaml}"))
}

/// A YAML file of the workspace, as a JSON value.
fn yaml_file(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn kind_name(doc: &Value) -> (String, String) {
    (
        doc["kind"].as_str().unwrap_or_default().to_owned(),
        doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// `Kind/name` (and `@namespace` when namespaced) of every document, sorted.
fn inventory(docs: &[Value]) -> Vec<String> {
    let mut all: Vec<String> = docs
        .iter()
        .map(|d| {
            let (kind, name) = kind_name(d);
            match d["metadata"]["namespace"].as_str() {
                Some(ns) => format!("{kind}/{name}@{ns}"),
                None => format!("{kind}/{name}"),
            }
        })
        .collect();
    all.sort();
    all
}

/// What the chart renders with its default values into `ns` (CRD included).
fn default_inventory(ns: &str) -> Vec<String> {
    vec![
        format!("ClusterRole/{NAME}"),
        format!("ClusterRoleBinding/{NAME}"),
        "CustomResourceDefinition/cdnaccounts.httpsdelivery.dev".to_owned(),
        "CustomResourceDefinition/clustercdnaccounts.httpsdelivery.dev".to_owned(),
        "CustomResourceDefinition/httpsdeliveries.httpsdelivery.dev".to_owned(),
        format!("Deployment/{NAME}@{ns}"),
        format!("Service/{NAME}-metrics@{ns}"),
        format!("ServiceAccount/{NAME}@{ns}"),
    ]
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind_name(d) == (kind.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no {kind}/{name} among {:?}", inventory(docs)))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// One `(apiGroup, resource, resourceNames, verbs)` per group, resource and rule.
fn rules(role: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let names = strings(&rule["resourceNames"]).join(",");
        let mut verbs = strings(&rule["verbs"]);
        verbs.sort();
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.insert((group.clone(), resource, names.clone(), verbs.join(",")));
            }
        }
    }
    out
}

fn rule(group: &str, resource: &str, names: &str, verbs: &str) -> (String, String, String, String) {
    (group.into(), resource.into(), names.into(), verbs.into())
}

/// The operator's rules: exactly the calls it makes, nowhere a write to a Secret or a spec.
/// Cluster-wide, it also reads ClusterCdnAccounts and writes their status.
fn operator_rules() -> BTreeSet<(String, String, String, String)> {
    let mut rules = namespaced_operator_rules();
    rules.insert(rule(
        "httpsdelivery.dev",
        "clustercdnaccounts",
        "",
        "get,list,watch",
    ));
    rules.insert(rule(
        "httpsdelivery.dev",
        "clustercdnaccounts/status",
        "",
        "get,patch,update",
    ));
    rules
}

/// The rules of a Role in the one watched namespace (cluster-scoped accounts cannot be granted).
fn namespaced_operator_rules() -> BTreeSet<(String, String, String, String)> {
    BTreeSet::from([
        rule("httpsdelivery.dev", "httpsdeliveries", "", "get,list,watch"),
        rule("httpsdelivery.dev", "cdnaccounts", "", "get,list,watch"),
        rule(
            "httpsdelivery.dev",
            "cdnaccounts/status",
            "",
            "get,patch,update",
        ),
        rule(
            "httpsdelivery.dev",
            "httpsdeliveries/status",
            "",
            "get,patch,update",
        ),
        rule("", "secrets", "", "get,list,watch"),
        rule("events.k8s.io", "events", "", "create,patch"),
        rule("", "events", "", "create,patch"),
    ])
}

fn lease_rules() -> BTreeSet<(String, String, String, String)> {
    BTreeSet::from([
        rule("coordination.k8s.io", "leases", "", "create"),
        rule(
            "coordination.k8s.io",
            "leases",
            NAME,
            "get,list,patch,update,watch",
        ),
    ])
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "{containers:#?}");
    &containers[0]
}

/// The hardening every rendering must keep, whatever the values.
fn assert_hardened(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(pod["securityContext"]["runAsUser"], json!(65532));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        json!("RuntimeDefault")
    );
    let c = container(deployment);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], json!(true), "{sc}");
    assert_eq!(sc["runAsUser"], json!(65532), "{sc}");
    assert_eq!(sc["readOnlyRootFilesystem"], json!(true), "{sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], json!(false), "{sc}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{sc}");
    assert_eq!(
        sc["seccompProfile"]["type"],
        json!("RuntimeDefault"),
        "{sc}"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], json!("/healthz"));
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], json!("metrics"));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], json!("/readyz"));
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], json!("metrics"));
    assert_eq!(c["ports"][0]["name"], json!("metrics"));
    assert!(c["resources"]["requests"]["memory"].is_string(), "{c}");
    assert!(c["resources"]["limits"]["memory"].is_string(), "{c}");
    let env = c["env"].as_array().expect("env");
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let e = env
            .iter()
            .find(|e| e["name"] == json!(var))
            .unwrap_or_else(|| panic!("no {var} in {env:?}"));
        assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], json!(field));
    }
    assert_eq!(strings(&c["args"])[0], "run");
}

fn args(deployment: &Value) -> Vec<String> {
    strings(&container(deployment)["args"])
}

/// Every command line flag the chart passes exists in the binary (`run --help`).
fn assert_flags_exist(args: &[String]) {
    let help = Command::new(BIN)
        .args(["run", "--help"])
        .output()
        .expect("run --help");
    let help = text(&help.stdout);
    for arg in args.iter().skip(1) {
        let flag = arg.split('=').next().unwrap_or(arg);
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "the chart passes {flag}, which `run --help` does not list:\n{help}"
        );
    }
}

/// The Deployment `name` of a rendering: hardened, with `replicas`, running `image` with exactly
/// `args`, every one of which the binary knows.
fn assert_deployment<'a>(
    docs: &'a [Value],
    name: &str,
    replicas: u64,
    args: &[&str],
    image: &str,
) -> &'a Value {
    let deployment = find(docs, "Deployment", name);
    assert_hardened(deployment);
    assert_eq!(deployment["spec"]["replicas"], json!(replicas));
    let rendered = self::args(deployment);
    assert_eq!(rendered, args);
    assert_flags_exist(&rendered);
    assert_eq!(container(deployment)["image"], json!(image));
    deployment
}

// ---------------------------------------------------------------------------------------------
// The chart's files

#[test]
fn chart_metadata_matches_the_crate_and_the_crds_are_the_generated_ones() {
    let meta = yaml_file(&chart_dir().join("Chart.yaml"));
    assert_eq!(meta["apiVersion"], json!("v2"));
    assert_eq!(meta["name"], json!(NAME));
    assert_eq!(meta["version"], json!("0.1.0"));
    assert_eq!(
        meta["appVersion"],
        json!(env!("CARGO_PKG_VERSION")),
        "appVersion follows the crate's version"
    );

    let mut files: Vec<_> = std::fs::read_dir(chart_dir().join("crds"))
        .expect("crds dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "cdnaccount.yaml",
            "clustercdnaccount.yaml",
            "httpsdelivery.yaml"
        ],
        "the three CRDs"
    );
    for file in &files {
        let generated = std::fs::read(root().join("crds").join(file)).expect("crds/");
        let in_chart =
            std::fs::read(chart_dir().join("crds").join(file)).expect("the chart's crds/");
        assert!(
            generated == in_chart,
            "charts/{NAME}/crds/{file} differs from crds/{file}: run `make manifests`"
        );
    }

    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).expect("schema"),
    )
    .expect("values.schema.json is JSON");
    assert_eq!(
        schema["$schema"],
        json!("http://json-schema.org/draft-07/schema#")
    );
    assert_eq!(schema["additionalProperties"], json!(false));
    // Any number of namespaces: the operator watches each of them.
    assert_eq!(
        schema["properties"]["watchNamespaces"]["maxItems"],
        json!(null)
    );
    // Every top-level value is described by the schema, and nothing else is allowed.
    let values = yaml_file(&chart_dir().join("values.yaml"));
    let keys: BTreeSet<&String> = values.as_object().expect("a map").keys().collect();
    let properties = schema["properties"].as_object().expect("properties");
    let deprecated = |k: &String| properties[k]["deprecated"] == json!(true);
    let described: BTreeSet<&String> = properties
        .keys()
        .filter(|k| *k != "global" && !deprecated(k))
        .collect();
    assert_eq!(keys, described, "values.yaml and values.schema.json differ");
    // A deprecated alias is accepted (in the schema) but unset by default (not in values.yaml),
    // so that the templates can tell whether someone set it.
    let aliases: Vec<&String> = properties.keys().filter(|k| deprecated(k)).collect();
    assert_eq!(aliases, ["replicas"]);
    assert_eq!(
        properties["replicas"]["type"],
        properties["replicaCount"]["type"]
    );
}

#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn helm_lint_passes_with_default_and_custom_values() {
    let cp = shared();
    let out = succeed(
        "helm lint --strict",
        helm(cp, &["lint", "--strict", &chart()]),
        None,
    );
    assert!(out.contains("0 chart(s) failed"), "{out}");
    let out = succeed(
        "helm lint --strict (custom values)",
        helm(
            cp,
            &[
                "lint",
                "--strict",
                &chart(),
                "--set",
                "watchNamespaces={shop},replicaCount=2,networkPolicy.enabled=true,\
                 podDisruptionBudget.enabled=true,serviceMonitor.enabled=true",
            ],
        ),
        None,
    );
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn the_values_schema_rejects_typos_and_a_list_with_a_selector() {
    let cp = shared();
    for (set, says) in [
        ("replcias=2", "additional properties 'replcias' not allowed"),
        ("replicaCount=-1", "minimum"),
        ("replicas=-1", "minimum"),
        ("watchNamespaces={shop,shop}", "items at 0 and 1 are equal"),
        ("watchNamespaces={Shop}", "does not match pattern"),
        ("logFormat=xml", "value must be one of 'text', 'json'"),
        ("image.pullPolicy=Sometimes", "value must be one of"),
        (
            "leaderElection.leaseDuration=soon",
            "does not match pattern",
        ),
        ("probe.httpsPort=70000", "maximum"),
        ("probe.dnsServers={8.8.8.8}", "does not match pattern"),
        (
            "networkPolicy.enabeld=true",
            "additional properties 'enabeld'",
        ),
    ] {
        let stderr = fail(set, helm(cp, &["template", "x", &chart(), "--set", set]));
        assert!(
            stderr.contains("values don't meet the specifications of the schema")
                && stderr.contains(says),
            "--set {set}: {stderr}"
        );
    }
    // A list of namespaces and a selector are two ways to scope: not both at once.
    let stderr = fail(
        "a list and a selector",
        helm(
            cp,
            &[
                "template",
                "x",
                &chart(),
                "--set",
                "watchNamespaces={shop},watchNamespaceSelector=team=web",
            ],
        ),
    );
    assert!(stderr.contains("cannot be used together"), "{stderr}");
    let stderr = fail(
        "a ServiceMonitor without a Service",
        helm(
            cp,
            &[
                "template",
                "x",
                &chart(),
                "--set",
                "serviceMonitor.enabled=true,metrics.service.enabled=false",
            ],
        ),
    );
    assert!(stderr.contains("needs metrics.service.enabled"), "{stderr}");
}

/// `deploy/httpsdelivery-operator.yaml`, the plain manifests.
fn plain_manifests_path() -> PathBuf {
    root().join("deploy/httpsdelivery-operator.yaml")
}

#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn the_plain_manifests_are_rendered_from_the_chart() {
    let cp = shared();
    // Exactly what `make manifests` writes: the Namespace, then the chart's rendering.
    let namespace =
        std::fs::read_to_string(root().join("deploy/namespace.yaml")).expect("namespace.yaml");
    let rendered = namespace + &template(cp, NAME, MANIFESTS_NAMESPACE, &["--include-crds"]);
    let path = plain_manifests_path();
    let committed = std::fs::read_to_string(&path).expect("deploy/httpsdelivery-operator.yaml");
    assert!(
        rendered == committed,
        "{} is not deploy/namespace.yaml and what the chart renders with its default values: \
         run `make manifests`",
        path.display()
    );
    let docs = documents(&committed);
    let mut expected = default_inventory(MANIFESTS_NAMESPACE);
    expected.push(format!("Namespace/{MANIFESTS_NAMESPACE}"));
    expected.sort();
    assert_eq!(inventory(&docs), expected);
    // First, so that a single apply creates it before the objects in it.
    assert_eq!(
        kind_name(&docs[0]),
        ("Namespace".to_owned(), MANIFESTS_NAMESPACE.to_owned())
    );
    let crd = find(
        &docs,
        "CustomResourceDefinition",
        "httpsdeliveries.httpsdelivery.dev",
    );
    let generated = yaml_file(&root().join("crds/httpsdelivery.yaml"));
    assert_eq!(crd, &generated, "the manifests carry the generated CRD");
    for (file, name) in [
        ("cdnaccount.yaml", "cdnaccounts.httpsdelivery.dev"),
        (
            "clustercdnaccount.yaml",
            "clustercdnaccounts.httpsdelivery.dev",
        ),
    ] {
        let crd = find(&docs, "CustomResourceDefinition", name);
        let generated = yaml_file(&root().join("crds").join(file));
        assert_eq!(crd, &generated, "the manifests carry the generated {name}");
    }
}

/// What cert-manager's manifest does: one `kubectl apply --server-side -f` on a cluster where
/// nothing of the operator exists yet, its namespace included.
#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn the_plain_manifests_install_on_an_empty_cluster_with_one_server_side_apply() {
    // A control plane of its own: the shared one may already hold the namespace, and the
    // cluster-scoped objects applied here (ClusterRole, CRDs) would meet the other tests'.
    let cp = ControlPlane::start();
    let cp = &cp;
    let absent = run(
        kubectl(cp, &["get", "namespace", MANIFESTS_NAMESPACE]),
        None,
    );
    assert!(
        !absent.status.success() && text(&absent.stderr).contains("NotFound"),
        "{MANIFESTS_NAMESPACE} exists before the apply: {}",
        text(&absent.stderr)
    );

    // The README's command, as is.
    let path = plain_manifests_path();
    let path = path.to_str().expect("UTF-8 path");
    let docs = documents(&std::fs::read_to_string(path).expect("the manifests"));
    let apply = run(
        kubectl(cp, &["apply", "--server-side", "-o", "name", "-f", path]),
        None,
    );
    assert_success("kubectl apply --server-side -f", &apply);
    let applied = text(&apply.stdout);
    assert_eq!(
        applied.lines().count(),
        docs.len(),
        "every object applied:\n{applied}"
    );
    assert_eq!(
        applied.lines().next(),
        Some(format!("namespace/{MANIFESTS_NAMESPACE}").as_str()),
        "{applied}"
    );
    // No warning: in particular none from Pod Security admission, which the namespace asks
    // to warn about (and enforce) the restricted profile.
    assert_eq!(text(&apply.stderr), "", "kubectl apply warned");

    let phase = succeed(
        "kubectl get namespace",
        kubectl(
            cp,
            &[
                "get",
                "namespace",
                MANIFESTS_NAMESPACE,
                "-o",
                "jsonpath={.status.phase}",
            ],
        ),
        None,
    );
    assert_eq!(phase, "Active");
    let got = succeed(
        "kubectl get -f",
        kubectl(cp, &["get", "-o", "name", "-f", path]),
        None,
    );
    assert_eq!(got.lines().count(), docs.len(), "{got}");
    succeed(
        "the CRDs are Established",
        kubectl(
            cp,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/httpsdeliveries.httpsdelivery.dev",
                "crd/cdnaccounts.httpsdelivery.dev",
                "crd/clustercdnaccounts.httpsdelivery.dev",
            ],
        ),
        None,
    );
    // The same command upgrades: applied again, without conflicts.
    let again = succeed(
        "kubectl apply --server-side -f (again)",
        kubectl(cp, &["apply", "--server-side", "-o", "name", "-f", path]),
        None,
    );
    assert_eq!(again, applied);

    // The warning is real: a Deployment that is not hardened is warned about in this namespace.
    let mut bare: Value = find(&docs, "Deployment", NAME).clone();
    bare["metadata"]["name"] = json!("not-hardened");
    bare["spec"]["template"]["spec"]["securityContext"] = json!({});
    bare["spec"]["template"]["spec"]["containers"][0]["securityContext"] = json!({});
    let warned = run(
        kubectl(cp, &["apply", "--dry-run=server", "-f", "-"]),
        Some(&bare.to_string()),
    );
    assert_success("kubectl apply (not hardened)", &warned);
    assert!(
        text(&warned.stderr).contains("would violate PodSecurity \"restricted"),
        "{}",
        text(&warned.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Renderings the API server accepts

#[tokio::test]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn default_values_render_a_cluster_wide_least_privilege_operator_the_server_accepts() {
    let cp = shared();
    cp.install_crds(root().join("crds"));
    let ns = cp.namespace("chart-default").await;
    let manifest = template(cp, NAME, &ns, &["--include-crds"]);
    let docs = documents(&manifest);
    assert_eq!(
        inventory(&docs),
        default_inventory(&ns),
        "no Role, Lease Role, NetworkPolicy, PodDisruptionBudget or ServiceMonitor by default"
    );

    let deployment = assert_deployment(
        &docs,
        NAME,
        1,
        &[
            "run",
            "--metrics-addr=0.0.0.0:8080",
            "--reconcile-concurrency=16",
            "--log-format=json",
            "--https-port=443",
            "--http-port=80",
            "--probe-concurrency=64",
        ],
        &format!("{NAME}:{}", env!("CARGO_PKG_VERSION")),
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        json!(NAME)
    );

    assert_eq!(rules(find(&docs, "ClusterRole", NAME)), operator_rules());
    let binding = find(&docs, "ClusterRoleBinding", NAME);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": NAME, "namespace": ns}])
    );
    assert_eq!(binding["roleRef"]["name"], json!(NAME));

    let service = find(&docs, "Service", &format!("{NAME}-metrics"));
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], json!("metrics"));
    for doc in &docs {
        let labels = &doc["metadata"]["labels"];
        if kind_name(doc).0 != "CustomResourceDefinition" {
            assert_eq!(labels["app.kubernetes.io/name"], json!(NAME), "{doc}");
            assert_eq!(labels["app.kubernetes.io/instance"], json!(NAME), "{doc}");
            assert_eq!(
                labels["helm.sh/chart"],
                json!("httpsdelivery-operator-0.1.0")
            );
        }
    }

    let applied = apply_dry_run(cp, &manifest);
    assert_eq!(
        applied.lines().count(),
        docs.len(),
        "every object accepted:\n{applied}"
    );
}

#[tokio::test]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn one_watch_namespace_two_replicas_and_the_options_render_objects_the_server_accepts() {
    let cp = shared();
    cp.install_crds(root().join("crds"));
    let release_ns = cp.namespace("chart-release").await;
    let watch_ns = cp.namespace("chart-watch").await;
    let set = format!(
        "watchNamespaces={{{watch_ns}}},replicaCount=2,networkPolicy.enabled=true,\
         networkPolicy.originPorts={{8443}},networkPolicy.apiServer.cidrs={{10.0.0.1/32}},\
         podDisruptionBudget.enabled=true,serviceMonitor.enabled=false,\
         probe.dnsServers={{10.0.0.10:53}},probe.allowCidrs={{10.1.0.0/16}},\
         probe.httpsPort=8443,probe.httpPort=8080,probe.caBundle.configMap=cdn-ca,logFormat=text,\
         reconcileConcurrency=4,probe.concurrency=8,leaderElection.leaseDuration=20s,\
         image.digest=sha256:{}",
        "a".repeat(64)
    );
    let manifest = template(cp, "hd", &release_ns, &["--set", &set]);
    let docs = documents(&manifest);
    let full = "hd-httpsdelivery-operator";
    assert_eq!(
        inventory(&docs),
        [
            format!("Deployment/{full}@{release_ns}"),
            format!("NetworkPolicy/{full}@{release_ns}"),
            format!("PodDisruptionBudget/{full}@{release_ns}"),
            format!("Role/{full}-leader-election@{release_ns}"),
            format!("Role/{full}@{watch_ns}"),
            format!("RoleBinding/{full}-leader-election@{release_ns}"),
            format!("RoleBinding/{full}@{watch_ns}"),
            format!("Service/{full}-metrics@{release_ns}"),
            format!("ServiceAccount/{full}@{release_ns}"),
        ],
        "Roles, not ClusterRoles; no ServiceMonitor"
    );

    let deployment = assert_deployment(
        &docs,
        full,
        2,
        &[
            "run",
            "--metrics-addr=0.0.0.0:8080",
            &format!("--watch-namespace={watch_ns}"),
            "--leader-elect",
            &format!("--lease-namespace={release_ns}"),
            "--lease-duration=20s",
            "--reconcile-concurrency=4",
            "--log-format=text",
            "--dns-server=10.0.0.10:53",
            "--ca-file=/etc/httpsdelivery-operator/ca/ca.crt",
            "--https-port=8443",
            "--http-port=8080",
            "--allow-cidr=10.1.0.0/16",
            "--probe-concurrency=8",
        ],
        &format!("{NAME}@sha256:{}", "a".repeat(64)),
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "ca-bundle", "configMap": {"name": "cdn-ca"}}])
    );

    let role = find(&docs, "Role", full);
    assert_eq!(role["metadata"]["namespace"], json!(watch_ns));
    assert_eq!(rules(role), namespaced_operator_rules());
    let binding = find(&docs, "RoleBinding", full);
    assert_eq!(binding["metadata"]["namespace"], json!(watch_ns));
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": full, "namespace": release_ns}])
    );
    let lease_role = find(&docs, "Role", &format!("{full}-leader-election"));
    assert_eq!(lease_role["metadata"]["namespace"], json!(release_ns));
    assert_eq!(rules(lease_role), lease_rules());

    let policy = find(&docs, "NetworkPolicy", full);
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{"ports": [{"port": "metrics", "protocol": "TCP"}]}])
    );
    assert_eq!(
        policy["spec"]["egress"],
        json!([
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}]},
            {"ports": [{"port": 8080, "protocol": "TCP"}]},
            // The CDN APIs of provider mode.
            {"ports": [{"port": 443, "protocol": "TCP"}]},
            {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
             "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]},
        ])
    );
    let pdb = find(&docs, "PodDisruptionBudget", full);
    assert_eq!(pdb["spec"]["minAvailable"], json!(1));
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    let applied = apply_dry_run(cp, &manifest);
    assert_eq!(
        applied.lines().count(),
        docs.len(),
        "every object accepted:\n{applied}"
    );

    // One replica: no PodDisruptionBudget, no leader election unless asked for.
    let docs = documents(&template(
        cp,
        "hd",
        &release_ns,
        &["--set", "replicaCount=1,podDisruptionBudget.enabled=true"],
    ));
    assert!(
        !inventory(&docs)
            .iter()
            .any(|o| o.starts_with("PodDisruptionBudget/"))
    );
    assert!(!args_of(&docs, full).contains(&"--leader-elect".to_owned()));
    let docs = documents(&template(
        cp,
        "hd",
        &release_ns,
        &[
            "--set",
            "leaderElection.enabled=true,leaderElection.namespace=leases",
        ],
    ));
    let a = args_of(&docs, full);
    assert!(
        a.contains(&"--leader-elect".to_owned())
            && a.contains(&"--lease-namespace=leases".to_owned()),
        "{a:?}"
    );
    assert_eq!(
        find(&docs, "Role", &format!("{full}-leader-election"))["metadata"]["namespace"],
        json!("leases")
    );
}

/// What `auditRoutes.enabled` adds: read-only watches of routes.
fn route_audit_rules() -> BTreeSet<(String, String, String, String)> {
    BTreeSet::from([
        rule("networking.k8s.io", "ingresses", "", "list,watch"),
        rule("gateway.networking.k8s.io", "httproutes", "", "list,watch"),
    ])
}

/// What `auditRoutes.generate` adds: the template ConfigMap, and writes of generated deliveries.
fn route_generation_rules() -> BTreeSet<(String, String, String, String)> {
    BTreeSet::from([
        rule("", "configmaps", "", "get"),
        rule(
            "httpsdelivery.dev",
            "httpsdeliveries",
            "",
            "create,delete,patch",
        ),
    ])
}

#[tokio::test]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn route_rules_and_flags_appear_only_when_the_route_audit_and_generation_are_on() {
    let cp = shared();
    cp.install_crds(root().join("crds"));
    let ns = cp.namespace("chart-routes").await;
    let audit = route_audit_rules();
    let both: BTreeSet<_> = audit.union(&route_generation_rules()).cloned().collect();
    for (set, extra, flags) in [
        ("auditRoutes.enabled=false", BTreeSet::new(), &[][..]),
        (
            "auditRoutes.enabled=true",
            audit.clone(),
            &["--audit-routes"][..],
        ),
        (
            "auditRoutes.enabled=true,auditRoutes.generate=true",
            both.clone(),
            &["--audit-routes", "--generate-from-routes"][..],
        ),
    ] {
        let manifest = template(cp, NAME, &ns, &["--set", set]);
        let docs = documents(&manifest);
        let expected: BTreeSet<_> = operator_rules().union(&extra).cloned().collect();
        assert_eq!(
            rules(find(&docs, "ClusterRole", NAME)),
            expected,
            "--set {set}"
        );
        let rendered = args(find(&docs, "Deployment", NAME));
        let route_flags: Vec<&str> = rendered
            .iter()
            .map(String::as_str)
            .filter(|a| a.contains("routes"))
            .collect();
        assert_eq!(route_flags, flags, "--set {set}: {rendered:?}");
        assert_flags_exist(&rendered);
        let applied = apply_dry_run(cp, &manifest);
        assert_eq!(
            applied.lines().count(),
            docs.len(),
            "--set {set}:\n{applied}"
        );
    }

    // With one watched namespace, the Role there gets the same rules.
    let watch = cp.namespace("chart-routes-watch").await;
    let set =
        format!("watchNamespaces={{{watch}}},auditRoutes.enabled=true,auditRoutes.generate=true");
    let docs = documents(&template(cp, NAME, &ns, &["--set", &set]));
    let role = find(&docs, "Role", NAME);
    assert_eq!(role["metadata"]["namespace"], json!(watch));
    let expected: BTreeSet<_> = namespaced_operator_rules().union(&both).cloned().collect();
    assert_eq!(rules(role), expected);

    // Generation without the audit is refused, by name.
    let stderr = fail(
        "generation without the audit",
        helm(
            cp,
            &[
                "template",
                "x",
                &chart(),
                "--set",
                "auditRoutes.generate=true",
            ],
        ),
    );
    assert!(
        stderr.contains("auditRoutes.generate needs auditRoutes.enabled"),
        "{stderr}"
    );
    let stderr = fail(
        "a typo under auditRoutes",
        helm(
            cp,
            &[
                "template",
                "x",
                &chart(),
                "--set",
                "auditRoutes.enable=true",
            ],
        ),
    );
    assert!(
        stderr.contains("additional properties 'enable' not allowed"),
        "{stderr}"
    );
}

fn args_of(docs: &[Value], name: &str) -> Vec<String> {
    args(find(docs, "Deployment", name))
}

#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn the_service_monitor_selects_the_metrics_service() {
    let cp = shared();
    let docs = documents(&template(
        cp,
        NAME,
        "monitoring-test",
        &[
            "--set",
            "serviceMonitor.enabled=true,serviceMonitor.labels.release=prom",
        ],
    ));
    let monitor = find(&docs, "ServiceMonitor", NAME);
    assert_eq!(monitor["apiVersion"], json!("monitoring.coreos.com/v1"));
    assert_eq!(monitor["metadata"]["labels"]["release"], json!("prom"));
    let service = find(&docs, "Service", &format!("{NAME}-metrics"));
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    for (k, v) in selector {
        assert_eq!(&service["metadata"]["labels"][k], v, "{k}");
    }
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{"port": "metrics", "path": "/metrics", "scheme": "http", "honorLabels": true,
                "interval": "30s", "scrapeTimeout": "10s"}]),
        "honorLabels keeps the per-object namespace label the alerts select by"
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["monitoring-test"])
    );
}

/// `replicaCount` sets the number of Pods; the deprecated `replicas` still works and wins when
/// set. Every template that depends on the number follows the value in effect: the Deployment,
/// leader election (its flag and Lease Role) and the PodDisruptionBudget.
#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn replica_count_sets_the_pods_and_the_deprecated_replicas_still_wins() {
    let cp = shared();
    let ns = "chart-replicas";
    let full = "rc-httpsdelivery-operator";
    for (set, pods) in [
        ("", 1),
        ("replicaCount=3", 3),
        ("replicas=2", 2),
        ("replicas=2,replicaCount=5", 2),
        ("replicas=1,replicaCount=3", 1),
        ("replicas=0,replicaCount=3", 0),
    ] {
        let set = format!("podDisruptionBudget.enabled=true,{set}");
        let docs = documents(&template(
            cp,
            "rc",
            ns,
            &["--set", set.trim_end_matches(',')],
        ));
        let deployment = find(&docs, "Deployment", full);
        assert_eq!(deployment["spec"]["replicas"], json!(pods), "--set {set}");
        let objects = inventory(&docs);
        let several = pods > 1;
        assert_eq!(
            args(deployment).contains(&"--leader-elect".to_owned()),
            several,
            "leader election with --set {set}"
        );
        assert_eq!(
            objects.contains(&format!("Role/{full}-leader-election@{ns}")),
            several,
            "the Lease Role with --set {set}: {objects:?}"
        );
        assert_eq!(
            objects.contains(&format!("PodDisruptionBudget/{full}@{ns}")),
            several,
            "the PodDisruptionBudget with --set {set}: {objects:?}"
        );
    }
}

/// The commands NOTES.txt prints, in order (its indented `kubectl ...` lines).
fn notes_commands(install_output: &str) -> Vec<String> {
    let (_, notes) = install_output
        .split_once("NOTES:")
        .unwrap_or_else(|| panic!("no NOTES in:\n{install_output}"));
    notes
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("kubectl "))
        .map(str::to_owned)
        .collect()
}

/// `helm install --dry-run=client`: the release's NOTES without installing anything.
fn notes(cp: &ControlPlane, release: &str, set: &str) -> String {
    let mut cmd = helm(
        cp,
        &[
            "install",
            release,
            &chart(),
            "--dry-run=client",
            "--namespace",
            "chart-notes",
        ],
    );
    if !set.is_empty() {
        cmd.args(["--set", set]);
    }
    succeed(&format!("helm install --dry-run --set {set}"), cmd, None)
}

#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn notes_print_the_first_two_commands_and_the_deprecation_of_replicas() {
    let cp = shared();
    let out = notes(cp, "n1", "");
    assert_eq!(
        notes_commands(&out)[..2],
        [
            "kubectl get httpsdeliveries --all-namespaces",
            "kubectl describe httpsdelivery NAME -n NAMESPACE",
        ],
        "{out}"
    );
    assert!(!out.contains("DEPRECATED"), "{out}");
    let out = notes(cp, "n2", "watchNamespaces={shop},replicaCount=2");
    assert_eq!(
        notes_commands(&out)[..2],
        [
            "kubectl get httpsdeliveries -n shop",
            "kubectl describe httpsdelivery NAME -n shop",
        ],
        "{out}"
    );
    assert!(!out.contains("DEPRECATED"), "{out}");
    let out = notes(cp, "n4", "watchNamespaces={shop,blog}");
    assert_eq!(
        notes_commands(&out)[..3],
        [
            "kubectl get httpsdeliveries -n blog",
            "kubectl get httpsdeliveries -n shop",
            "kubectl describe httpsdelivery NAME -n NAMESPACE",
        ],
        "{out}"
    );
    assert!(
        out.contains("namespaces blog, shop only (a Role in each)"),
        "{out}"
    );
    let out = notes(cp, "n5", "watchNamespaceSelector=team=web");
    assert!(
        out.contains("the namespaces labelled team=web, as they gain or lose the label"),
        "{out}"
    );
    let out = notes(cp, "n3", "replicas=2,replicaCount=3");
    assert!(
        out.contains(
            "DEPRECATED: the value `replicas` is deprecated; use `replicaCount` instead. \
             replicas=2 is in effect (it wins over replicaCount=3)."
        ),
        "{out}"
    );
    assert!(out.contains("with leader election"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Artifact Hub and the changelog

/// An `artifacthub.io/...` annotation of Chart.yaml: YAML in a string.
fn artifact_hub(meta: &Value, key: &str) -> Value {
    let text = meta["annotations"][format!("artifacthub.io/{key}")]
        .as_str()
        .unwrap_or_else(|| panic!("Chart.yaml has no artifacthub.io/{key} annotation"));
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("artifacthub.io/{key}: {e}\n{text}"))
}

/// `(kind, storage version, name)` of every CRD in the chart's crds/.
fn chart_crds() -> BTreeSet<(String, String, String)> {
    let dir = chart_dir().join("crds");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let crd = yaml_file(&entry.expect("entry").path());
            let storage = crd["spec"]["versions"]
                .as_array()
                .expect("versions")
                .iter()
                .find(|v| v["storage"] == json!(true))
                .expect("a storage version");
            (
                crd["spec"]["names"]["kind"]
                    .as_str()
                    .expect("kind")
                    .to_owned(),
                storage["name"].as_str().expect("version").to_owned(),
                crd["metadata"]["name"].as_str().expect("name").to_owned(),
            )
        })
        .collect()
}

#[test]
fn artifact_hub_annotations_parse_and_follow_the_crds_the_image_and_the_changelog() {
    let meta = yaml_file(&chart_dir().join("Chart.yaml"));
    let crds = artifact_hub(&meta, "crds");
    let listed: BTreeSet<(String, String, String)> = crds
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            for key in ["displayName", "description"] {
                assert!(c[key].as_str().is_some_and(|v| !v.is_empty()), "{key}: {c}");
            }
            let field = |k: &str| {
                c[k].as_str()
                    .unwrap_or_else(|| panic!("{k}: {c}"))
                    .to_owned()
            };
            (field("kind"), field("version"), field("name"))
        })
        .collect();
    let in_chart = chart_crds();
    assert_eq!(in_chart.len(), 3);
    assert_eq!(
        listed, in_chart,
        "artifacthub.io/crds and the chart's crds/ differ"
    );

    let examples = artifact_hub(&meta, "crdsExamples");
    assert_eq!(
        examples,
        json!([yaml_file(&root().join("examples/healthy.yaml"))]),
        "artifacthub.io/crdsExamples is examples/healthy.yaml"
    );

    let values = yaml_file(&chart_dir().join("values.yaml"));
    let image = format!(
        "{}:{}",
        values["image"]["repository"].as_str().expect("repository"),
        meta["appVersion"].as_str().expect("appVersion")
    );
    assert_eq!(
        artifact_hub(&meta, "images"),
        json!([{"name": NAME, "image": image, "platforms": ["linux/amd64"]}])
    );
    assert_eq!(
        meta["annotations"]["artifacthub.io/license"],
        json!(env!("CARGO_PKG_LICENSE"))
    );

    // Every change of this version is in CHANGELOG.md's section for it (wrapped as it may be).
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).expect("CHANGELOG.md");
    let version = meta["version"].as_str().expect("version");
    let heading = format!("\n## [{version}] - ");
    let (_, section) = changelog
        .split_once(&heading)
        .unwrap_or_else(|| panic!("CHANGELOG.md has no `## [{version}] - DATE` section"));
    let section = section.split("\n## ").next().unwrap_or_default();
    let section = section.split_whitespace().collect::<Vec<_>>().join(" ");
    let changes = artifact_hub(&meta, "changes");
    let changes = changes.as_array().expect("a list");
    assert!(!changes.is_empty());
    for change in changes {
        let kind = change["kind"].as_str().expect("kind");
        assert!(
            [
                "added",
                "changed",
                "deprecated",
                "removed",
                "fixed",
                "security"
            ]
            .contains(&kind),
            "{change}"
        );
        let description = change["description"].as_str().expect("description");
        assert!(
            section.contains(&format!("- {description}")),
            "not in CHANGELOG.md's {version} section: {description}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// helm install, upgrade, uninstall

#[tokio::test]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn helm_install_creates_every_object_and_uninstall_keeps_the_crd() {
    let cp = shared();
    cp.install_crds(root().join("crds"));
    let ns = cp.namespace("chart-install").await;
    // Cluster-scoped objects are named after the release: a release name of its own.
    let release = ns.clone();
    let full = format!("{release}-httpsdelivery-operator");
    let out = succeed(
        "helm install",
        helm(cp, &["install", &release, &chart(), "--namespace", &ns]),
        None,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(
        out.contains("every namespace (a ClusterRole)"),
        "NOTES.txt:\n{out}"
    );
    assert_eq!(
        notes_commands(&out)[..2],
        [
            "kubectl get httpsdeliveries --all-namespaces",
            "kubectl describe httpsdelivery NAME -n NAMESPACE",
        ],
        "the first two commands to run:\n{out}"
    );

    // Every object of the release exists on the server.
    let manifest = succeed(
        "helm get manifest",
        helm(cp, &["get", "manifest", &release, "--namespace", &ns]),
        None,
    );
    let docs = documents(&manifest);
    assert_eq!(docs.len(), 5, "{:?}", inventory(&docs));
    let got = succeed(
        "kubectl get -f (the release's objects)",
        kubectl(cp, &["get", "-o", "name", "-f", "-"]),
        Some(&manifest),
    );
    assert_eq!(got.lines().count(), docs.len(), "{got}");
    // helm skipped the CRD that was already installed, and it is still Established.
    let crd = succeed(
        "kubectl get crd",
        kubectl(
            cp,
            &[
                "get",
                "crd",
                "httpsdeliveries.httpsdelivery.dev",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
            ],
        ),
        None,
    );
    assert_eq!(crd, "True");

    // The ServiceAccount may do what the operator does, cluster-wide, and nothing more.
    let sa = format!("system:serviceaccount:{ns}:{full}");
    for (allowed, args) in [
        (
            true,
            vec![
                "list",
                "httpsdeliveries.httpsdelivery.dev",
                "--all-namespaces",
            ],
        ),
        (true, vec!["watch", "secrets", "--all-namespaces"]),
        (
            true,
            vec![
                "patch",
                "httpsdeliveries.httpsdelivery.dev",
                "--subresource=status",
                "-n",
                "anywhere",
            ],
        ),
        (
            true,
            vec!["create", "events.events.k8s.io", "-n", "anywhere"],
        ),
        (
            false,
            vec![
                "delete",
                "httpsdeliveries.httpsdelivery.dev",
                "--all-namespaces",
            ],
        ),
        (
            false,
            vec![
                "update",
                "httpsdeliveries.httpsdelivery.dev",
                "-n",
                "anywhere",
            ],
        ),
        (false, vec!["create", "secrets", "-n", "anywhere"]),
        (false, vec!["delete", "secrets", "-n", "anywhere"]),
        (
            false,
            vec!["create", "leases.coordination.k8s.io", "-n", &ns],
        ),
        (false, vec!["list", "pods", "--all-namespaces"]),
    ] {
        cp.assert_can_i(&["--as", &sa], &args, allowed);
    }

    // An upgrade to two replicas switches leader election on, with its Role.
    succeed(
        "helm upgrade",
        helm(
            cp,
            &[
                "upgrade",
                &release,
                &chart(),
                "--namespace",
                &ns,
                "--set",
                "replicaCount=2",
            ],
        ),
        None,
    );
    let deployment: Value = serde_json::from_str(&succeed(
        "kubectl get deployment",
        kubectl(cp, &["get", "deployment", &full, "-n", &ns, "-o", "json"]),
        None,
    ))
    .expect("JSON");
    assert_eq!(deployment["spec"]["replicas"], json!(2));
    assert!(args(&deployment).contains(&"--leader-elect".to_owned()));
    assert!(args(&deployment).contains(&format!("--lease-namespace={ns}")));
    succeed(
        "kubectl get the lease Role",
        kubectl(
            cp,
            &[
                "get",
                "role,rolebinding",
                &format!("{full}-leader-election"),
                "-n",
                &ns,
            ],
        ),
        None,
    );
    cp.assert_can_i(
        &["--as", &sa],
        &[
            "update",
            &format!("leases.coordination.k8s.io/{NAME}"),
            "-n",
            &ns,
        ],
        true,
    );

    // Uninstall removes every object of the release but keeps the CRD (and the deliveries).
    succeed(
        "helm uninstall",
        helm(cp, &["uninstall", &release, "--namespace", &ns]),
        None,
    );
    let left = succeed(
        "kubectl get -f (after uninstall)",
        kubectl(cp, &["get", "-o", "name", "--ignore-not-found", "-f", "-"]),
        Some(&manifest),
    );
    assert_eq!(left.trim(), "", "left behind by helm uninstall");
    succeed(
        "the CRD is kept",
        kubectl(cp, &["get", "crd", "httpsdeliveries.httpsdelivery.dev"]),
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// Least privilege, proven with the real operator

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn the_charts_service_account_runs_the_operator_to_ready_and_can_do_nothing_else() {
    let cp = shared();
    cp.install_crds(root().join("crds"));
    let world = World::start().await.expect("the loopback world");
    let ns = cp.namespace("least").await;
    let elsewhere = cp.namespace("elsewhere").await;

    // The chart, as a user installs it for one namespace with leader election.
    succeed(
        "helm install (one watch namespace)",
        helm(
            cp,
            &[
                "install",
                NAME,
                &chart(),
                "--namespace",
                &ns,
                "--set",
                &format!("watchNamespaces={{{ns}}},leaderElection.enabled=true"),
            ],
        ),
        None,
    );

    // The ServiceAccount's own credentials: a token from the TokenRequest API.
    let token = succeed(
        "kubectl create token",
        kubectl(cp, &["create", "token", NAME, "-n", &ns, "--duration=1h"]),
        None,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("operator.kubeconfig");
    cp.token_kubeconfig(token.trim(), &kubeconfig);
    let as_operator = format!("--kubeconfig={}", kubeconfig.display());
    let whoami = succeed(
        "kubectl auth whoami (token)",
        kubectl(
            cp,
            &[
                &as_operator,
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        ),
        None,
    );
    assert_eq!(whoami, format!("system:serviceaccount:{ns}:{NAME}"));

    // A healthy delivery whose certificate comes from a Secret (so the Secret is read).
    let leaf = world.ca.issue(LeafSpec::valid_for(["www.shop.example"]));
    let admin = cp.client().await;
    Api::<Secret>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &tls_secret("www-tls", &leaf))
        .await
        .expect("create the Secret");
    let mut delivery: HttpsDelivery = example("healthy.yaml");
    delivery.metadata.namespace = Some(ns.clone());
    delivery.spec.certificate.secret_ref = Some(SecretReference {
        name: "www-tls".into(),
    });
    let deliveries: Api<HttpsDelivery> = Api::namespaced(admin.clone(), &ns);
    deliveries
        .create(&PostParams::default(), &delivery)
        .await
        .expect("create the delivery");

    // The real operator binary, authenticated only by that token.
    let identity = format!("{NAME}-least-privilege");
    let mut args = vec![
        format!("--watch-namespace={ns}"),
        "--leader-elect".into(),
        format!("--lease-namespace={ns}"),
        format!("--identity={identity}"),
    ];
    args.extend(world.probe_args());
    let op = Operator::start(BIN, &kubeconfig, args);

    let started = Instant::now();
    let d = op
        .wait_for_condition(
            &deliveries,
            "www",
            ["Ready", "True", "Verified"],
            Duration::from_secs(60),
        )
        .await;
    assert!(
        has_condition(&d, "CertificateValid", "True", "Verified"),
        "the certificate was read from the Secret: {:#?}",
        d.status
    );
    eprintln!(
        "Ready=True as the chart's ServiceAccount after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // It leads through the Lease the chart's Role allows, and reports itself ready.
    let lease = Api::<Lease>::namespaced(admin.clone(), &ns)
        .get(NAME)
        .await
        .expect("the Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity),
        Some(identity.clone())
    );
    // Nothing it tried was refused: no watch, read, status patch or Event.
    let log = op.log();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );

    // What the ServiceAccount may do, asked with its own token.
    let who = [as_operator.as_str()];
    let hd = "httpsdeliveries.httpsdelivery.dev";
    let lease_named = format!("leases.coordination.k8s.io/{NAME}");
    for (allowed, args) in [
        // What the operator does.
        (true, vec!["get", hd, "-n", &ns]),
        (true, vec!["list", hd, "-n", &ns]),
        (true, vec!["watch", hd, "-n", &ns]),
        (true, vec!["patch", hd, "--subresource=status", "-n", &ns]),
        (true, vec!["get", "secrets", "-n", &ns]),
        (true, vec!["watch", "secrets", "-n", &ns]),
        (true, vec!["create", "events.events.k8s.io", "-n", &ns]),
        (true, vec!["patch", "events.events.k8s.io", "-n", &ns]),
        (
            true,
            vec!["create", "leases.coordination.k8s.io", "-n", &ns],
        ),
        (true, vec!["update", &lease_named, "-n", &ns]),
        (true, vec!["watch", &lease_named, "-n", &ns]),
        // Never a write to Secrets.
        (false, vec!["create", "secrets", "-n", &ns]),
        (false, vec!["update", "secrets", "-n", &ns]),
        (false, vec!["patch", "secrets", "-n", &ns]),
        (false, vec!["delete", "secrets", "-n", &ns]),
        // Never a change to a delivery itself: only its status.
        (false, vec!["delete", hd, "-n", &ns]),
        (false, vec!["deletecollection", hd, "-n", &ns]),
        (false, vec!["update", hd, "-n", &ns]),
        (false, vec!["patch", hd, "-n", &ns]),
        (false, vec!["create", hd, "-n", &ns]),
        // Other Leases, and deleting its own.
        (
            false,
            vec!["get", "leases.coordination.k8s.io/someone-else", "-n", &ns],
        ),
        (false, vec!["list", "leases.coordination.k8s.io", "-n", &ns]),
        (false, vec!["delete", &lease_named, "-n", &ns]),
        // Nothing in another namespace, nothing cluster-wide.
        (false, vec!["list", hd, "-n", &elsewhere]),
        (false, vec!["get", "secrets", "-n", &elsewhere]),
        (
            false,
            vec!["create", "events.events.k8s.io", "-n", &elsewhere],
        ),
        (
            false,
            vec!["create", "leases.coordination.k8s.io", "-n", &elsewhere],
        ),
        (false, vec!["list", hd, "--all-namespaces"]),
        (false, vec!["list", "secrets", "--all-namespaces"]),
        // Nothing else at all.
        (false, vec!["get", "pods", "-n", &ns]),
        (false, vec!["get", "configmaps", "-n", &ns]),
        (
            false,
            vec![
                "create",
                "rolebindings.rbac.authorization.k8s.io",
                "-n",
                &ns,
            ],
        ),
        (false, vec!["*", "*", "-n", &ns]),
    ] {
        cp.assert_can_i(&who, &args, allowed);
    }

    // And real requests with the token are refused by the API server.
    for (what, args) in [
        (
            "delete the delivery",
            vec!["delete", "hd", "www", "-n", &ns],
        ),
        (
            "change the delivery's spec",
            vec![
                "patch",
                "hd",
                "www",
                "-n",
                &ns,
                "--type=merge",
                "-p",
                r#"{"spec":{"hostname":"evil.shop.example"}}"#,
            ],
        ),
        (
            "delete the Secret",
            vec!["delete", "secret", "www-tls", "-n", &ns],
        ),
        (
            "read Secrets elsewhere",
            vec!["get", "secrets", "-n", &elsewhere],
        ),
        (
            "list deliveries cluster-wide",
            vec!["get", "hd", "--all-namespaces"],
        ),
    ] {
        let mut cmd = kubectl(cp, &[&as_operator]);
        cmd.args(&args);
        let stderr = fail(what, cmd);
        assert!(
            stderr.contains("Forbidden") || stderr.contains("forbidden"),
            "{what}: {stderr}"
        );
    }
    let d = deliveries.get("www").await.expect("the delivery");
    assert_eq!(d.spec.hostname, "www.shop.example");
}

/// The chart's readinessProbe is `GET /readyz` on the metrics port: it must answer 200 once the
/// operator runs and its caches are synced, or no Pod of the chart ever becomes Ready (and
/// `helm install --wait`, rollouts and the PodDisruptionBudget all stall).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn the_readiness_probe_answers_200_once_the_operator_runs() {
    let cp = shared();
    cp.install_crds(root().join("crds"));
    let world = World::start().await.expect("the loopback world");
    let ns = cp.namespace("readyz").await;
    let mut args = vec![format!("--watch-namespace={ns}")];
    args.extend(world.probe_args());
    let op = Operator::start(BIN, cp.kubeconfig_path(), args);
    let within = Duration::from_secs(30);
    let statuses = eventually(within, async || {
        let statuses = (op.http_status("/healthz"), op.http_status("/readyz"));
        match statuses {
            (Some(200), Some(200)) => Ok(statuses),
            _ => Err(format!("(/healthz, /readyz) answered {statuses:?}")),
        }
    })
    .await
    .unwrap_or_else(|last| {
        panic!(
            "not both 200 after {within:?}: {last}; operator log:\n{}",
            op.log()
        )
    });
    assert_eq!(statuses, (Some(200), Some(200)));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin) and make gateway-api-crds: run make test"]
async fn with_routes_on_the_charts_service_account_audits_and_generates_and_can_do_no_more() {
    let cp = shared();
    cp.install_crds(root().join("crds"));
    let gateway_api = root().join("tools/crds/gateway-api");
    assert!(
        gateway_api
            .join("gateway.networking.k8s.io_httproutes.yaml")
            .exists(),
        "no HTTPRoute CRD in {}: run `make gateway-api-crds` (make test does)",
        gateway_api.display()
    );
    cp.install_crds(&gateway_api);
    let world = World::start().await.expect("the loopback world");
    let ns = cp.namespace("least-routes").await;
    let set =
        format!("watchNamespaces={{{ns}}},auditRoutes.enabled=true,auditRoutes.generate=true");
    succeed(
        "helm install (routes on)",
        helm(
            cp,
            &["install", NAME, &chart(), "--namespace", &ns, "--set", &set],
        ),
        None,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("operator.kubeconfig");
    cp.service_account_kubeconfig(&ns, NAME, &kubeconfig);

    // A template, an Ingress that asks for it, and an HTTPRoute that does not.
    let manifests = "apiVersion: v1
kind: ConfigMap
metadata: {name: cdn}
data:
  spec: |
    certificate: {platform: HttpLarge, targetCname: cs1.wpc.cdn.example}
    edgeCname: {platform: HttpLarge, origin: shop-origin, modifiedAt: '2026-11-01T10:00:00Z'}
    origin: {name: shop-origin, host: origin.shop.example, port: 8443, protocol: HttpsOnly, httpsEdgeProtocol: true}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, annotations: {httpsdelivery.dev/template: cdn}}
spec:
  rules:
  - host: www.shop.example
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: shop, port: {number: 80}}}}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec: {hostnames: [img.shop.example]}
";
    succeed(
        "kubectl apply (routes)",
        kubectl(cp, &["apply", "-n", &ns, "-f", "-"]),
        Some(manifests),
    );

    let mut args = vec![
        format!("--watch-namespace={ns}"),
        "--audit-routes".into(),
        "--generate-from-routes".into(),
    ];
    args.extend(world.probe_args());
    let op = Operator::start(BIN, &kubeconfig, args);
    let deliveries: Api<HttpsDelivery> = Api::namespaced(cp.client().await, &ns);
    let shop = RouteKey {
        kind: RouteKind::Ingress,
        namespace: ns.clone(),
        name: "shop".into(),
    };
    let generated = generated_name(&shop, "www.shop.example");
    op.wait_for_condition(
        &deliveries,
        &generated,
        ["Ready", "True", "Verified"],
        Duration::from_secs(60),
    )
    .await;
    let series = format!(
        "httpsdelivery_uncovered_hostnames{{namespace=\"{ns}\",kind=\"HTTPRoute\",name=\"web\",hostname=\"img.shop.example\"}} 1"
    );
    eventually(Duration::from_secs(30), async || {
        let metrics = op.metrics();
        if metrics.contains(&series) {
            Ok(())
        } else {
            Err(metrics)
        }
    })
    .await
    .unwrap_or_else(|m| panic!("no {series} in:\n{m}\n{}", op.log()));
    let log = op.log();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );

    let who = [format!("--kubeconfig={}", kubeconfig.display())];
    let who: Vec<&str> = who.iter().map(String::as_str).collect();
    let hd = "httpsdeliveries.httpsdelivery.dev";
    for (allowed, args) in [
        (true, vec!["list", "ingresses.networking.k8s.io", "-n", &ns]),
        (
            true,
            vec!["watch", "httproutes.gateway.networking.k8s.io", "-n", &ns],
        ),
        (true, vec!["get", "configmaps", "-n", &ns]),
        (true, vec!["create", hd, "-n", &ns]),
        (true, vec!["patch", hd, "-n", &ns]),
        (true, vec!["delete", hd, "-n", &ns]),
        // Routes are read, never written; ConfigMaps are read one by one, never listed.
        (
            false,
            vec!["patch", "ingresses.networking.k8s.io", "-n", &ns],
        ),
        (
            false,
            vec!["update", "httproutes.gateway.networking.k8s.io", "-n", &ns],
        ),
        (false, vec!["list", "configmaps", "-n", &ns]),
        (false, vec!["update", "configmaps", "-n", &ns]),
        (false, vec!["update", hd, "-n", &ns]),
        (
            false,
            vec!["list", "ingresses.networking.k8s.io", "--all-namespaces"],
        ),
    ] {
        cp.assert_can_i(&who, &args, allowed);
    }
}
