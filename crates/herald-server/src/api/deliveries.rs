//! Why a user did or did not get something: `GET /v1/users/{user}/deliveries` (API key).

use axum::Json;
use axum::extract::{Path, State};
use herald_core::{Channel, Preferences, Reason};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Publisher, QueryParams, path_name};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
pub struct DeliveriesQuery {
    /// Most decisions returned, 1 to 1000 (default 50).
    pub limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct UserDeliveries {
    pub user: String,
    /// Newest first: every time policy changed what the user got (muted, capped, deferred for
    /// quiet hours, expired, collapsed). Notifications delivered as asked are in the inbox and
    /// in each notification's report.
    pub decisions: Vec<DecisionBody>,
    /// The preferences in force now.
    pub preferences: Preferences,
}

#[derive(Serialize, ToSchema)]
pub struct DecisionBody {
    pub notification: String,
    pub channel: Channel,
    pub reason: Reason,
    pub detail: String,
    /// RFC 3339, UTC.
    pub at: String,
}

/// The last delivery decisions for one user, with the reasons.
#[utoipa::path(
    get, path = "/v1/users/{user}/deliveries", tag = "policy",
    params(("user" = String, Path), DeliveriesQuery),
    responses((status = 200, body = UserDeliveries), (status = 400, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn user_deliveries(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(user): Path<String>,
    QueryParams(q): QueryParams<DeliveriesQuery>,
) -> ApiResult<Json<UserDeliveries>> {
    path_name("user id", &user)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit must be between 1 and 1000"));
    }
    let decisions = state.store.decisions(&user, limit).await?;
    let preferences = state
        .store
        .preferences_of(std::slice::from_ref(&user))
        .await?
        .into_iter()
        .next()
        .flatten()
        .unwrap_or_default();
    Ok(Json(UserDeliveries {
        user,
        decisions: decisions
            .into_iter()
            .map(|d| DecisionBody {
                notification: d.notification,
                channel: d.channel,
                reason: d.reason,
                detail: d.detail,
                at: herald_core::time::rfc3339_ms(d.at),
            })
            .collect(),
        preferences,
    }))
}
