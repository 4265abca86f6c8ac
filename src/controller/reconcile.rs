//! One reconcile, as named stages: read inputs -> observe -> evaluate -> plan -> publish ->
//! schedule. Only `read_inputs`, `observe` and `publish` do I/O; the rest is the pure engine.

use super::{Context, Error, FIELD_MANAGER, Guarded, publish};
use crate::api::text::{MAX_EVENT_NOTE, truncate};
use crate::api::{CheckSettings, HttpsDelivery, HttpsDeliveryStatus, Reason};
use crate::checks::secret::SecretContent;
use crate::checks::{self, Evaluation, Memory, Targets};
use crate::probe::Limits;
use crate::telemetry::Totals;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// What a reconcile reads before it looks at the world.
struct Inputs {
    /// The check settings, or the field that does not parse.
    settings: Result<CheckSettings, String>,
    /// The Secret named by spec.certificate.secretRef, if any (read while the probes run).
    secret: Option<String>,
    /// The delivery that already claims the hostname, when it is another one.
    conflict: Option<String>,
    memory: Memory,
}

/// Reconciles one HttpsDelivery.
#[tracing::instrument(skip_all, fields(object, hostname))]
pub async fn reconcile(guarded: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile_timer();
    let _work = ctx.health.start_work();
    let delivery = match &guarded.0 {
        Ok(d) => d,
        Err(invalid) => {
            report_unreadable(&ctx, invalid).await;
            timer.ok();
            return Ok(Action::await_change());
        }
    };
    let span = tracing::Span::current();
    span.record(
        "object",
        format!("{}/{}", namespace_of(delivery), delivery.name_any()),
    );
    span.record("hostname", delivery.spec.hostname.as_str());
    let now = jiff::Timestamp::now();

    let inputs = read_inputs(&ctx, delivery);
    let evaluation = match &inputs.settings {
        Ok(settings) => observe_and_evaluate(&ctx, delivery, settings, &inputs, now).await,
        Err(problem) => checks::evaluate_invalid(problem, &inputs.memory),
    };
    let plan = publish::plan(
        delivery.status.as_ref(),
        &evaluation,
        delivery.metadata.generation,
        now,
    );
    match publish_plan(&ctx, delivery, &plan, &evaluation).await {
        Ok(()) => {}
        // The object went away (or its namespace did) while it was being checked.
        Err(Error::StatusPatch {
            source: kube::Error::Api(status),
            ..
        }) if status.is_not_found() => {
            ctx.forget_failures(&ObjectRef::from_obj(guarded.as_ref()));
            timer.ok();
            return Ok(Action::await_change());
        }
        Err(error) => {
            timer.error(error.metric_label());
            return Err(error);
        }
    }
    record(&ctx, delivery, &evaluation);
    ctx.forget_failures(&ObjectRef::from_obj(guarded.as_ref()));
    timer.ok();
    let recheck = inputs
        .settings
        .as_ref()
        .ok()
        .map(|s| s.recheck_interval.max(ctx.limits.min_recheck_interval));
    Ok(schedule(&evaluation, recheck, now))
}

/// Stages 2 and 3: observe (shared with other deliveries, within the operator's own deadline)
/// and evaluate. A deadline that runs out leaves the probed steps Unknown `ProbeTimeout`.
async fn observe_and_evaluate(
    ctx: &Context,
    delivery: &HttpsDelivery,
    settings: &CheckSettings,
    inputs: &Inputs,
    now: jiff::Timestamp,
) -> Evaluation {
    let namespace = namespace_of(delivery);
    // Provider mode: what the CDN has decides steps 1 to 4; answers are shared per account
    // and at most one minimum recheck interval old, so that a change there is followed.
    let cdn = match &delivery.spec.cdn {
        Some(spec) => Some(read_cdn(ctx, &namespace, spec, &delivery.spec.hostname).await),
        None => None,
    };
    let desired = match checks::desired_of(&delivery.spec, cdn.as_ref()) {
        Ok(desired) => desired,
        Err(problem) => return checks::evaluate_invalid(&problem, &inputs.memory),
    };
    let memory = match cdn {
        Some(_) => Memory::default(),
        None => inputs.memory.clone(),
    };
    let targets = Targets::of_mode(&desired, cdn.as_ref());
    // Observations shared with other deliveries are at most one recheck interval old.
    let deadline = ctx.limits.reconcile_timeout;
    // No probe outlives the reconcile that asked for it (they run as tasks of their own, and
    // would otherwise hold their address's slots after the reconcile was cut).
    let limits = Limits {
        timeout: settings.timeout.min(deadline),
        max_age: settings
            .recheck_interval
            .max(ctx.limits.min_recheck_interval),
    };
    let read_secret = async || match &inputs.secret {
        Some(name) => Some(
            ctx.secrets
                .read(&ctx.client, &ctx.index, &namespace, name)
                .await,
        ),
        None => None,
    };
    let observe = ctx
        .prober
        .observe_with(&targets, read_secret(), limits, now);
    let conflict = inputs.conflict.as_deref();
    let mut evaluation = match tokio::time::timeout(deadline, observe).await {
        Ok(observed) => checks::evaluate(&desired, settings, &observed, &memory, conflict, now),
        Err(_) => {
            tracing::warn!(deadline = ?deadline, "probes cut short by the reconcile deadline");
            // The Secret was most likely read already: then this is the cache's answer.
            let secret = tokio::time::timeout(Duration::from_secs(5), read_secret())
                .await
                .unwrap_or(Some(SecretContent::ReadFailed(
                    "the Secret could not be read within the reconcile deadline".into(),
                )));
            let offline = ctx.prober.unobserved(&targets, secret, now);
            checks::evaluate_timed_out(
                &desired, settings, &offline, &memory, conflict, now, deadline,
            )
        }
    };
    if let Some(cdn) = &cdn {
        let poll = ctx.limits.min_recheck_interval;
        checks::cdn::apply(&mut evaluation, &delivery.spec, cdn, conflict, now, poll);
    }
    evaluation
}

/// What the CDN has for the delivery, through its account (read within a quarter of the
/// reconcile deadline: a slow API leaves the steps Unknown, not the reconcile stuck).
async fn read_cdn(
    ctx: &Context,
    namespace: &str,
    spec: &crate::api::CdnSpec,
    hostname: &str,
) -> checks::cdn::CdnObserved {
    use crate::provider::view::{Handles, ProviderError};
    let handles = Handles {
        certificate_id: spec.certificate_id.clone(),
        edge_id: spec.edge_cname_id.clone(),
    };
    let max_age = ctx.limits.min_recheck_interval;
    let read = async {
        let account = ctx
            .accounts
            .get(&ctx.client, namespace, &spec.account_ref)
            .await?;
        crate::provider::read(&account, &handles, hostname, max_age).await
    };
    let limit = ctx.limits.reconcile_timeout / 4;
    tokio::time::timeout(limit, read).await.unwrap_or_else(|_| {
        Err(ProviderError::Unavailable(format!(
            "the CDN's API did not answer within {}s",
            limit.as_secs()
        )))
    })
}

fn namespace_of(delivery: &HttpsDelivery) -> String {
    delivery.namespace().unwrap_or_default()
}

/// Stage 1: the settings, the referenced Secret's name, the hostname's owner and what the last
/// status remembers.
fn read_inputs(ctx: &Context, delivery: &HttpsDelivery) -> Inputs {
    let namespace = namespace_of(delivery);
    Inputs {
        settings: delivery.spec.settings().map_err(|e| e.to_string()),
        secret: delivery
            .spec
            .certificate
            .secret_ref
            .as_ref()
            .map(|r| r.name.clone()),
        conflict: ctx
            .index
            .conflict_of(&ObjectRef::new(&delivery.name_any()).within(&namespace)),
        memory: Memory {
            track_edge_changes: true,
            edge_tracking: delivery.status.as_ref().and_then(|s| s.edge_cname.clone()),
        },
    }
}

/// Stage 5: the status (when it changed) and the Events of transitions.
async fn publish_plan(
    ctx: &Context,
    delivery: &HttpsDelivery,
    plan: &publish::Plan,
    evaluation: &Evaluation,
) -> Result<(), Error> {
    let (namespace, name) = (namespace_of(delivery), delivery.name_any());
    if let Some(status) = &plan.status {
        apply_status(&ctx.client, &namespace, &name, status)
            .await
            .map_err(|source| Error::StatusPatch {
                object: format!("{namespace}/{name}"),
                source,
            })?;
        let ready = evaluation.ready();
        tracing::info!(ready = ?ready.status, reason = %ready.reason, "status updated");
    }
    let reference = delivery.object_ref(&());
    for t in &plan.events {
        let event = Event {
            type_: if t.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: t.reason.clone(),
            note: Some(t.note.clone()),
            action: "Check".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "cannot publish an Event");
        }
    }
    Ok(())
}

/// The per-object metrics (condition statuses, certificate expiry) and the process's totals.
fn record(ctx: &Context, delivery: &HttpsDelivery, evaluation: &Evaluation) {
    let probes = ctx.prober.counters();
    ctx.metrics.set_totals(Totals {
        dns_queries: probes.dns_queries,
        tls_handshakes: probes.tls_handshakes,
        secret_reads: ctx.secrets.reads(),
        secret_gets: ctx.secrets.gets(),
    });
    let (namespace, name) = (namespace_of(delivery), delivery.name_any());
    let conditions: Vec<(String, String)> = evaluation
        .verdicts
        .iter()
        .map(|v| (v.type_.as_str().to_string(), v.status.as_str().to_string()))
        .collect();
    ctx.metrics.set_conditions(&namespace, &name, &conditions);
    ctx.metrics.set_info(
        &namespace,
        &name,
        &delivery.spec.hostname,
        evaluation.ready().reason.as_str(),
    );
    let dangling = evaluation
        .verdicts
        .iter()
        .any(|v| v.reason == crate::api::Reason::DanglingCname);
    ctx.metrics.set_dangling(&namespace, &name, dangling);
    let not_after = evaluation
        .certificate
        .as_ref()
        .map(|c| c.not_after.as_second());
    ctx.metrics
        .set_certificate_not_after(&namespace, &name, not_after);
}

/// Stage 6: when to look again. An invalid spec waits for the next change of the object.
fn schedule(evaluation: &Evaluation, recheck: Option<Duration>, now: jiff::Timestamp) -> Action {
    match recheck {
        Some(recheck) => Action::requeue(publish::next_check(
            evaluation,
            recheck,
            now,
            rand::random::<f64>(),
        )),
        None => Action::await_change(),
    }
}

/// One malformed object must not stop the watch: say why on the object, then wait.
async fn report_unreadable(ctx: &Context, invalid: &InvalidObject) {
    let event = Event {
        type_: EventType::Warning,
        reason: Reason::InvalidSpec.as_str().into(),
        note: Some(truncate(
            &format!("the object cannot be read: {}", invalid.error),
            MAX_EVENT_NOTE,
        )),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx
        .recorder
        .publish(&event, &invalid_reference(invalid))
        .await
    {
        tracing::warn!(error = %e, "cannot publish an Event");
    }
    tracing::warn!(error = %invalid.error, name = ?invalid.metadata.name, "skipping an HttpsDelivery that cannot be read");
}

fn invalid_reference(invalid: &InvalidObject) -> ObjectReference {
    ObjectReference {
        api_version: Some(HttpsDelivery::api_version(&()).into_owned()),
        kind: Some(HttpsDelivery::kind(&()).into_owned()),
        name: invalid.metadata.name.clone(),
        namespace: invalid.metadata.namespace.clone(),
        uid: invalid.metadata.uid.clone(),
        resource_version: invalid.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Server-side apply of the whole status under the operator's field manager.
pub async fn apply_status(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &HttpsDeliveryStatus,
) -> Result<(), kube::Error> {
    let api: Api<HttpsDelivery> = Api::namespaced(client.clone(), namespace);
    let body = status_apply_body(status);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // A 409 Conflict is another writer in the same instant: apply again at once, a few times,
    // rather than failing the reconcile into its backoff.
    let mut conflicts = 0;
    loop {
        match api.patch_status(name, &params, &Patch::Apply(&body)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && conflicts < CONFLICT_RETRIES => {
                conflicts += 1;
                let jitter = 50 + rand::random::<u64>() % 150;
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How often a status apply answered 409 Conflict is tried again.
const CONFLICT_RETRIES: u32 = 3;

/// The exact body of the status apply.
pub fn status_apply_body(status: &HttpsDeliveryStatus) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": HttpsDelivery::api_version(&()),
        "kind": HttpsDelivery::kind(&()),
        "status": status,
    })
}

/// Backs off exponentially per object when a reconcile fails.
pub fn error_policy(guarded: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    let wait = ctx.note_failure(ObjectRef::from_obj(guarded.as_ref()));
    tracing::warn!(error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}
