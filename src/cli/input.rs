//! Reads a GitOps repository's manifests: HttpsDelivery objects and the Secrets they reference.

use crate::api::HttpsDelivery;
use crate::checks::secret::SecretContent;
use k8s_openapi::api::core::v1::Secret;
use kube::CustomResourceExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One delivery read from a file, with where it came from.
#[derive(Clone, Debug)]
pub struct LoadedDelivery {
    pub namespace: String,
    pub name: String,
    pub delivery: HttpsDelivery,
    pub origin: String,
}

/// Everything read from the paths given to `check`.
#[derive(Debug, Default)]
pub struct Manifests {
    /// Deliveries in file order (files sorted by path, documents in order).
    pub deliveries: Vec<LoadedDelivery>,
    /// Secrets by (namespace, name).
    pub secrets: HashMap<(String, String), SecretContent>,
    /// Documents of other kinds that were skipped.
    pub skipped: usize,
}

/// A problem that makes the input unusable: names the file, the document and what was wrong.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {problem}")]
pub struct InputError {
    pub location: String,
    pub problem: String,
}

fn err(location: impl Into<String>, problem: impl Into<String>) -> InputError {
    InputError {
        location: location.into(),
        problem: problem.into(),
    }
}

/// Expands directories (recursively) into their .yaml, .yml and .json files, sorted.
fn expand(paths: &[PathBuf], errors: &mut Vec<InputError>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let mut found = Vec::new();
                walk_dir(p, &mut found, errors);
                found.sort();
                if found.is_empty() {
                    errors.push(err(
                        p.display().to_string(),
                        "directory holds no .yaml, .yml or .json file",
                    ));
                }
                files.extend(found);
            }
            Ok(_) => files.push(p.clone()),
            Err(e) => errors.push(err(p.display().to_string(), format!("cannot read: {e}"))),
        }
    }
    files
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<InputError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(err(
                dir.display().to_string(),
                format!("cannot read directory: {e}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk_dir(&path, out, errors);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
}

/// Reads every path. Returns all input errors at once so a person can fix them in one go.
pub fn load(paths: &[PathBuf]) -> Result<Manifests, Vec<InputError>> {
    let mut loader = Loader {
        out: Manifests::default(),
        errors: Vec::new(),
        compiled: compiled_schema(),
        seen: HashMap::new(),
    };
    for file in expand(paths, &mut loader.errors) {
        loader.file(&file);
    }
    if loader.errors.is_empty() {
        Ok(loader.out)
    } else {
        Err(loader.errors)
    }
}

/// What has been read so far, and where each delivery was first defined.
struct Loader {
    out: Manifests,
    errors: Vec<InputError>,
    compiled: Option<kube::core::cel::CompiledSchema>,
    seen: HashMap<(String, String), String>,
}

impl Loader {
    fn file(&mut self, file: &Path) {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                let problem = format!("cannot read: {e}");
                self.errors.push(err(file.display().to_string(), problem));
                return;
            }
        };
        // The documents before a syntax error are read; the rest of the file cannot be trusted.
        let (documents, syntax_error) = split_documents(&text);
        for document in documents {
            self.document(file, &document);
        }
        if let Some(e) = syntax_error {
            self.errors.push(err(
                format!("{} (document {})", file.display(), e.document),
                format!(
                    "not valid YAML at line {}, column {}: {}",
                    e.line, e.column, e.message
                ),
            ));
        }
    }

    fn document(&mut self, file: &Path, document: &Document<'_>) {
        let location = format!("{} (document {})", file.display(), document.number);
        let node = match serde_saphyr::from_str::<Option<Node>>(document.text) {
            Ok(Some(node)) => node,
            // Empty and null documents, as `---` at the end of a file makes.
            Ok(None) => return,
            Err(e) => {
                let at = document.at(e.location());
                let problem = format!("not valid YAML{at}: {}", yaml_message(&e));
                self.errors.push(err(location, problem));
                return;
            }
        };
        let value = node.to_json();
        if value.is_null() {
            return;
        }
        let source = Source {
            node: &node,
            document,
        };
        let field = |name: &str| {
            value
                .get(name)
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        match (api_version.as_str(), kind.as_str()) {
            ("httpsdelivery.dev/v1alpha1", "HttpsDelivery") => {
                match read_delivery(value, &source, &location, self.compiled.as_ref()) {
                    Ok(d) => self.delivery(d),
                    Err(e) => self.errors.push(e),
                }
            }
            (v, "HttpsDelivery") if v.starts_with("httpsdelivery.dev/") => self.errors.push(err(
                location,
                format!("apiVersion {v} is not served; use httpsdelivery.dev/v1alpha1"),
            )),
            ("v1", "Secret") => match read_secret(value, &source, &location) {
                Ok((key, content)) => {
                    self.out.secrets.insert(key, content);
                }
                Err(e) => self.errors.push(e),
            },
            _ => self.out.skipped += 1,
        }
    }

    /// Keeps a delivery, unless the same namespace/name was defined before.
    fn delivery(&mut self, d: LoadedDelivery) {
        let key = (d.namespace.clone(), d.name.clone());
        if let Some(first) = self.seen.get(&key) {
            let problem = format!(
                "HttpsDelivery {}/{} is defined twice (first in {first})",
                key.0, key.1
            );
            self.errors.push(err(d.origin.clone(), problem));
        } else {
            self.seen.insert(key, d.origin.clone());
            self.out.deliveries.push(d);
        }
    }
}

/// One YAML document of a file, as the YAML parser delimits it.
struct Document<'a> {
    /// 1-based, counting empty documents: the number a person counts along the `---` lines.
    number: usize,
    /// Its text, from where the previous document ended (so with its directives and comments).
    text: &'a str,
    /// Where `text` starts in the file: line (1-based) and column (0-based, in characters).
    line: usize,
    column: usize,
}

impl Document<'_> {
    /// " at line L, column C" (both 1-based, in the file) for a location within `text`, or
    /// nothing when the location is unknown.
    fn at(&self, location: Option<serde_saphyr::Location>) -> String {
        let Some(location) = location.filter(|l| l.line() > 0) else {
            return String::new();
        };
        let (line, column) = (location.line() as usize, location.column() as usize);
        let column = if line == 1 {
            self.column + column
        } else {
            column
        };
        format!(" at line {}, column {column}", self.line + line - 1)
    }
}

/// A YAML syntax error: it ends the reading of its file.
struct SyntaxError {
    document: usize,
    line: usize,
    column: usize,
    message: String,
}

/// Splits a file into its YAML documents with the parser serde-saphyr uses, up to the first
/// syntax error. Empty documents are counted, so that numbers match the `---` lines.
fn split_documents(text: &str) -> (Vec<Document<'_>>, Option<SyntaxError>) {
    use serde_saphyr::granit_parser::{Event, Parser};
    let mut documents = Vec::new();
    // Where the next document's text starts: where the previous one ended.
    let (mut start, mut line, mut column) = (0, 1, 0);
    for event in Parser::new_from_str(text) {
        match event {
            Ok((Event::DocumentEnd, span)) => {
                let end = span.byte_range().map_or(text.len(), |r| r.end);
                let Some(document) = text.get(start..end) else {
                    // Not expected from a parser of this very text; refuse rather than guess.
                    let error = SyntaxError {
                        document: documents.len() + 1,
                        line: span.end.line(),
                        column: span.end.col() + 1,
                        message: "the parser gave no usable end for this document".into(),
                    };
                    return (documents, Some(error));
                };
                documents.push(Document {
                    number: documents.len() + 1,
                    text: document,
                    line,
                    column,
                });
                (start, line, column) = (end, span.end.line(), span.end.col());
            }
            Ok(_) => {}
            Err(e) => {
                // In the document after the last complete one, whether or not it has started.
                let error = SyntaxError {
                    document: documents.len() + 1,
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                    message: printable(&e.info()),
                };
                return (documents, Some(error));
            }
        }
    }
    (documents, None)
}

/// A serde-saphyr error's message for a person (not its developer hints about parser options),
/// without its location: the caller names that in the file.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter as _;
    printable(&serde_saphyr::UserMessageFormatter.format_message(e.without_snippet()))
}

/// Messages can quote the input: no control characters reach the terminal.
fn printable(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A YAML node and where it starts. Objects are read from the JSON the nodes convert to, as the
/// API server reads what kubectl sends; the nodes then give the line of the field an error names
/// by its path.
struct Node {
    at: serde_saphyr::Location,
    kind: NodeKind,
}

enum NodeKind {
    Scalar(serde_json::Value),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            NodeKind::Scalar(v) => v.clone(),
            NodeKind::Seq(items) => items.iter().map(Node::to_json).collect(),
            NodeKind::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// The deepest node along `path`: the field itself, or the object a missing field belongs in.
    fn find(&self, path: &serde_path_to_error::Path) -> &Node {
        use serde_path_to_error::Segment;
        let mut node = self;
        for segment in path.iter() {
            let next = match (segment, &node.kind) {
                (Segment::Map { key }, NodeKind::Map(entries)) => {
                    entries.iter().find(|(k, _)| k == key).map(|(_, n)| n)
                }
                (Segment::Seq { index }, NodeKind::Seq(items)) => items.get(*index),
                _ => None,
            };
            let Some(next) = next else { break };
            node = next;
        }
        node
    }
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<NodeKind>::deserialize(deserializer)?;
        Ok(Node {
            at: spanned.referenced,
            kind: spanned.value,
        })
    }
}

impl<'de> serde::Deserialize<'de> for NodeKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = NodeKind;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.into()))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<NodeKind, E> {
        use serde::de::IntoDeserializer;
        serde::Deserialize::deserialize(v.into_deserializer()).map(NodeKind::Scalar)
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<NodeKind, E> {
        use serde::de::IntoDeserializer;
        serde::Deserialize::deserialize(v.into_deserializer()).map(NodeKind::Scalar)
    }

    fn visit_f64<E>(self, v: f64) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.into()))
    }

    fn visit_str<E>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.into()))
    }

    fn visit_unit<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(serde_json::Value::Null))
    }

    fn visit_none<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(serde_json::Value::Null))
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
        serde::Deserialize::deserialize(d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(NodeKind::Seq(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value()?));
        }
        Ok(NodeKind::Map(entries))
    }
}

/// A document's nodes and where the document is in its file.
struct Source<'a> {
    node: &'a Node,
    document: &'a Document<'a>,
}

impl Source<'_> {
    /// " at line L, column C" of the field at `path`, or of the object it is missing from.
    fn at(&self, path: &serde_path_to_error::Path) -> String {
        self.document.at(Some(self.node.find(path).at))
    }
}

fn compiled_schema() -> Option<kube::core::cel::CompiledSchema> {
    let crd = HttpsDelivery::crd();
    let schema = crd
        .spec
        .versions
        .first()?
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()?;
    let json = serde_json::to_value(schema).ok()?;
    Some(kube::core::cel::compile_schema(&json))
}

fn read_delivery(
    value: serde_json::Value,
    source: &Source<'_>,
    location: &str,
    compiled: Option<&kube::core::cel::CompiledSchema>,
) -> Result<LoadedDelivery, InputError> {
    let delivery: HttpsDelivery = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let at = source.at(e.path());
        err(location, format!("{path}{at}: {}", e.into_inner()))
    })?;
    let name = delivery.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(err(location, "HttpsDelivery has no metadata.name"));
    }
    let namespace = delivery
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let location = format!("{location}, HttpsDelivery {namespace}/{name}");
    // The same CEL rules the API server enforces, so `check` rejects what `kubectl apply` would.
    if let Some(compiled) = compiled
        && let Err(errors) = kube::core::cel::validate_compiled(compiled, &value, None)
    {
        let problems: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(err(location, problems.join("; ")));
    }
    delivery
        .spec
        .settings()
        .map_err(|e| err(&location, e.to_string()))?;
    Ok(LoadedDelivery {
        namespace,
        name,
        delivery,
        origin: location,
    })
}

fn read_secret(
    value: serde_json::Value,
    source: &Source<'_>,
    location: &str,
) -> Result<((String, String), SecretContent), InputError> {
    // Never echo the document itself in errors: it holds a private key.
    let secret: Secret = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = source.at(e.path());
        let inner = e.into_inner().to_string();
        let short: String = inner
            .split(':')
            .next()
            .unwrap_or_default()
            .chars()
            .take(120)
            .collect();
        err(location, format!("Secret {path}{at}: {short}"))
    })?;
    let name = secret.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(err(location, "Secret has no metadata.name"));
    }
    let namespace = secret
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    Ok(((namespace, name), SecretContent::from_secret(&secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELIVERY: &str = "\
apiVersion: httpsdelivery.dev/v1alpha1
kind: HttpsDelivery
metadata:
  name: www
  namespace: shop
spec:
  hostname: www.shop.example
  certificate:
    platform: HttpLarge
    targetCname: cs1.wpc.cdn.example
  edgeCname:
    hostname: www.shop.example
    platform: HttpLarge
    origin: shop-origin
  origin:
    name: shop-origin
    host: origin.shop.example
    port: 8443
    protocol: HttpsOnly
    httpsEdgeProtocol: true
";

    /// Loads `text` as one file; the errors as the strings a person sees.
    fn load_text(text: &str) -> Result<Manifests, Vec<String>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("x.yaml");
        std::fs::write(&file, text).expect("write");
        load(&[file]).map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn a_valid_file_loads_with_empty_documents_skipped() {
        let text = format!(
            "---\n# only a comment\n---\n{DELIVERY}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n"
        );
        let m = load_text(&text).expect("loads");
        assert_eq!(m.deliveries.len(), 1);
        assert_eq!(m.deliveries[0].name, "www");
        assert_eq!(m.deliveries[0].delivery.spec.origin.port, 8443);
        assert_eq!(
            m.skipped, 1,
            "the ConfigMap; empty documents are not counted"
        );
    }

    #[test]
    fn a_syntax_error_names_its_document_line_and_column_and_ends_the_file() {
        // Line 6 (document 2) has the error; document 3 would be a second error if it were read.
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\nkind: HttpsDelivery\nspec: {hostname: [unclosed}\n---\napiVersion: httpsdelivery.dev/v9\nkind: HttpsDelivery\n";
        let errors = load_text(text).expect_err("a syntax error");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("x.yaml (document 2): not valid YAML at line 6, column "),
            "{errors:?}"
        );
    }

    #[test]
    fn a_syntax_error_after_empty_documents_counts_them() {
        let text = "---\n---\n# three\n---\nkey: value\n  bad: indentation\n";
        let errors = load_text(text).expect_err("a syntax error");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("(document 3): not valid YAML at line 6, column "),
            "{errors:?}"
        );
    }

    #[test]
    fn a_type_error_names_its_document_field_path_line_and_column() {
        let bad = DELIVERY.replace("port: 8443", "port: eighty");
        // The delivery starts on line 4: its port is on line 21, its value in column 11.
        let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{bad}");
        let errors = load_text(&text).expect_err("a type error");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(
                "x.yaml (document 2): spec.origin.port at line 22, column 11: invalid type: string \"eighty\", expected u16"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn directives_and_end_markers_keep_documents_and_lines_apart() {
        let bad = DELIVERY.replace("port: 8443", "port: eighty");
        // Document 2 starts on line 7 (`%YAML`), its content on line 9: the port is on line 26.
        let text = format!(
            "%YAML 1.2\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n... # end\n%YAML 1.2\n---\n{bad}"
        );
        let errors = load_text(&text).expect_err("a type error");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .contains("(document 2): spec.origin.port at line 26, column 11: invalid type"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_missing_field_names_the_object_it_is_missing_from() {
        let bad = DELIVERY.replace("    protocol: HttpsOnly\n", "");
        let errors = load_text(&bad).expect_err("a missing field");
        assert!(
            errors[0].contains(
                "(document 1): spec.origin at line 16, column 5: missing field `protocol`"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn a_bad_secret_names_the_line_but_not_the_content() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\ndata:\n  tls.key: \"-----BEGIN PRIVATE KEY----- not base64\"\n";
        let errors = load_text(text).expect_err("bad base64");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("(document 1): Secret data.tls.key at line 6, column 12"),
            "{errors:?}"
        );
        assert!(!errors[0].contains("PRIVATE KEY"), "{errors:?}");
    }

    #[test]
    fn a_duplicate_key_is_refused_with_its_line() {
        let text = format!(
            "{DELIVERY}---\n{}",
            DELIVERY.replace("  name: www\n", "  name: www\n  name: api\n")
        );
        let errors = load_text(&text).expect_err("a duplicate key");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(
                "(document 2): not valid YAML at line 26, column 3: duplicate mapping key `name`"
            ),
            "{errors:?}"
        );
    }
}
