//! Queued jobs held in memory, one lane per priority; the durable copy is the `queue` keyspace.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::Job;

#[derive(Default)]
pub struct Lanes {
    lanes: Mutex<[VecDeque<Job>; 3]>,
    ready: Notify,
}

impl Lanes {
    pub fn push(&self, jobs: impl IntoIterator<Item = Job>) {
        let mut lanes = self.lanes.lock().expect("lanes lock");
        for job in jobs {
            lanes[job.lane.lane()].push_back(job);
        }
        drop(lanes);
        self.ready.notify_waiters();
    }

    /// Takes up to `max` jobs, highest lane first; waits up to `wait` when all lanes are empty.
    pub async fn take(&self, max: usize, wait: Duration) -> Vec<Job> {
        let notified = self.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let jobs = self.try_take(max);
        if !jobs.is_empty() || wait.is_zero() {
            return jobs;
        }
        let _ = tokio::time::timeout(wait, notified).await;
        self.try_take(max)
    }

    fn try_take(&self, max: usize) -> Vec<Job> {
        let mut lanes = self.lanes.lock().expect("lanes lock");
        let mut jobs = Vec::new();
        for lane in lanes.iter_mut() {
            while jobs.len() < max {
                match lane.pop_front() {
                    Some(job) => jobs.push(job),
                    None => break,
                }
            }
        }
        jobs
    }

    pub fn depths(&self) -> [u64; 3] {
        let lanes = self.lanes.lock().expect("lanes lock");
        [
            lanes[0].len() as u64,
            lanes[1].len() as u64,
            lanes[2].len() as u64,
        ]
    }
}
