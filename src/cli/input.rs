//! Reads a GitOps repository's manifests: HttpsDelivery objects and the Secrets they reference.
//!
//! It refuses what `kubectl apply` with strict field validation would make the API server refuse
//! (unknown fields, the CRD schema's bounds, object names, the CRD's CEL rules, the bounds of the
//! check settings), naming the file, the document, the field path and its line. Files found by
//! walking a directory that are not manifests (Helm charts, editor settings) are skipped and
//! listed; a file named on the command line must be a manifest.
// No input may make `check` panic: the loader itself may not unwrap, expect or panic.
#![cfg_attr(
    not(test),
    deny(clippy::panic, clippy::unwrap_used, clippy::expect_used)
)]

use crate::api::account::{CdnAccount, CdnAccountSpec, ClusterCdnAccount};
use crate::api::{AccountKey, AccountKind, HttpsDelivery};
use crate::checks::secret::SecretContent;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResourceExt;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// The largest file `check` reads unless told otherwise: far more than any manifest.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 8 * 1024 * 1024;

/// The deepest YAML nesting read. A manifest is a few levels deep; deeper input is refused
/// while parsing, before it costs time or stack.
pub const MAX_DEPTH: usize = 64;

/// The most YAML documents read from one file: far more than any repository puts in one, far
/// fewer than a `---` storm of a few megabytes holds.
pub const MAX_DOCUMENTS: usize = 10_000;

/// Limits of the reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Files larger than this many bytes are refused without being read.
    pub max_file_size: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

/// One delivery read from a file, with where it came from.
#[derive(Clone, Debug)]
pub struct LoadedDelivery {
    pub namespace: String,
    pub name: String,
    pub delivery: HttpsDelivery,
    pub origin: String,
}

/// Something read and left aside: where it is and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// `FILE:DOCUMENT` for a document, the path for a file or directory.
    pub location: String,
    pub what: String,
}

/// Everything read from the paths given to `check`.
#[derive(Debug, Default)]
pub struct Manifests {
    /// Deliveries in file order (files sorted by path, documents in order).
    pub deliveries: Vec<LoadedDelivery>,
    /// Secrets by (namespace, name).
    pub secrets: HashMap<(String, String), SecretContent>,
    /// CdnAccounts (namespace, name) and ClusterCdnAccounts ("", name), provider mode.
    pub accounts: HashMap<AccountKey, CdnAccountSpec>,
    /// The text keys of Secrets that are not kubernetes.io/tls (an account's credentials),
    /// by (namespace, name). Never printed.
    pub credentials: HashMap<(String, String), BTreeMap<String, String>>,
    /// Documents of other kinds (or no kind at all) that were skipped, in file order. Empty
    /// documents are not in it.
    pub skipped: Vec<Skipped>,
    /// Files and directories met while walking a directory that hold no manifests.
    pub skipped_files: Vec<Skipped>,
}

impl Manifests {
    /// What was skipped, one line per sort, for a person to read on stderr.
    pub fn notices(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.skipped.is_empty() {
            let n = self.skipped.len();
            lines.push(format!(
                "skipped {n} {} not HttpsDelivery or Secret: {}",
                if n == 1 {
                    "document that is"
                } else {
                    "documents that are"
                },
                listing(&self.skipped)
            ));
        }
        if !self.skipped_files.is_empty() {
            let n = self.skipped_files.len();
            lines.push(format!(
                "skipped {n} {} no manifests: {}",
                if n == 1 {
                    "path that holds"
                } else {
                    "paths that hold"
                },
                listing(&self.skipped_files)
            ));
        }
        lines
    }
}

/// The first items of a list on one line, and how many more there are.
fn listing(items: &[Skipped]) -> String {
    const SHOWN: usize = 20;
    let mut parts: Vec<String> = items
        .iter()
        .take(SHOWN)
        .map(|s| format!("{} ({})", s.location, s.what))
        .collect();
    if items.len() > SHOWN {
        parts.push(format!("and {} more", items.len() - SHOWN));
    }
    parts.join(", ")
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

/// A file to read, and whether a person named it (then it must be a manifest) or a directory
/// walk found it.
struct Candidate {
    path: PathBuf,
    named: bool,
}

fn has_manifest_extension(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// What a file that is not a regular file is, for the message that refuses it.
fn file_kind(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
    }
    if file_type.is_dir() {
        return "a directory";
    }
    "not a regular file"
}

fn not_regular(file_type: std::fs::FileType) -> String {
    format!(
        "is {}, not a regular file: refused without reading it",
        file_kind(file_type)
    )
}

/// Walks the paths given to `check`: directories recursively (following symbolic links, each
/// directory once), files once each, in path order within each directory given.
struct Walk<'a> {
    candidates: Vec<Candidate>,
    /// The directories entered and the files taken, by canonical path, with the path they were
    /// first met under.
    seen_dirs: HashMap<PathBuf, PathBuf>,
    seen_files: HashMap<PathBuf, PathBuf>,
    errors: &'a mut Vec<InputError>,
    skipped: &'a mut Vec<Skipped>,
}

impl Walk<'_> {
    fn path(&mut self, p: &Path) {
        // Follows symbolic links: a link to a directory is walked, a link to a FIFO refused.
        let meta = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) => {
                self.errors
                    .push(err(p.display().to_string(), format!("cannot read: {e}")));
                return;
            }
        };
        if meta.is_dir() {
            if p.join("Chart.yaml").is_file() {
                self.errors.push(err(
                    p.display().to_string(),
                    "is a Helm chart, not manifests: check the output of `helm template` instead",
                ));
                return;
            }
            let mut found = Vec::new();
            // A directory given twice (or inside another one given) is read once.
            let entered = self.enter(p, &mut found);
            found.sort_by(|a, b| a.path.cmp(&b.path));
            if entered && found.is_empty() {
                self.errors.push(err(
                    p.display().to_string(),
                    "directory holds no .yaml, .yml or .json file",
                ));
            }
            self.candidates.extend(found);
        } else if meta.is_file() {
            self.file(p, true, &mut Vec::new());
        } else {
            self.errors
                .push(err(p.display().to_string(), not_regular(meta.file_type())));
        }
    }

    /// Takes a regular file unless it was taken before under another name.
    fn file(&mut self, p: &Path, named: bool, found: &mut Vec<Candidate>) {
        let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        if let Some(first) = self.seen_files.get(&canonical) {
            if !named {
                self.skipped.push(Skipped {
                    location: p.display().to_string(),
                    what: format!("the same file as {}", first.display()),
                });
            }
            return;
        }
        self.seen_files.insert(canonical, p.to_path_buf());
        let candidate = Candidate {
            path: p.to_path_buf(),
            named,
        };
        if named {
            self.candidates.push(candidate);
        } else {
            found.push(candidate);
        }
    }

    /// Reads a directory once, by its canonical path, so that a symbolic link loop ends. False
    /// when it was not read (read before, or unreadable).
    fn enter(&mut self, dir: &Path, found: &mut Vec<Candidate>) -> bool {
        match std::fs::canonicalize(dir) {
            Ok(canonical) => {
                if let Some(first) = self.seen_dirs.get(&canonical) {
                    self.skipped.push(Skipped {
                        location: dir.display().to_string(),
                        what: format!(
                            "the same directory as {}: a symbolic link loop or a second link",
                            first.display()
                        ),
                    });
                    return false;
                }
                self.seen_dirs.insert(canonical, dir.to_path_buf());
            }
            Err(e) => {
                let problem = format!("cannot read directory: {e}");
                self.errors.push(err(dir.display().to_string(), problem));
                return false;
            }
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.errors.push(err(
                    dir.display().to_string(),
                    format!("cannot read directory: {e}"),
                ));
                return false;
            }
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => paths.push(entry.path()),
                Err(e) => self.errors.push(err(
                    dir.display().to_string(),
                    format!("cannot read directory: {e}"),
                )),
            }
        }
        paths.sort();
        for path in paths {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                // A dangling symbolic link: an error if it claims to be a manifest.
                Err(e) => {
                    if has_manifest_extension(&path) {
                        self.errors
                            .push(err(path.display().to_string(), format!("cannot read: {e}")));
                    }
                    continue;
                }
            };
            if meta.is_dir() {
                if path.join("Chart.yaml").is_file() {
                    self.skipped.push(Skipped {
                        location: format!("{}/", path.display()),
                        what: "a Helm chart: check the output of `helm template`".into(),
                    });
                } else {
                    self.enter(&path, found);
                }
            } else if !has_manifest_extension(&path) {
                continue;
            } else if meta.is_file() {
                self.file(&path, false, found);
            } else {
                // Never opened: opening a FIFO would wait for a writer.
                self.errors.push(err(
                    path.display().to_string(),
                    not_regular(meta.file_type()),
                ));
            }
        }
        true
    }
}

/// Reads every path with the default limits. Returns all input errors at once so a person can
/// fix them in one go.
pub fn load(paths: &[PathBuf]) -> Result<Manifests, Vec<InputError>> {
    load_with(paths, &LoadOptions::default())
}

/// Reads every path. Returns all input errors at once so a person can fix them in one go.
pub fn load_with(paths: &[PathBuf], options: &LoadOptions) -> Result<Manifests, Vec<InputError>> {
    let mut loader = Loader::new(options);
    let mut walk = Walk {
        candidates: Vec::new(),
        seen_dirs: HashMap::new(),
        seen_files: HashMap::new(),
        errors: &mut loader.errors,
        skipped: &mut loader.out.skipped_files,
    };
    for p in paths {
        walk.path(p);
    }
    let candidates = walk.candidates;
    for candidate in candidates {
        loader.file(&candidate);
    }
    loader.finish()
}

/// What has been read so far, and where each object was first defined.
struct Loader<'a> {
    options: &'a LoadOptions,
    out: Manifests,
    errors: Vec<InputError>,
    cel: Option<kube::core::cel::CompiledSchema>,
    deliveries_seen: HashMap<(String, String), String>,
    secrets_seen: HashMap<(String, String), String>,
}

/// A document read as YAML: its nodes, or why it could not be read.
type Parsed = Result<Option<Node>, serde_saphyr::Error>;

impl<'a> Loader<'a> {
    fn new(options: &'a LoadOptions) -> Self {
        Loader {
            options,
            out: Manifests::default(),
            errors: Vec::new(),
            cel: compiled_schema(),
            deliveries_seen: HashMap::new(),
            secrets_seen: HashMap::new(),
        }
    }

    fn finish(self) -> Result<Manifests, Vec<InputError>> {
        if self.errors.is_empty() {
            Ok(self.out)
        } else {
            Err(self.errors)
        }
    }

    fn file(&mut self, candidate: &Candidate) {
        let file = &candidate.path;
        match read_text(file, self.options.max_file_size) {
            Ok(text) => self.text(file, &text, candidate.named),
            Err(problem) => self.errors.push(err(file.display().to_string(), problem)),
        }
    }

    /// Reads the documents of one file.
    fn text(&mut self, file: &Path, text: &str, named: bool) {
        // The documents before a syntax error are read; the rest of the file cannot be trusted.
        let (documents, syntax_error) = split_documents(text);
        let parsed: Vec<Parsed> = documents
            .iter()
            .map(|d| serde_saphyr::from_str_with_options::<Option<Node>>(d.text, yaml_options()))
            .collect();
        let objects = parsed
            .iter()
            .filter(|p| matches!(p, Ok(Some(node)) if node.object_kind().is_some()))
            .count();
        let broken = syntax_error.is_some() || parsed.iter().any(Result::is_err);
        if objects == 0 && !named {
            let empty = parsed.iter().all(|p| match p {
                Ok(None) => true,
                Ok(Some(node)) => matches!(node.kind, NodeKind::Scalar(Value::Null)),
                Err(_) => false,
            });
            if let Some(what) = not_a_manifest(text, broken, empty) {
                if !what.is_empty() {
                    self.out.skipped_files.push(Skipped {
                        location: file.display().to_string(),
                        what: what.into(),
                    });
                }
                return;
            }
        }
        let errors_before = self.errors.len();
        for (document, parsed) in documents.iter().zip(parsed) {
            self.document(file, document, parsed);
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
        // A file a person named must be a manifest.
        if objects == 0 && named && self.errors.len() == errors_before {
            self.errors.push(err(
                file.display().to_string(),
                "holds no Kubernetes object: no document has both apiVersion and kind",
            ));
        }
    }

    fn document(&mut self, file: &Path, document: &Document<'_>, parsed: Parsed) {
        let location = format!("{} (document {})", file.display(), document.number);
        let node = match parsed {
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
        if matches!(node.kind, NodeKind::Scalar(Value::Null)) {
            return;
        }
        let source = Source {
            node: &node,
            document,
        };
        let skipped = |what: String| Skipped {
            location: format!("{}:{}", file.display(), document.number),
            what,
        };
        let Some((api_version, kind)) = node.object_kind() else {
            let (api_version, kind) = (node.string("apiVersion"), node.string("kind"));
            if matches!(kind, Some("HttpsDelivery" | "Secret"))
                || api_version.is_some_and(|v| v.starts_with("httpsdelivery.dev/"))
            {
                let missing = if kind.is_none() { "kind" } else { "apiVersion" };
                let problem = format!(
                    "{missing} is missing (an HttpsDelivery has apiVersion httpsdelivery.dev/v1alpha1, a Secret v1)"
                );
                self.errors.push(err(location, problem));
            } else {
                self.out.skipped.push(skipped(
                    "not a Kubernetes object: no apiVersion and kind".into(),
                ));
            }
            return;
        };
        match (api_version, kind) {
            ("httpsdelivery.dev/v1alpha1", "HttpsDelivery") => {
                match read_delivery(&source, &location, self.cel.as_ref()) {
                    Ok(d) => self.delivery(d),
                    Err(e) => self.errors.extend(e),
                }
            }
            (v, "HttpsDelivery") if v.starts_with("httpsdelivery.dev/") => self.errors.push(err(
                location,
                format!(
                    "apiVersion {} is not served; use httpsdelivery.dev/v1alpha1",
                    printable(v)
                ),
            )),
            ("v1", "Secret") => match read_secret(&source, &location) {
                Ok((key, content, credentials)) => {
                    if let Some(credentials) = credentials {
                        self.out.credentials.insert(key.clone(), credentials);
                    }
                    self.secret(key, content, location)
                }
                Err(e) => self.errors.extend(e),
            },
            ("httpsdelivery.dev/v1alpha1", "CdnAccount" | "ClusterCdnAccount") => {
                match read_account(&source, &location, kind) {
                    Ok((key, spec)) => self.account(key, spec, kind, location),
                    Err(e) => self.errors.extend(e),
                }
            }
            (v, k) => self
                .out
                .skipped
                .push(skipped(printable(&format!("{v} {k}")))),
        }
    }

    /// Keeps an account, unless the same one was defined before.
    fn account(&mut self, key: AccountKey, spec: CdnAccountSpec, kind: &str, location: String) {
        match self.out.accounts.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let (_, namespace, name) = e.key();
                let problem = format!("{kind} {namespace}/{name} is defined twice");
                self.errors.push(err(location, problem));
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(spec);
            }
        }
    }

    /// Keeps a delivery, unless the same namespace/name was defined before.
    fn delivery(&mut self, d: LoadedDelivery) {
        let key = (d.namespace.clone(), d.name.clone());
        if let Some(first) = self.deliveries_seen.get(&key) {
            let problem = format!(
                "HttpsDelivery {}/{} is defined twice (first in {first})",
                key.0, key.1
            );
            self.errors.push(err(d.origin.clone(), problem));
        } else {
            self.deliveries_seen.insert(key, d.origin.clone());
            self.out.deliveries.push(d);
        }
    }

    /// Keeps a Secret, unless the same namespace/name was defined before: which of the two a
    /// delivery would be checked with would depend on file order.
    fn secret(&mut self, key: (String, String), content: SecretContent, location: String) {
        if let Some(first) = self.secrets_seen.get(&key) {
            let problem = format!(
                "Secret {}/{} is defined twice (first in {first})",
                key.0, key.1
            );
            self.errors.push(err(location, problem));
        } else {
            self.secrets_seen.insert(key.clone(), location);
            self.out.secrets.insert(key, content);
        }
    }
}

/// Why a file found by walking a directory is no manifest, or None when it may be one (then its
/// errors are reported). An empty reason: skip it without a word (an empty file).
fn not_a_manifest(text: &str, broken: bool, empty: bool) -> Option<&'static str> {
    if broken && text.contains("{{") {
        return Some("a template ({{ }}), not YAML");
    }
    if text.contains("apiVersion") && text.contains("kind") {
        return None;
    }
    Some(if broken {
        "not YAML, and no apiVersion and kind"
    } else if empty {
        ""
    } else {
        "no apiVersion and kind"
    })
}

/// A file's text, refused without reading it when it is not a regular file or is too large.
fn read_text(path: &Path, max: u64) -> Result<String, String> {
    let too_large = |size: u64| {
        format!("is {size} bytes, more than the limit of {max} bytes per file: refused")
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    // It may have changed since it was looked at: check what was opened.
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// The YAML reading of one document: YAML 1.1's octal numbers as kubectl reads them, and the
/// nesting limit.
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.legacy_octal_numbers = true;
    let mut budget = options.budget.take().unwrap_or_default();
    budget.max_depth = MAX_DEPTH;
    options.budget = Some(budget);
    options
}

fn depth_message() -> String {
    format!("nested more than {MAX_DEPTH} levels deep: refused (no manifest is)")
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
            self.column.saturating_add(column)
        } else {
            column
        };
        format!(
            " at line {}, column {column}",
            self.line.saturating_add(line - 1)
        )
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
/// syntax error. Empty documents are counted, so that numbers match the `---` lines. Nesting
/// deeper than [`MAX_DEPTH`] and more than [`MAX_DOCUMENTS`] documents are syntax errors, found
/// in time linear in the input.
fn split_documents(text: &str) -> (Vec<Document<'_>>, Option<SyntaxError>) {
    use serde_saphyr::granit_parser::{ErrorKind, Event, Options, Parser};
    let mut options = Options::default();
    options.flow_nesting_limit = MAX_DEPTH;
    options.block_nesting_limit = MAX_DEPTH;
    let mut documents = Vec::new();
    // Where the next document's text starts: where the previous one ended.
    let (mut start, mut line, mut column) = (0, 1, 0);
    for event in Parser::new_from_str_with_options(text, options) {
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
                if documents.len() == MAX_DOCUMENTS {
                    let error = SyntaxError {
                        document: documents.len() + 1,
                        line,
                        column: column + 1,
                        message: format!(
                            "more than {MAX_DOCUMENTS} documents in one file: refused"
                        ),
                    };
                    return (documents, Some(error));
                }
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
                let message = if matches!(e.kind(), ErrorKind::RecursionLimitExceeded) {
                    depth_message()
                } else {
                    printable(&e.info())
                };
                // In the document after the last complete one, whether or not it has started.
                let error = SyntaxError {
                    document: documents.len() + 1,
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                    message,
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
    use serde_saphyr::budget::BudgetBreach;
    if let serde_saphyr::Error::Budget {
        breach: BudgetBreach::Depth { .. },
        ..
    } = e.without_snippet()
    {
        return depth_message();
    }
    printable(&serde_saphyr::UserMessageFormatter.format_message(e.without_snippet()))
}

/// Messages can quote the input: no control characters reach the terminal.
fn printable(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A step of a field path: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A field path as the API server writes it: `spec.origin.port`, `status.conditions[0].type`,
/// `data[tls.key]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FieldPath(Vec<Step>);

impl FieldPath {
    fn key(&self, key: &str) -> FieldPath {
        let mut steps = self.0.clone();
        steps.push(Step::Key(key.to_string()));
        FieldPath(steps)
    }

    fn index(&self, index: usize) -> FieldPath {
        let mut steps = self.0.clone();
        steps.push(Step::Index(index));
        FieldPath(steps)
    }

    fn from_serde(path: &serde_path_to_error::Path) -> FieldPath {
        use serde_path_to_error::Segment;
        FieldPath(
            path.iter()
                .filter_map(|segment| match segment {
                    Segment::Map { key } => Some(Step::Key(key.clone())),
                    Segment::Seq { index } => Some(Step::Index(*index)),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Parses what kube's CEL validation names (`spec.origin.sniHostname`, `spec.x[2]`).
    fn parse(text: &str) -> FieldPath {
        let mut steps = Vec::new();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
            if !key.is_empty() {
                steps.push(Step::Key(key.to_string()));
            }
            while let Some((index, tail)) = rest.split_once(']') {
                match index.parse() {
                    Ok(i) => steps.push(Step::Index(i)),
                    Err(_) => steps.push(Step::Key(index.to_string())),
                }
                rest = tail.strip_prefix('[').unwrap_or(tail);
            }
        }
        FieldPath(steps)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(the document)");
        }
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Index(index) => write!(f, "[{index}]")?,
                Step::Key(key)
                    if !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Step::Key(key) => write!(f, "[{}]", printable(key))?,
            }
        }
        Ok(())
    }
}

/// A YAML node and where it starts. Objects are read from the JSON the nodes convert to, as the
/// API server reads what kubectl sends; the nodes then give the line of the field an error names
/// by its path.
///
/// The nodes are already what the API server sees: a mapping entry whose value is null is
/// dropped (the API server prunes it, or keeps it as the absence of a nullable field), and a
/// float with an integral value is an integer (kubectl sends `443.0` as `443`).
struct Node {
    at: serde_saphyr::Location,
    kind: NodeKind,
}

enum NodeKind {
    Scalar(Value),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry: its key, where the key is, and its value.
struct Entry {
    key: String,
    at: serde_saphyr::Location,
    value: Node,
}

impl Node {
    fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Scalar(v) => v.clone(),
            NodeKind::Seq(items) => items.iter().map(Node::to_json).collect(),
            NodeKind::Map(entries) => entries
                .iter()
                .map(|e| (e.key.clone(), e.value.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    fn entries(&self) -> &[Entry] {
        match &self.kind {
            NodeKind::Map(entries) => entries,
            _ => &[],
        }
    }

    fn get(&self, key: &str) -> Option<&Node> {
        self.entries()
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// The string at `key` of a mapping.
    fn string(&self, key: &str) -> Option<&str> {
        match self.get(key).map(|n| &n.kind) {
            Some(NodeKind::Scalar(Value::String(s))) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// apiVersion and kind, when this is a Kubernetes object.
    fn object_kind(&self) -> Option<(&str, &str)> {
        Some((self.string("apiVersion")?, self.string("kind")?))
    }

    /// The deepest node along `path`, and where it is: the field itself (its key when
    /// `key` is asked for), or the object a missing field belongs in.
    fn find(&self, path: &FieldPath, key: bool) -> serde_saphyr::Location {
        let mut node = self;
        let mut at = self.at;
        for (i, step) in path.0.iter().enumerate() {
            let next = match (step, &node.kind) {
                (Step::Key(k), NodeKind::Map(entries)) => {
                    entries.iter().find(|e| &e.key == k).map(|e| {
                        (
                            &e.value,
                            if key && i + 1 == path.0.len() {
                                e.at
                            } else {
                                e.value.at
                            },
                        )
                    })
                }
                (Step::Index(index), NodeKind::Seq(items)) => items.get(*index).map(|n| (n, n.at)),
                _ => None,
            };
            let Some((next, next_at)) = next else { break };
            (node, at) = (next, next_at);
        }
        at
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
        // As kubectl's JSON has it: 443.0 is 443. Beyond 2^53 a float is no exact integer.
        const EXACT: f64 = 9_007_199_254_740_992.0;
        if v.fract() == 0.0 && v.abs() <= EXACT {
            return Ok(NodeKind::Scalar((v as i64).into()));
        }
        Ok(NodeKind::Scalar(v.into()))
    }

    fn visit_str<E>(self, v: &str) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(v.into()))
    }

    fn visit_unit<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(Value::Null))
    }

    fn visit_none<E>(self) -> Result<NodeKind, E> {
        Ok(NodeKind::Scalar(Value::Null))
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
        while let Some(key) = map.next_key::<serde_saphyr::Spanned<String>>()? {
            let value: Node = map.next_value()?;
            if matches!(value.kind, NodeKind::Scalar(Value::Null)) {
                continue;
            }
            entries.push(Entry {
                key: key.value,
                at: key.referenced,
                value,
            });
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
    fn at(&self, path: &FieldPath) -> String {
        self.document.at(Some(self.node.find(path, false)))
    }

    /// " at line L, column C" of the key of the field at `path`.
    fn key_at(&self, path: &FieldPath) -> String {
        self.document.at(Some(self.node.find(path, true)))
    }

    /// "PATH at line L, column C: MESSAGE".
    fn problem(&self, problem: &Problem) -> String {
        let path = &problem.path;
        let at = if problem.key {
            self.key_at(path)
        } else {
            self.at(path)
        };
        format!("{path}{at}: {}", problem.message)
    }
}

/// A problem with a field: its path, whether it is about the field's key (a label key) rather
/// than its value, and what is wrong.
struct Problem {
    path: FieldPath,
    key: bool,
    message: String,
}

impl Problem {
    fn value(path: &FieldPath, message: String) -> Problem {
        Problem {
            path: path.clone(),
            key: false,
            message,
        }
    }

    fn key(path: &FieldPath, message: String) -> Problem {
        Problem {
            path: path.clone(),
            key: true,
            message,
        }
    }
}

/// The schemas objects are checked against: the CRD's own (from the Rust types, as `crds/` is),
/// and the API server's built-in ones for a Secret and for every object's metadata.
struct Schemas {
    delivery: Value,
    secret: Value,
    /// What `$ref`s name: ObjectMeta and the types it holds.
    definitions: serde_json::Map<String, Value>,
}

static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| {
    let mut generator = schemars::SchemaGenerator::default();
    let secret = generator.subschema_for::<Secret>().to_value();
    let metadata = generator.subschema_for::<ObjectMeta>().to_value();
    let definitions = generator.take_definitions(true);
    let mut delivery = delivery_schema().unwrap_or_else(|| serde_json::json!({"type": "object"}));
    if let Some(properties) = delivery
        .as_object_mut()
        .map(|o| {
            o.entry("properties")
                .or_insert_with(|| serde_json::json!({}))
        })
        .and_then(Value::as_object_mut)
    {
        properties.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
        properties.insert("kind".into(), serde_json::json!({"type": "string"}));
        properties.insert("metadata".into(), metadata);
    }
    Schemas {
        delivery,
        secret,
        definitions,
    }
});

fn delivery_schema() -> Option<Value> {
    let crd = HttpsDelivery::crd();
    let schema = crd
        .spec
        .versions
        .first()?
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()?;
    serde_json::to_value(schema).ok()
}

fn compiled_schema() -> Option<kube::core::cel::CompiledSchema> {
    Some(kube::core::cel::compile_schema(&delivery_schema()?))
}

impl Schemas {
    /// The schema itself, or what its `$ref` names; None for "anything".
    fn resolve<'s>(&'s self, mut schema: &'s Value) -> Option<&'s Value> {
        for _ in 0..8 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                return Some(schema);
            };
            schema = self.definitions.get(reference.strip_prefix("#/$defs/")?)?;
        }
        None
    }

    /// The schema of the entry `key` of an object: its property, or the schema of every
    /// additional property. Err(()) when the object has a fixed set of fields without `key`.
    fn field<'s>(&'s self, schema: &'s Value, key: &str) -> Result<Option<&'s Value>, ()> {
        if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            return Ok(None);
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(field) = properties.and_then(|p| p.get(key)) {
            return Ok(Some(field));
        }
        match schema.get("additionalProperties") {
            Some(additional @ Value::Object(_)) => Ok(Some(additional)),
            Some(Value::Bool(false)) => Err(()),
            Some(_) => Ok(None),
            // An object schema that lists no field at all holds anything (FieldsV1, RawExtension).
            None if properties.is_none_or(|p| p.is_empty()) => Ok(None),
            None => Err(()),
        }
    }

    /// Fields the schema does not have, as strict field validation reports them.
    fn unknown_fields(
        &self,
        node: &Node,
        schema: &Value,
        path: &FieldPath,
        out: &mut Vec<FieldPath>,
    ) {
        let Some(schema) = self.resolve(schema) else {
            return;
        };
        match &node.kind {
            NodeKind::Map(entries) => {
                for entry in entries {
                    let path = path.key(&entry.key);
                    match self.field(schema, &entry.key) {
                        Ok(Some(field)) => self.unknown_fields(&entry.value, field, &path, out),
                        Ok(None) => {}
                        Err(()) => out.push(path),
                    }
                }
            }
            NodeKind::Seq(items) => {
                if let Some(item) = schema.get("items") {
                    for (i, node) in items.iter().enumerate() {
                        self.unknown_fields(node, item, &path.index(i), out);
                    }
                }
            }
            NodeKind::Scalar(_) => {}
        }
    }

    /// The schema's bounds (lengths, ranges, formats, enums): what the API server checks beyond
    /// the types. A value of the wrong type is left to the type check. `quote` says whether the
    /// messages may show the value (not for a Secret's).
    fn bounds(
        &self,
        node: &Node,
        schema: &Value,
        path: &FieldPath,
        quote: bool,
        out: &mut Vec<Problem>,
    ) {
        let Some(schema) = self.resolve(schema) else {
            return;
        };
        match &node.kind {
            NodeKind::Scalar(value @ Value::String(s)) => {
                string_bounds(value, s, schema, path, quote, out);
            }
            NodeKind::Scalar(value @ Value::Number(n)) => {
                number_bounds(value, n, schema, path, quote, out);
            }
            NodeKind::Scalar(_) => {}
            NodeKind::Seq(items) => self.seq_bounds(items, schema, path, quote, out),
            NodeKind::Map(entries) => self.map_bounds(entries, schema, path, quote, out),
        }
    }

    /// A sequence's `maxItems` and `minItems`, then the bounds of each of its items.
    fn seq_bounds(
        &self,
        items: &[Node],
        schema: &Value,
        path: &FieldPath,
        quote: bool,
        out: &mut Vec<Problem>,
    ) {
        let length = items.len() as u64;
        if let Some(max) = schema_count(schema, "maxItems").filter(|max| length > *max) {
            out.push(Problem::value(
                path,
                format!("Too many: {length}: must have at most {max} items"),
            ));
        }
        if let Some(min) = schema_count(schema, "minItems").filter(|min| length < *min) {
            out.push(Problem::value(
                path,
                format!("Invalid value: {length} items: must have at least {min}"),
            ));
        }
        if let Some(item) = schema.get("items") {
            for (i, node) in items.iter().enumerate() {
                self.bounds(node, item, &path.index(i), quote, out);
            }
        }
    }

    /// A map's `maxProperties`, then the bounds of each of its fields the schema has.
    fn map_bounds(
        &self,
        entries: &[Entry],
        schema: &Value,
        path: &FieldPath,
        quote: bool,
        out: &mut Vec<Problem>,
    ) {
        let length = entries.len() as u64;
        if let Some(max) = schema_count(schema, "maxProperties").filter(|max| length > *max) {
            out.push(Problem::value(
                path,
                format!("Too many: {length}: must have at most {max} entries"),
            ));
        }
        for entry in entries {
            if let Ok(Some(field)) = self.field(schema, &entry.key) {
                self.bounds(&entry.value, field, &path.key(&entry.key), quote, out);
            }
        }
    }
}

/// The schema's count `key` (a `maxLength`, `minItems`...), when it has one.
fn schema_count(schema: &Value, key: &str) -> Option<u64> {
    schema.get(key).and_then(Value::as_u64)
}

/// A value as a bounds message shows it: as JSON, or "(value not shown)" unless `quote`.
fn shown(value: &Value, quote: bool) -> String {
    if quote {
        printable(&value.to_string())
    } else {
        "(value not shown)".into()
    }
}

/// A string's `maxLength`, `minLength`, `enum` and `date-time` format.
fn string_bounds(
    value: &Value,
    s: &str,
    schema: &Value,
    path: &FieldPath,
    quote: bool,
    out: &mut Vec<Problem>,
) {
    let mut problem = |message: String| out.push(Problem::value(path, message));
    let length = s.chars().count() as u64;
    if let Some(max) = schema_count(schema, "maxLength").filter(|max| length > *max) {
        problem(format!("Too long: may not be more than {max} characters"));
    }
    if let Some(min) = schema_count(schema, "minLength").filter(|min| length < *min) {
        problem(format!(
            "Invalid value: {}: must be at least {min} character{} long",
            shown(value, quote),
            if min == 1 { "" } else { "s" }
        ));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let allowed: Vec<String> = allowed.iter().map(Value::to_string).collect();
        problem(format!(
            "Unsupported value: {}: supported values: {}",
            shown(value, quote),
            allowed.join(", ")
        ));
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time") && !is_date_time(s) {
        problem(format!(
            "Invalid value: {}: must be an RFC 3339 date-time such as 2026-11-01T10:00:00Z",
            shown(value, quote)
        ));
    }
}

/// A number's `minimum` and `maximum`, each exclusive when the schema says so.
fn number_bounds(
    value: &Value,
    n: &serde_json::Number,
    schema: &Value,
    path: &FieldPath,
    quote: bool,
    out: &mut Vec<Problem>,
) {
    let Some(v) = n.as_f64() else { return };
    let number = |key: &str| schema.get(key).and_then(Value::as_f64);
    let mut problem = |message: String| out.push(Problem::value(path, message));
    if let Some(min) = number("minimum") {
        let exclusive = schema.get("exclusiveMinimum") == Some(&Value::Bool(true));
        if v < min || (exclusive && v == min) {
            let op = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            problem(format!(
                "Invalid value: {}: should be {op} {min}",
                shown(value, quote)
            ));
        }
    }
    if let Some(max) = number("maximum") {
        let exclusive = schema.get("exclusiveMaximum") == Some(&Value::Bool(true));
        if v > max || (exclusive && v == max) {
            let op = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            problem(format!(
                "Invalid value: {}: should be {op} {max}",
                shown(value, quote)
            ));
        }
    }
}

/// A date-time as the API server's schema validation accepts it (kube-openapi's
/// `strfmt.IsDateTime`): `full-date "T" hh:mm:ss[.frac](Z|±hh:mm)`, case-insensitive.
fn is_date_time(text: &str) -> bool {
    let lower = text.to_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    text.len() >= 4 && is_full_date(date) && is_full_time(time)
}

/// `YYYY-MM-DD`, a real day.
fn is_full_date(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .and_then(|_| text.get(r)?.parse::<i16>().ok())
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    match (digits(0..4), digits(5..7), digits(8..10)) {
        (Some(y), Some(m), Some(d)) => {
            let (Ok(m), Ok(d)) = (i8::try_from(m), i8::try_from(d)) else {
                return false;
            };
            jiff::civil::Date::new(y, m, d).is_ok()
        }
        _ => false,
    }
}

/// `hh:mm:ss`, an optional fraction after any one character, then `z` or `±hh:mm`.
fn is_full_time(text: &str) -> bool {
    let two = |s: &str, max: u8| {
        s.len() == 2
            && s.bytes().all(|c| c.is_ascii_digit())
            && s.parse::<u8>().is_ok_and(|v| v <= max)
    };
    let zone = |s: &str| {
        s == "z"
            || (s.len() == 6
                && matches!(s.as_bytes()[0], b'+' | b'-')
                && s.as_bytes()[3] == b':'
                && s.is_char_boundary(1)
                && s.is_char_boundary(3)
                && s.is_char_boundary(4)
                && s[1..3].bytes().all(|c| c.is_ascii_digit())
                && s[4..6].bytes().all(|c| c.is_ascii_digit()))
    };
    let (Some(h), Some(m), Some(s)) = (text.get(0..2), text.get(3..5), text.get(6..8)) else {
        return false;
    };
    if !(two(h, 23)
        && text.as_bytes()[2] == b':'
        && two(m, 59)
        && text.as_bytes()[5] == b':'
        && two(s, 59))
    {
        return false;
    }
    let rest = &text[8..];
    if zone(rest) {
        return true;
    }
    let mut chars = rest.chars();
    match chars.next() {
        Some(c) if c != '\n' => {
            let fraction = chars.as_str();
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && zone(&fraction[digits..])
        }
        _ => false,
    }
}

/// A lower-case RFC 1123 subdomain, as object names are.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label_text)
}

/// A lower-case RFC 1123 label, as namespace names are.
pub(crate) fn is_dns_label(name: &str) -> bool {
    name.len() <= 63 && is_dns_label_text(name)
}

fn is_dns_label_text(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`: the name part of label keys and annotations,
/// and label values.
fn is_label_name(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A label key or annotation key: `[prefix/]name`, prefix a DNS subdomain.
fn qualified_name_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.split('/').collect::<Vec<_>>()[..] {
        [name] => (None, name),
        [prefix, name] => (Some(prefix), name),
        _ => {
            return Some(
                "must be a name with an optional DNS subdomain prefix and '/', such as example.com/my-name",
            );
        }
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || !is_dns_subdomain(prefix))
    {
        return Some("its prefix must be a lower-case DNS subdomain, such as example.com");
    }
    if name.len() > 63 {
        return Some("its name part must be no more than 63 characters");
    }
    if !is_label_name(name) {
        return Some(
            "its name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        );
    }
    None
}

const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', must start and end with an alphanumeric character, and be no more than 253 characters (e.g. 'example.com')";
const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', must start and end with an alphanumeric character, and be no more than 63 characters (e.g. 'shop')";

/// What the API server checks of every object's metadata: the name (`what` is the kind, for the
/// message), the namespace, labels, annotations and finalizers.
fn metadata_problems(node: &Node, what: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    let metadata = FieldPath::default().key("metadata");
    let Some(meta) = node.get("metadata") else {
        out.push(Problem::value(
            &metadata,
            format!("Required value: {what} has no metadata.name"),
        ));
        return out;
    };
    name_problems(meta, &metadata, what, &mut out);
    namespace_problems(meta, &metadata, &mut out);
    label_problems(meta, &metadata, &mut out);
    annotation_problems(meta, &metadata, &mut out);
    finalizer_problems(meta, &metadata, &mut out);
    out
}

/// `metadata.name`: present (not generateName), a DNS subdomain.
fn name_problems(meta: &Node, metadata: &FieldPath, what: &str, out: &mut Vec<Problem>) {
    match meta.get("name").map(|n| &n.kind) {
        Some(NodeKind::Scalar(Value::String(name))) if !name.is_empty() => {
            if !is_dns_subdomain(name) {
                out.push(Problem::value(
                    &metadata.key("name"),
                    format!(
                        "Invalid value: {}: {SUBDOMAIN_RULE}",
                        printable(&Value::from(name.as_str()).to_string())
                    ),
                ));
            }
        }
        // Another type is the type check's to report.
        Some(NodeKind::Scalar(Value::String(_))) | None => {
            let hint = if meta.get("generateName").is_some() {
                " (generateName cannot be used with kubectl apply)"
            } else {
                ""
            };
            out.push(Problem::value(
                &metadata.key("name"),
                format!("Required value: {what} has no metadata.name{hint}"),
            ));
        }
        Some(_) => {}
    }
}

/// `metadata.namespace`, when set: a DNS label.
fn namespace_problems(meta: &Node, metadata: &FieldPath, out: &mut Vec<Problem>) {
    if let Some(NodeKind::Scalar(Value::String(namespace))) = meta.get("namespace").map(|n| &n.kind)
        && !namespace.is_empty()
        && !is_dns_label(namespace)
    {
        out.push(Problem::value(
            &metadata.key("namespace"),
            format!(
                "Invalid value: {}: {LABEL_RULE}",
                printable(&Value::from(namespace.as_str()).to_string())
            ),
        ));
    }
}

/// `metadata.labels`: each key a qualified name, each non-empty value a label value.
fn label_problems(meta: &Node, metadata: &FieldPath, out: &mut Vec<Problem>) {
    let Some(labels) = meta.get("labels") else {
        return;
    };
    for entry in labels.entries() {
        let path = metadata.key("labels").key(&entry.key);
        if let Some(problem) = qualified_name_problem(&entry.key) {
            out.push(Problem::key(
                &path,
                format!("Invalid label key {:?}: {problem}", printable(&entry.key)),
            ));
        }
        if let NodeKind::Scalar(Value::String(value)) = &entry.value.kind
            && !value.is_empty()
            && (value.len() > 63 || !is_label_name(value))
        {
            out.push(Problem::value(
                &path,
                format!(
                    "Invalid label value {:?}: must be no more than 63 characters, of alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character",
                    printable(value)
                ),
            ));
        }
    }
}

/// `metadata.annotations`: each key a qualified name (any case), all of them at most 256 KiB.
fn annotation_problems(meta: &Node, metadata: &FieldPath, out: &mut Vec<Problem>) {
    let Some(annotations) = meta.get("annotations") else {
        return;
    };
    let mut size = 0usize;
    for entry in annotations.entries() {
        if let Some(problem) = qualified_name_problem(&entry.key.to_lowercase()) {
            out.push(Problem::key(
                &metadata.key("annotations").key(&entry.key),
                format!(
                    "Invalid annotation key {:?}: {problem}",
                    printable(&entry.key)
                ),
            ));
        }
        size += entry.key.len();
        if let NodeKind::Scalar(Value::String(value)) = &entry.value.kind {
            size += value.len();
        }
    }
    const MAX_ANNOTATIONS: usize = 256 * 1024;
    if size > MAX_ANNOTATIONS {
        out.push(Problem::value(
            &metadata.key("annotations"),
            format!("Too long: the annotations may not be more than {MAX_ANNOTATIONS} bytes in all ({size})"),
        ));
    }
}

/// `metadata.finalizers`: each a qualified name (a null one counts as empty).
fn finalizer_problems(meta: &Node, metadata: &FieldPath, out: &mut Vec<Problem>) {
    let Some(NodeKind::Seq(finalizers)) = meta.get("finalizers").map(|n| &n.kind) else {
        return;
    };
    for (i, finalizer) in finalizers.iter().enumerate() {
        let name = match &finalizer.kind {
            NodeKind::Scalar(Value::String(s)) => s.as_str(),
            NodeKind::Scalar(Value::Null) => "",
            _ => continue,
        };
        if let Some(problem) = qualified_name_problem(name) {
            out.push(Problem::value(
                &metadata.key("finalizers").index(i),
                format!("Invalid finalizer {:?}: {problem}", printable(name)),
            ));
        }
    }
}

/// The name and namespace of an object whose metadata passed [`metadata_problems`].
fn name_and_namespace(meta: &ObjectMeta) -> (String, String) {
    (
        meta.name.clone().unwrap_or_default(),
        meta.namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string()),
    )
}

/// Fields of the document that `schema` does not have, as strict field validation reports them:
/// "PATH at line L, column C: unknown field".
fn unknown_field_messages(source: &Source<'_>, schema: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    SCHEMAS.unknown_fields(source.node, schema, &FieldPath::default(), &mut unknown);
    unknown
        .iter()
        .map(|path| format!("{path}{}: unknown field", source.key_at(path)))
        .collect()
}

/// Checks one HttpsDelivery as the API server would, in its order: strict field validation
/// (unknown fields), the schema and the metadata, the types, the CEL rules; then the check
/// settings. Each stage reports all it finds; a failed stage ends the checking.
fn read_delivery(
    source: &Source<'_>,
    location: &str,
    compiled: Option<&kube::core::cel::CompiledSchema>,
) -> Result<LoadedDelivery, Vec<InputError>> {
    let node = source.node;
    let errors = |problems: Vec<String>| -> Vec<InputError> {
        problems.into_iter().map(|p| err(location, p)).collect()
    };

    let unknown = unknown_field_messages(source, &SCHEMAS.delivery);
    if !unknown.is_empty() {
        return Err(errors(unknown));
    }

    let problems = delivery_schema_problems(node);
    if !problems.is_empty() {
        return Err(errors(problems.iter().map(|p| source.problem(p)).collect()));
    }

    let mut value = node.to_json();
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    let delivery: HttpsDelivery = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = FieldPath::from_serde(e.path());
        let at = source.at(&path);
        let shown = e.path().to_string();
        vec![err(location, format!("{shown}{at}: {}", e.into_inner()))]
    })?;
    let (name, namespace) = name_and_namespace(&delivery.metadata);
    let location = format!("{location}, HttpsDelivery {namespace}/{name}");
    // The same CEL rules the API server enforces, so `check` rejects what `kubectl apply` would.
    if let Some(compiled) = compiled
        && let Err(failed) = kube::core::cel::validate_compiled(compiled, &value, None)
    {
        return Err(cel_errors(&failed, source, &location));
    }
    delivery
        .spec
        .settings()
        .map_err(|e| vec![err(&location, settings_problem(e.to_string(), source))])?;
    Ok(LoadedDelivery {
        namespace,
        name,
        delivery,
        origin: location,
    })
}

/// The schema's bounds of an HttpsDelivery's fields but its status (which the API server drops
/// from an object it creates, after checking its fields), then its metadata's problems.
fn delivery_schema_problems(node: &Node) -> Vec<Problem> {
    let schemas = &*SCHEMAS;
    let mut problems = Vec::new();
    for entry in node.entries().iter().filter(|e| e.key != "status") {
        if let Ok(Some(field)) = schemas.field(&schemas.delivery, &entry.key) {
            let path = FieldPath::default().key(&entry.key);
            schemas.bounds(&entry.value, field, &path, true, &mut problems);
        }
    }
    problems.extend(metadata_problems(node, "HttpsDelivery"));
    problems
}

/// The CEL rules' failures, each with the line of its field when it names one.
fn cel_errors(
    failed: &[kube::core::cel::ValidationError],
    source: &Source<'_>,
    location: &str,
) -> Vec<InputError> {
    failed
        .iter()
        .map(|e| {
            let path = FieldPath::parse(&e.field_path);
            let at = if path.0.is_empty() {
                String::new()
            } else {
                source.at(&path)
            };
            err(
                location,
                format!("{}{at}: {}", e.field_path, printable(&e.message)),
            )
        })
        .collect()
}

/// A check settings error: "spec.checks.timeout: ..." gets the line of that field.
fn settings_problem(text: String, source: &Source<'_>) -> String {
    match text.split_once(": ") {
        Some((path, rest)) if path.starts_with("spec.") => {
            format!("{path}{}: {rest}", source.at(&FieldPath::parse(path)))
        }
        _ => text,
    }
}

/// Checks one Secret as the API server would. Never echoes the document's values in errors:
/// they hold a private key.
/// A CdnAccount or ClusterCdnAccount, checked against its CRD's schema and rules as the API
/// server would.
fn read_account(
    source: &Source<'_>,
    location: &str,
    kind: &str,
) -> Result<(AccountKey, CdnAccountSpec), Vec<InputError>> {
    let mut value = source.node.to_json();
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    let (crd, account_kind) = match kind {
        "CdnAccount" => (CdnAccount::crd(), AccountKind::CdnAccount),
        _ => (ClusterCdnAccount::crd(), AccountKind::ClusterCdnAccount),
    };
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_default();
    if let Err(failed) = kube::core::cel::Validator::new().validate(&schema, &value, None) {
        return Err(failed
            .iter()
            .map(|e| err(location, format!("{kind}: {e}")))
            .collect());
    }
    let bad = |e: serde_path_to_error::Error<serde_json::Error>| {
        let path = e.path().to_string();
        vec![err(location, format!("{kind} {path}: {}", e.into_inner()))]
    };
    let (metadata, spec) = if account_kind == AccountKind::CdnAccount {
        let a: CdnAccount = serde_path_to_error::deserialize(&value).map_err(bad)?;
        (a.metadata, a.spec)
    } else {
        let a: ClusterCdnAccount = serde_path_to_error::deserialize(&value).map_err(bad)?;
        (a.metadata, a.spec.account)
    };
    let (name, namespace) = name_and_namespace(&metadata);
    let namespace = match account_kind {
        AccountKind::CdnAccount => namespace,
        AccountKind::ClusterCdnAccount => String::new(),
    };
    Ok(((account_kind, namespace, name), spec))
}

/// A Secret: its certificate content, and the text of its keys when it is not a
/// kubernetes.io/tls Secret (an account's credentials).
type ReadSecret = (
    (String, String),
    SecretContent,
    Option<BTreeMap<String, String>>,
);

fn read_secret(source: &Source<'_>, location: &str) -> Result<ReadSecret, Vec<InputError>> {
    let node = source.node;
    let errors = |problems: Vec<String>| -> Vec<InputError> {
        problems
            .into_iter()
            .map(|p| err(location, format!("Secret {p}")))
            .collect()
    };

    let unknown = unknown_field_messages(source, &SCHEMAS.secret);
    if !unknown.is_empty() {
        return Err(errors(unknown));
    }

    let problems = secret_schema_problems(node);
    if !problems.is_empty() {
        return Err(errors(problems.iter().map(|p| source.problem(p)).collect()));
    }

    let value = node.to_json();
    let secret: Secret = serde_path_to_error::deserialize(&value)
        .map_err(|e| errors(vec![secret_type_problem(e, source)]))?;
    let (name, namespace) = name_and_namespace(&secret.metadata);
    if let Some(missing) = missing_tls_keys(&secret) {
        return Err(errors(vec![format!(
            "{namespace}/{name}{}: {missing}: Required value: a kubernetes.io/tls Secret holds tls.crt and tls.key",
            source.at(&FieldPath::default().key("type"))
        )]));
    }
    let size = secret_size(&secret);
    const MAX_SECRET_SIZE: usize = 1024 * 1024;
    if size > MAX_SECRET_SIZE {
        return Err(errors(vec![format!(
            "{namespace}/{name}: data: Too long: may not be more than {MAX_SECRET_SIZE} bytes ({size})"
        )]));
    }
    let credentials = (secret.type_.as_deref() != Some(crate::checks::secret::TLS_TYPE))
        .then(|| crate::provider::credentials_of(&secret));
    Ok((
        (namespace, name),
        SecretContent::from_secret(&secret),
        credentials,
    ))
}

/// The schema's bounds of a Secret (values not shown), its metadata's problems, and its data
/// keys' problems.
fn secret_schema_problems(node: &Node) -> Vec<Problem> {
    let schemas = &*SCHEMAS;
    let mut problems = Vec::new();
    schemas.bounds(
        node,
        &schemas.secret,
        &FieldPath::default(),
        false,
        &mut problems,
    );
    problems.extend(metadata_problems(node, "Secret"));
    for field in ["data", "stringData"] {
        for entry in node.get(field).map(Node::entries).unwrap_or_default() {
            let key = &entry.key;
            if let Some(problem) = secret_key_problem(key) {
                let path = FieldPath::default().key(field).key(key);
                problems.push(Problem::key(
                    &path,
                    format!("Invalid key {:?}: {problem}", printable(key)),
                ));
            }
        }
    }
    problems
}

/// A key of a Secret's `data` or `stringData`: 1 to 253 of `[-._a-zA-Z0-9]`, not `.` nor `..*`.
fn secret_key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() || key.len() > 253 {
        Some("must be 1 to 253 characters")
    } else if !key
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        Some("must consist of alphanumeric characters, '-', '_' or '.'")
    } else if key == "." || key == ".." || key.starts_with("..") {
        Some("must not be '.' or '..', nor start with '..'")
    } else {
        None
    }
}

/// A Secret's type error, without the value: the path, its line, and the error's first part
/// (at most 120 characters).
fn secret_type_problem(
    e: serde_path_to_error::Error<serde_json::Error>,
    source: &Source<'_>,
) -> String {
    let path = FieldPath::from_serde(e.path());
    let shown = e.path().to_string();
    let at = source.at(&path);
    let inner = e.into_inner().to_string();
    let short: String = inner
        .split(':')
        .next()
        .unwrap_or_default()
        .chars()
        .take(120)
        .collect();
    format!("{shown}{at}: {}", printable(&short))
}

/// The keys a kubernetes.io/tls Secret lacks of tls.crt and tls.key, as "data[tls.crt] and
/// data[tls.key]"; None for another type or when it has both.
fn missing_tls_keys(secret: &Secret) -> Option<String> {
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return None;
    }
    let has = |key: &str| {
        secret.data.as_ref().is_some_and(|d| d.contains_key(key))
            || secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(key))
    };
    let missing: Vec<String> = ["tls.crt", "tls.key"]
        .into_iter()
        .filter(|k| !has(k))
        .map(|k| format!("data[{k}]"))
        .collect();
    (!missing.is_empty()).then(|| missing.join(" and "))
}

/// The bytes of a Secret's data and stringData values, in all.
fn secret_size(secret: &Secret) -> usize {
    secret
        .data
        .iter()
        .flatten()
        .map(|(_, v)| v.0.len())
        .chain(secret.string_data.iter().flatten().map(|(_, v)| v.len()))
        .sum()
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
        assert_eq!(
            m.deliveries[0]
                .delivery
                .spec
                .origin
                .as_ref()
                .map(|o| o.port),
            Some(8443)
        );
        assert_eq!(
            m.skipped.len(),
            1,
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

    /// The problems of a text read as one file a person named.
    fn problems(text: &str) -> Vec<String> {
        load_text(text).err().unwrap_or_default()
    }

    /// Asserts that `text` is refused with exactly one problem holding every one of `needles`.
    fn refused(text: &str, needles: &[&str]) {
        let problems = problems(text);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        for needle in needles {
            assert!(problems[0].contains(needle), "{needle:?} in {problems:#?}");
        }
    }

    #[test]
    fn an_unknown_field_is_refused_with_its_path_and_line_as_strict_validation_does() {
        // The key's own line and column, also when its value is a mapping on the next lines.
        refused(
            &DELIVERY.replace("    port: 8443\n", "    port: 8443\n    prot: HttpsOnly\n"),
            &["x.yaml (document 1): spec.origin.prot at line 19, column 5: unknown field"],
        );
        refused(
            &DELIVERY.replace("spec:\n", "spec:\n  check:\n    timeout: 5s\n"),
            &["(document 1): spec.check at line 7, column 3: unknown field"],
        );
        refused(
            &format!("{DELIVERY}  checks: {{timout: 5s}}\n"),
            &["spec.checks.timout at line 21, column 12: unknown field"],
        );
        refused(
            &DELIVERY.replace("  name: www\n", "  name: www\n  label: {app: shop}\n"),
            &["metadata.label at line 5, column 3: unknown field"],
        );
        refused(
            &format!("{DELIVERY}specs: {{}}\n"),
            &["specs at line 21, column 1: unknown field"],
        );
        // The API server drops a created object's status, but strict validation still reads it.
        refused(
            &format!("{DELIVERY}status:\n  conditions:\n  - {{type: Ready, stauts: \"True\"}}\n"),
            &["status.conditions[0].stauts at line 23, column 19: unknown field"],
        );
        let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: shop}\ntype: kubernetes.io/tls\nstringData: {tls.crt: a, tls.key: b}\ndatas: {}\n";
        refused(secret, &["Secret datas at line 6, column 1: unknown field"]);
        // Every unknown field of the document at once.
        let two = DELIVERY
            .replace("    port: 8443\n", "    port: 8443\n    prot: x\n")
            .replace(
                "  hostname: www.shop.example\n  certificate:\n",
                "  hostname: www.shop.example\n  hostnames: []\n  certificate:\n",
            );
        assert_eq!(problems(&two).len(), 2, "{:#?}", problems(&two));
    }

    #[test]
    fn names_namespaces_labels_and_annotations_are_checked_as_the_api_server_does() {
        refused(
            &DELIVERY.replace("  name: www\n", "  name: WWW\n"),
            &[
                "metadata.name at line 4, column 9: Invalid value: \"WWW\": a lowercase RFC 1123 subdomain",
            ],
        );
        let long = format!("  name: {}\n", "a".repeat(254));
        refused(
            &DELIVERY.replace("  name: www\n", &long),
            &["metadata.name", "253"],
        );
        refused(
            &DELIVERY.replace("  namespace: shop\n", "  namespace: shop.example\n"),
            &[
                "metadata.namespace at line 5, column 14: Invalid value: \"shop.example\": a lowercase RFC 1123 label",
            ],
        );
        refused(
            &DELIVERY.replace("  name: www\n", "  generateName: www-\n"),
            &[
                "HttpsDelivery has no metadata.name (generateName cannot be used with kubectl apply)",
            ],
        );
        refused(
            &DELIVERY.replace("  name: www\n", "  name: www\n  labels: {app: \"-shop\"}\n"),
            &["metadata.labels.app at line 5, column 17: Invalid label value \"-shop\""],
        );
        refused(
            &DELIVERY.replace(
                "  name: www\n",
                "  name: www\n  annotations: {\"Example.com/x/y\": z}\n",
            ),
            &[
                "metadata.annotations[Example.com/x/y]",
                "Invalid annotation key",
            ],
        );
        let huge = format!(
            "  name: www\n  annotations: {{a: \"{}\"}}\n",
            "x".repeat(256 * 1024)
        );
        refused(
            &DELIVERY.replace("  name: www\n", &huge),
            &["metadata.annotations", "262144 bytes"],
        );
        // What the API server accepts.
        let good = DELIVERY.replace(
            "  name: www\n",
            "  name: www.v2\n  labels: {app.kubernetes.io/name: shop, empty: \"\"}\n  annotations: {Example.com/Note: anything at all}\n  finalizers: [example.com/cleanup]\n  creationTimestamp: null\n",
        );
        let m = load_text(&good).expect("loads");
        assert_eq!(m.deliveries[0].name, "www.v2");
    }

    #[test]
    fn the_bounds_of_the_crd_schema_are_checked() {
        let long = format!(
            "{}.example",
            "a".repeat(62) + "." + &"b".repeat(62) + "." + &"c".repeat(62) + "." + &"d".repeat(57)
        );
        assert_eq!(long.len(), 254);
        refused(
            &DELIVERY.replace(
                "  hostname: www.shop.example\n  certificate",
                &format!("  hostname: {long}\n  certificate"),
            ),
            &["spec.hostname at line 7, column 13: Too long: may not be more than 253 characters"],
        );
        refused(
            &DELIVERY.replace("port: 8443", "port: 0"),
            &[
                "spec.origin.port at line 18, column 11: Invalid value: 0: should be greater than or equal to 1",
            ],
        );
        refused(
            &DELIVERY.replace("port: 8443", "port: 65536"),
            &["spec.origin.port", "65536"],
        );
        refused(
            &DELIVERY.replace("port: 8443", "port: 443.5"),
            &["spec.origin.port", "443.5"],
        );
        refused(
            &DELIVERY.replace("    origin: shop-origin\n", "    origin: \"\"\n"),
            &[
                "spec.edgeCname.origin at line 14, column 13: Invalid value: \"\": must be at least 1 character long",
            ],
        );
        for bad in [
            "yesterday",
            "2026-11-01",
            "2026-11-01T10:00:00",
            "2026-11-01 10:00:00Z",
            "2026-02-30T10:00:00Z",
        ] {
            refused(
                &DELIVERY.replace(
                    "    origin: shop-origin\n",
                    &format!("    origin: shop-origin\n    modifiedAt: \"{bad}\"\n"),
                ),
                &[
                    "spec.edgeCname.modifiedAt at line 15, column 17",
                    "must be an RFC 3339 date-time",
                ],
            );
        }
    }

    #[test]
    fn nulls_floats_octals_and_status_read_as_the_api_server_reads_them() {
        // A null is an absent field (for every field, nullable or pruned); 443.0 is 443, 0443
        // is octal as in YAML 1.1; the status of a created object is dropped, whatever it holds.
        let text = format!(
            "{}  checks: null\nstatus:\n  conditions: 5\n",
            DELIVERY.replace("port: 8443", "port: 8443.0").replace(
                "    httpsEdgeProtocol: true\n",
                "    httpsEdgeProtocol: true\n    sniHostname: null\n"
            )
        );
        let m = load_text(&text).expect("loads");
        let spec = &m.deliveries[0].delivery.spec;
        assert_eq!(
            (
                spec.origin.as_ref().map(|o| o.port),
                spec.origin.as_ref().map(|o| &o.sni_hostname),
                &spec.checks
            ),
            (Some(8443), Some(&None), &None)
        );
        let m = load_text(&DELIVERY.replace("port: 8443", "port: 0443")).expect("loads");
        assert_eq!(
            m.deliveries[0]
                .delivery
                .spec
                .origin
                .as_ref()
                .map(|o| o.port),
            Some(0o443)
        );
        // A required field that is null is missing.
        refused(
            &DELIVERY.replace("    origin: shop-origin\n", "    origin: ~\n"),
            &["spec.edgeCname at line 12, column 5: missing field `origin`"],
        );
    }

    #[test]
    fn secrets_are_checked_as_the_api_server_does_and_a_duplicate_is_refused() {
        let secret = |name: &str, body: &str| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: shop}}\ntype: kubernetes.io/tls\n{body}"
            )
        };
        let good = secret("s", "stringData: {tls.crt: a, tls.key: b}\n");
        let m = load_text(&format!("{good}---\n{DELIVERY}")).expect("loads");
        assert_eq!(m.secrets.len(), 1);
        refused(
            &secret(
                "s",
                "stringData: {tls.crt: \"-----BEGIN PRIVATE KEY-----\"}\n",
            ),
            &["Secret shop/s at line 4, column 7: data[tls.key]: Required value"],
        );
        assert!(
            !problems(&secret(
                "s",
                "stringData: {tls.crt: \"-----BEGIN PRIVATE KEY-----\"}\n"
            ))[0]
                .contains("PRIVATE")
        );
        refused(
            &secret("S", "stringData: {tls.crt: a, tls.key: b}\n"),
            &["Secret metadata.name", "\"S\""],
        );
        refused(
            &secret(
                "s",
                "stringData: {tls.crt: a, tls.key: b, \"tls crt\": c}\n",
            ),
            &["Secret stringData[tls crt] at line 5, column 38: Invalid key \"tls crt\""],
        );
        let twice = format!("{good}---\n{}", good.replace("tls.key: b", "tls.key: c"));
        refused(
            &twice,
            &[
                "x.yaml (document 2): Secret shop/s is defined twice (first in ",
                "x.yaml (document 1))",
            ],
        );
    }

    #[test]
    fn other_kinds_and_documents_without_kind_are_listed_in_one_line_each() {
        let text = format!(
            "{DELIVERY}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\nreplicas: 3\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\n"
        );
        let m = load_text(&text).expect("loads");
        let notices = m.notices();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(
            notices[0].starts_with("skipped 3 documents that are not HttpsDelivery or Secret: "),
            "{notices:?}"
        );
        for part in [
            "x.yaml:2 (v1 ConfigMap)",
            "x.yaml:3 (not a Kubernetes object",
            "x.yaml:4 (apps/v1 Deployment)",
        ] {
            assert!(notices[0].contains(part), "{part} in {notices:?}");
        }
        // A document that means to be a delivery but says so only halfway is an error.
        refused(
            &format!("{DELIVERY}---\nkind: HttpsDelivery\nmetadata: {{name: x}}\n"),
            &["(document 2): apiVersion is missing"],
        );
        // A file named on the command line must hold an object.
        refused("replicas: 3\n", &["x.yaml: holds no Kubernetes object"]);
        refused("", &["x.yaml: holds no Kubernetes object"]);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_at_once() {
        let deep = [
            "[".repeat(100_000),
            "{a: ".repeat(100_000),
            "- ".repeat(100_000),
            (0..3000)
                .map(|i| format!("{}a:\n", " ".repeat(i)))
                .collect(),
            // Within each of the parser's limits, deeper than the limit together.
            format!("{}{}x{}", "- ".repeat(40), "[".repeat(40), "]".repeat(40)),
        ];
        for text in deep {
            let problems = problems(&text);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].contains(&format!("nested more than {MAX_DEPTH} levels deep")),
                "{problems:?}"
            );
        }
        // A manifest is far from the limit.
        let nested = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(
            !problems(&format!("{DELIVERY}---\n{nested}\n"))[..]
                .iter()
                .any(|p| p.contains("nested"))
        );
    }

    #[test]
    fn a_storm_of_documents_is_refused() {
        let problems = problems(&"---\n".repeat(MAX_DOCUMENTS + 5));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let document = format!("(document {}): not valid YAML at line ", MAX_DOCUMENTS + 1);
        let too_many = format!("more than {MAX_DOCUMENTS} documents in one file: refused");
        assert!(
            problems[0].contains(&document) && problems[0].contains(&too_many),
            "{problems:?}"
        );
    }

    #[test]
    fn a_date_time_is_what_the_api_server_accepts() {
        for good in [
            "2026-11-01T10:00:00Z",
            "2026-11-01t10:00:00z",
            "2026-11-01T10:00:00.123+01:00",
            "2024-02-29T23:59:59-08:00",
        ] {
            assert!(is_date_time(good), "{good}");
        }
        for bad in [
            "",
            "2026",
            "2026-11-01",
            "2026-11-01T10:00:00",
            "2026-11-01T24:00:00Z",
            "2026-11-01T10:00:60Z",
            "2025-02-29T10:00:00Z",
            "2026-1-01T10:00:00Z",
            "2026-11-01T10:00:00+0100",
            "2026-11-01 10:00:00Z",
            "2026-11-01T10:00:00.Z",
            "é026-11-01T10:00:00Z",
            "2026-11-01T1é:00:00Z",
            "2026-11-01T10:00:00+é1:00",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
    }

    /// Loads `files` (name and content) from a temporary directory walked as `check -f DIR`.
    fn walk(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Manifests, Vec<String>>) {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        let loaded = load(&[dir.path().to_path_buf()])
            .map_err(|errors| errors.iter().map(|e| e.to_string()).collect());
        (dir, loaded)
    }

    #[test]
    fn a_directory_walk_skips_what_is_no_manifest_and_says_so() {
        let (_dir, loaded) = walk(&[
            ("deliveries/www.yaml", DELIVERY),
            (
                ".vscode/settings.json",
                "{\n  // the editor's\n  \"editor.tabSize\": 2,\n}\n",
            ),
            (".github/workflows/ci.yml", "on: push\njobs: {}\n"),
            ("chart/Chart.yaml", "apiVersion: v2\nname: shop\n"),
            (
                "chart/templates/delivery.yaml",
                "apiVersion: httpsdelivery.dev/v1alpha1\nkind: HttpsDelivery\nmetadata: {name: {{ .Values.name }}}\n",
            ),
            (
                "rendered/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: {{ include \"labels\" . }}\n",
            ),
            ("empty.yaml", ""),
        ]);
        let m = loaded.expect("loads");
        assert_eq!(m.deliveries.len(), 1);
        let notices = m.notices();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(
            notices[0].starts_with("skipped 4 paths that hold no manifests: "),
            "{notices:?}"
        );
        for part in [
            "settings.json (",
            "ci.yml (no apiVersion and kind)",
            "chart/ (a Helm chart: check the output of `helm template`)",
            "cm.yaml (a template ({{ }}), not YAML)",
        ] {
            assert!(notices[0].contains(part), "{part} in {notices:?}");
        }
        // A broken manifest is still an error, in a directory too.
        let (_dir, loaded) = walk(&[("www.yaml", &DELIVERY.replace("port: 8443", "port: [8443"))]);
        assert!(loaded.expect_err("refused")[0].contains("www.yaml (document 1): not valid YAML"));
        // Named on the command line, a chart or a template is an error.
        let (dir, _) = walk(&[
            ("chart/Chart.yaml", "apiVersion: v2\nname: shop\n"),
            ("cm.yaml", "a: {{ b }}\n"),
        ]);
        let errors =
            load(&[dir.path().join("chart"), dir.path().join("cm.yaml")]).expect_err("refused");
        assert!(
            errors[0].to_string().contains("is a Helm chart"),
            "{errors:?}"
        );
        assert!(
            errors[1]
                .to_string()
                .contains("cm.yaml (document 1): not valid YAML"),
            "{errors:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_link_loops_end_and_a_file_is_read_once() {
        let (dir, _) = walk(&[("a/www.yaml", DELIVERY)]);
        let root = dir.path();
        std::os::unix::fs::symlink("..", root.join("a/up")).expect("symlink");
        std::os::unix::fs::symlink(root.join("a"), root.join("a/self")).expect("symlink");
        std::os::unix::fs::symlink("www.yaml", root.join("a/zz-same.yaml")).expect("symlink");
        std::os::unix::fs::symlink("nowhere", root.join("a/dangling")).expect("symlink");
        let m = load(&[root.to_path_buf()]).expect("loads: the delivery once, the loops ended");
        assert_eq!(m.deliveries.len(), 1);
        let notices = m.notices().join("\n");
        assert!(
            notices.contains("a/up (the same directory as "),
            "{notices}"
        );
        assert!(
            notices.contains("a/self (the same directory as "),
            "{notices}"
        );
        assert!(
            notices.contains("zz-same.yaml (the same file as "),
            "{notices}"
        );
        // A directory given twice, or inside another one given, is read once.
        let m = load(&[root.to_path_buf(), root.join("a"), root.join("a/www.yaml")])
            .expect("loads once");
        assert_eq!(m.deliveries.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn fifos_and_devices_are_refused_without_being_opened() {
        let (dir, _) = walk(&[("www.yaml", DELIVERY)]);
        let fifo = dir.path().join("pipe.yaml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        // Opening a FIFO without a writer would block this test forever.
        for paths in [
            vec![dir.path().to_path_buf()],
            vec![fifo.clone()],
            vec![PathBuf::from("/dev/null")],
        ] {
            let errors = load(&paths).expect_err("refused");
            assert_eq!(errors.len(), 1, "{errors:?}");
            let e = errors[0].to_string();
            assert!(
                e.contains("not a regular file: refused without reading it"),
                "{e}"
            );
        }
        assert!(
            load(&[fifo]).expect_err("refused")[0]
                .to_string()
                .contains("pipe.yaml: is a FIFO (named pipe)")
        );
    }

    #[test]
    fn a_file_larger_than_the_limit_is_refused_unread() {
        let (dir, _) = walk(&[("www.yaml", DELIVERY)]);
        let limits = LoadOptions {
            max_file_size: DELIVERY.len() as u64 - 1,
        };
        let errors = load_with(&[dir.path().to_path_buf()], &limits).expect_err("too large");
        assert!(
            errors[0].to_string().contains(&format!(
                "www.yaml: is {} bytes, more than the limit of {} bytes per file",
                DELIVERY.len(),
                DELIVERY.len() - 1
            )),
            "{errors:?}"
        );
        let limits = LoadOptions {
            max_file_size: DELIVERY.len() as u64,
        };
        assert!(load_with(&[dir.path().to_path_buf()], &limits).is_ok());
        assert_eq!(LoadOptions::default().max_file_size, 8 * 1024 * 1024);
    }

    /// Inputs the loader must survive: every example, a Secret, and documents of every shape.
    fn corpus() -> Vec<String> {
        let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
        let mut corpus: Vec<String> = std::fs::read_dir(examples)
            .expect("examples/")
            .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("example"))
            .collect();
        assert!(corpus.len() >= 7);
        corpus.push(format!(
            "%YAML 1.2\n---\n{DELIVERY}  checks: {{timeout: 5s, recheckInterval: 10m}}\n...\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s, labels: {{a: b}}}}\ntype: kubernetes.io/tls\ndata: {{tls.crt: \"LS0t\", tls.key: \"LS0t\"}}\n---\nbase: &b {{platform: HttpLarge}}\nlist: [*b, *b, {{<<: *b}}]\nblock: |\n  text\n"
        ));
        corpus.push(format!(
            "{DELIVERY}status:\n  conditions:\n  - type: Ready\n    status: \"True\"\n"
        ));
        corpus
    }

    /// Tokens that change what YAML means.
    const TOKENS: &[&str] = &[
        "[",
        "]",
        "{",
        "}",
        ":",
        ": ",
        "- ",
        "&a ",
        "*a",
        "!!binary ",
        "!!str ",
        "!custom ",
        "\"",
        "'",
        "|",
        ">-",
        "#",
        "%YAML 1.2\n",
        "---\n",
        "...\n",
        "\t",
        "? ",
        "<<: *a\n",
        "~",
        "null",
        ".inf",
        "-.nan",
        "1e400",
        "0x",
        "99999999999999999999999999",
        "\u{feff}",
        "\0",
        "\u{202e}",
        "\r",
        "\n",
        "  ",
        "é",
        "\\u",
        "@",
        "`",
        ",",
        "apiVersion: v1\nkind: Secret\n",
        "kind: HttpsDelivery\n",
        "- - - [[{",
        "{{ .x }}",
    ];

    /// Random edits of a text: cuts, deleted, repeated and swapped lines, inserted tokens.
    fn mutate(rng: &mut impl rand::Rng, text: &str) -> String {
        let boundary = |rng: &mut dyn rand::RngCore, t: &str| {
            let mut i = rand::Rng::random_range(rng, 0..=t.len());
            while !t.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let mut text = text.to_string();
        for _ in 0..rng.random_range(1..4) {
            let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
            let n = lines.len().max(1);
            match rng.random_range(0..6) {
                0 => {
                    let i = boundary(rng, &text);
                    text.truncate(i);
                    continue;
                }
                1 if !lines.is_empty() => {
                    lines.remove(rng.random_range(0..lines.len()));
                }
                2 if !lines.is_empty() => {
                    let line = lines[rng.random_range(0..lines.len())].clone();
                    lines.insert(rng.random_range(0..n), line);
                }
                3 if lines.len() > 1 => {
                    let (a, b) = (
                        rng.random_range(0..lines.len()),
                        rng.random_range(0..lines.len()),
                    );
                    lines.swap(a, b);
                }
                4 if !lines.is_empty() => {
                    // Indentation moved: the structure changes.
                    let i = rng.random_range(0..lines.len());
                    lines[i] = if rng.random_bool(0.5) {
                        format!("  {}", lines[i])
                    } else {
                        lines[i].trim_start().to_string()
                    };
                }
                _ => {
                    let i = boundary(rng, &text);
                    let token = TOKENS[rng.random_range(0..TOKENS.len())];
                    text.insert_str(i, token);
                    continue;
                }
            }
            text = lines.concat();
        }
        text
    }

    /// No input makes the loader panic: thousands of mutated manifests and random bytes, each
    /// read as a file is (also as a file found in a directory walk), all accepted or refused.
    #[test]
    fn no_input_makes_the_loader_panic() {
        use rand::{Rng, SeedableRng};
        let options = LoadOptions::default();
        let mut loader = Loader::new(&options);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let corpus = corpus();
        let mut inputs: Vec<String> = corpus.clone();
        for i in 0..3000 {
            inputs.push(mutate(&mut rng, &corpus[i % corpus.len()]));
        }
        for _ in 0..300 {
            let len = rng.random_range(0..512);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            inputs.push(String::from_utf8_lossy(&bytes).into_owned());
            let ascii: String = (0..len)
                .map(|_| char::from(rng.random_range(0x20u8..0x7f)))
                .collect();
            inputs.push(ascii);
        }
        let mut panicked = Vec::new();
        let mut outcomes = [0usize; 2];
        for (i, input) in inputs.iter().enumerate() {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                loader.errors.clear();
                loader.out = Manifests::default();
                loader.deliveries_seen.clear();
                loader.secrets_seen.clear();
                loader.text(Path::new("fuzz.yaml"), input, i % 2 == 0);
                loader.errors.is_empty()
            }));
            match run {
                Ok(ok) => outcomes[usize::from(ok)] += 1,
                Err(_) => panicked.push(input.clone()),
            }
        }
        assert!(
            panicked.is_empty(),
            "{} inputs made the loader panic, the first: {:?}",
            panicked.len(),
            panicked.first()
        );
        // The mutations reach both outcomes, so the test exercises more than the YAML parser.
        assert!(
            outcomes[0] > 100 && outcomes[1] > 100,
            "refused, accepted: {outcomes:?}"
        );

        // Through the files, non-UTF-8 bytes included.
        let dir = tempfile::tempdir().expect("temp dir");
        for i in 0..50 {
            let path = dir.path().join(format!("f{i}.yaml"));
            let mut bytes = mutate(&mut rng, &corpus[i % corpus.len()]).into_bytes();
            if i % 5 == 0 {
                bytes.insert(rng.random_range(0..=bytes.len()), 0xff);
            }
            std::fs::write(&path, bytes).expect("write");
            let _ = load(&[path]);
        }
        let _ = load(&[dir.path().to_path_buf()]);
    }
}
