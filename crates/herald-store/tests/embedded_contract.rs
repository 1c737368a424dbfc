//! The storage contract suite against the embedded engine.

use std::sync::Arc;

use async_trait::async_trait;
use herald_store::contract::{Harness, Limits};
use herald_store::{EmbeddedStore, Store, StoreOptions};

struct Embedded {
    dir: tempfile::TempDir,
    options: StoreOptions,
    store: Option<Arc<EmbeddedStore>>,
}

#[async_trait]
impl Harness for Embedded {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("open")
    }

    async fn restart(&mut self) {
        let old = self.store.take().expect("open");
        old.close().await.unwrap();
        let old = Arc::try_unwrap(old)
            .unwrap_or_else(|_| panic!("a test still holds the store across restart"));
        drop(old);
        self.store = Some(Arc::new(
            reopen(self.dir.path(), self.options.clone()).await,
        ));
    }
}

async fn reopen(path: &std::path::Path, options: StoreOptions) -> EmbeddedStore {
    // fjall releases its directory lock when its background threads finish; retry briefly.
    let mut last = None;
    for _ in 0..100 {
        match EmbeddedStore::open(path, options.clone()) {
            Ok(store) => return store,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("could not reopen the store: {last:?}");
}

async fn embedded(limits: Limits) -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        inbox_max: limits.inbox_max,
        global_max: limits.global_max,
        changes_max: limits.changes_max,
        ..StoreOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), options.clone()).unwrap();
    Embedded {
        dir,
        options,
        store: Some(Arc::new(store)),
    }
}

herald_store::storage_contract_tests!(embedded);
