//! Publishing: `POST /v1/notifications` and reading a notification back.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use herald_core::{Notification, PublishRequest, Recipients};
use herald_store::{Accept, Accepted, Idempotency};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{JsonBody, Publisher};
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
    let priority = request.priority;
    let notification = request.into_notification(state.next_id(), herald_core::time::now_ms());
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
    match state.store.notification(&id).await? {
        Some(n) => Ok(Json(StoredNotification::from(&*n))),
        None => Err(Problem::not_found(format!(
            "no notification with id {id:?}"
        ))),
    }
}
