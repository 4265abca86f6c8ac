//! Command line of httpsdelivery-operator.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use httpsdelivery_operator::cli::{self, CheckOptions, Format};
use httpsdelivery_operator::controller::scope::WatchScope;
use httpsdelivery_operator::controller::{self, Bounds, OperatorConfig};
use httpsdelivery_operator::probe::ProbeConfig;
use httpsdelivery_operator::telemetry;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// jemalloc rather than the C library's malloc: at 10,000 deliveries glibc's arenas held about
/// twice the live heap as resident memory (README, "the operator at scale"). The feature
/// `system-allocator` keeps the C library's (for heap profilers such as heaptrack).
#[cfg(all(not(target_env = "msvc"), not(feature = "system-allocator")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "httpsdelivery-operator",
    version,
    about = "Checks every step of the CDN HTTPS setup procedure for each HttpsDelivery"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the HttpsDelivery manifests of files or directories, without a cluster.
    Check {
        /// Files or directories of multi-document YAML (HttpsDelivery objects and their Secrets).
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
        /// Evaluate as of this instant (RFC 3339) instead of now.
        #[arg(long)]
        now: Option<jiff::Timestamp>,
        /// Files larger than this many bytes are refused without being read.
        #[arg(long, value_name = "BYTES", default_value_t = cli::input::DEFAULT_MAX_FILE_SIZE)]
        max_file_size: u64,
        #[command(flatten)]
        probe: ProbeFlags,
    },
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Run(Box<RunArgs>),
    /// Print a CustomResourceDefinition as YAML (HttpsDelivery unless another kind is named).
    Crd {
        /// httpsdelivery, cdnaccount or clustercdnaccount.
        #[arg(default_value = "httpsdelivery")]
        kind: String,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Watch only these namespaces (repeatable, or a comma list; the chart then needs a Role in
    /// each, not ClusterRoles). Default: every namespace.
    #[arg(
        long,
        env = "WATCH_NAMESPACE",
        value_delimiter = ',',
        value_name = "NS"
    )]
    watch_namespace: Vec<String>,
    /// Watch the namespaces whose labels match this selector (e.g. team=web), picking up
    /// namespaces as they gain or lose the label. Needs a ClusterRole.
    #[arg(long, env = "WATCH_NAMESPACE_SELECTOR", value_name = "SELECTOR")]
    watch_namespace_selector: Option<String>,
    /// Address of the health (/healthz, /readyz) and Prometheus (/metrics) server.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so that several replicas run with one writer.
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the leader-election Lease (default: the watch namespace, POD_NAMESPACE or default).
    #[arg(long, env = "LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Lease duration: how long a dead leader keeps the lease before another replica takes over.
    #[arg(long, default_value = "15s")]
    lease_duration: kube::core::Duration,
    /// Identity of this replica in the Lease and in Events (default: POD_NAME or the host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How many deliveries are reconciled at once.
    #[arg(long, default_value_t = 16)]
    reconcile_concurrency: u16,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: telemetry::LogFormat,
    /// The longest a DNS walk or TLS probe is shared with other deliveries; each delivery also
    /// accepts nothing older than its own recheck interval, nor than a record's TTL.
    #[arg(long, default_value = "30s")]
    probe_cache_window: kube::core::Duration,
    /// No delivery is rechecked more often than this (a smaller recheckInterval is raised to
    /// it; the CRD refuses less than 30s).
    #[arg(long, default_value = "30s")]
    min_recheck_interval: kube::core::Duration,
    /// A reconcile whose probes have not finished by then is cut short and its probed steps
    /// reported Unknown (ProbeTimeout).
    #[arg(long, default_value = "2m")]
    reconcile_timeout: kube::core::Duration,
    /// /healthz fails when reconciles are in flight and none finished for this long.
    #[arg(long, default_value = "5m")]
    stall_timeout: kube::core::Duration,
    /// After SIGTERM, how long reconciles in flight may take before the process exits anyway.
    #[arg(long, default_value = "5s")]
    shutdown_grace: kube::core::Duration,
    /// Read and watch only the Secrets carrying this label selector (e.g.
    /// httpsdelivery.dev/certificate=true); deliveries referencing others get SecretNotAllowed.
    #[arg(long, env = "SECRET_LABEL_SELECTOR")]
    secret_label_selector: Option<String>,
    /// The operator's own namespace, where ClusterCdnAccounts' credentials Secrets are read.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    operator_namespace: String,
    /// Report the hostnames of Ingress and HTTPRoute objects that no HttpsDelivery covers
    /// (metric httpsdelivery_uncovered_hostnames, one Event each). Read-only.
    #[arg(long, env = "AUDIT_ROUTES")]
    audit_routes: bool,
    /// With --audit-routes: generate an HttpsDelivery per hostname of each route annotated
    /// httpsdelivery.dev/template: NAME, from the ConfigMap NAME of its namespace.
    #[arg(long, env = "GENERATE_FROM_ROUTES", requires = "audit_routes")]
    generate_from_routes: bool,
    #[command(flatten)]
    probe: ProbeFlags,
}

#[derive(Args, Clone, Debug)]
struct ProbeFlags {
    /// DNS server to query, IP:PORT (repeatable; default: the system resolver).
    #[arg(long = "dns-server")]
    dns_servers: Vec<SocketAddr>,
    /// Extra trust anchors (PEM), besides the bundled web roots (repeatable).
    #[arg(long = "ca-file")]
    ca_files: Vec<PathBuf>,
    /// Port of the edge probe.
    #[arg(long = "https-port", default_value_t = 443)]
    https_port: u16,
    /// Permit probes to targets otherwise refused (loopback, link-local, metadata) (repeatable).
    #[arg(long = "allow-cidr")]
    allow_cidrs: Vec<ipnet::IpNet>,
    /// How many DNS walks and TLS probes run at once, in the whole process.
    #[arg(long = "probe-concurrency", default_value_t = 64)]
    concurrency: usize,
    /// Port the zones' authoritative name servers are asked on (DnsHealthy).
    #[arg(long = "dns-authoritative-port", default_value_t = 53)]
    authoritative_port: u16,
    /// Port of the plain-HTTP probe that checks the redirect to HTTPS (EdgeHttpOk).
    #[arg(long = "http-port", default_value_t = 80)]
    http_port: u16,
}

impl From<ProbeFlags> for ProbeConfig {
    fn from(f: ProbeFlags) -> Self {
        ProbeConfig {
            dns_servers: f.dns_servers,
            ca_files: f.ca_files,
            https_port: f.https_port,
            allow_cidrs: f.allow_cidrs,
            concurrency: f.concurrency,
            authoritative_port: f.authoritative_port,
            http_port: f.http_port,
            ..ProbeConfig::default()
        }
    }
}

/// The file name of the binary as a kubectl plugin (`make install` links it): for
/// `kubectl httpsdelivery ARGS` kubectl runs `kubectl-httpsdelivery ARGS`.
const KUBECTL_PLUGIN: &str = "kubectl-httpsdelivery";

/// How usage and errors name the command, from the name it was run by (argv[0]): as a kubectl
/// plugin, what the user typed, `kubectl httpsdelivery`; else `httpsdelivery-operator`.
fn bin_name(argv0: Option<&OsStr>) -> &'static str {
    match argv0.and_then(|a| Path::new(a).file_name()) {
        Some(name) if name == KUBECTL_PLUGIN => "kubectl httpsdelivery",
        _ => "httpsdelivery-operator",
    }
}

fn parse_cli() -> Cli {
    let argv0 = std::env::args_os().next();
    let matches = Cli::command()
        .bin_name(bin_name(argv0.as_deref()))
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() {
    let cli = parse_cli();
    let code = match cli.command {
        // Long strings (CEL rules, descriptions) stay on one line rather than being folded at 80
        // columns; kubectl and helm read either.
        Command::Crd { kind } => match httpsdelivery_operator::api::crd_of(&kind) {
            None => {
                eprintln!(
                    "error: no CRD named {kind:?}; use httpsdelivery, cdnaccount or clustercdnaccount"
                );
                2
            }
            Some(crd) => match serde_saphyr::to_string_with_options(
                &crd,
                serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX },
            ) {
                Ok(y) => {
                    print!("{y}");
                    0
                }
                Err(e) => {
                    eprintln!("error: cannot render the CRD: {e}");
                    1
                }
            },
        },
        Command::Run(args) => match OperatorConfig::try_from(*args) {
            Ok(config) => block_on(controller::operate(config)),
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Command::Check {
            paths,
            output,
            now,
            max_file_size,
            probe,
        } => block_on(cli::run(
            CheckOptions {
                paths,
                format: output,
                now,
                probe: probe.into(),
            },
            cli::input::LoadOptions { max_file_size },
        )),
    };
    std::process::exit(code);
}

/// Runs a subcommand on a multi-threaded runtime; returns its exit code.
fn block_on(work: impl std::future::Future<Output = i32>) -> i32 {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(work),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            1
        }
    }
}

impl TryFrom<RunArgs> for OperatorConfig {
    type Error = String;

    fn try_from(a: RunArgs) -> Result<Self, String> {
        Ok(OperatorConfig {
            scope: WatchScope::from_flags(
                &a.watch_namespace,
                a.watch_namespace_selector.as_deref(),
            )?,
            metrics_addr: a.metrics_addr,
            leader_elect: a.leader_elect,
            lease_namespace: a.lease_namespace,
            lease_duration: a.lease_duration.into(),
            identity: a.identity,
            reconcile_concurrency: a.reconcile_concurrency,
            log_format: a.log_format,
            probe: ProbeConfig {
                cache_window: a.probe_cache_window.into(),
                ..a.probe.into()
            },
            secret_label_selector: a.secret_label_selector,
            operator_namespace: a.operator_namespace,
            routes: a.audit_routes.then_some(controller::routes::RoutesConfig {
                generate: a.generate_from_routes,
            }),
            limits: Bounds {
                min_recheck_interval: a.min_recheck_interval.into(),
                reconcile_timeout: a.reconcile_timeout.into(),
                stall_timeout: a.stall_timeout.into(),
                shutdown_grace: a.shutdown_grace.into(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_as_the_kubectl_plugin_it_calls_itself_kubectl_httpsdelivery() {
        let name = |argv0: &str| bin_name(Some(OsStr::new(argv0)));
        assert_eq!(
            name("/usr/local/bin/kubectl-httpsdelivery"),
            "kubectl httpsdelivery"
        );
        assert_eq!(name("kubectl-httpsdelivery"), "kubectl httpsdelivery");
        assert_eq!(
            name("/usr/local/bin/httpsdelivery-operator"),
            "httpsdelivery-operator"
        );
        assert_eq!(
            name("/tmp/kubectl-httpsdelivery-x"),
            "httpsdelivery-operator"
        );
        assert_eq!(bin_name(None), "httpsdelivery-operator");
    }
}
