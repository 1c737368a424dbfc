//! Topic subscriptions: who hears of what a topic publishes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{JsonBody, Publisher, QueryParams, path_name};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

/// Most user ids in one bulk subscription change.
pub const MAX_BULK: usize = 10_000;

/// Subscribe a user to a topic (idempotent).
#[utoipa::path(
    put, path = "/v1/topics/{topic}/subscribers/{user}", tag = "topics",
    params(("topic" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 400, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn subscribe(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path((topic, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    change_one(&state, &topic, user, true).await
}

/// Unsubscribe a user from a topic (idempotent).
#[utoipa::path(
    delete, path = "/v1/topics/{topic}/subscribers/{user}", tag = "topics",
    params(("topic" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 400, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn unsubscribe(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path((topic, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    change_one(&state, &topic, user, false).await
}

async fn change_one(
    state: &AppState,
    topic: &str,
    user: String,
    subscribe: bool,
) -> ApiResult<StatusCode> {
    path_name("topic", topic)?;
    path_name("user id", &user)?;
    if subscribe {
        state.store.subscribe(topic, &[user]).await?;
    } else {
        state.store.unsubscribe(topic, &[user]).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkChange {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BulkResult {
    /// Users that were not subscribed before.
    pub added: u64,
    /// Users that were subscribed before.
    pub removed: u64,
}

/// Add and remove many subscribers at once (up to 10,000 ids per request).
#[utoipa::path(
    post, path = "/v1/topics/{topic}/subscribers", tag = "topics",
    params(("topic" = String, Path)),
    request_body = BulkChange,
    responses((status = 200, body = BulkResult), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn bulk(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(topic): Path<String>,
    JsonBody(change): JsonBody<BulkChange>,
) -> ApiResult<Json<BulkResult>> {
    path_name("topic", &topic)?;
    let mut check = herald_core::validation::Checker::default();
    if change.add.len() + change.remove.len() > MAX_BULK {
        check.fail(
            "add",
            format!("at most {MAX_BULK} user ids per request, added and removed together"),
        );
    }
    for (field, list) in [("add", &change.add), ("remove", &change.remove)] {
        for (i, user) in list
            .iter()
            .enumerate()
            .filter(|(_, u)| herald_core::names::check_name("user id", u).is_err())
            .take(5)
        {
            check.check(
                format!("{field}[{i}]"),
                herald_core::names::check_name("user id", user),
            );
        }
    }
    check.finish()?;
    let added = state.store.subscribe(&topic, &change.add).await?;
    let removed = state.store.unsubscribe(&topic, &change.remove).await?;
    Ok(Json(BulkResult { added, removed }))
}

#[derive(Deserialize, IntoParams)]
pub struct SubscriberQuery {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// The `next` value of the previous page.
    pub after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriberPage {
    pub items: Vec<String>,
    pub next: Option<String>,
}

/// List a topic's subscribers in id order.
#[utoipa::path(
    get, path = "/v1/topics/{topic}/subscribers", tag = "topics",
    params(("topic" = String, Path), SubscriberQuery),
    responses((status = 200, body = SubscriberPage)),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(topic): Path<String>,
    QueryParams(q): QueryParams<SubscriberQuery>,
) -> ApiResult<Json<SubscriberPage>> {
    path_name("topic", &topic)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 1000"));
    }
    let items = state
        .store
        .subscribers(&topic, q.after.as_deref(), limit)
        .await?;
    let next = (items.len() == limit)
        .then(|| items.last().cloned())
        .flatten();
    Ok(Json(SubscriberPage { items, next }))
}
