//! Loopback fixtures for tests, benchmarks and the demo: a test PKI, DNS zones, TLS servers.
//! Everything binds to 127.0.0.0/8 only.

pub mod controlplane;
pub mod dns;
pub mod pki;
pub mod tls;
pub mod world;
