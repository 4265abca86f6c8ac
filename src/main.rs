//! Command line of httpsdelivery-operator.

use clap::{Args, Parser, Subcommand};
use httpsdelivery_operator::api::HttpsDelivery;
use httpsdelivery_operator::cli::{self, CheckOptions, Format};
use httpsdelivery_operator::probe::ProbeConfig;
use kube::CustomResourceExt;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Print the CustomResourceDefinition as YAML.
    Crd,
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
