//! Across deliveries: hostname conflicts, and which hostnames and target CNAMEs belong to each
//! certificate (the bookkeeping the procedure asks for).

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A delivery's claim on a hostname, in precedence order of the caller's choosing (older first
/// in the controller, file order in `check`).
#[derive(Clone, Debug)]
pub struct Claim<'a> {
    pub key: String,
    pub hostname: &'a str,
}

/// For each losing claim, the key of the claim that keeps the hostname.
pub fn conflicts(claims: &[Claim<'_>]) -> HashMap<String, String> {
    let mut owners: HashMap<&str, &str> = HashMap::new();
    let mut losers = HashMap::new();
    for c in claims {
        match owners.get(c.hostname) {
            Some(owner) if *owner != c.key => {
                losers.insert(c.key.clone(), owner.to_string());
            }
            _ => {
                owners.insert(c.hostname, &c.key);
            }
        }
    }
    losers
}

/// One certificate and what uses it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateUse {
    pub sha256_fingerprint: String,
    pub dns_names: Vec<String>,
    pub hostnames: Vec<String>,
    pub target_cnames: Vec<String>,
}

/// Groups deliveries by certificate fingerprint: `(fingerprint, dns names, hostname, target)`.
pub fn certificates<'a>(
    uses: impl IntoIterator<Item = (&'a str, &'a [String], &'a str, &'a str)>,
) -> Vec<CertificateUse> {
    type Uses = (Vec<String>, BTreeSet<String>, BTreeSet<String>);
    let mut by_fp: BTreeMap<&str, Uses> = BTreeMap::new();
    for (fp, names, host, target) in uses {
        let e = by_fp
            .entry(fp)
            .or_insert_with(|| (names.to_vec(), BTreeSet::new(), BTreeSet::new()));
        e.1.insert(host.to_string());
        e.2.insert(target.to_string());
    }
    by_fp
        .into_iter()
        .map(|(fp, (dns_names, hosts, targets))| CertificateUse {
            sha256_fingerprint: fp.to_string(),
            dns_names,
            hostnames: hosts.into_iter().collect(),
            target_cnames: targets.into_iter().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_claim_keeps_the_hostname() {
        let claims = [
            Claim {
                key: "shop/www".into(),
                hostname: "www.shop.example",
            },
            Claim {
                key: "shop/api".into(),
                hostname: "api.shop.example",
            },
            Claim {
                key: "other/www".into(),
                hostname: "www.shop.example",
            },
            Claim {
                key: "third/www".into(),
                hostname: "www.shop.example",
            },
        ];
        let c = conflicts(&claims);
        assert_eq!(c.len(), 2);
        assert_eq!(c["other/www"], "shop/www");
        assert_eq!(c["third/www"], "shop/www");
        assert!(!c.contains_key("shop/www"));
    }

    #[test]
    fn inventory_groups_by_fingerprint() {
        let names = vec!["*.shop.example".to_string()];
        let inv = certificates([
            (
                "AA",
                names.as_slice(),
                "www.shop.example",
                "cs1.wpc.v0cdn.net",
            ),
            (
                "AA",
                names.as_slice(),
                "api.shop.example",
                "cs2.wpc.v0cdn.net",
            ),
            (
                "BB",
                names.as_slice(),
                "img.shop.example",
                "cs1.wpc.v0cdn.net",
            ),
        ]);
        assert_eq!(inv.len(), 2);
        assert_eq!(
            inv[0].hostnames,
            vec!["api.shop.example", "www.shop.example"]
        );
        assert_eq!(
            inv[0].target_cnames,
            vec!["cs1.wpc.v0cdn.net", "cs2.wpc.v0cdn.net"]
        );
        assert_eq!(inv[1].hostnames, vec!["img.shop.example"]);
    }
}
