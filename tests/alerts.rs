//! The chart's alerts (`templates/prometheusrule.yaml`) and dashboard
//! (`dashboards/httpsdelivery.json`): promtool checks and unit-tests every alert, every metric
//! and label they use is on a real scrape of the operator, every runbook URL is an anchor of the
//! README, and the rendered objects are ones the real API server accepts.

use httpsdelivery_operator::api::{ConditionType, HttpsDelivery, Reason};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::controlplane::{ControlPlane, shared, tool};
use testkit::operator::{Operator, eventually};
use testkit::process::{fail, run, succeed, text};
use testkit::world::{World, example};

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");
const NAME: &str = "httpsdelivery-operator";
/// The runbookBaseUrl the unit tests (tests/fixtures/alerts/alerts_test.yaml) expect.
const RUNBOOK_BASE: &str =
    "https://git.example.com/platform/httpsdelivery-operator/blob/main/README.md";
/// The alerts the chart defines, each of which the unit tests must see fire and stay silent.
const ALERTS: [&str; 6] = [
    "HttpsDeliveryNotReady",
    "HttpsDeliveryCertificateExpiringSoon",
    "HttpsDeliveryCertificateExpiryCritical",
    "HttpsDeliveryConditionUnknown",
    "HttpsDeliveryReconcileErrors",
    "HttpsDeliveryDanglingCname",
];
/// Bounds a wait for what should happen within seconds, generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    root().join("charts").join(NAME)
}

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/alerts")
}

/// `helm template RELEASE CHART -n NAMESPACE --set SET`.
fn template(cp: &ControlPlane, namespace: &str, set: &str) -> Vec<Value> {
    let mut cmd = cp.helm();
    cmd.args(["template", NAME])
        .arg(chart_dir())
        .args(["--namespace", namespace, "--set", set]);
    let yaml = succeed(&format!("helm template --set {set}"), cmd, None);
    serde_saphyr::from_multiple(&yaml).unwrap_or_else(|e| panic!("{e}:\n{yaml}"))
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} among {docs:#?}"))
}

/// The alerting rules of the chart's PrometheusRule rendered with `set`.
fn rules(cp: &ControlPlane, set: &str) -> Vec<Value> {
    let docs = template(cp, "monitoring", set);
    find(&docs, "PrometheusRule")["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

fn promtool(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(tool("promtool"));
    cmd.args(args).current_dir(dir);
    cmd
}

/// The PrometheusRule's groups as a Prometheus rule file in `dir`, beside a copy of the unit
/// tests (whose `rule_files` names it).
fn rule_files(cp: &ControlPlane, dir: &Path, set: &str) {
    let docs = template(cp, "monitoring", set);
    let groups = json!({"groups": find(&docs, "PrometheusRule")["spec"]["groups"]});
    std::fs::write(dir.join("rules.yaml"), groups.to_string()).expect("write rules.yaml");
    std::fs::copy(
        fixtures().join("alerts_test.yaml"),
        dir.join("alerts_test.yaml"),
    )
    .expect("copy alerts_test.yaml");
}

/// For each alert of the unit tests: whether some case expects it to fire, and whether some
/// case expects it silent.
fn unit_test_coverage() -> BTreeMap<String, (bool, bool)> {
    let text = std::fs::read_to_string(fixtures().join("alerts_test.yaml")).expect("read");
    let tests: Value = serde_saphyr::from_str(&text).expect("alerts_test.yaml");
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for case in tests["tests"].as_array().expect("tests") {
        for check in case["alert_rule_test"].as_array().expect("alert_rule_test") {
            let name = check["alertname"].as_str().expect("alertname").to_owned();
            let fires = check["exp_alerts"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            let entry = seen.entry(name).or_default();
            if fires {
                entry.0 = true;
            } else {
                entry.1 = true;
            }
        }
    }
    seen
}

#[test]
#[ignore = "needs helm and promtool (tools/bin): run make test"]
fn promtool_checks_the_rules_and_every_alert_fires_and_stays_silent_in_its_unit_tests() {
    let cp = shared();
    let names: Vec<String> = rules(cp, "prometheusRule.enabled=true")
        .iter()
        .map(|r| r["alert"].as_str().expect("alert").to_owned())
        .collect();
    assert_eq!(names, ALERTS);
    let coverage = unit_test_coverage();
    for alert in ALERTS {
        assert_eq!(
            coverage.get(alert),
            Some(&(true, true)),
            "{alert}: alerts_test.yaml must expect it to fire in one case and stay silent in another"
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    rule_files(
        cp,
        dir.path(),
        &format!("prometheusRule.enabled=true,prometheusRule.runbookBaseUrl={RUNBOOK_BASE}"),
    );
    let checked = succeed(
        "promtool check rules",
        promtool(&["check", "rules", "rules.yaml"], dir.path()),
        None,
    );
    assert!(checked.contains("SUCCESS: 6 rules found"), "{checked}");
    let tested = succeed(
        "promtool test rules",
        promtool(&["test", "rules", "alerts_test.yaml"], dir.path()),
        None,
    );
    assert!(tested.contains("SUCCESS"), "{tested}");

    // The unit tests bite: thresholds moved by a day, or a shorter wait, make them fail.
    for set in [
        "prometheusRule.certificateExpiryWarningDays=19",
        "prometheusRule.certificateExpiryCriticalDays=5",
        "prometheusRule.notReadyFor=13m",
        "prometheusRule.unknownFor=2h",
    ] {
        rule_files(
            cp,
            dir.path(),
            &format!(
                "prometheusRule.enabled=true,prometheusRule.runbookBaseUrl={RUNBOOK_BASE},{set}"
            ),
        );
        let out = fail(
            set,
            promtool(&["test", "rules", "alerts_test.yaml"], dir.path()),
        );
        assert!(out.contains("FAILED"), "{set}: {out}");
    }
}

/// The `id="..."` anchors of README.md.
fn readme_anchors() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let mut anchors = BTreeSet::new();
    for (i, _) in readme.match_indices("<a id=\"") {
        let rest = &readme[i + 7..];
        let end = rest.find('"').expect("a closing quote");
        assert!(
            anchors.insert(rest[..end].to_owned()),
            "README.md has the anchor {} twice",
            &rest[..end]
        );
    }
    anchors
}

/// The README anchors a rendered `runbook_url` can point at. It is `BASE#ANCHOR`, or Prometheus
/// template branches that each hold `BASE#ANCHOR`. Where an anchor ends in a template
/// (`reason-{{ ... | toLower }}`, `condition-{{ $labels.type | toLower }}`), it stands for
/// every reason the operator writes, or every condition type but Ready.
fn runbook_anchors(url: &str) -> Vec<String> {
    let base = format!("{RUNBOOK_BASE}#");
    assert!(
        url.starts_with(&base) || url.starts_with("{{ if "),
        "{url} is not {base}ANCHOR"
    );
    let mut anchors = Vec::new();
    for (i, _) in url.match_indices(&base) {
        let rest = &url[i + base.len()..];
        let literal_end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(rest.len());
        let literal = &rest[..literal_end];
        // `reason-{{ ... }}`: the template writes the rest of the anchor.
        let templated = literal.ends_with('-') && rest[literal_end..].starts_with("{{");
        match (literal, templated) {
            (_, false) => anchors.push(literal.to_owned()),
            ("reason-", true) => anchors.extend(
                Reason::ALL
                    .iter()
                    .map(|r| format!("reason-{}", r.as_str().to_lowercase())),
            ),
            ("condition-", true) => anchors.extend(
                <ConditionType as strum::VariantArray>::VARIANTS
                    .iter()
                    .filter(|t| **t != ConditionType::Ready)
                    .map(|t| format!("condition-{}", t.as_str().to_lowercase())),
            ),
            _ => panic!("{url}: an anchor {literal}{{{{...}}}} of no known kind"),
        }
    }
    assert!(!anchors.is_empty(), "{url} holds no {base}ANCHOR");
    anchors
}

#[test]
fn runbook_urls_stand_for_the_anchors_they_can_take() {
    let url = |rest: &str| format!("{RUNBOOK_BASE}#{rest}");
    assert_eq!(runbook_anchors(&url("alert-x")), ["alert-x"]);
    let both = format!(
        "{{{{ if lt $value 0.0 }}}}{}{{{{ else }}}}{}{{{{ end }}}}",
        url("reason-expired"),
        url("reason-expiringsoon")
    );
    assert_eq!(
        runbook_anchors(&both),
        ["reason-expired", "reason-expiringsoon"]
    );
    let reasons = runbook_anchors(&url("reason-{{ . | first | label \"reason\" | toLower }}"));
    assert_eq!(reasons.len(), Reason::ALL.len());
    assert!(reasons.contains(&"reason-hostnameconflict".to_owned()));
    let types = runbook_anchors(&url("condition-{{ $labels.type | toLower }}"));
    assert!(types.contains(&"condition-dnshealthy".to_owned()));
    assert!(!types.contains(&"condition-ready".to_owned()));
}

#[test]
#[ignore = "needs helm (tools/bin): run make test"]
fn every_runbook_url_is_an_anchor_of_the_readmes_troubleshooting_rows() {
    let cp = shared();
    let anchors = readme_anchors();
    let set = format!("prometheusRule.enabled=true,prometheusRule.runbookBaseUrl={RUNBOOK_BASE}");
    let mut checked = 0;
    for rule in rules(cp, &set) {
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no runbook_url: {rule}"));
        for anchor in runbook_anchors(url) {
            assert!(
                anchors.contains(&anchor),
                "{}: README.md has no <a id=\"{anchor}\">; its anchors: {anchors:?}",
                rule["alert"]
            );
            checked += 1;
        }
    }
    // Every reason (through the templated ones) and every condition but Ready.
    assert!(
        checked >= ALERTS.len() + Reason::ALL.len() + 8,
        "{checked} anchors checked"
    );

    // The runbook_urls the unit tests expect, reasons included, resolve too.
    let tests = std::fs::read_to_string(fixtures().join("alerts_test.yaml")).expect("read");
    let mut expected = 0;
    for line in tests.lines() {
        if let Some(url) = line.trim().strip_prefix("runbook_url: ") {
            let anchor = url
                .strip_prefix(&format!("{RUNBOOK_BASE}#"))
                .unwrap_or_else(|| panic!("{url} is not {RUNBOOK_BASE}#ANCHOR"));
            assert!(
                anchors.contains(anchor),
                "alerts_test.yaml expects #{anchor}"
            );
            expected += 1;
        }
    }
    assert!(
        expected >= ALERTS.len(),
        "{expected} runbook_urls in alerts_test.yaml"
    );

    // The README's own links to them (its alert table) resolve too.
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    for (i, _) in readme.match_indices("](#") {
        let rest = &readme[i + 3..];
        let target = &rest[..rest.find(')').expect("a closing parenthesis")];
        if ["condition-", "reason-", "alert-"]
            .iter()
            .any(|p| target.starts_with(p))
        {
            assert!(anchors.contains(target), "README links to #{target}");
        }
    }

    // Without a base URL there is no runbook_url rather than a relative one.
    for rule in rules(cp, "prometheusRule.enabled=true") {
        assert!(rule["annotations"].get("runbook_url").is_none(), "{rule}");
    }
}

// ---------------------------------------------------------------------------------------------
// The metrics the rules and the dashboard use, against a real scrape

/// One sample line's metric name and label names.
fn sample(line: &str) -> Option<(String, BTreeMap<String, String>)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    if line[name_end..].starts_with('{') {
        let mut rest = &line[name_end + 1..];
        while let Some(eq) = rest.find("=\"") {
            let label = rest[..eq].trim_start_matches(',').to_owned();
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let mut end = 0;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            value.push(e);
                        }
                    }
                    '"' => {
                        end = eq + 2 + i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            labels.insert(label, value);
            rest = &rest[end..];
            if rest.starts_with('}') {
                break;
            }
        }
    }
    Some((name, labels))
}

/// What a scrape holds: each sample name with every label name and value seen on it, and the
/// declared type of each metric family.
struct Scrape {
    samples: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(decl) = line.strip_prefix("# TYPE ") {
                let (name, kind) = decl.split_once(' ').expect("# TYPE NAME KIND");
                types.insert(name.to_owned(), kind.to_owned());
            } else if let Some((name, labels)) = sample(line) {
                let entry = samples.entry(name).or_default();
                for (label, value) in labels {
                    entry.entry(label).or_default().insert(value);
                }
            }
        }
        Scrape { samples, types }
    }

    /// Checks one metric name a query uses: a sample name of the scrape, and a histogram's
    /// _bucket, _sum or _count only where the family is a histogram.
    fn check_metric(&self, metric: &str, query: &str) {
        assert!(
            self.samples.contains_key(metric),
            "{metric} (in {query}) is not on /metrics; its samples: {:?}",
            self.samples.keys().collect::<Vec<_>>()
        );
        for suffix in ["_bucket", "_sum", "_count"] {
            let family = metric.strip_suffix(suffix);
            if let Some(kind) = family.and_then(|f| self.types.get(f)) {
                assert_eq!(
                    kind, "histogram",
                    "{metric} (in {query}): {family:?} is not a histogram"
                );
            }
        }
        if !metric.ends_with("_bucket") {
            assert!(
                !self.samples[metric].contains_key("le"),
                "{metric} (in {query}) has buckets"
            );
        }
    }
}

/// The identifiers `httpsdelivery_...` in a query (the PromQL of a rule, of a panel, or inside
/// an alert's annotation template).
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in query.match_indices("httpsdelivery_") {
        let before = query[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let end = query[i..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(query.len(), |e| i + e);
        names.insert(query[i..end].to_owned());
    }
    names
}

/// The identifiers of a comma-separated list, e.g. `namespace, name` of `by (namespace, name)`.
fn identifiers(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(|l| l.trim().trim_matches('"').to_owned())
        .filter(|l| !l.is_empty())
}

/// Label names a query uses, with the literal value where a matcher compares with `=`:
/// matchers (`{type="Ready"}`, `{status!='True'}`), grouping (`by`, `without`, `on`,
/// `ignoring`, `group_left`, `group_right`), Grafana's `label_values(metric, label)` and an
/// annotation template's `$labels.x`, `.Labels.x`, `sortByLabel "x"` and `label "x"`.
fn label_uses(query: &str) -> Vec<(String, Option<String>)> {
    let mut uses = Vec::new();
    for (i, _) in query.match_indices('{') {
        let Some(before) = query[..i].chars().next_back() else {
            continue;
        };
        if !(before.is_ascii_alphanumeric() || before == '_') {
            continue; // a Go template's {{, not a selector
        }
        let body = &query[i + 1..i + query[i..].find('}').expect("a closing brace")];
        for matcher in body.split(',') {
            let Some(op) = matcher.find(['=', '!']) else {
                continue;
            };
            let label = matcher[..op].trim().to_owned();
            let rest = matcher[op..].trim_start_matches(['=', '!', '~']).trim();
            let value = rest.trim_matches(['"', '\'']);
            let literal = matcher[op..].starts_with("=\"") || matcher[op..].starts_with("='");
            let literal = literal && !value.contains(['%', '$', '.', '*']);
            uses.push((label, literal.then(|| value.to_owned())));
        }
    }
    for keyword in [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ] {
        for (i, _) in query.match_indices(keyword) {
            let before = query[..i].chars().next_back();
            let after = query[i + keyword.len()..].trim_start();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                || !after.starts_with('(')
            {
                continue;
            }
            let list = &after[1..after.find(')').expect("a closing parenthesis")];
            uses.extend(identifiers(list).map(|l| (l, None)));
        }
    }
    for (prefix, end) in [
        ("label_values(", ")"),
        ("$labels.", " "),
        (".Labels.", " "),
        ("sortByLabel \"", "\""),
        ("| label \"", "\""),
    ] {
        for (i, _) in query.match_indices(prefix) {
            let rest = &query[i + prefix.len()..];
            let rest = &rest[..rest.find(end).unwrap_or(rest.len())];
            let label = match prefix {
                "label_values(" => rest.rsplit(',').next().unwrap_or_default(),
                _ => rest,
            };
            uses.extend(identifiers(label).map(|l| (l, None)));
        }
    }
    uses
}

/// Checks that every metric `query` names is on the scrape, and that every label it uses (and
/// each literal value it matches with `=`) is on a sample of one of those metrics.
fn check_query(scrape: &Scrape, query: &str) -> usize {
    let metrics = metric_names(query);
    assert!(!metrics.is_empty(), "no httpsdelivery_ metric in {query}");
    for metric in &metrics {
        scrape.check_metric(metric, query);
    }
    let uses = label_uses(query);
    for (label, value) in &uses {
        let seen: BTreeSet<&String> = metrics
            .iter()
            .filter_map(|m| scrape.samples[m].get(label))
            .flatten()
            .collect();
        assert!(
            !seen.is_empty(),
            "label {label} (in {query}) is on no sample of {metrics:?}"
        );
        if let Some(value) = value {
            assert!(
                seen.contains(value),
                "{label}=\"{value}\" (in {query}) is not on /metrics; seen: {seen:?}"
            );
        }
    }
    uses.len()
}

/// Every PromQL query of the dashboard: its panels' targets and its template variables.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets").clone())
        .map(|t| t["expr"].as_str().expect("expr").to_owned())
        .collect();
    for variable in dashboard["templating"]["list"].as_array().expect("list") {
        if let Some(query) = variable["query"]["query"].as_str() {
            queries.push(query.to_owned());
        }
    }
    queries
}

fn dashboard_file() -> Value {
    let path = chart_dir().join("dashboards/httpsdelivery.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A ValidatingAdmissionPolicy that refuses status writes to the HttpsDelivery `name` in
/// `namespace`: the operator's status apply fails, as it does when RBAC or a webhook refuses it.
fn refuse_status_writes(cp: &ControlPlane, namespace: &str, name: &str) {
    let policy = format!("alerts-refuse-status-{namespace}");
    let manifest = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {policy}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: ["httpsdelivery.dev"]
        apiVersions: ["*"]
        operations: ["UPDATE"]
        resources: ["httpsdeliveries/status"]
  validations:
    - expression: "object.metadata.name != '{name}'"
      message: "this test refuses status writes to {name}"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {policy}
spec:
  policyName: {policy}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {namespace}
"#
    );
    let mut cmd = cp.kubectl();
    cmd.args(["apply", "-f", "-"]);
    succeed("kubectl apply the admission policy", cmd, Some(&manifest));
}

/// The operator with a Ready delivery (`www`), one whose hostname is a dangling CNAME
/// (`dangling`: examples/dns-6-dangling-cname.yaml, whose CNAME the loopback world leaves
/// dangling) and one whose status writes are refused, once its /metrics shows the refused
/// writes as reconcile errors and the dangling hostname; and the namespace.
async fn scrape_of_a_running_operator(cp: &ControlPlane) -> (String, Operator, String) {
    cp.install_crds(root().join("crds"));
    let world = World::start().await.expect("the loopback world");
    let ns = cp.namespace("alerts").await;
    let api: Api<HttpsDelivery> = Api::namespaced(cp.client().await, &ns);
    refuse_status_writes(cp, &ns, "unwritable");
    let op = Operator::start_in_world(BIN, cp.kubeconfig_path(), &world, Some(&ns), &[]);
    for (name, file) in [
        ("www", "healthy.yaml"),
        ("unwritable", "healthy.yaml"),
        ("dangling", "dns-6-dangling-cname.yaml"),
    ] {
        let mut d: HttpsDelivery = example(file);
        d.metadata.namespace = Some(ns.clone());
        d.metadata.name = Some(name.into());
        if name == "unwritable" {
            // Not www's hostname: created in the same second, the older-claim rule would
            // break the tie by name and give it the hostname.
            d.spec.hostname = "unwritable.shop.example".into();
        }
        api.create(&PostParams::default(), &d)
            .await
            .expect("create the delivery");
        if name == "www" {
            op.wait_for_condition(&api, "www", ["Ready", "True", "Verified"], PATIENCE)
                .await;
        }
    }
    let errors = "httpsdelivery_reconcile_errors_total{error=\"status_patch\"}";
    let dangling =
        format!("httpsdelivery_hostname_dangling{{namespace=\"{ns}\",name=\"dangling\"}} 1");
    let text = eventually(PATIENCE, async || {
        let text = op.metrics();
        if text.contains(errors)
            && text.contains(&dangling)
            && text.contains("httpsdelivery_probe_duration_seconds_bucket")
        {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await
    .unwrap_or_else(|text| {
        panic!(
            "no {errors} or {dangling} on /metrics:\n{text}\n{}",
            op.log()
        )
    });
    (text, op, ns)
}

/// The input series of the unit tests (tests/fixtures/alerts/alerts_test.yaml): metric name and
/// labels of each.
fn unit_test_series() -> Vec<(String, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(fixtures().join("alerts_test.yaml")).expect("read");
    let tests: Value = serde_saphyr::from_str(&text).expect("alerts_test.yaml");
    tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|case| {
            case["input_series"]
                .as_array()
                .expect("input_series")
                .clone()
        })
        .map(|s| {
            let series = s["series"].as_str().expect("series");
            sample(&format!("{series} 1")).expect("a series")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn every_metric_and_label_the_alerts_and_the_dashboard_use_is_on_the_operators_metrics() {
    let cp = shared();
    let (text, _op, ns) = scrape_of_a_running_operator(cp).await;
    let scrape = Scrape::parse(&text);

    // The per-delivery series the alerts join, as the operator writes them: the hostname and
    // Ready's reason of each delivery, and the dangling one named. A family with no sample
    // still has its header.
    for (name, hostname, reason) in [
        ("www", "www.shop.example", "Verified"),
        ("dangling", "old.shop.example", "EdgeUnreachable"),
    ] {
        let info = format!(
            "httpsdelivery_delivery_info{{namespace=\"{ns}\",name=\"{name}\",hostname=\"{hostname}\",reason=\"{reason}\"}} 1\n"
        );
        assert!(text.contains(&info), "no {info} on /metrics:\n{text}");
    }
    let dangling: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("httpsdelivery_hostname_dangling{"))
        .collect();
    assert_eq!(
        dangling,
        [format!(
            "httpsdelivery_hostname_dangling{{namespace=\"{ns}\",name=\"dangling\"}} 1"
        )],
        "only the dangling delivery"
    );
    for header in [
        "# TYPE httpsdelivery_delivery_info gauge",
        "# TYPE httpsdelivery_hostname_dangling gauge",
        "# HELP httpsdelivery_hostname_dangling ",
    ] {
        assert!(text.lines().any(|l| l.starts_with(header)), "no {header}");
    }

    // The unit tests' input series have the operator's labels (plus the scrape's target labels
    // job, instance and pod, and the Pod's namespace where the operator writes none).
    let mut shaped = BTreeSet::new();
    for (metric, labels) in unit_test_series() {
        let on_metrics: BTreeSet<&str> = scrape
            .samples
            .get(&metric)
            .unwrap_or_else(|| panic!("alerts_test.yaml: {metric} is not on /metrics"))
            .keys()
            .map(String::as_str)
            .collect();
        let mut in_test: BTreeSet<&str> = labels
            .keys()
            .map(String::as_str)
            .filter(|l| !["job", "instance", "pod"].contains(l))
            .collect();
        if !on_metrics.contains("namespace") {
            in_test.remove("namespace");
        }
        assert_eq!(
            in_test, on_metrics,
            "alerts_test.yaml: the labels of {metric}"
        );
        shaped.insert(metric);
    }
    for metric in [
        "httpsdelivery_delivery_info",
        "httpsdelivery_hostname_dangling",
    ] {
        assert!(shaped.contains(metric), "alerts_test.yaml has no {metric}");
    }

    let mut queries: Vec<(String, String)> = Vec::new();
    for rule in rules(cp, "prometheusRule.enabled=true") {
        let alert = rule["alert"].as_str().expect("alert").to_owned();
        let expr = rule["expr"].as_str().expect("expr").to_owned();
        // An annotation's `$labels` are the expression's labels: checked against its metrics.
        let annotations: Vec<String> = rule["annotations"]
            .as_object()
            .expect("annotations")
            .values()
            .map(|v| v.as_str().expect("a string").to_owned())
            .collect();
        queries.push((alert.clone(), format!("{expr}\n{}", annotations.join("\n"))));
    }
    let dashboard = dashboard_file();
    for (i, query) in dashboard_queries(&dashboard).into_iter().enumerate() {
        queries.push((format!("dashboard query {i}"), query));
    }
    let mut labels_checked = 0;
    let mut used = BTreeSet::new();
    for (what, query) in &queries {
        eprintln!("{what}: {:?}", metric_names(query));
        labels_checked += check_query(&scrape, query);
        used.extend(metric_names(query));
    }
    // Not vacuous: the rules and the panels between them use each metric the brief names.
    for metric in [
        "httpsdelivery_condition_status",
        "httpsdelivery_certificate_not_after_seconds",
        "httpsdelivery_dangling_cnames",
        "httpsdelivery_delivery_info",
        "httpsdelivery_hostname_dangling",
        "httpsdelivery_reconcile_errors_total",
        "httpsdelivery_reconciliations_total",
        "httpsdelivery_probe_duration_seconds_bucket",
        "httpsdelivery_reconcile_duration_seconds_bucket",
    ] {
        assert!(used.contains(metric), "nothing uses {metric}");
    }
    assert!(labels_checked > 40, "{labels_checked} label uses checked");
}

#[test]
fn the_query_parsing_finds_metrics_labels_and_values() {
    let query = r#"sum by (le, kind) (rate(httpsdelivery_probe_duration_seconds_bucket{kind="dns"}[5m]))
        unless on (namespace) httpsdelivery_x{status!='True'} {{ $labels.name }} sortByLabel "type"
        * on (namespace, name) group_left (hostname) {{ . | first | label "reason" }}"#;
    assert_eq!(
        metric_names(query),
        BTreeSet::from([
            "httpsdelivery_probe_duration_seconds_bucket".to_owned(),
            "httpsdelivery_x".to_owned()
        ])
    );
    let labels: BTreeSet<(String, Option<String>)> = label_uses(query).into_iter().collect();
    let expected: BTreeSet<(String, Option<String>)> = [
        ("le", None),
        ("kind", None),
        ("kind", Some("dns")),
        ("namespace", None),
        ("status", None),
        ("name", None),
        ("type", None),
        ("hostname", None),
        ("reason", None),
    ]
    .into_iter()
    .map(|(l, v)| (l.to_owned(), v.map(str::to_owned)))
    .collect();
    assert_eq!(labels, expected);
    let (name, labels) = sample(
        r#"httpsdelivery_condition_status{namespace="a\"b",name="www",type="Ready",status="True"} 1"#,
    )
    .expect("a sample");
    assert_eq!(name, "httpsdelivery_condition_status");
    assert_eq!(labels["namespace"], "a\"b");
    assert_eq!(labels["status"], "True");
    let scrape = Scrape::parse("# TYPE httpsdelivery_x gauge\nhttpsdelivery_x{a=\"b\"} 1\n");
    assert_eq!(scrape.types["httpsdelivery_x"], "gauge");
}

// ---------------------------------------------------------------------------------------------
// The rendered objects, on the real API server

#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn the_prometheus_rule_service_monitor_and_dashboard_config_map_are_accepted_by_the_api_server() {
    let cp = shared();
    cp.install_crds(fixtures().join("crd"));
    let set = "serviceMonitor.enabled=true,\
               prometheusRule.enabled=true,prometheusRule.labels.release=prom,\
               prometheusRule.ruleLabels.team=cdn,prometheusRule.annotations.owner=platform,\
               prometheusRule.runbookBaseUrl=https://git.example.com/README.md,\
               grafanaDashboard.enabled=true,grafanaDashboard.namespace=grafana,\
               grafanaDashboard.annotations.grafana_folder=CDN,grafanaDashboard.labels.team=cdn";
    let mut cmd = cp.helm();
    cmd.args(["template", NAME])
        .arg(chart_dir())
        .args(["--namespace", "monitoring", "--set", set]);
    let manifest = succeed("helm template", cmd, None);
    let docs: Vec<Value> = serde_saphyr::from_multiple(&manifest).expect("YAML");

    let rule = find(&docs, "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "monitoring");
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    assert_eq!(rule["metadata"]["annotations"]["owner"], "platform");
    for r in rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
    {
        assert_eq!(r["labels"]["team"], "cdn", "{r}");
        assert!(
            ["warning", "critical"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
            "{r}"
        );
    }
    assert_eq!(
        find(&docs, "ServiceMonitor")["spec"]["endpoints"][0]["honorLabels"],
        true
    );
    let map = find(&docs, "ConfigMap");
    assert_eq!(map["metadata"]["namespace"], "grafana");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["metadata"]["labels"]["team"], "cdn");
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "CDN");
    let json = map["data"]["httpsdelivery.json"]
        .as_str()
        .expect("httpsdelivery.json");
    let dashboard: Value = serde_json::from_str(json).expect("the dashboard is JSON");
    assert_eq!(dashboard, dashboard_file(), "the ConfigMap holds the file");
    assert_eq!(dashboard["uid"], "httpsdelivery-operator");

    let mut lint = cp.helm();
    lint.args(["lint", "--strict"])
        .arg(chart_dir())
        .args(["--set", set]);
    let linted = succeed("helm lint --strict", lint, None);
    assert!(linted.contains("0 chart(s) failed"), "{linted}");

    // The release namespace and `grafana` must exist for the dry run.
    let namespaces = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: monitoring\n---\n\
                      apiVersion: v1\nkind: Namespace\nmetadata:\n  name: grafana\n";
    let mut cmd = cp.kubectl();
    cmd.args(["apply", "-f", "-"]);
    succeed("kubectl apply namespaces", cmd, Some(namespaces));
    let mut cmd = cp.kubectl();
    cmd.args(["apply", "--dry-run=server", "-o", "name", "-f", "-"]);
    let applied = succeed("kubectl apply --dry-run=server", cmd, Some(&manifest));
    let kinds: BTreeSet<&str> = applied
        .lines()
        .map(|l| l.split('/').next().unwrap_or(l))
        .collect();
    assert!(
        kinds.contains("prometheusrule.monitoring.coreos.com")
            && kinds.contains("servicemonitor.monitoring.coreos.com")
            && kinds.contains("configmap"),
        "{applied}"
    );
    assert_eq!(applied.lines().count(), docs.len(), "{applied}");

    // The stand-in CRD validates: a rule whose annotation is not a string is refused.
    let broken = manifest.replacen("reason: ExpiringSoon", "reason: [ExpiringSoon]", 1);
    assert_ne!(broken, manifest);
    let mut cmd = cp.kubectl();
    cmd.args(["apply", "--dry-run=server", "-f", "-"]);
    let out = run(cmd, Some(&broken));
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("annotations.reason"),
        "{}",
        text(&out.stderr)
    );

    // The sidecar's label is configurable.
    let docs = template(
        cp,
        "monitoring",
        "grafanaDashboard.enabled=true,grafanaDashboard.labelKey=dashboards,grafanaDashboard.labelValue=cdn",
    );
    let labels = &find(&docs, "ConfigMap")["metadata"]["labels"];
    assert_eq!(labels["dashboards"], "cdn");
    assert!(labels.get("grafana_dashboard").is_none(), "{labels}");
}

#[test]
#[ignore = "needs promtool (tools/bin): run make test"]
fn every_dashboard_query_is_valid_promql() {
    let dashboard = dashboard_file();
    let rules: Vec<Value> = dashboard_queries(&dashboard)
        .iter()
        .filter(|q| !q.starts_with("label_values("))
        .enumerate()
        .map(|(i, q)| {
            let expr = q
                .replace("$__rate_interval", "5m")
                .replace("$namespace", ".*");
            assert!(!expr.contains('$'), "an unknown variable in {q}");
            json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    assert!(rules.len() >= 10, "{} queries", rules.len());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(dir.path().join("dashboard.yaml"), file.to_string()).expect("write");
    let out = succeed(
        "promtool check rules (the dashboard's queries)",
        promtool(&["check", "rules", "dashboard.yaml"], dir.path()),
        None,
    );
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{out}"
    );
    // Every panel has a title, a description and a query; ids are unique.
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<i64> = panels.iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(ids.len(), panels.len());
    for p in panels {
        for key in ["title", "description"] {
            assert!(p[key].as_str().is_some_and(|t| !t.is_empty()), "{key}: {p}");
        }
    }
}

#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn notes_name_the_alerts_and_the_dashboard_when_they_are_on() {
    let cp = shared();
    // helm install --dry-run=client still maps every kind it renders.
    cp.install_crds(fixtures().join("crd"));
    let notes = |set: &str| {
        let mut cmd = cp.helm();
        cmd.args(["install", "notes"]).arg(chart_dir()).args([
            "--dry-run=client",
            "--namespace",
            "monitoring",
            "--set",
            set,
        ]);
        let out = succeed(&format!("helm install --dry-run --set {set}"), cmd, None);
        out.split_once("NOTES:")
            .map(|(_, n)| n.to_owned())
            .unwrap_or_else(|| panic!("{out}"))
    };
    let off = notes("prometheusRule.enabled=false");
    assert!(!off.contains("Monitoring:"), "{off}");
    let on = notes(
        "prometheusRule.enabled=true,grafanaDashboard.enabled=true,\
         serviceMonitor.enabled=true,serviceMonitor.honorLabels=false",
    );
    for line in [
        "  - alerts: PrometheusRule monitoring/notes-httpsdelivery-operator (no runbook_url: set \
         prometheusRule.runbookBaseUrl to the URL of the README)",
        "WARNING: serviceMonitor.honorLabels is false",
        "  - dashboard: ConfigMap monitoring/notes-httpsdelivery-operator-dashboard, labelled \
         grafana_dashboard=\"1\" for the Grafana sidecar",
    ] {
        assert!(on.contains(line), "{line}\n{on}");
    }
    let linked = notes(
        "prometheusRule.enabled=true,prometheusRule.runbookBaseUrl=https://x.example/README.md",
    );
    assert!(
        !linked.contains("no runbook_url") && !linked.contains("WARNING"),
        "{linked}"
    );
}

// ---------------------------------------------------------------------------------------------
// values.schema.json

#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn the_values_schema_accepts_the_alert_and_dashboard_keys_and_rejects_typos() {
    let cp = shared();
    let helm = |set: &str| {
        let mut cmd = cp.helm();
        cmd.args(["template", "x"])
            .arg(chart_dir())
            .args(["--set", set]);
        cmd
    };
    let every_key = "serviceMonitor.honorLabels=false,\
        prometheusRule.enabled=true,prometheusRule.namespace=monitoring,\
        prometheusRule.labels.release=prom,prometheusRule.annotations.a=b,\
        prometheusRule.ruleLabels.team=cdn,prometheusRule.runbookBaseUrl=https://x.example/README.md,\
        prometheusRule.notReadyFor=30m,prometheusRule.unknownFor=2h,\
        prometheusRule.certificateExpiryWarningDays=30,prometheusRule.certificateExpiryCriticalDays=10,\
        prometheusRule.disabled.HttpsDeliveryConditionUnknown=true,\
        grafanaDashboard.enabled=true,grafanaDashboard.namespace=grafana,\
        grafanaDashboard.labelKey=dashboards,grafanaDashboard.labelValue=1,\
        grafanaDashboard.labels.a=b,grafanaDashboard.annotations.grafana_folder=CDN";
    succeed("every new key", helm(every_key), None);
    let names: Vec<String> = rules(
        cp,
        "prometheusRule.enabled=true,prometheusRule.disabled.HttpsDeliveryConditionUnknown=true,\
         prometheusRule.disabled.HttpsDeliveryDanglingCname=false",
    )
    .iter()
    .map(|r| r["alert"].as_str().unwrap_or_default().to_owned())
    .collect();
    let expected: Vec<&str> = ALERTS
        .into_iter()
        .filter(|a| *a != "HttpsDeliveryConditionUnknown")
        .collect();
    assert_eq!(names, expected, "disabled leaves out that alert only");

    for (set, says) in [
        (
            "prometheusRule.enabeld=true",
            "additional properties 'enabeld' not allowed",
        ),
        (
            "prometheusRule.ruleLabel.team=cdn",
            "additional properties 'ruleLabel' not allowed",
        ),
        (
            "prometheusRule.disabled.HttpsDeliveryNotRedy=true",
            "additional properties 'HttpsDeliveryNotRedy' not allowed",
        ),
        (
            "prometheusRule.notReadyFor=15 minutes",
            "does not match pattern",
        ),
        ("prometheusRule.unknownFor=1hour", "does not match pattern"),
        (
            "prometheusRule.runbookBaseUrl=README.md#x",
            "does not match pattern",
        ),
        (
            "prometheusRule.certificateExpiryWarningDays=0",
            "exclusiveMinimum",
        ),
        ("prometheusRule.labels.release=1", "got number, want string"),
        (
            "grafanaDashboard.lables.a=b",
            "additional properties 'lables' not allowed",
        ),
        ("grafanaDashboard.labelKey=", "minLength"),
        (
            "grafanaDashboard.namespace=Grafana",
            "does not match pattern",
        ),
        ("serviceMonitor.honorLabels=yes", "got string, want boolean"),
    ] {
        let stderr = fail(set, helm(set));
        assert!(
            stderr.contains("values don't meet the specifications of the schema")
                && stderr.contains(says),
            "--set {set}: {stderr}"
        );
    }
    // What the schema cannot say: the critical threshold is under the warning one.
    let stderr = fail(
        "critical over warning",
        helm("prometheusRule.enabled=true,prometheusRule.certificateExpiryCriticalDays=21"),
    );
    assert!(stderr.contains("must be less than"), "{stderr}");
}
