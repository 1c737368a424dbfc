//! What a fake received: counters that always run, copies of accepted requests while recording
//! is on (all of them, or only those a filter picks), and waits for "N accepted" / "N copies
//! kept" that cost the request path nothing when nobody waits.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::Notify;

/// Statuses 100..=599, one counter each.
const STATUS_SLOTS: usize = 500;

/// Decides which accepted requests are copied; see [`Received::set_filter`].
pub type RecordFilter<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// Accepted requests (copies and a count) and rejections counted by status.
#[derive(Debug)]
pub struct Received<T> {
    records: Mutex<Vec<T>>,
    recording: AtomicBool,
    filter: Filter<T>,
    accepted: AtomicU64,
    rejected: Box<[AtomicU64]>,
    waiters: AtomicUsize,
    arrived: Notify,
    /// Waiters for copies, woken only when a copy is kept, so a wait for one rare request is
    /// not woken by every request of a load test.
    record_waiters: AtomicUsize,
    kept: Notify,
}

/// The optional filter; its own type because closures have no `Debug`.
struct Filter<T>(RwLock<Option<RecordFilter<T>>>);

impl<T> fmt::Debug for Filter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.0.read().map(|filter| filter.is_some()).unwrap_or(true);
        f.write_str(if set { "Filter(set)" } else { "Filter(none)" })
    }
}

impl<T> Default for Received<T> {
    fn default() -> Self {
        Self {
            records: Mutex::new(Vec::new()),
            recording: AtomicBool::new(true),
            filter: Filter(RwLock::new(None)),
            accepted: AtomicU64::new(0),
            rejected: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            waiters: AtomicUsize::new(0),
            arrived: Notify::new(),
            record_waiters: AtomicUsize::new(0),
            kept: Notify::new(),
        }
    }
}

impl<T: Clone> Received<T> {
    /// Counts an accepted request; `record` is only called while recording is on, and the copy
    /// is kept if the filter, if any, picks it.
    pub(crate) fn accept(&self, record: impl FnOnce() -> T) {
        if self.recording.load(Ordering::Relaxed) {
            let record = record();
            let keep = match &*self.filter.0.read().expect("filter lock") {
                Some(filter) => filter(&record),
                None => true,
            };
            if keep {
                self.records.lock().expect("records lock").push(record);
                // SeqCst pairs with `wait_for_records`, as `waiters` does with `wait_for`.
                if self.record_waiters.load(Ordering::SeqCst) > 0 {
                    self.kept.notify_waiters();
                }
            }
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

    /// While recording is on, keeps copies only of the accepted requests `keep` returns true
    /// for; `None` keeps every one again. Counters still count every request. `keep` runs once
    /// per accepted request on the request path (so it can note when a request of interest
    /// arrived); it must be quick and must not call back into this fake.
    pub fn set_filter(&self, keep: Option<RecordFilter<T>>) {
        *self.filter.0.write().expect("filter lock") = keep;
    }

    /// Drops the copies kept so far (counters stay).
    pub fn clear(&self) {
        self.records.lock().expect("records lock").clear();
    }

    fn kept_count(&self) -> usize {
        self.records.lock().expect("records lock").len()
    }

    /// Waits until at least `count` copies are kept (see [`clear`](Self::clear)); false on
    /// timeout. Unlike [`wait_for`](Self::wait_for) it wakes only when a copy is kept.
    pub async fn wait_for_records(&self, count: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let _waiting = WaiterGuard::register(&self.record_waiters);
        loop {
            let kept = self.kept.notified();
            tokio::pin!(kept);
            // Registered before the check, so a copy kept right after it still wakes us.
            kept.as_mut().enable();
            if self.kept_count() >= count {
                break true;
            }
            if tokio::time::timeout_at(deadline, kept).await.is_err() {
                break self.kept_count() >= count;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_filter_keeps_only_the_requests_it_picks_and_counts_all() {
        let received = Received::<String>::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        received.set_filter(Some(Arc::new(move |token: &String| {
            counter.fetch_add(1, Ordering::Relaxed);
            token.starts_with("watch-")
        })));
        for token in ["bulk-1", "watch-1", "bulk-2"] {
            received.accept(|| token.to_owned());
        }
        assert_eq!(received.accepted(), 3);
        assert_eq!(received.records(), ["watch-1"]);
        assert_eq!(
            seen.load(Ordering::Relaxed),
            3,
            "the filter sees every request"
        );

        // Recording off: nothing is copied and the filter is not asked.
        received.set_recording(false);
        received.accept(|| "watch-2".to_owned());
        assert_eq!((received.accepted(), received.records().len()), (4, 1));
        assert_eq!(seen.load(Ordering::Relaxed), 3);

        // No filter: every request is copied again.
        received.set_recording(true);
        received.set_filter(None);
        received.accept(|| "bulk-3".to_owned());
        assert_eq!(received.records(), ["watch-1", "bulk-3"]);
    }

    #[tokio::test]
    async fn wait_for_records_wakes_when_a_copy_is_kept() {
        let received = Arc::new(Received::<String>::default());
        received.set_filter(Some(Arc::new(|token: &String| token == "watch")));
        assert!(
            !received
                .wait_for_records(1, Duration::from_millis(20))
                .await
        );
        let waiter = {
            let received = received.clone();
            tokio::spawn(async move { received.wait_for_records(1, Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        received.accept(|| "bulk".to_owned());
        received.accept(|| "watch".to_owned());
        assert!(waiter.await.unwrap());
        assert_eq!(received.accepted(), 2);
        received.clear();
        assert!(
            !received
                .wait_for_records(1, Duration::from_millis(20))
                .await
        );
    }
}
