//! The categories every publish and fan-out consults, read from the store and kept for a moment:
//! a change on this node is seen at once, one made on another node within [`FRESH_FOR`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use herald_core::Category;
use herald_store::{Store, StoreError};

/// How long a copy read from the store is used before it is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

type Snapshot = Arc<HashMap<String, Arc<Category>>>;

pub struct Categories {
    store: Arc<dyn Store>,
    cached: RwLock<Option<(Instant, Snapshot)>>,
}

impl Categories {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cached: RwLock::new(None),
        }
    }

    /// Every category by name, read again from the store once the copy is older than
    /// [`FRESH_FOR`].
    pub async fn all(&self) -> Result<Snapshot, StoreError> {
        if let Some((at, snapshot)) = &*self.cached.read().expect("categories lock")
            && at.elapsed() < FRESH_FOR
        {
            return Ok(snapshot.clone());
        }
        let read_at = Instant::now();
        let snapshot: Snapshot = Arc::new(
            self.store
                .categories()
                .await?
                .into_iter()
                .map(|c| (c.name.clone(), Arc::new(c)))
                .collect(),
        );
        *self.cached.write().expect("categories lock") = Some((read_at, snapshot.clone()));
        Ok(snapshot)
    }

    /// The category of this name, if it is defined.
    pub async fn get(&self, name: Option<&str>) -> Result<Option<Arc<Category>>, StoreError> {
        let Some(name) = name else {
            return Ok(None);
        };
        Ok(self.all().await?.get(name).cloned())
    }

    /// Forgets the copy after a change made through this node.
    pub fn invalidate(&self) {
        *self.cached.write().expect("categories lock") = None;
    }
}
