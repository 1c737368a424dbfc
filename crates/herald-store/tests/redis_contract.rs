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
