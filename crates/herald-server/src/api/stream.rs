//! `GET /v1/me/stream`: the caller's feed as Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use herald_core::Position;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{QueryParams, StreamUser};
use super::live::LiveSession;
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
pub struct StreamQuery {
    /// The user token, for clients that cannot set headers (browsers' EventSource).
    pub token: Option<String>,
    /// Resume after this position, for clients that cannot send `Last-Event-ID`.
    pub last_event_id: Option<String>,
}

/// Where a reconnecting client says it stands: the `Last-Event-ID` header, else the query
/// parameter; `None` when it sent neither (or sent them empty).
pub fn resume_text(headers: &HeaderMap, query: Option<&str>) -> ApiResult<Option<String>> {
    let raw = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .map_err(|_| Problem::bad_request("Last-Event-ID must be ASCII"))?,
        None => query.unwrap_or(""),
    };
    let raw = raw.trim();
    Ok((!raw.is_empty()).then(|| raw.to_owned()))
}

/// The position to resume from: the `Last-Event-ID` header, else the query parameter.
pub fn resume_position(headers: &HeaderMap, query: Option<&str>) -> ApiResult<Option<Position>> {
    resume_text(headers, query)?
        .map(|s| s.parse().map_err(Problem::bad_request))
        .transpose()
}

/// The caller's live feed (SSE).
///
/// Events: `ready` (first; carries position and unread count), `notification`, `read`,
/// `read_all`, `archived`, and `refetch` (history does not reach back to `Last-Event-ID`:
/// reload the inbox). Each event's `id` is a position to resume from.
#[utoipa::path(
    get, path = "/v1/me/stream", tag = "live", params(StreamQuery, ("Last-Event-ID" = Option<String>, Header)),
    responses((status = 200, content_type = "text/event-stream", description = "The event stream"),
              (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("user_token" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    StreamUser(user): StreamUser,
    headers: HeaderMap,
    QueryParams(q): QueryParams<StreamQuery>,
) -> ApiResult<Response> {
    let last = resume_position(&headers, q.last_event_id.as_deref())?;
    let session = LiveSession::open(&state, &user, last).await?;
    let shutdown = state.shutdown.clone();
    let events = stream::unfold(
        (session, shutdown, true),
        |(mut session, mut shutdown, first)| async move {
            let out = session.next(&mut shutdown).await?;
            let mut event = Event::default()
                .id(out.position.to_string())
                .event(out.name)
                .data(out.data);
            if first {
                event = event.retry(Duration::from_millis(1000));
            }
            Some((Ok::<_, Infallible>(event), (session, shutdown, false)))
        },
    );
    Ok(sse_response(events, &state))
}

/// An event stream as every SSE route answers it: heartbeat comments, and headers that keep
/// caches and proxies from holding events back.
pub fn sse_response<S>(events: S, state: &AppState) -> Response
where
    S: futures_util::Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let heartbeat = Duration::from_secs(state.config.stream.heartbeat_seconds);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, "no-cache".parse().expect("static header"));
    headers.insert("x-accel-buffering", "no".parse().expect("static header"));
    response
}
