//! Several Herald nodes on one Redis (and on a Redis Cluster): delivery and resume across nodes,
//! and a node killed with `kill -9` mid-work whose jobs another node finishes.

mod common;

use std::time::{Duration, Instant};

use common::sse::SseClient;
use common::*;
use herald_testkit::{RedisCluster, RedisSentinel, RedisServer, ServerOptions};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn redis() -> RedisServer {
    RedisServer::start_with(ServerOptions::default().append_only(false))
}

/// Publishes until the answer is 202 (Herald refuses with 5xx while Redis is unavailable).
async fn publish_once_redis_is_back(
    server: &Server,
    body: serde_json::Value,
    failure: &str,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = server.publish(body.clone()).await;
        if r.status() == 202 {
            return r.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        assert!(Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn node(redis: &RedisServer, name: &str) -> Server {
    node_at(&redis.url(), name).await
}

async fn node_at(url: &str, name: &str) -> Server {
    Server::start_with(&[
        ("HERALD_REDIS_URL", url),
        ("HERALD_NODE_ID", name),
        ("HERALD_REDIS_CLAIM_IDLE_MS", "1000"),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_one_node_hears_what_another_node_published() {
    let redis = redis();
    hears_across_nodes(&redis.url()).await;
}

/// On a Cluster the events cross nodes on sharded pub/sub (see herald-store's redis_contract
/// for how that is checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_one_node_hears_what_another_node_published_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let hosts: Vec<String> = cluster
        .urls()
        .iter()
        .map(|u| u.trim_start_matches("redis://").to_owned())
        .collect();
    hears_across_nodes(&format!("redis+cluster://{}", hosts.join(","))).await;
}

async fn hears_across_nodes(url: &str) {
    let a = node_at(url, "a").await;
    let b = node_at(url, "b").await;
    let alice = a.token("alice");
    let mut on_b = SseClient::connect(&b.url("/v1/me/stream"), Some(&alice), None).await;
    assert_eq!(on_b.next_event(WAIT).await.event, "ready");

    let id = a
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "from node a"}))
        .await;
    let e = on_b.next_named("notification", WAIT).await;
    assert_eq!(
        (e.json()["notification"]["id"].clone(), e.id.clone()),
        (json!(id), Some("1-0".into()))
    );
    assert_eq!(e.json()["unread"], 1);
    let everyone = a
        .publish_ok(json!({"to": {"all": true}, "title": "to everyone"}))
        .await;
    let e = on_b.next_named("notification", WAIT).await;
    assert_eq!(
        (
            e.json()["notification"]["id"].clone(),
            e.json()["unread"].clone()
        ),
        (json!(everyone), json!(2))
    );

    // The same inbox from either node; a change on one is heard on the other.
    assert_eq!(
        titles(&b.inbox("alice").await),
        ["to everyone", "from node a"]
    );
    let (status, body) = a
        .post_as(&format!("/v1/me/notifications/{id}/read"), &alice, None)
        .await;
    assert_eq!((status, body["unread"].clone()), (200, json!(1)));
    let e = on_b.next_named("read", WAIT).await;
    assert_eq!(e.json()["unread"], 1);
    let last = on_b.last_id.clone().unwrap();
    drop(on_b);

    // Positions are global: resume on node a from where node b left off.
    a.publish_ok(json!({"to": {"users": ["alice"]}, "title": "while away"}))
        .await;
    a.inbox_until("alice", "delivery", |i| i["unread"] == 2)
        .await;
    let mut on_a = SseClient::connect(&a.url("/v1/me/stream"), Some(&alice), Some(&last)).await;
    let e = on_a.next_event(WAIT).await;
    assert_eq!(
        (e.event.as_str(), e.json()["notification"]["title"].clone()),
        ("notification", json!("while away"))
    );
    assert_eq!(on_a.next_event(WAIT).await.event, "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_of_a_node_killed_mid_fan_out_is_finished_by_another_once() {
    let redis = redis();
    let mut a = node(&redis, "a").await;
    let users: Vec<String> = (0..10_000).map(|i| format!("u{i}")).collect();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            a.publish_ok(json!({"to": {"users": users}, "title": format!("wave {i}")}))
                .await,
        );
    }
    a.kill9(); // almost certainly mid fan-out: 40,000 deliveries were queued a moment ago
    let b = node(&redis, "b").await;
    for user in ["u0", "u4999", "u9999"] {
        let inbox = b
            .inbox_until(user, "all four waves", |i| i["unread"] == 4)
            .await;
        let got = sorted_ids(&inbox);
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want, "{user}: each wave exactly once");
    }
    assert!(
        b.logs()
            .contains("took over jobs another node left unfinished"),
        "node b finished node a's jobs:\n{}",
        b.logs()
    );
    // Nothing is left queued.
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = b.metrics().await;
        if metrics.contains("herald_queue_depth{lane=\"normal\"} 0") {
            break;
        }
        assert!(Instant::now() < deadline, "queue not drained:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_work_survives_a_redis_restart_and_streams_resync() {
    // AOF with `appendfsync always`: what Redis acknowledged is on disk.
    let mut redis = RedisServer::start();
    let a = node(&redis, "a").await;
    let alice = a.token("alice");
    let mut sse = SseClient::connect(&a.url("/v1/me/stream"), Some(&alice), None).await;
    assert_eq!(sse.next_event(WAIT).await.event, "ready");
    let users: Vec<String> = (0..2000).map(|i| format!("u{i}")).collect();
    let mut accepted = Vec::new();
    for i in 0..5 {
        let mut to = users.clone();
        to.push("alice".into());
        accepted.push(
            a.publish_ok(json!({"to": {"users": to}, "title": format!("burst {i}")}))
                .await,
        );
    }
    redis.kill9(); // the fan-out of those bursts is most likely still running

    let refused = a
        .publish(json!({"to": {"users": ["alice"]}, "title": "while down"}))
        .await;
    assert!(
        refused.status().is_server_error(),
        "nothing is accepted while Redis is down: {}",
        refused.status()
    );

    redis.restart();
    let after = publish_once_redis_is_back(
        &a,
        json!({"to": {"users": ["alice"]}, "title": "after restart"}),
        "Herald did not reconnect to Redis",
    )
    .await;
    accepted.push(after.clone());
    let inbox = a
        .inbox_until("alice", "every accepted notification", |i| i["unread"] == 6)
        .await;
    let got = sorted_ids(&inbox);
    accepted.sort();
    assert_eq!(got, accepted, "each accepted notification exactly once");
    a.inbox_until("u1999", "the last burst for the last user", |i| {
        i["unread"] == 5
    })
    .await;

    // The live stream is closed for a resync once the event subscription is back; resuming from
    // its last position misses nothing.
    sse.until_end(Duration::from_secs(20)).await;
    let last = sse.last_id.clone().unwrap();
    let mut resumed = SseClient::connect(&a.url("/v1/me/stream"), Some(&alice), Some(&last)).await;
    let mut seen = Vec::new();
    loop {
        let e = resumed.next_event(WAIT).await;
        if e.event == "ready" {
            break;
        }
        seen.push(
            e.json()["notification"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(
        seen.contains(&after),
        "the notification published after the restart is replayed: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_follows_a_sentinel_failover() {
    let mut sentinel = RedisSentinel::start();
    let sentinels: Vec<String> = sentinel
        .sentinel_addrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    let url = format!(
        "redis+sentinel://{}/{}",
        sentinels.join(","),
        sentinel.master_name()
    );
    let a = Server::start_with(&[("HERALD_REDIS_URL", &url), ("HERALD_NODE_ID", "a")]).await;
    let alice = a.token("alice");
    a.publish_ok(json!({"to": {"users": ["alice"]}, "title": "before failover"}))
        .await;
    a.inbox_until("alice", "delivery", |i| i["unread"] == 1)
        .await;
    let old_primary = sentinel.primary_port();

    sentinel.kill9_primary();
    let new_primary = sentinel
        .wait_for_failover_async(Duration::from_secs(30))
        .await;
    assert_ne!(new_primary, old_primary);

    // Herald asks the sentinels for the new primary and keeps accepting.
    let after = publish_once_redis_is_back(
        &a,
        json!({"to": {"users": ["alice"]}, "title": "after failover"}),
        "Herald did not follow the failover",
    )
    .await;
    let inbox = a
        .inbox_until("alice", "the notification after failover", |i| {
            i["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["id"] == after.as_str())
        })
        .await;
    assert!(titles(&inbox).contains(&"after failover".to_owned()));
    let (status, _) = a.get_as("/v1/me/unread", &alice).await;
    assert_eq!(status, 200);
    assert!(
        a.logs().contains("asking the sentinels again"),
        "the failover was followed, not avoided"
    );
}
