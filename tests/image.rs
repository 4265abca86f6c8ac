//! The container image, built offline: `deploy/Containerfile.prebuilt` (scratch plus the static
//! binary) with buildah from Debian's packages, into a throwaway store (vfs driver, chroot
//! isolation: no daemon, no registry, no runtime but buildah). Asserts the image's config (user,
//! entrypoint, command, the same labels as `deploy/Dockerfile`), that its one layer holds the
//! binary and nothing else (no shell), runs the binary inside it, and exports it to an OCI
//! archive, the form `skopeo copy` or `buildah push` sends on to a registry:
//! `target/static/oci/httpsdelivery-operator.oci.tar`. Beside it, the image's SBOM
//! (`httpsdelivery-operator.cdx.json`, CycloneDX JSON by cargo-cyclonedx) must list the
//! binary's crates at the versions and checksums of Cargo.lock.
//!
//! The static binary and the SBOM are made by `make image` (and `make test`) before this runs:
//! cargo cannot be called from here, the test's own cargo holds the build lock.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// The operator binary cargo built for this test run (dynamically linked): the reference the
/// image's binary must agree with.
const BIN: &str = env!("CARGO_BIN_EXE_httpsdelivery-operator");
const NAME: &str = "httpsdelivery-operator";
const IN_IMAGE: &str = "/usr/local/bin/httpsdelivery-operator";
const TAG: &str = "localhost/httpsdelivery-operator:test";
const INSTALL_BUILDAH: &str = "apt-get install -y --no-install-recommends buildah";
/// The target of the static binary, and so of the SBOM's dependency resolution.
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `make image` puts the static binary.
fn static_binary() -> PathBuf {
    root()
        .join("target/static")
        .join(STATIC_TARGET)
        .join("debug")
        .join(NAME)
}

/// Where the image is exported, and `make sbom` writes its SBOM.
fn oci_dir() -> PathBuf {
    root().join("target/static/oci")
}

fn sbom_path() -> PathBuf {
    oci_dir().join(format!("{NAME}.cdx.json"))
}

fn show(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"))
}

/// Runs `cmd`, fails unless it succeeds, and returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed: {}", show(&out));
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

fn sha256(path: &Path) -> String {
    let mut file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    format!("{:x}", hash.finalize())
}

fn json(path: &Path) -> Value {
    let text = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Preconditions: buildah, and a static binary built from the current sources

fn require_buildah() {
    match Command::new("buildah").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`buildah --version` failed: {}", show(&out)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "buildah is not installed; this test builds the image with it. Install it (Debian 12, \
             as root): `{INSTALL_BUILDAH}`"
        ),
        Err(e) => panic!("start buildah: {e}"),
    }
}

/// The static binary, after checking it exists, is newer than every workspace source it was
/// built from (cargo's own dep-info next to it lists them), and links nothing dynamically.
fn require_static_binary() -> PathBuf {
    let bin = static_binary();
    let built = match fs::metadata(&bin) {
        Ok(meta) => meta.modified().expect("mtime"),
        Err(e) => panic!(
            "{}: {e}\nthe static binary is missing: run `make image` (it builds the binary, then \
             runs this test)",
            bin.display()
        ),
    };
    let dep_info = bin.with_extension("d");
    let deps = fs::read_to_string(&dep_info)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make image`", dep_info.display()));
    let (_, sources) = deps
        .split_once(": ")
        .expect("dep-info is `target: sources`");
    let workspace = root();
    let sources: Vec<&Path> = sources
        .split_whitespace()
        .map(Path::new)
        .filter(|p| p.starts_with(&workspace))
        .collect();
    assert!(
        sources.iter().any(|p| p.ends_with("src/main.rs")),
        "{} does not list src/main.rs: {deps}",
        dep_info.display()
    );
    for source in sources {
        let changed = fs::metadata(source).and_then(|m| m.modified());
        if changed.is_ok_and(|changed| changed > built) {
            panic!(
                "{} changed after {} was built: run `make image` to rebuild it and run this test",
                source.display(),
                bin.display()
            );
        }
    }
    // ldd (glibc's, always on Debian): "not a dynamic executable" or "statically linked".
    let out = run(Command::new("ldd").arg(&bin));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("=>")
            && (text.contains("not a dynamic executable") || text.contains("statically linked")),
        "{} is not static; ldd says:\n{text}",
        bin.display()
    );
    bin
}

// ---------------------------------------------------------------------------------------------
// buildah with its own store

/// buildah with a store, run root and temporary files of its own (removed afterwards): nothing
/// of the machine's containers storage is read or written.
struct Buildah {
    dir: tempfile::TempDir,
}

impl Buildah {
    fn new() -> Self {
        // Under target/: the store holds a few copies of the binary, more than a small /tmp.
        let parent = root().join("target/static");
        let dir = tempfile::Builder::new()
            .prefix("image-test-")
            .tempdir_in(&parent)
            .unwrap_or_else(|e| panic!("temp dir in {}: {e}", parent.display()));
        fs::create_dir(dir.path().join("tmp")).expect("create tmp");
        Buildah { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd<I: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = I>) -> Command {
        let mut cmd = Command::new("buildah");
        cmd.arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .arg("--storage-driver")
            .arg("vfs")
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot")
            .env("TMPDIR", self.path("tmp"));
        cmd
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        // Containers first (a chroot-isolated run leaves nothing mounted, but be tidy); the
        // temp dir then goes with everything in it.
        let _ = self.cmd(["rm", "--all"]).output();
    }
}

// ---------------------------------------------------------------------------------------------
// The labels deploy/Dockerfile gives its final stage

/// `key -> value` of the `LABEL` instruction in `deploy/Dockerfile`, with `${VERSION}`
/// replaced by the default of its `ARG VERSION=`.
fn dockerfile_labels() -> BTreeMap<String, String> {
    let path = root().join("deploy/Dockerfile");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ARG VERSION="))
        .expect("deploy/Dockerfile has `ARG VERSION=`");
    let mut labels = BTreeMap::new();
    for line in text.lines().skip_while(|l| !l.starts_with("LABEL ")) {
        let pair = line
            .trim_start_matches("LABEL ")
            .trim()
            .trim_end_matches('\\')
            .trim();
        let (key, value) = pair
            .split_once('=')
            .unwrap_or_else(|| panic!("LABEL line is not key=\"value\": {line}"));
        let value = value.trim_matches('"').replace("${VERSION}", version);
        labels.insert(key.to_owned(), value);
        if !line.trim_end().ends_with('\\') {
            break;
        }
    }
    assert!(!labels.is_empty(), "no LABEL in {}", path.display());
    labels
}

// ---------------------------------------------------------------------------------------------

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect()
}

#[test]
#[ignore = "needs buildah and the static binary: run make test"]
fn image_builds_offline_from_scratch_and_runs_the_operator() {
    require_buildah();
    let bin = require_static_binary();
    let buildah = Buildah::new();
    let started = Instant::now();

    // The build context: a directory holding only the binary (hard-linked, same file system).
    let context = buildah.path("context");
    fs::create_dir(&context).expect("create context");
    if fs::hard_link(&bin, context.join(NAME)).is_err() {
        fs::copy(&bin, context.join(NAME)).expect("copy the binary into the context");
    }
    let containerfile = root().join("deploy/Containerfile.prebuilt");
    ok(buildah
        .cmd([
            "bud",
            "--pull=never",
            "--isolation",
            "chroot",
            "-t",
            TAG,
            "-f",
        ])
        .arg(&containerfile)
        .arg(&context));
    eprintln!("image built in {:?}", started.elapsed());

    // The image's config.
    let inspect: Value =
        serde_json::from_str(&ok(&mut buildah.cmd(["inspect", "--type", "image", TAG])))
            .expect("buildah inspect prints JSON");
    let image = &inspect["OCIv1"];
    let config = &image["config"];
    assert_eq!(image["os"], "linux", "{image:#}");
    assert_eq!(image["architecture"], "amd64", "{image:#}");
    assert_eq!(config["User"], "65532:65532", "{config:#}");
    assert_eq!(strings(&config["Entrypoint"]), [IN_IMAGE], "{config:#}");
    assert_eq!(strings(&config["Cmd"]), ["run"], "{config:#}");
    let ports: Vec<&String> = config["ExposedPorts"]
        .as_object()
        .expect("ExposedPorts")
        .keys()
        .collect();
    assert_eq!(ports, ["8080/tcp"], "{config:#}");
    let mut labels: BTreeMap<String, String> =
        serde_json::from_value(config["Labels"].clone()).expect("labels are strings");
    labels.remove("io.buildah.version");
    assert_eq!(
        labels,
        dockerfile_labels(),
        "the same labels as deploy/Dockerfile"
    );
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION"),
        "ARG VERSION's default follows Cargo.toml"
    );
    assert_eq!(
        image["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(1),
        "exactly one layer: {image:#}"
    );

    // Exported as an OCI archive (what `skopeo copy oci-archive:... docker://...` pushes),
    // then read back: one layer, holding the binary and its parent directories, nothing else.
    fs::create_dir_all(oci_dir()).expect("create target/static/oci");
    let archive = oci_dir().join(format!("{NAME}.oci.tar"));
    let _ = fs::remove_file(&archive);
    ok(buildah
        .cmd(["push", TAG])
        .arg(format!("oci-archive:{}", archive.display())));
    let oci = buildah.path("oci");
    fs::create_dir(&oci).expect("create oci");
    ok(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&oci));
    let blob = |digest: &Value| {
        let digest = digest.as_str().expect("digest");
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        oci.join("blobs/sha256").join(hex)
    };
    let index = json(&oci.join("index.json"));
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{index:#}");
    let manifest = json(&blob(&manifests[0]["digest"]));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "exactly one layer: {manifest:#}");
    let layer = blob(&layers[0]["digest"]);
    let listing = ok(Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&layer));
    let in_layer = IN_IMAGE.trim_start_matches('/');
    let mut files = Vec::new();
    for line in listing.lines() {
        // mode owner size date time name
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 6, "unexpected tar listing line: {line}");
        let (mode, owner, name) = (fields[0], fields[1], fields[5]);
        if mode.starts_with('d') {
            assert!(
                in_layer.starts_with(name) && name.ends_with('/'),
                "a directory that does not lead to the binary: {line}\n{listing}"
            );
        } else {
            assert_eq!(
                (mode, owner, name),
                ("-rwxr-xr-x", "0/0", in_layer),
                "{listing}"
            );
            files.push(name);
        }
    }
    assert_eq!(files, [in_layer], "the binary and nothing else:\n{listing}");
    let unpacked = buildah.path("layer");
    fs::create_dir(&unpacked).expect("create layer");
    ok(Command::new("tar")
        .arg("-xf")
        .arg(&layer)
        .arg("-C")
        .arg(&unpacked));
    assert_eq!(
        sha256(&unpacked.join(in_layer)),
        sha256(&bin),
        "the image holds the static binary"
    );
    eprintln!("image exported and checked in {:?}", started.elapsed());
    assert_sbom(&sbom_path());

    // Run the binary inside the image: no libc, no loader, no /etc, as user 65532.
    let container = ok(&mut buildah.cmd(["from", "--pull=never", TAG]));
    let container = container.trim();
    let in_container = |args: &[&str]| {
        buildah
            .cmd(["run", "--isolation", "chroot", container, "--", IN_IMAGE])
            .args(args)
            .output()
            .expect("start buildah run")
    };
    let host = |args: &[&str]| ok(Command::new(BIN).args(args));
    let version = in_container(&["--version"]);
    assert!(version.status.success(), "{}", show(&version));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        host(&["--version"])
    );
    let crd = in_container(&["crd"]);
    assert!(crd.status.success(), "{}", show(&crd));
    let crd = String::from_utf8(crd.stdout).expect("UTF-8");
    assert!(crd.contains("kind: CustomResourceDefinition"), "{crd}");
    assert_eq!(
        crd,
        host(&["crd"]),
        "the image's binary is built from these sources"
    );
    // No shell to run.
    let shell = buildah
        .cmd([
            "run",
            "--isolation",
            "chroot",
            container,
            "--",
            "/bin/sh",
            "-c",
            "true",
        ])
        .output()
        .expect("start buildah run");
    assert!(
        !shell.status.success(),
        "the image has a shell: {}",
        show(&shell)
    );
    eprintln!("image run in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// The SBOM

/// `(name, version) -> checksum` of every package in Cargo.lock (workspace members have none).
fn locked_packages() -> BTreeMap<(String, String), Option<String>> {
    let path = root().join("Cargo.lock");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut locked = BTreeMap::new();
    for package in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            package.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.strip_prefix(" = \"")?;
                Some(value.strip_suffix('"')?.to_owned())
            })
        };
        let name = field("name").expect("a package has a name");
        let version = field("version").expect("a package has a version");
        locked.insert((name, version), field("checksum"));
    }
    assert!(
        locked.len() > 100,
        "{} packages in Cargo.lock?",
        locked.len()
    );
    locked
}

/// The SBOM `make sbom` wrote: CycloneDX JSON describing the operator's binary for the static
/// target, newer than Cargo.lock, whose crates are all locked ones (same version, same
/// checksum), among them the real dependencies, and none of the tests' or build scripts' alone.
fn assert_sbom(path: &Path) {
    let written = match fs::metadata(path) {
        Ok(meta) => meta.modified().expect("mtime"),
        Err(e) => panic!(
            "{}: {e}\nthe SBOM is missing: run `make image` (or `make sbom`)",
            path.display()
        ),
    };
    for input in ["Cargo.lock", "Cargo.toml"] {
        let changed = fs::metadata(root().join(input)).and_then(|m| m.modified());
        assert!(
            !changed.is_ok_and(|changed| changed > written),
            "{input} changed after {} was written: run `make sbom`",
            path.display()
        );
    }
    let sbom = json(path);
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    let component = &sbom["metadata"]["component"];
    assert_eq!(component["type"], "application", "{component:#}");
    assert_eq!(component["name"], NAME, "{component:#}");
    assert_eq!(component["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        component["licenses"][0]["expression"],
        env!("CARGO_PKG_LICENSE")
    );
    let properties = sbom["metadata"]["properties"]
        .as_array()
        .expect("properties");
    assert!(
        properties
            .iter()
            .any(|p| p["name"] == "cdx:rustc:sbom:target:triple" && p["value"] == STATIC_TARGET),
        "the SBOM describes the static target: {properties:?}"
    );

    let locked = locked_packages();
    let components = sbom["components"].as_array().expect("components");
    let mut listed = BTreeMap::new();
    for c in components {
        let name = c["name"].as_str().expect("name").to_owned();
        let version = c["version"].as_str().expect("version").to_owned();
        let key = (name.clone(), version.clone());
        let checksum = locked
            .get(&key)
            .unwrap_or_else(|| panic!("{name} {version} is not in Cargo.lock"));
        let sha256 = c["hashes"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["alg"] == "SHA-256"))
            .and_then(|h| h["content"].as_str());
        assert_eq!(sha256, checksum.as_deref(), "{name} {version}'s checksum");
        assert_eq!(c["purl"], format!("pkg:cargo/{name}@{version}"), "{c:#}");
        listed.insert(name, version);
    }
    for dependency in [
        "kube",
        "kube-runtime",
        "rustls",
        "tokio",
        "hickory-resolver",
        "clap",
    ] {
        let version = listed
            .get(dependency)
            .unwrap_or_else(|| panic!("{dependency} is not in the SBOM"));
        assert!(
            locked.contains_key(&(dependency.to_owned(), version.clone())),
            "{dependency} {version}"
        );
    }
    // Only what is linked into the binary: no dev-dependency, no build-script-only crate.
    for absent in ["testkit", "rcgen", "tower-test", "hickory-server", "cc"] {
        assert!(!listed.contains_key(absent), "{absent} is in the SBOM");
    }
    assert_eq!(
        sbom["dependencies"].as_array().map(Vec::len),
        Some(components.len() + 1),
        "a dependency entry for the binary and for each component"
    );
}

/// The SBOM alone, without buildah: what `make sbom` wrote.
#[test]
#[ignore = "needs the SBOM (cargo-cyclonedx): run make test"]
fn the_sbom_lists_the_binarys_crates_as_cargo_lock_locks_them() {
    assert_sbom(&sbom_path());
}
