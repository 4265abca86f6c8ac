//! Leader election over a coordination.k8s.io Lease: of several replicas only one does the work.

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerError, LeaseParams};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Name of the Lease when none is configured.
pub const DEFAULT_LEASE_NAME: &str = "httpsdelivery-operator";
/// How long a Lease stays valid after its last renewal.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long before expiry the holder renews.
pub const DEFAULT_LEASE_GRACE: Duration = Duration::from_secs(5);

/// Which Lease to contend for, under which identity, and its timing.
///
/// `lease_duration` and `grace` are whole seconds (the Lease API counts in seconds), with
/// `0 < grace < lease_duration`. The holder renews `grace` before expiry; a crashed holder is
/// replaced about `lease_duration` after its last renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    /// Unique per replica (the Pod name): two replicas with one identity would both lead.
    pub identity: String,
    pub lease_duration: Duration,
    pub grace: Duration,
}

impl LeaderConfig {
    /// Lease [`DEFAULT_LEASE_NAME`], duration 15 s, grace 5 s.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaderConfig {
            namespace: namespace.into(),
            lease_name: DEFAULT_LEASE_NAME.to_string(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            grace: DEFAULT_LEASE_GRACE,
        }
    }

    /// `namespace/name`, as it appears in logs and errors.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.lease_name)
    }

    fn params(&self) -> Result<LeaseParams, LeaderError> {
        let invalid = |reason: &str| LeaderError::InvalidConfig {
            lease: self.lease(),
            reason: reason.to_string(),
        };
        if self.namespace.is_empty() || self.lease_name.is_empty() {
            return Err(invalid(
                "the namespace and the Lease name must not be empty",
            ));
        }
        if self.identity.is_empty() {
            return Err(invalid("the identity must not be empty"));
        }
        if self.lease_duration.subsec_nanos() != 0 || self.grace.subsec_nanos() != 0 {
            return Err(invalid(
                "the lease duration and grace must be whole seconds",
            ));
        }
        let (duration, grace) = (self.lease_duration.as_secs(), self.grace.as_secs());
        if grace == 0 || grace >= duration {
            return Err(invalid(
                "the grace must be at least 1 s and shorter than the lease duration",
            ));
        }
        if i32::try_from(duration).is_err() {
            return Err(invalid("the lease duration is too long"));
        }
        // Checked above: LeaseParams::new panics on exactly these conditions.
        Ok(LeaseParams::new(self.identity.clone(), duration, grace))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid leader election settings for Lease {lease}: {reason}")]
    InvalidConfig { lease: String, reason: String },
    #[error("cannot create or read Lease {lease}: {source}")]
    Lease {
        lease: String,
        #[source]
        source: LeaseManagerError,
    },
    #[error("lost the leadership of Lease {lease}: {reason}")]
    Lost { lease: String, reason: String },
    #[error("cannot release Lease {lease}: {source}")]
    Release {
        lease: String,
        #[source]
        source: LeaseManagerError,
    },
}

/// Waits until this replica holds the Lease, then runs `work` while renewing it.
///
/// - `work` finishes by itself (shutdown): the Lease is released, so that a waiting replica
///   takes over at once instead of after the lease time, and the result is `Ok`.
/// - The leadership is lost, or its renewal cannot be confirmed before the Lease could expire:
///   `work` is dropped before anyone else may start, and the result is
///   [`LeaderError::Lost`]. Like controller-runtime, the caller should then exit and restart.
///
/// Dropping the returned future stops `work` without releasing the Lease, like a crash: a
/// successor takes over once the Lease expires.
pub async fn run_as_leader<F, Fut>(
    client: Client,
    config: LeaderConfig,
    work: F,
) -> Result<(), LeaderError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let params = config.params()?;
    let lease = config.lease();
    let manager = acquire(&client, &config, &params).await?;
    info!(lease = %lease, identity = %config.identity, "acquired leadership of lease {lease}");

    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    if let Some(reason) = lead(&manager, &api, &config, work()).await {
        warn!(lease = %lease, %reason, "lost the leadership of lease {lease}; stopping the work");
        return Err(LeaderError::Lost { lease, reason });
    }
    // The manager releases without any precondition: had another replica taken over unnoticed
    // in the meantime, that replica's hold would be erased.
    let held_by = api
        .get_opt(&config.lease_name)
        .await
        .ok()
        .flatten()
        .as_ref()
        .and_then(holder);
    if held_by.is_some_and(|h| h != config.identity) {
        info!(lease = %lease, "work finished; lease {lease} is no longer ours to release");
        return Ok(());
    }
    manager
        .release()
        .await
        .map_err(|source| LeaderError::Release {
            lease: lease.clone(),
            source,
        })?;
    info!(lease = %lease, "work finished; released lease {lease}");
    Ok(())
}

/// The `holderIdentity` of the Lease; `None` when it is free or does not exist.
pub async fn current_holder(
    client: Client,
    namespace: &str,
    lease_name: &str,
) -> Result<Option<String>, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    Ok(api.get_opt(lease_name).await?.and_then(|l| holder(&l)))
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref()?.holder_identity.clone()
}

async fn new_manager(
    client: &Client,
    config: &LeaderConfig,
    params: &LeaseParams,
) -> Result<LeaseManager, LeaderError> {
    LeaseManager::new(
        client.clone(),
        &config.lease_name,
        &config.namespace,
        params.clone(),
        LeaseCreateMode::AutoCreate,
    )
    .await
    .map_err(|source| LeaderError::Lease {
        lease: config.lease(),
        source,
    })
}

enum Waiting {
    Changed(Result<bool, LeaseManagerError>),
    Watched(Seen),
}

/// What a watch event says to a replica waiting for the Lease.
enum Seen {
    Free,
    Nothing,
    End,
}

/// Contends until the Lease is ours and returns the manager that holds it.
async fn acquire(
    client: &Client,
    config: &LeaderConfig,
    params: &LeaseParams,
) -> Result<LeaseManager, LeaderError> {
    let lease = config.lease();
    // The manager only looks at the Lease when the holder's time should be up, so it would
    // notice a release up to a lease time late; the watch sees it at once.
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let selector = format!("metadata.name={}", config.lease_name);
    let mut events: BoxStream<'static, _> =
        watcher::watcher(api, watcher::Config::default().fields(&selector))
            .default_backoff()
            .boxed();
    // Failing here means the Lease cannot be used at all (RBAC, namespace): say so at once.
    let mut manager = new_manager(client, config, params).await?;
    let mut backoff = Backoff::new(config.lease_duration);
    // A deadline, not a delay: a watch event in between must not cut the backoff short.
    let mut retry_at: Option<Instant> = None;
    let mut announced: Option<String> = None;

    loop {
        let current = &manager;
        let contend = async move {
            if let Some(at) = retry_at {
                tokio::time::sleep_until(at).await;
            }
            current.changed().await
        };
        let step = tokio::select! {
            changed = contend => Waiting::Changed(changed),
            event = events.next() => Waiting::Watched(seen(config, event, &mut announced)),
        };
        let contend_now = match step {
            Waiting::Changed(Ok(true)) => return Ok(manager),
            Waiting::Changed(Ok(false)) => {
                retry_at = None;
                false
            }
            Waiting::Changed(Err(e)) => {
                let wait = backoff.next();
                warn!(lease = %lease, error = %e, retry_in = ?wait, "cannot contend for lease {lease}");
                retry_at = Some(Instant::now() + wait);
                false
            }
            Waiting::Watched(Seen::Free) => true,
            Waiting::Watched(Seen::Nothing) => false,
            Waiting::Watched(Seen::End) => {
                events = stream::pending().boxed();
                false
            }
        };
        if contend_now {
            // A fresh manager, because the old one trusts its cached holder until expiry.
            match new_manager(client, config, params).await {
                Ok(fresh) => {
                    debug!(lease = %lease, "lease {lease} is free; contending");
                    manager = fresh;
                    retry_at = None;
                    backoff.reset();
                }
                Err(e) => warn!(lease = %lease, error = %e, "cannot contend for lease {lease}"),
            }
        }
    }
}

fn seen(
    config: &LeaderConfig,
    event: Option<Result<Event<Lease>, watcher::Error>>,
    announced: &mut Option<String>,
) -> Seen {
    match event {
        Some(Ok(Event::Apply(lease))) => {
            announce(config, &lease, announced);
            if holder(&lease).is_none() {
                Seen::Free
            } else {
                Seen::Nothing
            }
        }
        Some(Ok(Event::InitApply(lease))) => {
            // Only a snapshot after (re)connecting: the manager has read it already.
            announce(config, &lease, announced);
            Seen::Nothing
        }
        Some(Ok(Event::Delete(_))) => Seen::Free,
        Some(Ok(Event::Init | Event::InitDone)) => Seen::Nothing,
        Some(Err(e)) => {
            // Still correct without the watch, only slower to take over a released Lease.
            let lease = config.lease();
            warn!(lease = %lease, error = %e, "cannot watch lease {lease}");
            Seen::Nothing
        }
        None => Seen::End,
    }
}

fn announce(config: &LeaderConfig, lease: &Lease, announced: &mut Option<String>) {
    let Some(holder) = holder(lease) else { return };
    if holder != config.identity && announced.as_deref() != Some(holder.as_str()) {
        let name = config.lease();
        info!(
            lease = %name,
            identity = %config.identity,
            %holder,
            "waiting for leadership of lease {name} held by {holder}"
        );
        *announced = Some(holder);
    }
}

enum Leading {
    Finished,
    Lost(String),
    Changed(Result<bool, LeaseManagerError>),
}

/// Runs `work` while keeping the Lease. Returns why the leadership was lost, or `None` when
/// the work finished by itself.
async fn lead(
    manager: &LeaseManager,
    api: &Api<Lease>,
    config: &LeaderConfig,
    work: impl Future<Output = ()>,
) -> Option<String> {
    let lease = config.lease();
    let mut work = pin!(work);
    let mut watchdog = pin!(confirm_renewals(api, config));
    let retry = poll_interval(config.grace);
    let mut pause: Option<Duration> = None;
    loop {
        let wait = pause.take();
        // Polling changed() is what renews the Lease; it returns only when the holder changes.
        let renew = async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            manager.changed().await
        };
        let step = tokio::select! {
            biased;
            reason = &mut watchdog => Leading::Lost(reason),
            () = &mut work => Leading::Finished,
            changed = renew => Leading::Changed(changed),
        };
        match step {
            Leading::Finished => return None,
            Leading::Lost(reason) => return Some(reason),
            Leading::Changed(Ok(false)) => {
                return Some("another replica holds it now".to_string());
            }
            Leading::Changed(Ok(true)) => {}
            Leading::Changed(Err(e)) => {
                // Retried quickly: the watchdog decides when it is too late.
                warn!(lease = %lease, error = %e, "cannot renew lease {lease}; retrying");
                pause = Some(retry);
            }
        }
    }
}

/// Resolves, with the reason, once this replica can no longer be sure it holds the Lease.
///
/// The manager renews silently and keeps retrying on errors, so its silence proves nothing;
/// this reads the Lease back after each renewal is due. Half the grace is left for the renewal
/// to show up, half for clock skew: work stops before another replica may consider the Lease
/// expired.
async fn confirm_renewals(api: &Api<Lease>, config: &LeaderConfig) -> String {
    let renew_every = config.lease_duration.saturating_sub(config.grace);
    let window = config.grace / 2;
    let poll = poll_interval(config.grace);
    // As if a renewal were due now, so that the first read confirms the acquisition itself.
    let mut renewed = SystemTime::now()
        .checked_sub(renew_every)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    loop {
        let due = renewed + renew_every;
        let deadline = due + window;
        sleep_until(due + poll).await;
        loop {
            let left = match deadline.duration_since(SystemTime::now()) {
                Ok(left) if !left.is_zero() => left,
                _ => {
                    return format!(
                        "its renewal was not confirmed in time (it expires in at most {window:?})"
                    );
                }
            };
            match tokio::time::timeout(left, api.get_opt(&config.lease_name)).await {
                Ok(Ok(Some(lease))) => {
                    let spec = lease.spec.unwrap_or_default();
                    match spec.holder_identity {
                        Some(h) if h == config.identity => {
                            let renew_time = spec.renew_time.map(|t| SystemTime::from(t.0));
                            if let Some(t) = renew_time
                                && t > renewed
                            {
                                renewed = t;
                                break;
                            }
                        }
                        Some(other) => return format!("it is now held by {other}"),
                        None => return "someone else released it".to_string(),
                    }
                }
                Ok(Ok(None)) => return "it was deleted".to_string(),
                Ok(Err(e)) => debug!(lease = %config.lease(), error = %e, "cannot read lease"),
                Err(_) => continue,
            }
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(poll.min(left)).await;
        }
    }
}

fn poll_interval(grace: Duration) -> Duration {
    (grace / 8).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

async fn sleep_until(at: SystemTime) {
    let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait).await;
}

/// Doubling waits between failed attempts, up to `max`.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);

    fn new(max: Duration) -> Self {
        Backoff {
            next: Self::FIRST,
            max: max.max(Self::FIRST),
        }
    }

    fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}
