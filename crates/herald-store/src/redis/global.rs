//! This node's copy of the global feed's shape (sequence numbers and flags), refreshed from
//! Redis whenever the head it has is not the head Redis has.

use std::sync::{Arc, RwLock};

use ::redis::AsyncCommands;

use super::connection::Conn;
use super::keys;
use crate::feed_state::GlobalState;
use crate::{Result, StoreError};

/// The feed's members with their scores, the meta hash's head and floor, and the shared
/// campaign entries.
type FeedReply = (
    Vec<(String, f64)>,
    (Option<u64>, Option<u64>),
    Vec<(u64, String)>,
);

#[derive(Default)]
pub struct GlobalCache {
    state: RwLock<GlobalState>,
}

fn backend(e: ::redis::RedisError) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl GlobalCache {
    pub fn snapshot(&self) -> GlobalState {
        self.state.read().expect("global cache lock").clone()
    }

    /// The current global state: the cached one when its head is Redis's head, else reloaded.
    pub async fn current(&self, conn: &mut Conn) -> Result<GlobalState> {
        let head: Option<u64> = conn.hget(keys::GLOBAL_META, "h").await.map_err(backend)?;
        let cached = self.snapshot();
        if cached.head == head.unwrap_or(0) {
            return Ok(cached);
        }
        self.reload(conn).await
    }

    pub async fn reload(&self, conn: &mut Conn) -> Result<GlobalState> {
        let (entries, meta, campaigns): FeedReply = ::redis::pipe()
            .zrange_withscores(keys::GLOBAL_FEED, 0, -1)
            .cmd("HMGET")
            .arg(keys::GLOBAL_META)
            .arg("h")
            .arg("fl")
            .hgetall(keys::GLOBAL_CAMPAIGNS)
            .query_async(conn)
            .await
            .map_err(backend)?;
        let mut state = GlobalState {
            head: meta.0.unwrap_or(0),
            floor: meta.1.unwrap_or(0),
            entries: Default::default(),
            restricted: Default::default(),
        };
        for (_, score) in entries {
            let score = score as u64;
            state.entries.push_back((score / 8, score % 2 == 1));
        }
        for (gseq, campaign) in campaigns {
            if state.entries.iter().any(|(g, _)| *g == gseq) {
                state.restricted.insert(gseq, Arc::from(campaign));
            }
        }
        *self.state.write().expect("global cache lock") = state.clone();
        Ok(state)
    }

    /// Applies a global event seen on the live channel; a gap leaves the cache to be reloaded.
    pub fn apply(&self, gseq: u64, floor: u64, inbox: bool, campaign: Option<Arc<str>>) {
        let mut state = self.state.write().expect("global cache lock");
        if gseq == state.head + 1 {
            state.push(gseq, inbox, campaign, usize::MAX);
            state.trim_to(floor);
        }
    }
}
