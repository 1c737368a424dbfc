//! `POST /v1/users/{user}/token` (API key): a product's backend mints a short-lived user token
//! for its signed-in user, so the browser SDK can open that user's inbox and live stream without
//! ever seeing the API key.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::CACHE_CONTROL;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Publisher, QueryParams, path_name};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

/// Lifetime of a minted token unless asked otherwise: long enough for a browsing session,
/// short enough that a leaked one soon stops working. The SDK asks for a new one when it expires.
pub const DEFAULT_TTL_SECONDS: u64 = 3600;
/// Longest lifetime a minted token may have.
pub const MAX_TTL_SECONDS: u64 = 24 * 3600;

#[derive(Deserialize, IntoParams)]
pub struct TokenQuery {
    /// Seconds the token is valid, 60 to 86,400 (default 3,600).
    pub ttl_seconds: Option<u64>,
    /// Realtime channels the token may read, comma-separated: names, or prefixes ending in
    /// `*` (`session:1234*`). Without it the token reads no channel.
    pub channels: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserToken {
    /// A JWT (HS256) whose `sub` is the user: send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub user: String,
    /// RFC 3339, UTC.
    pub expires_at: String,
    pub expires_in: u64,
    /// The channel patterns the token may read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

/// Mint a user token (for the browser SDK and the bell widget).
///
/// Only a publisher API key may do this; a user token is refused, so a user can never mint a
/// token for somebody else (or a longer one for themself).
#[utoipa::path(
    post, path = "/v1/users/{user}/token", tag = "inbox",
    params(("user" = String, Path), TokenQuery),
    responses((status = 200, body = UserToken),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn mint(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(user): Path<String>,
    QueryParams(q): QueryParams<TokenQuery>,
) -> ApiResult<([(axum::http::HeaderName, &'static str); 1], Json<UserToken>)> {
    path_name("user id", &user)?;
    let ttl = q.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
    if !(60..=MAX_TTL_SECONDS).contains(&ttl) {
        return Err(Problem::bad_request(format!(
            "ttl_seconds must be between 60 and {MAX_TTL_SECONDS}"
        )));
    }
    let now = herald_core::time::now_ms();
    let channels: Vec<String> = q
        .channels
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let token = crate::auth::issue_channel_token(&state.token_secret, &user, ttl, &channels)
        .map_err(Problem::bad_request)?;
    let expires_at = herald_core::time::rfc3339_ms(now + ttl as i64 * 1000);
    // A credential: no cache, shared or private, may keep it.
    Ok((
        [(CACHE_CONTROL, "no-store")],
        Json(UserToken {
            token,
            user,
            expires_at,
            expires_in: ttl,
            channels,
        }),
    ))
}
