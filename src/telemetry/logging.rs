//! Logs: one tracing subscriber on stderr, text for people or JSON for collectors.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Used when `RUST_LOG` is unset or unparsable: the client libraries are chatty at info and
/// their noise would drown the per-object verdicts.
const DEFAULT_LOG_FILTER: &str = "info,kube=warn,hickory=warn,rustls=warn";

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global tracing subscriber, writing to stderr (stdout belongs to command output
/// such as `crd` and `check -o json`).
///
/// The filter comes from `RUST_LOG`, defaulting to `info,kube=warn,hickory=warn,rustls=warn`.
/// Calling it again is harmless: the first subscriber stays (tests and embedders may have
/// installed one already). Returns whether this call installed it.
pub fn init_logging(format: LogFormat) -> bool {
    let (filter, bad_filter) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(error) => {
            // Unset is the normal case; only a set-but-invalid value is worth a warning.
            let bad = std::env::var_os(EnvFilter::DEFAULT_ENV).map(|_| error);
            (EnvFilter::new(DEFAULT_LOG_FILTER), bad)
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_ok()
        && let Some(error) = bad_filter
    {
        tracing::warn!(%error, default = DEFAULT_LOG_FILTER, "RUST_LOG is invalid, using the default filter");
    }
    installed.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_subscriber_is_refused_and_the_first_stays() {
        init_logging(LogFormat::Json);
        // Whichever call installed the process's subscriber, one is installed now.
        assert!(!init_logging(LogFormat::Text));
        assert!(tracing::dispatcher::has_been_set());
    }

    #[test]
    fn the_default_filter_parses() {
        assert!(EnvFilter::try_new(DEFAULT_LOG_FILTER).is_ok());
    }
}
