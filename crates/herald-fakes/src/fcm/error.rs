//! Google API errors in the shape FCM HTTP v1 answers them:
//! `{"error":{"code":…,"message":…,"status":…,"details":[…]}}`.

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

use crate::behaviour::Failure;
use crate::reply;
use crate::server::FakeResponse;

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

/// One Google API error response.
#[derive(Debug, Clone)]
pub(crate) struct GoogleError {
    pub(crate) code: StatusCode,
    status: &'static str,
    message: String,
    details: Vec<Value>,
}

impl GoogleError {
    fn new(code: StatusCode, status: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            status,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds the FCM error code (`UNREGISTERED`, `QUOTA_EXCEEDED`, …) clients branch on.
    fn with_fcm_error_code(mut self, error_code: &str) -> Self {
        self.details
            .push(json!({"@type": FCM_ERROR_TYPE, "errorCode": error_code}));
        self
    }

    pub(crate) fn missing_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. \
             See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )
    }

    pub(crate) fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. \
             See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )
    }

    pub(crate) fn permission_denied(project: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "Permission 'cloudmessaging.messages.create' denied on resource \
                 '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
            ),
        )
    }

    pub(crate) fn not_found_path() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.")
    }

    /// A request-level `INVALID_ARGUMENT` without a field.
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
            .with_fcm_error_code("INVALID_ARGUMENT")
    }

    /// `INVALID_ARGUMENT` naming the offending field, as Google's JSON parser reports it.
    pub(crate) fn field_violation(field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            description.clone(),
        );
        error.details.push(json!({
            "@type": BAD_REQUEST_TYPE,
            "fieldViolations": [{"field": field, "description": description}],
        }));
        error
    }

    pub(crate) fn invalid_registration_token() -> Self {
        Self::invalid_argument("The registration token is not a valid FCM registration token")
    }

    pub(crate) fn unregistered() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Requested entity was not found.",
        )
        .with_fcm_error_code("UNREGISTERED")
    }

    /// The error an injected failure answers, in the shape FCM uses for that status.
    pub(crate) fn injected(failure: &Failure) -> Self {
        let code = failure.status;
        match code.as_u16() {
            400 => Self::invalid_argument("Request contains an invalid argument."),
            401 => Self::invalid_credentials(),
            403 => Self::new(code, "PERMISSION_DENIED", "SenderId mismatch")
                .with_fcm_error_code("SENDER_ID_MISMATCH"),
            404 => Self::unregistered(),
            429 => Self::new(
                code,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Send requests' of service \
                 'fcm.googleapis.com'.",
            )
            .with_fcm_error_code("QUOTA_EXCEEDED"),
            500 => Self::new(code, "INTERNAL", "Internal error encountered.")
                .with_fcm_error_code("INTERNAL"),
            503 => Self::new(code, "UNAVAILABLE", "The service is currently unavailable.")
                .with_fcm_error_code("UNAVAILABLE"),
            _ => Self::new(code, "UNKNOWN", "Injected failure."),
        }
    }

    pub(crate) fn response(&self) -> FakeResponse {
        let mut error = json!({
            "code": self.code.as_u16(),
            "message": self.message,
            "status": self.status,
        });
        if !self.details.is_empty() {
            error["details"] = Value::Array(self.details.clone());
        }
        let mut response = reply::json_value(self.code, &json!({ "error": error }));
        if self.code == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
            );
        }
        response
    }
}
