//! Opt-in generation: a route annotated `httpsdelivery.dev/template: NAME` gets one
//! HttpsDelivery per hostname, built from the ConfigMap NAME of its namespace, owned by the
//! route and applied under the routes' own field manager. A hand-written delivery for the same
//! hostname wins.

use super::audit::{Routes, Told};
use super::source::{Route, RouteKey};
use super::{GeneratedFrom, ROUTES_FIELD_MANAGER, Teller};
use crate::api::{HttpsDelivery, HttpsDeliverySpec};
use crate::controller::Context;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The ConfigMap key that holds the template: an HttpsDelivery `spec` without `hostname`, as
/// YAML.
pub const TEMPLATE_KEY: &str = "spec";

/// A generated name is at most a DNS label long, so that it is valid wherever a name is used.
const MAX_NAME: usize = 63;
/// `-` and eight hex digits of SHA-256.
const HASH_SUFFIX: usize = 9;

/// A template that cannot be used, said so that a person can fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateProblem {
    /// No such ConfigMap (reason TemplateNotFound).
    NotFound(String),
    /// It exists but is not a usable template (reason TemplateInvalid).
    Invalid(String),
}

impl TemplateProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            TemplateProblem::NotFound(_) => "TemplateNotFound",
            TemplateProblem::Invalid(_) => "TemplateInvalid",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            TemplateProblem::NotFound(m) | TemplateProblem::Invalid(m) => m,
        }
    }
}

/// A usable template: the ConfigMap it came from and the spec's fields (without hostname).
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub namespace: String,
    pub name: String,
    fields: Map<String, Value>,
}

/// Reads the template of ConfigMap `namespace/name` (None: it does not exist).
pub fn template_of(
    namespace: &str,
    name: &str,
    config_map: Option<&ConfigMap>,
) -> Result<Template, TemplateProblem> {
    let id = format!("ConfigMap {namespace}/{name}");
    let Some(config_map) = config_map else {
        return Err(TemplateProblem::NotFound(format!(
            "{id}, named by the annotation {}, does not exist",
            super::source::TEMPLATE_ANNOTATION
        )));
    };
    let invalid = |what: String| Err(TemplateProblem::Invalid(format!("{id}: {what}")));
    let data: Option<&BTreeMap<String, String>> = config_map.data.as_ref();
    let Some(text) = data.and_then(|d| d.get(TEMPLATE_KEY)) else {
        return invalid(format!(
            "no key {TEMPLATE_KEY:?}; it must hold an HttpsDelivery spec without hostname, as YAML"
        ));
    };
    let fields = match serde_saphyr::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => fields,
        Ok(other) => {
            return invalid(format!(
                "key {TEMPLATE_KEY:?} is not a mapping of spec fields but {}",
                kind_of(&other)
            ));
        }
        Err(e) => return invalid(format!("key {TEMPLATE_KEY:?} is not YAML: {e}")),
    };
    if fields.contains_key("hostname") {
        return invalid(format!(
            "key {TEMPLATE_KEY:?} sets hostname; leave it out: each generated delivery takes its hostname from the route"
        ));
    }
    let template = Template {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        fields,
    };
    // A template that cannot make a spec for a sample hostname cannot make one for any.
    template.spec_for("template.invalid")?;
    Ok(template)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl Template {
    /// The spec for `hostname`: the template's fields, `hostname`, and `edgeCname.hostname`
    /// when the template leaves it out (step 2 wants it equal to the hostname).
    pub fn spec_for(&self, hostname: &str) -> Result<HttpsDeliverySpec, TemplateProblem> {
        let mut fields = self.fields.clone();
        fields.insert("hostname".into(), hostname.into());
        if let Some(Value::Object(edge)) = fields.get_mut("edgeCname") {
            edge.entry("hostname").or_insert_with(|| hostname.into());
        }
        let de = Value::Object(fields);
        serde_path_to_error::deserialize(&de).map_err(|e| {
            TemplateProblem::Invalid(format!(
                "ConfigMap {}/{}: key {TEMPLATE_KEY:?} at {}: {}",
                self.namespace,
                self.name,
                e.path(),
                e.inner()
            ))
        })
    }
}

/// The name of the delivery generated for `hostname` of `route`: the route's name and the
/// hostname (dots as dashes), cut to fit a DNS label, and a hash of kind, route and hostname,
/// always, since sanitising is lossy (`a` + `b-c.example` and `a-b` + `c.example` would meet).
pub fn generated_name(route: &RouteKey, hostname: &str) -> String {
    let readable: String = format!("{}-{hostname}", route.name)
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let mut readable = readable.trim_matches('-').to_owned();
    readable.truncate(MAX_NAME - HASH_SUFFIX);
    let readable = readable.trim_end_matches('-');
    let digest = Sha256::digest(format!("{}/{}/{hostname}", route.kind.as_str(), route.name));
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    if readable.is_empty() {
        format!("route-{hash}")
    } else {
        format!("{readable}-{hash}")
    }
}

/// The object applied for `hostname` of `route`: owned by the route (not as its controller,
/// and never blocking its deletion), labelled as generated.
pub fn desired_object(
    route: &Route,
    hostname: &str,
    spec: &HttpsDeliverySpec,
    template: &Template,
) -> Value {
    json!({
        "apiVersion": "httpsdelivery.dev/v1alpha1",
        "kind": "HttpsDelivery",
        "metadata": {
            "name": generated_name(&route.key, hostname),
            "namespace": route.key.namespace,
            "labels": {super::GENERATED_BY_LABEL: super::ROUTES_FIELD_MANAGER},
            "annotations": {
                super::source::TEMPLATE_ANNOTATION: template.name,
                super::ROUTE_ANNOTATION: format!("{}/{}", route.key.kind.as_str(), route.key.name),
            },
            "ownerReferences": [{
                "apiVersion": route.key.kind.api_version(),
                "kind": route.key.kind.as_str(),
                "name": route.key.name,
                "uid": route.uid,
                "controller": false,
                "blockOwnerDeletion": false,
            }],
        },
        "spec": spec,
    })
}

/// A generated delivery: (namespace, name).
type Id = (String, String);

/// A template as read in one pass: None when the ConfigMap could not be read (the routes'
/// generated deliveries are then left as they are).
type Read = Option<Result<Template, TemplateProblem>>;

/// Generation across passes: what was applied, so that an unchanged object is not applied again.
#[derive(Debug, Default)]
pub struct Generator {
    /// A digest of the body last applied for each generated delivery.
    applied: HashMap<Id, [u8; 32]>,
}

/// One pass over the annotated routes.
struct Pass<'a> {
    ctx: &'a Context,
    told: &'a mut Told,
    teller: &'a Teller,
    applied: &'a mut HashMap<Id, [u8; 32]>,
    /// Templates read in this pass (each ConfigMap once).
    templates: HashMap<Id, Read>,
    /// The route that generates each hostname (the first, in order, that wants it).
    taken: HashMap<String, RouteKey>,
    /// Generated deliveries that stay; every other generated delivery is deleted.
    keep: HashSet<Id>,
    /// Hostnames whose generated delivery exists or was just applied.
    covered: HashSet<String>,
}

impl Generator {
    /// Applies the delivery of every hostname of every annotated route, deletes the generated
    /// deliveries nothing wants any more, and returns the hostnames they cover.
    pub async fn pass(
        &mut self,
        (routes, listed): (&Routes, &super::Listed),
        ctx: &Context,
        (told, teller): (&mut Told, &Teller),
    ) -> HashSet<String> {
        let mut pass = Pass {
            ctx,
            told,
            teller,
            applied: &mut self.applied,
            templates: HashMap::new(),
            taken: HashMap::new(),
            keep: HashSet::new(),
            covered: HashSet::new(),
        };
        for route in routes.sorted() {
            let Some(name) = &route.template else {
                continue;
            };
            let template = pass.template(&route.key.namespace, name).await;
            for hostname in &route.hostnames {
                pass.hostname(route, hostname, &template).await;
            }
        }
        pass.delete_the_rest(listed).await;
        // A delivery that went with its route (garbage-collected) is not remembered either.
        let Pass { keep, covered, .. } = pass;
        self.applied.retain(|id, _| keep.contains(id));
        covered
    }
}

impl Pass<'_> {
    async fn template(&mut self, namespace: &str, name: &str) -> Read {
        let id = (namespace.to_owned(), name.to_owned());
        if let Some(read) = self.templates.get(&id) {
            return read.clone();
        }
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), namespace);
        let read = match api.get_opt(name).await {
            Ok(config_map) => Some(template_of(namespace, name, config_map.as_ref())),
            Err(error) => {
                tracing::warn!(configmap = %format!("{namespace}/{name}"), %error,
                    "route generation: cannot read the template ConfigMap; the deliveries generated from it are left as they are");
                None
            }
        };
        self.templates.insert(id, read.clone());
        read
    }

    /// Says `note` on the route, once per generation of the route and `what`.
    async fn tell_once(
        &mut self,
        route: &Route,
        warning: bool,
        reason: &str,
        what: &str,
        note: String,
    ) {
        if self.told.first_time(route, &format!("{reason}/{what}")) {
            self.teller.tell(route, warning, reason, note).await;
        }
    }

    /// The delivery of `hostname` of `route`: not when a hand-written one or another route has
    /// the hostname, kept as it is when the template cannot be used, else applied.
    async fn hostname(&mut self, route: &Route, hostname: &str, template: &Read) {
        let id = (
            route.key.namespace.clone(),
            generated_name(&route.key, hostname),
        );
        let claimants = self.ctx.index.claimants(hostname);
        if let Some(hand) = claimants.iter().find(|c| !c.generated) {
            let note = format!(
                "hostname {hostname} is declared by HttpsDelivery {}/{}, written by hand, which wins: no delivery is generated for it (and {}/{} is deleted if it exists)",
                hand.namespace, hand.name, id.0, id.1
            );
            let what = format!("{hostname}/{}/{}", hand.namespace, hand.name);
            return self
                .tell_once(route, true, "HostnameAlreadyDelivered", &what, note)
                .await;
        }
        if let Some(first) = self.taken.get(hostname).filter(|k| *k != &route.key) {
            let note = format!(
                "hostname {hostname} is generated from {first} already: no second delivery is generated for it"
            );
            let what = format!("{hostname}/{first}");
            return self
                .tell_once(route, true, "HostnameAlreadyDelivered", &what, note)
                .await;
        }
        self.taken.insert(hostname.to_owned(), route.key.clone());
        self.keep.insert(id.clone());
        let template = match template {
            None => return,
            Some(Err(problem)) => {
                let note = problem.message().to_owned();
                return self
                    .tell_once(route, true, problem.reason(), &note, note.clone())
                    .await;
            }
            Some(Ok(template)) => template,
        };
        let spec = match template.spec_for(hostname) {
            Ok(spec) => spec,
            Err(problem) => {
                let note = problem.message().to_owned();
                return self
                    .tell_once(route, true, problem.reason(), &note, note.clone())
                    .await;
            }
        };
        let exists = claimants
            .iter()
            .any(|c| (&c.namespace, &c.name) == (&id.0, &id.1));
        let body = desired_object(route, hostname, &spec, template);
        self.apply(route, hostname, (&id, exists), &template.name, body)
            .await;
    }

    /// Applies `body` as `id`, unless exactly that was applied before and it still `exists`.
    async fn apply(
        &mut self,
        route: &Route,
        hostname: &str,
        (id, exists): (&Id, bool),
        template: &str,
        body: Value,
    ) {
        let digest: [u8; 32] = Sha256::digest(body.to_string()).into();
        if exists && self.applied.get(id) == Some(&digest) {
            self.covered.insert(hostname.to_owned());
            return;
        }
        let api: Api<HttpsDelivery> = Api::namespaced(self.ctx.client.clone(), &id.0);
        let params = PatchParams::apply(ROUTES_FIELD_MANAGER).force();
        let (namespace, name) = id;
        match api.patch(name, &params, &Patch::Apply(&body)).await {
            Ok(_) => {
                self.applied.insert(id.clone(), digest);
                self.covered.insert(hostname.to_owned());
                if !exists {
                    tracing::info!(route = %route.key, hostname, delivery = %format!("{namespace}/{name}"), "generated a delivery");
                    let note = format!(
                        "HttpsDelivery {namespace}/{name} generated for hostname {hostname} from ConfigMap {namespace}/{}",
                        template
                    );
                    self.tell_once(route, false, "DeliveryGenerated", hostname, note)
                        .await;
                }
            }
            Err(error) => {
                self.applied.remove(id);
                tracing::warn!(route = %route.key, hostname, delivery = %format!("{namespace}/{name}"), %error, "route generation: cannot apply the generated delivery");
                let note = format!(
                    "the API server refused HttpsDelivery {namespace}/{name} generated for hostname {hostname}: {error}"
                );
                // Once per kind of refusal, not per wording (a timeout says the time).
                let kind = match &error {
                    kube::Error::Api(status) => format!("HTTP {}", status.code),
                    _ => "unreachable".to_owned(),
                };
                let what = format!("{hostname}/{kind}");
                self.tell_once(route, true, "DeliveryRejected", &what, note)
                    .await;
            }
        }
    }

    /// Deletes every generated delivery that no annotated route wants any more: only where
    /// the routes of its kind are watched and listed (a route not seen yet, or of a kind not
    /// watched, may well want it), and never one whose route annotation was changed.
    async fn delete_the_rest(&mut self, listed: &super::Listed) {
        for (hostname, generated, from) in self.ctx.index.generated() {
            let id = (generated.namespace, generated.name);
            let known = match from {
                GeneratedFrom::Route(kind) => listed.get(&kind).is_some_and(|l| l.is_listed(&id.0)),
                GeneratedFrom::Unknown => false,
            };
            if self.keep.contains(&id) || !known {
                continue;
            }
            self.applied.remove(&id);
            let api: Api<HttpsDelivery> = Api::namespaced(self.ctx.client.clone(), &id.0);
            let delivery = format!("{}/{}", id.0, id.1);
            match api.delete(&id.1, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(%delivery, hostname, "deleted a generated delivery that no route wants any more")
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => {
                    tracing::warn!(%delivery, %error, "route generation: cannot delete a generated delivery")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::source::RouteKind;
    use super::*;

    fn config_map(spec: Option<&str>) -> ConfigMap {
        ConfigMap {
            data: spec.map(|s| [(TEMPLATE_KEY.to_string(), s.to_string())].into()),
            ..ConfigMap::default()
        }
    }

    const GOOD: &str = "
certificate: {platform: HttpLarge, targetCname: cs1.wpc.cdn.example}
edgeCname: {platform: HttpLarge, origin: shop-origin}
origin: {name: shop-origin, host: origin.shop.example, protocol: HttpsOnly, httpsEdgeProtocol: true}
";

    fn key(name: &str) -> RouteKey {
        RouteKey {
            kind: RouteKind::Ingress,
            namespace: "web".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_good_template_gives_the_hostname_to_the_spec_and_the_edge_cname() {
        let t = template_of("web", "cdn", Some(&config_map(Some(GOOD)))).expect("usable");
        let spec = t.spec_for("www.shop.example").expect("a spec");
        assert_eq!(spec.hostname, "www.shop.example");
        assert_eq!(
            spec.edge_cname.expect("edgeCname").hostname,
            "www.shop.example"
        );
    }

    #[test]
    fn bad_templates_say_which_configmap_and_what_is_wrong() {
        let problem =
            |cm: Option<ConfigMap>| template_of("web", "cdn", cm.as_ref()).expect_err("not usable");
        let missing = problem(None);
        assert_eq!(missing.reason(), "TemplateNotFound");
        assert!(
            missing.message().contains("ConfigMap web/cdn"),
            "{missing:?}"
        );
        for (text, says) in [
            (None, "no key \"spec\""),
            (Some("a: [b"), "is not YAML"),
            (Some("- a"), "not a mapping of spec fields but a list"),
            (Some("hostname: x.example"), "sets hostname"),
            (
                Some("certificate: {platform: Nope}"),
                "at certificate.platform",
            ),
        ] {
            let p = problem(Some(config_map(text)));
            assert_eq!(p.reason(), "TemplateInvalid", "{p:?}");
            assert!(p.message().starts_with("ConfigMap web/cdn: "), "{p:?}");
            assert!(p.message().contains(says), "{says}: {p:?}");
        }
    }

    #[test]
    fn generated_names_are_deterministic_dns_labels_and_distinct() {
        let name = generated_name(&key("shop"), "www.shop.example");
        assert!(name.starts_with("shop-www-shop-example-"), "{name}");
        assert_eq!(name, generated_name(&key("shop"), "www.shop.example"));
        assert_ne!(
            generated_name(&key("a"), "b-c.example"),
            generated_name(&key("a-b"), "c.example")
        );
        let mut http = key("shop");
        http.kind = RouteKind::HttpRoute;
        assert_ne!(name, generated_name(&http, "www.shop.example"));
        let long = generated_name(
            &key(&"r".repeat(200)),
            &format!("{}.example", "h".repeat(60)),
        );
        assert_eq!(long.len(), MAX_NAME, "{long}");
        for n in [&name, &long, &generated_name(&key("-"), "-")] {
            assert!(n.len() <= MAX_NAME, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(!n.starts_with('-') && !n.ends_with('-'), "{n}");
        }
    }
}
