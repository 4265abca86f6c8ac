//! Certificate name matching (RFC 6125) and how lists of names read in messages.

use crate::checks::x509::{MAX_NAME_BYTES, shown};

/// RFC 6125 section 6.4: a presented name matches `hostname` exactly (case-insensitively), or
/// it is a wildcard `*.rest` whose `*` is the whole left-most label and stands for exactly one
/// label. A wildcard never matches the apex (`*.example.com` does not match `example.com`) and
/// needs at least two labels after it.
pub fn name_matches(presented: &str, hostname: &str) -> bool {
    let presented = presented.trim_end_matches('.').to_ascii_lowercase();
    let hostname = hostname.trim_end_matches('.').to_ascii_lowercase();
    if let Some(rest) = presented.strip_prefix("*.") {
        if rest.contains('*') || rest.split('.').count() < 2 {
            return false;
        }
        match hostname.split_once('.') {
            Some((first, host_rest)) => !first.is_empty() && host_rest == rest,
            None => false,
        }
    } else {
        !presented.contains('*') && presented == hostname
    }
}

/// Whether any of `names` covers `hostname`.
pub fn covers(names: &[String], hostname: &str) -> bool {
    names.iter().any(|n| name_matches(n, hostname))
}

/// "a, b and 2 more" style list of certificate names for messages: five names at most, each
/// escaped and cut to [`MAX_NAME_BYTES`], so a message stays short whatever a certificate holds.
pub fn describe_names(names: &[String]) -> String {
    const SHOWN: usize = 5;
    if names.is_empty() {
        return "(none)".into();
    }
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(|n| shown(n, MAX_NAME_BYTES))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_rfc_6125() {
        let cases = [
            (
                "www.shop.example",
                "WWW.shop.example",
                true,
                "case-insensitive",
            ),
            ("*.shop.example", "www.shop.example", true, "one label"),
            ("*.shop.example", "shop.example", false, "apex"),
            ("*.shop.example", "a.b.shop.example", false, "two labels"),
            ("*.example", "shop.example", false, "too broad"),
            ("w*.shop.example", "www.shop.example", false, "partial"),
            ("www.*.example", "www.shop.example", false, "not left-most"),
            ("shop.example", "www.shop.example", false, "other name"),
            (
                "www.shop.example.",
                "www.shop.example",
                true,
                "trailing dot",
            ),
        ];
        for (presented, host, expected, why) in cases {
            assert_eq!(
                name_matches(presented, host),
                expected,
                "{presented} vs {host}: {why}"
            );
        }
    }

    #[test]
    fn covers_needs_one_matching_name() {
        let names = vec!["api.shop.example".to_string(), "*.shop.example".to_string()];
        assert!(covers(&names, "www.shop.example"));
        assert!(!covers(&names, "shop.example"));
        assert!(!covers(&[], "shop.example"));
    }

    #[test]
    fn long_name_lists_are_shortened() {
        let names: Vec<String> = (1..=7).map(|i| format!("n{i}.example")).collect();
        assert_eq!(
            describe_names(&names),
            "n1.example, n2.example, n3.example, n4.example, n5.example and 2 more"
        );
        assert_eq!(describe_names(&[]), "(none)");
    }

    #[test]
    fn hostile_names_are_escaped_and_bounded() {
        let names = vec![
            "www\x1b[2J.shop.example".to_string(),
            "\u{202e}elpmaxe.pohs".to_string(),
            "a".repeat(10_000),
        ];
        let described = describe_names(&names);
        assert!(
            described.starts_with("www\\x1b[2J.shop.example, \\u{202e}elpmaxe.pohs, aaa"),
            "{described}"
        );
        assert!(!described.chars().any(crate::api::text::is_hostile));
        assert!(
            described.len() < 3 * MAX_NAME_BYTES,
            "{} bytes",
            described.len()
        );
        let many: Vec<String> = (0..5000).map(|i| format!("h{i}.shop.example")).collect();
        assert!(describe_names(&many).ends_with("h4.shop.example and 4995 more"));
    }
}
