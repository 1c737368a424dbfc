//! Publishing over HTTP: accept, idempotency, validation, limits, durability across kill -9.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_accepted_and_delivered() {
    let server = Server::start().await;
    let id = server
        .publish_ok(
            json!({"to": {"users": ["alice", "bob"]}, "title": "Talk posted", "body": "New episode",
                           "category": "talks", "data": {"talk": 42}, "priority": "high"}),
        )
        .await;
    for user in ["alice", "bob"] {
        let inbox = server
            .inbox_until(user, "the delivery", |i| i["unread"] == 1)
            .await;
        let item = &inbox["items"][0];
        assert_eq!(item["id"], id.as_str());
        assert_eq!(item["title"], "Talk posted");
        assert_eq!(item["body"], "New episode");
        assert_eq!(item["category"], "talks");
        assert_eq!(item["data"], json!({"talk": 42}));
        assert_eq!(item["read"], false);
        assert!(item["created_at"].as_str().unwrap().ends_with('Z'));
    }
    assert!(
        titles(&server.inbox("carol").await).is_empty(),
        "only listed users receive it"
    );
    let (status, stored) = server
        .get_as(&format!("/v1/notifications/{id}"), API_KEY)
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored["to"], json!({"users": ["alice", "bob"]}));
    assert_eq!(stored["priority"], "high");
    assert_eq!(
        stored["channels"],
        json!(["inbox", "realtime", "push", "webhook"])
    );
    let (status, _) = server
        .get_as("/v1/notifications/01ARZ3NDEKTSV4RRFFQ69G5FAV", API_KEY)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_same_id_and_delivers_once() {
    let server = Server::start().await;
    let body = json!({"to": {"users": ["alice"]}, "title": "Order shipped", "idempotency_key": "order-1001"});
    let first = server
        .publish(body.clone())
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let second = server
        .publish(body.clone())
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    // The header form is the same key space.
    let by_header = server
        .http
        .post(server.url("/v1/notifications"))
        .bearer_auth(API_KEY)
        .header("Idempotency-Key", "order-1001")
        .json(&json!({"to": {"users": ["alice"]}, "title": "Order shipped"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 202);
    assert_eq!(
        by_header.json::<serde_json::Value>().await.unwrap()["id"],
        first["id"]
    );
    server
        .inbox_until("alice", "the delivery", |i| i["unread"] == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        titles(&server.inbox("alice").await),
        ["Order shipped"],
        "delivered once"
    );

    let changed = json!({"to": {"users": ["alice"]}, "title": "Order cancelled", "idempotency_key": "order-1001"});
    let problem = assert_problem(server.publish(changed).await, 409).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(first["id"].as_str().unwrap())
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        titles(&server.inbox("alice").await),
        ["Order shipped"],
        "a conflict changes nothing"
    );

    let mismatch = server
        .http
        .post(server.url("/v1/notifications"))
        .bearer_auth(API_KEY)
        .header("Idempotency-Key", "a")
        .json(&json!({"to": {"all": true}, "title": "x", "idempotency_key": "b"}))
        .send()
        .await
        .unwrap();
    assert_problem(mismatch, 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_problem_details_and_changes_nothing() {
    let server = Server::start_with(&[("HERALD_LIMITS__MAX_BODY_BYTES", "4096")]).await;
    let post_raw = |body: &'static str, content_type: &'static str| {
        server
            .http
            .post(server.url("/v1/notifications"))
            .bearer_auth(API_KEY)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // Each malformed body is refused with a 400 that says what is wrong.
    for (body, explains) in [
        (
            "{\"to\": {\"users\": [\"a\"]}, \"title\": ",
            "malformed JSON",
        ),
        ("{\"to\": {\"group\": \"x\"}, \"title\": \"t\"}", "group"),
        ("{\"to\": {\"all\": true}, \"titel\": \"t\"}", "titel"),
    ] {
        let p = assert_problem(post_raw(body, "application/json").await.unwrap(), 400).await;
        assert!(
            p["detail"].as_str().unwrap().contains(explains),
            "{body}: {p}"
        );
    }
    assert_problem(post_raw("{}", "text/plain").await.unwrap(), 415).await;

    let p = assert_problem(
        server
            .publish(json!({"to": {"users": ["a"]}, "title": "t".repeat(300)}))
            .await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "title");
    let p = assert_problem(
        server
            .publish(json!({"to": {"users": ["ok", "not ok"]}, "title": "t"}))
            .await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "to.users[1]");
    let p = assert_problem(
        server
            .publish(
                json!({"to": {"topic": "a/b"}, "title": "t", "priority": "high", "ttl_seconds": 0}),
            )
            .await,
        422,
    )
    .await;
    assert_eq!(
        p["errors"].as_array().unwrap().len(),
        2,
        "every problem at once: {p}"
    );
    assert_problem(
        server
            .publish(json!({"to": {"all": true}, "title": "t", "priority": "urgent"}))
            .await,
        400,
    )
    .await;

    let big = json!({"to": {"users": ["a"]}, "title": "t", "body": "x".repeat(5000)});
    let p = assert_problem(server.publish(big).await, 413).await;
    assert!(p["detail"].as_str().unwrap().contains("max_body_bytes"));

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        titles(&server.inbox("a").await).is_empty(),
        "nothing refused was delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_list_is_bounded() {
    let server = Server::start().await;
    let users: Vec<String> = (0..10_001).map(|i| format!("u{i}")).collect();
    let p = assert_problem(
        server
            .publish(json!({"to": {"users": users}, "title": "t"}))
            .await,
        422,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("10000"), "{p}");
    let users: Vec<String> = (0..10_000).map(|i| format!("u{i}")).collect();
    server
        .publish_ok(json!({"to": {"users": users}, "title": "ten thousand"}))
        .await;
    server
        .inbox_until("u9999", "the last of 10,000", |i| i["unread"] == 1)
        .await;
    server
        .inbox_until("u0", "the first of 10,000", |i| i["unread"] == 1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_notifications_survive_kill_9() {
    let mut server = Server::start().await;
    // Publish concurrently and kill the process the moment the last 202 arrives: every accepted
    // notification must be delivered after the restart, once.
    let mut ids = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = server.http.clone();
        let url = server.url("/v1/notifications");
        tasks.push(tokio::spawn(async move {
            let body =
                json!({"to": {"users": [format!("user{}", i % 10)]}, "title": format!("n{i}")});
            let r = http
                .post(url)
                .bearer_auth(API_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    server.kill9();
    server.launch().await;
    let mut seen = Vec::new();
    for u in 0..10 {
        let inbox = server
            .inbox_until(&format!("user{u}"), "all 20", |i| i["unread"] == 20)
            .await;
        seen.extend(
            inbox["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
    }
    seen.sort();
    ids.sort();
    assert_eq!(
        seen, ids,
        "every accepted notification delivered exactly once"
    );
}
