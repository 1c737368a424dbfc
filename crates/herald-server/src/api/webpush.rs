//! `GET /v1/webpush/vapid-public-key`: the key a browser passes as `applicationServerKey` when it
//! subscribes to Web Push. It is public by nature, so no credential is needed.

use axum::Json;
use axum::extract::State;
use herald_push::webpush::vapid::VapidKey;
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct VapidPublicKey {
    /// The 65-byte uncompressed P-256 point, base64url without padding.
    pub public_key: String,
}

/// The server's VAPID public key, for `PushManager.subscribe`.
#[utoipa::path(
    get, path = "/v1/webpush/vapid-public-key", tag = "devices",
    responses((status = 200, body = VapidPublicKey),
              (status = 404, body = Problem, content_type = "application/problem+json"))
)]
pub async fn vapid_public_key(State(state): State<AppState>) -> ApiResult<Json<VapidPublicKey>> {
    let Some(webpush) = &state.config.push.webpush else {
        return Err(Problem::not_found(
            "Web Push is not configured on this server ([push.webpush] in herald.toml)",
        ));
    };
    // The configuration was checked at start (the sender built its provider from it).
    let key = VapidKey::from_base64url(&webpush.vapid_private_key)
        .map_err(|_| Problem::unavailable("the configured VAPID key is not usable"))?;
    Ok(Json(VapidPublicKey {
        public_key: key.public_key_b64url().to_owned(),
    }))
}
