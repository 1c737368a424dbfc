//! The storage contract suite against the Redis engine: on a real `redis-server` per test, and
//! on a real three-master Redis Cluster per test.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_store::contract::{Harness, Limits};
use herald_store::{RedisOptions, RedisStore, Store, StoreOptions};
use herald_testkit::{RedisCluster, RedisServer, ServerOptions};

/// The Redis the store talks to, kept alive for the test.
enum Deployment {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Deployment {
    fn url(&self) -> String {
        match self {
            Deployment::Single(server) => server.url(),
            Deployment::Cluster(cluster) => {
                let hosts: Vec<String> = cluster
                    .urls()
                    .iter()
                    .map(|u| u.trim_start_matches("redis://").to_owned())
                    .collect();
                format!("redis+cluster://{}", hosts.join(","))
            }
        }
    }
}

struct RedisHarness {
    redis: Deployment,
    options: StoreOptions,
    store: Option<Arc<RedisStore>>,
}

async fn open(redis: &Deployment, options: &StoreOptions) -> Arc<RedisStore> {
    let url = redis.url();
    let node = RedisOptions {
        node_id: "test-node".into(),
        claim_idle: Duration::from_secs(30),
    };
    Arc::new(RedisStore::open(&url, options.clone(), node).await.unwrap())
}

#[async_trait]
impl Harness for RedisHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("open")
    }

    async fn restart(&mut self) {
        let old = self.store.take().expect("open");
        assert!(
            Arc::strong_count(&old) == 1,
            "a test still holds the store across restart"
        );
        drop(old);
        self.store = Some(open(&self.redis, &self.options).await);
    }
}

fn options(limits: Limits) -> StoreOptions {
    StoreOptions {
        inbox_max: limits.inbox_max,
        global_max: limits.global_max,
        changes_max: limits.changes_max,
        devices_per_user: limits.devices_per_user,
        dead_letters_max: limits.dead_letters_max,
        decisions_per_user: limits.decisions_per_user,
        channels: limits.channels,
        ..StoreOptions::default()
    }
}

async fn harness(redis: Deployment, limits: Limits) -> RedisHarness {
    let options = options(limits);
    let store = Some(open(&redis, &options).await);
    RedisHarness {
        redis,
        options,
        store,
    }
}

async fn single(limits: Limits) -> RedisHarness {
    harness(
        Deployment::Single(RedisServer::start_with(
            ServerOptions::default().append_only(false),
        )),
        limits,
    )
    .await
}

async fn cluster(limits: Limits) -> RedisHarness {
    harness(Deployment::Cluster(RedisCluster::start(3)), limits).await
}

mod on_one_server {
    use super::*;
    herald_store::storage_contract_tests!(single);
}

mod on_a_three_master_cluster {
    use super::*;
    herald_store::storage_contract_tests!(cluster);
}

/// What only a shared Redis does: sends handed to a node that stops answering are taken over.
mod redis_only {
    use herald_core::Priority;
    use herald_core::time::now_ms;
    use herald_store::{PushOutcome, PushTask, SendStatus};

    use super::*;

    fn sent(task: &PushTask) -> PushOutcome {
        PushOutcome::Done {
            task: task.clone(),
            status: SendStatus::Sent,
            reason: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_lease_hands_the_send_to_another_node() {
        let h = single(Limits::default()).await;
        let node_a = h.store();
        let node_b = open(&h.redis, &h.options).await;
        let n = ulid::Ulid::new().to_string();
        let task = PushTask::device(&n, "a", "u", Priority::Normal);
        node_a
            .enqueue_push(std::slice::from_ref(&task))
            .await
            .unwrap();
        let now = now_ms();
        let lease = Duration::from_secs(1);
        assert_eq!(
            node_a.next_push(10, now, lease).await.unwrap(),
            std::slice::from_ref(&task)
        );
        assert!(
            node_b
                .next_push(10, now + 500, lease)
                .await
                .unwrap()
                .is_empty(),
            "leased to node a"
        );
        assert_eq!(
            node_b.next_push(10, now + 1_500, lease).await.unwrap(),
            std::slice::from_ref(&task),
            "node a's lease ran out"
        );
        assert!(
            node_a
                .next_push(10, now + 1_600, lease)
                .await
                .unwrap()
                .is_empty()
        );
        node_b.finish_push(&[sent(&task)]).await.unwrap();
        node_a.finish_push(&[sent(&task)]).await.unwrap();
        let report = node_a.delivery_report(&n).await.unwrap();
        assert_eq!((report["push"].queued, report["push"].sent), (1, 1));
        assert_eq!(node_b.push_depths().await.unwrap(), [0, 0, 0]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn done_markers_and_reports_expire_with_the_notification() {
        let h = single(Limits::default()).await;
        let store = h.store();
        let n = ulid::Ulid::new().to_string();
        let task = PushTask::device(&n, "a", "u", Priority::Normal);
        store
            .enqueue_push(std::slice::from_ref(&task))
            .await
            .unwrap();
        store
            .next_push(10, now_ms(), Duration::from_secs(30))
            .await
            .unwrap();
        store.finish_push(&[sent(&task)]).await.unwrap();
        let client = redis::Client::open(h.redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let retention = h.options.notification_retention_ms;
        for key in [
            format!("{{q}}:push:done:{n}"),
            format!("{{q}}:push:report:{n}"),
        ] {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(
                ttl > retention - 60_000 && ttl <= retention,
                "{key} expires with the notification, in {ttl} ms"
            );
        }
    }
}

/// On a Cluster, live events and channel notices travel on sharded pub/sub: one shard channel
/// per slot and kind, subscribed on the master that owns the slot, and no classic channel.
mod sharded_on_a_cluster {
    use bytes::Bytes;
    use herald_core::time::now_ms;
    use herald_core::{Priority, Recipients};
    use herald_store::contract::note;
    use herald_store::{
        Accept, Accepted, ChannelBody, Delivery, EntryFlags, Live, NewChannelMessage,
    };
    use redis::aio::MultiplexedConnection;
    use tokio::sync::mpsc::Receiver;

    use super::*;

    const WAIT: Duration = Duration::from_secs(15);

    fn cluster_deployment() -> Deployment {
        Deployment::Cluster(RedisCluster::start(3))
    }

    fn cluster_of(d: &Deployment) -> &RedisCluster {
        match d {
            Deployment::Cluster(c) => c,
            Deployment::Single(_) => unreachable!(),
        }
    }

    async fn node_conn(url: &str) -> MultiplexedConnection {
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    async fn deliver_to(store: &dyn Store, user: &str, title: &str) {
        try_deliver_to(store, user, title).await.unwrap();
    }

    async fn try_deliver_to(
        store: &dyn Store,
        user: &str,
        title: &str,
    ) -> herald_store::Result<()> {
        let n = note(
            title,
            Recipients::Users(vec![user.to_owned()]),
            Priority::Normal,
        );
        let Accepted::Created(n) = store
            .accept(Accept {
                notification: n,
                idempotency: None,
            })
            .await?
        else {
            panic!("a new notification")
        };
        let delivered = store
            .deliver(&[Delivery {
                user: user.to_owned(),
                notification: n,
                flags: EntryFlags::BOTH,
            }])
            .await?;
        assert_eq!(delivered.len(), 1);
        Ok(())
    }

    /// The next live event of `user`, skipping others' and counting resyncs on the way.
    async fn next_event_of(
        live: &mut Receiver<Live>,
        user: &str,
    ) -> (herald_core::FeedEvent, usize) {
        let mut resyncs = 0;
        loop {
            match tokio::time::timeout(WAIT, live.recv())
                .await
                .expect("a live event in time")
                .expect("open")
            {
                Live::Resync => resyncs += 1,
                Live::Event(e) if e.user.as_deref() == Some(user) => return (e, resyncs),
                Live::Event(_) => {}
            }
        }
    }

    /// A node's shard channels named `pattern` and the slot of each.
    async fn shard_channels(conn: &mut MultiplexedConnection, pattern: &str) -> Vec<(String, u16)> {
        let names: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg(pattern)
            .query_async(conn)
            .await
            .unwrap();
        if names.is_empty() {
            return Vec::new();
        }
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.cmd("CLUSTER").arg("KEYSLOT").arg(name);
        }
        let slots: Vec<u16> = pipe.query_async(conn).await.unwrap();
        names.into_iter().zip(slots).collect()
    }

    async fn keyslot(conn: &mut MultiplexedConnection, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(conn)
            .await
            .unwrap()
    }

    async fn shard_subscribers(conn: &mut MultiplexedConnection, channel: &str) -> u64 {
        let (_, n): (String, u64) = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(channel)
            .query_async(conn)
            .await
            .unwrap();
        n
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_and_notices_reach_another_node_over_shard_channels() {
        let redis = cluster_deployment();
        let options = options(Limits::default());
        let node_a = open(&redis, &options).await;
        let node_b = open(&redis, &options).await;
        let mut live_b = node_b.live_events().expect("receiver");
        let mut notices_b = node_b.channel_events().expect("receiver");

        // Published on node A, heard on node B: a user's feed, the global feed, a channel.
        deliver_to(&*node_a, "alice", "hi").await;
        let (event, _) = next_event_of(&mut live_b, "alice").await;
        assert_eq!((event.seq, event.unread), (1, Some(1)));
        let n = note("all", Recipients::All, Priority::Normal);
        node_a
            .deliver_global(Arc::new(n), EntryFlags::BOTH)
            .await
            .unwrap();
        loop {
            let got = tokio::time::timeout(WAIT, live_b.recv())
                .await
                .unwrap()
                .unwrap();
            if let Live::Event(e) = got
                && e.user.is_none()
            {
                assert_eq!(e.seq, 1);
                break;
            }
        }
        let message = NewChannelMessage {
            content_type: "text/plain".into(),
            bytes: 2,
            body: ChannelBody::Inline(Bytes::from_static(b"yo")),
        };
        let positions = node_a
            .channel_publish("room", vec![message], now_ms())
            .await
            .unwrap();
        let notice = tokio::time::timeout(WAIT, notices_b.recv())
            .await
            .expect("a notice in time")
            .expect("open");
        assert_eq!(
            (&*notice.channel, notice.message.position),
            ("room", positions[0])
        );

        // How they travelled: no node has a classic subscriber, and every slot's two shard
        // channels are subscribed on the master that owns the slot, by both stores.
        let mut all = Vec::new();
        for url in cluster_of(&redis).urls() {
            let mut conn = node_conn(&url).await;
            let classic: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("herald:events")
                .arg("herald:channels")
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(
                classic.iter().all(|(_, n)| *n == 0),
                "classic subscribers on {url}: {classic:?}"
            );
            let events = shard_channels(&mut conn, "herald:ev:*").await;
            let notices = shard_channels(&mut conn, "herald:ch:*").await;
            assert!(
                !events.is_empty(),
                "{url} serves slots, so it has shard subscribers"
            );
            assert_eq!(events.len(), notices.len());
            all.extend(events.into_iter().map(|e| (e, url.clone())));
        }
        let mut slots: Vec<u16> = all.iter().map(|((_, slot), _)| *slot).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(
            (slots.len(), all.len()),
            (16384, 16384),
            "one events channel per slot"
        );
        let mut conn = node_conn(&cluster_of(&redis).urls()[0]).await;
        let alice_slot = keyslot(&mut conn, "{u:alice}:m").await;
        let ((channel, _), owner) = all
            .iter()
            .find(|((_, slot), _)| *slot == alice_slot)
            .expect("alice's slot has a channel");
        assert_eq!(
            shard_subscribers(&mut node_conn(owner).await, channel).await,
            2,
            "both stores subscribe to {channel} on its owner"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_moved_slot_is_subscribed_again_and_live_connections_resync() {
        let redis = cluster_deployment();
        let options = options(Limits::default());
        let listener = open(&redis, &options).await;
        let writer = open(&redis, &options).await;
        let mut live = listener.live_events().expect("receiver");
        let urls = cluster_of(&redis).urls();
        let mut conns = Vec::new();
        for url in &urls {
            conns.push(node_conn(url).await);
        }
        let mut ids = Vec::new();
        for conn in &mut conns {
            let id: String = redis::cmd("CLUSTER")
                .arg("MYID")
                .query_async(conn)
                .await
                .unwrap();
            ids.push(id);
        }
        // The slot of a user who has no keys yet, so it moves without migrating keys.
        let slot = keyslot(&mut conns[0], "{u:mover}:m").await;
        let channel = {
            let mut found = None;
            for (i, conn) in conns.iter_mut().enumerate() {
                if let Some((name, _)) = shard_channels(conn, "herald:ev:*")
                    .await
                    .into_iter()
                    .find(|(_, s)| *s == slot)
                {
                    found = Some((name, i));
                }
            }
            found.expect("the slot's channel is subscribed somewhere")
        };
        let (channel, source) = channel;
        let target = (source + 1) % urls.len();
        assert_eq!(shard_subscribers(&mut conns[source], &channel).await, 2);

        let setslot = |conn: &mut MultiplexedConnection, args: Vec<String>| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(args);
            let mut conn = conn.clone();
            async move { cmd.query_async::<()>(&mut conn).await.unwrap() }
        };
        setslot(
            &mut conns[target],
            vec!["IMPORTING".into(), ids[source].clone()],
        )
        .await;
        setslot(
            &mut conns[source],
            vec!["MIGRATING".into(), ids[target].clone()],
        )
        .await;
        for i in [target, source, 3 - target - source] {
            setslot(&mut conns[i], vec!["NODE".into(), ids[target].clone()]).await;
        }

        // Both stores follow the slot to its new owner.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let moved = shard_subscribers(&mut conns[target], &channel).await;
            let left = shard_subscribers(&mut conns[source], &channel).await;
            if (moved, left) == (2, 0) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "subscribers of {channel}: {moved} on the new owner, {left} on the old"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        deliver_to(&*writer, "mover", "after the move").await;
        let (event, resyncs) = next_event_of(&mut live, "mover").await;
        assert_eq!(event.seq, 1);
        assert!(
            resyncs >= 1,
            "events may have been lost while resubscribing"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failover_is_followed_and_live_connections_resync() {
        let mut redis = Deployment::Cluster(RedisCluster::start_with_replicas(3, 1));
        let options = options(Limits::default());
        let listener = open(&redis, &options).await;
        let writer = open(&redis, &options).await;
        let mut live = listener.live_events().expect("receiver");
        deliver_to(&*writer, "phoenix", "before").await;
        assert_eq!(next_event_of(&mut live, "phoenix").await.0.seq, 1);

        // Kill the master that holds phoenix's slot (where the listener is subscribed to it).
        let urls = cluster_of(&redis).urls();
        let mut conn = node_conn(&urls[0]).await;
        let slot = keyslot(&mut conn, "{u:phoenix}:m").await;
        let mut owner = None;
        for (i, url) in urls.iter().enumerate() {
            let mut conn = node_conn(url).await;
            if shard_channels(&mut conn, "herald:ev:*")
                .await
                .iter()
                .any(|(_, s)| *s == slot)
            {
                owner = Some(i);
            }
        }
        let owner = owner.expect("phoenix's slot is subscribed on its master");
        match &mut redis {
            Deployment::Cluster(cluster) => cluster.kill9(owner),
            Deployment::Single(_) => unreachable!(),
        }

        // A replica takes over (node timeout 2 s). The listener tells live connections to
        // resync once it is subscribed on the new master (what was published before is lost to
        // it), and hears what is published after.
        let resync = tokio::time::timeout(Duration::from_secs(30), live.recv())
            .await
            .expect("a resync after the failover");
        assert!(matches!(resync, Some(Live::Resync)), "{resync:?}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Err(e) = try_deliver_to(&*writer, "phoenix", "after").await {
            assert!(tokio::time::Instant::now() < deadline, "writes fail: {e}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (event, _) = next_event_of(&mut live, "phoenix").await;
        assert!(event.seq >= 2, "{event:?}");
    }
}
