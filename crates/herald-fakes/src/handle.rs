//! What every running fake offers, written once: where it listens, how to steer it, and what it
//! received.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::behaviour::Behaviour;
use crate::record::{Received, RecordFilter};
use crate::server::FakeServer;

pub trait FakeHandle {
    /// A copy of one accepted request.
    type Record: Clone + Send;

    /// The server, its failure injection and its records; each fake's own wiring.
    fn parts(&self) -> (&FakeServer, &Behaviour, &Received<Self::Record>);

    /// `https://127.0.0.1:PORT`: the base URL (or origin) to configure in a client.
    fn url(&self) -> String {
        self.parts().0.url()
    }

    fn addr(&self) -> SocketAddr {
        self.parts().0.addr()
    }

    fn behaviour(&self) -> &Behaviour {
        self.parts().1
    }

    /// The accepted requests, oldest first (empty while recording is off).
    fn received(&self) -> Vec<Self::Record> {
        self.parts().2.records()
    }

    /// Waits until `count` requests were accepted in all; false on timeout.
    fn wait_for(&self, count: u64, timeout: Duration) -> impl Future<Output = bool> + Send {
        self.parts().2.wait_for(count, timeout)
    }

    /// Keeping copies of accepted requests is on by default; turn it off for benchmarks.
    fn set_recording(&self, on: bool) {
        self.parts().2.set_recording(on);
    }

    /// While recording is on, keeps copies only of the requests `keep` picks (`None`: all);
    /// counters still count every request. For watching a few requests among a load test:
    /// `keep` runs on the request path for each accepted request, so it may also note the time.
    fn set_record_filter(&self, keep: Option<RecordFilter<Self::Record>>) {
        self.parts().2.set_filter(keep);
    }

    /// Waits until `count` copies are kept (after [`clear_received`](Self::clear_received),
    /// counting from zero again); false on timeout. Woken only by kept copies, not by every
    /// request.
    fn wait_for_records(
        &self,
        count: usize,
        timeout: Duration,
    ) -> impl Future<Output = bool> + Send {
        self.parts().2.wait_for_records(count, timeout)
    }

    /// Drops the copies of accepted requests (counters stay).
    fn clear_received(&self) {
        self.parts().2.clear();
    }
}
