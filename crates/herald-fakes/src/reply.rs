//! Small response builders shared by the fakes.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::behaviour::Failure;
use crate::server::FakeResponse;

const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=UTF-8");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=UTF-8");

/// `status` with a JSON body already serialized.
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> FakeResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// `status` with `value` serialized as the JSON body.
pub(crate) fn json_value(status: StatusCode, value: &serde_json::Value) -> FakeResponse {
    json(status, value.to_string())
}

/// `status` with a plain-text body.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> FakeResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, TEXT);
    response
}

/// `status` with no body.
pub(crate) fn empty(status: StatusCode) -> FakeResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Adds an injected failure's `Retry-After` and extra headers to `response`.
pub(crate) fn with_failure_headers(mut response: FakeResponse, failure: &Failure) -> FakeResponse {
    let headers = response.headers_mut();
    if let Some(seconds) = failure.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    for (name, value) in &failure.headers {
        headers.append(name.clone(), value.clone());
    }
    response
}
