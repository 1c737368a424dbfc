//! A provider's concurrency limit that serves waiting sends by priority lane: when a slot frees
//! up, a waiting `high` send gets it before any `normal` or `low` one, however long those have
//! waited. The sender keeps thousands of sends in flight, most of them waiting here for one of
//! the provider's slots, so a first-come queue would put a `high` send behind the whole bulk.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use herald_core::Priority;
use tokio::sync::oneshot;

pub struct LaneGate {
    state: Mutex<GateState>,
}

struct GateState {
    free: usize,
    /// Waiters per lane, in [`Priority::LANES`] order, oldest first.
    waiting: [VecDeque<oneshot::Sender<()>>; 3],
}

/// One of the gate's slots; freed when dropped.
pub struct Slot {
    gate: Arc<LaneGate>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// A waiter whose future was dropped hands on a slot it was given meanwhile.
struct Waiting {
    rx: oneshot::Receiver<()>,
    gate: Arc<LaneGate>,
    granted: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.granted {
            self.rx.close();
            if self.rx.try_recv().is_ok() {
                self.gate.release();
            }
        }
    }
}

impl LaneGate {
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GateState {
                free: slots,
                waiting: Default::default(),
            }),
        })
    }

    /// Waits for a slot, served before every waiter of a lower lane.
    pub async fn acquire(self: &Arc<Self>, lane: Priority) -> Slot {
        let rx = {
            let mut state = self.state.lock().expect("gate lock");
            if state.free > 0 {
                state.free -= 1;
                return Slot { gate: self.clone() };
            }
            let (tx, rx) = oneshot::channel();
            state.waiting[lane.lane()].push_back(tx);
            rx
        };
        let mut waiting = Waiting {
            rx,
            gate: self.clone(),
            granted: false,
        };
        // The gate never drops a waiter's sender without sending, so this always succeeds.
        let _ = (&mut waiting.rx).await;
        waiting.granted = true;
        Slot { gate: self.clone() }
    }

    /// Hands the slot to the oldest waiter of the highest lane, or frees it.
    fn release(&self) {
        let mut state = self.state.lock().expect("gate lock");
        for lane in &mut state.waiting {
            while let Some(waiter) = lane.pop_front() {
                if waiter.send(()).is_ok() {
                    return;
                }
            }
        }
        state.free += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_highest_lane_waiting() {
        let gate = LaneGate::new(1);
        let held = gate.acquire(Priority::Low).await;
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        for (i, lane) in [
            Priority::Low,
            Priority::Low,
            Priority::High,
            Priority::Normal,
        ]
        .into_iter()
        .enumerate()
        {
            let (gate, order_tx) = (gate.clone(), order_tx.clone());
            tokio::spawn(async move {
                let _slot = gate.acquire(lane).await;
                order_tx.send((i, lane)).unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(held);
        let mut served = Vec::new();
        for _ in 0..4 {
            served.push(order.recv().await.unwrap());
        }
        assert_eq!(
            served,
            [
                (2, Priority::High),
                (3, Priority::Normal),
                (0, Priority::Low),
                (1, Priority::Low)
            ]
        );
    }

    #[tokio::test]
    async fn a_cancelled_waiter_loses_no_slot() {
        let gate = LaneGate::new(1);
        let held = gate.acquire(Priority::Normal).await;
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire(Priority::High).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(1), gate.acquire(Priority::Low)).await;
        assert!(again.is_ok(), "the slot came back");
    }
}
