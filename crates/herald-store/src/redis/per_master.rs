//! Many single-slot commands on a Cluster, pipelined per master. The Cluster client sends each
//! slot's command as a request of its own (a multi-slot MGET too, split per slot), and a batch
//! of users rarely shares a slot (16,384 of them), so judging a list of a million users, or
//! delivering to them, cost about a million requests of Herald's CPU (~18 µs each). Here the
//! commands are grouped by the master that serves their slot, as the last `CLUSTER SLOTS` said,
//! and each group goes as pipelines to that master.
//!
//! A map gone stale (a slot moved) shows as redirects among a pipeline's answers: those commands
//! are sent again the ordinary way, which follows redirects, and the map is read again next time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{Cmd, Value};
use futures_util::future::join_all;

use super::sharded::{self, SLOTS};
use super::{RedisStore, backend};
use crate::Result;

/// A slot map older than this is read again before use.
const FRESH_FOR: Duration = Duration::from_secs(10);

/// Which master serves each slot (an index per slot; equal indices, same master).
pub struct SlotOwners {
    owner: Vec<u16>,
    read_at: Instant,
}

/// The last slot map read, shared by the store's calls.
#[derive(Default)]
pub struct SlotOwnersCache(Mutex<Option<std::sync::Arc<SlotOwners>>>);

impl SlotOwnersCache {
    fn fresh(&self) -> Option<std::sync::Arc<SlotOwners>> {
        let guard = self.0.lock().expect("slot map lock");
        guard
            .as_ref()
            .filter(|m| m.read_at.elapsed() < FRESH_FOR)
            .cloned()
    }

    fn put(&self, owners: SlotOwners) -> std::sync::Arc<SlotOwners> {
        let owners = std::sync::Arc::new(owners);
        *self.0.lock().expect("slot map lock") = Some(owners.clone());
        owners
    }

    fn forget(&self) {
        *self.0.lock().expect("slot map lock") = None;
    }
}

/// Positions grouped by the master of their slot (slots no master serves, alone).
fn groups(owners: &SlotOwners, slots: impl Iterator<Item = u16>) -> Vec<Vec<usize>> {
    let mut by_owner: HashMap<u16, Vec<usize>> = HashMap::new();
    for (i, slot) in slots.enumerate() {
        by_owner
            .entry(owners.owner[slot as usize])
            .or_default()
            .push(i);
    }
    by_owner.into_values().collect()
}

/// Commands per pipeline: a master's share of a large batch goes as several, in flight at once.
const PIPELINE: usize = 512;

fn utf8(key: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|e| crate::StoreError::Backend(format!("{key}: not UTF-8: {e}")))
}

impl RedisStore {
    /// GET of every key, in order. On a Cluster one pipeline per master (each key a command:
    /// a script reading a master's share in one request costs Redis ~1.9 µs a key in Lua
    /// against ~0.2 µs for a pipelined GET, and Redis time is the scarcer); elsewhere one MGET.
    pub(super) async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let super::connection::Conn::Cluster(cluster) = &self.conn else {
            return self.mget(keys).await;
        };
        let commands = keys
            .iter()
            .map(|key| {
                let mut get = ::redis::cmd("GET");
                get.arg(key);
                (sharded::key_slot(key), get)
            })
            .collect();
        let answers = self.per_master(cluster, commands).await?;
        let mut out = Vec::with_capacity(keys.len());
        for (key, answer) in keys.iter().zip(answers) {
            let value = match answer {
                Some(Value::Nil) => None,
                Some(Value::BulkString(bytes)) => Some(utf8(key, bytes)?),
                // Redirected (a slot moved): the ordinary way follows redirects.
                _ => self.mget(std::slice::from_ref(key)).await?.pop().flatten(),
            };
            out.push(value);
        }
        Ok(out)
    }

    /// The slot map, read again when it is not fresh.
    async fn slot_owners(&self, cluster: &ClusterConnection) -> Result<std::sync::Arc<SlotOwners>> {
        Ok(match self.slot_owners.fresh() {
            Some(owners) => owners,
            None => self
                .slot_owners
                .put(read_owners(&mut cluster.clone()).await?),
        })
    }

    /// Runs single-slot commands (each with the slot of its keys) on a Cluster, pipelined per
    /// master as the slot map says. An answer is `None` where the command must be sent again the
    /// ordinary way: its pipeline failed, or it was answered with an error (a redirect after a
    /// slot moved, a script not cached on that master, ...); the map is then read again.
    pub(super) async fn per_master(
        &self,
        cluster: &ClusterConnection,
        commands: Vec<(u16, Cmd)>,
    ) -> Result<Vec<Option<Value>>> {
        let owners = self.slot_owners(cluster).await?;
        let len = commands.len();
        let groups = groups(&owners, commands.iter().map(|(slot, _)| *slot));
        let mut commands: Vec<Option<(u16, Cmd)>> = commands.into_iter().map(Some).collect();
        // Each pipeline's command positions, and the pipeline with the slot that routes it.
        let mut members_of: Vec<Vec<usize>> = Vec::new();
        let mut pipelines: Vec<(u16, ::redis::Pipeline)> = Vec::new();
        for group in groups {
            for chunk in group.chunks(PIPELINE) {
                let mut pipe = ::redis::pipe();
                let mut slot = 0;
                for &i in chunk {
                    let (s, cmd) = commands[i].take().expect("each command in one group");
                    slot = s;
                    pipe.add_command(cmd);
                }
                members_of.push(chunk.to_vec());
                pipelines.push((slot, pipe));
            }
        }
        let replies = join_all(pipelines.into_iter().zip(&members_of).map(
            |((slot, pipe), members)| {
                let mut conn = cluster.clone();
                let route = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                async move { conn.route_pipeline(pipe, 0, members.len(), route).await }
            },
        ))
        .await;
        let mut out = vec![None; len];
        let mut stale = false;
        for (members, reply) in members_of.iter().zip(replies) {
            match reply {
                Ok(values) if values.len() == members.len() => {
                    for (&i, value) in members.iter().zip(values) {
                        if matches!(value, Value::ServerError(_)) {
                            stale = true;
                        } else {
                            out[i] = Some(value);
                        }
                    }
                }
                _ => stale = true,
            }
        }
        if stale {
            self.slot_owners.forget();
        }
        Ok(out)
    }

    async fn mget(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        ::redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)
    }
}

/// The slot map from the node the Cluster client asks.
async fn read_owners(conn: &mut ClusterConnection) -> Result<SlotOwners> {
    let reply: Value = ::redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(conn)
        .await
        .map_err(backend)?;
    let map = sharded::parse_slots(reply, "").map_err(backend)?;
    // Slots no master serves get owners of their own, past the masters' indices.
    let mut owner: Vec<u16> = (0..SLOTS).map(|s| u16::MAX - s).collect();
    for (index, ranges) in map.values().enumerate() {
        for &(start, end) in ranges {
            for slot in start..=end.min(SLOTS - 1) {
                owner[slot as usize] = index as u16;
            }
        }
    }
    Ok(SlotOwners {
        owner,
        read_at: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_group_by_the_master_of_their_slot() {
        // Two masters: slots below 8192 and the rest.
        let owners = SlotOwners {
            owner: (0..SLOTS).map(|s| u16::from(s >= 8192)).collect(),
            read_at: Instant::now(),
        };
        let keys: Vec<String> = (0..200).map(|i| format!("{{u:user{i}}}:p")).collect();
        let mut groups = groups(&owners, keys.iter().map(|k| sharded::key_slot(k)));
        groups.sort();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 200);
        for group in &groups {
            let low = sharded::key_slot(&keys[group[0]]) < 8192;
            assert!(
                group
                    .iter()
                    .all(|&i| (sharded::key_slot(&keys[i]) < 8192) == low),
                "one master's slots only"
            );
        }
    }
}
