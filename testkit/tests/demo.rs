//! The quick start in its non-interactive mode: one Ready delivery, each broken one with the
//! reason of its step, and nothing left running.

use std::process::Command;

#[test]
#[ignore = "needs the control plane (tools/bin) and target/debug/httpsdelivery-operator: run make test"]
fn demo_prints_every_verdict_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .env("DEMO_EXIT", "1")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("NAME "))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let expect = [
        ("www", "True", "Verified"),
        ("api", "True", "Verified"),
        ("expired-certificate", "False", "Expired"),
        ("wrong-platform", "False", "PlatformMismatch"),
        ("new-edge-cname", "False", "Propagating"),
        ("http-origin", "False", "OriginNotHttpsOnly"),
        ("moved-cname", "False", "CnameTargetMismatch"),
        ("apex", "False", "ZoneApex"),
        ("caa-forbids-issuer", "True", "Verified"),
        ("caa-critical-unknown", "True", "Verified"),
        ("dnssec-bogus", "False", "DnssecValidationFailed"),
        (
            "authoritative-disagree",
            "False",
            "AuthoritativeServersDisagree",
        ),
        ("recursive-stale", "False", "CnameTargetMismatch"),
        ("dangling-cname", "False", "EdgeUnreachable"),
        ("ipv4-only-edge", "False", "EdgeUnreachable"),
        ("status-unexpected", "False", "HttpStatusUnexpected"),
        ("no-https-redirect", "False", "NoHttpsRedirect"),
        ("hsts-too-short", "False", "HstsTooShort"),
        ("wrong-origin", "False", "WrongOrigin"),
        ("slow-body", "Unknown", "HttpTimeout"),
    ];
    assert_eq!(rows.len(), expect.len(), "{stdout}");
    for (name, ready, reason) in expect {
        let row = rows
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{name} in\n{stdout}"));
        assert_eq!((row[2], row[3]), (ready, reason), "{name}:\n{stdout}");
    }
    assert_eq!(rows.iter().filter(|r| r[2] == "True").count(), 4);
    // The wide table shows what DnsHealthy found, also where Ready is True.
    let wide: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("$ kubectl get hd -n shop -o wide"))
        .take_while(|l| !l.trim().is_empty())
        .collect();
    for (name, dns) in [
        ("caa-forbids-issuer", "CaaForbidsIssuer"),
        ("recursive-stale", "RecursiveAnswerStale"),
        ("dangling-cname", "DanglingCname"),
        ("wrong-origin", "WrongOrigin"),
    ] {
        assert!(
            wide.iter()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains(dns)),
            "{name} {dns}:\n{stdout}"
        );
    }
    // The provider-mode delivery's account answered.
    let account = stdout
        .lines()
        .skip_while(|l| !l.starts_with("$ kubectl get cdnaccounts"))
        .nth(2)
        .unwrap_or_default();
    assert!(
        account.starts_with("edgecast") && account.contains("True") && account.contains("Verified"),
        "{stdout}"
    );
    assert!(
        stdout.contains("$ kubectl describe hd moved-cname -n shop"),
        "{stdout}"
    );
    assert!(stdout.contains("Warning  CnameTargetMismatch"), "{stdout}");
    for step in [
        "starting a local control plane",
        "helm install",
        "waiting until every delivery is reconciled",
    ] {
        assert!(
            stderr.contains(step),
            "progress line {step:?} missing:\n{stderr}"
        );
    }
    assert_cleaned_up(&stderr);
}

/// Interactive mode: it stays up with instructions, and Ctrl-C (SIGINT) stops every process.
#[test]
#[ignore = "needs the control plane (tools/bin) and target/debug/httpsdelivery-operator: run make test"]
fn demo_stays_up_until_ctrl_c_and_then_cleans_up() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .env_remove("DEMO_EXIT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the demo's output");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("Ctrl-C stops everything.") {
            break;
        }
    }
    assert!(seen.contains("export KUBECONFIG="), "instructions:\n{seen}");
    assert!(seen.contains("kubectl patch hd wrong-platform"), "{seen}");
    assert_eq!(child.try_wait().expect("poll"), None, "the demo stays up");
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let output = child.wait_with_output().expect("wait for the demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("stopping the operator, the loopback world and the control plane"),
        "{stderr}"
    );
    assert_cleaned_up(&stderr);
}

/// The control plane's directory the demo named is gone, and no process still refers to it.
fn assert_cleaned_up(stderr: &str) {
    let dir = stderr
        .lines()
        .find_map(|l| l.split(", files in ").nth(1))
        .expect("the demo names its control plane's directory");
    assert!(!std::path::Path::new(dir).exists(), "{dir} was removed");
    let left: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(dir))
        .collect();
    assert!(left.is_empty(), "processes left: {left:?}");
}
