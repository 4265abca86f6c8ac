//! End to end: the real `check` binary on `examples/` against the loopback world.

use serde_json::Value;
use testkit::json::{condition, find};
use testkit::process::text;
use testkit::world::World;

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

/// Runs `check ARGS` against the world; returns its exit code, stdout and stderr.
async fn run_check(world: &World, args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("check").args(args).args(world.probe_args());
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run the check binary"))
        .await
        .expect("join");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Runs `check ARGS` against the world; asserts its exit code (0 all ready, 1 not every one
/// ready, 2 bad input) and returns its stdout and stderr.
async fn check(world: &World, args: &[&str], exit: i32) -> (String, String) {
    let (code, stdout, stderr) = run_check(world, args).await;
    assert_eq!(
        code,
        Some(exit),
        "check {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// The fixtures of `tests/fixtures/DIR`, sorted, with the values of their `# KEY:` lines.
fn fixtures(dir: &str, key: &str) -> Vec<(std::path::PathBuf, Vec<String>)> {
    let dir = format!("{}/tests/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let prefix = format!("# {key}: ");
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let values = text
                .lines()
                .filter_map(|l| l.strip_prefix(&prefix))
                .map(str::to_string)
                .collect();
            (file, values)
        })
        .collect()
}

fn delivery<'a>(report: &'a Value, name: &str) -> &'a Value {
    find(&report["deliveries"], "name", name)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_gets_the_reason_of_its_broken_step() {
    let world = World::start().await.expect("world");
    let (stdout, _) = check(&world, &["-f", EXAMPLES, "-o", "json"], 1).await;
    let report: Value = serde_json::from_str(&stdout).expect("JSON output");

    let www = delivery(&report, "www");
    assert_eq!(www["ready"], true, "{www:#}");
    assert_eq!(www["namespace"], "shop");
    assert_eq!(www["hostname"], "www.shop.example");
    for c in www["conditions"].as_array().unwrap() {
        assert_eq!(c["status"], "True", "{c}");
    }
    assert_eq!(
        www["dns"]["chain"][0],
        "www.shop.example. IN CNAME cs1.wpc.cdn.example."
    );
    assert_eq!(www["certificate"]["dnsNames"][0], "www.shop.example");
    assert!(
        www["certificate"]["sha256Fingerprint"]
            .as_str()
            .unwrap()
            .len()
            == 95
    );

    let expect = [
        (
            "expired-certificate",
            "CertificateValid",
            "False",
            "Expired",
        ),
        (
            "wrong-platform",
            "EdgeCnameConfigured",
            "False",
            "PlatformMismatch",
        ),
        (
            "new-edge-cname",
            "EdgeCnamePropagated",
            "Unknown",
            "ChangeTimeUnknown",
        ),
        (
            "http-origin",
            "OriginHttpsReady",
            "False",
            "OriginNotHttpsOnly",
        ),
        (
            "moved-cname",
            "DnsConfigured",
            "False",
            "CnameTargetMismatch",
        ),
        ("apex", "DnsConfigured", "False", "ZoneApex"),
    ];
    for (name, type_, status, reason) in expect {
        let d = delivery(&report, name);
        assert_eq!(d["ready"], false, "{name}");
        let c = condition(d, type_);
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some(status), Some(reason)),
            "{name}: {c}"
        );
        let ready = condition(d, "Ready");
        assert_eq!(
            ready["reason"], reason,
            "{name}: Ready carries the failing step's reason"
        );
        // Only the broken step fails (the expired edge certificate also fails end to end).
        let failing: Vec<&str> = d["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] != "True" && c["type"] != "Ready" && c["reason"] != "Blocked")
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        let allowed: &[&str] = if name == "expired-certificate" {
            &["CertificateValid", "EdgeServing"]
        } else {
            &[type_]
        };
        assert_eq!(failing, allowed, "{name}: {d:#}");
    }
    // DnsHealthy's examples: (name, reason, Ready's reason or None for a True Ready, the other
    // conditions that fail with it).
    let dns = [
        ("caa-forbids-issuer", "CaaForbidsIssuer", None, &[][..]),
        ("caa-critical-unknown", "CaaCriticalUnknown", None, &[]),
        (
            "dnssec-bogus",
            "DnssecValidationFailed",
            Some("DnssecValidationFailed"),
            &["DnsConfigured"],
        ),
        (
            "authoritative-disagree",
            "AuthoritativeServersDisagree",
            Some("AuthoritativeServersDisagree"),
            &[],
        ),
        (
            "recursive-stale",
            "RecursiveAnswerStale",
            Some("CnameTargetMismatch"),
            &["DnsConfigured"],
        ),
        (
            "dangling-cname",
            "DanglingCname",
            Some("EdgeUnreachable"),
            &["CertificateValid", "EdgeServing"],
        ),
        (
            "ipv4-only-edge",
            "AddressFamilyMismatch",
            Some("EdgeUnreachable"),
            &["EdgeServing"],
        ),
    ];
    for (name, reason, ready_reason, others) in dns {
        let d = delivery(&report, name);
        let c = condition(d, "DnsHealthy");
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some(reason)),
            "{name}: {c}"
        );
        assert_eq!(d["ready"], ready_reason.is_none(), "{name}: {d:#}");
        let ready = condition(d, "Ready");
        assert_eq!(
            ready["reason"].as_str(),
            Some(ready_reason.unwrap_or("Verified")),
            "{name}: {d:#}"
        );
        let mut failing: Vec<&str> = d["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                c["status"] != "True"
                    && c["type"] != "Ready"
                    && c["type"] != "DnsHealthy"
                    && c["reason"] != "Blocked"
            })
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        failing.sort();
        assert_eq!(failing, others, "{name}: {d:#}");
    }
    // EdgeHttpOk's examples: (name, status, reason); each fails alone and Ready carries it.
    let http = [
        ("status-unexpected", "False", "HttpStatusUnexpected"),
        ("no-https-redirect", "False", "NoHttpsRedirect"),
        ("hsts-too-short", "False", "HstsTooShort"),
        ("wrong-origin", "False", "WrongOrigin"),
        ("slow-body", "Unknown", "HttpTimeout"),
    ];
    for (name, status, reason) in http {
        let d = delivery(&report, name);
        let c = condition(d, "EdgeHttpOk");
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some(status), Some(reason)),
            "{name}: {c}"
        );
        assert_eq!(condition(d, "Ready")["reason"], reason, "{name}: {d:#}");
        let others: Vec<&Value> = d["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] != "True" && c["type"] != "Ready" && c["type"] != "EdgeHttpOk")
            .collect();
        assert!(others.is_empty(), "{name}: {others:#?}");
        assert!(d["http"]["request"].as_str().is_some(), "{name}: {d:#}");
    }
    let www_http = &delivery(&report, "www")["http"];
    assert_eq!(www_http["alpn"], "h2", "{www_http:#}");
    assert_eq!(www_http["tlsVersion"], "TLSv1.3", "{www_http:#}");
    assert_eq!(www_http["ocspStapled"], false, "{www_http:#}");
    assert!(
        www_http["plainHttp"]
            .as_str()
            .unwrap_or_default()
            .ends_with("301 (plain HTTP) -> https://www.shop.example/"),
        "{www_http:#}"
    );

    let stale = condition(delivery(&report, "recursive-stale"), "DnsHealthy");
    assert!(
        stale["message"]
            .as_str()
            .unwrap()
            .contains("within 3600s. Nothing to fix: wait."),
        "{stale}"
    );

    let moved = condition(delivery(&report, "moved-cname"), "DnsConfigured");
    assert!(
        moved["message"]
            .as_str()
            .unwrap()
            .contains("cdn-moved.shop.example. IN CNAME cs2.wpc.cdn.example."),
        "{moved}"
    );

    // The inventory: one certificate per hostname here, each with its target CNAME.
    let certs = report["certificates"].as_array().expect("certificates");
    let www_cert = certs
        .iter()
        .find(|c| c["hostnames"][0] == "www.shop.example")
        .expect("www's certificate");
    assert_eq!(www_cert["targetCnames"][0], "cs1.wpc.cdn.example");
    assert_eq!(www_cert["dnsNames"][0], "www.shop.example");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_example_alone_exits_zero_and_the_table_reads_well() {
    let world = World::start().await.expect("world");
    let healthy = format!("{EXAMPLES}/healthy.yaml");
    let (stdout, _) = check(&world, &["-f", &healthy], 0).await;
    assert!(stdout.starts_with("NAMESPACE   NAME   HOSTNAME           READY   REASON\nshop        www    www.shop.example   True    Verified\n"), "{stdout}");
    assert!(
        stdout.contains("1 deliveries: 1 ready, 0 not ready."),
        "{stdout}"
    );

    let broken = format!("{EXAMPLES}/broken-5-dns-cname.yaml");
    let (stdout, _) = check(&world, &["-f", &broken], 1).await;
    assert!(
        stdout.contains("shop/moved-cname (cdn-moved.shop.example) is not ready:"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "FAIL    steps 5 and 6 (DNS CNAME record, dig): DnsConfigured=False CnameTargetMismatch"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("create a CNAME record cdn-moved.shop.example. CNAME cs1.wpc.cdn.example."),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn yaml_output_and_now_flag() {
    let world = World::start().await.expect("world");
    let healthy = format!("{EXAMPLES}/healthy.yaml");
    // At a time before modifiedAt + 1h, step 3 is still propagating.
    let args = [
        "-f",
        &healthy,
        "-o",
        "yaml",
        "--now",
        "2026-11-01T10:20:00Z",
    ];
    let (stdout, _) = check(&world, &args, 1).await;
    let report: Value = serde_saphyr::from_str(&stdout).expect("YAML output");
    let c = condition(&report["deliveries"][0], "EdgeCnamePropagated");
    assert_eq!(c["reason"], "Propagating", "{c}");
    assert!(
        c["message"].as_str().unwrap().contains("in 40 minutes"),
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostname_claimed_twice_is_a_conflict_for_the_second() {
    let world = World::start().await.expect("world");
    let dir = tempfile::tempdir().unwrap();
    let healthy = std::fs::read_to_string(format!("{EXAMPLES}/healthy.yaml")).unwrap();
    let copy = healthy.replace("name: www\n", "name: www-copy\n");
    std::fs::write(dir.path().join("a.yaml"), format!("{healthy}---\n{copy}")).unwrap();
    let (stdout, _) = check(
        &world,
        &["-f", dir.path().to_str().unwrap(), "-o", "json"],
        1,
    )
    .await;
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(delivery(&report, "www")["ready"], true);
    let ready = condition(delivery(&report, "www-copy"), "Ready");
    assert_eq!(ready["reason"], "HostnameConflict");
    assert!(
        ready["message"].as_str().unwrap().contains("shop/www"),
        "{ready}"
    );
}

/// Every object the API server rejects, `check` rejects too: exit 2, naming the file and the value.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_manifests_exit_2_naming_file_and_problem() {
    let world = World::start().await.expect("world");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bad");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("# value: "))
            .unwrap_or_else(|| panic!("{} has a `# value:` line", file.display()));
        let (stdout, stderr) = check(&world, &["-f", file.to_str().unwrap()], 2).await;
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            stderr.contains(name) && stderr.contains("document 1"),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains(value),
            "{name}: the refused value {value:?} is named: {stderr}"
        );
        assert!(stdout.is_empty(), "nothing is checked on bad input");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_and_non_yaml_input_exit_2() {
    let world = World::start().await.expect("world");
    let (_, stderr) = check(&world, &["-f", "/nonexistent/deliveries"], 2).await;
    assert!(
        stderr.contains("/nonexistent/deliveries: cannot read"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.yaml");
    std::fs::write(
        &bad,
        "apiVersion: httpsdelivery.dev/v1alpha1\nkind: HttpsDelivery\nspec: [unclosed\n",
    )
    .unwrap();
    let (_, stderr) = check(&world, &["-f", bad.to_str().unwrap()], 2).await;
    assert!(
        stderr.contains("broken.yaml (document 1): not valid YAML"),
        "{stderr}"
    );
    // A Secret's content never reaches an error message.
    std::fs::write(&bad, "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\ndata: {tls.key: \"-----BEGIN PRIVATE KEY----- not base64\"}\n").unwrap();
    let (_, stderr) = check(&world, &["-f", bad.to_str().unwrap()], 2).await;
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}

/// What the API server refuses with strict field validation, `check` refuses too (the same
/// files go to the API server in `tests/check_agrees.rs`): exit 2, each problem named with its
/// file, document, field path and line, and nothing checked.
#[tokio::test(flavor = "multi_thread")]
async fn what_the_api_server_refuses_exits_2_naming_file_document_field_and_line() {
    let world = World::start().await.expect("world");
    let cases = fixtures("reject", "check");
    assert!(cases.len() >= 20, "{cases:?}");
    let mut problems = Vec::new();
    for (file, expect) in cases {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!expect.is_empty(), "{name} has no `# check:` line");
        let (code, stdout, stderr) = run_check(&world, &["-f", file.to_str().unwrap()]).await;
        if code != Some(2) || !stdout.is_empty() {
            problems.push(format!(
                "{name}: exit {code:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
            ));
            continue;
        }
        let location = format!("{name} (document ");
        let missing: Vec<&String> = std::iter::once(&location)
            .chain(&expect)
            .filter(|e| !stderr.contains(e.as_str()))
            .collect();
        if !missing.is_empty() {
            problems.push(format!("{name}: stderr lacks {missing:?}:\n{stderr}"));
        }
        // One problem each: a fixture broken in a second way would pass for the wrong reason.
        if !stderr.contains("\n1 problem(s) in the input") {
            problems.push(format!("{name}: more than one problem:\n{stderr}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// What the API server accepts is usable input for `check`: it is checked (exit 0 or 1).
#[tokio::test(flavor = "multi_thread")]
async fn what_the_api_server_accepts_is_checked() {
    let world = World::start().await.expect("world");
    for (file, _) in fixtures("accept", "check") {
        let (code, stdout, stderr) =
            run_check(&world, &["-f", file.to_str().unwrap(), "-o", "json"]).await;
        assert!(
            matches!(code, Some(0 | 1)),
            "{}: exit {code:?}\nstderr:\n{stderr}",
            file.display()
        );
        let report: Value = serde_json::from_str(&stdout).expect("JSON output");
        assert_eq!(
            report["deliveries"].as_array().map(Vec::len),
            Some(1),
            "{report:#}"
        );
    }
}

/// Documents of other kinds and files that hold no manifest are listed on stderr, one line for
/// each sort; a file named on the command line must be a manifest.
#[tokio::test(flavor = "multi_thread")]
async fn what_is_skipped_is_said_in_one_line() {
    let world = World::start().await.expect("world");
    let dir = tempfile::tempdir().unwrap();
    let healthy = std::fs::read_to_string(format!("{EXAMPLES}/healthy.yaml")).unwrap();
    let others = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n";
    std::fs::write(dir.path().join("a.yaml"), format!("{healthy}---\n{others}")).unwrap();
    std::fs::create_dir(dir.path().join(".vscode")).unwrap();
    std::fs::write(
        dir.path().join(".vscode/settings.json"),
        "{\"editor.tabSize\": 2}\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("chart/templates")).unwrap();
    std::fs::write(
        dir.path().join("chart/Chart.yaml"),
        "apiVersion: v2\nname: c\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("chart/templates/x.yaml"), "a: {{ .b }}\n").unwrap();
    let root = dir.path().to_str().unwrap();
    let (_, stderr) = check(&world, &["-f", root], 0).await;
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("skipped"))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("skipped 2 documents that are not HttpsDelivery or Secret: ")
            && lines[0].contains("a.yaml:2 (v1 ConfigMap), ")
            && lines[0].contains("a.yaml:3 (apps/v1 Deployment)"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("skipped 2 paths that hold no manifests: ")
            && lines[1].contains("chart/ (a Helm chart")
            && lines[1].contains("settings.json (no apiVersion and kind)"),
        "{stderr}"
    );
    let settings = format!("{root}/.vscode/settings.json");
    let (_, stderr) = check(&world, &["-f", &settings], 2).await;
    assert!(
        stderr.contains("settings.json: holds no Kubernetes object"),
        "{stderr}"
    );
}

/// A FIFO among the manifests is refused without being opened: `check` does not wait for a
/// writer that never comes.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_is_refused_and_does_not_block() {
    let world = World::start().await.expect("world");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{EXAMPLES}/healthy.yaml"),
        dir.path().join("www.yaml"),
    )
    .unwrap();
    let fifo = dir.path().join("pipe.yaml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("check")
        .arg("-f")
        .arg(dir.path())
        .args(world.probe_args());
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start check");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("check blocked on the FIFO");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = child.wait_with_output().expect("output");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "pipe.yaml: is a FIFO (named pipe), not a regular file: refused without reading it"
        ),
        "{stderr}"
    );
}
