//! This node's copy of the global feed's shape (sequence numbers and flags), refreshed from
//! Redis whenever the head it has is not the head Redis has.

use std::sync::RwLock;

use ::redis::AsyncCommands;

use super::connection::Conn;
use super::keys;
use crate::feed_state::GlobalState;
use crate::{Result, StoreError};

/// The feed's members with their scores, and the meta hash's head and floor.
type FeedReply = (Vec<(String, f64)>, (Option<u64>, Option<u64>));

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
        let (entries, meta): FeedReply = ::redis::pipe()
            .zrange_withscores(keys::GLOBAL_FEED, 0, -1)
            .cmd("HMGET")
            .arg(keys::GLOBAL_META)
            .arg("h")
            .arg("fl")
            .query_async(conn)
            .await
            .map_err(backend)?;
        let mut state = GlobalState {
            head: meta.0.unwrap_or(0),
            floor: meta.1.unwrap_or(0),
            entries: Default::default(),
        };
        for (_, score) in entries {
            let score = score as u64;
            state.entries.push_back((score / 8, score % 2 == 1));
        }
        *self.state.write().expect("global cache lock") = state.clone();
        Ok(state)
    }

    /// Applies a global event seen on the live channel; a gap leaves the cache to be reloaded.
    pub fn apply(&self, gseq: u64, floor: u64, inbox: bool) {
        let mut state = self.state.write().expect("global cache lock");
        if gseq == state.head + 1 {
            state.head = gseq;
            state.entries.push_back((gseq, inbox));
            state.floor = floor;
            while state.entries.front().is_some_and(|(g, _)| *g <= floor) {
                state.entries.pop_front();
            }
        }
    }
}
