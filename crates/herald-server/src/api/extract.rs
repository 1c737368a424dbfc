//! Request extractors: credentials and JSON bodies, rejecting with problem+json.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::auth::{Claims, Credential};
use crate::problem::Problem;
use crate::state::AppState;

/// A product service, authenticated by a publisher API key.
pub struct Publisher;

/// A user, authenticated by a user token in the `Authorization` header.
pub struct User(pub String);

/// A user on a stream endpoint, where browsers may also pass the token as `?token=`.
pub struct StreamUser(pub String);

/// A user token's claims on a stream endpoint (header or `?token=`), for routes that check more
/// than the user id (realtime channels read the `channels` claim).
pub struct StreamClaims(pub Claims);

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn query_token(parts: &Parts) -> Option<String> {
    let query = parts.uri.query()?;
    form_urlencoded_value(query, "token")
}

/// The first value of `name` in a query string.
pub fn form_urlencoded_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FromRequestParts<AppState> for Publisher {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Some(token) = bearer(parts) else {
            return Err(Problem::unauthorized(
                "send the publisher API key as `Authorization: Bearer <key>`",
            ));
        };
        match state.auth.check(token) {
            Credential::Publisher => Ok(Publisher),
            Credential::User(_) => Err(Problem::forbidden(
                "this route needs a publisher API key; user tokens can only read their own data under /v1/me",
            )),
            Credential::Invalid(_) => Err(Problem::unauthorized("the API key is not valid")),
        }
    }
}

fn user_from(token: Option<&str>, state: &AppState) -> Result<String, Problem> {
    claims_from(token, state).map(|claims| claims.sub)
}

fn claims_from(token: Option<&str>, state: &AppState) -> Result<Claims, Problem> {
    let Some(token) = token else {
        return Err(Problem::unauthorized(
            "send a user token as `Authorization: Bearer <token>`",
        ));
    };
    match state.auth.check(token) {
        Credential::User(claims) => Ok(claims),
        Credential::Publisher => Err(Problem::forbidden(
            "this route needs a user token; with the publisher API key use /v1/users/{user}/... instead",
        )),
        Credential::Invalid(reason) => Err(Problem::unauthorized(format!(
            "user token refused: {reason}"
        ))),
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        user_from(bearer(parts), state).map(User)
    }
}

impl FromRequestParts<AppState> for StreamUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        match bearer(parts) {
            Some(token) => user_from(Some(token), state).map(StreamUser),
            None => user_from(query_token(parts).as_deref(), state).map(StreamUser),
        }
    }
}

impl FromRequestParts<AppState> for StreamClaims {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        match bearer(parts) {
            Some(token) => claims_from(Some(token), state).map(StreamClaims),
            None => claims_from(query_token(parts).as_deref(), state).map(StreamClaims),
        }
    }
}

/// `axum::Json` whose rejections are problem+json with the parser's explanation.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

fn json_problem(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonSyntaxError(e) => {
            Problem::bad_request(format!("malformed JSON: {}", e.body_text()))
        }
        JsonRejection::JsonDataError(e) => {
            Problem::bad_request(format!("invalid request body: {}", e.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "the request body is larger than limits.max_body_bytes (default 1 MiB)",
        ),
        other => Problem::new(other.status(), "bad-request", other.body_text()),
    }
}

/// `axum::extract::Query` whose rejections are problem+json.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(e) => Err(Problem::bad_request(format!(
                "invalid query string: {}",
                e.body_text()
            ))),
        }
    }
}

/// Checks a user id or topic from a URL path.
pub fn path_name(kind: &str, value: &str) -> Result<(), Problem> {
    herald_core::names::check_name(kind, value).map_err(Problem::bad_request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_query_values() {
        assert_eq!(
            form_urlencoded_value("a=1&token=x%2By&b", "token").as_deref(),
            Some("x+y")
        );
        assert_eq!(
            form_urlencoded_value("token=a+b", "token").as_deref(),
            Some("a b")
        );
        assert_eq!(form_urlencoded_value("tok=1", "token"), None);
        assert_eq!(
            form_urlencoded_value("token=%zz%", "token").as_deref(),
            Some("%zz%")
        );
    }
}
