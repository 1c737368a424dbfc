//! The push outbox on Redis. Everything lives under the `{q}` hash tag (see `keys`), so each
//! operation on a batch is one atomic script call, on a Cluster too:
//! - `{q}:push:task`: HASH `notification|target` → `lane:due_ms:task JSON`;
//! - `{q}:push:due:{lane}`: ZSET of members waiting, scored by due time;
//! - `{q}:push:leased:{lane}`: ZSET of members handed out, scored by the end of their lease;
//!   `next_push` first puts expired leases back among the due ones, so when a node dies, the
//!   living take over its sends;
//! - `{q}:push:done:{notification}`: SET of the targets finished, so a finished pair is never
//!   queued again; it expires with the notification's retention;
//! - `{q}:push:report:{notification}`: HASH `channel:status` → count, same expiry;
//! - `{q}:push:dead`: LIST of dead letters as JSON, newest first, capped.

use std::collections::HashMap;
use std::time::Duration;

use ::redis::{Script, ScriptInvocation};

use super::{RedisStore, backend, json_err, keys, scripts};
use crate::{
    ChannelCounts, DeadLetter, DeliveryReport, PushOutcome, PushTask, Result, SendStatus,
    StoreError,
};

/// Most tasks per script call: a call blocks Redis while it runs, so huge batches are split.
const TASKS_PER_CALL: usize = 5000;

pub struct OutboxScripts {
    enqueue: Script,
    next: Script,
    finish: Script,
}

impl OutboxScripts {
    pub fn new() -> Self {
        Self {
            enqueue: Script::new(&scripts::enqueue_push()),
            next: Script::new(&scripts::next_push()),
            finish: Script::new(&scripts::finish_push()),
        }
    }
}

/// A send's member in the outbox keys.
fn member(task: &PushTask) -> String {
    format!("{}|{}", task.notification, task.target)
}

/// The stored value's task JSON, after `lane:due:`.
fn task_json(stored: &str) -> Option<&str> {
    let (_, rest) = stored.split_once(':')?;
    Some(rest.split_once(':')?.1)
}

/// The distinct notifications of a batch, in the order their keys are passed to a script.
struct Notifications<'a> {
    index: HashMap<&'a str, usize>,
    ids: Vec<&'a str>,
}

impl<'a> Notifications<'a> {
    fn of(tasks: impl Iterator<Item = &'a PushTask>) -> Self {
        let mut index = HashMap::new();
        let mut ids = Vec::new();
        for task in tasks {
            index.entry(task.notification.as_str()).or_insert_with(|| {
                ids.push(task.notification.as_str());
                ids.len()
            });
        }
        Self { index, ids }
    }

    /// 1-based, as the scripts index their keys.
    fn index_of(&self, task: &PushTask) -> usize {
        self.index[task.notification.as_str()]
    }

    fn add_keys(&self, call: &mut ScriptInvocation<'_>) {
        for id in &self.ids {
            call.key(keys::push_done(id)).key(keys::push_report(id));
        }
    }

    /// The count, then when each notification's done set and report expire.
    fn add_expiries(&self, call: &mut ScriptInvocation<'_>, retention_ms: i64) {
        let now = herald_core::time::now_ms();
        call.arg(self.ids.len());
        for id in &self.ids {
            call.arg(expires_at(id, retention_ms, now));
        }
    }
}

/// When a notification's outbox records and report expire (Unix ms): its retention after it was
/// accepted (ids are ULIDs and carry that time), or after now for other ids.
pub(super) fn expires_at(notification: &str, retention_ms: i64, now: i64) -> i64 {
    let accepted = ulid::Ulid::from_string(notification)
        .map(|u| u.timestamp_ms() as i64)
        .unwrap_or(now);
    accepted.saturating_add(retention_ms)
}

impl RedisStore {
    pub(super) async fn enqueue_push_tasks(&self, tasks: &[PushTask]) -> Result<u64> {
        let mut added = 0;
        for chunk in tasks.chunks(TASKS_PER_CALL) {
            let notifications = Notifications::of(chunk.iter());
            let mut call = self.outbox_scripts.enqueue.prepare_invoke();
            call.key(keys::PUSH_TASKS);
            for lane in 0..3 {
                call.key(keys::push_due(lane));
            }
            notifications.add_keys(&mut call);
            notifications.add_expiries(&mut call, self.options.notification_retention_ms);
            for task in chunk {
                let json = serde_json::to_string(task).map_err(json_err)?;
                call.arg(notifications.index_of(task))
                    .arg(member(task))
                    .arg(&task.target)
                    .arg(task.lane.lane())
                    .arg(task.due_ms)
                    .arg(task.channel())
                    .arg(json);
            }
            added += call
                .invoke_async::<u64>(&mut self.conn())
                .await
                .map_err(backend)?;
        }
        Ok(added)
    }

    pub(super) async fn next_push_tasks(
        &self,
        max: usize,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Vec<PushTask>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let lease_end = now_ms.saturating_add(lease.as_millis() as i64);
        let mut call = self.outbox_scripts.next.key(keys::PUSH_TASKS);
        for lane in 0..3 {
            call.key(keys::push_due(lane));
        }
        for lane in 0..3 {
            call.key(keys::push_leased(lane));
        }
        call.arg(now_ms).arg(lease_end).arg(max);
        let stored: Vec<String> = call.invoke_async(&mut self.conn()).await.map_err(backend)?;
        stored
            .iter()
            .map(|value| {
                let json = task_json(value)
                    .ok_or_else(|| StoreError::Backend("corrupt outbox task in redis".into()))?;
                serde_json::from_str(json).map_err(json_err)
            })
            .collect()
    }

    pub(super) async fn finish_push_tasks(&self, outcomes: &[PushOutcome]) -> Result<()> {
        let at = herald_core::time::now_ms();
        for chunk in outcomes.chunks(TASKS_PER_CALL) {
            let notifications = Notifications::of(chunk.iter().map(PushOutcome::task));
            let mut call = self.outbox_scripts.finish.key(keys::PUSH_TASKS);
            for lane in 0..3 {
                call.key(keys::push_due(lane));
            }
            for lane in 0..3 {
                call.key(keys::push_leased(lane));
            }
            call.key(keys::PUSH_DEAD);
            notifications.add_keys(&mut call);
            call.arg(self.options.dead_letters_max);
            notifications.add_expiries(&mut call, self.options.notification_retention_ms);
            for outcome in chunk {
                let task = outcome.task();
                call.arg(notifications.index_of(task))
                    .arg(member(task))
                    .arg(&task.target)
                    .arg(task.channel());
                match outcome {
                    PushOutcome::Retry { task, due_ms } => {
                        let retried = task.retried(*due_ms);
                        let json = serde_json::to_string(&retried).map_err(json_err)?;
                        call.arg("retry").arg(due_ms).arg(json);
                    }
                    PushOutcome::Done {
                        task,
                        status,
                        reason,
                    } => {
                        let dead = if *status == SendStatus::Failed {
                            let letter = DeadLetter::of(task, reason.as_deref(), at);
                            serde_json::to_string(&letter).map_err(json_err)?
                        } else {
                            String::new()
                        };
                        call.arg(status.as_str()).arg(dead).arg("");
                    }
                }
            }
            call.invoke_async::<()>(&mut self.conn())
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    pub(super) async fn outbox_depths(&self) -> Result<[u64; 3]> {
        let mut pipe = ::redis::pipe();
        for lane in 0..3 {
            pipe.zcard(keys::push_due(lane))
                .zcard(keys::push_leased(lane));
        }
        // One slot, so one pipeline even on a Cluster.
        let counts: Vec<u64> = pipe.query_async(&mut self.conn()).await.map_err(backend)?;
        let mut depths = [0; 3];
        for (lane, depth) in depths.iter_mut().enumerate() {
            *depth = counts[2 * lane] + counts[2 * lane + 1];
        }
        Ok(depths)
    }

    pub(super) async fn push_report(&self, notification: &str) -> Result<DeliveryReport> {
        let fields: HashMap<String, u64> = ::redis::cmd("HGETALL")
            .arg(keys::push_report(notification))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let mut report = DeliveryReport::new();
        for (field, n) in fields {
            let Some((channel, counter)) = field.split_once(':') else {
                continue;
            };
            let counts: &mut ChannelCounts = report.entry(channel.to_owned()).or_default();
            counts.add_named(counter, n);
        }
        Ok(report)
    }

    pub(super) async fn newest_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.newest_of_list(keys::PUSH_DEAD, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_carry_the_json_after_lane_and_due() {
        assert_eq!(task_json("1:-5:{\"a\":\"x:y\"}"), Some("{\"a\":\"x:y\"}"));
        assert_eq!(task_json("garbage"), None);
    }
}
