//! The `check` command: the engine run over a GitOps repository's manifests, without a cluster.

pub mod cdn;
pub mod input;
pub mod output;

use crate::api::ConditionStatus;
use crate::checks::inventory::{self, Claim};
use crate::checks::{self, Evaluation, Memory, Targets};
use crate::probe::{Limits, ProbeConfig, Prober};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Exit codes of `check`.
pub const EXIT_READY: i32 = 0;
pub const EXIT_NOT_READY: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

pub struct CheckOptions {
    pub paths: Vec<PathBuf>,
    pub format: Format,
    pub now: Option<jiff::Timestamp>,
    pub probe: ProbeConfig,
}

/// One delivery's result.
pub struct Checked {
    pub delivery: input::LoadedDelivery,
    pub evaluation: Evaluation,
}

/// Runs every delivery through the engine, sharing DNS and TLS work across them.
pub async fn check_all(
    prober: &Prober,
    accounts: &cdn::CliAccounts,
    manifests: &input::Manifests,
    now: jiff::Timestamp,
    progress: bool,
) -> Vec<Checked> {
    // Without creation times, the first delivery in file order keeps a hostname.
    let claims: Vec<Claim<'_, usize>> = manifests
        .deliveries
        .iter()
        .enumerate()
        .map(|(index, d)| Claim {
            key: format!("{}/{}", d.namespace, d.name),
            hostname: &d.delivery.spec.hostname,
            precedence: index,
        })
        .collect();
    let conflicts = inventory::conflicts(&claims);
    let total = manifests.deliveries.len();
    let done = Arc::new(AtomicUsize::new(0));
    let futures = manifests.deliveries.iter().map(|d| {
        let done = done.clone();
        let conflict = conflicts
            .get(&format!("{}/{}", d.namespace, d.name))
            .cloned();
        async move {
            let spec = &d.delivery.spec;
            // Settings were validated when the manifests were read.
            let settings = spec.settings().unwrap_or_default();
            let secret = spec.certificate.secret_ref.as_ref().and_then(|r| {
                manifests
                    .secrets
                    .get(&(d.namespace.clone(), r.name.clone()))
                    .cloned()
            });
            let cdn = match &spec.cdn {
                Some(c) => Some(accounts.read(&d.namespace, c, &spec.hostname).await),
                None => None,
            };
            let evaluation = check_one(
                prober,
                spec,
                cdn,
                &settings,
                secret,
                conflict.as_deref(),
                now,
            )
            .await;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if progress && (n.is_multiple_of(50) || n == total) {
                eprint!("\rchecked {n}/{total} deliveries");
                if n == total {
                    eprintln!();
                }
            }
            Checked {
                delivery: d.clone(),
                evaluation,
            }
        }
    });
    futures::future::join_all(futures).await
}

/// One delivery through the engine; `cdn` is what its CDN account answered (provider mode).
async fn check_one(
    prober: &Prober,
    spec: &crate::api::HttpsDeliverySpec,
    cdn: Option<checks::cdn::CdnObserved>,
    settings: &crate::api::CheckSettings,
    secret: Option<checks::secret::SecretContent>,
    conflict: Option<&str>,
    now: jiff::Timestamp,
) -> checks::Evaluation {
    // One run of `check` is one cycle: every observation is shared for all of it.
    let limits = Limits {
        timeout: settings.timeout,
        max_age: Duration::MAX,
    };
    let desired = match checks::desired_of(spec, cdn.as_ref()) {
        Ok(d) => d,
        Err(problem) => return checks::evaluate_invalid(&problem, &Memory::default()),
    };
    let observed = prober
        .observe(
            &Targets::of_mode(&desired, cdn.as_ref()),
            secret,
            limits,
            now,
        )
        .await;
    let mut evaluation = checks::evaluate(
        &desired,
        settings,
        &observed,
        &Memory::default(),
        conflict,
        now,
    );
    if let Some(cdn) = &cdn {
        checks::cdn::apply(
            &mut evaluation,
            spec,
            cdn,
            conflict,
            now,
            settings.recheck_interval,
        );
    }
    evaluation
}

/// The `check` command, reading its input within `limits` (e.g. a per-file size limit given on
/// the command line). Returns the process exit code.
pub async fn run(opts: CheckOptions, limits: input::LoadOptions) -> i32 {
    let manifests = match input::load_with(&opts.paths, &limits) {
        Ok(m) => m,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!(
                "{} problem(s) in the input; nothing was checked.",
                errors.len()
            );
            return EXIT_BAD_INPUT;
        }
    };
    // Nothing is skipped silently: what was left aside, and why, in a line each.
    for notice in manifests.notices() {
        eprintln!("{notice}");
    }
    if manifests.deliveries.is_empty() {
        eprintln!(
            "error: no HttpsDelivery (apiVersion httpsdelivery.dev/v1alpha1) found in {}",
            opts.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return EXIT_BAD_INPUT;
    }
    let probe = ProbeConfig {
        cache_window: Duration::MAX,
        ..opts.probe
    };
    let prober = match Prober::new(&probe) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let now = opts.now.unwrap_or_else(jiff::Timestamp::now);
    let progress = std::io::stderr().is_terminal() && manifests.deliveries.len() > 50;
    let accounts = cdn::CliAccounts::new(&manifests, &probe, |var| std::env::var(var).ok());
    let results = check_all(&prober, &accounts, &manifests, now, progress).await;
    let rendered = match opts.format {
        Format::Table => output::table(&results),
        Format::Json => output::json(&results),
        Format::Yaml => output::yaml(&results),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(rendered.as_bytes());
    let _ = stdout.flush();
    if results
        .iter()
        .all(|r| r.evaluation.ready().status == ConditionStatus::True)
    {
        EXIT_READY
    } else {
        EXIT_NOT_READY
    }
}
