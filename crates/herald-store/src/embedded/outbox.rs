//! The embedded engine's push outbox.
//!
//! Durable, written by the writer thread in the same batch as the report counters:
//! - `push_tasks`: `notification \0 target` → [`TaskState`]: where a pending task sits in the
//!   due index, or a done marker, so a finished pair is never queued again.
//! - `push_due`: `lane due_ms notification \0 target` → the task's JSON, so `next_push` reads
//!   tasks in hand-out order with one range scan per lane and no further lookups.
//!
//! In memory ([`Outbox`]): the tasks handed out and not finished yet (leased), and per lane a
//! floor below which every due entry is leased, so a scan starts past the tasks in flight and
//! past the tombstones finished tasks leave at the front of the index. Both start empty when the
//! store opens, so tasks handed out before a restart are handed out again.

use std::collections::HashSet;
use std::sync::Mutex;

use fjall::Keyspace;

use super::dead_letters::DeadLetters;
use super::keys::{self, PUSH_DUE_HEADER};
use super::overlay::{Overlay, backend};
use super::push_reports::ReportDeltas;
use super::records::*;
use crate::{DeadLetter, PushOutcome, PushTask, Result, SendStatus};

pub struct Outbox {
    state: Mutex<LeaseState>,
}

struct LeaseState {
    /// Identities (`notification \0 target`) of the tasks handed out.
    leased: HashSet<Vec<u8>>,
    /// Per lane, a due key below which every entry is leased (or gone).
    floors: [Vec<u8>; 3],
    /// Tasks in the outbox per lane, pending and leased.
    depths: [u64; 3],
}

impl Outbox {
    /// Counts the outbox once at open; from then on the writer keeps the counts.
    pub fn open(due: &Keyspace) -> Result<Self> {
        let mut depths = [0u64; 3];
        for guard in due.iter() {
            let key = guard.key().map_err(backend)?;
            if let Some(depth) = depths.get_mut(usize::from(key[0])) {
                *depth += 1;
            }
        }
        Ok(Self {
            state: Mutex::new(LeaseState {
                leased: HashSet::new(),
                floors: [vec![0], vec![1], vec![2]],
                depths,
            }),
        })
    }

    /// Up to `max` tasks due at `now_ms`, highest lane first, and leases them.
    pub fn next(&self, due: &Keyspace, max: usize, now_ms: i64) -> Result<Vec<PushTask>> {
        // Held for the whole scan: two callers never take the same task, and the writer applies
        // a commit's changes either before or after a scan, never in the middle of one.
        let mut state = self.state.lock().expect("outbox lock");
        let mut taken: Vec<(Vec<u8>, PushTask)> = Vec::new();
        let mut floors = state.floors.clone();
        for (lane, floor) in floors.iter_mut().enumerate() {
            if taken.len() >= max {
                break;
            }
            let end = keys::push_due_bound(lane as u8, now_ms.saturating_add(1));
            if *floor >= end {
                continue;
            }
            let mut next_floor = end.clone();
            for guard in due.range(floor.clone()..end) {
                let (key, value) = guard.into_inner().map_err(backend)?;
                let identity = &key[PUSH_DUE_HEADER..];
                if state.leased.contains(identity) {
                    continue;
                }
                if taken.len() == max {
                    next_floor = key.to_vec();
                    break;
                }
                match from_json::<PushTask>(&value) {
                    Ok(task) => taken.push((identity.to_vec(), task)),
                    Err(e) => tracing::warn!(error = %e, "unreadable outbox task skipped"),
                }
            }
            *floor = next_floor;
        }
        state.floors = floors;
        let mut tasks = Vec::with_capacity(taken.len());
        for (identity, task) in taken {
            state.leased.insert(identity);
            tasks.push(task);
        }
        Ok(tasks)
    }

    pub fn depths(&self) -> [u64; 3] {
        self.state.lock().expect("outbox lock").depths
    }

    /// Applies what a committed batch changed. Called after the commit, so a scan that misses a
    /// change now sees it on its next call.
    pub fn committed(&self, changes: OutboxChanges) {
        if changes.is_empty() {
            return;
        }
        let mut state = self.state.lock().expect("outbox lock");
        for identity in &changes.released {
            state.leased.remove(identity);
        }
        for (lane, lowest) in changes.lowest_due.into_iter().enumerate() {
            if let Some(key) = lowest
                && key < state.floors[lane]
            {
                state.floors[lane] = key;
            }
        }
        for (depth, delta) in state.depths.iter_mut().zip(changes.depth_delta) {
            *depth = depth.saturating_add_signed(delta);
        }
    }
}

/// What one batch changed in the outbox, for [`Outbox::committed`].
#[derive(Default)]
pub struct OutboxChanges {
    released: Vec<Vec<u8>>,
    lowest_due: [Option<Vec<u8>>; 3],
    depth_delta: [i64; 3],
}

impl OutboxChanges {
    fn is_empty(&self) -> bool {
        self.released.is_empty()
            && self.lowest_due.iter().all(Option::is_none)
            && self.depth_delta == [0; 3]
    }

    /// A due entry was written: scans must start at or below it.
    fn due_at(&mut self, lane: u8, key: &[u8]) {
        let lowest = &mut self.lowest_due[usize::from(lane)];
        if lowest.as_deref().is_none_or(|l| key < l) {
            *lowest = Some(key.to_vec());
        }
    }
}

/// Where a send due at once is filed in the due index: below every real due time (so it is due
/// for any `now`), in the order it was queued. The index then grows at its end, and a scan from
/// the lane's floor never walks back over the tombstones of finished sends; filed under 0 in
/// target order, each batch a campaign queues would move the floor back to the start.
fn filing_time() -> i64 {
    i64::MIN + herald_core::time::now_ms()
}

/// Queues the tasks whose `(notification, target)` the outbox has not seen; returns how many.
pub fn enqueue(
    overlay: &mut Overlay<'_>,
    changes: &mut OutboxChanges,
    reports: &mut ReportDeltas,
    tasks: &[PushTask],
) -> Result<u64> {
    let mut added = 0;
    let filed_at = filing_time();
    for task in tasks {
        let identity = keys::push_task(&task.notification, &task.target);
        if overlay.get(PUSH_TASKS, &identity)?.is_some() {
            continue; // pending or done: never twice
        }
        let lane = task.lane.lane() as u8;
        let due_ms = if task.due_ms <= 0 {
            filed_at
        } else {
            task.due_ms
        };
        let due = keys::push_due(lane, due_ms, &identity);
        let state = TaskState::Pending { lane, due_ms };
        overlay.put(PUSH_TASKS, identity, state.encode());
        changes.due_at(lane, &due);
        changes.depth_delta[usize::from(lane)] += 1;
        overlay.put(PUSH_DUE, due, to_json(task));
        reports.queued(&task.notification, task.channel());
        added += 1;
    }
    Ok(added)
}

/// Records how sends ended; outcomes of tasks no longer pending change nothing.
pub fn finish(
    overlay: &mut Overlay<'_>,
    changes: &mut OutboxChanges,
    reports: &mut ReportDeltas,
    dead: &mut DeadLetters,
    outcomes: &[PushOutcome],
    at: i64,
) -> Result<()> {
    for outcome in outcomes {
        let task = outcome.task();
        let identity = keys::push_task(&task.notification, &task.target);
        let Some(raw) = overlay.get(PUSH_TASKS, &identity)? else {
            continue;
        };
        let TaskState::Pending { lane, due_ms } = TaskState::decode(&raw)? else {
            continue;
        };
        overlay.delete(PUSH_DUE, keys::push_due(lane, due_ms, &identity));
        changes.released.push(identity.clone());
        match outcome {
            PushOutcome::Retry { task, due_ms } => {
                let due = keys::push_due(lane, *due_ms, &identity);
                let state = TaskState::Pending {
                    lane,
                    due_ms: *due_ms,
                };
                overlay.put(PUSH_TASKS, identity, state.encode());
                changes.due_at(lane, &due);
                overlay.put(PUSH_DUE, due, to_json(&task.retried(*due_ms)));
            }
            PushOutcome::Done {
                task,
                status,
                reason,
            } => {
                overlay.put(PUSH_TASKS, identity, TaskState::Done.encode());
                changes.depth_delta[usize::from(lane)] -= 1;
                reports.finished(&task.notification, task.channel(), *status);
                if *status == SendStatus::Failed {
                    dead.push(overlay, &DeadLetter::of(task, reason.as_deref(), at));
                }
            }
        }
    }
    Ok(())
}

/// Forgets the done markers of notifications older than `cutoff` (a notification id), so
/// `push_tasks` does not grow forever; pending tasks stay. Looks at `max` entries at most.
pub fn purge_done(
    overlay: &mut Overlay<'_>,
    tasks: &Keyspace,
    cutoff: &str,
    max: usize,
) -> Result<u64> {
    let mut purged = 0;
    for guard in tasks.range(..cutoff.as_bytes()).take(max) {
        let (key, value) = guard.into_inner().map_err(backend)?;
        if TaskState::decode(&value)? == TaskState::Done {
            overlay.delete(PUSH_TASKS, key.to_vec());
            purged += 1;
        }
    }
    Ok(purged)
}
