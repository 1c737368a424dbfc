//! A user's preferences: set by the user's app (user token), with an admin twin (API key).

use axum::Json;
use axum::extract::{Path, State};
use herald_core::Preferences;

use super::extract::{JsonBody, Publisher, User, path_name};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

async fn read(state: &AppState, user: &str) -> ApiResult<Json<Preferences>> {
    let found = state.store.preferences_of(&[user.to_owned()]).await?;
    Ok(Json(found.into_iter().next().flatten().unwrap_or_default()))
}

async fn write(state: &AppState, user: &str, prefs: Preferences) -> ApiResult<Json<Preferences>> {
    prefs.validate()?;
    // Turning off a category users may not opt out of would silently do nothing: say so.
    let categories = state.categories.all().await?;
    let mut refused = herald_core::validation::Checker::default();
    for (name, channels) in &prefs.categories {
        let mandatory = categories.get(name).is_some_and(|c| !c.opt_out);
        if mandatory && channels.values().any(|on| !on) {
            refused.fail(
                format!("categories.{name}"),
                "users may not turn this category off",
            );
        }
    }
    refused.finish()?;
    state.store.put_preferences(user, &prefs).await?;
    Ok(Json(prefs))
}

/// The caller's preferences (everything on until changed).
#[utoipa::path(
    get, path = "/v1/me/preferences", tag = "policy",
    responses((status = 200, body = Preferences)),
    security(("user_token" = []))
)]
pub async fn get_mine(
    State(state): State<AppState>,
    User(user): User,
) -> ApiResult<Json<Preferences>> {
    read(&state, &user).await
}

/// Replace the caller's preferences: channels and categories on or off, a global mute, quiet
/// hours in the user's time zone. Categories that users may not opt out of cannot be turned off.
#[utoipa::path(
    put, path = "/v1/me/preferences", tag = "policy", request_body = Preferences,
    responses((status = 200, body = Preferences), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("user_token" = []))
)]
pub async fn put_mine(
    State(state): State<AppState>,
    User(user): User,
    JsonBody(prefs): JsonBody<Preferences>,
) -> ApiResult<Json<Preferences>> {
    write(&state, &user, prefs).await
}

/// Any user's preferences.
#[utoipa::path(
    get, path = "/v1/users/{user}/preferences", tag = "policy", params(("user" = String, Path)),
    responses((status = 200, body = Preferences)),
    security(("api_key" = []))
)]
pub async fn get_for_user(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(user): Path<String>,
) -> ApiResult<Json<Preferences>> {
    path_name("user id", &user)?;
    read(&state, &user).await
}

/// Replace any user's preferences.
#[utoipa::path(
    put, path = "/v1/users/{user}/preferences", tag = "policy", params(("user" = String, Path)),
    request_body = Preferences,
    responses((status = 200, body = Preferences), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn put_for_user(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(user): Path<String>,
    JsonBody(prefs): JsonBody<Preferences>,
) -> ApiResult<Json<Preferences>> {
    path_name("user id", &user)?;
    write(&state, &user, prefs).await
}
