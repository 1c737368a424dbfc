//! Publishing: `POST /v1/notifications`, reading a notification back with its delivery report,
//! and the dead letters of sends that were given up.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use herald_core::{Notification, PublishRequest, Recipients};
use std::collections::BTreeMap;

use herald_store::{Accept, Accepted, ChannelCounts, Idempotency};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{JsonBody, Publisher, QueryParams};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct PublishAccepted {
    /// The notification's id (a ULID).
    pub id: String,
    /// True when an earlier request with the same idempotency key already created it.
    pub duplicate: bool,
}

/// Accept a notification for delivery.
///
/// Answers 202 once the notification is stored durably; delivery follows asynchronously.
#[utoipa::path(
    post, path = "/v1/notifications", tag = "publish",
    request_body = PublishRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same key, same request: same id, delivered once")),
    responses(
        (status = 202, body = PublishAccepted),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Idempotency key reused with a different request"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn publish(
    State(state): State<AppState>,
    _publisher: Publisher,
    headers: HeaderMap,
    JsonBody(mut request): JsonBody<PublishRequest>,
) -> ApiResult<(StatusCode, Json<PublishAccepted>)> {
    if let Some(header) = headers.get("idempotency-key") {
        let header = header
            .to_str()
            .map_err(|_| {
                Problem::bad_request("the Idempotency-Key header must be printable ASCII")
            })?
            .to_owned();
        match &request.idempotency_key {
            Some(body_key) if *body_key != header => {
                return Err(Problem::bad_request(
                    "the Idempotency-Key header and the body's idempotency_key differ; send one of them",
                ));
            }
            _ => request.idempotency_key = Some(header),
        }
    }
    request.validate(&state.config.limits)?;
    let idempotency = request.idempotency_key.clone().map(|key| Idempotency {
        key,
        fingerprint: request.fingerprint(),
    });
    let category = state.categories.get(request.category.as_deref()).await?;
    let notification = request.into_notification(
        state.next_id(),
        herald_core::time::now_ms(),
        category.as_deref(),
    );
    let priority = notification.priority;
    let started = std::time::Instant::now();
    let accepted = state
        .store
        .accept(Accept {
            notification,
            idempotency,
        })
        .await?;
    metrics::histogram!("herald_accept_seconds").record(started.elapsed().as_secs_f64());
    let body = match accepted {
        Accepted::Created(n) => {
            metrics::counter!("herald_notifications_accepted_total", "priority" => priority.as_str()).increment(1);
            PublishAccepted {
                id: n.id.clone(),
                duplicate: false,
            }
        }
        Accepted::Duplicate { id } => {
            metrics::counter!("herald_notifications_duplicate_total").increment(1);
            PublishAccepted {
                id,
                duplicate: true,
            }
        }
    };
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// A stored notification as its publisher sent it.
#[derive(Serialize, ToSchema)]
pub struct StoredNotification {
    pub id: String,
    #[schema(value_type = Object)]
    pub to: Recipients,
    pub title: String,
    pub body: String,
    pub category: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
    pub priority: herald_core::Priority,
    pub ttl_seconds: Option<u32>,
    pub channels: Vec<herald_core::Channel>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub idempotency_key: Option<String>,
    pub collapse_key: Option<String>,
    pub dry_run: bool,
    /// Per channel (`inbox`, `realtime`, `push`, `webhook`); absent channels had nothing to count.
    pub report: BTreeMap<String, ChannelReport>,
}

/// How one channel of a notification went. Sends (`queued` to `pending`) count devices and
/// webhooks; policy decisions (`delivered` to `collapsed`) count users.
#[derive(Serialize, ToSchema, Debug, PartialEq)]
pub struct ChannelReport {
    /// Sends queued in all.
    pub queued: u64,
    pub sent: u64,
    /// Given up; see `GET /v1/dead-letters` for the reasons.
    pub failed: u64,
    /// The device was gone (unregistered token); it was removed.
    pub pruned: u64,
    pub dry_run: u64,
    /// Its TTL ran out before it could be sent (or, per user, before fan-out or quiet hours ended).
    pub expired: u64,
    /// Queued and not finished yet (including retries waiting for their backoff).
    pub pending: u64,
    /// Users it was written to (inbox) or announced to (realtime).
    pub delivered: u64,
    /// Users whose preferences turned it off.
    pub muted: u64,
    /// Users over a frequency cap.
    pub capped: u64,
    /// Users in their quiet hours: push waits until they end.
    pub quiet_deferred: u64,
    /// Users who got an earlier notification with the same collapse key, so no second push.
    pub collapsed: u64,
}

impl From<&ChannelCounts> for ChannelReport {
    fn from(c: &ChannelCounts) -> Self {
        Self {
            queued: c.queued,
            sent: c.sent,
            failed: c.failed,
            pruned: c.pruned,
            dry_run: c.dry_run,
            expired: c.expired,
            pending: c.pending(),
            delivered: c.delivered,
            muted: c.muted,
            capped: c.capped,
            quiet_deferred: c.quiet_deferred,
            collapsed: c.collapsed,
        }
    }
}

impl From<&Notification> for StoredNotification {
    fn from(n: &Notification) -> Self {
        Self {
            id: n.id.clone(),
            to: n.to.clone(),
            title: n.title.clone(),
            body: n.body.clone(),
            category: n.category.clone(),
            data: n.data.clone(),
            priority: n.priority,
            ttl_seconds: n.ttl_seconds,
            channels: n.channels.iter().collect(),
            created_at: herald_core::time::rfc3339_ms(n.created_at),
            idempotency_key: n.idempotency_key.clone(),
            collapse_key: n.collapse_key.clone(),
            dry_run: n.dry_run,
            report: BTreeMap::new(),
        }
    }
}

/// Read back a notification by id.
#[utoipa::path(
    get, path = "/v1/notifications/{id}", tag = "publish",
    params(("id" = String, Path)),
    responses((status = 200, body = StoredNotification), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn get_notification(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(id): Path<String>,
) -> ApiResult<Json<StoredNotification>> {
    let Some(n) = state.store.notification(&id).await? else {
        return Err(Problem::not_found(format!(
            "no notification with id {id:?}"
        )));
    };
    let mut stored = StoredNotification::from(&*n);
    stored.report = state
        .store
        .delivery_report(&id)
        .await?
        .iter()
        .map(|(channel, counts)| (channel.clone(), ChannelReport::from(counts)))
        .collect();
    Ok(Json(stored))
}

#[derive(Deserialize, IntoParams)]
pub struct DeadLetterQuery {
    /// Most letters returned, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterList {
    /// Newest first.
    pub dead_letters: Vec<DeadLetterBody>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterBody {
    pub notification: String,
    /// `d:<device id>` or `w:<webhook name>`.
    pub target: String,
    pub user: String,
    pub attempts: u32,
    pub reason: String,
    /// RFC 3339, UTC.
    pub at: String,
}

/// Sends that were given up, and why: newest first.
#[utoipa::path(
    get, path = "/v1/dead-letters", tag = "publish", params(DeadLetterQuery),
    responses((status = 200, body = DeadLetterList)),
    security(("api_key" = []))
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    _publisher: Publisher,
    QueryParams(q): QueryParams<DeadLetterQuery>,
) -> ApiResult<Json<DeadLetterList>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 1000"));
    }
    let letters = state.store.dead_letters(limit).await?;
    Ok(Json(DeadLetterList {
        dead_letters: letters
            .into_iter()
            .map(|d| DeadLetterBody {
                notification: d.notification,
                target: d.target,
                user: d.user,
                attempts: d.attempts,
                reason: d.reason,
                at: herald_core::time::rfc3339_ms(d.at),
            })
            .collect(),
    }))
}
