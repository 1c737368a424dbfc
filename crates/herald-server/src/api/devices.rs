//! Devices that receive push: registered by the user's app (user token), with an admin twin
//! (API key) for support tools and server-side registration.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use herald_core::{Device, DeviceRegistration};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{JsonBody, Publisher, User, path_name};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct DeviceList {
    /// Most recently registered first.
    pub devices: Vec<Device>,
}

async fn register(
    state: &AppState,
    user: &str,
    body: DeviceRegistration,
) -> ApiResult<(StatusCode, Json<Device>)> {
    let device = body.into_device(user, herald_core::time::now_ms())?;
    state.store.register_device(device.clone()).await?;
    Ok((StatusCode::CREATED, Json(device)))
}

async fn list(state: &AppState, user: &str) -> ApiResult<Json<DeviceList>> {
    Ok(Json(DeviceList {
        devices: state.store.devices(user).await?,
    }))
}

async fn remove(state: &AppState, user: &str, id: &str) -> ApiResult<StatusCode> {
    if state.store.remove_device(user, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!(
            "no device {id:?} registered for this user"
        )))
    }
}

/// Register this device for push. The same token (or Web Push endpoint) always has the same
/// id; registering a token another user had moves it to the caller.
#[utoipa::path(
    post, path = "/v1/me/devices", tag = "devices", request_body = DeviceRegistration,
    responses((status = 201, body = Device), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("user_token" = []))
)]
pub async fn register_mine(
    State(state): State<AppState>,
    User(user): User,
    JsonBody(body): JsonBody<DeviceRegistration>,
) -> ApiResult<(StatusCode, Json<Device>)> {
    register(&state, &user, body).await
}

/// The caller's devices.
#[utoipa::path(
    get, path = "/v1/me/devices", tag = "devices",
    responses((status = 200, body = DeviceList)),
    security(("user_token" = []))
)]
pub async fn list_mine(
    State(state): State<AppState>,
    User(user): User,
) -> ApiResult<Json<DeviceList>> {
    list(&state, &user).await
}

/// Unregister one of the caller's devices.
#[utoipa::path(
    delete, path = "/v1/me/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("user_token" = []))
)]
pub async fn remove_mine(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    remove(&state, &user, &id).await
}

/// Register a device for any user.
#[utoipa::path(
    post, path = "/v1/users/{user}/devices", tag = "devices", params(("user" = String, Path)),
    request_body = DeviceRegistration,
    responses((status = 201, body = Device), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn register_for_user(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(user): Path<String>,
    JsonBody(body): JsonBody<DeviceRegistration>,
) -> ApiResult<(StatusCode, Json<Device>)> {
    path_name("user id", &user)?;
    register(&state, &user, body).await
}

/// Any user's devices.
#[utoipa::path(
    get, path = "/v1/users/{user}/devices", tag = "devices", params(("user" = String, Path)),
    responses((status = 200, body = DeviceList)),
    security(("api_key" = []))
)]
pub async fn list_for_user(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(user): Path<String>,
) -> ApiResult<Json<DeviceList>> {
    path_name("user id", &user)?;
    list(&state, &user).await
}

/// Unregister any user's device.
#[utoipa::path(
    delete, path = "/v1/users/{user}/devices/{id}", tag = "devices",
    params(("user" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = []))
)]
pub async fn remove_for_user(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path((user, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    path_name("user id", &user)?;
    remove(&state, &user, &id).await
}
