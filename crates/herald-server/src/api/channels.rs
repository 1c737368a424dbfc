//! Realtime channels over HTTP: publish a message of any size and type (API key), and read a
//! channel over SSE or WebSocket with a user token whose `channels` claim allows it.
//!
//! Bodies are streamed: a message larger than `channels.chunk_bytes` is stored a chunk at a
//! time under an upload id and published in one step once the body is complete, so a body cut
//! short is never published, and the server holds about one chunk of it at a time.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use axum::response::Response;
use axum::response::sse::Event;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt, stream};
use herald_core::channel::{allowed, check_channel};
use herald_core::time::rfc3339_ms;
use herald_store::{ChannelBody, ChannelMessage, NewChannelMessage};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::extract::{Publisher, QueryParams, StreamClaims};
use crate::channels::as_text;
use crate::channels::delivery::{Delivery, Out};
use crate::problem::{ApiResult, Problem};
use crate::state::AppState;

/// Most messages in one batch.
pub const MAX_BATCH_MESSAGES: usize = 1000;
/// Longest `Content-Type` kept with a message.
const MAX_CONTENT_TYPE: usize = 255;
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// A WebSocket client that does not take a frame within this time is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Close code of a WebSocket subscriber cut off for falling behind its buffer.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;

#[derive(Serialize, ToSchema)]
pub struct ChannelPublished {
    pub channel: String,
    /// The message's position in its channel (from 1).
    pub position: u64,
    /// The payload's length in bytes.
    pub bytes: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelBatchPublished {
    pub channel: String,
    /// Position of the batch's first message.
    pub first: u64,
    /// Position of its last; the messages have the positions in between, in order.
    pub last: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelBatch {
    /// 1 to 1000 messages, each at most `channels.chunk_bytes` once decoded.
    pub messages: Vec<ChannelBatchMessage>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelBatchMessage {
    /// The payload: text, or base64 with `"encoding": "base64"`.
    pub data: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// Default `text/plain; charset=utf-8` for utf8, `application/octet-stream` for base64.
    pub content_type: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy, ToSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Utf8,
    Base64,
}

#[derive(Deserialize, IntoParams)]
pub struct ChannelStreamQuery {
    /// The user token, for clients that cannot set headers (browsers' EventSource, WebSocket).
    pub token: Option<String>,
    /// Resume after this position (`Last-Event-ID` wins when both are sent); `0` replays the
    /// whole history; without either, only new messages are sent.
    pub after: Option<String>,
}

fn unprocessable(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail)
}

fn too_large(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", detail)
}

fn channel_name(channel: &str) -> ApiResult<()> {
    check_channel(channel).map_err(unprocessable)
}

fn content_type(headers: &HeaderMap) -> ApiResult<String> {
    match headers.get(CONTENT_TYPE) {
        None => Ok(DEFAULT_CONTENT_TYPE.to_owned()),
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| Problem::bad_request("Content-Type must be printable ASCII"))?
                .trim();
            check_content_type(text)?;
            Ok(if text.is_empty() {
                DEFAULT_CONTENT_TYPE.to_owned()
            } else {
                text.to_owned()
            })
        }
    }
}

fn check_content_type(text: &str) -> ApiResult<()> {
    if text.len() > MAX_CONTENT_TYPE {
        return Err(unprocessable(format!(
            "the content type is {} bytes long; the limit is {MAX_CONTENT_TYPE}",
            text.len()
        )));
    }
    if text.chars().any(|c| !(' '..='~').contains(&c)) {
        return Err(unprocessable("the content type must be printable ASCII"));
    }
    Ok(())
}

fn count_published(messages: u64, bytes: u64) {
    metrics::counter!("herald_channel_messages_published_total").increment(messages);
    metrics::counter!("herald_channel_bytes_published_total").increment(bytes);
}

/// Publish one message to a channel.
///
/// The body is the payload, any bytes of any `Content-Type` (kept with the message; default
/// `application/octet-stream`), streamed up to `channels.max_message_bytes`. Answers 202 once
/// the whole message is stored; subscribers see it at once. A larger body is refused with 413,
/// and a body cut short is not published.
#[utoipa::path(
    post, path = "/v1/channels/{channel}/messages", tag = "channels",
    params(("channel" = String, Path, description = "Letters, digits and `. _ - : @`, at most 200 bytes")),
    request_body(content = String, content_type = "application/octet-stream", description = "The payload"),
    responses(
        (status = 202, body = ChannelPublished),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "The upload was cut short; nothing was published"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn publish(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<ChannelPublished>)> {
    channel_name(&channel)?;
    let content_type = content_type(&headers)?;
    let max = state.config.channels.max_message_bytes;
    let over = |bytes: &str| {
        too_large(format!(
            "the message is {bytes} bytes; channels.max_message_bytes is {max}; nothing was published"
        ))
    };
    if let Some(length) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > max
    {
        return Err(over(&length.to_string()));
    }
    let chunk_bytes = state.config.channels.chunk_bytes;
    let mut upload: Option<String> = None;
    let mut chunks: u32 = 0;
    let mut buffer = BytesMut::new();
    let mut total: u64 = 0;
    let mut data = body.into_data_stream();
    let streamed: ApiResult<()> = async {
        while let Some(frame) = data.next().await {
            let frame = frame.map_err(|e| {
                Problem::bad_request(format!(
                    "the upload was cut short ({e}); nothing was published"
                ))
            })?;
            total += frame.len() as u64;
            if total > max {
                return Err(over(&format!("more than {max}")));
            }
            buffer.extend_from_slice(&frame);
            // Every chunk but the last is full; a body that fits one chunk stays inline.
            while buffer.len() > chunk_bytes {
                let piece = buffer.split_to(chunk_bytes).freeze();
                let id = upload.get_or_insert_with(|| state.next_id());
                state
                    .store
                    .channel_put_chunk(&channel, id, chunks, piece)
                    .await?;
                chunks += 1;
            }
        }
        if let Some(id) = &upload {
            let last = std::mem::take(&mut buffer).freeze();
            state
                .store
                .channel_put_chunk(&channel, id, chunks, last)
                .await?;
            chunks += 1;
        }
        Ok(())
    }
    .await;
    let body = match (&upload, streamed) {
        (_, Err(problem)) => {
            discard(&state, &channel, upload.as_deref(), chunks).await;
            return Err(problem);
        }
        (None, Ok(())) => ChannelBody::Inline(buffer.freeze()),
        (Some(id), Ok(())) => ChannelBody::Chunked {
            upload: id.clone(),
            chunks,
        },
    };
    let message = NewChannelMessage {
        content_type,
        bytes: total,
        body,
    };
    let now = herald_core::time::now_ms();
    let positions = match state
        .store
        .channel_publish(&channel, vec![message], now)
        .await
    {
        Ok(positions) => positions,
        Err(e) => {
            discard(&state, &channel, upload.as_deref(), chunks).await;
            return Err(e.into());
        }
    };
    let position = positions
        .first()
        .copied()
        .ok_or_else(|| Problem::internal("the store gave no position for the message"))?;
    count_published(1, total);
    Ok((
        StatusCode::ACCEPTED,
        Json(ChannelPublished {
            channel,
            position,
            bytes: total,
        }),
    ))
}

async fn discard(state: &AppState, channel: &str, upload: Option<&str>, chunks: u32) {
    if let Some(upload) = upload
        && let Err(e) = state.store.channel_discard(channel, upload, chunks).await
    {
        // Unpublished uploads are swept after `upload_grace_ms` anyway.
        tracing::warn!(%channel, error = %e, "cannot discard an unfinished upload");
    }
}

/// Reads a whole body of at most `limit` bytes.
async fn collect_limited(body: Body, headers: &HeaderMap, limit: usize) -> ApiResult<Bytes> {
    let over = || {
        too_large(format!(
            "the request body is larger than channels.max_batch_bytes ({limit}); send fewer messages per batch"
        ))
    };
    if headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > limit as u64)
    {
        return Err(over());
    }
    let mut data = body.into_data_stream();
    let mut buffer = BytesMut::new();
    while let Some(frame) = data.next().await {
        let frame = frame
            .map_err(|e| Problem::bad_request(format!("the request body was cut short ({e})")))?;
        if buffer.len() + frame.len() > limit {
            return Err(over());
        }
        buffer.extend_from_slice(&frame);
    }
    Ok(buffer.freeze())
}

/// Publish several small messages to a channel at once.
///
/// JSON `{"messages": [{"data": "text"}, {"data": "<base64>", "encoding": "base64",
/// "content_type": "image/png"}]}`: 1 to 1000 messages, each at most `channels.chunk_bytes`
/// once decoded, the body at most `channels.max_batch_bytes`. They take consecutive positions,
/// all or none.
#[utoipa::path(
    post, path = "/v1/channels/{channel}/messages/batch", tag = "channels",
    params(("channel" = String, Path, description = "Letters, digits and `. _ - : @`, at most 200 bytes")),
    request_body = ChannelBatch,
    responses(
        (status = 202, body = ChannelBatchPublished),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn publish_batch(
    State(state): State<AppState>,
    _publisher: Publisher,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<ChannelBatchPublished>)> {
    channel_name(&channel)?;
    let raw = collect_limited(body, &headers, state.config.channels.max_batch_bytes).await?;
    let batch: ChannelBatch = serde_json::from_slice(&raw)
        .map_err(|e| Problem::bad_request(format!("invalid batch: {e}")))?;
    let count = batch.messages.len();
    if count == 0 || count > MAX_BATCH_MESSAGES {
        return Err(unprocessable(format!(
            "a batch holds 1 to {MAX_BATCH_MESSAGES} messages, not {count}"
        )));
    }
    let chunk_bytes = state.config.channels.chunk_bytes;
    let mut messages = Vec::with_capacity(count);
    let mut total = 0u64;
    for (i, m) in batch.messages.into_iter().enumerate() {
        let (data, default_type) = match m.encoding {
            Encoding::Utf8 => (Bytes::from(m.data.into_bytes()), TEXT_CONTENT_TYPE),
            Encoding::Base64 => (
                Bytes::from(BASE64.decode(m.data.as_bytes()).map_err(|e| {
                    unprocessable(format!("messages[{i}].data is not valid base64: {e}"))
                })?),
                DEFAULT_CONTENT_TYPE,
            ),
        };
        if data.len() > chunk_bytes {
            return Err(too_large(format!(
                "messages[{i}] is {} bytes; batched messages are at most channels.chunk_bytes ({chunk_bytes}); publish larger ones alone",
                data.len()
            )));
        }
        let content_type = match m.content_type {
            Some(t) if !t.trim().is_empty() => {
                check_content_type(t.trim()).map_err(|p| {
                    unprocessable(format!("messages[{i}].content_type: {}", p.detail))
                })?;
                t.trim().to_owned()
            }
            _ => default_type.to_owned(),
        };
        total += data.len() as u64;
        messages.push(NewChannelMessage {
            content_type,
            bytes: data.len() as u64,
            body: ChannelBody::Inline(data),
        });
    }
    let now = herald_core::time::now_ms();
    let positions = state.store.channel_publish(&channel, messages, now).await?;
    let (Some(&first), Some(&last)) = (positions.first(), positions.last()) else {
        return Err(Problem::internal(
            "the store gave no positions for the batch",
        ));
    };
    count_published(count as u64, total);
    Ok((
        StatusCode::ACCEPTED,
        Json(ChannelBatchPublished {
            channel,
            first,
            last,
        }),
    ))
}

/// The position to resume after: `Last-Event-ID`, else `?after=`; `None` for only new ones.
fn resume_after(headers: &HeaderMap, query: Option<&str>) -> ApiResult<Option<u64>> {
    super::stream::resume_text(headers, query)?
        .map(|s| {
            s.parse().map_err(|_| {
                Problem::bad_request(format!(
                    "the position to resume after must be a whole number, not {s:?}"
                ))
            })
        })
        .transpose()
}

/// Checks the channel name and the token's `channels` claim, then opens the delivery.
async fn open(
    state: &AppState,
    claims: &crate::auth::Claims,
    channel: &str,
    after: Option<u64>,
) -> ApiResult<Delivery> {
    channel_name(channel)?;
    if !allowed(&claims.channels, channel) {
        return Err(Problem::forbidden(format!(
            "this token may not read channel {channel:?}; its channels claim must name it or a pattern matching it (herald token USER --channel PATTERN)"
        )));
    }
    Delivery::open(state, channel, after).await
}

/// The common fields of a message's JSON forms.
fn message_fields(message: &ChannelMessage) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    fields.insert("position".into(), json!(message.position));
    fields.insert("content_type".into(), json!(message.content_type));
    fields.insert("bytes".into(), json!(message.bytes));
    fields.insert(
        "published_at".into(),
        json!(rfc3339_ms(message.published_ms)),
    );
    fields
}

fn sse_event(out: Out) -> Event {
    match out {
        Out::Message { message, data } => {
            // Rendered once per message, whatever the number of subscribers.
            let rendered = message.sse_data(|m| {
                let mut fields = message_fields(m);
                match as_text(&m.content_type, &data) {
                    Some(text) => {
                        fields.insert("encoding".into(), json!("utf8"));
                        fields.insert("data".into(), json!(text));
                    }
                    None => {
                        fields.insert("encoding".into(), json!("base64"));
                        fields.insert("data".into(), json!(BASE64.encode(&data)));
                    }
                }
                Value::Object(fields).to_string()
            });
            Event::default()
                .event("message")
                .id(message.position.to_string())
                .data(rendered)
        }
        Out::Chunk {
            message,
            index,
            chunks,
            data,
        } => {
            let mut fields = message_fields(&message);
            fields.insert("index".into(), json!(index));
            fields.insert("chunks".into(), json!(chunks));
            fields.insert("encoding".into(), json!("base64"));
            fields.insert("data".into(), json!(BASE64.encode(&data)));
            let event = Event::default()
                .event("chunk")
                .data(Value::Object(fields).to_string());
            // Only a whole message moves the client's resume position.
            if index + 1 == chunks {
                event.id(message.position.to_string())
            } else {
                event
            }
        }
        Out::Gap { from, to, reset } => {
            let mut data = json!({ "from": from, "to": to });
            if reset {
                data["reset"] = json!(true);
            }
            Event::default()
                .event("gap")
                .id(if reset { 0 } else { to }.to_string())
                .data(data.to_string())
        }
        Out::Cutoff { resume_after } => Event::default()
            .event("cutoff")
            .data(json!({ "resume_after": resume_after }).to_string()),
    }
}

/// Read a channel as Server-Sent Events.
///
/// Needs a user token (header or `?token=`) whose `channels` claim allows the channel. Starts
/// after `Last-Event-ID` or `?after=` (`0`: the whole history), else with new messages only.
/// Events: `message` (`id` = position; payload in `data`, `encoding` `utf8` for valid UTF-8
/// text types, else `base64`), `chunk` (a message larger than `channels.chunk_bytes`, one event
/// per chunk, base64; `id` only on the last), `gap` (`from`..=`to` are no longer in history;
/// with `reset`, the channel was forgotten and its positions restarted), `cutoff` (the
/// subscriber fell behind its buffer: reconnect with `after` = `resume_after`).
#[utoipa::path(
    get, path = "/v1/channels/{channel}/stream", tag = "channels",
    params(("channel" = String, Path), ChannelStreamQuery, ("Last-Event-ID" = Option<String>, Header)),
    responses((status = 200, content_type = "text/event-stream", description = "The event stream"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json", description = "The token may not read this channel"),
              (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("user_token" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    StreamClaims(claims): StreamClaims,
    Path(channel): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<ChannelStreamQuery>,
) -> ApiResult<Response> {
    let after = resume_after(&headers, q.after.as_deref())?;
    let delivery = open(&state, &claims, &channel, after).await?;
    let events = stream::unfold(delivery, |mut delivery| async move {
        let out = delivery.next().await?;
        Some((Ok::<_, Infallible>(sse_event(out)), delivery))
    });
    Ok(super::stream::sse_response(events, &state))
}

/// Read a channel over WebSocket.
///
/// Same token, `after` and history as the SSE stream. A text message whose payload is valid
/// UTF-8 text and stored whole arrives as one text frame `{"type":"message",...,"data":".."}`;
/// any other as a text frame `{"type":"message",...,"chunks":c}` followed by exactly `c` binary
/// frames, to be joined. `{"type":"gap","from":a,"to":b}` as on SSE. A subscriber that falls
/// behind its buffer is closed with code 4008, reason `slow consumer; resume after N`.
#[utoipa::path(
    get, path = "/v1/channels/{channel}/ws", tag = "channels",
    params(("channel" = String, Path), ChannelStreamQuery),
    responses((status = 101, description = "Switching to WebSocket"),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json", description = "The token may not read this channel"),
              (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("user_token" = []))
)]
pub async fn websocket(
    State(state): State<AppState>,
    StreamClaims(claims): StreamClaims,
    Path(channel): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<ChannelStreamQuery>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let after = resume_after(&headers, q.after.as_deref())?;
    let delivery = open(&state, &claims, &channel, after).await?;
    let heartbeat = Duration::from_secs(state.config.stream.heartbeat_seconds);
    Ok(upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| run_websocket(socket, delivery, heartbeat)))
}

fn ws_header(message: &ChannelMessage, chunks: u32) -> String {
    let mut fields = message_fields(message);
    fields.insert("type".into(), json!("message"));
    fields.insert("chunks".into(), json!(chunks));
    Value::Object(fields).to_string()
}

async fn run_websocket(socket: WebSocket, mut delivery: Delivery, heartbeat: Duration) {
    let (mut tx, mut rx) = socket.split();
    // Client frames are ignored but read (pings are answered); the read side only tells us
    // when the client goes away.
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
    let _reader = AbortOnDrop(tokio::spawn(async move {
        while let Some(Ok(frame)) = rx.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
        let _ = gone_tx.send(());
    }));
    let mut ping = tokio::time::interval(heartbeat);
    ping.tick().await;
    loop {
        let out = tokio::select! {
            biased;
            _ = &mut gone => return,
            out = delivery.next() => out,
            _ = ping.tick() => {
                if !send(&mut tx, Message::Ping(Bytes::new())).await {
                    return;
                }
                continue;
            }
        };
        let Some(out) = out else { break };
        // Frames ready now go out in one write: with a burst, one flush (and one syscall)
        // carries many messages instead of one each. `Delivery::next` is cancel-safe, so
        // asking it without waiting loses nothing.
        let mut fed = match feed(&mut tx, out).await {
            Fed::Frames(bytes) => bytes,
            Fed::Closed => return,
        };
        let mut ended = false;
        while fed < FLUSH_BYTES {
            match delivery.next().now_or_never() {
                Some(Some(out)) => match feed(&mut tx, out).await {
                    Fed::Frames(bytes) => fed += bytes,
                    Fed::Closed => return,
                },
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        if !matches!(
            tokio::time::timeout(WRITE_TIMEOUT, tx.flush()).await,
            Ok(Ok(()))
        ) || ended
        {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Message::Close(None))).await;
}

/// Bytes of frames written before they are flushed together.
const FLUSH_BYTES: usize = 256 * 1024;

enum Fed {
    /// Queued for the next flush: about this many bytes.
    Frames(usize),
    /// The connection is done (cut off, or the client is gone).
    Closed,
}

/// Queues the frames of one delivery step without flushing them.
async fn feed(tx: &mut futures_util::stream::SplitSink<WebSocket, Message>, out: Out) -> Fed {
    // A delivery step is one text frame, one binary frame, or a header and its first chunk.
    let (header, data): (Option<Utf8Bytes>, Option<Bytes>) = match out {
        Out::Message { message, data } => match as_text(&message.content_type, &data) {
            Some(text) => (
                Some(message.first_frame(|m| {
                    let mut fields = message_fields(m);
                    fields.insert("type".into(), json!("message"));
                    fields.insert("data".into(), json!(text));
                    Value::Object(fields).to_string()
                })),
                None,
            ),
            None => (Some(message.first_frame(|m| ws_header(m, 1))), Some(data)),
        },
        Out::Chunk {
            message,
            index,
            chunks,
            data,
        } => (
            (index == 0).then(|| message.first_frame(|m| ws_header(m, chunks))),
            Some(data),
        ),
        Out::Gap { from, to, reset } => {
            let mut gap = json!({ "type": "gap", "from": from, "to": to });
            if reset {
                gap["reset"] = json!(true);
            }
            (Some(gap.to_string().into()), None)
        }
        Out::Cutoff { resume_after } => {
            let close = CloseFrame {
                code: CLOSE_SLOW_CONSUMER,
                reason: format!("slow consumer; resume after {resume_after}").into(),
            };
            let _ = send(tx, Message::Close(Some(close))).await;
            return Fed::Closed;
        }
    };
    let bytes = header.as_ref().map_or(0, |h| h.len()) + data.as_ref().map_or(0, Bytes::len);
    let frames = header
        .map(Message::Text)
        .into_iter()
        .chain(data.map(Message::Binary));
    for frame in frames {
        if !matches!(
            tokio::time::timeout(WRITE_TIMEOUT, tx.feed(frame)).await,
            Ok(Ok(()))
        ) {
            return Fed::Closed;
        }
    }
    Fed::Frames(bytes)
}

/// Ends a task when the connection that started it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn send(
    tx: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    frame: Message,
) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, tx.send(frame)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_prefers_last_event_id() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_after(&headers, None).unwrap(), None);
        assert_eq!(resume_after(&headers, Some("0")).unwrap(), Some(0));
        headers.insert("last-event-id", "7".parse().unwrap());
        assert_eq!(resume_after(&headers, Some("0")).unwrap(), Some(7));
        headers.insert("last-event-id", "x".parse().unwrap());
        assert!(resume_after(&headers, None).is_err());
    }
}
