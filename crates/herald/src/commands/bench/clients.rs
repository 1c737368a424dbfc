//! A fleet of SSE clients: one raw keep-alive connection each, reading `GET /v1/me/stream`
//! line by line into buffers reused from event to event.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::server::Server;
use crate::commands::http::{Connection, SseEvent, SseReader};

/// Read buffer of each SSE connection: events are a few hundred bytes; longer ones still work.
const READ_BUFFER: usize = 2048;

/// Called for every event after `ready`, with the client's index.
pub type OnEvent = Arc<dyn Fn(usize, &SseEvent) + Send + Sync>;

#[derive(Default)]
pub struct FleetStats {
    /// Clients that received `ready`.
    pub ready: AtomicUsize,
    /// Clients that never got there.
    pub failed: AtomicUsize,
    /// Ready clients whose stream ended or broke afterwards.
    pub closed: AtomicUsize,
    /// Events after `ready`, all clients together.
    pub events: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl FleetStats {
    fn note(&self, error: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(error);
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Connected clients; dropping the fleet closes every connection.
pub struct Fleet {
    handles: Vec<JoinHandle<()>>,
    pub stats: Arc<FleetStats>,
    /// Time until every client was ready.
    pub connect_time: Duration,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

impl Fleet {
    /// Connects `n` clients as users `u{first}`..`u{first+n-1}`, `batch` connecting at a time,
    /// and waits until every one has received `ready`. Fails if any could not within `timeout`.
    /// Connects `n` clients (users u0..) with the benchmarks' usual timeout and reports how long it took.
    pub async fn connect_all(
        server: &Server,
        n: usize,
        batch: usize,
        on_event: OnEvent,
        out: super::Out,
    ) -> Result<Fleet, String> {
        let timeout = Duration::from_secs(30 + n as u64 / 100);
        let fleet = Self::connect(server, 0, n, batch, timeout, on_event).await?;
        out.line(format!(
            "  {} clients ready in {:.2} s ({:.0} connections/s)",
            n,
            fleet.connect_time.as_secs_f64(),
            n as f64 / fleet.connect_time.as_secs_f64()
        ));
        Ok(fleet)
    }

    pub async fn connect(
        server: &Server,
        first: usize,
        n: usize,
        batch: usize,
        timeout: Duration,
        on_event: OnEvent,
    ) -> Result<Fleet, String> {
        let stats = Arc::new(FleetStats::default());
        let gate = Arc::new(Semaphore::new(batch.max(1)));
        let secret = server.token_secret();
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut handles = Vec::with_capacity(n);
        for index in first..first + n {
            let (stats, gate, secret, on_event) = (
                stats.clone(),
                gate.clone(),
                secret.clone(),
                on_event.clone(),
            );
            let addr = server.addr;
            handles.push(tokio::spawn(async move {
                let Ok(permit) = gate.acquire_owned().await else {
                    return;
                };
                let opened = tokio::time::timeout_at(deadline, open(addr, &secret, index)).await;
                drop(permit);
                let mut reader = match opened {
                    Ok(Ok(reader)) => reader,
                    Ok(Err(e)) => {
                        stats.note(format!("client u{index}: {e}"));
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {
                        stats.note(format!(
                            "client u{index}: not ready within {} s",
                            timeout.as_secs()
                        ));
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                stats.ready.fetch_add(1, Ordering::Relaxed);
                let mut event = SseEvent::default();
                // Ends with the stream, or when the fleet is dropped (which aborts this task).
                loop {
                    match reader.next_event(&mut event).await {
                        Ok(true) => {
                            stats.events.fetch_add(1, Ordering::Relaxed);
                            on_event(index, &event);
                        }
                        Ok(false) => {
                            stats.note(format!("client u{index}: the server ended the stream"));
                            break;
                        }
                        Err(e) => {
                            stats.note(format!("client u{index}: stream broke: {e}"));
                            break;
                        }
                    }
                }
                stats.closed.fetch_add(1, Ordering::Relaxed);
            }));
        }
        let mut fleet = Fleet {
            handles,
            stats,
            connect_time: Duration::ZERO,
        };
        loop {
            let (ready, failed) = (
                fleet.stats.ready.load(Ordering::Relaxed),
                fleet.stats.failed.load(Ordering::Relaxed),
            );
            if ready + failed >= n {
                break;
            }
            if tokio::time::Instant::now() >= deadline + Duration::from_secs(1) {
                return Err(format!(
                    "only {ready} of {n} SSE clients were ready after {} s",
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        fleet.connect_time = started.elapsed();
        let failed = fleet.stats.failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(format!(
                "{failed} of {n} SSE clients could not connect; first error: {}",
                fleet.stats.first_error().unwrap_or_default()
            ));
        }
        Ok(fleet)
    }
}

/// Opens one stream and reads up to its `ready` event.
async fn open(addr: SocketAddr, secret: &str, index: usize) -> Result<SseReader, String> {
    let token = herald_server::auth::issue_token(secret, &format!("u{index}"), 3600)?;
    let mut conn = Connection::open_with_buffer(addr, READ_BUFFER)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let path = format!("/v1/me/stream?token={token}");
    conn.send("GET", &path, None, None)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let head = conn
        .read_head()
        .await
        .map_err(|e| format!("response: {e}"))?;
    if head.status != 200 {
        let mut body = Vec::new();
        let _ = conn.read_body(&head, &mut body).await;
        return Err(format!(
            "the stream answered {}: {}",
            head.status,
            String::from_utf8_lossy(&body)
        ));
    }
    let mut reader = conn.into_sse(&head);
    let mut event = SseEvent::default();
    match reader.next_event(&mut event).await {
        Ok(true) if event.event == b"ready" => Ok(reader),
        Ok(true) => Err(format!(
            "the first event was {:?}, not ready",
            String::from_utf8_lossy(&event.event)
        )),
        Ok(false) => Err("the stream ended before ready".into()),
        Err(e) => Err(format!("stream: {e}")),
    }
}
