//! Fixtures for tests, benchmarks and the demo: a test PKI, DNS zones and TLS servers on
//! loopback, a real control plane, and the operator binary run as a process. Everything binds
//! to 127.0.0.0/8 only.

pub mod cdn;
pub mod controlplane;
pub mod dns;
pub mod dnssec;
pub mod edge_http;
pub mod http;
pub mod json;
pub mod operator;
pub mod pki;
pub mod process;
pub mod tls;
pub mod world;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// Loopback ports the kernel considers free right now; all bound at once so that they differ.
/// Someone else may take one before it is bound again, which is rare enough for tests.
pub fn free_ports<const N: usize>() -> io::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .collect::<io::Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// One free loopback port (see [`free_ports`]).
pub fn free_port() -> u16 {
    let [port] = free_ports().unwrap_or_else(|e| panic!("find a free loopback port: {e}"));
    port
}
