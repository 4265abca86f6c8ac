//! Target guard: keeps probes on the public internet, where CDN edges and origins live.
//!
//! Hostnames, target CNAMEs and origins come from objects anyone with write access to a
//! namespace can create, and the addresses they resolve to come from whoever runs the DNS zone.
//! Without this guard the operator's TLS probes would be a way to make it connect to its own
//! loopback services, to the instance metadata endpoint (credentials), or to any service of the
//! cluster's and the company's private networks (server-side request forgery). So every address
//! that can never be a CDN's public edge or origin is refused before a socket is opened, unless
//! an `--allow-cidr` network contains it. Each refusal names the class of the address and the
//! `--allow-cidr` that would permit it.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Refuses every address that cannot be a CDN's public edge or origin (the ranges of
/// `V4_REFUSED` and `V6_REFUSED`, the deprecated IPv4-compatible IPv6 addresses, and IPv6
/// forms that embed a refused IPv4 address) unless an `--allow-cidr` network contains it.
#[derive(Clone, Debug, Default)]
pub struct TargetGuard {
    allow: Vec<IpNet>,
}

/// One refused range: what its addresses are (completing "ADDRESS is ...") and the network an
/// `--allow-cidr` has to contain to permit them.
struct Range<N> {
    net: N,
    class: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, class: &'static str) -> Range<Ipv4Net> {
    Range {
        net: Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len),
        class,
    }
}

const fn v6(s: [u16; 8], len: u8, class: &'static str) -> Range<Ipv6Net> {
    let ip = Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
    Range {
        net: Ipv6Net::new_assert(ip, len),
        class,
    }
}

const METADATA: &str = "a cloud metadata address";
const LOOPBACK: &str = "a loopback address";
const UNSPECIFIED: &str = "the unspecified address";
const LINK_LOCAL: &str = "a link-local address";
const PRIVATE: &str = "a private address (RFC 1918)";
const MULTICAST: &str = "a multicast address";
const BENCHMARKING: &str = "a benchmarking address";
const DOCUMENTATION: &str = "a documentation address";
const PROTOCOL_ASSIGNMENT: &str = "an IETF protocol assignment address";
const IPV4_COMPATIBLE: &str = "a deprecated IPv4-compatible address (RFC 4291)";
const THIS_NETWORK: &str = "a 'this network' address (RFC 1122)";
const BROADCAST: &str = "the broadcast address";
const CGNAT: &str = "a carrier-grade NAT address (RFC 6598)";
const RESERVED: &str = "a reserved address (RFC 1112)";
const SITE_LOCAL: &str = "a deprecated site-local address (RFC 3879)";
const UNIQUE_LOCAL: &str = "a unique local address (RFC 4193)";
const DISCARD_ONLY: &str = "a discard-only address (RFC 6666)";
const TEREDO: &str = "a Teredo tunnel address (RFC 4380)";

/// Refused IPv4 ranges, the most specific first: the first that contains an address names its
/// class. The metadata endpoints come before the link-local and carrier-grade NAT ranges that
/// hold them because the more specific reason is the more useful one.
const V4_REFUSED: [Range<Ipv4Net>; 19] = [
    v4(169, 254, 169, 254, 32, METADATA), // AWS, GCP, Azure, OpenStack...
    v4(169, 254, 170, 2, 32, METADATA),   // AWS ECS task credentials
    v4(100, 100, 100, 200, 32, METADATA), // Alibaba Cloud
    v4(0, 0, 0, 0, 32, UNSPECIFIED),
    v4(255, 255, 255, 255, 32, BROADCAST),
    v4(0, 0, 0, 0, 8, THIS_NETWORK),
    v4(127, 0, 0, 0, 8, LOOPBACK),
    v4(169, 254, 0, 0, 16, LINK_LOCAL),
    v4(10, 0, 0, 0, 8, PRIVATE),
    v4(172, 16, 0, 0, 12, PRIVATE),
    v4(192, 168, 0, 0, 16, PRIVATE),
    v4(100, 64, 0, 0, 10, CGNAT),
    v4(192, 0, 0, 0, 24, PROTOCOL_ASSIGNMENT),
    v4(192, 0, 2, 0, 24, DOCUMENTATION),
    v4(198, 51, 100, 0, 24, DOCUMENTATION),
    v4(203, 0, 113, 0, 24, DOCUMENTATION),
    v4(198, 18, 0, 0, 15, BENCHMARKING),
    v4(224, 0, 0, 0, 4, MULTICAST),
    v4(240, 0, 0, 0, 4, RESERVED),
];

/// Refused IPv6 ranges, the most specific first. `::/96` (IPv4-compatible, refused too) and the
/// forms that embed an IPv4 address are handled after these, by `refused_v6`.
const V6_REFUSED: [Range<Ipv6Net>; 13] = [
    v6([0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254], 128, METADATA), // AWS IMDS over IPv6
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, UNSPECIFIED),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, LOOPBACK),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LINK_LOCAL),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, SITE_LOCAL),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, UNIQUE_LOCAL),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, MULTICAST),
    v6([0x0100, 0, 0, 0, 0, 0, 0, 0], 64, DISCARD_ONLY),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, TEREDO),
    v6([0x2001, 0x0002, 0, 0, 0, 0, 0, 0], 48, BENCHMARKING),
    v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32, DOCUMENTATION),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, DOCUMENTATION),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, PROTOCOL_ASSIGNMENT),
];

/// Why an address is refused: its class, the network that permits it, and the IPv4 address
/// it was refused for when it is an IPv6 form of one (with whether other readings of it are
/// refused too).
struct Refusal {
    class: &'static str,
    allow: String,
    embeds: Option<Ipv4Addr>,
    other_readings: bool,
}

impl TargetGuard {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// `Ok` when a probe may connect to `ip`; otherwise why not, and the flag that permits it.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        if self.allowed(ip) {
            return Ok(());
        }
        let refusal = match ip {
            IpAddr::V4(v4) => refused_v4(v4),
            IpAddr::V6(v6) => self.refused_v6(v6),
        };
        let Some(Refusal {
            class,
            allow,
            embeds,
            other_readings,
        }) = refusal
        else {
            return Ok(());
        };
        let via = match (embeds, other_readings) {
            (Some(v4), false) => format!(" (it embeds the IPv4 address {v4})"),
            (Some(v4), true) => format!(
                " (it embeds the IPv4 address {v4}, and other refused IPv4 addresses under other \
                 NAT64 prefix lengths)"
            ),
            (None, _) => String::new(),
        };
        Err(format!(
            "{ip} is {class}{via}; pass --allow-cidr {allow} to permit it"
        ))
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&ip))
    }

    fn refused_v6(&self, ip: Ipv6Addr) -> Option<Refusal> {
        if let Some(range) = V6_REFUSED.iter().find(|r| r.net.contains(&ip)) {
            return Some(Refusal {
                class: range.class,
                allow: range.net.to_string(),
                embeds: None,
                other_readings: false,
            });
        }
        let bits = u128::from(ip);
        // `::a.b.c.d`: deprecated since 2006, never a real destination; refused whatever it
        // embeds, and only an allow of the IPv6 address itself permits it, because an allow
        // wide enough to cover `::/96` would also cover `::` and `::1`.
        if bits >> 32 == 0 {
            return Some(Refusal {
                class: IPV4_COMPATIBLE,
                allow: format!("{ip}/128"),
                embeds: Some(ipv4(bits)),
                other_readings: false,
            });
        }
        // An IPv4 address can hide inside IPv6: the kernel delivers an IPv4-mapped address to
        // the IPv4 address, and a 6to4 relay or a NAT64 gateway forwards to the one embedded.
        // Such an address is refused when one of its readings is a refused IPv4 address that
        // no `--allow-cidr` permits.
        let mut refused = ipv4_readings(bits)
            .into_iter()
            .filter(|v4| !self.allowed(IpAddr::V4(*v4)))
            .filter_map(|v4| {
                refused_v4(v4).map(|r| Refusal {
                    embeds: Some(v4),
                    ..r
                })
            });
        let first = refused.next()?;
        if refused.next().is_none() {
            return Some(first);
        }
        // Several readings refused (a local-use NAT64 address that the prefix lengths read
        // differently): no one IPv4 range permits it, so name the address itself.
        Some(Refusal {
            allow: format!("{ip}/128"),
            other_readings: true,
            ..first
        })
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<Refusal> {
    V4_REFUSED
        .iter()
        .find(|r| r.net.contains(&ip))
        .map(|r| Refusal {
            class: r.class,
            allow: r.net.to_string(),
            embeds: None,
            other_readings: false,
        })
}

/// `len` bits of `x` from bit `start`, counted from the most significant bit.
fn field(x: u128, start: u32, len: u32) -> u128 {
    (x >> (128 - start - len)) & ((1 << len) - 1)
}

fn ipv4(bits: u128) -> Ipv4Addr {
    // Truncation intended: the low 32 bits.
    Ipv4Addr::from(bits as u32)
}

/// The IPv4 addresses an IPv6 address leads to, by the forms that embed one (none for an
/// ordinary IPv6 address).
fn ipv4_readings(x: u128) -> Vec<Ipv4Addr> {
    let low = ipv4(x);
    match x >> 32 {
        // IPv4-mapped ::ffff:a.b.c.d (RFC 4291).
        0xffff
        // IPv4-translated ::ffff:0:a.b.c.d (SIIT, RFC 2765).
        | 0xffff_0000
        // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): only the /96 format exists.
        | 0x0064_ff9b_0000_0000_0000_0000 => return vec![low],
        _ => {}
    }
    // 6to4 2002:AABB:CCDD::/48 (RFC 3056).
    if x >> 112 == 0x2002 {
        return vec![ipv4(field(x, 16, 32))];
    }
    // NAT64 local-use prefix 64:ff9b:1::/48 (RFC 8215): the gateway's prefix can be any of
    // the RFC 6052 lengths /48, /56, /64 or /96 inside it, and the address does not say which,
    // so every reading the address is consistent with counts (bits 64..72 are zero in all but
    // /96, and so are the suffix bits after the IPv4 address).
    if x >> 80 == 0x0064_ff9b_0001 {
        let mut readings = Vec::with_capacity(4);
        let u_zero = field(x, 64, 8) == 0;
        if u_zero && field(x, 88, 40) == 0 {
            readings.push(ipv4((field(x, 48, 16) << 16) | field(x, 72, 16)));
        }
        if u_zero && field(x, 96, 32) == 0 {
            readings.push(ipv4((field(x, 56, 8) << 24) | field(x, 72, 24)));
        }
        if u_zero && field(x, 104, 24) == 0 {
            readings.push(ipv4(field(x, 72, 32)));
        }
        readings.push(low);
        return readings;
    }
    Vec::new()
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

    /// What the guard must answer: `None` to let the address through, or the class and the
    /// `--allow-cidr` the refusal has to name.
    type Expect = Option<(&'static str, &'static str)>;

    const PASS: Expect = None;

    fn no(class: &'static str, allow: &'static str) -> Expect {
        Some((class, allow))
    }

    /// Checks every row and returns the rows the guard answers differently, so that one run
    /// shows them all.
    fn mismatches(guard: &TargetGuard, rows: &[(&str, Expect)]) -> Vec<String> {
        rows.iter()
            .filter_map(|(addr, expect)| {
                let seen = guard.check(ip(addr));
                let ok = match (expect, &seen) {
                    (None, Ok(())) => true,
                    (Some((class, allow)), Err(message)) => {
                        message.starts_with(&format!("{} is {class}", ip(addr)))
                            && message
                                .ends_with(&format!("; pass --allow-cidr {allow} to permit it"))
                    }
                    _ => false,
                };
                (!ok).then(|| format!("{addr}: expected {expect:?}, saw {seen:?}"))
            })
            .collect()
    }

    #[test]
    fn every_class_its_edges_and_the_public_addresses_around_them() {
        let rows: Vec<(&str, Expect)> = vec![
            // Public addresses, including the neighbours of refused ranges.
            ("8.8.8.8", PASS),
            ("1.1.1.1", PASS),
            ("93.184.215.14", PASS),
            ("1.0.0.0", PASS),
            ("9.255.255.255", PASS),
            ("11.0.0.0", PASS),
            ("126.255.255.255", PASS),
            ("128.0.0.0", PASS),
            ("100.63.255.255", PASS),
            ("100.128.0.0", PASS),
            ("169.253.255.255", PASS),
            ("169.255.0.0", PASS),
            ("172.15.255.255", PASS),
            ("172.32.0.0", PASS),
            ("192.167.255.255", PASS),
            ("192.169.0.0", PASS),
            ("191.255.255.255", PASS),
            ("192.0.1.0", PASS),
            ("192.0.3.0", PASS),
            ("198.17.255.255", PASS),
            ("198.20.0.0", PASS),
            ("198.51.99.255", PASS),
            ("198.51.101.0", PASS),
            ("203.0.112.255", PASS),
            ("203.0.114.0", PASS),
            ("223.255.255.255", PASS),
            ("2606:4700::1111", PASS),
            ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", PASS),
            ("2a00:1450:4001:80b::200e", PASS),
            ("2001:4860:4860::8888", PASS),
            ("2001:200::1", PASS),
            ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", PASS),
            ("2001:db9::", PASS),
            ("3ffe:ffff::1", PASS),
            ("3fff:1000::", PASS),
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PASS),
            ("fe00::1", PASS),
            ("100::1:0:0:0:0", PASS),
            ("::ffff:8.8.8.8", PASS),
            ("::ffff:0:8.8.8.8", PASS),
            ("64:ff9b::8.8.8.8", PASS),
            ("64:ff9b:1::8.8.8.8", PASS),
            ("64:ff9b:1:abcd:ef01:2345:808:808", PASS),
            ("2002:808:808::1", PASS),
            // Loopback.
            ("127.0.0.0", no(LOOPBACK, "127.0.0.0/8")),
            ("127.0.0.1", no(LOOPBACK, "127.0.0.0/8")),
            ("127.255.255.255", no(LOOPBACK, "127.0.0.0/8")),
            ("::1", no(LOOPBACK, "::1/128")),
            // Unspecified, "this network", broadcast.
            ("0.0.0.0", no(UNSPECIFIED, "0.0.0.0/32")),
            ("::", no(UNSPECIFIED, "::/128")),
            ("0.0.0.1", no(THIS_NETWORK, "0.0.0.0/8")),
            ("0.255.255.255", no(THIS_NETWORK, "0.0.0.0/8")),
            ("255.255.255.255", no(BROADCAST, "255.255.255.255/32")),
            // Link-local and metadata.
            ("169.254.0.0", no(LINK_LOCAL, "169.254.0.0/16")),
            ("169.254.255.255", no(LINK_LOCAL, "169.254.0.0/16")),
            ("169.254.169.253", no(LINK_LOCAL, "169.254.0.0/16")),
            ("169.254.169.254", no(METADATA, "169.254.169.254/32")),
            ("169.254.170.2", no(METADATA, "169.254.170.2/32")),
            ("100.100.100.200", no(METADATA, "100.100.100.200/32")),
            ("fd00:ec2::254", no(METADATA, "fd00:ec2::254/128")),
            ("fe80::", no(LINK_LOCAL, "fe80::/10")),
            ("fe80::1", no(LINK_LOCAL, "fe80::/10")),
            (
                "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                no(LINK_LOCAL, "fe80::/10"),
            ),
            // RFC 1918.
            ("10.0.0.0", no(PRIVATE, "10.0.0.0/8")),
            ("10.255.255.255", no(PRIVATE, "10.0.0.0/8")),
            ("172.16.0.0", no(PRIVATE, "172.16.0.0/12")),
            ("172.31.255.255", no(PRIVATE, "172.16.0.0/12")),
            ("192.168.0.0", no(PRIVATE, "192.168.0.0/16")),
            ("192.168.255.255", no(PRIVATE, "192.168.0.0/16")),
            // Carrier-grade NAT, with the Alibaba metadata endpoint's neighbours inside it.
            ("100.64.0.0", no(CGNAT, "100.64.0.0/10")),
            ("100.127.255.255", no(CGNAT, "100.64.0.0/10")),
            ("100.100.100.201", no(CGNAT, "100.64.0.0/10")),
            // IETF protocol assignments, benchmarking, documentation, reserved.
            ("192.0.0.0", no(PROTOCOL_ASSIGNMENT, "192.0.0.0/24")),
            ("192.0.0.255", no(PROTOCOL_ASSIGNMENT, "192.0.0.0/24")),
            ("198.18.0.0", no(BENCHMARKING, "198.18.0.0/15")),
            ("198.19.255.255", no(BENCHMARKING, "198.18.0.0/15")),
            ("192.0.2.0", no(DOCUMENTATION, "192.0.2.0/24")),
            ("192.0.2.255", no(DOCUMENTATION, "192.0.2.0/24")),
            ("198.51.100.7", no(DOCUMENTATION, "198.51.100.0/24")),
            ("203.0.113.255", no(DOCUMENTATION, "203.0.113.0/24")),
            ("240.0.0.0", no(RESERVED, "240.0.0.0/4")),
            ("255.255.255.254", no(RESERVED, "240.0.0.0/4")),
            // Multicast.
            ("224.0.0.0", no(MULTICAST, "224.0.0.0/4")),
            ("239.255.255.255", no(MULTICAST, "224.0.0.0/4")),
            ("ff00::", no(MULTICAST, "ff00::/8")),
            ("ff02::1", no(MULTICAST, "ff00::/8")),
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                no(MULTICAST, "ff00::/8"),
            ),
            // IPv6 local and special ranges.
            ("fc00::", no(UNIQUE_LOCAL, "fc00::/7")),
            ("fd00:ec2::253", no(UNIQUE_LOCAL, "fc00::/7")),
            (
                "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                no(UNIQUE_LOCAL, "fc00::/7"),
            ),
            ("fec0::1", no(SITE_LOCAL, "fec0::/10")),
            ("feff::1", no(SITE_LOCAL, "fec0::/10")),
            ("100::", no(DISCARD_ONLY, "100::/64")),
            ("2001::1", no(TEREDO, "2001::/32")),
            (
                "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
                no(TEREDO, "2001::/32"),
            ),
            ("2001:2::1", no(BENCHMARKING, "2001:2::/48")),
            ("2001:1::1", no(PROTOCOL_ASSIGNMENT, "2001::/23")),
            ("2001:1ff:ffff::1", no(PROTOCOL_ASSIGNMENT, "2001::/23")),
            ("2001:db8::", no(DOCUMENTATION, "2001:db8::/32")),
            (
                "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                no(DOCUMENTATION, "2001:db8::/32"),
            ),
            ("3fff::1", no(DOCUMENTATION, "3fff::/20")),
            ("3fff:fff:ffff::1", no(DOCUMENTATION, "3fff::/20")),
            // IPv4-compatible ::/96: refused whatever it embeds, permitted only by its own /128.
            ("::2", no(IPV4_COMPATIBLE, "::2/128")),
            ("::8.8.8.8", no(IPV4_COMPATIBLE, "::808:808/128")),
            ("::127.0.0.1", no(IPV4_COMPATIBLE, "::7f00:1/128")),
            ("::255.255.255.255", no(IPV4_COMPATIBLE, "::ffff:ffff/128")),
            // IPv4 hidden in IPv6: mapped, SIIT-translated, 6to4, NAT64.
            ("::ffff:127.0.0.1", no(LOOPBACK, "127.0.0.0/8")),
            ("::ffff:0.0.0.0", no(UNSPECIFIED, "0.0.0.0/32")),
            ("::ffff:10.1.2.3", no(PRIVATE, "10.0.0.0/8")),
            ("::ffff:169.254.169.254", no(METADATA, "169.254.169.254/32")),
            ("::ffff:169.254.3.4", no(LINK_LOCAL, "169.254.0.0/16")),
            ("::ffff:0:127.0.0.1", no(LOOPBACK, "127.0.0.0/8")),
            ("::ffff:0:192.168.1.1", no(PRIVATE, "192.168.0.0/16")),
            ("2002:7f00:1::", no(LOOPBACK, "127.0.0.0/8")),
            ("2002:a9fe:a9fe::1", no(METADATA, "169.254.169.254/32")),
            ("2002:c0a8:101:1::1", no(PRIVATE, "192.168.0.0/16")),
            ("2002:6440:1::", no(CGNAT, "100.64.0.0/10")),
            ("64:ff9b::127.0.0.1", no(LOOPBACK, "127.0.0.0/8")),
            (
                "64:ff9b::169.254.169.254",
                no(METADATA, "169.254.169.254/32"),
            ),
            ("64:ff9b::10.0.0.1", no(PRIVATE, "10.0.0.0/8")),
            ("64:ff9b::172.31.0.1", no(PRIVATE, "172.16.0.0/12")),
            ("64:ff9b::224.0.0.1", no(MULTICAST, "224.0.0.0/4")),
            // Local-use NAT64, in each RFC 6052 format a gateway inside it may use. The shorter
            // formats leave zeros that the longer ones read as other refused addresses
            // (0.0.0.0/8...): only the address itself can then be allowed.
            ("64:ff9b:1::10.0.0.1", no(PRIVATE, "10.0.0.0/8")),
            (
                "64:ff9b:1:abcd:ef01:2345:7f00:1",
                no(LOOPBACK, "127.0.0.0/8"),
            ),
            // /48: 127.0.0.1 in bits 48..64 and 72..88.
            (
                "64:ff9b:1:7f00:0:100::",
                no(LOOPBACK, "64:ff9b:1:7f00:0:100::/128"),
            ),
            // /56: 10.0.0.1 in bits 56..64 and 72..96.
            ("64:ff9b:1:a:0:1::", no(PRIVATE, "64:ff9b:1:a:0:1::/128")),
            // /64: 169.254.169.254 in bits 72..104.
            (
                "64:ff9b:1:0:a9:fea9:fe00:0",
                no(METADATA, "64:ff9b:1:0:a9:fea9:fe00:0/128"),
            ),
        ];
        let problems = mismatches(&TargetGuard::default(), &rows);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn refusals_read_as_sentences() {
        let guard = TargetGuard::default();
        let cases = [
            (
                "127.0.0.1",
                "127.0.0.1 is a loopback address; pass --allow-cidr 127.0.0.0/8 to permit it",
            ),
            (
                "10.1.2.3",
                "10.1.2.3 is a private address (RFC 1918); pass --allow-cidr 10.0.0.0/8 to permit \
                 it",
            ),
            (
                "::ffff:127.0.0.1",
                "::ffff:127.0.0.1 is a loopback address (it embeds the IPv4 address 127.0.0.1); \
                 pass --allow-cidr 127.0.0.0/8 to permit it",
            ),
            (
                "2002:a00:1::",
                "2002:a00:1:: is a private address (RFC 1918) (it embeds the IPv4 address \
                 10.0.0.1); pass --allow-cidr 10.0.0.0/8 to permit it",
            ),
            (
                "::8.8.8.8",
                "::808:808 is a deprecated IPv4-compatible address (RFC 4291) (it embeds the \
                 IPv4 address 8.8.8.8); pass --allow-cidr ::808:808/128 to permit it",
            ),
            (
                "fd00:ec2::254",
                "fd00:ec2::254 is a cloud metadata address; pass --allow-cidr fd00:ec2::254/128 \
                 to permit it",
            ),
            (
                "64:ff9b:1:7f00:0:100::",
                "64:ff9b:1:7f00:0:100:: is a loopback address (it embeds the IPv4 address \
                 127.0.0.1, and other refused IPv4 addresses under other NAT64 prefix lengths); \
                 pass --allow-cidr 64:ff9b:1:7f00:0:100::/128 to permit it",
            ),
        ];
        for (addr, message) in cases {
            assert_eq!(guard.check(ip(addr)), Err(message.to_owned()), "{addr}");
        }
    }

    #[test]
    fn the_documentation_addresses_of_the_fixtures_are_refused_for_real_probes() {
        // The pure evaluation tests use these as harmless example edge and origin addresses;
        // no probe ever goes there, and the guard would refuse one that tried.
        let guard = TargetGuard::default();
        for a in ["192.0.2.10", "192.0.2.11", "192.0.2.20", "2001:db8::7"] {
            assert!(guard.check(ip(a)).is_err(), "{a}");
        }
    }

    #[test]
    fn allow_cidr_opens_exactly_its_range() {
        let guard = TargetGuard::new(vec![
            net("127.0.0.0/8"),
            net("::1/128"),
            net("169.254.0.0/16"),
            net("10.20.0.0/16"),
            net("fd12:3456::/32"),
            net("64:ff9b:1::/48"),
            net("::8.8.8.8/128"),
        ]);
        let rows: Vec<(&str, Expect)> = vec![
            ("127.0.0.7", PASS),
            ("::1", PASS),
            ("169.254.169.254", PASS),
            ("10.20.255.255", PASS),
            ("fd12:3456::1", PASS),
            ("::8.8.8.8", PASS),
            // An IPv4 allow covers the IPv6 forms that embed an address it contains...
            ("::ffff:127.0.0.1", PASS),
            ("::ffff:10.20.0.1", PASS),
            ("2002:a14:1::", PASS),
            ("64:ff9b::10.20.0.1", PASS),
            // ...and the local-use NAT64 range is open as a whole.
            ("64:ff9b:1::10.0.0.1", PASS),
            // ...but not the IPv4-compatible form, nor the classes or the parts of a class it
            // does not contain.
            ("::127.0.0.1", no(IPV4_COMPATIBLE, "::7f00:1/128")),
            ("10.21.0.0", no(PRIVATE, "10.0.0.0/8")),
            ("10.19.255.255", no(PRIVATE, "10.0.0.0/8")),
            ("::ffff:10.21.0.1", no(PRIVATE, "10.0.0.0/8")),
            ("64:ff9b::10.21.0.1", no(PRIVATE, "10.0.0.0/8")),
            ("fd12:3457::1", no(UNIQUE_LOCAL, "fc00::/7")),
            ("fd00:ec2::254", no(METADATA, "fd00:ec2::254/128")),
            ("0.0.0.0", no(UNSPECIFIED, "0.0.0.0/32")),
            ("fe80::1", no(LINK_LOCAL, "fe80::/10")),
            ("192.168.1.1", no(PRIVATE, "192.168.0.0/16")),
            ("8.8.8.8", PASS),
        ];
        let problems = mismatches(&guard, &rows);
        assert!(problems.is_empty(), "{}", problems.join("\n"));

        let narrow = TargetGuard::new(vec![net("127.0.0.7/32")]);
        assert_eq!(narrow.check(ip("127.0.0.7")), Ok(()));
        assert!(narrow.check(ip("127.0.0.1")).is_err());

        let mapped = TargetGuard::new(vec![net("::ffff:127.0.0.0/104")]);
        assert_eq!(mapped.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert!(mapped.check(ip("127.0.0.1")).is_err());
    }

    #[test]
    fn every_refusal_names_an_allow_cidr_that_permits_it() {
        // Parse the suggested flag back and check that it does permit the address.
        let guard = TargetGuard::default();
        for range in &V4_REFUSED {
            let (first, last) = (range.net.network(), range.net.broadcast());
            for a in [first, last] {
                let message = guard.check(IpAddr::V4(a)).unwrap_err();
                permitted_by_its_suggestion(&message, IpAddr::V4(a));
            }
        }
        for range in &V6_REFUSED {
            for a in [range.net.network(), range.net.broadcast()] {
                let message = guard.check(IpAddr::V6(a)).unwrap_err();
                permitted_by_its_suggestion(&message, IpAddr::V6(a));
            }
        }
        for a in [
            "::ffff:10.0.0.1",
            "2002:7f00:1::",
            "64:ff9b:1:7f00:0:100::",
            "::2",
        ] {
            let message = guard.check(ip(a)).unwrap_err();
            permitted_by_its_suggestion(&message, ip(a));
        }
    }

    fn permitted_by_its_suggestion(message: &str, addr: IpAddr) {
        let (_, rest) = message
            .split_once("; pass --allow-cidr ")
            .unwrap_or_else(|| panic!("{message}"));
        let cidr = rest.strip_suffix(" to permit it").unwrap();
        let guard = TargetGuard::new(vec![net(cidr)]);
        assert_eq!(guard.check(addr), Ok(()), "{message}");
    }
}
