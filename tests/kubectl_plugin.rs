//! The binary as a kubectl plugin: `make install-bin` (what `make install` runs after the
//! release build) installs it with the symlink `kubectl-httpsdelivery`, and the real kubectl
//! finds the plugin on PATH and runs `kubectl httpsdelivery check ...` through it. No cluster:
//! `check` on an invalid manifest refuses it before any probe.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::controlplane::tool;
use testkit::process::{run, succeed, text};

const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");
const PLUGIN: &str = "kubectl-httpsdelivery";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `make install-bin DESTDIR=destdir PREFIX=/usr` of the binary cargo built for this test;
/// returns the staged bin directory.
fn install(destdir: &Path) -> PathBuf {
    let mut make = Command::new("make");
    make.current_dir(root())
        // Not the jobserver of a `make test` this may run under.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .args(["--no-print-directory", "install-bin", "PREFIX=/usr"])
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("INSTALL_BIN={BIN}"));
    succeed("make install-bin", make, None);
    destdir.join("usr/bin")
}

/// The real kubectl with only `path` on PATH, and nothing of the machine's configuration.
fn kubectl(path: &Path, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(tool("kubectl"));
    cmd.args(args)
        .env("PATH", path)
        .env("HOME", home)
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .env("KUBERC", "off");
    cmd
}

#[test]
#[ignore = "needs kubectl (tools/bin): run make test"]
fn kubectl_runs_the_installed_binary_as_the_httpsdelivery_plugin() {
    let staging = tempfile::tempdir().expect("temp dir");
    let home = tempfile::tempdir().expect("temp dir");
    let bin = install(staging.path());

    // The binary, and the plugin's name as a relative symlink to it.
    let installed = bin.join("httpsdelivery-operator");
    let mode = fs::metadata(&installed)
        .expect("installed")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(
        fs::read(&installed).expect("read") == fs::read(BIN).expect("read"),
        "{} is the binary",
        installed.display()
    );
    let link = fs::read_link(bin.join(PLUGIN)).expect("kubectl-httpsdelivery is a symlink");
    assert_eq!(link, Path::new("httpsdelivery-operator"));

    let kubectl = |args: &[&str]| kubectl(&bin, home.path(), args);
    let list = succeed("kubectl plugin list", kubectl(&["plugin", "list"]), None);
    assert!(
        list.lines()
            .any(|l| Path::new(l.trim()) == bin.join(PLUGIN)),
        "{list}"
    );

    let help = succeed(
        "kubectl httpsdelivery check --help",
        kubectl(&["httpsdelivery", "check", "--help"]),
        None,
    );
    assert!(
        help.contains("Usage: kubectl httpsdelivery check [OPTIONS] --filename <PATHS>..."),
        "{help}"
    );
    let version = succeed(
        "kubectl httpsdelivery --version",
        kubectl(&["httpsdelivery", "--version"]),
        None,
    );
    let mut direct = Command::new(BIN);
    direct.arg("--version");
    assert_eq!(
        version,
        succeed("httpsdelivery-operator --version", direct, None)
    );

    // `check` through kubectl: its exit code and messages reach the user unchanged.
    let fixture = root().join("tests/fixtures/bad/hostname-scheme.yaml");
    let out = run(
        kubectl(&[
            "httpsdelivery",
            "check",
            "-f",
            fixture.to_str().expect("UTF-8"),
        ]),
        None,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("hostname-scheme.yaml") && stderr.contains("https://www.shop.example"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).is_empty(),
        "nothing is checked on bad input"
    );

    // A mistake is explained in the words the user typed.
    let out = run(kubectl(&["httpsdelivery", "chek"]), None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Usage: kubectl httpsdelivery <COMMAND>"),
        "{stderr}"
    );
}
