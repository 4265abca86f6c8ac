//! The per-object series (condition statuses, certificate expiry, and what names a delivery
//! to a person: its hostname and why it is or is not Ready), kept as one small entry
//! per object and written out at scrape time, in chunks. A `Family` would hold a label set, a hash-table
//! slot and an atomic for each of the 22 series of every object (about 5 KiB an object);
//! this holds the object's names once and one byte per condition.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

/// A condition status is one of these three (metav1.Condition); each gets its own series so
/// that alerts can select `status="False"` without knowing the previous value.
pub const CONDITION_STATUSES: [&str; 3] = ["True", "False", "Unknown"];

/// What is published of one object.
#[derive(Clone, Debug, Default)]
struct ObjectState {
    /// (condition type, index into `CONDITION_STATUSES`), in the order they were published.
    conditions: Vec<(Arc<str>, u8)>,
    /// Expiry of the served certificate, as Unix time.
    not_after: Option<i64>,
    /// DnsHealthy found a dangling CNAME (a subdomain-takeover risk).
    dangling: bool,
    /// The hostname and Ready's reason (interned: a few dozen reasons are shared).
    info: Option<(Box<str>, Arc<str>)>,
}

impl ObjectState {
    fn is_empty(&self) -> bool {
        self.conditions.is_empty()
            && self.not_after.is_none()
            && !self.dangling
            && self.info.is_none()
    }
}

type Key = (Box<str>, Box<str>);

#[derive(Debug, Default)]
pub struct ObjectSeries {
    objects: Mutex<BTreeMap<Key, ObjectState>>,
    /// Condition types are a handful of names shared by every object.
    types: Mutex<HashSet<Arc<str>>>,
}

impl ObjectSeries {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, ObjectState>> {
        // A panic elsewhere leaves the map as consistent as every single update keeps it.
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn intern(&self, condition_type: &str) -> Arc<str> {
        let mut types = self.types.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = types.get(condition_type) {
            return t.clone();
        }
        let t: Arc<str> = condition_type.into();
        types.insert(t.clone());
        t
    }

    /// Applies `change` to the object's entry, dropping the entry once nothing is published.
    fn update(&self, namespace: &str, name: &str, change: impl FnOnce(&mut ObjectState)) {
        let key: Key = (namespace.into(), name.into());
        let mut objects = self.lock();
        let state = objects.entry(key.clone()).or_default();
        change(state);
        if state.is_empty() {
            objects.remove(&key);
        }
    }

    /// Replaces the object's conditions with `conditions` (`(type, status)`); a status other
    /// than `True` or `False` counts as `Unknown`.
    pub fn set_conditions(&self, namespace: &str, name: &str, conditions: &[(String, String)]) {
        let conditions: Vec<(Arc<str>, u8)> = conditions
            .iter()
            .map(|(t, status)| {
                let index = match status.as_str() {
                    "True" => 0,
                    "False" => 1,
                    _ => 2,
                };
                (self.intern(t), index)
            })
            .collect();
        self.update(namespace, name, |state| state.conditions = conditions);
    }

    pub fn set_certificate_not_after(&self, namespace: &str, name: &str, seconds: Option<i64>) {
        self.update(namespace, name, |state| state.not_after = seconds);
    }

    pub fn set_dangling(&self, namespace: &str, name: &str, dangling: bool) {
        self.update(namespace, name, |state| state.dangling = dangling);
    }

    pub fn set_info(&self, namespace: &str, name: &str, hostname: &str, reason: &str) {
        let reason = self.intern(reason);
        self.update(namespace, name, |state| {
            state.info = Some((hostname.into(), reason))
        });
    }

    /// The objects that have series, as (namespace, name).
    pub fn objects(&self) -> Vec<(String, String)> {
        self.lock()
            .keys()
            .map(|(ns, name)| (ns.to_string(), name.to_string()))
            .collect()
    }

    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock().remove(&(namespace.into(), name.into()) as &Key);
    }
}

/// Objects per chunk of `/metrics` text: about 300 KB, so that a scrape of 10,000 deliveries
/// (30 MB of text) never sits in memory whole.
const OBJECTS_PER_CHUNK: usize = 100;

const CONDITION_HEADER: &str = "\
# HELP httpsdelivery_condition_status Status of each condition of each HttpsDelivery: 1 for the current status, 0 for the others.
# TYPE httpsdelivery_condition_status gauge
";

const NOT_AFTER_HEADER: &str = "\
# HELP httpsdelivery_certificate_not_after_seconds Expiry of the served certificate of each HttpsDelivery, as Unix time.
# TYPE httpsdelivery_certificate_not_after_seconds gauge
# UNIT httpsdelivery_certificate_not_after_seconds seconds
";

const INFO_HEADER: &str = "\
# HELP httpsdelivery_delivery_info Each HttpsDelivery's hostname and the reason of its Ready condition (always 1), to join on namespace and name: `* on(namespace, name) group_left(hostname, reason) httpsdelivery_delivery_info`.
# TYPE httpsdelivery_delivery_info gauge
";

const DANGLING_OBJECT_HEADER: &str = "\
# HELP httpsdelivery_hostname_dangling Each HttpsDelivery whose hostname is a dangling CNAME (DnsHealthy DanglingCname), always 1; absent for the others.
# TYPE httpsdelivery_hostname_dangling gauge
";

const DANGLING_HEADER: &str = "\
# HELP httpsdelivery_dangling_cnames HttpsDeliveries whose hostname is a CNAME to a name that no longer exists (DnsHealthy DanglingCname): subdomain-takeover risks.
# TYPE httpsdelivery_dangling_cnames gauge
";

/// A snapshot of the per-object series, written out in OpenMetrics text a chunk at a time.
pub struct Snapshot {
    objects: Vec<(Key, ObjectState)>,
}

impl ObjectSeries {
    /// A copy of what is published now (names and one byte per condition: small), so that a
    /// scrape holds the lock only for the copy.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            objects: self
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

impl Snapshot {
    /// The metric families, each with its HELP and TYPE once, in chunks of text.
    pub fn chunks(self) -> impl Iterator<Item = String> + Send + 'static {
        let objects = Arc::new(self.objects);
        let dangling = objects.iter().filter(|(_, state)| state.dangling).count();
        family(&objects, CONDITION_HEADER, write_conditions)
            .chain(family(&objects, NOT_AFTER_HEADER, write_not_after))
            .chain(family(&objects, INFO_HEADER, write_info))
            .chain(family(&objects, DANGLING_OBJECT_HEADER, write_dangling))
            .chain(std::iter::once(format!(
                "{DANGLING_HEADER}httpsdelivery_dangling_cnames {dangling}\n"
            )))
    }
}

/// One family: its header, then what `write` makes of each object, a chunk of
/// `OBJECTS_PER_CHUNK` objects at a time.
fn family(
    objects: &Arc<Vec<(Key, ObjectState)>>,
    header: &'static str,
    write: fn(&mut String, &str, &str, &ObjectState),
) -> impl Iterator<Item = String> + Send + 'static + use<> {
    let objects = objects.clone();
    let pages = (0..objects.len().div_ceil(OBJECTS_PER_CHUNK)).map(move |page| {
        let start = page * OBJECTS_PER_CHUNK;
        let end = (start + OBJECTS_PER_CHUNK).min(objects.len());
        let mut text = String::new();
        for ((namespace, name), state) in &objects[start..end] {
            write(&mut text, namespace, name, state);
        }
        text
    });
    std::iter::once(header.to_string()).chain(pages)
}

/// One sample: `metric{label="value",...} value`.
fn sample(text: &mut String, metric: &str, labels: &[(&str, &str)], value: &str) {
    text.push_str(metric);
    for (i, (label, label_value)) in labels.iter().enumerate() {
        text.push_str(if i == 0 { "{" } else { "," });
        text.push_str(label);
        text.push_str("=\"");
        escape_into(text, label_value);
        text.push('"');
    }
    text.push_str("} ");
    text.push_str(value);
    text.push('\n');
}

fn write_conditions(text: &mut String, namespace: &str, name: &str, state: &ObjectState) {
    for (condition_type, current) in &state.conditions {
        for (index, status) in CONDITION_STATUSES.iter().enumerate() {
            let labels = [
                ("namespace", namespace),
                ("name", name),
                ("type", condition_type),
                ("status", status),
            ];
            let value = if usize::from(*current) == index {
                "1"
            } else {
                "0"
            };
            sample(text, "httpsdelivery_condition_status", &labels, value);
        }
    }
}

fn write_not_after(text: &mut String, namespace: &str, name: &str, state: &ObjectState) {
    if let Some(seconds) = state.not_after {
        let labels = [("namespace", namespace), ("name", name)];
        let metric = "httpsdelivery_certificate_not_after_seconds";
        sample(text, metric, &labels, &seconds.to_string());
    }
}

fn write_info(text: &mut String, namespace: &str, name: &str, state: &ObjectState) {
    if let Some((hostname, reason)) = &state.info {
        let labels = [
            ("namespace", namespace),
            ("name", name),
            ("hostname", hostname),
            ("reason", reason),
        ];
        sample(text, "httpsdelivery_delivery_info", &labels, "1");
    }
}

fn write_dangling(text: &mut String, namespace: &str, name: &str, state: &ObjectState) {
    if state.dangling {
        let labels = [("namespace", namespace), ("name", name)];
        sample(text, "httpsdelivery_hostname_dangling", &labels, "1");
    }
}

/// A label value as OpenMetrics text escapes it (backslash, double quote, line feed).
fn escape_into(text: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            '\n' => text.push_str("\\n"),
            c => text.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut text = String::new();
        escape_into(&mut text, "a\"b\\c\nd");
        assert_eq!(text, "a\\\"b\\\\c\\nd");
    }
}
