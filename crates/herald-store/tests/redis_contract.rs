//! The storage contract suite against the Redis engine, on a real `redis-server` per test.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_store::contract::{Harness, Limits};
use herald_store::{RedisOptions, RedisStore, Store, StoreOptions};
use herald_testkit::{RedisServer, ServerOptions};

struct RedisHarness {
    redis: RedisServer,
    options: StoreOptions,
    store: Option<Arc<RedisStore>>,
}

async fn open(redis: &RedisServer, options: &StoreOptions) -> Arc<RedisStore> {
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

async fn redis(limits: Limits) -> RedisHarness {
    let redis = RedisServer::start_with(ServerOptions::default().append_only(false));
    let options = StoreOptions {
        inbox_max: limits.inbox_max,
        global_max: limits.global_max,
        changes_max: limits.changes_max,
        ..StoreOptions::default()
    };
    let store = Some(open(&redis, &options).await);
    RedisHarness {
        redis,
        options,
        store,
    }
}

herald_store::storage_contract_tests!(redis);
