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
