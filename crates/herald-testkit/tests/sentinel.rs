//! RedisSentinel against the real redis-server in Sentinel mode.

use std::time::{Duration, Instant};

use herald_testkit::RedisSentinel;

#[tokio::test]
async fn killing_the_primary_fails_over_to_the_replica() {
    let mut setup = RedisSentinel::start();
    assert_eq!(setup.master_name(), "herald");
    assert_eq!(setup.sentinel_addrs().len(), 3);
    let old_primary = setup.primary_port();
    let replica = setup.replica().port();
    assert_ne!(old_primary, replica);
    assert!(setup.replica().cmd(&["ROLE"]).starts_with("slave"));

    assert_eq!(setup.primary().cmd(&["SET", "accepted", "yes"]), "OK");
    assert_eq!(setup.primary().cmd(&["WAIT", "1", "2000"]), "1");

    setup.kill9_primary();
    let started = Instant::now();
    let new_primary = setup.wait_for_failover_async(Duration::from_secs(30)).await;
    eprintln!("failover took {:?}", started.elapsed());

    assert_eq!(new_primary, replica);
    assert_eq!(setup.primary_port(), replica);
    assert!(setup.primary().cmd(&["ROLE"]).starts_with("master"));
    assert_eq!(setup.primary().cmd(&["GET", "accepted"]), "yes");
    assert_eq!(setup.primary().cmd(&["SET", "after", "failover"]), "OK");
}
