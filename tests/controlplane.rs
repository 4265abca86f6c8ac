//! The HttpsDelivery CRD in a real kube-apiserver, driven with the real kubectl: it installs,
//! the schema rejects bad objects with messages a person can act on, `kubectl get hd` shows the
//! printer columns, and the status subresource is separate from the spec.
//!
//! Every test shares one control plane (`testkit::controlplane::shared`) and keeps to its own
//! namespace. Needs `make tools`, so a plain `cargo test` reports them as ignored: `make test`
//! runs them.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use httpsdelivery_operator::api::{
    CertificateEvidence, CertificateSpec, EdgeCnameSpec, HttpsDelivery, HttpsDeliverySpec,
    HttpsDeliveryStatus, OriginProtocol, OriginSpec, Platform,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use testkit::controlplane::{self, ControlPlane};
use testkit::process::{assert_success, run, text};

const CRD_NAME: &str = "httpsdeliveries.httpsdelivery.dev";

/// The example from the brief; every fixture under tests/fixtures/bad differs from it in one
/// field.
const GOOD: &str = "\
apiVersion: httpsdelivery.dev/v1alpha1
kind: HttpsDelivery
metadata:
  name: www
spec:
  hostname: www.shop.example
  certificate:
    platform: HttpLarge
    targetCname: cs1.wpc.cdn.example
  edgeCname:
    hostname: www.shop.example
    platform: HttpLarge
    origin: shop-origin
  origin:
    name: shop-origin
    host: origin.shop.example
    port: 443
    protocol: HttpsOnly
    httpsEdgeProtocol: true
";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared control plane with the CRD installed (once per test binary).
fn plane() -> &'static ControlPlane {
    static CRDS: OnceLock<Vec<String>> = OnceLock::new();
    let cp = controlplane::shared();
    CRDS.get_or_init(|| {
        let dir = workspace().join("crds");
        assert!(
            dir.join("httpsdelivery.yaml").is_file(),
            "{}/httpsdelivery.yaml is missing: regenerate it with \
             `cargo run -q -- crd > crds/httpsdelivery.yaml`",
            dir.display()
        );
        let crds = cp.install_crds(&dir);
        eprintln!(
            "shared control plane at {} started in {:.2}s; CRDs {crds:?} installed",
            cp.server(),
            cp.startup_time().as_secs_f64()
        );
        crds
    });
    cp
}

/// Runs kubectl with `input` on stdin.
fn kubectl_with_stdin(cp: &ControlPlane, args: &[&str], input: &str) -> Output {
    let mut cmd = cp.kubectl();
    cmd.args(args);
    run(cmd, Some(input))
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> Output {
    let mut cmd = cp.kubectl();
    cmd.args(args);
    run(cmd, None)
}

fn good_spec() -> HttpsDeliverySpec {
    HttpsDeliverySpec {
        hostname: "www.shop.example".into(),
        certificate: CertificateSpec {
            secret_ref: None,
            platform: Some(Platform::HttpLarge),
            target_cname: Some("cs1.wpc.cdn.example".into()),
            issuer_domain: None,
        },
        edge_cname: Some(EdgeCnameSpec {
            hostname: "www.shop.example".into(),
            platform: Platform::HttpLarge,
            origin: "shop-origin".into(),
            modified_at: None,
        }),
        origin: Some(OriginSpec {
            name: "shop-origin".into(),
            host: "origin.shop.example".into(),
            port: 443,
            protocol: OriginProtocol::HttpsOnly,
            https_edge_protocol: true,
            sni_hostname: None,
        }),
        cdn: None,
        checks: None,
    }
}

/// `kubectl get hd` as header and rows of cells. Cells are cut at the header's column
/// offsets, not at whitespace: kubectl leaves a cell blank when its JSONPath finds nothing.
fn get_hd(cp: &ControlPlane, ns: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let out = kubectl(cp, &["get", "hd", "-n", ns]);
    assert_success("kubectl get hd", &out);
    let stdout = text(&out.stdout);
    eprintln!("kubectl get hd -n {ns}\n{stdout}");
    let mut lines = stdout.lines();
    let header_line = lines.next().unwrap_or_default();
    let header: Vec<String> = header_line.split_whitespace().map(str::to_owned).collect();
    let mut starts: Vec<usize> = header
        .iter()
        .scan(0, |from, name| {
            let at = *from + header_line[*from..].find(name.as_str())?;
            *from = at + name.len();
            Some(at)
        })
        .collect();
    starts.push(usize::MAX);
    let rows = lines
        .map(|line| {
            starts
                .windows(2)
                .map(|w| {
                    let cell = line.get(w[0]..w[1].min(line.len())).unwrap_or("");
                    cell.trim().to_owned()
                })
                .collect()
        })
        .collect();
    (header, rows)
}

#[tokio::test]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn crd_installs_and_becomes_established() {
    let cp = plane();
    let crds: Api<CustomResourceDefinition> = Api::all(cp.client().await);
    let crd = crds.get(CRD_NAME).await.expect("the CRD is in the API");

    let conditions = crd
        .status
        .and_then(|s| s.conditions)
        .expect("the CRD has conditions");
    for wanted in ["NamesAccepted", "Established"] {
        let c = conditions
            .iter()
            .find(|c| c.type_ == wanted)
            .unwrap_or_else(|| panic!("no {wanted} condition in {conditions:?}"));
        assert_eq!(c.status, "True", "{wanted}: {c:?}");
    }
    assert_eq!(crd.spec.names.short_names, Some(vec!["hd".to_owned()]));
    assert_eq!(crd.spec.scope, "Namespaced");

    // Installing again (as every test binary and every rerun does) is a no-op, not an error.
    assert_eq!(
        cp.install_crds(workspace().join("crds")),
        vec![
            "cdnaccounts.httpsdelivery.dev".to_owned(),
            "clustercdnaccounts.httpsdelivery.dev".to_owned(),
            CRD_NAME.to_owned(),
        ]
    );
}

/// The `# expect: ...` lines of a fixture: what the person running kubectl must be told.
fn expectations(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn kubectl_apply_rejects_bad_objects_with_readable_messages() {
    let cp = plane();
    let ns = cp.namespace("bad").await;
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(workspace().join("tests/fixtures/bad"))
        .expect("tests/fixtures/bad")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 10, "fixtures: {fixtures:?}");

    let mut problems = Vec::new();
    for fixture in &fixtures {
        let expect = expectations(fixture);
        assert!(
            !expect.is_empty(),
            "{} has no `# expect:` lines",
            fixture.display()
        );
        let out = kubectl(
            cp,
            &[
                "apply",
                "-n",
                &ns,
                "-f",
                fixture.to_str().expect("UTF-8 path"),
            ],
        );
        let stderr = text(&out.stderr);
        let name = fixture.file_name().unwrap().to_string_lossy();
        if out.status.success() {
            problems.push(format!("{name}: accepted\n{}", text(&out.stdout)));
            continue;
        }
        for e in &expect {
            if !stderr.contains(e.as_str()) {
                problems.push(format!("{name}: stderr lacks {e:?}:\n{stderr}"));
            }
        }
        // A fixture broken in a second, unintended way would pass for the wrong reason. With
        // several causes the apiserver lists them as `* field: ...` lines; the `<nil>` one only
        // says that CEL rules were skipped because the schema already failed.
        let causes = stderr
            .lines()
            .filter(|l| l.starts_with("* ") && !l.starts_with("* <nil>"))
            .count();
        if causes > 1 {
            problems.push(format!("{name}: more than one error:\n{stderr}"));
        }
        eprintln!("{name}: {}", stderr.trim());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));

    let listed = kubectl(cp, &["get", "hd", "-n", &ns, "-o", "name"]);
    assert_success("kubectl get hd", &listed);
    assert_eq!(text(&listed.stdout), "", "nothing was stored");
}

#[tokio::test]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn kubectl_apply_accepts_a_valid_object_and_get_hd_shows_the_columns() {
    let cp = plane();
    let ns = cp.namespace("good").await;
    let out = kubectl_with_stdin(cp, &["apply", "-n", &ns, "-f", "-"], GOOD);
    assert_success("kubectl apply of a valid HttpsDelivery", &out);
    assert_eq!(
        text(&out.stdout).trim(),
        "httpsdelivery.httpsdelivery.dev/www created"
    );

    let (header, rows) = get_hd(cp, &ns);
    assert_eq!(
        header,
        ["NAME", "HOSTNAME", "READY", "REASON", "EXPIRES", "AGE"],
        "kubectl get hd header"
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    // No status yet: the Ready, Reason and Expires cells are blank.
    assert_eq!(
        rows[0][..5],
        ["www", "www.shop.example", "", "", ""],
        "{rows:?}"
    );

    // The apiserver applied the schema defaults the operator relies on.
    let api: Api<HttpsDelivery> = Api::namespaced(cp.client().await, &ns);
    assert_eq!(api.get("www").await.expect("read back").spec, good_spec());
}

#[tokio::test]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn spec_round_trips_and_status_is_a_separate_subresource() {
    let cp = plane();
    let ns = cp.namespace("status").await;
    let api: Api<HttpsDelivery> = Api::namespaced(cp.client().await, &ns);

    let created = api
        .create(
            &PostParams::default(),
            &HttpsDelivery::new("www", good_spec()),
        )
        .await
        .expect("create");
    assert_eq!(created.spec, good_spec());
    assert!(created.status.is_none(), "{:?}", created.status);
    let read = api.get("www").await.expect("read back");
    assert_eq!(read.spec, good_spec());
    let generation = read.metadata.generation.expect("generation");

    let at: Time = Time("2026-03-01T10:00:00Z".parse().unwrap());
    let status = HttpsDeliveryStatus {
        observed_generation: Some(generation),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Verified".into(),
            message: "every step of the procedure passed".into(),
            observed_generation: Some(generation),
            last_transition_time: at,
        }],
        certificate: Some(CertificateEvidence {
            source: "Edge/192.0.2.10:443".into(),
            subject: "CN=www.shop.example".into(),
            dns_names: vec!["www.shop.example".into()],
            dns_names_omitted: 0,
            issuer: "CN=Test CA".into(),
            serial: "01".into(),
            sha256_fingerprint: "00".repeat(32),
            not_before: "2026-01-01T00:00:00Z".parse().unwrap(),
            not_after: "2027-01-01T00:00:00Z".parse().unwrap(),
        }),
        ..HttpsDeliveryStatus::default()
    };
    let patch = serde_json::json!({
        "apiVersion": "httpsdelivery.dev/v1alpha1",
        "kind": "HttpsDelivery",
        "status": status,
    });
    let patched = api
        .patch_status(
            "www",
            &PatchParams::apply("httpsdelivery-operator-test"),
            &Patch::Apply(&patch),
        )
        .await
        .expect("server-side apply to /status");
    assert_eq!(patched.status.as_ref(), Some(&status));

    let read = api
        .get("www")
        .await
        .expect("read back after the status patch");
    assert_eq!(read.status, Some(status));
    assert_eq!(
        read.spec,
        good_spec(),
        "a status write leaves the spec alone"
    );
    assert_eq!(read.metadata.generation, Some(generation));
    let managers: Vec<_> = read
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert_eq!(managers, ["httpsdelivery-operator-test"]);

    // A spec written to /status is ignored: the subresource only carries status.
    let mut sneaky = read.clone();
    sneaky.spec.hostname = "evil.shop.example".into();
    sneaky.metadata.managed_fields = None;
    api.replace_status("www", &PostParams::default(), &sneaky)
        .await
        .expect("replace /status");
    assert_eq!(
        api.get("www").await.unwrap().spec.hostname,
        "www.shop.example"
    );

    let (header, rows) = get_hd(cp, &ns);
    assert_eq!(header[..4], ["NAME", "HOSTNAME", "READY", "REASON"]);
    assert_eq!(
        rows[0][..5],
        [
            "www",
            "www.shop.example",
            "True",
            "Verified",
            "2027-01-01T00:00:00Z"
        ],
        "{rows:?}"
    );
}

#[tokio::test]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn kubectl_and_helm_act_as_the_admin_user() {
    let cp = plane();
    let out = kubectl(cp, &["auth", "whoami", "-o", "jsonpath={.status.userInfo}"]);
    assert_success("kubectl auth whoami", &out);
    let who = text(&out.stdout);
    assert!(
        who.contains(r#""username":"admin""#) && who.contains("system:masters"),
        "{who}"
    );
    let out = kubectl(cp, &["auth", "can-i", "*", "*", "--all-namespaces"]);
    assert_success("kubectl auth can-i", &out);
    assert_eq!(text(&out.stdout).trim(), "yes");

    let out = cp
        .helm()
        .args(["list", "--all-namespaces", "-o", "json"])
        .output()
        .expect("run helm");
    assert_success("helm list", &out);
    assert_eq!(text(&out.stdout).trim(), "[]");

    // Nothing of helm's state goes to $HOME.
    let out = cp.helm().arg("env").output().expect("run helm env");
    assert_success("helm env", &out);
    let env = text(&out.stdout);
    for var in ["HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"] {
        let line = env
            .lines()
            .find(|l| l.starts_with(&format!("{var}=")))
            .unwrap_or_else(|| panic!("helm env lacks {var}:\n{env}"));
        assert!(
            line.contains(&cp.dir().display().to_string()),
            "{line} is outside {}",
            cp.dir().display()
        );
    }
}

#[tokio::test]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn a_private_control_plane_stops_when_dropped() {
    let cp = ControlPlane::start();
    eprintln!(
        "private control plane started in {:.2}s",
        cp.startup_time().as_secs_f64()
    );
    assert_ne!(cp.server(), plane().server(), "its own ports");

    let client = cp.client().await;
    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "34")
    );
    let ns = cp.namespace("private").await;
    let out = kubectl(&cp, &["get", "namespace", &ns, "-o", "name"]);
    assert_success("kubectl get namespace", &out);
    assert_eq!(text(&out.stdout).trim(), format!("namespace/{ns}"));

    let addr = cp
        .server()
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    let dir = cp.dir().to_path_buf();
    drop(client);
    let stopping = Instant::now();
    drop(cp);
    eprintln!("stopped in {:.2}s", stopping.elapsed().as_secs_f64());
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "kube-apiserver still listens on {addr} after drop"
    );
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

/// The service-account keys are ECDSA P-256 (rcgen) rather than the RSA of most setups: the
/// apiserver must both sign tokens with them and accept what it signed.
#[tokio::test]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn service_account_tokens_are_issued_and_verified() {
    let cp = plane();
    let ns = cp.namespace("sa").await;
    assert_success(
        "kubectl create serviceaccount",
        &kubectl(cp, &["create", "serviceaccount", "operator", "-n", &ns]),
    );
    let out = kubectl(cp, &["create", "token", "operator", "-n", &ns]);
    assert_success("kubectl create token", &out);
    let token = text(&out.stdout).trim().to_owned();

    let review = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    });
    let out = kubectl_with_stdin(
        cp,
        &[
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.status.user.username}",
        ],
        &review.to_string(),
    );
    assert_success("kubectl create tokenreview", &out);
    assert_eq!(
        text(&out.stdout),
        format!("system:serviceaccount:{ns}:operator")
    );
}

/// When the apiserver dies during start, the error says so and carries its log, instead of a
/// bare timeout a minute later.
#[test]
#[ignore = "needs the control plane (tools/bin): run make test"]
fn a_failed_start_reports_the_logs() {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(controlplane::tool("etcd"), bin.path().join("etcd"))
        .expect("link etcd");
    let fake = bin.path().join("kube-apiserver");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'E0101 fake apiserver: cannot load --tls-cert-file' >&2\nexit 3\n",
    )
    .expect("write the fake apiserver");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let started = Instant::now();
    let err = ControlPlane::try_start_with(bin.path()).expect_err("the fake apiserver exits");
    eprintln!("{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "noticed the exit only after {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("kube-apiserver exited early with exit status: 3"),
        "{err}"
    );
    assert!(
        err.contains("fake apiserver: cannot load --tls-cert-file"),
        "{err}"
    );
    assert!(err.contains("kube-apiserver.log"), "{err}");
    assert!(err.contains("etcd.log"), "{err}");
}
