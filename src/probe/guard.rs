//! Target guard: keeps probes away from the operator's own host and the cloud metadata service.
//!
//! Hostnames, target CNAMEs and origins come from objects anyone with write access to a
//! namespace can create, so without this guard the operator's TLS probes would be a way to make
//! it connect to its own loopback services or to the instance metadata endpoint (credentials).

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Refuses loopback, unspecified, link-local and cloud metadata addresses unless an
/// `--allow-cidr` network contains them.
#[derive(Clone, Debug, Default)]
pub struct TargetGuard {
    allow: Vec<IpNet>,
}

/// Metadata endpoints, checked before the broader classes because some of them are also
/// link-local and the more specific reason is the more useful one.
const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack...
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task credentials
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
];
const METADATA_V6: [Ipv6Addr; 1] = [
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254), // AWS IMDS over IPv6
];

impl TargetGuard {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// `Ok` when a probe may connect to `ip`; otherwise why not, and the flag that permits it.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        // An IPv4 address can hide inside IPv6 (IPv4-mapped, or NAT64's well-known prefix), and
        // the kernel or a NAT64 gateway will deliver such a connection to the IPv4 address.
        let embedded = embedded_ipv4(ip);
        if self.allowed(ip) || embedded.is_some_and(|v4| self.allowed(IpAddr::V4(v4))) {
            return Ok(());
        }
        let refused = match (embedded, ip) {
            (Some(v4), _) | (None, IpAddr::V4(v4)) => classify_v4(v4),
            (None, IpAddr::V6(v6)) => classify_v6(v6),
        };
        let Some((class, cidr)) = refused else {
            return Ok(());
        };
        let via = match embedded {
            Some(v4) => format!(" (it embeds the IPv4 address {v4})"),
            None => String::new(),
        };
        Err(format!(
            "{ip} is {class}{via}; pass --allow-cidr {cidr} to permit it"
        ))
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052).
    let s = v6.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

/// The refused class of an IPv4 address and the CIDR that would permit it.
fn classify_v4(ip: Ipv4Addr) -> Option<(&'static str, String)> {
    if METADATA_V4.contains(&ip) {
        Some(("a cloud metadata address", format!("{ip}/32")))
    } else if ip.is_loopback() {
        Some(("a loopback address", "127.0.0.0/8".to_owned()))
    } else if ip.is_unspecified() {
        Some(("the unspecified address", "0.0.0.0/32".to_owned()))
    } else if ip.is_link_local() {
        Some(("a link-local address", "169.254.0.0/16".to_owned()))
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<(&'static str, String)> {
    if METADATA_V6.contains(&ip) {
        Some(("a cloud metadata address", format!("{ip}/128")))
    } else if ip.is_loopback() {
        Some(("a loopback address", "::1/128".to_owned()))
    } else if ip.is_unspecified() {
        Some(("the unspecified address", "::/128".to_owned()))
    } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
        Some(("a link-local address", "fe80::/10".to_owned()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn public_addresses_pass() {
        let guard = TargetGuard::default();
        for a in [
            "93.184.215.14",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "10.0.0.1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(guard.check(ip(a)), Ok(()), "{a}");
        }
    }

    #[test]
    fn loopback_is_refused_with_the_flag_that_permits_it() {
        let guard = TargetGuard::default();
        assert_eq!(
            guard.check(ip("127.0.0.1")),
            Err(
                "127.0.0.1 is a loopback address; pass --allow-cidr 127.0.0.0/8 to permit it"
                    .to_owned()
            )
        );
        assert!(guard.check(ip("127.3.4.5")).is_err());
        assert_eq!(
            guard.check(ip("::1")),
            Err("::1 is a loopback address; pass --allow-cidr ::1/128 to permit it".to_owned())
        );
    }

    #[test]
    fn unspecified_is_refused() {
        let guard = TargetGuard::default();
        assert_eq!(
            guard.check(ip("0.0.0.0")),
            Err(
                "0.0.0.0 is the unspecified address; pass --allow-cidr 0.0.0.0/32 to permit it"
                    .to_owned()
            )
        );
        assert_eq!(
            guard.check(ip("::")),
            Err(":: is the unspecified address; pass --allow-cidr ::/128 to permit it".to_owned())
        );
    }

    #[test]
    fn link_local_is_refused() {
        let guard = TargetGuard::default();
        assert_eq!(
            guard.check(ip("169.254.1.1")),
            Err("169.254.1.1 is a link-local address; pass --allow-cidr 169.254.0.0/16 to permit it".to_owned())
        );
        assert_eq!(
            guard.check(ip("fe80::1")),
            Err(
                "fe80::1 is a link-local address; pass --allow-cidr fe80::/10 to permit it"
                    .to_owned()
            )
        );
        assert!(guard.check(ip("febf:ffff::1")).is_err());
        assert_eq!(guard.check(ip("fec0::1")), Ok(()));
    }

    #[test]
    fn metadata_addresses_are_refused_as_such() {
        let guard = TargetGuard::default();
        for a in ["169.254.169.254", "169.254.170.2", "100.100.100.200"] {
            assert_eq!(
                guard.check(ip(a)),
                Err(format!(
                    "{a} is a cloud metadata address; pass --allow-cidr {a}/32 to permit it"
                ))
            );
        }
        assert_eq!(
            guard.check(ip("fd00:ec2::254")),
            Err("fd00:ec2::254 is a cloud metadata address; pass --allow-cidr fd00:ec2::254/128 to permit it".to_owned())
        );
        // Its neighbours are ordinary addresses (CGNAT, ULA).
        assert_eq!(guard.check(ip("100.100.100.201")), Ok(()));
        assert_eq!(guard.check(ip("fd00:ec2::253")), Ok(()));
    }

    #[test]
    fn ipv4_hidden_in_ipv6_is_refused() {
        let guard = TargetGuard::default();
        assert_eq!(
            guard.check(ip("::ffff:127.0.0.1")),
            Err("::ffff:127.0.0.1 is a loopback address (it embeds the IPv4 address 127.0.0.1); pass --allow-cidr 127.0.0.0/8 to permit it".to_owned())
        );
        for a in [
            "::ffff:0.0.0.0",
            "::ffff:169.254.3.4",
            "::ffff:169.254.169.254",
            "::ffff:169.254.170.2",
            "::ffff:100.100.100.200",
            "64:ff9b::169.254.169.254",
            "64:ff9b::127.0.0.1",
        ] {
            assert!(guard.check(ip(a)).is_err(), "{a}");
        }
        assert!(
            guard
                .check(ip("::ffff:169.254.169.254"))
                .unwrap_err()
                .contains("cloud metadata")
        );
    }

    #[test]
    fn allow_cidr_overrides_every_class() {
        let guard = TargetGuard::new(vec![
            net("127.0.0.0/8"),
            net("::1/128"),
            net("169.254.0.0/16"),
        ]);
        assert_eq!(guard.check(ip("127.0.0.7")), Ok(()));
        assert_eq!(guard.check(ip("::1")), Ok(()));
        assert_eq!(guard.check(ip("169.254.169.254")), Ok(()));
        // The IPv4 allow also covers the mapped form of the same address.
        assert_eq!(guard.check(ip("::ffff:127.0.0.1")), Ok(()));
        // ...but not the classes it does not contain.
        assert!(guard.check(ip("0.0.0.0")).is_err());
        assert!(guard.check(ip("fe80::1")).is_err());
        assert!(guard.check(ip("fd00:ec2::254")).is_err());

        let narrow = TargetGuard::new(vec![net("127.0.0.7/32")]);
        assert_eq!(narrow.check(ip("127.0.0.7")), Ok(()));
        assert!(narrow.check(ip("127.0.0.1")).is_err());

        let mapped = TargetGuard::new(vec![net("::ffff:127.0.0.0/104")]);
        assert_eq!(mapped.check(ip("::ffff:127.0.0.1")), Ok(()));
    }
}
