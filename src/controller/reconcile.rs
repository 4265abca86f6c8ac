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

/// What a reconcile reads before it looks at the world.
struct Inputs {
    /// The check settings, or the field that does not parse.
    settings: Result<CheckSettings, String>,
    secret: Option<SecretContent>,
    /// The delivery that already claims the hostname, when it is another one.
    conflict: Option<String>,
    memory: Memory,
}

/// Reconciles one HttpsDelivery.
#[tracing::instrument(skip_all, fields(object, hostname))]
pub async fn reconcile(guarded: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile_timer();
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

    let inputs = read_inputs(&ctx, delivery).await;
    let evaluation = match &inputs.settings {
        Ok(settings) => {
            let targets = Targets::of(&delivery.spec);
            // Observations shared with other deliveries are at most one recheck interval old.
            let limits = Limits {
                timeout: settings.timeout,
                max_age: settings.recheck_interval,
            };
            let observed = ctx
                .prober
                .observe(&targets, inputs.secret.clone(), limits, now)
                .await;
            checks::evaluate(
                &delivery.spec,
                settings,
                &observed,
                &inputs.memory,
                inputs.conflict.as_deref(),
                now,
            )
        }
        Err(problem) => checks::evaluate_invalid(problem, &inputs.memory),
    };
    let plan = publish::plan(
        delivery.status.as_ref(),
        &evaluation,
        delivery.metadata.generation,
        now,
    );
    if let Err(error) = publish_plan(&ctx, delivery, &plan, &evaluation).await {
        timer.error(error.metric_label());
        return Err(error);
    }
    record(&ctx, delivery, &evaluation);
    ctx.forget_failures(&ObjectRef::from_obj(guarded.as_ref()));
    timer.ok();
    Ok(schedule(&evaluation, inputs.settings.as_ref().ok(), now))
}

fn namespace_of(delivery: &HttpsDelivery) -> String {
    delivery.namespace().unwrap_or_default()
}

/// Stage 1: the settings, the referenced Secret, the hostname's owner and what the last status
/// remembers.
async fn read_inputs(ctx: &Context, delivery: &HttpsDelivery) -> Inputs {
    let namespace = namespace_of(delivery);
    let secret = match &delivery.spec.certificate.secret_ref {
        Some(r) => Some(ctx.secrets.read(&ctx.client, &namespace, &r.name).await),
        None => None,
    };
    Inputs {
        settings: delivery.spec.settings().map_err(|e| e.to_string()),
        secret,
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
        secret_reads: ctx.secrets.gets(),
    });
    let (namespace, name) = (namespace_of(delivery), delivery.name_any());
    let conditions: Vec<(String, String)> = evaluation
        .verdicts
        .iter()
        .map(|v| (v.type_.as_str().to_string(), v.status.as_str().to_string()))
        .collect();
    ctx.metrics.set_conditions(&namespace, &name, &conditions);
    let not_after = evaluation
        .certificate
        .as_ref()
        .map(|c| c.not_after.as_second());
    ctx.metrics
        .set_certificate_not_after(&namespace, &name, not_after);
}

/// Stage 6: when to look again. An invalid spec waits for the next change of the object.
fn schedule(
    evaluation: &Evaluation,
    settings: Option<&CheckSettings>,
    now: jiff::Timestamp,
) -> Action {
    match settings {
        Some(s) => Action::requeue(publish::next_check(
            evaluation,
            s.recheck_interval,
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
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

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
