//! Topics: subscriptions and publishing to a topic's subscribers.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_a_topic_reaches_its_subscribers_only() {
    let server = Server::start().await;
    let put = |path: String| {
        server
            .http
            .put(server.url(&path))
            .bearer_auth(API_KEY)
            .send()
    };
    assert_eq!(
        put("/v1/topics/program-7/subscribers/alice".into())
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        put("/v1/topics/program-7/subscribers/alice".into())
            .await
            .unwrap()
            .status(),
        204,
        "idempotent"
    );
    let (status, body) = server
        .post_as(
            "/v1/topics/program-7/subscribers",
            API_KEY,
            Some(json!({"add": ["bob", "carol", "dave"], "remove": ["carol"]})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"added": 3, "removed": 1}));
    let (status, _) = server
        .delete_as("/v1/topics/program-7/subscribers/dave", API_KEY)
        .await;
    assert_eq!(status, 204);
    let (_, list) = server
        .get_as("/v1/topics/program-7/subscribers", API_KEY)
        .await;
    assert_eq!(list["items"], json!(["alice", "bob"]));

    server
        .publish_ok(json!({"to": {"topic": "program-7"}, "title": "New talk posted"}))
        .await;
    for user in ["alice", "bob"] {
        server
            .inbox_until(user, "the topic notification", |i| {
                titles(i) == ["New talk posted"]
            })
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for user in ["carol", "dave", "eve"] {
        assert!(
            titles(&server.inbox(user).await).is_empty(),
            "{user} is not subscribed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_topic_fans_out_to_every_subscriber_once() {
    let server = Server::start_with(&[("HERALD_WORKERS__TOPIC_PAGE", "300")]).await;
    let users: Vec<String> = (0..2500).map(|i| format!("f{i:04}")).collect();
    let (status, body) = server
        .post_as(
            "/v1/topics/big/subscribers",
            API_KEY,
            Some(json!({"add": users})),
        )
        .await;
    assert_eq!((status, body["added"].clone()), (200, json!(2500)));
    let mut pages = 0;
    let mut after: Option<String> = None;
    let mut listed = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/topics/big/subscribers?limit=1000&after={a}"),
            None => "/v1/topics/big/subscribers?limit=1000".into(),
        };
        let (_, page) = server.get_as(&path, API_KEY).await;
        listed += page["items"].as_array().unwrap().len();
        pages += 1;
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!((listed, pages), (2500, 3));
    server
        .publish_ok(json!({"to": {"topic": "big"}, "title": "hello followers"}))
        .await;
    for user in ["f0000", "f1234", "f2499"] {
        server
            .inbox_until(user, "the fan-out", |i| i["unread"] == 1)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_input_is_validated() {
    let server = Server::start().await;
    let r = server
        .http
        .put(server.url("/v1/topics/bad%20name/subscribers/alice"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_problem(r, 400).await;
    let too_many: Vec<String> = (0..10_001).map(|i| format!("u{i}")).collect();
    let r = server
        .http
        .post(server.url("/v1/topics/t/subscribers"))
        .bearer_auth(API_KEY)
        .json(&json!({"add": too_many}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422).await;
    let r = server
        .http
        .post(server.url("/v1/topics/t/subscribers"))
        .bearer_auth(API_KEY)
        .json(&json!({"add": ["ok", "n o"]}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, 422).await;
    assert_eq!(p["errors"][0]["field"], "add[1]");
    let (_, list) = server.get_as("/v1/topics/t/subscribers", API_KEY).await;
    assert_eq!(list["items"], json!([]), "a refused change changes nothing");
}
