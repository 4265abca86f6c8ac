//! Command line of httpsdelivery-operator.

use clap::{Args, Parser, Subcommand};
use httpsdelivery_operator::api::HttpsDelivery;
use httpsdelivery_operator::cli::{self, CheckOptions, Format};
use httpsdelivery_operator::controller::{self, RunConfig, leader};
use httpsdelivery_operator::probe::{ProbeConfig, Prober};
use httpsdelivery_operator::telemetry::{self, Metrics};
use kube::CustomResourceExt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

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
        #[command(flatten)]
        probe: ProbeFlags,
    },
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Args)]
struct RunArgs {
    /// Watch only this namespace (the chart then needs Roles, not ClusterRoles).
    #[arg(long, env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
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
    /// How many DNS walks and TLS probes run at once.
    #[arg(long = "probe-concurrency", default_value_t = 64)]
    concurrency: usize,
}

impl From<ProbeFlags> for ProbeConfig {
    fn from(f: ProbeFlags) -> Self {
        ProbeConfig {
            dns_servers: f.dns_servers,
            ca_files: f.ca_files,
            https_port: f.https_port,
            allow_cidrs: f.allow_cidrs,
            concurrency: f.concurrency,
            ..ProbeConfig::default()
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Crd => match serde_yaml::to_string(&HttpsDelivery::crd()) {
            Ok(y) => {
                print!("{y}");
                0
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                1
            }
        },
        Command::Run(args) => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    std::process::exit(1);
                }
            };
            runtime.block_on(run(*args))
        }
        Command::Check {
            paths,
            output,
            now,
            probe,
        } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    std::process::exit(1);
                }
            };
            runtime.block_on(cli::run(CheckOptions {
                paths,
                format: output,
                now,
                probe: probe.into(),
            }))
        }
    };
    std::process::exit(code);
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run(args: RunArgs) -> i32 {
    telemetry::init_logging(args.log_format);
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build a Kubernetes client from the kubeconfig or the in-cluster config");
            return 1;
        }
    };
    let metrics = Metrics::new();
    let prober = match Prober::new(&args.probe.clone().into()) {
        Ok(p) => p.with_recorder(Arc::new(metrics.clone())),
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the probes");
            return 1;
        }
    };
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = {
        let rx = stop_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let server = match telemetry::bind(args.metrics_addr).await {
        Ok(listener) => tokio::spawn(telemetry::serve_listener(
            listener,
            metrics.clone(),
            ready.clone(),
            stopped(),
        )),
        Err(e) => {
            tracing::error!(addr = %args.metrics_addr, error = %e, "cannot listen for health and metrics");
            return 1;
        }
    };
    let config = RunConfig {
        watch_namespace: args.watch_namespace.clone(),
        identity: identity.clone(),
        concurrency: args.reconcile_concurrency.max(1),
    };
    tracing::info!(identity, watch_namespace = ?args.watch_namespace, leader_elect = args.leader_elect, "starting");
    let work = controller::run(
        client.clone(),
        config,
        prober,
        metrics,
        ready.clone(),
        stopped(),
    );
    let code = if args.leader_elect {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| args.watch_namespace.clone())
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        // A standby is healthy and ready to take over: report it ready, as controller-runtime
        // does, so that rolling updates and disruption budgets work with several replicas.
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut lc = leader::LeaderConfig::new(namespace, identity);
        lc.lease_duration = args.lease_duration.into();
        // The grace (how early the leader renews) must stay well inside a short lease.
        let third = std::time::Duration::from_secs(lc.lease_duration.as_secs() / 3);
        lc.grace = lc.grace.min(third).max(std::time::Duration::from_secs(1));
        match leader::run_as_leader(client, lc, || work).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, "leader election");
                1
            }
        }
    } else {
        work.await;
        0
    };
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    server.abort();
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
