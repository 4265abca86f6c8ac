//! `check` agrees with the API server (issue 11): the same manifests go to the real
//! kube-apiserver, with the CRD of `crds/` installed, through `kubectl apply --validate=strict
//! --dry-run=server` (strict field validation, as a person or a GitOps tool applies them), and to
//! the `check` binary. What one refuses the other refuses, and what one accepts the other
//! accepts.
//!
//! - `tests/fixtures/reject/`: both refuse each file, the API server saying its `# server:`
//!   lines, `check` exiting 2 and saying its `# check:` lines (file, document, field path, line).
//!   Among them unknown fields, names, the schema's bounds and the duration bounds of the check
//!   settings (timeout 1s..60s, recheckInterval >= 30s, maxima of propagationDelay and
//!   expiryWarning).
//! - `tests/fixtures/bad/` (the CRD's schema and CEL cases, which `tests/controlplane.rs` applies
//!   with plain `kubectl apply`): both refuse each file, both naming its `# value:`.
//! - `tests/fixtures/accept/` and `examples/`: both accept each file (`check` exits 0 or 1).
//!
//! Needs `make tools`, so a plain `cargo test` reports them as ignored: `make test` runs them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use testkit::controlplane::{self, ControlPlane};
use testkit::process::{run, text};
use testkit::world::World;

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");

/// The shared control plane with the CRD installed (once per test binary).
fn plane() -> &'static ControlPlane {
    static CRDS: OnceLock<Vec<String>> = OnceLock::new();
    let cp = controlplane::shared();
    CRDS.get_or_init(|| cp.install_crds(controlplane::workspace_root().join("crds")));
    cp
}

/// What one side said of a file.
struct Verdict {
    refused: bool,
    said: String,
}

/// The files of `dir` (relative to the workspace), sorted.
fn files(dir: &str) -> Vec<PathBuf> {
    let dir = controlplane::workspace_root().join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no .yaml file", dir.display());
    files
}

/// The values of a file's `# KEY:` lines, for each of `keys`.
fn lines(file: &Path, keys: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("fixture");
    text.lines()
        .filter_map(|l| {
            keys.iter()
                .find_map(|k| l.strip_prefix(&format!("# {k}: ")))
                .map(str::to_string)
        })
        .collect()
}

fn name(file: &Path) -> String {
    let parent = file.parent().and_then(Path::file_name).unwrap_or_default();
    let file = file.file_name().unwrap_or_default();
    format!("{}/{}", parent.to_string_lossy(), file.to_string_lossy())
}

/// `kubectl apply --validate=strict --dry-run=server -f FILE`, in `namespace` unless the file
/// names its own.
fn apply(cp: &ControlPlane, namespace: &str, file: &Path) -> Verdict {
    let text_in = std::fs::read_to_string(file).expect("fixture");
    let mut cmd = cp.kubectl();
    cmd.args(["apply", "--validate=strict", "--dry-run=server", "-f"])
        .arg(file);
    if !text_in
        .lines()
        .any(|l| l.trim_start().starts_with("namespace:"))
    {
        cmd.args(["-n", namespace]);
    }
    let out = run(cmd, None);
    Verdict {
        refused: !out.status.success(),
        said: format!("{}{}", text(&out.stdout), text(&out.stderr)),
    }
}

/// `check -f FILE` against the loopback world: exit 2 refuses, 0 and 1 accept.
async fn check(world: &World, file: &Path) -> Verdict {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("check")
        .arg("-f")
        .arg(file)
        .args(world.probe_args());
    let out = tokio::task::spawn_blocking(move || run(cmd, None))
        .await
        .expect("join");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    match out.status.code() {
        Some(0 | 1) => Verdict {
            refused: false,
            said,
        },
        Some(2) => Verdict {
            refused: true,
            said,
        },
        code => panic!("check -f {}: exit {code:?}\n{said}", file.display()),
    }
}

/// Both sides refuse every file of `dirs`, each saying what its lines expect.
async fn refused_by_both(dirs: &[&str], server_keys: &[&str], check_keys: &[&str]) {
    let cp = plane();
    let namespace = cp.namespace("agree-refuse").await;
    let world = World::start().await.expect("world");
    let mut problems = Vec::new();
    let mut count = 0;
    for file in dirs.iter().flat_map(|d| files(d)) {
        count += 1;
        let name = name(&file);
        let (server, checked) = (apply(cp, &namespace, &file), check(&world, &file).await);
        eprintln!(
            "{name}:\n  API server: {}\n  check: {}",
            server.said.trim(),
            checked.said.trim()
        );
        for (side, verdict, keys) in [
            ("the API server", &server, server_keys),
            ("check", &checked, check_keys),
        ] {
            if !verdict.refused {
                problems.push(format!("{name}: {side} accepted it:\n{}", verdict.said));
                continue;
            }
            let expected = lines(&file, keys);
            if expected.is_empty() {
                problems.push(format!("{name}: no `# {}:` line", keys[0]));
            }
            for e in expected {
                if !verdict.said.contains(&e) {
                    problems.push(format!(
                        "{name}: {side} did not say {e:?}:\n{}",
                        verdict.said
                    ));
                }
            }
        }
    }
    assert!(count >= 10, "only {count} files in {dirs:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn what_the_api_server_refuses_check_refuses() {
    refused_by_both(&["tests/fixtures/reject"], &["server"], &["check"]).await;
}

/// The CRD schema and CEL cases of `tests/fixtures/bad/` (which `tests/controlplane.rs` applies
/// with plain `kubectl apply`), with strict field validation. Both name the refused value (the
/// wording of the messages is `tests/controlplane.rs`'s business).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn what_the_crd_refuses_check_refuses() {
    refused_by_both(&["tests/fixtures/bad"], &["value"], &["value"]).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn what_the_api_server_accepts_check_accepts() {
    let cp = plane();
    let namespace = cp.namespace("agree-accept").await;
    // The examples name their namespace.
    let shop = run(
        {
            let mut cmd = cp.kubectl();
            cmd.args(["create", "namespace", "shop"]);
            cmd
        },
        None,
    );
    assert!(
        shop.status.success() || text(&shop.stderr).contains("AlreadyExists"),
        "create namespace shop: {}",
        text(&shop.stderr)
    );
    let world = World::start().await.expect("world");
    let mut problems = Vec::new();
    for file in files("tests/fixtures/accept")
        .into_iter()
        .chain(files("examples"))
    {
        let name = name(&file);
        for (side, verdict) in [
            ("the API server", apply(cp, &namespace, &file)),
            ("check", check(&world, &file).await),
        ] {
            if verdict.refused {
                problems.push(format!("{name}: {side} refused it:\n{}", verdict.said));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
