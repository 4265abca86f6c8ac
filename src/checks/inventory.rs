//! Across deliveries: hostname conflicts, and which hostnames and target CNAMEs belong to each
//! certificate (the bookkeeping the procedure asks for).

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A delivery's claim on a hostname. The claim of lowest `precedence` keeps the hostname: the
/// controller ranks by creation time (then namespace/name), `check` by file order.
#[derive(Clone, Debug)]
pub struct Claim<'a, P> {
    pub key: String,
    pub hostname: &'a str,
    pub precedence: P,
}

/// The one hostname-conflict rule: for each losing claim, the key of the claim that keeps the
/// hostname. Claims with the same key are one delivery and never conflict with themselves.
pub fn conflicts<P: Ord>(claims: &[Claim<'_, P>]) -> HashMap<String, String> {
    let mut owners: HashMap<&str, &Claim<'_, P>> = HashMap::new();
    for c in claims {
        owners
            .entry(c.hostname)
            .and_modify(|owner| {
                if c.precedence < owner.precedence {
                    *owner = c;
                }
            })
            .or_insert(c);
    }
    claims
        .iter()
        .filter_map(|c| {
            let owner = owners.get(c.hostname)?;
            (owner.key != c.key).then(|| (c.key.clone(), owner.key.clone()))
        })
        .collect()
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

    fn claim(key: &str, hostname: &'static str, precedence: u32) -> Claim<'static, u32> {
        Claim {
            key: key.into(),
            hostname,
            precedence,
        }
    }

    #[test]
    fn the_claim_of_lowest_precedence_keeps_the_hostname() {
        let claims = [
            claim("other/www", "www.shop.example", 2),
            claim("shop/www", "www.shop.example", 1),
            claim("shop/api", "api.shop.example", 5),
            claim("third/www", "www.shop.example", 3),
        ];
        let c = conflicts(&claims);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c["other/www"], "shop/www");
        assert_eq!(c["third/www"], "shop/www");
        assert!(!c.contains_key("shop/www") && !c.contains_key("shop/api"));
    }

    #[test]
    fn a_delivery_never_conflicts_with_itself() {
        let claims = [
            claim("shop/www", "www.shop.example", 1),
            claim("shop/www", "www.shop.example", 1),
        ];
        assert!(conflicts(&claims).is_empty());
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
