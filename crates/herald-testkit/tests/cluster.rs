//! RedisCluster against the real redis-server.

use herald_testkit::RedisCluster;

#[test]
fn three_masters_serve_keys_across_slots() {
    let mut cluster = RedisCluster::start(3);
    assert_eq!(cluster.nodes().len(), 3);
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3);
    assert!(urls.iter().all(|u| u.starts_with("redis://127.0.0.1:")));

    let entry = &cluster.nodes()[0];
    assert!(entry.cmd(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
    let keys = [
        "{user:a}:feed",
        "{user:b}:feed",
        "{user:c}:feed",
        "{user:d}:feed",
        "{user:e}:feed",
    ];
    for key in keys {
        assert_eq!(entry.cmd(&["-c", "SET", key, key]), "OK");
    }
    for key in keys {
        assert_eq!(entry.cmd(&["-c", "GET", key]), key);
    }

    // Each key lives on exactly one node (the others answer MOVED), and not all on node 0.
    let owners: Vec<usize> = keys
        .iter()
        .map(|key| {
            let holders: Vec<usize> = (0..cluster.nodes().len())
                .filter(|&i| cluster.nodes()[i].cmd(&["EXISTS", key]) == "1")
                .collect();
            assert_eq!(holders.len(), 1, "{key} held by nodes {holders:?}");
            holders[0]
        })
        .collect();
    assert!(
        owners.iter().any(|&o| o != 0),
        "all keys on node 0: {owners:?}"
    );

    cluster.kill9(1);
    assert!(std::net::TcpStream::connect(cluster.nodes()[1].addr()).is_err());
}

#[test]
fn masters_with_replicas_converge() {
    let cluster = RedisCluster::start_with_replicas(3, 1);
    assert_eq!(cluster.nodes().len(), 6);
    let roles: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| {
            n.cmd(&["ROLE"])
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        roles.iter().filter(|r| *r == "master").count(),
        3,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| *r == "slave").count(),
        3,
        "{roles:?}"
    );
    for node in cluster.nodes() {
        assert!(node.cmd(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
    }
}
