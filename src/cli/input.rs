//! Reads a GitOps repository's manifests: HttpsDelivery objects and the Secrets they reference.

use crate::api::HttpsDelivery;
use crate::checks::certificate::{SecretContent, SecretKey};
use k8s_openapi::api::core::v1::Secret;
use kube::CustomResourceExt;
use std::collections::{BTreeMap, HashMap};
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
    let mut errors = Vec::new();
    let files = expand(paths, &mut errors);
    let mut out = Manifests::default();
    let compiled = compiled_schema();
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(err(file.display().to_string(), format!("cannot read: {e}")));
                continue;
            }
        };
        for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let location = format!("{} (document {})", file.display(), index + 1);
            let value = match <serde_yaml::Value as serde::Deserialize>::deserialize(document) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(err(location, format!("not valid YAML: {e}")));
                    // The rest of a file after a syntax error cannot be trusted.
                    break;
                }
            };
            if value.is_null() {
                continue;
            }
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            let api_version = value
                .get("apiVersion")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            match (api_version.as_str(), kind.as_str()) {
                ("httpsdelivery.dev/v1alpha1", "HttpsDelivery") => {
                    match read_delivery(value, &location, compiled.as_ref()) {
                        Ok(d) => {
                            let key = (d.namespace.clone(), d.name.clone());
                            if let Some(first) = seen.get(&key) {
                                errors.push(err(
                                    d.origin.clone(),
                                    format!(
                                        "HttpsDelivery {}/{} is defined twice (first in {first})",
                                        key.0, key.1
                                    ),
                                ));
                            } else {
                                seen.insert(key, d.origin.clone());
                                out.deliveries.push(d);
                            }
                        }
                        Err(e) => errors.push(e),
                    }
                }
                (v, "HttpsDelivery") if v.starts_with("httpsdelivery.dev/") => errors.push(err(
                    location,
                    format!("apiVersion {v} is not served; use httpsdelivery.dev/v1alpha1"),
                )),
                ("v1", "Secret") => match read_secret(value, &location) {
                    Ok((key, content)) => {
                        out.secrets.insert(key, content);
                    }
                    Err(e) => errors.push(e),
                },
                _ => out.skipped += 1,
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
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
    value: serde_yaml::Value,
    location: &str,
    compiled: Option<&kube::core::cel::CompiledSchema>,
) -> Result<LoadedDelivery, InputError> {
    let delivery: HttpsDelivery = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let path = e.path().to_string();
        err(location, format!("{path}: {}", e.into_inner()))
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
    if let Some(compiled) = compiled {
        let json = serde_json::to_value(&value).map_err(|e| err(&location, e.to_string()))?;
        if let Err(errors) = kube::core::cel::validate_compiled(compiled, &json, None) {
            let problems: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Err(err(location, problems.join("; ")));
        }
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
    value: serde_yaml::Value,
    location: &str,
) -> Result<((String, String), SecretContent), InputError> {
    // Never echo the document itself in errors: it holds a private key.
    let secret: Secret = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let short: String = inner
            .split(':')
            .next()
            .unwrap_or_default()
            .chars()
            .take(120)
            .collect();
        err(location, format!("Secret {path}: {short}"))
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
    Ok(((namespace, name), secret_content(&secret)))
}

/// What a Secret offers as a TLS certificate; shared with the controller.
pub fn secret_content(secret: &Secret) -> SecretContent {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    // stringData is how people write Secrets by hand in a repository; the API server merges it.
    for (k, v) in secret.string_data.clone().unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    let type_ = secret.type_.clone().unwrap_or_else(|| "Opaque".into());
    if type_ != "kubernetes.io/tls" {
        return SecretContent::Invalid(format!("its type is {type_}, not kubernetes.io/tls"));
    }
    let Some(cert_pem) = data.remove("tls.crt").filter(|c| !c.is_empty()) else {
        return SecretContent::Invalid("it has no tls.crt".into());
    };
    let key_pem = data
        .remove("tls.key")
        .filter(|k| !k.is_empty())
        .map(SecretKey::from_pem);
    SecretContent::Tls { cert_pem, key_pem }
}
