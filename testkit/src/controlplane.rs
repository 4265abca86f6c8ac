//! A real Kubernetes control plane for tests: etcd and kube-apiserver from `tools/bin/`
//! (built by `make tools`), started the way controller-runtime's envtest starts them. There is
//! no kubelet and no controller-manager: the API, admission, CRDs and RBAC are real, but nothing
//! runs pods, garbage-collects or finalizes namespaces.
//!
//! ```no_run
//! # async fn t() {
//! let cp = testkit::controlplane::shared();
//! cp.install_crds(testkit::controlplane::workspace_root().join("crds"));
//! let ns = cp.namespace("demo").await;
//! let client = cp.client().await;
//! let out = cp.kubectl().args(["get", "hd", "-n", &ns]).output().unwrap();
//! # }
//! ```
//!
//! A private control plane can have etcd or kube-apiserver killed and started again the same
//! way ([`ControlPlane::kill`], [`ControlPlane::restart`]), for tests of how clients ride out
//! an outage.
//!
//! Processes are stopped when a [`ControlPlane`] is dropped (also while a test unwinds), at
//! normal exit for the [`shared`] one, and by the kernel (`PR_SET_PDEATHSIG`) when the test
//! process dies abruptly.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::KeyPair;
use rustls_pki_types::ServerName;

use crate::pki::{Leaf, LeafSpec, TestCa, ecdsa_key};

/// Overrides where etcd, kube-apiserver, kubectl and helm are taken from.
pub const TOOLS_BIN_ENV: &str = "HTTPSDELIVERY_TOOLS_BIN";

/// How long etcd plus kube-apiserver may take to become ready. About 3 s on an idle machine;
/// the margin is for 2 cores shared with cargo builds.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

const LOG_TAIL_LINES: usize = 40;

/// The workspace root (the directory holding `tools/`, `crds/`, `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

/// `$HTTPSDELIVERY_TOOLS_BIN`, else `<workspace>/tools/bin`.
pub fn tools_bin() -> PathBuf {
    match std::env::var_os(TOOLS_BIN_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("tools").join("bin"),
    }
}

/// The path of one of the pinned tools, or a panic that says how to build it: a test that
/// needs a missing binary fails, it never skips.
pub fn tool(name: &str) -> PathBuf {
    find_tool(&tools_bin(), name).unwrap_or_else(|e| panic!("{e}"))
}

fn find_tool(bin: &Path, name: &str) -> Result<PathBuf, String> {
    let path = bin.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        // promtool has a target of its own: only the tests need it, not the demo.
        let target = if name == "promtool" {
            "promtool"
        } else {
            "tools"
        };
        Err(format!(
            "{} is missing: build it with `make {target}` in {} (or point {TOOLS_BIN_ENV} at a \
             directory holding etcd, kube-apiserver, kubectl, helm and promtool)",
            path.display(),
            workspace_root().display()
        ))
    }
}

/// Makes the child receive SIGKILL when the thread that spawns it exits; the whole process
/// exiting counts, however abruptly. The kernel ties this to the spawning *thread*, so a child
/// spawned from a test's thread dies when that test ends: spawn long-lived children elsewhere
/// (the control plane uses a thread that lives as long as the process).
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec, so it only makes async-signal-safe calls
    // (prctl, getppid) and builds io::Errors that do not allocate.
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then no signal would ever come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns on a thread that never exits, so that PR_SET_PDEATHSIG fires only when the process
/// dies, not when the test thread that happened to start the shared control plane finishes.
fn spawn_on_process_lifetime_thread(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("controlplane-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the control plane's spawner thread");
        tx
    });
    die_with_parent(&mut cmd);
    let (reply, answer) = mpsc::channel();
    spawner
        .send((cmd, reply))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread did not answer"))?
}

/// etcd and kube-apiserver on free loopback ports, with an admin kubeconfig.
pub struct ControlPlane {
    server: String,
    startup: Duration,
    kubeconfig: PathBuf,
    bin: PathBuf,
    launch: Launch,
    // Declared before `dir`: the processes must be gone before their directory is removed.
    processes: Mutex<Processes>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// One control plane per test binary, started by the first caller; the others wait for it.
/// It blocks while starting (a few seconds). If it cannot start, every caller panics with the
/// same reason instead of each retrying for a minute.
///
/// Statics are never dropped: at normal exit an `atexit` hook stops it and removes its files,
/// and if the process is killed the kernel kills the children (see [`die_with_parent`]).
/// Tests sharing it must keep to their own namespaces ([`ControlPlane::namespace`]).
pub fn shared() -> &'static ControlPlane {
    let started = SHARED.get_or_init(|| {
        let started = ControlPlane::try_start();
        if started.is_ok() {
            // SAFETY: registering a plain extern "C" function; it never unwinds.
            unsafe { libc::atexit(stop_shared) };
        }
        started
    });
    match started {
        Ok(plane) => plane,
        Err(e) => panic!("the shared control plane did not start: {e}"),
    }
}

extern "C" fn stop_shared() {
    if let Some(Ok(plane)) = SHARED.get() {
        plane.stop();
        let _ = fs::remove_dir_all(plane.dir.path());
    }
}

impl ControlPlane {
    /// A private control plane, stopped when dropped. Panics with the logs if it cannot start.
    pub fn start() -> ControlPlane {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`start`](Self::start), with the reason as an error.
    pub fn try_start() -> Result<ControlPlane, String> {
        Self::try_start_with(&tools_bin())
    }

    /// Takes etcd, kube-apiserver, kubectl and helm from `bin`.
    pub fn try_start_with(bin: &Path) -> Result<ControlPlane, String> {
        let started = Instant::now();
        let etcd = find_tool(bin, "etcd")?;
        let apiserver = find_tool(bin, "kube-apiserver")?;
        remove_dirs_of_dead_runs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|e| format!("create the control plane's temp dir: {e}"))?;
        let pki = Pki::generate();
        let paths = pki
            .write(&dir.path().join("pki"))
            .map_err(|e| format!("write the control plane's certificates: {e}"))?;
        let tls = pki.readiness_tls()?;

        // A port found free can be taken by someone else before etcd or the apiserver binds
        // it; that is the one failure worth another attempt.
        let mut attempt = 1;
        loop {
            let launched = Launch::new(&etcd, &apiserver, dir.path(), &paths, tls.clone())
                .and_then(|launch| Ok((launch.run()?, launch)));
            match launched {
                Ok((processes, launch)) => {
                    let server = format!("https://127.0.0.1:{}", launch.api_port);
                    let kubeconfig = dir.path().join("kubeconfig");
                    fs::write(&kubeconfig, kubeconfig_yaml(&server, &paths))
                        .map_err(|e| format!("write {}: {e}", kubeconfig.display()))?;
                    return Ok(ControlPlane {
                        server,
                        startup: started.elapsed(),
                        kubeconfig,
                        bin: bin.to_path_buf(),
                        launch,
                        processes: Mutex::new(processes),
                        dir,
                    });
                }
                Err(failure) if failure.port_taken && attempt < 3 => attempt += 1,
                Err(failure) => return Err(failure.message),
            }
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// How long it took from `start` until `/readyz` answered 200.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// A kubeconfig with the admin user (`O=system:masters`), for kubectl, helm and the
    /// operator binary. It refers to certificate files next to it.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The temp dir with the certificates, data and logs (`etcd.log`, `kube-apiserver.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of both logs, to add to a failing assertion's message.
    pub fn log_tails(&self) -> String {
        log_tails(self.dir.path())
    }

    /// A new admin client. A `kube::Client` stays bound to the tokio runtime it was made in and
    /// every `#[tokio::test]` has its own runtime, so each call builds a fresh one.
    pub async fn client(&self) -> kube::Client {
        self.client_at(&self.server).await
    }

    /// A new admin client that sends its requests to `server` (e.g. a relay in front of the
    /// API server) instead; it still expects the API server's certificate.
    pub async fn client_at(&self, server: &str) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.kubeconfig.display()));
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap_or_else(|e| panic!("load {}: {e}", self.kubeconfig.display()));
        config.cluster_url = server
            .parse()
            .unwrap_or_else(|e| panic!("{server} is not a URL: {e}"));
        kube::Client::try_from(config).unwrap_or_else(|e| panic!("build a kube client: {e}"))
    }

    /// The real kubectl, as the admin user. Its discovery cache lives in the temp dir, and
    /// kuberc preferences are off so that nothing from $HOME changes what it prints.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.tool("kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!(
                "--cache-dir={}",
                self.dir.path().join("kubectl-cache").display()
            ))
            .env_remove("KUBECONFIG")
            .env("KUBERC", "off")
            .stdin(Stdio::null());
        die_with_parent(&mut cmd);
        cmd
    }

    /// The real helm, as the admin user, with its cache, config and data in the temp dir.
    pub fn helm(&self) -> Command {
        let mut cmd = Command::new(self.tool("helm"));
        let home = self.dir.path().join("helm");
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .env_remove("KUBECONFIG")
            .env_remove("HELM_KUBECONTEXT")
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .stdin(Stdio::null());
        die_with_parent(&mut cmd);
        cmd
    }

    fn tool(&self, name: &str) -> PathBuf {
        find_tool(&self.bin, name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates a namespace named `PREFIX-xxxxxx` (random suffix) and returns its name. Without a
    /// controller-manager a deleted namespace never finishes terminating, so tests leave them.
    pub async fn namespace(&self, prefix: &str) -> String {
        let api: Api<Namespace> = Api::all(self.client().await);
        loop {
            let name = format!("{prefix}-{}", random_suffix());
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            match api.create(&PostParams::default(), &ns).await {
                Ok(_) => return name,
                Err(kube::Error::Api(status)) if status.is_already_exists() => continue,
                Err(e) => panic!("create namespace {name}: {e}"),
            }
        }
    }

    /// Applies every manifest in `dir` (server-side, so tests sharing the control plane can all
    /// call this) and waits until each CustomResourceDefinition among them is Established.
    /// Returns the CRD names.
    pub fn install_crds(&self, dir: impl AsRef<Path>) -> Vec<String> {
        let dir = dir.as_ref();
        let applied = self.run_kubectl(|cmd| {
            cmd.args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=testkit",
                "-o",
                "name",
                "-f",
            ])
            .arg(dir)
        });
        let crds: Vec<String> = applied
            .lines()
            .filter(|l| l.starts_with("customresourcedefinition."))
            .map(|l| l.rsplit('/').next().unwrap_or(l).to_owned())
            .collect();
        assert!(
            !crds.is_empty(),
            "no CustomResourceDefinition in {}",
            dir.display()
        );
        // A CRD just created may have no status yet, and `kubectl wait` then fails at once
        // ("accessor error: <nil>") instead of waiting: ask again until it has one.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut cmd = self.kubectl();
            cmd.args(["wait", "--for=condition=Established", "--timeout=60s"])
                .args(crds.iter().map(|name| format!("crd/{name}")));
            let what = format!("{cmd:?}");
            let out = crate::process::run(cmd, None);
            let no_status_yet = crate::process::text(&out.stderr).contains("accessor error");
            if out.status.success() || !no_status_yet || Instant::now() >= deadline {
                crate::process::assert_success(&what, &out);
                return crds;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn run_kubectl(&self, args: impl FnOnce(&mut Command) -> &mut Command) -> String {
        let mut cmd = self.kubectl();
        args(&mut cmd);
        crate::process::succeed(&format!("{cmd:?}"), cmd, None)
    }

    /// Kills kube-apiserver, then etcd, and reaps both; idempotent. The apiserver goes first so
    /// that it never runs without etcd (on SIGTERM it then retries for ~20 s before exiting).
    fn stop(&self) {
        self.processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop();
    }
}

/// Faults: a test stops a process of its own control plane and starts it again, to see what
/// the clients do meanwhile and after.
impl ControlPlane {
    /// Kills `part` with SIGKILL, as a crash or the OOM killer would, and reaps it; idempotent.
    /// Its clients see connections refused (kube-apiserver) or an apiserver that cannot reach
    /// its storage (etcd) until [`restart`](Self::restart).
    ///
    /// Only on a private control plane ([`ControlPlane::start`]): the [`shared`] one serves
    /// other tests at the same time.
    pub fn kill(&self, part: Part) {
        self.refuse_if_shared(part);
        self.processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .kill(part);
    }

    /// Starts `part` again exactly as before (the same ports, certificates and etcd data dir;
    /// its log is appended to) and waits until it answers ready; returns how long that took.
    /// kube-apiserver becomes ready only while etcd runs. Panics, with the logs, when it does
    /// not come up within [`READY_TIMEOUT`], and when `part` is still running.
    pub fn restart(&self, part: Part) -> Duration {
        self.refuse_if_shared(part);
        let started = Instant::now();
        let mut processes = self
            .processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(child) = processes.slot(part).as_mut()
            && child.try_wait().ok().flatten().is_none()
        {
            panic!("{part} still runs: kill it before restarting it");
        }
        let outcome = self.launch.spawn(part, true).and_then(|child| {
            *processes.slot(part) = Some(child);
            self.launch
                .wait(&mut processes, started + READY_TIMEOUT, part)
        });
        if let Err(failure) = outcome {
            panic!("restart {part}: {}", failure.message);
        }
        started.elapsed()
    }

    fn refuse_if_shared(&self, part: Part) {
        if let Some(Ok(shared)) = SHARED.get() {
            assert!(
                !std::ptr::eq(shared, self),
                "a fault ({part}) on the shared control plane would break other tests: use \
                 ControlPlane::start()"
            );
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A process of the control plane, for tests of what a client does when one of them fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Etcd,
    ApiServer,
}

impl Part {
    /// Its binary's name, which also names its log file.
    pub fn name(self) -> &'static str {
        match self {
            Part::Etcd => "etcd",
            Part::ApiServer => "kube-apiserver",
        }
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Default)]
struct Processes {
    apiserver: Option<Child>,
    etcd: Option<Child>,
}

impl Processes {
    fn slot(&mut self, part: Part) -> &mut Option<Child> {
        match part {
            Part::Etcd => &mut self.etcd,
            Part::ApiServer => &mut self.apiserver,
        }
    }

    /// SIGKILL rather than a graceful stop: the data is thrown away with the temp dir, and a
    /// graceful apiserver shutdown costs about a second per control plane.
    fn stop(&mut self) {
        for part in [Part::ApiServer, Part::Etcd] {
            self.kill(part);
        }
    }

    fn kill(&mut self, part: Part) {
        if let Some(mut child) = self.slot(part).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Failure {
    message: String,
    port_taken: bool,
}

/// How etcd and kube-apiserver are started, kept so that either can be started again exactly
/// so: the same ports, certificates and etcd data.
struct Launch {
    etcd: PathBuf,
    apiserver: PathBuf,
    dir: PathBuf,
    pki: PkiPaths,
    tls: Arc<rustls::ClientConfig>,
    etcd_port: u16,
    peer_port: u16,
    api_port: u16,
}

impl Launch {
    /// Picks free ports for a new control plane.
    fn new(
        etcd: &Path,
        apiserver: &Path,
        dir: &Path,
        pki: &PkiPaths,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Launch, Failure> {
        let [etcd_port, peer_port, api_port] = crate::free_ports().map_err(|e| Failure {
            message: format!("find free loopback ports: {e}"),
            port_taken: false,
        })?;
        Ok(Launch {
            etcd: etcd.to_path_buf(),
            apiserver: apiserver.to_path_buf(),
            dir: dir.to_path_buf(),
            pki: pki.clone(),
            tls,
            etcd_port,
            peer_port,
            api_port,
        })
    }

    /// Starts etcd on an empty data dir, then kube-apiserver, each once the one before is ready.
    fn run(&self) -> Result<Processes, Failure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        // Left over from an attempt that lost its port.
        let _ = fs::remove_dir_all(self.dir.join("etcd"));
        let mut processes = Processes::default();
        for part in [Part::Etcd, Part::ApiServer] {
            *processes.slot(part) = Some(self.spawn(part, false)?);
            self.wait(&mut processes, deadline, part)?;
        }
        Ok(processes)
    }

    fn command(&self, part: Part) -> Command {
        let etcd_url = format!("http://127.0.0.1:{}", self.etcd_port);
        match part {
            Part::Etcd => {
                let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
                let mut etcd = Command::new(&self.etcd);
                etcd.arg("--name=default")
                    .arg(format!("--data-dir={}", self.dir.join("etcd").display()))
                    .arg(format!("--listen-client-urls={etcd_url}"))
                    .arg(format!("--advertise-client-urls={etcd_url}"))
                    .arg(format!("--listen-peer-urls={peer_url}"))
                    .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                    .arg(format!("--initial-cluster=default={peer_url}"))
                    .arg("--unsafe-no-fsync")
                    .arg("--log-level=warn");
                etcd
            }
            Part::ApiServer => {
                let (pki, api_port) = (&self.pki, self.api_port);
                let mut apiserver = Command::new(&self.apiserver);
                apiserver
                    .arg(format!("--etcd-servers={etcd_url}"))
                    .arg("--bind-address=127.0.0.1")
                    .arg("--advertise-address=127.0.0.1")
                    .arg(format!("--secure-port={api_port}"))
                    .arg(format!(
                        "--cert-dir={}",
                        self.dir.join("apiserver").display()
                    ))
                    .arg(format!("--tls-cert-file={}", pki.serving_cert.display()))
                    .arg(format!(
                        "--tls-private-key-file={}",
                        pki.serving_key.display()
                    ))
                    .arg(format!("--client-ca-file={}", pki.client_ca.display()))
                    .arg("--authorization-mode=RBAC")
                    .arg(format!(
                        "--service-account-issuer=https://127.0.0.1:{api_port}/"
                    ))
                    .arg(format!(
                        "--service-account-key-file={}",
                        pki.sa_pub.display()
                    ))
                    .arg(format!(
                        "--service-account-signing-key-file={}",
                        pki.sa_key.display()
                    ))
                    .arg("--service-cluster-ip-range=10.0.0.0/24")
                    // Nothing creates the `default` ServiceAccount without a controller-manager,
                    // and the plugin would then reject every pod.
                    .arg("--disable-admission-plugins=ServiceAccount")
                    .arg("--allow-privileged=true");
                apiserver
            }
        }
    }

    /// Starts `part` with its log in `<dir>/<name>.log`: a new log, or appended to (a restart).
    fn spawn(&self, part: Part, append: bool) -> Result<Child, Failure> {
        let name = part.name();
        let log = self.dir.join(format!("{name}.log"));
        let fail = |e: io::Error| Failure {
            message: format!("start {name}: {e}"),
            port_taken: false,
        };
        let out = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&log)
            .map_err(fail)?;
        let err = out.try_clone().map_err(fail)?;
        let mut cmd = self.command(part);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        spawn_on_process_lifetime_thread(cmd).map_err(fail)
    }

    /// One readiness probe of `part`: etcd's /health, the apiserver's /readyz (over TLS, as
    /// the admin).
    fn probe(&self, part: Part) -> io::Result<(u16, String)> {
        match part {
            Part::Etcd => crate::http::get(self.etcd_port, "/health"),
            Part::ApiServer => {
                let conn = TcpStream::connect_timeout(&loopback(self.api_port), PROBE_TIMEOUT)?;
                conn.set_read_timeout(Some(PROBE_TIMEOUT))?;
                let tls = rustls::ClientConnection::new(
                    self.tls.clone(),
                    ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()),
                )
                .map_err(io::Error::other)?;
                crate::http::request(&mut rustls::StreamOwned::new(tls, conn), "/readyz")
            }
        }
    }

    /// Polls `part` until it answers 200, failing early when any process has exited.
    fn wait(
        &self,
        processes: &mut Processes,
        deadline: Instant,
        part: Part,
    ) -> Result<(), Failure> {
        let started = Instant::now();
        loop {
            for which in [Part::Etcd, Part::ApiServer] {
                if let Some(status) = processes
                    .slot(which)
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    // Reaped: the slot no longer holds a process.
                    processes.slot(which).take();
                    return Err(self.exited(which.name(), status));
                }
            }
            let last = match self.probe(part) {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => format!("HTTP {code}: {}", body.trim()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                let message = format!(
                    "{part} not ready after {:.1}s (last answer: {last})\n{}",
                    started.elapsed().as_secs_f64(),
                    log_tails(&self.dir)
                );
                return Err(Failure {
                    message,
                    port_taken: false,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn exited(&self, name: &str, status: ExitStatus) -> Failure {
        let log = fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        Failure {
            port_taken: log.contains("address already in use"),
            message: format!(
                "{name} exited early with {status}\n{}",
                log_tails(&self.dir)
            ),
        }
    }
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Temp dirs are named `httpsdelivery-cp-PID-xxxxxx` after the test process that owns them.
const DIR_PREFIX: &str = "httpsdelivery-cp-";

/// A killed test run (SIGKILL, Ctrl-C) runs no destructors and no atexit hooks, so its temp
/// dir stays behind, over 100 MB of it etcd's preallocated WAL. The kernel has already killed
/// its etcd and kube-apiserver (PR_SET_PDEATHSIG); remove what they left once the owner is gone.
fn remove_dirs_of_dead_runs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } == -1
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn log_tails(dir: &Path) -> String {
    let mut out = String::new();
    for name in ["kube-apiserver", "etcd"] {
        // Named without the directory: after a failed start it is already removed.
        let text = fs::read_to_string(dir.join(format!("{name}.log")))
            .unwrap_or_else(|e| format!("({e})"));
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        out.push_str(&format!(
            "--- {name}.log, last {} lines ---\n{}\n",
            tail.len(),
            tail.join("\n")
        ));
    }
    out
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per instance: enough entropy for names, no extra crate.
    let mut n = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (0..6)
        .map(|_| {
            let c = b"abcdefghijklmnopqrstuvwxyz0123456789"[(n % 36) as usize];
            n /= 36;
            c as char
        })
        .collect()
}

/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
fn yaml_quote(path: &Path) -> String {
    let mut out = String::from("\"");
    for c in path.display().to_string().chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn kubeconfig_yaml(server: &str, pki: &PkiPaths) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testkit
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: testkit
  context:
    cluster: testkit
    user: admin
    namespace: default
current-context: testkit
",
        ca = yaml_quote(&pki.serving_ca),
        cert = yaml_quote(&pki.admin_cert),
        key = yaml_quote(&pki.admin_key),
    )
}

/// Certificates as envtest makes them (from [`crate::pki`]): a CA for the serving cert, a
/// separate CA for client certs, and a service-account signing key. All keys are ECDSA P-256,
/// which kube-apiserver accepts everywhere (including for service-account tokens, signed ES256)
/// and ring generates in microseconds, unlike RSA.
struct Pki {
    serving_ca: TestCa,
    serving: Leaf,
    client_ca: TestCa,
    admin: Leaf,
    sa_key: KeyPair,
}

#[derive(Clone)]
struct PkiPaths {
    serving_ca: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    client_ca: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
    sa_key: PathBuf,
    sa_pub: PathBuf,
}

impl Pki {
    fn generate() -> Pki {
        let serving_ca = TestCa::new("testkit serving CA");
        let serving = serving_ca.issue(LeafSpec::valid_for(["localhost", "127.0.0.1"]));
        let client_ca = TestCa::new("testkit client CA");
        // The group that RBAC's bootstrap policy binds to cluster-admin.
        let admin = client_ca.issue(LeafSpec::client("admin", "system:masters"));
        Pki {
            serving_ca,
            serving,
            client_ca,
            admin,
            sa_key: ecdsa_key(),
        }
    }

    fn write(&self, dir: &Path) -> io::Result<PkiPaths> {
        fs::create_dir_all(dir)?;
        let paths = PkiPaths {
            serving_ca: dir.join("serving-ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            client_ca: dir.join("client-ca.crt"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        };
        fs::write(&paths.serving_ca, self.serving_ca.cert_pem())?;
        fs::write(&paths.serving_cert, &self.serving.chain_pem)?;
        fs::write(&paths.serving_key, &self.serving.key_pem)?;
        fs::write(&paths.client_ca, self.client_ca.cert_pem())?;
        fs::write(&paths.admin_cert, &self.admin.chain_pem)?;
        fs::write(&paths.admin_key, &self.admin.key_pem)?;
        fs::write(&paths.sa_key, self.sa_key.serialize_pem())?;
        fs::write(&paths.sa_pub, self.sa_key.public_key_pem())?;
        Ok(paths)
    }

    /// What the readiness probe uses: trust the serving CA, present the admin cert.
    fn readiness_tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.serving_ca.cert_der())
            .map_err(|e| format!("trust the serving CA: {e}"))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS config: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(self.admin.chain_der.clone(), self.admin.private_key())
        .map_err(|e| format!("TLS client certificate: {e}"))?;
        Ok(Arc::new(config))
    }
}

/// Acting as a ServiceAccount: its own token, and what RBAC lets it do.
impl ControlPlane {
    /// A kubeconfig at `path` for `token`, with the admin kubeconfig's server and CA (written
    /// as JSON, which kubectl and kube read as YAML).
    pub fn token_kubeconfig(&self, token: &str, path: &Path) {
        let admin: serde_json::Value = serde_saphyr::from_str(
            &fs::read_to_string(self.kubeconfig_path()).expect("read the admin kubeconfig"),
        )
        .expect("the admin kubeconfig is YAML");
        let cluster = &admin["clusters"][0]["cluster"];
        let server = cluster["server"].as_str().expect("server");
        assert_eq!(server, self.server());
        let ca = cluster["certificate-authority"].as_str().expect("CA file");
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "testkit", "cluster": {"server": server, "certificate-authority": ca}}],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "operator", "context": {"cluster": "testkit", "user": "operator"}}],
            "current-context": "operator",
        });
        fs::write(path, config.to_string()).expect("write kubeconfig");
    }

    /// A kubeconfig at `path` that authenticates as ServiceAccount `namespace/name`, with a
    /// token from the TokenRequest API (valid for an hour).
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str, path: &Path) {
        let mut cmd = self.kubectl();
        cmd.args(["create", "token", name, "-n", namespace, "--duration=1h"]);
        let token = crate::process::succeed("kubectl create token", cmd, None);
        self.token_kubeconfig(token.trim(), path);
    }

    /// Asserts what `kubectl auth can-i ARGS` answers for `who` (e.g. `--as USER` or
    /// `--kubeconfig=FILE`).
    pub fn assert_can_i(&self, who: &[&str], args: &[&str], allowed: bool) {
        let mut cmd = self.kubectl();
        cmd.args(who).args(["auth", "can-i"]).args(args);
        let out = crate::process::run(cmd, None);
        let answer = crate::process::text(&out.stdout);
        let expected = if allowed { "yes" } else { "no" };
        assert_eq!(
            answer.trim(),
            expected,
            "can-i {args:?} as {who:?}: {}",
            crate::process::text(&out.stderr)
        );
        assert_eq!(
            out.status.success(),
            allowed,
            "exit status of can-i {args:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_build_command() {
        let err = ControlPlane::try_start_with(Path::new("/nonexistent/tools/bin")).unwrap_err();
        assert!(
            err.contains("/nonexistent/tools/bin/etcd is missing"),
            "{err}"
        );
        assert!(err.contains("make tools"), "{err}");
        let err = find_tool(Path::new("/nonexistent/tools/bin"), "promtool").unwrap_err();
        assert!(err.contains("build it with `make promtool`"), "{err}");
    }

    #[test]
    fn suffixes_are_dns_labels_and_differ() {
        let a = random_suffix();
        assert_eq!(a.len(), 6);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(a, random_suffix());
    }
}
