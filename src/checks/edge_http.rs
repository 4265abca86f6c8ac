//! EdgeHttpOk: the HTTP layer on the edge connection. A GET for `spec.checks.http.path` with
//! `Host: hostname` (HTTP/2 when ALPN offers it), judged against the expected statuses, the
//! origin fingerprint header and HSTS; and `http://hostname` redirecting to `https://`. Pure:
//! the probes gather, this module judges.

use crate::api::{
    ConditionStatus, ConditionType, Desired, HttpChecksSpec, HttpEvidence, Reason, StatusRange,
    Verdict,
};
use crate::checks::x509::shown;
use crate::probe::http::{BodyEnd, HttpOutcome, HttpResponse, HttpTarget};

/// Statuses that pass by default: success, redirects, and an edge that asks for credentials.
pub const DEFAULT_STATUSES: [StatusRange; 3] = [
    StatusRange {
        from: 200,
        to: Some(399),
    },
    StatusRange {
        from: 401,
        to: None,
    },
    StatusRange {
        from: 403,
        to: None,
    },
];

/// The smallest HSTS `max-age` accepted by default: 180 days.
pub const DEFAULT_HSTS_MIN_MAX_AGE: u64 = 180 * 86_400;

/// What the HTTP probes saw for one delivery.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HttpObservation {
    /// The HTTPS GET to the edge, when an edge address served a valid certificate.
    pub https: Option<(HttpTarget, HttpOutcome)>,
    /// The plain-HTTP GET, when `httpsRedirect` is on.
    pub plain: Option<(HttpTarget, HttpOutcome)>,
}

/// The GET path, with its default.
pub fn path(spec: &HttpChecksSpec) -> &str {
    spec.path.as_deref().unwrap_or("/")
}

/// Whether the redirect to HTTPS is checked (default on).
pub fn checks_redirect(spec: &HttpChecksSpec) -> bool {
    spec.https_redirect.unwrap_or(true)
}

/// The EdgeHttpOk verdict and its evidence. `edge_serving` is EdgeServing's verdict: without a
/// working TLS edge there is no HTTP to judge.
pub fn evaluate(
    spec: &Desired,
    edge_serving: &Verdict,
    observed: &HttpObservation,
) -> (Verdict, Option<HttpEvidence>) {
    let verdict = |status, reason, message: String| {
        Verdict::new(ConditionType::EdgeHttpOk, status, reason, message)
    };
    let Some((target, outcome)) = observed.https.as_ref().filter(|_| edge_serving.is_true()) else {
        return (
            verdict(
                ConditionStatus::Unknown,
                Reason::Blocked,
                "not checked: EdgeServing is not True, so no HTTP request was sent.".into(),
            ),
            None,
        );
    };
    let evidence = evidence(target, outcome, observed.plain.as_ref());
    let found = match outcome {
        HttpOutcome::Response(response) => judge_response(&spec.http, response)
            .or_else(|| judge_redirect(&spec.hostname, observed.plain.as_ref())),
        other => Some(transport(other)),
    };
    let verdict = match found {
        Some((status, reason, problem)) => {
            verdict(status, reason, format!("GET {target}: {problem}"))
        }
        None => verdict(
            ConditionStatus::True,
            Reason::Verified,
            format!(
                "GET {target}: {outcome}{}{}",
                if evidence.ocsp_stapled {
                    ", OCSP stapled"
                } else {
                    ""
                },
                evidence
                    .plain_http
                    .as_ref()
                    .map(|p| format!("; {p}"))
                    .unwrap_or_default()
            ),
        ),
    };
    (verdict, Some(evidence))
}

/// A probe that got no response head.
fn transport(outcome: &HttpOutcome) -> (ConditionStatus, Reason, String) {
    match outcome {
        HttpOutcome::Forbidden(_) => (
            ConditionStatus::Unknown,
            Reason::TargetForbidden,
            outcome.to_string(),
        ),
        HttpOutcome::Timeout | HttpOutcome::ConnectTimeout => (
            ConditionStatus::Unknown,
            Reason::HttpTimeout,
            format!("{outcome}; will retry."),
        ),
        // The connection or handshake failing just after the TLS probe's worked is the
        // network's or the TLS layer's trouble (EdgeServing judges that), not a verdict on HTTP.
        HttpOutcome::Refused | HttpOutcome::Unreachable(_) | HttpOutcome::TlsFailed(_) => (
            ConditionStatus::Unknown,
            Reason::HttpRequestFailed,
            format!(
                "{outcome}: the connection for the HTTP request failed although the TLS probe's worked; will retry."
            ),
        ),
        _ => (
            ConditionStatus::False,
            Reason::HttpRequestFailed,
            format!("{outcome}: the edge completed the TLS handshake but not the HTTP exchange."),
        ),
    }
}

fn judge_response(
    spec: &HttpChecksSpec,
    response: &HttpResponse,
) -> Option<(ConditionStatus, Reason, String)> {
    let status = response.status;
    let expected = spec
        .expected_statuses
        .as_deref()
        .unwrap_or(&DEFAULT_STATUSES);
    if !expected
        .iter()
        .any(|r| status >= r.from && status <= r.to.unwrap_or(r.from))
    {
        return Some((
            ConditionStatus::False,
            Reason::HttpStatusUnexpected,
            format!(
                "the edge answered {status}, outside the expected {} (spec.checks.http.expectedStatuses); a 5xx usually comes from the origin behind the edge, a 404 from the edge's rules for this path.",
                ranges(expected)
            ),
        ));
    }
    if let Some(expected) = &spec.expect_header {
        let got = response.header(&expected.name);
        if got != Some(expected.value.as_str()) {
            let seen = got.map_or("no such header".to_string(), |v| {
                format!("{:?}", shown(v, 128))
            });
            return Some((
                ConditionStatus::False,
                Reason::WrongOrigin,
                format!(
                    "the response has {}: {seen}, not {:?}: the edge routed this hostname to another origin than expected; check the edge CNAME's origin.",
                    expected.name, expected.value
                ),
            ));
        }
    }
    if let Some(problem) = spec.hsts.as_ref().and_then(|h| judge_hsts(h, response)) {
        return Some(problem);
    }
    if response.body == BodyEnd::TimedOut {
        return Some((
            ConditionStatus::Unknown,
            Reason::HttpTimeout,
            format!(
                "the edge answered {status} but the body did not finish within the timeout ({} bytes read): a slow origin behind the edge; will retry.",
                response.body_bytes
            ),
        ));
    }
    if let BodyEnd::Failed(detail) = &response.body {
        return Some((
            ConditionStatus::False,
            Reason::HttpRequestFailed,
            format!(
                "the edge answered {status} and the body broke off: {}",
                shown(detail, 256)
            ),
        ));
    }
    None
}

/// Strict-Transport-Security against `spec.checks.http.hsts`.
fn judge_hsts(
    hsts: &crate::api::HstsSpec,
    response: &HttpResponse,
) -> Option<(ConditionStatus, Reason, String)> {
    let min = hsts.min_max_age.unwrap_or(DEFAULT_HSTS_MIN_MAX_AGE);
    match response.header("strict-transport-security").map(max_age) {
        None => Some((
            ConditionStatus::False,
            Reason::HstsMissing,
            format!(
                "the response has no Strict-Transport-Security header; add one with max-age={min} or more."
            ),
        )),
        Some(age) if age.is_none_or(|a| a < min) => Some((
            ConditionStatus::False,
            Reason::HstsTooShort,
            format!(
                "Strict-Transport-Security max-age is {}, below the {min} seconds asked for (spec.checks.http.hsts.minMaxAge).",
                age.map_or("missing".to_string(), |a| a.to_string())
            ),
        )),
        Some(_) => None,
    }
}

/// Whether `http://hostname` sent the client to `https://hostname`.
fn judge_redirect(
    hostname: &str,
    plain: Option<&(HttpTarget, HttpOutcome)>,
) -> Option<(ConditionStatus, Reason, String)> {
    let (target, outcome) = plain?;
    let problem = match outcome {
        HttpOutcome::Response(r) if is_redirect(r.status) => {
            let location = r.header("location").unwrap_or_default();
            if redirects_to_https(location, hostname) {
                return None;
            }
            format!(
                "{target} answered {} with Location {:?}, not https://{hostname}/...",
                r.status,
                shown(location, 256)
            )
        }
        HttpOutcome::Response(r) => format!("{target} answered {} instead of a redirect", r.status),
        HttpOutcome::Timeout | HttpOutcome::ConnectTimeout => {
            return Some((
                ConditionStatus::Unknown,
                Reason::HttpTimeout,
                format!("{target}: {outcome}; will retry."),
            ));
        }
        HttpOutcome::Forbidden(_) => {
            return Some((
                ConditionStatus::Unknown,
                Reason::TargetForbidden,
                format!("{target}: {outcome}"),
            ));
        }
        other => format!("{target}: {other}"),
    };
    Some((
        ConditionStatus::False,
        Reason::NoHttpsRedirect,
        format!(
            "HTTPS works, but {problem}: visitors who type the hostname get no HTTPS. Turn on the CDN's HTTP-to-HTTPS redirect, or set spec.checks.http.httpsRedirect: false if plain HTTP is intended."
        ),
    ))
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// An absolute `https://` URL whose host is `hostname` (a trailing dot allowed; userinfo is
/// not a host: `https://hostname:x@elsewhere/` goes elsewhere).
fn redirects_to_https(location: &str, hostname: &str) -> bool {
    let Ok(uri) = location.trim().parse::<http::Uri>() else {
        return false;
    };
    let Some(authority) = uri.authority() else {
        return false;
    };
    uri.scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
        && !authority.as_str().contains('@')
        && authority
            .host()
            .trim_end_matches('.')
            .eq_ignore_ascii_case(hostname)
}

/// The `max-age` of a Strict-Transport-Security value; `None` when it has none that parses.
fn max_age(value: &str) -> Option<u64> {
    value.split(';').find_map(|directive| {
        let (name, v) = directive.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().trim_matches('"').parse().ok())
            .flatten()
    })
}

fn ranges(expected: &[StatusRange]) -> String {
    expected
        .iter()
        .map(|r| match r.to {
            Some(to) if to != r.from => format!("{}-{to}", r.from),
            _ => r.from.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn evidence(
    target: &HttpTarget,
    outcome: &HttpOutcome,
    plain: Option<&(HttpTarget, HttpOutcome)>,
) -> HttpEvidence {
    let response = match outcome {
        HttpOutcome::Response(r) => Some(r),
        _ => None,
    };
    HttpEvidence {
        request: shown(&format!("GET {target}"), 512),
        response: shown(&outcome.to_string(), 512),
        alpn: response.and_then(|r| r.alpn.clone()),
        tls_version: response.and_then(|r| r.tls_version.clone()),
        ocsp_stapled: response.is_some_and(|r| r.ocsp_stapled),
        plain_http: plain.map(|(t, o)| {
            let location = match o {
                HttpOutcome::Response(r) => r
                    .header("location")
                    .map(|l| format!(" -> {}", shown(l, 256)))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            shown(&format!("GET {t}: {o}{location}"), 512)
        }),
        hsts: response
            .and_then(|r| r.header("strict-transport-security"))
            .map(|h| shown(h, 256)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ExpectedHeader, HstsSpec};
    use crate::checks::fixtures::spec;

    fn response(status: u16, headers: &[(&str, &str)]) -> HttpOutcome {
        HttpOutcome::Response(HttpResponse {
            http_version: "HTTP/2".into(),
            alpn: Some("h2".into()),
            tls_version: Some("TLSv1.3".into()),
            ocsp_stapled: false,
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body_bytes: 3,
            body: BodyEnd::Complete,
        })
    }

    fn target(tls: bool) -> HttpTarget {
        HttpTarget {
            address: "192.0.2.10:443".parse().expect("address"),
            host: "www.shop.example".into(),
            path: "/".into(),
            tls,
        }
    }

    fn serving() -> Verdict {
        Verdict::new(
            ConditionType::EdgeServing,
            ConditionStatus::True,
            Reason::Verified,
            "ok",
        )
    }

    fn judge(
        edit: impl FnOnce(&mut HttpChecksSpec),
        https: HttpOutcome,
        plain: HttpOutcome,
    ) -> Verdict {
        let mut desired = spec();
        edit(&mut desired.http);
        let observed = HttpObservation {
            https: Some((target(true), https)),
            plain: Some((target(false), plain)),
        };
        evaluate(&desired, &serving(), &observed).0
    }

    fn redirect() -> HttpOutcome {
        response(301, &[("location", "https://www.shop.example/")])
    }

    fn said(v: &Verdict) -> (ConditionStatus, Reason) {
        (v.status, v.reason)
    }

    #[test]
    fn a_2xx_and_a_redirect_to_https_pass_with_their_evidence() {
        let mut desired = spec();
        desired.http = HttpChecksSpec::default();
        let observed = HttpObservation {
            https: Some((target(true), response(200, &[]))),
            plain: Some((target(false), redirect())),
        };
        let (v, evidence) = evaluate(&desired, &serving(), &observed);
        assert_eq!(said(&v), (ConditionStatus::True, Reason::Verified), "{v:?}");
        let evidence = evidence.expect("evidence");
        assert_eq!(evidence.alpn.as_deref(), Some("h2"));
        assert_eq!(evidence.response, "HTTP/2 200 (ALPN h2, TLSv1.3)");
        assert!(
            evidence
                .plain_http
                .as_deref()
                .is_some_and(|p| p.ends_with("-> https://www.shop.example/")),
            "{evidence:?}"
        );
    }

    #[test]
    fn statuses_outside_the_set_fail_and_the_defaults_take_401_and_403() {
        for ok in [200, 204, 302, 399, 401, 403] {
            let v = judge(|_| {}, response(ok, &[]), redirect());
            assert!(v.is_true(), "{ok}: {v:?}");
        }
        for bad in [400, 404, 500, 503] {
            let v = judge(|_| {}, response(bad, &[]), redirect());
            assert_eq!(
                said(&v),
                (ConditionStatus::False, Reason::HttpStatusUnexpected),
                "{bad}"
            );
            assert!(v.message.contains("200-399, 401, 403"), "{v:?}");
        }
        let v = judge(
            |h| {
                h.expected_statuses = Some(vec![StatusRange {
                    from: 404,
                    to: None,
                }]);
            },
            response(404, &[]),
            redirect(),
        );
        assert!(v.is_true(), "{v:?}");
    }

    #[test]
    fn the_redirect_must_go_to_https_on_the_same_host() {
        for location in [
            "https://www.shop.example",
            "HTTPS://WWW.shop.example:443/x?y",
            "https://www.shop.example/path#f",
            "https://www.shop.example./",
        ] {
            let v = judge(
                |_| {},
                response(200, &[]),
                response(308, &[("location", location)]),
            );
            assert!(v.is_true(), "{location}: {v:?}");
        }
        for (plain, why) in [
            (response(200, &[]), "answered 200 instead of a redirect"),
            (
                response(301, &[("location", "http://www.shop.example/")]),
                "not https://www.shop.example",
            ),
            (
                response(
                    301,
                    &[("location", "https://www.shop.example.evil.example/")],
                ),
                "not https://www.shop.example",
            ),
            (
                response(
                    301,
                    &[("location", "https://www.shop.example:x@evil.example/")],
                ),
                "not https://www.shop.example",
            ),
            (
                response(301, &[("location", "/relative")]),
                "not https://www.shop.example",
            ),
            (HttpOutcome::Refused, "connection refused"),
        ] {
            let v = judge(|_| {}, response(200, &[]), plain);
            assert_eq!(said(&v), (ConditionStatus::False, Reason::NoHttpsRedirect));
            assert!(v.message.contains(why), "{why}: {v:?}");
        }
        // Off: plain HTTP is not looked at.
        let mut desired = spec();
        desired.http.https_redirect = Some(false);
        let observed = HttpObservation {
            https: Some((target(true), response(200, &[]))),
            plain: None,
        };
        assert!(evaluate(&desired, &serving(), &observed).0.is_true());
    }

    #[test]
    fn hsts_is_judged_only_when_asked_for() {
        let none = response(200, &[]);
        assert!(judge(|_| {}, none.clone(), redirect()).is_true());
        let hsts = |h: &mut HttpChecksSpec| h.hsts = Some(HstsSpec { min_max_age: None });
        let v = judge(hsts, none, redirect());
        assert_eq!(said(&v), (ConditionStatus::False, Reason::HstsMissing));
        let short = response(
            200,
            &[(
                "strict-transport-security",
                "max-age=300; includeSubDomains",
            )],
        );
        let v = judge(hsts, short, redirect());
        assert_eq!(said(&v), (ConditionStatus::False, Reason::HstsTooShort));
        assert!(v.message.contains("max-age is 300"), "{v:?}");
        let long = response(
            200,
            &[(
                "Strict-Transport-Security",
                "includeSubDomains; max-age=\"31536000\"",
            )],
        );
        assert!(judge(hsts, long, redirect()).is_true());
    }

    #[test]
    fn a_wrong_origin_header_a_slow_body_and_a_blocked_edge() {
        let expect = |h: &mut HttpChecksSpec| {
            h.expect_header = Some(ExpectedHeader {
                name: "x-origin".into(),
                value: "shop".into(),
            })
        };
        let v = judge(expect, response(200, &[("X-Origin", "blog")]), redirect());
        assert_eq!(said(&v), (ConditionStatus::False, Reason::WrongOrigin));
        assert!(v.message.contains("\"blog\""), "{v:?}");
        assert!(judge(expect, response(200, &[("x-origin", "shop")]), redirect()).is_true());

        let HttpOutcome::Response(mut slow) = response(200, &[]) else {
            unreachable!()
        };
        slow.body = BodyEnd::TimedOut;
        let v = judge(|_| {}, HttpOutcome::Response(slow), redirect());
        assert_eq!(said(&v), (ConditionStatus::Unknown, Reason::HttpTimeout));

        let failing = Verdict::new(
            ConditionType::EdgeServing,
            ConditionStatus::False,
            Reason::EdgeUnreachable,
            "no",
        );
        let (v, evidence) = evaluate(&spec(), &failing, &HttpObservation::default());
        assert_eq!(said(&v), (ConditionStatus::Unknown, Reason::Blocked));
        assert!(evidence.is_none());
    }
}
