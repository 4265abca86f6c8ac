//! httpsdelivery-operator: runs the CDN "Troubleshooting HTTPS Setup" procedure for every
//! HttpsDelivery and reports which step is wrong and how to fix it.

pub mod api;
pub mod checks;
pub mod cli;
pub mod controller;
pub mod probe;
pub mod provider;
pub mod telemetry;
