//! The writer's view of the database while it builds one batch: fjall's contents with the
//! batch's own pending writes laid over them, so later operations in a batch see earlier ones.

use std::collections::BTreeMap;
use std::ops::Bound;

use fjall::{Keyspace, OwnedWriteBatch};

use crate::{Result, StoreError};

pub type Bytes = Vec<u8>;

pub fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Pending writes of one batch, keyed by (keyspace index, key). `None` is a deletion.
pub struct Overlay<'a> {
    keyspaces: &'a [Keyspace],
    pending: BTreeMap<(usize, Bytes), Option<Bytes>>,
}

impl<'a> Overlay<'a> {
    pub fn new(keyspaces: &'a [Keyspace]) -> Self {
        Self {
            keyspaces,
            pending: BTreeMap::new(),
        }
    }

    pub fn get(&self, ks: usize, key: &[u8]) -> Result<Option<Bytes>> {
        if let Some(pending) = self.pending.get(&(ks, key.to_vec())) {
            return Ok(pending.clone());
        }
        Ok(self.keyspaces[ks]
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    pub fn put(&mut self, ks: usize, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.pending.insert((ks, key.into()), Some(value.into()));
    }

    pub fn delete(&mut self, ks: usize, key: impl Into<Bytes>) {
        self.pending.insert((ks, key.into()), None);
    }

    /// Up to `limit` live entries under `prefix`, in ascending key order.
    pub fn scan_prefix(
        &self,
        ks: usize,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        self.scan_from(ks, prefix, prefix, limit)
    }

    /// Up to `limit` live entries from `start` on whose keys begin with `prefix`, in ascending
    /// key order.
    pub fn scan_from(
        &self,
        ks: usize,
        start: &[u8],
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        let from = (ks, start.to_vec());
        let mut pending = self
            .pending
            .range((Bound::Included(from), Bound::Unbounded))
            .take_while(|((k, key), _)| *k == ks && key.starts_with(prefix))
            .peekable();
        let mut stored = self.keyspaces[ks]
            .range(start.to_vec()..)
            .map(|g| g.into_inner());
        let mut next_stored = || -> Result<Option<_>> {
            Ok(stored
                .next()
                .transpose()
                .map_err(backend)?
                .filter(|(k, _)| k.starts_with(prefix)))
        };
        let mut stored_head = next_stored()?;
        let mut out = Vec::new();
        while out.len() < limit {
            let take_pending = match (&stored_head, pending.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((skey, _)), Some(((_, pkey), _))) => pkey.as_slice() <= skey.as_ref(),
            };
            if take_pending {
                let ((_, pkey), pvalue) = pending.next().expect("peeked");
                if stored_head
                    .as_ref()
                    .is_some_and(|(skey, _)| skey.as_ref() == pkey.as_slice())
                {
                    stored_head = next_stored()?; // shadowed by the pending write
                }
                if let Some(v) = pvalue {
                    out.push((pkey.clone(), v.clone()));
                }
            } else {
                let (k, v) = stored_head.take().expect("checked");
                out.push((k.to_vec(), v.to_vec()));
                stored_head = next_stored()?;
            }
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Moves the pending writes into a fjall batch.
    pub fn into_batch(self, mut batch: OwnedWriteBatch) -> OwnedWriteBatch {
        for ((ks, key), value) in self.pending {
            match value {
                Some(v) => batch.insert(&self.keyspaces[ks], key, v),
                None => batch.remove(&self.keyspaces[ks], key),
            }
        }
        batch
    }
}
