//! Reads pipelined per master follow a slot that moved after the store read the slot map: on a
//! real three-master Redis Cluster, a user's (empty) slot is moved to another master between two
//! reads, and the second read still finds what was written there.

use std::time::Duration;

use herald_core::Preferences;
use herald_store::{RedisOptions, RedisStore, Store, StoreOptions};
use herald_testkit::RedisCluster;

fn node_cmd(url: &str, args: &[&str]) -> redis::Value {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn).unwrap()
}

fn text(v: redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
        redis::Value::SimpleString(s) => s,
        redis::Value::Int(i) => i.to_string(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_are_read_after_their_slot_moved() {
    let cluster = RedisCluster::start(3);
    let urls = cluster.urls();
    let hosts: Vec<String> = urls
        .iter()
        .map(|u| u.trim_start_matches("redis://").to_owned())
        .collect();
    let store = RedisStore::open(
        &format!("redis+cluster://{}", hosts.join(",")),
        StoreOptions::default(),
        RedisOptions {
            node_id: "test-node".into(),
            claim_idle: Duration::from_secs(30),
        },
    )
    .await
    .unwrap();
    let users: Vec<String> = (0..300).map(|i| format!("mover{i}")).collect();
    let muted: Preferences = serde_json::from_value(serde_json::json!({"mute": true})).unwrap();
    for user in users.iter().step_by(7) {
        store.put_preferences(user, &muted).await.unwrap();
    }
    // The first read reads the slot map.
    let before = store.preferences_of(&users).await.unwrap();
    for (i, prefs) in before.iter().enumerate() {
        assert_eq!(prefs.is_some(), i % 7 == 0, "{}", users[i]);
    }

    // Move the (empty) slot of a user without preferences to another master.
    let mover = &users[1];
    let slot = text(node_cmd(
        &urls[0],
        &["CLUSTER", "KEYSLOT", &format!("{{u:{mover}}}:p")],
    ));
    let owner_of = |url: &str| {
        let id = text(node_cmd(url, &["CLUSTER", "MYID"]));
        let count = text(node_cmd(url, &["CLUSTER", "COUNTKEYSINSLOT", &slot]));
        (id, count)
    };
    let nodes: Vec<(String, String)> = urls.iter().map(|u| owner_of(u)).collect();
    let slots = node_cmd(&urls[0], &["CLUSTER", "SLOTS"]);
    let redis::Value::Array(ranges) = slots else {
        panic!("CLUSTER SLOTS")
    };
    let slot_n: i64 = slot.parse().unwrap();
    let owner_port = ranges
        .iter()
        .find_map(|r| {
            let redis::Value::Array(parts) = r else {
                return None;
            };
            let (redis::Value::Int(start), redis::Value::Int(end)) = (&parts[0], &parts[1]) else {
                return None;
            };
            let redis::Value::Array(master) = &parts[2] else {
                return None;
            };
            let redis::Value::Int(port) = master[1] else {
                return None;
            };
            (start <= &slot_n && &slot_n <= end).then_some(port)
        })
        .unwrap();
    let from = urls
        .iter()
        .position(|u| u.ends_with(&format!(":{owner_port}")))
        .unwrap();
    let to = (from + 1) % urls.len();
    assert_eq!(nodes[from].1, "0", "the slot is empty");
    for url in &urls {
        node_cmd(url, &["CLUSTER", "SETSLOT", &slot, "NODE", &nodes[to].0]);
    }
    // The store's client learns the move from a redirect; its per-master map does not yet.
    store.put_preferences(mover, &muted).await.unwrap();
    assert_eq!(owner_of(&urls[to]).1, "1", "written on the new master");

    let after = store.preferences_of(&users).await.unwrap();
    for (i, prefs) in after.iter().enumerate() {
        assert_eq!(prefs.is_some(), i % 7 == 0 || i == 1, "{}", users[i]);
    }
}
