//! The notification center: a user's inbox (user token), and its admin twin (API key).

use axum::Json;
use axum::extract::{Path, State};
use herald_core::{Cursor, NotificationView};
use herald_store::ChangeOutcome;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Publisher, QueryParams, User, path_name};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

/// Largest inbox page.
pub const MAX_PAGE: usize = 100;

#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    /// Items per page, 1 to 100 (default 20).
    pub limit: Option<usize>,
    /// The `next` value of the previous page.
    pub before: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct InboxPageBody {
    pub items: Vec<NotificationView>,
    /// Unread notifications in the whole inbox.
    pub unread: u64,
    /// Cursor of the next (older) page; null on the last page.
    pub next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UnreadBody {
    pub unread: u64,
}

async fn page(state: &AppState, user: &str, q: PageQuery) -> ApiResult<Json<InboxPageBody>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let before = match &q.before {
        Some(c) => Cursor::decode(c).map_err(Problem::bad_request)?,
        None => Cursor::START,
    };
    let page = state.store.inbox_page(user, before, limit).await?;
    Ok(Json(InboxPageBody {
        items: page
            .items
            .iter()
            .map(|i| i.notification.view(i.read))
            .collect(),
        unread: page.unread,
        next: page.next.map(Cursor::encode),
    }))
}

/// The caller's inbox, newest first.
#[utoipa::path(
    get, path = "/v1/me/notifications", tag = "inbox", params(PageQuery),
    responses((status = 200, body = InboxPageBody), (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("user_token" = []))
)]
pub async fn my_notifications(
    State(state): State<AppState>,
    User(user): User,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<InboxPageBody>> {
    page(&state, &user, q).await
}

/// The caller's unread count (the badge).
#[utoipa::path(
    get, path = "/v1/me/unread", tag = "inbox",
    responses((status = 200, body = UnreadBody)),
    security(("user_token" = []))
)]
pub async fn my_unread(
    State(state): State<AppState>,
    User(user): User,
) -> ApiResult<Json<UnreadBody>> {
    Ok(Json(UnreadBody {
        unread: state.store.unread(&user).await?,
    }))
}

fn outcome(result: ChangeOutcome, id: &str) -> ApiResult<Json<UnreadBody>> {
    match result {
        ChangeOutcome::NotFound => Err(Problem::not_found(format!(
            "no notification {id:?} in your inbox"
        ))),
        ChangeOutcome::Unchanged { unread } => Ok(Json(UnreadBody { unread })),
        ChangeOutcome::Changed(change) => Ok(Json(UnreadBody {
            unread: change.unread,
        })),
    }
}

/// Mark one notification read.
#[utoipa::path(
    post, path = "/v1/me/notifications/{id}/read", tag = "inbox", params(("id" = String, Path)),
    responses((status = 200, body = UnreadBody), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("user_token" = []))
)]
pub async fn mark_read(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
) -> ApiResult<Json<UnreadBody>> {
    outcome(state.store.mark_read(&user, &id).await?, &id)
}

/// Mark everything in the inbox read.
#[utoipa::path(
    post, path = "/v1/me/notifications/read-all", tag = "inbox",
    responses((status = 200, body = UnreadBody)),
    security(("user_token" = []))
)]
pub async fn mark_all_read(
    State(state): State<AppState>,
    User(user): User,
) -> ApiResult<Json<UnreadBody>> {
    let change = state.store.mark_all_read(&user).await?;
    Ok(Json(UnreadBody {
        unread: change.unread,
    }))
}

/// Archive a notification: it leaves the inbox.
#[utoipa::path(
    delete, path = "/v1/me/notifications/{id}", tag = "inbox", params(("id" = String, Path)),
    responses((status = 200, body = UnreadBody), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("user_token" = []))
)]
pub async fn archive(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
) -> ApiResult<Json<UnreadBody>> {
    outcome(state.store.archive(&user, &id).await?, &id)
}

/// Any user's inbox, for support and back-office tools.
#[utoipa::path(
    get, path = "/v1/users/{user}/notifications", tag = "inbox", params(("user" = String, Path), PageQuery),
    responses((status = 200, body = InboxPageBody), (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn user_notifications(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(user): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<InboxPageBody>> {
    path_name("user id", &user)?;
    page(&state, &user, q).await
}
