//! `GET /v1/me/ws`: the caller's feed over WebSocket, plus commands (mark read, archive, ...).

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use herald_store::ChangeOutcome;
use serde::Deserialize;
use serde_json::json;

use super::extract::{QueryParams, StreamUser};
use super::live::LiveSession;
use super::stream::{StreamQuery, resume_position};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

/// Largest message a client may send.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// A client that does not take a message within this time is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The caller's live feed (WebSocket).
///
/// Server messages are JSON objects with `type` (the SSE event names) and `position`. Client
/// commands: `{"type":"mark_read","id":..}`, `{"type":"mark_all_read"}`, `{"type":"archive","id":..}`,
/// `{"type":"ping"}`; each may carry a `ref` that the `ack` or `error` answer echoes.
#[utoipa::path(
    get, path = "/v1/me/ws", tag = "live", params(StreamQuery),
    responses((status = 101, description = "Switching to WebSocket"),
              (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("user_token" = []))
)]
pub async fn websocket(
    State(state): State<AppState>,
    StreamUser(user): StreamUser,
    headers: HeaderMap,
    QueryParams(q): QueryParams<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let last = resume_position(&headers, q.last_event_id.as_deref())?;
    let session = LiveSession::open(&state, &user, last).await?;
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| run(socket, session, state, user)))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Command {
    MarkRead { id: String },
    MarkAllRead,
    Archive { id: String },
    Ping,
}

async fn run(socket: WebSocket, mut session: LiveSession, state: AppState, user: String) {
    let (mut tx, mut rx) = socket.split();
    let mut shutdown = state.shutdown.clone();
    let mut heartbeat =
        tokio::time::interval(Duration::from_secs(state.config.stream.heartbeat_seconds));
    heartbeat.tick().await;
    loop {
        let outgoing = tokio::select! {
            out = session.next(&mut shutdown) => match out {
                Some(out) => Message::Text(out.ws_json().into()),
                None => break,
            },
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Text(text))) => Message::Text(command(&state, &user, &text).await.into()),
                Some(Ok(Message::Binary(_))) => {
                    Message::Text(error_json(None, 400, "send commands as JSON text messages").into())
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            },
            _ = heartbeat.tick() => Message::Ping(Default::default()),
        };
        match tokio::time::timeout(WRITE_TIMEOUT, tx.send(outgoing)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Message::Close(None))).await;
}

fn error_json(reference: Option<&serde_json::Value>, status: u16, detail: &str) -> String {
    json!({ "type": "error", "ref": reference, "status": status, "detail": detail }).to_string()
}

async fn command(state: &AppState, user: &str, text: &str) -> String {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return error_json(None, 400, &format!("malformed JSON: {e}")),
    };
    let reference = value.get("ref").cloned();
    let command: Command = match serde_json::from_value(value) {
        Ok(c) => c,
        Err(e) => {
            let detail =
                format!("unknown command ({e}); use mark_read, mark_all_read, archive or ping");
            return error_json(reference.as_ref(), 400, &detail);
        }
    };
    let result = match &command {
        Command::MarkRead { id } => state
            .store
            .mark_read(user, id)
            .await
            .map(|o| (o, id.as_str())),
        Command::Archive { id } => state
            .store
            .archive(user, id)
            .await
            .map(|o| (o, id.as_str())),
        Command::MarkAllRead => state
            .store
            .mark_all_read(user)
            .await
            .map(|c| (ChangeOutcome::Changed(c), "")),
        Command::Ping => return json!({ "type": "pong", "ref": reference }).to_string(),
    };
    match result {
        Ok((ChangeOutcome::NotFound, id)) => error_json(
            reference.as_ref(),
            404,
            &format!("no notification {id:?} in your inbox"),
        ),
        Ok((ChangeOutcome::Unchanged { unread }, _)) => {
            json!({ "type": "ack", "ref": reference, "unread": unread }).to_string()
        }
        Ok((ChangeOutcome::Changed(c), _)) => {
            json!({ "type": "ack", "ref": reference, "unread": c.unread }).to_string()
        }
        Err(e) => {
            let problem = Problem::from(e);
            error_json(reference.as_ref(), problem.status, &problem.detail)
        }
    }
}
