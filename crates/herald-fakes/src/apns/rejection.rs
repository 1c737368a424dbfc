//! APNs error answers: a status and a `reason`, as `{"reason":"…"}`.

use http::StatusCode;

use crate::behaviour::Failure;

/// Why APNs refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
}

const fn rejection(status: StatusCode, reason: &'static str) -> Rejection {
    Rejection { status, reason }
}

pub(crate) const BAD_COLLAPSE_ID: Rejection = rejection(StatusCode::BAD_REQUEST, "BadCollapseId");
pub(crate) const BAD_DEVICE_TOKEN: Rejection = rejection(StatusCode::BAD_REQUEST, "BadDeviceToken");
pub(crate) const BAD_EXPIRATION_DATE: Rejection =
    rejection(StatusCode::BAD_REQUEST, "BadExpirationDate");
pub(crate) const BAD_MESSAGE_ID: Rejection = rejection(StatusCode::BAD_REQUEST, "BadMessageId");
pub(crate) const BAD_PRIORITY: Rejection = rejection(StatusCode::BAD_REQUEST, "BadPriority");
pub(crate) const DUPLICATE_HEADERS: Rejection =
    rejection(StatusCode::BAD_REQUEST, "DuplicateHeaders");
pub(crate) const INVALID_PUSH_TYPE: Rejection =
    rejection(StatusCode::BAD_REQUEST, "InvalidPushType");
pub(crate) const MISSING_DEVICE_TOKEN: Rejection =
    rejection(StatusCode::BAD_REQUEST, "MissingDeviceToken");
pub(crate) const MISSING_TOPIC: Rejection = rejection(StatusCode::BAD_REQUEST, "MissingTopic");
pub(crate) const PAYLOAD_EMPTY: Rejection = rejection(StatusCode::BAD_REQUEST, "PayloadEmpty");
pub(crate) const TOPIC_DISALLOWED: Rejection =
    rejection(StatusCode::BAD_REQUEST, "TopicDisallowed");
pub(crate) const EXPIRED_PROVIDER_TOKEN: Rejection =
    rejection(StatusCode::FORBIDDEN, "ExpiredProviderToken");
pub(crate) const FORBIDDEN: Rejection = rejection(StatusCode::FORBIDDEN, "Forbidden");
pub(crate) const INVALID_PROVIDER_TOKEN: Rejection =
    rejection(StatusCode::FORBIDDEN, "InvalidProviderToken");
pub(crate) const MISSING_PROVIDER_TOKEN: Rejection =
    rejection(StatusCode::FORBIDDEN, "MissingProviderToken");
pub(crate) const BAD_PATH: Rejection = rejection(StatusCode::NOT_FOUND, "BadPath");
pub(crate) const METHOD_NOT_ALLOWED: Rejection =
    rejection(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed");
pub(crate) const UNREGISTERED: Rejection = rejection(StatusCode::GONE, "Unregistered");
pub(crate) const PAYLOAD_TOO_LARGE: Rejection =
    rejection(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
pub(crate) const TOO_MANY_PROVIDER_TOKEN_UPDATES: Rejection =
    rejection(StatusCode::TOO_MANY_REQUESTS, "TooManyProviderTokenUpdates");
pub(crate) const TOO_MANY_REQUESTS: Rejection =
    rejection(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests");
pub(crate) const INTERNAL_SERVER_ERROR: Rejection =
    rejection(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError");
pub(crate) const SERVICE_UNAVAILABLE: Rejection =
    rejection(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable");

impl Rejection {
    /// The reason APNs gives with an injected failure's status.
    pub(crate) fn injected(failure: &Failure) -> Self {
        let reason = match failure.status.as_u16() {
            400 => BAD_DEVICE_TOKEN.reason,
            403 => FORBIDDEN.reason,
            404 => BAD_PATH.reason,
            405 => METHOD_NOT_ALLOWED.reason,
            410 => UNREGISTERED.reason,
            413 => PAYLOAD_TOO_LARGE.reason,
            429 => TOO_MANY_REQUESTS.reason,
            503 => SERVICE_UNAVAILABLE.reason,
            _ => INTERNAL_SERVER_ERROR.reason,
        };
        rejection(failure.status, reason)
    }
}
