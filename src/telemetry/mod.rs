//! Telemetry: logs, metrics and the health server, one module each.

pub mod health;
pub mod logging;
pub mod metrics;
mod object_series;

pub use health::{Health, WorkGuard, bind, serve_listener};
pub use logging::{LogFormat, init_logging};
pub use metrics::{Metrics, OPENMETRICS_CONTENT_TYPE, ReconcileTimer, Totals};
