//! The notification center over HTTP: pages, unread counts, read, read-all, archive, `all`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_newest_first_with_a_cursor() {
    let server = Server::start().await;
    for i in 0..25 {
        server
            .publish_ok(json!({"to": {"users": ["alice"]}, "title": format!("n{i:02}")}))
            .await;
    }
    server
        .inbox_until("alice", "25 entries", |i| i["unread"] == 25)
        .await;
    let token = server.token("alice");
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &next {
            Some(c) => format!("/v1/me/notifications?limit=10&before={c}"),
            None => "/v1/me/notifications?limit=10".to_owned(),
        };
        let (status, page) = server.get_as(&path, &token).await;
        assert_eq!(status, 200);
        assert_eq!(page["unread"], 25);
        seen.extend(titles(&page));
        pages += 1;
        match page["next"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: Vec<_> = (0..25).rev().map(|i| format!("n{i:02}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    let (status, _) = server.get_as("/v1/me/notifications?limit=0", &token).await;
    assert_eq!(status, 400);
    let (status, _) = server
        .get_as("/v1/me/notifications?limit=101", &token)
        .await;
    assert_eq!(status, 400);
    let (status, p) = server
        .get_as("/v1/me/notifications?before=garbage", &token)
        .await;
    assert_eq!(status, 400, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_read_all_and_archive() {
    let server = Server::start().await;
    let token = server.token("alice");
    let a = server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "a"}))
        .await;
    let b = server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "b"}))
        .await;
    server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "c"}))
        .await;
    server
        .inbox_until("alice", "3 entries", |i| i["unread"] == 3)
        .await;

    let (status, body) = server
        .post_as(&format!("/v1/me/notifications/{a}/read"), &token, None)
        .await;
    assert_eq!((status, body["unread"].clone()), (200, json!(2)));
    let (status, body) = server
        .post_as(&format!("/v1/me/notifications/{a}/read"), &token, None)
        .await;
    assert_eq!(
        (status, body["unread"].clone()),
        (200, json!(2)),
        "marking twice is harmless"
    );
    let (_, unread) = server.get_as("/v1/me/unread", &token).await;
    assert_eq!(unread["unread"], 2);

    let (status, body) = server
        .delete_as(&format!("/v1/me/notifications/{b}"), &token)
        .await;
    assert_eq!((status, body["unread"].clone()), (200, json!(1)));
    assert_eq!(titles(&server.inbox("alice").await), ["c", "a"]);
    let (status, _) = server
        .delete_as(&format!("/v1/me/notifications/{b}"), &token)
        .await;
    assert_eq!(status, 404, "archived is gone");

    let (status, body) = server
        .post_as("/v1/me/notifications/read-all", &token, None)
        .await;
    assert_eq!((status, body["unread"].clone()), (200, json!(0)));
    let inbox = server.inbox("alice").await;
    assert!(
        inbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["read"] == true)
    );

    let (status, p) = server
        .post_as(
            "/v1/me/notifications/01ARZ3NDEKTSV4RRFFQ69G5FAV/read",
            &token,
            None,
        )
        .await;
    assert_eq!(status, 404, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("01ARZ3NDEKTSV4RRFFQ69G5FAV")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_all_reaches_everyone_including_users_first_seen_later() {
    let server = Server::start().await;
    server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "personal"}))
        .await;
    let all = server
        .publish_ok(json!({"to": {"all": true}, "title": "Maintenance tonight"}))
        .await;
    let inbox = server
        .inbox_until("alice", "both", |i| i["unread"] == 2)
        .await;
    assert_eq!(titles(&inbox), ["Maintenance tonight", "personal"]);
    // Never seen before: still has it, unread.
    let newcomer = server.inbox("newcomer-7").await;
    assert_eq!(titles(&newcomer), ["Maintenance tonight"]);
    assert_eq!(newcomer["unread"], 1);
    // One user's read state is their own.
    let (status, body) = server
        .post_as(
            &format!("/v1/me/notifications/{all}/read"),
            &server.token("alice"),
            None,
        )
        .await;
    assert_eq!((status, body["unread"].clone()), (200, json!(1)));
    assert_eq!(server.inbox("newcomer-7").await["unread"], 1);
    let (status, _) = server
        .delete_as(
            &format!("/v1/me/notifications/{all}"),
            &server.token("newcomer-7"),
        )
        .await;
    assert_eq!(status, 200);
    assert!(titles(&server.inbox("newcomer-7").await).is_empty());
    assert_eq!(titles(&server.inbox("bob").await), ["Maintenance tonight"]);
    // The admin twin sees the same view.
    let (status, admin) = server
        .get_as("/v1/users/alice/notifications", API_KEY)
        .await;
    assert_eq!(status, 200);
    assert_eq!(titles(&admin), ["Maintenance tonight", "personal"]);
    assert_eq!(admin["unread"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_length_is_bounded() {
    let server = Server::start_with(&[("HERALD_STORE__INBOX_MAX", "5")]).await;
    for i in 0..8 {
        server
            .publish_ok(json!({"to": {"users": ["alice"]}, "title": format!("n{i}")}))
            .await;
    }
    let inbox = server
        .inbox_until("alice", "the newest", |i| {
            titles(i).first().map(String::as_str) == Some("n7")
        })
        .await;
    assert_eq!(titles(&inbox), ["n7", "n6", "n5", "n4", "n3"]);
    assert_eq!(inbox["unread"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_choose_inbox_and_live_delivery() {
    let server = Server::start().await;
    server
        .publish_ok(
            json!({"to": {"users": ["alice"]}, "title": "live only", "channels": ["realtime"]}),
        )
        .await;
    server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "stored", "channels": ["inbox"]}))
        .await;
    let inbox = server
        .inbox_until("alice", "the stored one", |i| i["unread"] == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        titles(&inbox),
        ["stored"],
        "a realtime-only notification is not kept in the inbox"
    );
}
