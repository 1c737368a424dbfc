//! What a fake received: counters that always run, copies of accepted requests while recording
//! is on, and a wait for "N accepted" that costs the request path nothing when nobody waits.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::Notify;

/// Statuses 100..=599, one counter each.
const STATUS_SLOTS: usize = 500;

/// Accepted requests (copies and a count) and rejections counted by status.
#[derive(Debug)]
pub struct Received<T> {
    records: Mutex<Vec<T>>,
    recording: AtomicBool,
    accepted: AtomicU64,
    rejected: Box<[AtomicU64]>,
    waiters: AtomicUsize,
    arrived: Notify,
}

impl<T> Default for Received<T> {
    fn default() -> Self {
        Self {
            records: Mutex::new(Vec::new()),
            recording: AtomicBool::new(true),
            accepted: AtomicU64::new(0),
            rejected: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            waiters: AtomicUsize::new(0),
            arrived: Notify::new(),
        }
    }
}

impl<T: Clone> Received<T> {
    /// Counts an accepted request; `record` is only called while recording is on.
    pub(crate) fn accept(&self, record: impl FnOnce() -> T) {
        if self.recording.load(Ordering::Relaxed) {
            let record = record();
            self.records.lock().expect("records lock").push(record);
        }
        self.accepted.fetch_add(1, Ordering::SeqCst);
        // SeqCst pairs with `wait_for`: either it sees the new count or we see its waiter.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.arrived.notify_waiters();
        }
    }

    /// Counts a rejected request by its status.
    pub(crate) fn reject(&self, status: StatusCode) {
        if let Some(slot) = usize::from(status.as_u16())
            .checked_sub(100)
            .and_then(|index| self.rejected.get(index))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Copies of the accepted requests, oldest first.
    pub fn records(&self) -> Vec<T> {
        self.records.lock().expect("records lock").clone()
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Rejections so far, by status code.
    pub fn rejected(&self) -> BTreeMap<u16, u64> {
        self.rejected
            .iter()
            .zip(100u16..)
            .filter_map(|(count, status)| {
                let count = count.load(Ordering::Relaxed);
                (count > 0).then_some((status, count))
            })
            .collect()
    }

    /// Turns keeping copies on or off (off for benchmarks); counters always run.
    pub fn set_recording(&self, on: bool) {
        self.recording.store(on, Ordering::Relaxed);
    }

    pub fn is_recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// Drops the copies kept so far (counters stay).
    pub fn clear(&self) {
        self.records.lock().expect("records lock").clear();
    }

    /// Waits until at least `count` requests were accepted in all; false on timeout.
    pub async fn wait_for(&self, count: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let _waiting = WaiterGuard::register(&self.waiters);
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            // Registered before the check, so an accept right after it still wakes us.
            arrived.as_mut().enable();
            if self.accepted() >= count {
                break true;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break self.accepted() >= count;
            }
        }
    }

    pub fn common_stats(&self) -> CommonStats {
        CommonStats {
            accepted: self.accepted(),
            rejected: self.rejected(),
            recording: self.is_recording(),
        }
    }
}

/// Counts a waiter for as long as `wait_for` runs, even if its future is dropped early.
struct WaiterGuard<'a>(&'a AtomicUsize);

impl<'a> WaiterGuard<'a> {
    fn register(waiters: &'a AtomicUsize) -> Self {
        waiters.fetch_add(1, Ordering::SeqCst);
        Self(waiters)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counters every fake reports in `/_fake/stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommonStats {
    pub accepted: u64,
    /// Rejections by status code (injected failures included).
    pub rejected: BTreeMap<u16, u64>,
    pub recording: bool,
}
