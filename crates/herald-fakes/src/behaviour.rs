//! Failure injection every fake supports: fail the next N requests, delay every request, and
//! sets of dead and invalid tokens. Reads on the request path are atomics, or a read lock only
//! while a set is non-empty.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

/// An injected failure: the status, plus headers such as `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: StatusCode,
    /// Seconds, sent as `Retry-After`.
    pub retry_after: Option<u64>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Failure {
    /// A failure answering `status`, e.g. `Failure::status(503)`.
    ///
    /// # Panics
    /// If `status` is not an HTTP status code (100..=999).
    pub fn status(status: u16) -> Self {
        Self {
            status: StatusCode::from_u16(status).expect("an HTTP status code"),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// Adds `Retry-After: <seconds>`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a response header.
    ///
    /// # Panics
    /// If `name` or `value` is not a valid header name or value.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::try_from(name).expect("a header name");
        let value = HeaderValue::try_from(value).expect("a header value");
        self.headers.push((name, value));
        self
    }
}

/// A set of ids (device tokens, subscription ids, paths) whose emptiness is checked lock-free.
#[derive(Debug, Default)]
struct IdSet {
    len: AtomicUsize,
    ids: RwLock<HashSet<String>>,
}

impl IdSet {
    fn insert(&self, id: String) {
        let mut ids = self.ids.write().expect("id set lock");
        ids.insert(id);
        self.len.store(ids.len(), Ordering::Release);
    }

    fn remove(&self, id: &str) {
        let mut ids = self.ids.write().expect("id set lock");
        ids.remove(id);
        self.len.store(ids.len(), Ordering::Release);
    }

    fn clear(&self) {
        let mut ids = self.ids.write().expect("id set lock");
        ids.clear();
        self.len.store(0, Ordering::Release);
    }

    fn contains(&self, id: &str) -> bool {
        self.len.load(Ordering::Acquire) > 0 && self.ids.read().expect("id set lock").contains(id)
    }

    fn to_vec(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .ids
            .read()
            .expect("id set lock")
            .iter()
            .cloned()
            .collect();
        ids.sort();
        ids
    }
}

/// How a fake misbehaves. Every fake owns one; tests reach it through the fake's `behaviour()`.
#[derive(Debug)]
pub struct Behaviour {
    failures_left: AtomicU64,
    failure: Mutex<Failure>,
    delay_micros: AtomicU64,
    dead: IdSet,
    invalid: IdSet,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            failures_left: AtomicU64::new(0),
            failure: Mutex::new(Failure::status(503)),
            delay_micros: AtomicU64::new(0),
            dead: IdSet::default(),
            invalid: IdSet::default(),
        }
    }
}

impl Behaviour {
    /// The next `count` requests to the fake's main endpoint answer `failure`, in the
    /// provider's own error shape.
    pub fn fail_next(&self, count: u64, failure: Failure) {
        *self.failure.lock().expect("failure lock") = failure;
        self.failures_left.store(count, Ordering::Release);
    }

    /// Injected failures still to be answered.
    pub fn failures_left(&self) -> u64 {
        self.failures_left.load(Ordering::Acquire)
    }

    /// Every request waits `delay` before it is answered (zero turns the delay off).
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.delay_micros.store(micros, Ordering::Relaxed);
    }

    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_micros.load(Ordering::Relaxed))
    }

    /// Marks a device token (FCM, APNs), subscription id (Web Push) or path (webhook) as gone:
    /// the provider answers that it no longer exists.
    pub fn mark_dead(&self, id: impl Into<String>) {
        self.dead.insert(id.into());
    }

    /// Undoes [`Behaviour::mark_dead`].
    pub fn revive(&self, id: &str) {
        self.dead.remove(id);
    }

    pub fn is_dead(&self, id: &str) -> bool {
        self.dead.contains(id)
    }

    pub fn dead_ids(&self) -> Vec<String> {
        self.dead.to_vec()
    }

    /// Marks a device token as malformed in the provider's eyes (FCM `INVALID_ARGUMENT`,
    /// APNs `BadDeviceToken`).
    pub fn mark_invalid(&self, id: impl Into<String>) {
        self.invalid.insert(id.into());
    }

    pub fn is_invalid(&self, id: &str) -> bool {
        self.invalid.contains(id)
    }

    pub fn invalid_ids(&self) -> Vec<String> {
        self.invalid.to_vec()
    }

    /// Back to normal: no failures, no delay, no dead or invalid ids.
    pub fn reset(&self) {
        self.failures_left.store(0, Ordering::Release);
        self.set_delay(Duration::ZERO);
        self.dead.clear();
        self.invalid.clear();
    }

    /// Applies an update received on `POST /_fake/behaviour`.
    pub fn apply(&self, update: &BehaviourUpdate) -> Result<(), String> {
        if update.reset {
            self.reset();
        }
        if let Some(count) = update.fail_next {
            let status = update.status.unwrap_or(503);
            if !(100..=599).contains(&status) {
                return Err(format!("status {status} is not an HTTP status"));
            }
            let mut failure = Failure::status(status);
            failure.retry_after = update.retry_after;
            self.fail_next(count, failure);
        }
        if let Some(millis) = update.delay_ms {
            self.set_delay(Duration::from_millis(millis));
        }
        for id in &update.dead_tokens {
            self.mark_dead(id.clone());
        }
        for id in &update.invalid_tokens {
            self.mark_invalid(id.clone());
        }
        for id in &update.revive_tokens {
            self.revive(id);
        }
        Ok(())
    }

    /// The current settings, as `/_fake/stats` and `/_fake/behaviour` report them.
    pub fn summary(&self) -> BehaviourSummary {
        let failure = self.failure.lock().expect("failure lock").clone();
        BehaviourSummary {
            failures_left: self.failures_left(),
            failure_status: failure.status.as_u16(),
            retry_after: failure.retry_after,
            delay_ms: u64::try_from(self.delay().as_millis()).unwrap_or(u64::MAX),
            dead_tokens: self.dead_ids(),
            invalid_tokens: self.invalid_ids(),
        }
    }

    /// Waits the configured delay, then takes one injected failure if any are left.
    pub(crate) async fn before_request(&self) -> Option<Failure> {
        let delay = self.delay_micros.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        self.take_failure()
    }

    fn take_failure(&self) -> Option<Failure> {
        // Decrement only while positive, so concurrent requests take exactly `count` failures.
        self.failures_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            })
            .ok()?;
        Some(self.failure.lock().expect("failure lock").clone())
    }
}

/// The JSON body of `POST /_fake/behaviour`. Every field is optional, e.g.
/// `{"fail_next":3,"status":503,"retry_after":1,"delay_ms":0,"dead_tokens":["..."]}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BehaviourUpdate {
    /// Clear everything first (applied before the other fields).
    pub reset: bool,
    /// Fail this many of the next requests…
    pub fail_next: Option<u64>,
    /// …with this status (default 503)…
    pub status: Option<u16>,
    /// …and this `Retry-After` in seconds.
    pub retry_after: Option<u64>,
    /// Delay every request by this many milliseconds (0 turns it off).
    pub delay_ms: Option<u64>,
    /// Ids to mark dead (tokens, subscription ids, webhook paths).
    #[serde(alias = "dead_ids")]
    pub dead_tokens: Vec<String>,
    /// Tokens to mark invalid.
    pub invalid_tokens: Vec<String>,
    /// Ids to take off the dead list.
    #[serde(alias = "revive_ids")]
    pub revive_tokens: Vec<String>,
    /// Turn keeping a copy of every accepted request on or off (counters always run).
    pub recording: Option<bool>,
}

/// A snapshot of a [`Behaviour`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BehaviourSummary {
    pub failures_left: u64,
    pub failure_status: u16,
    pub retry_after: Option<u64>,
    pub delay_ms: u64,
    pub dead_tokens: Vec<String>,
    pub invalid_tokens: Vec<String>,
}
