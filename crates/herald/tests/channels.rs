//! Realtime channels on both engines, over real HTTP, SSE and WebSocket: publish (single,
//! batch, chunked), subscribe with channel claims, resume and gaps, limits (oversize and
//! truncated uploads publish nothing), slow subscribers cut off and resuming, and two nodes on
//! one Redis.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::engines::Engine;
use common::sse::{SseClient, SseEvent};
use common::*;
use futures_util::StreamExt;
use herald_testkit::{RedisServer, ServerOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

struct Env {
    server: Server,
    _redis: Option<RedisServer>,
}

async fn start(engine: Engine, env: &[(&str, &str)]) -> Env {
    let redis = match engine {
        Engine::Embedded => None,
        Engine::Redis => Some(RedisServer::start_with(
            ServerOptions::default().append_only(false),
        )),
    };
    let url = redis.as_ref().map(RedisServer::url);
    let mut all: Vec<(&str, &str)> = env.to_vec();
    if let Some(url) = &url {
        all.push(("HERALD_REDIS_URL", url));
        all.push(("HERALD_NODE_ID", "node-a"));
    }
    Env {
        server: Server::start_with(&all).await,
        _redis: redis,
    }
}

on_both_engines!(
    messages_reach_sse_and_websocket_subscribers,
    resume_gets_exactly_what_was_missed,
    a_resume_older_than_history_gets_a_gap,
    tokens_and_names_are_checked,
    oversize_and_truncated_uploads_publish_nothing,
    a_large_message_arrives_whole_in_chunks,
    a_slow_subscriber_is_cut_off_and_resumes_without_loss,
    a_slow_sse_subscriber_gets_a_cutoff_event,
);

fn token(patterns: &[&str]) -> String {
    let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
    herald_server::auth::issue_channel_token(TOKEN_SECRET, "viewer", 3600, &patterns).unwrap()
}

async fn publish(server: &Server, channel: &str, content_type: &str, body: Vec<u8>) -> Value {
    let r = server
        .http
        .post(server.url(&format!("/v1/channels/{channel}/messages")))
        .bearer_auth(API_KEY)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, json) = status_json(r).await;
    assert_eq!(status, 202, "{json}");
    json
}

async fn publish_text(server: &Server, channel: &str, text: &str) -> u64 {
    publish(server, channel, "text/plain", text.as_bytes().to_vec()).await["position"]
        .as_u64()
        .unwrap()
}

async fn batch(server: &Server, channel: &str, messages: Value) -> (u16, Value) {
    server
        .post_as(
            &format!("/v1/channels/{channel}/messages/batch"),
            API_KEY,
            Some(json!({ "messages": messages })),
        )
        .await
}

async fn open_sse(server: &Server, channel: &str, token: &str, query: &str) -> SseClient {
    SseClient::connect(
        &server.url(&format!("/v1/channels/{channel}/stream{query}")),
        Some(token),
        None,
    )
    .await
}

/// A whole message off SSE: (position, content type, payload), chunks joined.
#[derive(Debug, PartialEq)]
struct Got {
    position: u64,
    content_type: String,
    data: Vec<u8>,
}

fn payload(e: &Value) -> Vec<u8> {
    let data = e["data"].as_str().unwrap();
    match e["encoding"].as_str().unwrap() {
        "utf8" => data.as_bytes().to_vec(),
        "base64" => BASE64.decode(data).unwrap(),
        other => panic!("unknown encoding {other}"),
    }
}

/// The next message off SSE (joining chunks), or the gap/cutoff event that came instead.
async fn sse_next(sse: &mut SseClient) -> Result<Got, SseEvent> {
    let mut joined = Vec::new();
    loop {
        let e = sse.next_event(WAIT).await;
        match e.event.as_str() {
            "message" => {
                let j = e.json();
                assert_eq!(e.id, Some(j["position"].to_string()));
                assert_eq!(j["bytes"].as_u64().unwrap() as usize, payload(&j).len());
                return Ok(Got {
                    position: j["position"].as_u64().unwrap(),
                    content_type: j["content_type"].as_str().unwrap().to_owned(),
                    data: payload(&j),
                });
            }
            "chunk" => {
                let j = e.json();
                let index = j["index"].as_u64().unwrap();
                let chunks = j["chunks"].as_u64().unwrap();
                assert_eq!(index as usize, joined.len(), "chunks in order");
                joined.push(payload(&j));
                if index + 1 == chunks {
                    assert_eq!(
                        e.id,
                        Some(j["position"].to_string()),
                        "id on the last chunk"
                    );
                    let data = joined.concat();
                    assert_eq!(j["bytes"].as_u64().unwrap() as usize, data.len());
                    return Ok(Got {
                        position: j["position"].as_u64().unwrap(),
                        content_type: j["content_type"].as_str().unwrap().to_owned(),
                        data,
                    });
                }
                assert_eq!(e.id, None, "no id before the last chunk");
            }
            _ => return Err(e),
        }
    }
}

async fn sse_message(sse: &mut SseClient) -> Got {
    sse_next(sse)
        .await
        .unwrap_or_else(|e| panic!("expected a message, got {e:?}"))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(server: &Server, channel: &str, token: &str, query: &str) -> Ws {
    let url = server.ws_url(&format!("/v1/channels/{channel}/ws?token={token}{query}"));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// What came off a WebSocket.
#[derive(Debug)]
enum WsGot {
    Message(Got),
    Text(Got),
    Other(Value),
    Closed(u16, String),
}

async fn ws_frame<S>(ws: &mut S) -> Message
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return m,
            other => panic!("websocket ended: {other:?}"),
        }
    }
}

async fn ws_next<S>(ws: &mut S) -> WsGot
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let text = match ws_frame(ws).await {
        Message::Text(t) => t,
        Message::Close(Some(frame)) => {
            return WsGot::Closed(frame.code.into(), frame.reason.to_string());
        }
        other => panic!("expected a text frame, got {other:?}"),
    };
    let j: Value = serde_json::from_str(&text).unwrap();
    if j["type"] != "message" {
        return WsGot::Other(j);
    }
    let position = j["position"].as_u64().unwrap();
    let content_type = j["content_type"].as_str().unwrap().to_owned();
    if let Some(data) = j["data"].as_str() {
        return WsGot::Text(Got {
            position,
            content_type,
            data: data.as_bytes().to_vec(),
        });
    }
    let chunks = j["chunks"].as_u64().unwrap();
    let mut data = Vec::new();
    for _ in 0..chunks {
        match ws_frame(ws).await {
            Message::Binary(b) => data.extend_from_slice(&b),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
    assert_eq!(j["bytes"].as_u64().unwrap() as usize, data.len());
    WsGot::Message(Got {
        position,
        content_type,
        data,
    })
}

/// Any message off a WebSocket, text or binary.
async fn ws_message<S>(ws: &mut S) -> Got
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    match ws_next(ws).await {
        WsGot::Message(g) | WsGot::Text(g) => g,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn messages_reach_sse_and_websocket_subscribers(engine: Engine) {
    let env = start(engine, &[]).await;
    let server = &env.server;
    let viewer = token(&["session:1"]);
    let mut sse = open_sse(server, "session:1", &viewer, "").await;
    let mut ws = open_ws(server, "session:1", &viewer, "").await;

    assert_eq!(publish_text(server, "session:1", "log line ✓").await, 1);
    let png = vec![0x89, b'P', b'N', b'G', 0, 0xff, 1, 2];
    let r = publish(server, "session:1", "image/png", png.clone()).await;
    assert_eq!(
        r,
        json!({"channel": "session:1", "position": 2, "bytes": 8})
    );
    publish(
        server,
        "session:1",
        "application/json",
        br#"{"a":1}"#.to_vec(),
    )
    .await;
    publish(server, "session:1", "text/plain", vec![b'a', 0xff]).await;

    let e = sse.next_event(WAIT).await;
    assert_eq!((e.event.as_str(), e.id.as_deref()), ("message", Some("1")));
    let j = e.json();
    assert_eq!(
        (&j["encoding"], &j["data"], &j["content_type"], &j["bytes"]),
        (
            &json!("utf8"),
            &json!("log line ✓"),
            &json!("text/plain"),
            &json!(12)
        )
    );
    assert!(j["published_at"].as_str().unwrap().ends_with('Z'));
    let e = sse.next_event(WAIT).await.json();
    assert_eq!(
        (&e["encoding"], e["data"].as_str().unwrap()),
        (&json!("base64"), BASE64.encode(&png).as_str())
    );
    let e = sse.next_event(WAIT).await.json();
    assert_eq!(
        (&e["encoding"], &e["data"]),
        (&json!("utf8"), &json!(r#"{"a":1}"#))
    );
    let e = sse.next_event(WAIT).await.json();
    assert_eq!(e["encoding"], "base64", "invalid UTF-8 text goes as base64");

    // WebSocket: text as one text frame, anything else as a header and binary frames.
    match ws_next(&mut ws).await {
        WsGot::Text(g) => assert_eq!((g.position, g.data), (1, "log line ✓".as_bytes().to_vec())),
        other => panic!("{other:?}"),
    }
    match ws_next(&mut ws).await {
        WsGot::Message(g) => assert_eq!(
            (g.position, g.content_type.as_str(), g.data),
            (2, "image/png", png.clone())
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(ws_next(&mut ws).await, WsGot::Text(g) if g.position == 3));
    assert!(matches!(ws_next(&mut ws).await, WsGot::Message(g) if g.data == [b'a', 0xff]));

    // A batch takes consecutive positions.
    let (status, body) = batch(
        server,
        "session:1",
        json!([
            {"data": "first"},
            {"data": BASE64.encode([1, 2, 3]), "encoding": "base64", "content_type": "image/jpeg"},
            {"data": "third", "content_type": "text/x-log"},
        ]),
    )
    .await;
    assert_eq!(
        (status, body),
        (202, json!({"channel": "session:1", "first": 5, "last": 7}))
    );
    let got = [
        sse_message(&mut sse).await,
        sse_message(&mut sse).await,
        sse_message(&mut sse).await,
    ];
    assert_eq!(
        got,
        [
            Got {
                position: 5,
                content_type: "text/plain; charset=utf-8".into(),
                data: b"first".to_vec()
            },
            Got {
                position: 6,
                content_type: "image/jpeg".into(),
                data: vec![1, 2, 3]
            },
            Got {
                position: 7,
                content_type: "text/x-log".into(),
                data: b"third".to_vec()
            },
        ]
    );
    for position in 5..=7 {
        assert_eq!(ws_message(&mut ws).await.position, position);
    }

    // Bad batches.
    let (status, _) = batch(server, "session:1", json!([])).await;
    assert_eq!(status, 422);
    let (status, body) = batch(
        server,
        "session:1",
        json!([{"data": "!!", "encoding": "base64"}]),
    )
    .await;
    assert_eq!(
        (status, body["detail"].as_str().unwrap().contains("base64")),
        (422, true)
    );
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"data": "x"})).collect();
    assert_eq!(batch(server, "session:1", json!(too_many)).await.0, 422);
    let big = "x".repeat(262_145);
    assert_eq!(
        batch(server, "session:1", json!([{"data": big}])).await.0,
        413
    );
    sse.assert_quiet(Duration::from_millis(200)).await;
    ws.close(None).await.unwrap();
}

async fn resume_gets_exactly_what_was_missed(engine: Engine) {
    let env = start(engine, &[]).await;
    let server = &env.server;
    let viewer = token(&["build:7"]);
    for i in 1..=3 {
        publish_text(server, "build:7", &format!("m{i}")).await;
    }
    // Without a position: only new messages.
    let mut live = open_sse(server, "build:7", &viewer, "").await;
    let mut all = open_sse(server, "build:7", &viewer, "?after=0").await;
    for i in 1..=3 {
        assert_eq!(
            sse_message(&mut all).await.data,
            format!("m{i}").into_bytes()
        );
    }
    publish_text(server, "build:7", "m4").await;
    assert_eq!(sse_message(&mut live).await.position, 4);
    assert_eq!(sse_message(&mut all).await.position, 4);
    let last = all.last_id.clone().unwrap();
    drop(all);
    live.assert_quiet(Duration::from_millis(100)).await;

    publish_text(server, "build:7", "m5").await;
    publish_text(server, "build:7", "m6").await;
    // Last-Event-ID wins over ?after=.
    let mut back = SseClient::connect(
        &server.url("/v1/channels/build:7/stream?after=0"),
        Some(&viewer),
        Some(&last),
    )
    .await;
    assert_eq!(sse_message(&mut back).await.data, b"m5");
    assert_eq!(sse_message(&mut back).await.data, b"m6");
    back.assert_quiet(Duration::from_millis(300)).await;

    let mut ws = open_ws(server, "build:7", &viewer, "&after=5").await;
    assert_eq!(ws_message(&mut ws).await.data, b"m6");
    publish_text(server, "build:7", "m7").await;
    assert_eq!(ws_message(&mut ws).await.position, 7);
    assert_eq!(sse_message(&mut back).await.position, 7);
}

async fn a_resume_older_than_history_gets_a_gap(engine: Engine) {
    let env = start(engine, &[("HERALD_CHANNELS__HISTORY_MESSAGES", "3")]).await;
    let server = &env.server;
    let viewer = token(&["logs"]);
    for i in 1..=6 {
        publish_text(server, "logs", &format!("m{i}")).await;
    }
    let mut sse = open_sse(server, "logs", &viewer, "?after=1").await;
    let gap = sse.next_event(WAIT).await;
    assert_eq!((gap.event.as_str(), gap.id.as_deref()), ("gap", Some("3")));
    assert_eq!(gap.json(), json!({"from": 2, "to": 3}));
    for position in 4..=6 {
        assert_eq!(sse_message(&mut sse).await.position, position);
    }
    let mut ws = open_ws(server, "logs", &viewer, "&after=0").await;
    match ws_next(&mut ws).await {
        WsGot::Other(gap) => assert_eq!(gap, json!({"type": "gap", "from": 1, "to": 3})),
        other => panic!("expected a gap, got {other:?}"),
    }
    assert_eq!(ws_message(&mut ws).await.position, 4);

    // A position the channel never reached (it was forgotten and started over): a reset.
    let mut sse = open_sse(server, "logs", &viewer, "?after=40").await;
    let reset = sse.next_event(WAIT).await;
    assert_eq!(
        (reset.event.as_str(), reset.id.as_deref()),
        ("gap", Some("0"))
    );
    assert_eq!(reset.json(), json!({"from": 1, "to": 40, "reset": true}));
    assert!(matches!(sse_next(&mut sse).await, Err(e) if e.event == "gap"));
    assert_eq!(sse_message(&mut sse).await.position, 4);
}

async fn tokens_and_names_are_checked(engine: Engine) {
    let env = start(engine, &[]).await;
    let server = &env.server;
    let stream = |channel: &str| server.url(&format!("/v1/channels/{channel}/stream"));
    let get = |url: String, bearer: Option<String>| {
        let mut request = server.http.get(url);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    assert_problem(get(stream("session:1234"), None).await.unwrap(), 401).await;
    let plain = server.token("viewer");
    let body = assert_problem(get(stream("session:1234"), Some(plain)).await.unwrap(), 403).await;
    assert!(
        body["detail"].as_str().unwrap().contains("session:1234"),
        "{body}"
    );
    let other = token(&["session:99"]);
    assert_problem(
        get(stream("session:1234"), Some(other.clone()))
            .await
            .unwrap(),
        403,
    )
    .await;
    assert_problem(
        get(stream("session:1234"), Some(API_KEY.into()))
            .await
            .unwrap(),
        403,
    )
    .await;
    assert_problem(
        get(stream("session:1234"), Some("not-a-token".into()))
            .await
            .unwrap(),
        401,
    )
    .await;
    let ws_refused = tokio_tungstenite::connect_async(
        server.ws_url(&format!("/v1/channels/session:1234/ws?token={other}")),
    )
    .await;
    assert!(ws_refused.is_err(), "the upgrade is refused");

    // A pattern: everything under the prefix.
    let pattern = token(&["session:12*"]);
    let mut sse = SseClient::connect(&stream("session:1234"), Some(&pattern), None).await;
    let mut by_query = SseClient::connect(
        &server.url(&format!("/v1/channels/session:12/stream?token={pattern}")),
        None,
        None,
    )
    .await;
    publish_text(server, "session:1234", "allowed").await;
    publish_text(server, "session:12", "allowed too").await;
    assert_eq!(sse_message(&mut sse).await.data, b"allowed");
    assert_eq!(sse_message(&mut by_query).await.data, b"allowed too");
    assert_problem(
        get(stream("session:1"), Some(pattern.clone()))
            .await
            .unwrap(),
        403,
    )
    .await;

    // The routes are described.
    let (_, doc) = server.get_as("/v1/openapi.json", API_KEY).await;
    for (path, method) in [
        ("/v1/channels/{channel}/messages", "post"),
        ("/v1/channels/{channel}/messages/batch", "post"),
        ("/v1/channels/{channel}/stream", "get"),
        ("/v1/channels/{channel}/ws", "get"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"].is_object(),
            "{path}"
        );
    }

    // Names.
    let long = "x".repeat(201);
    for bad in ["a*b", "a%20b", long.as_str()] {
        let r = server
            .http
            .post(server.url(&format!("/v1/channels/{bad}/messages")))
            .bearer_auth(API_KEY)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_problem(r, 422).await;
        assert_problem(get(stream(bad), Some(token(&["*"]))).await.unwrap(), 422).await;
    }
    // Publishing needs the API key.
    let r = server
        .http
        .post(server.url("/v1/channels/session:1234/messages"))
        .bearer_auth(&pattern)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_problem(r, 403).await;
    let r = server
        .http
        .post(server.url("/v1/channels/session:1234/messages"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401).await;
}

/// Sends a raw HTTP/1.1 request head and some body bytes; returns the connection.
async fn raw_request(server: &Server, head: &str, body: &[u8]) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    tcp.flush().await.unwrap();
    tcp
}

/// Reads a response until the server closes or `within` passes; returns its status line.
async fn raw_response(mut tcp: tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) if !out.is_empty() => break,
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn oversize_and_truncated_uploads_publish_nothing(engine: Engine) {
    let env = start(engine, &[("HERALD_CHANNELS__MAX_MESSAGE_BYTES", "1000000")]).await;
    let server = &env.server;
    let path = "/v1/channels/uploads/messages";

    // Refused on its Content-Length, before the body is read.
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {API_KEY}\r\ncontent-length: 1000001\r\n\r\n"
    );
    let answer = raw_response(raw_request(server, &head, b"").await).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("max_message_bytes"), "{answer}");

    // Refused while streaming (no Content-Length): 1 000 001 bytes in chunks of 100 000.
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {API_KEY}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let mut body = Vec::new();
    for _ in 0..10 {
        body.extend_from_slice(format!("{:x}\r\n", 100_000).as_bytes());
        body.extend_from_slice(&[b'z'; 100_000]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"1\r\nz\r\n");
    let answer = raw_response(raw_request(server, &head, &body).await).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Cut short: 400 000 of 600 000 announced bytes, then the client goes away.
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {API_KEY}\r\ncontent-length: 600000\r\n\r\n"
    );
    let tcp = raw_request(server, &head, &vec![b'y'; 400_000]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Nothing of those was published: the first position is the next message's.
    assert_eq!(publish_text(server, "uploads", "marker").await, 1);
    let viewer = token(&["uploads"]);
    let mut sse = open_sse(server, "uploads", &viewer, "?after=0").await;
    assert_eq!(sse_message(&mut sse).await.data, b"marker");
    sse.assert_quiet(Duration::from_millis(300)).await;
    // Exactly at the limit is fine.
    let r = publish(
        server,
        "uploads",
        "application/octet-stream",
        vec![7; 1_000_000],
    )
    .await;
    assert_eq!(
        (r["position"].as_u64(), r["bytes"].as_u64()),
        (Some(2), Some(1_000_000))
    );
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn a_large_message_arrives_whole_in_chunks(engine: Engine) {
    let env = start(engine, &[("HERALD_CHANNELS__MAX_MESSAGE_BYTES", "8000000")]).await;
    let server = &env.server;
    let viewer = token(&["session:big"]);
    let mut sse = open_sse(server, "session:big", &viewer, "").await;
    let mut ws = open_ws(server, "session:big", &viewer, "").await;
    let big = pseudo_random(3_000_000, 7);
    let r = publish(server, "session:big", "image/png", big.clone()).await;
    assert_eq!(
        (r["position"].as_u64(), r["bytes"].as_u64()),
        (Some(1), Some(3_000_000))
    );
    publish_text(server, "session:big", "after the big one").await;

    let got = sse_message(&mut sse).await;
    assert_eq!((got.position, got.content_type.as_str()), (1, "image/png"));
    assert!(got.data == big, "SSE payload differs");
    assert_eq!(sse_message(&mut sse).await.data, b"after the big one");

    let j = match ws_frame(&mut ws).await {
        Message::Text(t) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (j["chunks"].as_u64(), j["bytes"].as_u64()),
        (Some(12), Some(3_000_000))
    );
    let mut joined = Vec::new();
    for _ in 0..12 {
        match ws_frame(&mut ws).await {
            Message::Binary(b) => joined.extend_from_slice(&b),
            other => panic!("{other:?}"),
        }
    }
    assert!(joined == big, "WebSocket payload differs");
    assert_eq!(ws_message(&mut ws).await.position, 2);

    // From history too, and a large text message as chunks.
    let text = "line of log\n".repeat(50_000);
    publish(
        server,
        "session:big",
        "text/plain",
        text.clone().into_bytes(),
    )
    .await;
    let mut again = open_sse(server, "session:big", &viewer, "?after=0").await;
    assert!(sse_message(&mut again).await.data == big);
    assert_eq!(sse_message(&mut again).await.position, 2);
    let got = sse_message(&mut again).await;
    assert!(got.data == text.as_bytes(), "text payload differs");
    assert_eq!(ws_message(&mut ws).await.data, text.as_bytes());
}

async fn cutoffs(server: &Server) -> u64 {
    server
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("herald_channel_cutoffs_total "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// A WebSocket on a socket with a tiny receive buffer, so an unread one fills fast.
async fn tight_ws(server: &Server, path: &str) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let url = server.ws_url(path);
    tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
        .await
        .unwrap()
        .0
}

async fn a_slow_subscriber_is_cut_off_and_resumes_without_loss(engine: Engine) {
    let env = start(
        engine,
        &[("HERALD_CHANNELS__SUBSCRIBER_BUFFER_BYTES", "65536")],
    )
    .await;
    let server = &env.server;
    let viewer = token(&["slow"]);
    let path = format!("/v1/channels/slow/ws?token={viewer}");
    let mut ws = tight_ws(server, &path).await;
    let total = 600u64;
    for b in 0..(total / 100) {
        let messages: Vec<Value> = (0..100)
            .map(|i| json!({"data": format!("{:05}{}", b * 100 + i + 1, "x".repeat(8000))}))
            .collect();
        let (status, body) = batch(server, "slow", json!(messages)).await;
        assert_eq!(status, 202, "{body}");
    }
    let deadline = Instant::now() + WAIT;
    while cutoffs(server).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow subscriber was not cut off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut seen = Vec::new();
    let resume_after = loop {
        match ws_next(&mut ws).await {
            WsGot::Text(g) => {
                assert_eq!(&g.data[..5], format!("{:05}", g.position).as_bytes());
                seen.push(g.position);
            }
            WsGot::Closed(code, reason) => {
                assert_eq!(code, 4008, "{reason}");
                let n: u64 = reason
                    .strip_prefix("slow consumer; resume after ")
                    .unwrap_or_else(|| panic!("{reason}"))
                    .parse()
                    .unwrap();
                break n;
            }
            other => panic!("{other:?}"),
        }
    };
    assert!(resume_after < total, "cut off before the end");
    assert_eq!(cutoffs(server).await, 1);
    assert_eq!(seen.last().copied().unwrap_or(0), resume_after);
    let mut ws = open_ws(server, "slow", &viewer, &format!("&after={resume_after}")).await;
    while seen.last() != Some(&total) {
        match ws_next(&mut ws).await {
            WsGot::Text(g) => seen.push(g.position),
            other => panic!(
                "after {:?}: {other:?}\n{}",
                seen.last(),
                server
                    .logs()
                    .lines()
                    .filter(|l| l.contains("channel"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
    assert_eq!(
        seen,
        (1..=total).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
}

async fn a_slow_sse_subscriber_gets_a_cutoff_event(engine: Engine) {
    let env = start(
        engine,
        &[("HERALD_CHANNELS__SUBSCRIBER_BUFFER_BYTES", "65536")],
    )
    .await;
    let server = &env.server;
    let viewer = token(&["slow"]);
    // Opened, not read: the socket's buffers fill, then the server's queue.
    let response =
        SseClient::request(&server.url("/v1/channels/slow/stream"), Some(&viewer), None).await;
    let mut total = 0u64;
    while cutoffs(server).await == 0 {
        assert!(total < 4000, "the slow subscriber was not cut off");
        let messages: Vec<Value> = (0..50)
            .map(|i| json!({"data": format!("{:05}{}", total + i + 1, "x".repeat(16_000))}))
            .collect();
        assert_eq!(batch(server, "slow", json!(messages)).await.0, 202);
        total += 50;
    }
    let mut sse = SseClient::from_response(response);
    let mut seen = Vec::new();
    let resume_after = loop {
        match sse_next(&mut sse).await {
            Ok(g) => seen.push(g.position),
            Err(e) => {
                assert_eq!(e.event, "cutoff", "{e:?}");
                break e.json()["resume_after"].as_u64().unwrap();
            }
        }
    };
    assert_eq!(seen.last().copied().unwrap_or(0), resume_after);
    assert!(
        sse.until_end(WAIT).await.is_empty(),
        "the stream ends after the cutoff"
    );
    let mut sse = open_sse(server, "slow", &viewer, &format!("?after={resume_after}")).await;
    while seen.last() != Some(&total) {
        seen.push(sse_message(&mut sse).await.position);
    }
    assert_eq!(
        seen,
        (1..=total).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_node_receives_what_another_published() {
    let redis = RedisServer::start_with(ServerOptions::default().append_only(false));
    let url = redis.url();
    let node = |name: &'static str| {
        let url = url.clone();
        async move {
            Server::start_with(&[("HERALD_REDIS_URL", url.as_str()), ("HERALD_NODE_ID", name)])
                .await
        }
    };
    let a = node("a").await;
    let b = node("b").await;
    let viewer = token(&["session:*"]);
    let mut on_b = open_sse(&b, "session:x", &viewer, "").await;
    let mut ws_b = open_ws(&b, "session:x", &viewer, "").await;
    publish_text(&a, "session:x", "from a").await;
    let big = pseudo_random(600_000, 3);
    publish(&a, "session:x", "application/octet-stream", big.clone()).await;
    let got = sse_message(&mut on_b).await;
    assert_eq!((got.position, got.data), (1, b"from a".to_vec()));
    assert!(sse_message(&mut on_b).await.data == big);
    assert_eq!(ws_message(&mut ws_b).await.data, b"from a");
    assert!(ws_message(&mut ws_b).await.data == big);
    // Positions are shared: resume on a from where b stopped.
    publish_text(&b, "session:x", "from b").await;
    let mut on_a = open_sse(&a, "session:x", &viewer, "?after=2").await;
    assert_eq!(sse_message(&mut on_a).await.data, b"from b");
    assert_eq!(sse_message(&mut on_b).await.position, 3);
}

#[test]
fn herald_token_puts_channel_patterns_in_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(herald_bin())
            .arg("token")
            .args(args)
            .arg("--data")
            .arg(dir.path())
            .env("HERALD_TOKEN_SECRET", TOKEN_SECRET)
            .output()
            .unwrap()
    };
    let out = run(&["viewer", "--channel", "session:1234*", "--channel", "logs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(TOKEN_SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "viewer");
    assert_eq!(claims["channels"], json!(["session:1234*", "logs"]));
    let bad = run(&["viewer", "--channel", "session:*:logs"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("session:*:logs"));
}
