//! Leader election against a real kube-apiserver: one contender works at a time, a released
//! Lease passes on at once, a crashed leader is replaced within the lease time, and a leader
//! that loses the Lease (taken over, or cut off from the API server) stops its work and fails.
//!
//! Every test shares one control plane (`testkit::controlplane::shared`) and keeps to its own
//! namespace. Needs `make tools`, so a plain `cargo test` reports them as ignored: `make test`
//! runs them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use httpsdelivery_operator::controller::leader::{
    LeaderConfig, LeaderError, current_holder, run_as_leader,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use testkit::controlplane;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

const LEASE: &str = "httpsdelivery-operator";

/// Generous bound for anything that should happen "soon" on a shared 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "httpsdelivery_operator=debug".into()),
        )
        .try_init();
}

fn config(namespace: &str, identity: &str, duration: u64, grace: u64) -> LeaderConfig {
    LeaderConfig {
        lease_duration: Duration::from_secs(duration),
        grace: Duration::from_secs(grace),
        ..LeaderConfig::new(namespace, identity)
    }
}

/// How many workers run right now, and the most that ever ran at once.
#[derive(Default)]
struct Gauge {
    running: AtomicUsize,
    most: AtomicUsize,
    last_stop: Mutex<Option<Instant>>,
}

/// Counts a worker as running for as long as it lives, including when its future is dropped.
struct Running(Arc<Gauge>);

impl Running {
    fn enter(gauge: &Arc<Gauge>) -> Self {
        let now = gauge.running.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.most.fetch_max(now, Ordering::SeqCst);
        Running(gauge.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        *self.0.last_stop.lock().unwrap() = Some(Instant::now());
    }
}

struct Contender {
    identity: &'static str,
    task: JoinHandle<Result<(), LeaderError>>,
    /// Ends the contender's work (a shutdown).
    stop: Option<oneshot::Sender<()>>,
}

type Starts = (&'static str, Instant);

/// One test's election: its namespace, the gauge of the contenders' work, and the starts they
/// report, in order.
struct Election {
    ns: String,
    gauge: Arc<Gauge>,
    started_tx: mpsc::UnboundedSender<Starts>,
    started: mpsc::UnboundedReceiver<Starts>,
}

impl Election {
    async fn new(prefix: &str) -> Election {
        init_logs();
        let (started_tx, started) = mpsc::unbounded_channel();
        Election {
            ns: controlplane::shared().namespace(prefix).await,
            gauge: Arc::default(),
            started_tx,
            started,
        }
    }

    /// Starts `identity` contending in its own task with its own client, as a separate replica
    /// would. Its work reports `(identity, start time)`, then runs until stopped.
    async fn contend(&self, identity: &'static str, duration: u64, grace: u64) -> Contender {
        let client = controlplane::shared().client().await;
        self.contend_with(client, identity, duration, grace)
    }

    fn contend_with(
        &self,
        client: kube::Client,
        identity: &'static str,
        duration: u64,
        grace: u64,
    ) -> Contender {
        let config = config(&self.ns, identity, duration, grace);
        let (stop, stopped) = oneshot::channel::<()>();
        let (gauge, started) = (self.gauge.clone(), self.started_tx.clone());
        let task = tokio::spawn(run_as_leader(client, config, move || async move {
            let _running = Running::enter(&gauge);
            let _ = started.send((identity, Instant::now()));
            let _ = stopped.await;
        }));
        Contender {
            identity,
            task,
            stop: Some(stop),
        }
    }

    /// The next contender that starts working, and when.
    async fn next_start(&mut self) -> Starts {
        tokio::time::timeout(PATIENCE, self.started.recv())
            .await
            .expect("a contender should start working")
            .expect("the contenders are alive")
    }

    /// The most contenders that ever worked at once.
    fn most(&self) -> usize {
        self.gauge.most.load(Ordering::SeqCst)
    }

    /// How many contenders work right now.
    fn running(&self) -> usize {
        self.gauge.running.load(Ordering::SeqCst)
    }
}

async fn holder(namespace: &str) -> Option<String> {
    let client = controlplane::shared().client().await;
    current_holder(client, namespace, LEASE)
        .await
        .expect("read the Lease")
}

fn leases(namespace: &str, client: kube::Client) -> Api<Lease> {
    Api::namespaced(client, namespace)
}

async fn renew_time(namespace: &str) -> Option<MicroTime> {
    let api = leases(namespace, controlplane::shared().client().await);
    let lease = api.get(LEASE).await.expect("read the Lease");
    lease.spec.and_then(|s| s.renew_time)
}

/// Returns as soon as the holder has renewed the Lease once more.
async fn next_renewal(namespace: &str) {
    let before = renew_time(namespace).await;
    let renewed = async {
        while renew_time(namespace).await == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, renewed)
        .await
        .expect("the leader renews its Lease");
}

/// Splits the contenders into the one that started and the other.
fn leader_first(a: Contender, b: Contender, leader: &str) -> (Contender, Contender) {
    if a.identity == leader { (a, b) } else { (b, a) }
}

async fn finished(contender: Contender) -> Result<(), LeaderError> {
    tokio::time::timeout(PATIENCE, contender.task)
        .await
        .expect("the contender should return")
        .expect("the contender's task should not panic")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn only_one_contender_works_at_a_time() {
    let mut election = Election::new("leader-one").await;
    let ns = election.ns.clone();
    let a = election.contend("a", 3, 1).await;
    let b = election.contend("b", 3, 1).await;

    let (first, _) = election.next_start().await;
    let (mut leader, mut follower) = leader_first(a, b, first);

    // Several lease times: the leader must keep renewing, the follower must keep waiting.
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_secs(8) {
        let running = election.running();
        assert_eq!(
            running, 1,
            "exactly one contender works while the Lease is held"
        );
        assert!(!leader.task.is_finished(), "the leader kept the Lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        election.started.try_recv().is_err(),
        "the follower never started"
    );
    assert_eq!(holder(&ns).await.as_deref(), Some(leader.identity));

    // Then the other way round, and back to nobody.
    let _ = leader.stop.take().map(|s| s.send(()));
    let (second, _) = election.next_start().await;
    assert_eq!(second, follower.identity);
    finished(leader)
        .await
        .expect("a leader whose work ends returns Ok");
    let _ = follower.stop.take().map(|s| s.send(()));
    finished(follower)
        .await
        .expect("a leader whose work ends returns Ok");

    assert_eq!(election.most(), 1, "never two at once");
    assert_eq!(election.running(), 0);
    assert_eq!(
        holder(&ns).await,
        None,
        "the last leader released the Lease"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn released_lease_passes_on_at_once() {
    let mut election = Election::new("leader-release").await;
    let ns = election.ns.clone();
    // A long lease: waiting for it to run out could not pass the bound below.
    let a = election.contend("a", 20, 5).await;
    let b = election.contend("b", 20, 5).await;

    let (first, _) = election.next_start().await;
    let (mut leader, follower) = leader_first(a, b, first);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let released = Instant::now();
    let _ = leader.stop.take().map(|s| s.send(()));
    let (second, at) = election.next_start().await;
    let handover = at - released;
    eprintln!("handover after release: {handover:?}");
    assert_eq!(second, follower.identity);
    assert!(
        handover < Duration::from_secs(2),
        "the follower took over {handover:?} after the release"
    );
    finished(leader)
        .await
        .expect("a leader whose work ends returns Ok");
    assert_eq!(holder(&ns).await.as_deref(), Some(follower.identity));
    assert_eq!(election.most(), 1, "never two at once");
    follower.task.abort();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn crashed_leader_is_replaced_within_the_lease_time() {
    let mut election = Election::new("leader-crash").await;
    let ns = election.ns.clone();
    let (duration, grace) = (3, 1);
    let a = election.contend("a", duration, grace).await;
    let b = election.contend("b", duration, grace).await;

    let (first, _) = election.next_start().await;
    let (leader, follower) = leader_first(a, b, first);
    // Right after a renewal is the worst moment to crash: the Lease has its whole time left.
    next_renewal(&ns).await;

    // A crash: the work stops and nobody releases the Lease.
    let crashed = Instant::now();
    leader.task.abort();
    assert!(leader.task.await.is_err_and(|e| e.is_cancelled()));
    assert_eq!(
        holder(&ns).await.as_deref(),
        Some(leader.identity),
        "a crashed leader leaves the Lease held"
    );

    let (second, at) = election.next_start().await;
    let failover = at - crashed;
    eprintln!("failover after crash: {failover:?}");
    assert_eq!(second, follower.identity);
    let bound = Duration::from_secs(duration + grace + 3);
    assert!(
        failover < bound,
        "the follower took over {failover:?} after the crash (bound {bound:?})"
    );
    assert_eq!(holder(&ns).await.as_deref(), Some(follower.identity));
    assert_eq!(election.most(), 1, "never two at once");
    follower.task.abort();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn leader_that_loses_the_lease_stops_working_and_fails() {
    let mut election = Election::new("leader-lost").await;
    let ns = election.ns.clone();
    let (duration, grace) = (3, 1);
    let leader = election.contend("a", duration, grace).await;
    election.next_start().await;
    // Not right after a renewal, whose read-back would notice at once: the next renewal must.
    next_renewal(&ns).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Another party takes the Lease over behind the leader's back.
    let api = leases(&ns, controlplane::shared().client().await);
    let steal = serde_json::json!({
        "spec": { "holderIdentity": "intruder", "renewTime": MicroTime(Timestamp::now()) }
    });
    api.patch(LEASE, &PatchParams::default(), &Patch::Merge(&steal))
        .await
        .expect("take the Lease over");
    let stolen = Instant::now();

    let err = finished(leader)
        .await
        .expect_err("a leader that lost its Lease fails");
    let noticed = stolen.elapsed();
    eprintln!("lost leadership noticed after: {noticed:?}: {err}");
    assert!(matches!(err, LeaderError::Lost { .. }), "{err}");
    assert!(
        err.to_string().contains("lost the leadership of Lease"),
        "{err}"
    );
    assert!(
        noticed < Duration::from_secs(duration),
        "noticed {noticed:?} after the takeover"
    );
    assert_eq!(election.running(), 0, "the work was stopped");
    assert_eq!(holder(&ns).await.as_deref(), Some("intruder"));
}

/// A TCP relay to the API server that can be cut like a network partition: open connections
/// are dropped and new ones hang, so requests neither succeed nor fail quickly.
struct Relay {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().expect("the relay's address");
        let (cut, is_cut) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *is_cut.borrow() {
                    held.push(inbound);
                    continue;
                }
                let mut is_cut = is_cut.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = is_cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Relay { addr, cut, task }
    }

    /// An admin client that reaches the API server through this relay.
    async fn client(&self) -> kube::Client {
        controlplane::shared()
            .client_at(&format!("https://{}", self.addr))
            .await
    }

    fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn partitioned_leader_stops_before_a_successor_starts() {
    let mut election = Election::new("leader-partition").await;
    let ns = election.ns.clone();
    let upstream: SocketAddr = controlplane::shared()
        .server()
        .trim_start_matches("https://")
        .parse()
        .expect("the API server's address");
    let relay = Relay::start(upstream).await;
    let (duration, grace) = (3, 1);
    let leader = election.contend_with(relay.client().await, "a", duration, grace);
    assert_eq!(election.next_start().await.0, "a");
    let follower = election.contend("b", duration, grace).await;
    // Once that renewal is confirmed, the leader may work until half the grace before expiry.
    next_renewal(&ns).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The leader can no longer reach the API server: its renewals hang.
    let cut = Instant::now();
    relay.cut();

    let (second, at) = election.next_start().await;
    let failover = at - cut;
    assert_eq!(second, follower.identity);
    let err = finished(leader)
        .await
        .expect_err("a leader that cannot renew fails");
    let stopped = election
        .gauge
        .last_stop
        .lock()
        .unwrap()
        .expect("the old leader stopped");
    eprintln!(
        "failover after partition: {failover:?}; the old leader stopped {:?} after the cut, \
         {:?} before the new one started: {err}",
        stopped - cut,
        at - stopped
    );
    assert!(matches!(err, LeaderError::Lost { .. }), "{err}");
    assert_eq!(
        election.most(),
        1,
        "the old leader stopped before the new one started"
    );
    let bound = Duration::from_secs(duration + grace + 3);
    assert!(
        failover < bound,
        "took over {failover:?} after the partition"
    );
    follower.task.abort();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane (tools/bin): run make test"]
async fn invalid_timing_is_refused_before_any_work() {
    let ns = controlplane::shared().namespace("leader-invalid").await;
    let client = controlplane::shared().client().await;
    for (duration, grace) in [(5, 5), (5, 0), (0, 0)] {
        let result = run_as_leader(
            client.clone(),
            config(&ns, "a", duration, grace),
            || async {
                unreachable!("work must not run with invalid settings");
            },
        )
        .await;
        let err = result.expect_err("invalid settings are refused");
        assert!(matches!(err, LeaderError::InvalidConfig { .. }), "{err}");
    }
    let fractional = LeaderConfig {
        grace: Duration::from_millis(1500),
        ..LeaderConfig::new(&ns, "a")
    };
    let err = run_as_leader(client, fractional, || async {})
        .await
        .expect_err("a fractional grace is refused");
    assert!(err.to_string().contains("whole seconds"), "{err}");
    assert_eq!(holder(&ns).await, None, "nothing was created or held");
}
