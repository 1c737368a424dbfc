//! Live delivery: SSE and WebSocket, resume after reconnect, heartbeats, slow clients.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::sse::SseClient;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_delivers_live_and_resumes_with_last_event_id() {
    let server = Server::start().await;
    let alice = server.token("alice");
    let mut sse = SseClient::connect(&server.url("/v1/me/stream"), Some(&alice), None).await;
    let ready = sse.next_event(WAIT).await;
    assert_eq!(
        (ready.event.as_str(), ready.id.as_deref()),
        ("ready", Some("0-0"))
    );
    assert_eq!(ready.json()["unread"], 0);

    let first = server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "one", "data": {"k": "v"}}))
        .await;
    let e = sse.next_event(WAIT).await;
    assert_eq!(
        (e.event.as_str(), e.id.as_deref()),
        ("notification", Some("1-0"))
    );
    assert_eq!(e.json()["notification"]["id"], first.as_str());
    assert_eq!(e.json()["notification"]["data"], json!({"k": "v"}));
    assert_eq!(e.json()["unread"], 1);
    server
        .publish_ok(json!({"to": {"all": true}, "title": "everyone"}))
        .await;
    let e = sse.next_event(WAIT).await;
    assert_eq!(
        (e.id.as_deref(), e.json()["unread"].clone()),
        (Some("1-1"), json!(2))
    );
    drop(sse);

    // Missed while away: two notifications and a read.
    let missed = server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "two"}))
        .await;
    server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "three"}))
        .await;
    server
        .inbox_until("alice", "the missed ones", |i| i["unread"] == 4)
        .await;
    server
        .post_as(&format!("/v1/me/notifications/{missed}/read"), &alice, None)
        .await;

    let mut sse = SseClient::connect(&server.url("/v1/me/stream"), Some(&alice), Some("1-1")).await;
    let replayed: Vec<_> = [
        sse.next_event(WAIT).await,
        sse.next_event(WAIT).await,
        sse.next_event(WAIT).await,
    ]
    .into();
    let summary: Vec<_> = replayed
        .iter()
        .map(|e| (e.event.clone(), e.id.clone().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("notification".into(), "2-1".into()),
            ("notification".into(), "3-1".into()),
            ("read".into(), "4-1".into())
        ]
    );
    assert_eq!(
        replayed[0].json()["notification"]["read"],
        true,
        "replay shows the current read state"
    );
    let ready = sse.next_event(WAIT).await;
    assert_eq!(
        (ready.event.as_str(), ready.id.as_deref()),
        ("ready", Some("4-1"))
    );
    assert_eq!(ready.json()["unread"], 3);

    // Query-string forms for browsers: ?token= and ?last_event_id=.
    let url = server.url(&format!("/v1/me/stream?token={alice}&last_event_id=3-1"));
    let mut sse = SseClient::connect(&url, None, None).await;
    assert_eq!(sse.next_event(WAIT).await.event, "read");
    assert_eq!(sse.next_event(WAIT).await.event, "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_older_than_history_asks_the_client_to_refetch() {
    let server = Server::start_with(&[("HERALD_STORE__INBOX_MAX", "3")]).await;
    let alice = server.token("alice");
    for i in 0..6 {
        server
            .publish_ok(json!({"to": {"users": ["alice"]}, "title": format!("n{i}")}))
            .await;
    }
    server
        .inbox_until("alice", "the newest", |i| {
            titles(i).first().map(String::as_str) == Some("n5")
        })
        .await;
    let mut sse = SseClient::connect(&server.url("/v1/me/stream"), Some(&alice), Some("1-0")).await;
    let e = sse.next_event(WAIT).await;
    assert_eq!(
        (e.event.as_str(), e.id.as_deref()),
        ("refetch", Some("6-0"))
    );
    assert_eq!(e.json()["unread"], 3);
    assert!(e.json()["reason"].as_str().unwrap().contains("reload"));
    let bad = server
        .http
        .get(server.url("/v1/me/stream"))
        .bearer_auth(&alice)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_problem(bad, 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_private_and_heartbeats_keep_them_alive() {
    let server = Server::start_with(&[("HERALD_STREAM__HEARTBEAT_SECONDS", "1")]).await;
    let mut bob = SseClient::connect(
        &server.url("/v1/me/stream"),
        Some(&server.token("bob")),
        None,
    )
    .await;
    assert_eq!(bob.next_event(WAIT).await.event, "ready");
    server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "secret"}))
        .await;
    server
        .inbox_until("alice", "delivery", |i| i["unread"] == 1)
        .await;
    bob.assert_quiet(Duration::from_millis(300)).await;
    let heartbeat = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Some(common::sse::Seen::Comment(c)) = bob.rx.recv().await {
                return c;
            }
        }
    })
    .await
    .expect("a heartbeat within 3 s");
    assert_eq!(heartbeat, "heartbeat");
    let unauthenticated = server
        .http
        .get(server.url("/v1/me/stream"))
        .send()
        .await
        .unwrap();
    assert_problem(unauthenticated, 401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyone_connected_hears_a_message_to_all() {
    let server = Server::start().await;
    let mut clients = Vec::new();
    for i in 0..50 {
        let mut c = SseClient::connect(
            &server.url("/v1/me/stream"),
            Some(&server.token(&format!("u{i}"))),
            None,
        )
        .await;
        assert_eq!(c.next_event(WAIT).await.event, "ready");
        clients.push(c);
    }
    let id = server
        .publish_ok(json!({"to": {"all": true}, "title": "broadcast"}))
        .await;
    for c in &mut clients {
        let e = c.next_event(WAIT).await;
        assert_eq!(e.json()["notification"]["id"], id.as_str());
        assert_eq!(e.id.as_deref(), Some("0-1"));
    }
}

/// A client that stops reading is cut off at its buffer instead of growing the server's memory;
/// it resumes from its last position and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_and_resumes_without_loss() {
    let server = Server::start_with(&[
        ("HERALD_STREAM__BUFFER", "4"),
        ("HERALD_STORE__INBOX_MAX", "5000"),
        ("HERALD_STREAM__REPLAY_MAX", "5000"),
    ])
    .await;
    let alice = server.token("alice");
    let paused = SseClient::request(&server.url("/v1/me/stream"), Some(&alice), None).await;
    let padding = "x".repeat(15_000);
    // About 22 MB in all: more than loopback socket buffers hold, so the server's buffer fills.
    let total = 1500;
    for i in 0..total {
        server.publish_ok(json!({"to": {"users": ["alice"]}, "title": format!("n{i}"), "data": {"pad": padding}})).await;
    }
    server
        .inbox_until("alice", "every delivery", |i| i["unread"] == total)
        .await;
    let metrics = server.metrics().await;
    let cut = metrics
        .lines()
        .find(|l| l.starts_with("herald_stream_disconnects_total{reason=\"slow\"}"))
        .unwrap_or_else(|| panic!("the slow client was not cut off:\n{metrics}"));
    assert!(cut.ends_with(" 1"), "{cut}");

    let mut first = SseClient::from_response(paused);
    let got = first.until_end(Duration::from_secs(30)).await;
    let mut ids: Vec<String> = got
        .iter()
        .filter(|e| e.event == "notification")
        .map(|e| e.json()["notification"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.len() < total as usize,
        "it was cut off before the end ({} of {total})",
        ids.len()
    );
    let resume_at = first.last_id.clone().unwrap();
    let mut second =
        SseClient::connect(&server.url("/v1/me/stream"), Some(&alice), Some(&resume_at)).await;
    loop {
        let e = second.next_event(WAIT).await;
        if e.event == "ready" {
            break;
        }
        assert_eq!(e.event, "notification");
        ids.push(e.json()["notification"]["id"].as_str().unwrap().to_owned());
    }
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(
        ids.len(),
        total as usize,
        "every notification exactly once across the reconnect"
    );
    assert_eq!(unique.len(), total as usize);
}

async fn ws_next(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message")
            .expect("open")
            .unwrap();
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_delivers_events_and_takes_commands() {
    let server = Server::start().await;
    let alice = server.token("alice");
    let mut sse = SseClient::connect(&server.url("/v1/me/stream"), Some(&alice), None).await;
    assert_eq!(sse.next_event(WAIT).await.event, "ready");
    let (mut ws, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/v1/me/ws?token={alice}")))
            .await
            .unwrap();
    let ready = ws_next(&mut ws).await;
    assert_eq!(
        (
            ready["type"].clone(),
            ready["position"].clone(),
            ready["unread"].clone()
        ),
        (json!("ready"), json!("0-0"), json!(0))
    );

    let id = server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "over ws"}))
        .await;
    let e = ws_next(&mut ws).await;
    assert_eq!(
        (
            e["type"].clone(),
            e["position"].clone(),
            e["unread"].clone()
        ),
        (json!("notification"), json!("1-0"), json!(1))
    );
    assert_eq!(e["notification"]["title"], "over ws");
    assert_eq!(sse.next_event(WAIT).await.event, "notification");

    ws.send(Message::text(
        json!({"type": "mark_read", "id": id, "ref": 7}).to_string(),
    ))
    .await
    .unwrap();
    let mut ack = None;
    let mut read_event = None;
    for _ in 0..2 {
        let m = ws_next(&mut ws).await;
        match m["type"].as_str().unwrap() {
            "ack" => ack = Some(m),
            "read" => read_event = Some(m),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ack.unwrap(), json!({"type": "ack", "ref": 7, "unread": 0}));
    assert_eq!(read_event.unwrap()["id"], id.as_str());
    let e = sse.next_event(WAIT).await;
    assert_eq!(
        (e.event.as_str(), e.json()["unread"].clone()),
        ("read", json!(0)),
        "the user's other connections hear it"
    );

    ws.send(Message::text(
        json!({"type": "archive", "id": "nope", "ref": "x"}).to_string(),
    ))
    .await
    .unwrap();
    let err = ws_next(&mut ws).await;
    assert_eq!(
        (
            err["type"].clone(),
            err["status"].clone(),
            err["ref"].clone()
        ),
        (json!("error"), json!(404), json!("x"))
    );
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await["status"], 400);
    ws.send(Message::text(json!({"type": "explode"}).to_string()))
        .await
        .unwrap();
    assert_eq!(ws_next(&mut ws).await["status"], 400);
    ws.send(Message::text(json!({"type": "ping", "ref": 1}).to_string()))
        .await
        .unwrap();
    assert_eq!(ws_next(&mut ws).await, json!({"type": "pong", "ref": 1}));
    ws.send(Message::text(json!({"type": "mark_all_read"}).to_string()))
        .await
        .unwrap();
    let mut types = vec![
        ws_next(&mut ws).await["type"].clone(),
        ws_next(&mut ws).await["type"].clone(),
    ];
    types.sort_by_key(|t| t.to_string());
    assert_eq!(types, [json!("ack"), json!("read_all")]);
    drop(ws);

    // Resume over WebSocket from a position.
    server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "while away"}))
        .await;
    server
        .inbox_until("alice", "delivery", |i| i["unread"] == 1)
        .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(
        server.ws_url(&format!("/v1/me/ws?token={alice}&last_event_id=3-0")),
    )
    .await
    .unwrap();
    let e = ws_next(&mut ws).await;
    assert_eq!(
        (e["type"].clone(), e["notification"]["title"].clone()),
        (json!("notification"), json!("while away"))
    );
    assert_eq!(ws_next(&mut ws).await["type"], "ready");
}
