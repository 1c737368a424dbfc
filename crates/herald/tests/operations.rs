//! Operations: health, metrics, the OpenAPI document, error shapes, logs, graceful shutdown.

mod common;

use std::time::Duration;

use common::sse::SseClient;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let server = Server::start().await;
    let (status, health) = status_json(
        server
            .http
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, health["status"].clone()), (200, json!("ok")));
    let _sse = SseClient::connect(
        &server.url("/v1/me/stream"),
        Some(&server.token("alice")),
        None,
    )
    .await;
    server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "m", "priority": "high"}))
        .await;
    server
        .inbox_until("alice", "delivery", |i| i["unread"] == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // queue gauges refresh every second
    let text = server.metrics().await;
    for expected in [
        "herald_notifications_accepted_total{priority=\"high\"} 1",
        "herald_deliveries_total{channel=\"inbox\"} 1",
        "herald_deliveries_total{channel=\"realtime\"} 1",
        "herald_stream_connections 1",
        "herald_queue_depth{lane=\"normal\"} 0",
        "herald_accept_seconds_count 1",
        "herald_fanout_seconds_count 1",
        "herald_http_requests_total{route=\"/v1/notifications\",status=\"202\"} 1",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_describes_every_route() {
    let server = Server::start().await;
    let (status, doc) = status_json(
        server
            .http
            .get(server.url("/v1/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/notifications", "post"),
        ("/v1/notifications/{id}", "get"),
        ("/v1/topics/{topic}/subscribers/{user}", "put"),
        ("/v1/topics/{topic}/subscribers/{user}", "delete"),
        ("/v1/topics/{topic}/subscribers", "post"),
        ("/v1/topics/{topic}/subscribers", "get"),
        ("/v1/me/notifications", "get"),
        ("/v1/me/unread", "get"),
        ("/v1/me/notifications/{id}/read", "post"),
        ("/v1/me/notifications/read-all", "post"),
        ("/v1/me/notifications/{id}", "delete"),
        ("/v1/users/{user}/notifications", "get"),
        ("/v1/me/stream", "get"),
        ("/v1/me/ws", "get"),
        ("/healthz", "get"),
        ("/metrics", "get"),
    ] {
        let op = &paths.get(path).unwrap_or_else(|| panic!("{path} missing"))[method];
        assert!(
            op["responses"].is_object(),
            "{method} {path} has no responses"
        );
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert!(schemes["api_key"].is_object() && schemes["user_token"].is_object());
    assert!(doc["components"]["schemas"]["PublishRequest"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_are_problems() {
    let server = Server::start().await;
    assert_problem(
        server
            .http
            .get(server.url("/v1/nothing-here"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_problem(
        server
            .http
            .put(server.url("/v1/notifications"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap(),
        405,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_secrets() {
    let server =
        Server::start_with(&[("HERALD_LOG", "debug"), ("HERALD_LOG_FORMAT", "json")]).await;
    let token = server.token("alice");
    server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "t"}))
        .await;
    let mut sse = SseClient::connect(
        &server.url(&format!("/v1/me/stream?token={token}")),
        None,
        None,
    )
    .await;
    sse.next_event(Duration::from_secs(5)).await;
    let _ = server
        .http
        .get(server.url("/v1/me/unread"))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    let _ = server
        .http
        .post(server.url("/v1/notifications"))
        .bearer_auth("hk_wrong_key_attempt")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = server.logs();
    assert!(
        logs.contains("/v1/me/stream"),
        "debug request logs are on, so the check means something:\n{logs}"
    );
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    for secret in [
        API_KEY,
        TOKEN_SECRET,
        token.as_str(),
        "hk_wrong_key_attempt",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret leaked into the logs: {secret}"
        );
    }
    let token_body = token.split('.').nth(2).unwrap();
    assert!(
        !logs.contains(token_body),
        "a token signature leaked into the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_keeps_accepted_work() {
    let mut server = Server::start().await;
    let alice = server.token("alice");
    let mut sse = SseClient::connect(&server.url("/v1/me/stream"), Some(&alice), None).await;
    assert_eq!(sse.next_event(Duration::from_secs(5)).await.event, "ready");
    let users: Vec<String> = (0..5000).map(|i| format!("u{i}")).collect();
    let id = server
        .publish_ok(json!({"to": {"users": users}, "title": "before shutdown"}))
        .await;
    let status = server.terminate(Duration::from_secs(15));
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}"
    );
    sse.until_end(Duration::from_secs(5)).await; // live streams are closed, not left hanging
    server.launch().await;
    let inbox = server
        .inbox_until("u4999", "delivery after restart", |i| i["unread"] == 1)
        .await;
    assert_eq!(inbox["items"][0]["id"], id.as_str());
    assert!(server.logs().contains("shutting down"));
}
