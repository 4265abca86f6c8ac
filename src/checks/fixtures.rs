//! Test fixtures for the pure evaluation: a healthy spec and observations to break one at a time.

use crate::api::{Desired, HttpsDeliverySpec};
use crate::checks::dns::{CnameLink, DnsObservation, DnsOutcome};
use crate::checks::edge_serving::EdgeObservation;
use crate::checks::origin::OriginObservation;
use crate::checks::tls::{TlsEndpoint, TlsObservation, TlsOutcome};

pub const HEALTHY: &str = r#"
hostname: www.shop.example
certificate:
  platform: HttpLarge
  targetCname: cs1.wpc.cdn.example
edgeCname:
  hostname: www.shop.example
  platform: HttpLarge
  origin: shop-origin
  modifiedAt: "2026-11-01T10:00:00Z"
origin:
  name: shop-origin
  host: origin.shop.example
  port: 443
  protocol: HttpsOnly
  httpsEdgeProtocol: true
"#;

/// The healthy delivery as the checks see it.
pub fn spec() -> Desired {
    crd_spec()
        .declared()
        .expect("the fixture declares every step")
}

/// The healthy delivery as the API object's spec.
pub fn crd_spec() -> HttpsDeliverySpec {
    serde_saphyr::from_str(HEALTHY).expect("fixture spec parses")
}

pub fn now() -> jiff::Timestamp {
    "2026-11-29T12:00:00Z".parse().expect("fixture time parses")
}

pub fn link(name: &str, target: &str) -> CnameLink {
    CnameLink {
        name: name.into(),
        target: target.into(),
        ttl: 300,
        validated: false,
    }
}

pub fn addresses(name: &str, ips: &[&str]) -> DnsOutcome {
    DnsOutcome::Addresses {
        name: name.into(),
        addresses: ips.iter().map(|i| i.parse().expect("fixture ip")).collect(),
    }
}

pub fn dns_ok() -> DnsObservation {
    DnsObservation {
        name: "www.shop.example".into(),
        chain: vec![link("www.shop.example", "cs1.wpc.cdn.example")],
        outcome: addresses("cs1.wpc.cdn.example", &["192.0.2.10"]),
    }
}

pub fn handshake_ok() -> TlsOutcome {
    TlsOutcome::Handshake {
        protocol_version: "TLSv1.3".into(),
        chain: vec![],
        verified: Ok(()),
    }
}

pub fn probe(addr: &str, sni: &str, outcome: TlsOutcome) -> TlsObservation {
    TlsObservation {
        endpoint: TlsEndpoint {
            address: addr.parse().expect("fixture addr"),
            sni: sni.into(),
        },
        outcome,
    }
}

pub fn edge_ok() -> EdgeObservation {
    EdgeObservation {
        target_dns: DnsObservation {
            name: "cs1.wpc.cdn.example".into(),
            chain: vec![],
            outcome: addresses("cs1.wpc.cdn.example", &["192.0.2.10"]),
        },
        probes: vec![probe("192.0.2.10:443", "www.shop.example", handshake_ok())],
    }
}

pub fn origin_ok() -> OriginObservation {
    OriginObservation {
        dns: Some(DnsObservation {
            name: "origin.shop.example".into(),
            chain: vec![],
            outcome: addresses("origin.shop.example", &["192.0.2.20"]),
        }),
        probes: vec![probe(
            "192.0.2.20:443",
            "origin.shop.example",
            handshake_ok(),
        )],
    }
}
