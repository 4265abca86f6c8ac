//! The operator's Prometheus metrics: per-object condition status and certificate expiry,
//! reconcile counts, durations and errors, probe durations.

use std::sync::{Arc, Mutex, PoisonError};

use super::object_series::ObjectSeries;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Content type of the OpenMetrics text format, which is what `encode` produces.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Metric names are prefixed with this (`httpsdelivery_condition_status`, ...).
const METRIC_PREFIX: &str = "httpsdelivery";

/// Reconciles and probes are bounded by timeouts well under a minute; buckets reach from one
/// millisecond (cached DNS) to 60 s (a probe that ran into its timeout).
const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    kind: String,
    outcome: String,
}

/// One hostname of one route that no HttpsDelivery covers (the route audit).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UncoveredLabels {
    namespace: String,
    kind: String,
    name: String,
    hostname: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
    endpoint: String,
    outcome: String,
}

/// The request counter and latency histogram of provider mode's CDN API requests.
fn register_provider_metrics(
    registry: &mut Registry,
) -> (
    Family<ProviderLabels, Counter>,
    HistogramFamily<ProviderLabels>,
) {
    let requests = Family::<ProviderLabels, Counter>::default();
    registry.register(
        "provider_requests",
        "Requests to CDN APIs (provider mode) by provider, endpoint and outcome",
        requests.clone(),
    );
    let duration: HistogramFamily<ProviderLabels> =
        Family::new_with_constructor(duration_histogram);
    registry.register_with_unit(
        "provider_request_duration",
        "Latency of requests to CDN APIs by provider, endpoint and outcome",
        Unit::Seconds,
        duration.clone(),
    );
    (requests, duration)
}

/// The route audit's gauge: one series per route hostname no delivery covers.
fn register_uncovered(registry: &mut Registry) -> Family<UncoveredLabels, Gauge> {
    let uncovered = Family::<UncoveredLabels, Gauge>::default();
    registry.register(
        "uncovered_hostnames",
        "Hostnames of Ingress and HTTPRoute objects that no HttpsDelivery declares: 1 per route and hostname, gone once covered (--audit-routes)",
        uncovered.clone(),
    );
    uncovered
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The operator's Prometheus metrics.
///
/// Cloning is cheap and every clone records into the same registry (the state lives behind an
/// `Arc`), so the controller context, the probes and the health server each hold their own
/// clone.
///
/// Only names, namespaces, condition types and statuses, outcomes and times become labels or
/// values; nothing from a Secret does.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    objects: ObjectSeries,
    reconciliations: Family<OutcomeLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Histogram,
    probe_duration: HistogramFamily<ProbeLabels>,
    provider_requests: Family<ProviderLabels, Counter>,
    provider_duration: HistogramFamily<ProviderLabels>,
    dns_queries: Counter,
    tls_handshakes: Counter,
    secret_reads: Counter,
    secret_gets: Counter,
    uncovered: Family<UncoveredLabels, Gauge>,
    /// The totals last published, so that counters move by the difference.
    totals: Mutex<Totals>,
}

/// Work sent to the outside world since the process started, as its owners count it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub dns_queries: u64,
    pub tls_handshakes: u64,
    /// Secrets fetched from the API server (the rest came from the cache).
    pub secret_reads: u64,
    /// Of those, Secrets fetched with a GET of their own (the rest were listed in pages).
    pub secret_gets: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates the registry (prefix `httpsdelivery`) with every metric family registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(METRIC_PREFIX);

        // Not in the registry: the per-object series are written out at scrape time, in chunks.
        let objects = ObjectSeries::default();
        let reconciliations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reconciliations",
            "Reconciliations by outcome",
            reconciliations.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by error kind",
            reconcile_errors.clone(),
        );
        let reconcile_duration = duration_histogram();
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of reconciliations",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let probe_duration: HistogramFamily<ProbeLabels> =
            Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "probe_duration",
            "Duration of DNS and TLS probes by outcome",
            Unit::Seconds,
            probe_duration.clone(),
        );

        let (provider_requests, provider_duration) = register_provider_metrics(&mut registry);

        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let dns_queries = counter(&mut registry, "dns_queries", "DNS queries sent");
        let tls_handshakes = counter(
            &mut registry,
            "tls_handshakes",
            "TLS handshakes attempted (connections opened by probes)",
        );
        let secret_reads = counter(
            &mut registry,
            "secret_reads",
            "Secrets read from the API server (a Secret is read again only when it changed)",
        );
        let secret_gets = counter(
            &mut registry,
            "secret_gets",
            "Secrets fetched with a GET of their own (the first read lists them in pages)",
        );

        let uncovered = register_uncovered(&mut registry);

        Metrics {
            inner: Arc::new(Inner {
                registry,
                objects,
                reconciliations,
                reconcile_errors,
                reconcile_duration,
                probe_duration,
                provider_requests,
                provider_duration,
                dns_queries,
                tls_handshakes,
                secret_reads,
                secret_gets,
                uncovered,
                totals: Mutex::new(Totals::default()),
            }),
        }
    }

    /// Publishes the totals counted by the probes and the Secret cache.
    pub fn set_totals(&self, now: Totals) {
        let mut last = self
            .inner
            .totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let bump = |counter: &Counter, value: u64, last: u64| {
            if value > last {
                counter.inc_by(value - last);
            }
        };
        bump(&self.inner.dns_queries, now.dns_queries, last.dns_queries);
        bump(
            &self.inner.tls_handshakes,
            now.tls_handshakes,
            last.tls_handshakes,
        );
        bump(
            &self.inner.secret_reads,
            now.secret_reads,
            last.secret_reads,
        );
        last.dns_queries = last.dns_queries.max(now.dns_queries);
        last.tls_handshakes = last.tls_handshakes.max(now.tls_handshakes);
        bump(&self.inner.secret_gets, now.secret_gets, last.secret_gets);
        last.secret_reads = last.secret_reads.max(now.secret_reads);
        last.secret_gets = last.secret_gets.max(now.secret_gets);
    }

    /// Publishes the conditions of one object as `(type, status)` pairs.
    ///
    /// The slice is the object's complete set: types published earlier and absent now lose
    /// their series, so a renamed or dropped condition does not linger. A status other than
    /// `True` or `False` counts as `Unknown`, which keeps exactly one of the three at 1.
    pub fn set_conditions(&self, namespace: &str, name: &str, conditions: &[(String, String)]) {
        self.inner
            .objects
            .set_conditions(namespace, name, conditions);
    }

    /// Marks the object as having (or no longer having) a dangling CNAME, counted by
    /// `httpsdelivery_dangling_cnames`.
    pub fn set_dangling(&self, namespace: &str, name: &str, dangling: bool) {
        self.inner.objects.set_dangling(namespace, name, dangling);
    }

    /// Publishes the object's hostname and the reason of its Ready condition as
    /// `httpsdelivery_delivery_info`, for alerts and dashboards to name the delivery by.
    pub fn set_info(&self, namespace: &str, name: &str, hostname: &str, ready_reason: &str) {
        self.inner
            .objects
            .set_info(namespace, name, hostname, ready_reason);
    }

    /// Publishes the expiry of the object's certificate; `None` (no certificate could be read)
    /// removes the series rather than leaving a stale time behind.
    pub fn set_certificate_not_after(
        &self,
        namespace: &str,
        name: &str,
        unix_seconds: Option<i64>,
    ) {
        self.inner
            .objects
            .set_certificate_not_after(namespace, name, unix_seconds);
    }

    /// Publishes (1) or withdraws the series of one route's hostname that no delivery covers.
    pub fn set_uncovered(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        hostname: &str,
        uncovered: bool,
    ) {
        let labels = UncoveredLabels {
            namespace: namespace.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            hostname: hostname.to_owned(),
        };
        if uncovered {
            self.inner.uncovered.get_or_create(&labels).set(1);
        } else {
            self.inner.uncovered.remove(&labels);
        }
    }

    /// Withdraws every uncovered-hostname series (the audit stopped).
    pub fn clear_uncovered(&self) {
        self.inner.uncovered.clear();
    }

    /// The objects that have per-object series, as (namespace, name).
    pub fn objects(&self) -> Vec<(String, String)> {
        self.inner.objects.objects()
    }

    /// Removes every series of a deleted object, so that it stops showing up in dashboards
    /// and alerts.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.inner.objects.forget(namespace, name);
    }

    /// Starts timing one reconciliation. Finish it with [`ReconcileTimer::ok`] or
    /// [`ReconcileTimer::error`]; a timer dropped without either records nothing (a reconcile
    /// cancelled at shutdown has no outcome worth counting).
    pub fn reconcile_timer(&self) -> ReconcileTimer {
        ReconcileTimer {
            metrics: self.clone(),
            start: Instant::now(),
        }
    }

    /// Records the duration of one probe; `kind` is `"dns"` or `"tls"`, `outcome` a short
    /// fixed word (not a message, which would make the label set unbounded).
    pub fn observe_probe(&self, kind: &'static str, outcome: &str, duration: Duration) {
        let labels = ProbeLabels {
            kind: kind.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.inner
            .probe_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    /// Records one request to a CDN API; `endpoint` is a path template (no IDs).
    pub fn observe_provider_request(
        &self,
        provider: &'static str,
        endpoint: &'static str,
        outcome: &'static str,
        seconds: f64,
    ) {
        let labels = ProviderLabels {
            provider: provider.to_owned(),
            endpoint: endpoint.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.inner.provider_requests.get_or_create(&labels).inc();
        self.inner
            .provider_duration
            .get_or_create(&labels)
            .observe(seconds);
    }

    /// Everything in the OpenMetrics text format (ending in `# EOF`), as one string.
    pub fn encode(&self) -> String {
        self.chunks().collect()
    }

    /// The same text in chunks of a few hundred kilobytes, for serving `/metrics`: the
    /// per-object series of 10,000 deliveries are about 30 MB of text, which a scrape should
    /// not hold whole.
    pub fn chunks(&self) -> impl Iterator<Item = String> + Send + 'static {
        let mut registry = String::new();
        if let Err(error) =
            prometheus_client::encoding::text::encode_registry(&mut registry, &self.inner.registry)
        {
            // Writing into a String cannot fail; only a broken encoder could get here.
            tracing::error!(%error, "encoding metrics failed");
        }
        let objects = self.inner.objects.snapshot();
        std::iter::once(registry)
            .chain(objects.chunks())
            .chain(std::iter::once("# EOF\n".to_string()))
    }

    fn record_reconcile(&self, start: Instant, outcome: &str, error: Option<&str>) {
        self.inner
            .reconcile_duration
            .observe(start.elapsed().as_secs_f64());
        self.inner
            .reconciliations
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        if let Some(error) = error {
            self.inner
                .reconcile_errors
                .get_or_create(&ErrorLabels {
                    error: error.to_owned(),
                })
                .inc();
        }
    }
}

/// Times one reconciliation; see [`Metrics::reconcile_timer`].
#[must_use = "a ReconcileTimer records nothing unless finished with ok() or error()"]
#[derive(Debug)]
pub struct ReconcileTimer {
    metrics: Metrics,
    start: Instant,
}

impl ReconcileTimer {
    /// Counts a successful reconciliation and records its duration.
    pub fn ok(self) {
        self.metrics.record_reconcile(self.start, "ok", None);
    }

    /// Counts a failed reconciliation under `label` (a short error kind such as `"kube"`,
    /// never an error message) and records its duration.
    pub fn error(self, label: &str) {
        self.metrics
            .record_reconcile(self.start, "error", Some(label));
    }
}

impl crate::probe::ProbeRecorder for Metrics {
    fn record(&self, kind: &'static str, outcome: &str, duration: Duration) {
        self.observe_probe(kind, outcome, duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(t, s)| (t.to_string(), s.to_string()))
            .collect()
    }

    fn condition_line(namespace: &str, name: &str, condition_type: &str, status: &str) -> String {
        format!(
            "httpsdelivery_condition_status{{namespace=\"{namespace}\",name=\"{name}\",type=\"{condition_type}\",status=\"{status}\"}}"
        )
    }

    /// The value of the one sample whose line starts with `series` followed by a space.
    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn dangling_cnames_are_counted_until_fixed_or_forgotten() {
        let metrics = Metrics::new();
        assert_eq!(
            sample(&metrics.encode(), "httpsdelivery_dangling_cnames").as_deref(),
            Some("0")
        );
        metrics.set_dangling("shop", "www", true);
        metrics.set_dangling("shop", "api", true);
        metrics.set_dangling("shop", "old", false);
        assert_eq!(
            sample(&metrics.encode(), "httpsdelivery_dangling_cnames").as_deref(),
            Some("2")
        );
        let text = metrics.encode();
        let named = |name: &str| {
            format!("httpsdelivery_hostname_dangling{{namespace=\"shop\",name=\"{name}\"}}")
        };
        assert_eq!(sample(&text, &named("www")).as_deref(), Some("1"));
        assert_eq!(sample(&text, &named("old")), None, "only dangling ones");
        metrics.set_dangling("shop", "www", false);
        assert_eq!(sample(&metrics.encode(), &named("www")), None);
        metrics.forget("shop", "api");
        assert_eq!(
            sample(&metrics.encode(), "httpsdelivery_dangling_cnames").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn the_info_series_names_the_hostname_and_the_ready_reason_and_follows_it() {
        let metrics = Metrics::new();
        metrics.set_info("shop", "www", "www.shop.example", "Verified");
        let line = |reason: &str| {
            format!(
                "httpsdelivery_delivery_info{{namespace=\"shop\",name=\"www\",\
                 hostname=\"www.shop.example\",reason=\"{reason}\"}}"
            )
        };
        assert_eq!(
            sample(&metrics.encode(), &line("Verified")).as_deref(),
            Some("1")
        );
        // The reason changes: one series, the new one.
        metrics.set_info("shop", "www", "www.shop.example", "CnameTargetMismatch");
        let text = metrics.encode();
        assert_eq!(sample(&text, &line("Verified")), None);
        assert_eq!(
            sample(&text, &line("CnameTargetMismatch")).as_deref(),
            Some("1")
        );
        assert_eq!(text.matches("httpsdelivery_delivery_info{").count(), 1);
        metrics.forget("shop", "www");
        assert!(!metrics.encode().contains("httpsdelivery_delivery_info{"));
    }

    #[test]
    fn condition_gauges_flip_between_statuses() {
        let metrics = Metrics::new();
        metrics.set_conditions("shop", "www", &conditions(&[("Ready", "True")]));
        let text = metrics.encode();
        assert_eq!(
            sample(&text, &condition_line("shop", "www", "Ready", "True")).as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, &condition_line("shop", "www", "Ready", "False")).as_deref(),
            Some("0")
        );
        assert_eq!(
            sample(&text, &condition_line("shop", "www", "Ready", "Unknown")).as_deref(),
            Some("0")
        );

        metrics.set_conditions("shop", "www", &conditions(&[("Ready", "False")]));
        let text = metrics.encode();
        assert_eq!(
            sample(&text, &condition_line("shop", "www", "Ready", "True")).as_deref(),
            Some("0")
        );
        assert_eq!(
            sample(&text, &condition_line("shop", "www", "Ready", "False")).as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, &condition_line("shop", "www", "Ready", "Unknown")).as_deref(),
            Some("0")
        );
    }

    #[test]
    fn unexpected_status_counts_as_unknown() {
        let metrics = Metrics::new();
        metrics.set_conditions("shop", "www", &conditions(&[("Ready", "maybe")]));
        let text = metrics.encode();
        assert_eq!(
            sample(&text, &condition_line("shop", "www", "Ready", "Unknown")).as_deref(),
            Some("1")
        );
        assert!(!text.contains("maybe"));
    }

    #[test]
    fn condition_types_no_longer_published_lose_their_series() {
        let metrics = Metrics::new();
        metrics.set_conditions(
            "shop",
            "www",
            &conditions(&[("Ready", "False"), ("CertificateValid", "False")]),
        );
        metrics.set_conditions("shop", "www", &conditions(&[("Ready", "True")]));
        let text = metrics.encode();
        assert!(!text.contains("CertificateValid"), "{text}");
        assert_eq!(
            sample(&text, &condition_line("shop", "www", "Ready", "True")).as_deref(),
            Some("1")
        );
    }

    #[test]
    fn uncovered_hostnames_have_one_series_each_until_covered() {
        let metrics = Metrics::new();
        metrics.set_uncovered("web", "Ingress", "shop", "api.shop.example", true);
        metrics.set_uncovered("web", "HTTPRoute", "shop", "img.shop.example", true);
        let line = |kind: &str, host: &str| {
            format!(
                "httpsdelivery_uncovered_hostnames{{namespace=\"web\",kind=\"{kind}\",name=\"shop\",hostname=\"{host}\"}} 1"
            )
        };
        let text = metrics.encode();
        assert!(
            text.contains("# TYPE httpsdelivery_uncovered_hostnames gauge"),
            "{text}"
        );
        assert!(
            text.contains(&line("Ingress", "api.shop.example")),
            "{text}"
        );
        assert!(
            text.contains(&line("HTTPRoute", "img.shop.example")),
            "{text}"
        );
        metrics.set_uncovered("web", "Ingress", "shop", "api.shop.example", false);
        let text = metrics.encode();
        assert!(!text.contains("api.shop.example"), "{text}");
        assert!(
            text.contains(&line("HTTPRoute", "img.shop.example")),
            "{text}"
        );
        metrics.clear_uncovered();
        assert!(!metrics.encode().contains("hostname="));
    }

    #[test]
    fn certificate_expiry_is_set_and_removed() {
        let metrics = Metrics::new();
        let series = "httpsdelivery_certificate_not_after_seconds{namespace=\"shop\",name=\"www\"}";
        metrics.set_certificate_not_after("shop", "www", Some(1_767_225_600));
        assert_eq!(
            sample(&metrics.encode(), series).as_deref(),
            Some("1767225600")
        );
        metrics.set_certificate_not_after("shop", "www", None);
        assert_eq!(sample(&metrics.encode(), series), None);
    }

    #[test]
    fn forget_removes_every_series_of_the_object_only() {
        let metrics = Metrics::new();
        for name in ["www", "api"] {
            metrics.set_conditions(
                "shop",
                name,
                &conditions(&[("Ready", "True"), ("DnsConfigured", "True")]),
            );
            metrics.set_certificate_not_after("shop", name, Some(1_767_225_600));
        }
        let mut objects = metrics.objects();
        objects.sort();
        assert_eq!(
            objects,
            [
                ("shop".to_string(), "api".to_string()),
                ("shop".to_string(), "www".to_string())
            ]
        );
        metrics.forget("shop", "www");
        assert_eq!(metrics.objects(), [("shop".to_string(), "api".to_string())]);
        let text = metrics.encode();
        assert!(!text.contains("name=\"www\""), "{text}");
        assert_eq!(
            sample(&text, &condition_line("shop", "api", "Ready", "True")).as_deref(),
            Some("1")
        );
        assert!(text.contains(
            "httpsdelivery_certificate_not_after_seconds{namespace=\"shop\",name=\"api\"}"
        ));

        // Forgetting an unknown object is a no-op, not an error.
        metrics.forget("shop", "never-seen");
        // The object can come back after being forgotten.
        metrics.set_conditions("shop", "www", &conditions(&[("Ready", "False")]));
        assert_eq!(
            sample(
                &metrics.encode(),
                &condition_line("shop", "www", "Ready", "False")
            )
            .as_deref(),
            Some("1")
        );
    }

    #[test]
    fn reconcile_timer_counts_outcomes_and_durations() {
        let metrics = Metrics::new();
        metrics.reconcile_timer().ok();
        metrics.reconcile_timer().ok();
        metrics.reconcile_timer().error("kube");
        drop(metrics.reconcile_timer());
        let text = metrics.encode();
        assert_eq!(
            sample(&text, "httpsdelivery_reconciliations_total{outcome=\"ok\"}").as_deref(),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                "httpsdelivery_reconciliations_total{outcome=\"error\"}"
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                "httpsdelivery_reconcile_errors_total{error=\"kube\"}"
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, "httpsdelivery_reconcile_duration_seconds_count").as_deref(),
            Some("3")
        );
        assert!(text.contains("# TYPE httpsdelivery_reconcile_duration_seconds histogram"));
    }

    #[test]
    fn probe_histogram_records_by_kind_and_outcome() {
        let metrics = Metrics::new();
        metrics.observe_probe("dns", "ok", Duration::from_millis(3));
        metrics.observe_probe("dns", "ok", Duration::from_millis(40));
        metrics.observe_probe("tls", "timeout", Duration::from_secs(10));
        let text = metrics.encode();
        let dns = "{kind=\"dns\",outcome=\"ok\"}";
        assert_eq!(
            sample(
                &text,
                &format!("httpsdelivery_probe_duration_seconds_count{dns}")
            )
            .as_deref(),
            Some("2")
        );
        assert_eq!(
            sample(&text, "httpsdelivery_probe_duration_seconds_bucket{le=\"0.005\",kind=\"dns\",outcome=\"ok\"}")
                .as_deref(),
            Some("1")
        );
        let tls_sum = sample(
            &text,
            "httpsdelivery_probe_duration_seconds_sum{kind=\"tls\",outcome=\"timeout\"}",
        );
        assert_eq!(tls_sum.as_deref(), Some("10.0"));
    }

    #[test]
    fn totals_move_the_counters_by_the_difference_and_never_back() {
        let metrics = Metrics::new();
        let totals = |d, t, s| Totals {
            dns_queries: d,
            tls_handshakes: t,
            secret_reads: s,
            secret_gets: s,
        };
        metrics.set_totals(totals(5, 2, 1));
        metrics.set_totals(totals(12, 2, 1));
        metrics.set_totals(totals(3, 1, 0));
        let text = metrics.encode();
        assert_eq!(
            sample(&text, "httpsdelivery_dns_queries_total").as_deref(),
            Some("12")
        );
        assert_eq!(
            sample(&text, "httpsdelivery_tls_handshakes_total").as_deref(),
            Some("2")
        );
        assert_eq!(
            sample(&text, "httpsdelivery_secret_reads_total").as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, "httpsdelivery_secret_gets_total").as_deref(),
            Some("1")
        );
    }

    #[test]
    fn many_objects_are_written_in_chunks_with_one_header_per_family() {
        let metrics = Metrics::new();
        for i in 0..250 {
            let name = format!("d{i}");
            metrics.set_conditions(
                "shop",
                &name,
                &conditions(&[("Ready", "True"), ("DnsConfigured", "False")]),
            );
            metrics.set_certificate_not_after("shop", &name, Some(1_767_225_600));
        }
        let chunks: Vec<String> = metrics.chunks().collect();
        assert!(chunks.len() >= 6, "{} chunks", chunks.len());
        // 100 objects of 6 lines of about 100 bytes: no chunk holds the whole scrape.
        let largest = chunks.iter().map(String::len).max().unwrap_or(0);
        assert!(largest < 100 * 6 * 120, "largest chunk {largest} bytes");
        let text = chunks.concat();
        assert_eq!(text, metrics.encode());
        for header in [
            "# TYPE httpsdelivery_condition_status gauge\n",
            "# TYPE httpsdelivery_certificate_not_after_seconds gauge\n",
            "# UNIT httpsdelivery_certificate_not_after_seconds seconds\n",
        ] {
            assert_eq!(text.matches(header).count(), 1, "{header}");
        }
        let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(count("httpsdelivery_condition_status{"), 250 * 2 * 3);
        assert_eq!(count("httpsdelivery_certificate_not_after_seconds{"), 250);
        assert_eq!(
            sample(
                &text,
                &condition_line("shop", "d249", "DnsConfigured", "False")
            )
            .as_deref(),
            Some("1")
        );
        assert!(text.ends_with("# EOF\n") && text.matches("# EOF").count() == 1);
    }

    #[test]
    fn encode_is_openmetrics_text() {
        let text = Metrics::new().encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
