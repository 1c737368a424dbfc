//! One HTTP/2 connection: the state senders and the connection task share, and the task that
//! reads and writes the socket.
//!
//! A sender encodes its request straight into the connection's output buffer under one short
//! lock (stream id, HPACK and frame order are decided there, so they always agree) and waits
//! for its answer on a oneshot channel. The connection task is the only one touching the
//! socket: it writes whatever has gathered in one go, and turns what it reads into answers.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{HeaderMap, HeaderName, Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::H2Response;
use super::frame::{self, Head};
use super::hpack::Encoder;
use super::response::HeadDecoder;

/// Each stream may receive this much before the client gives window back.
pub const STREAM_WINDOW: u32 = 1 << 20;
/// The whole connection may receive this much before the client gives window back.
pub const CONNECTION_WINDOW: u32 = 8 << 20;
/// A response header block larger than this ends the connection (it is also announced).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// A response body larger than this fails its request; providers answer in a few hundred bytes.
pub const MAX_RESPONSE_BODY: usize = 16 << 20;
/// Without a limit from the server, no more streams than this are open at once.
const DEFAULT_MAX_STREAMS: usize = 1_000;
/// Stream ids are 31 bits; past this the connection takes no new request and a new one opens.
const LAST_STREAM_ID: u32 = (1 << 31) - 1;
/// A PING goes out this often, idle or not, so a dead peer is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// A connection whose PING is not answered within this is dropped.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Less than this gathered, the task lets queued senders add theirs before writing.
const GATHER_LIMIT: usize = 256 * 1024;
const READ_BUFFER: usize = 64 * 1024;

pub type Reply = oneshot::Sender<Result<H2Response, String>>;

/// Why a request was not taken.
pub enum Refused {
    /// The connection takes no new requests; another one may. The request comes back.
    Closed(Box<Request<()>>, Bytes),
    /// The request itself cannot be sent.
    Invalid(String),
}

pub struct Shared {
    state: Mutex<State>,
    waker: AtomicWaker,
    /// No new requests: failed, told to go away, out of stream ids, or its client is gone.
    closed: AtomicBool,
}

struct State {
    /// Frames waiting for the connection task to write them.
    out: Vec<u8>,
    encoder: Encoder,
    block: Vec<u8>,
    next_id: u32,
    streams: HashMap<u32, Stream, BuildHasherDefault<StreamIdHasher>>,
    /// Requests over the server's concurrent stream limit, in arrival order.
    waiting: VecDeque<Queued>,
    /// Streams with body left to send once the server gives window.
    blocked: Vec<u32>,
    max_streams: usize,
    initial_window: i64,
    max_frame: usize,
    send_window: i64,
    /// Received on the connection and not yet given back.
    unacknowledged: u32,
    authority: String,
    /// How long a request may wait for its answer, from its submission.
    timeout: Duration,
    /// Answers to hand out once the lock is released.
    done: Vec<(Reply, Result<H2Response, String>)>,
}

/// A request waiting for a stream.
struct Queued {
    request: Box<Request<()>>,
    body: Bytes,
    reply: Reply,
    deadline: Instant,
}

struct Stream {
    reply: Reply,
    /// Unanswered by then, the request fails (checked by the connection task's sweep).
    deadline: Instant,
    send_window: i64,
    body: Bytes,
    status: Option<StatusCode>,
    headers: HeaderMap,
    data: Vec<u8>,
    unacknowledged: u32,
}

/// Stream ids are distinct small integers: a multiply spreads them over the table's buckets.
#[derive(Default)]
struct StreamIdHasher(u64);

impl Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Shared {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Queues `request` and returns where its answer will come: within the timeout from
    /// `started` (when the send began, if it had to connect first), or from now.
    pub fn submit(
        &self,
        request: Outgoing<'_>,
        body: Bytes,
        started: Option<Instant>,
    ) -> Result<oneshot::Receiver<Result<H2Response, String>>, Refused> {
        request.check().map_err(Refused::Invalid)?;
        let (reply, answer) = oneshot::channel();
        let mut state = self.lock();
        if self.is_closed() || state.next_id > LAST_STREAM_ID - 2 {
            // Failed, told to go away, or out of stream ids.
            self.closed.store(true, Ordering::Relaxed);
            let request = request.into_owned(&state.authority)?;
            return Err(Refused::Closed(request, body));
        }
        let was_empty = state.out.is_empty();
        let deadline = started.unwrap_or_else(Instant::now) + state.timeout;
        if state.streams.len() < state.max_streams && state.waiting.is_empty() {
            state.open(&request, body, reply, deadline);
        } else {
            let request = request.into_owned(&state.authority)?;
            state.waiting.push_back(Queued {
                request,
                body,
                reply,
                deadline,
            });
        }
        let wake = was_empty && !state.out.is_empty();
        drop(state);
        if wake {
            self.waker.wake();
        }
        Ok(answer)
    }

    /// Takes no new requests, and ends the connection once those in flight are answered.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.waker.wake();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fails everything in flight with `reason`; the connection is finished (and, being
    /// closed, takes no new request).
    fn fail(&self, reason: &str) {
        self.closed.store(true, Ordering::Relaxed);
        let mut state = self.lock();
        let State {
            streams,
            waiting,
            done,
            ..
        } = &mut *state;
        let failed = |reply| (reply, Err(reason.to_owned()));
        done.extend(streams.drain().map(|(_, s)| failed(s.reply)));
        done.extend(waiting.drain(..).map(|queued| failed(queued.reply)));
        hand_out(state, &mut Vec::new());
    }
}

/// Hands out the answers gathered in `state` once its lock is released (`spare` is swapped in,
/// so a buffer kept by the caller is reused rather than one allocated each time).
fn hand_out(
    mut state: MutexGuard<'_, State>,
    spare: &mut Vec<(Reply, Result<H2Response, String>)>,
) {
    std::mem::swap(&mut state.done, spare);
    drop(state);
    for (reply, answer) in spare.drain(..) {
        let _ = reply.send(answer);
    }
}

/// How often deadlines are checked: a request fails at most a quarter of its timeout late.
fn sweep_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// The body length `content-length` promises, where a body is expected (RFC 9113 §8.1.1).
fn declared_length(status: StatusCode, headers: &HeaderMap) -> Option<usize> {
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return None;
    }
    let value = headers.get(http::header::CONTENT_LENGTH)?;
    // Unparseable counts as a mismatch: usize::MAX never equals a real length.
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX),
    )
}

/// A request to send: owned, or borrowed from a caller that sends the same few headers every
/// time (no `Request`, `Uri` or `HeaderMap` built per send; owned only if it has to wait).
pub enum Outgoing<'a> {
    /// Boxed: a `Request` is large, and every send's future would be that large too.
    Owned(Box<Request<()>>),
    Borrowed {
        method: &'a Method,
        path: &'a str,
        headers: &'a [(HeaderName, &'a [u8])],
    },
}

impl Outgoing<'_> {
    /// Headers HTTP/2 forbids (RFC 9113 §8.2.2).
    fn check(&self) -> Result<(), String> {
        let forbidden = |name: &HeaderName| {
            matches!(
                name.as_str(),
                "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
            )
        };
        let found = match self {
            Self::Owned(request) => request.headers().keys().find(|n| forbidden(n)),
            Self::Borrowed { headers, .. } => headers.iter().map(|(n, _)| n).find(|n| forbidden(n)),
        };
        match found {
            Some(name) => Err(format!("{name} is not allowed in HTTP/2")),
            None => Ok(()),
        }
    }

    fn into_owned(self, authority: &str) -> Result<Box<Request<()>>, Refused> {
        let (method, path, headers) = match self {
            Self::Owned(request) => return Ok(request),
            Self::Borrowed {
                method,
                path,
                headers,
            } => (method, path, headers),
        };
        let invalid = |e: http::Error| Refused::Invalid(e.to_string());
        let uri = http::Uri::builder()
            .scheme(http::uri::Scheme::HTTPS)
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(invalid)?;
        let mut request = Request::builder().method(method.clone()).uri(uri);
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        request.body(()).map(Box::new).map_err(invalid)
    }
}

impl State {
    fn new(authority: String, timeout: Duration) -> Self {
        Self {
            out: Vec::with_capacity(64 * 1024),
            encoder: Encoder::default(),
            block: Vec::with_capacity(1024),
            next_id: 1,
            streams: HashMap::default(),
            waiting: VecDeque::new(),
            blocked: Vec::new(),
            max_streams: DEFAULT_MAX_STREAMS,
            initial_window: frame::DEFAULT_WINDOW,
            max_frame: frame::DEFAULT_MAX_FRAME_SIZE,
            send_window: frame::DEFAULT_WINDOW,
            unacknowledged: 0,
            authority,
            timeout,
            done: Vec::new(),
        }
    }

    /// Opens a stream for `request`: HEADERS, then as much of the body as the windows allow.
    fn open(&mut self, request: &Outgoing<'_>, body: Bytes, reply: Reply, deadline: Instant) {
        let id = self.next_id;
        self.next_id += 2;
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        let encoder = &mut self.encoder;
        encoder.begin(&mut block);
        let (method, authority, path) = match request {
            Outgoing::Owned(request) => (
                request.method(),
                request
                    .uri()
                    .authority()
                    .map_or(self.authority.as_str(), http::uri::Authority::as_str),
                request
                    .uri()
                    .path_and_query()
                    .map_or("/", http::uri::PathAndQuery::as_str),
            ),
            Outgoing::Borrowed { method, path, .. } => (*method, self.authority.as_str(), *path),
        };
        encoder.field(&mut block, b":method", method.as_str().as_bytes());
        encoder.field(&mut block, b":scheme", b"https");
        encoder.field(&mut block, b":authority", authority.as_bytes());
        encoder.field(&mut block, b":path", path.as_bytes());
        let mut field = |name: &HeaderName, value: &[u8]| {
            if name != http::header::CONTENT_LENGTH {
                encoder.field(&mut block, name.as_str().as_bytes(), value);
            }
        };
        match request {
            Outgoing::Owned(request) => {
                for (name, value) in request.headers() {
                    field(name, value.as_bytes());
                }
            }
            Outgoing::Borrowed { headers, .. } => {
                for (name, value) in *headers {
                    field(name, value);
                }
            }
        }
        // Set from the body, whatever the caller said, as a general client would. POST, PUT
        // and PATCH carry a body by definition, so an empty one is still announced.
        if !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            let mut digits = [0u8; 20];
            let length = crate::decimal::decimal(body.len() as u64, &mut digits);
            encoder.field(&mut block, b"content-length", length);
        }
        frame::put_header_block(&mut self.out, id, &block, body.is_empty(), self.max_frame);
        self.block = block;
        let has_body = !body.is_empty();
        self.streams.insert(
            id,
            Stream {
                reply,
                deadline,
                send_window: self.initial_window,
                body,
                status: None,
                headers: HeaderMap::new(),
                data: Vec::new(),
                unacknowledged: 0,
            },
        );
        if has_body && !self.send_body(id) {
            self.blocked.push(id);
        }
    }

    /// Writes DATA for stream `id` while the windows allow; true once the body is all out.
    fn send_body(&mut self, id: u32) -> bool {
        let Some(stream) = self.streams.get_mut(&id) else {
            return true;
        };
        while !stream.body.is_empty() {
            let allowed = stream.send_window.min(self.send_window);
            if allowed <= 0 {
                return false;
            }
            let n = stream
                .body
                .len()
                .min(self.max_frame)
                .min(usize::try_from(allowed).unwrap_or(usize::MAX));
            let flags = if n == stream.body.len() {
                frame::END_STREAM
            } else {
                0
            };
            frame::put_head(&mut self.out, n, frame::DATA, flags, id);
            self.out.extend_from_slice(&stream.body[..n]);
            // Copied, then skipped: `split_to` would make the body's buffer shared (an
            // allocation and atomic counts for every send).
            bytes::Buf::advance(&mut stream.body, n);
            stream.send_window -= n as i64;
            self.send_window -= n as i64;
        }
        true
    }

    fn send_blocked(&mut self) {
        let mut blocked = std::mem::take(&mut self.blocked);
        blocked.retain(|id| !self.send_body(*id));
        self.blocked = blocked;
    }

    /// Opens waiting requests while the server's stream limit allows.
    fn open_waiting(&mut self) {
        while self.streams.len() < self.max_streams && self.next_id <= LAST_STREAM_ID - 2 {
            let Some(queued) = self.waiting.pop_front() else {
                return;
            };
            if !queued.reply.is_closed() {
                let request = Outgoing::Owned(queued.request);
                self.open(&request, queued.body, queued.reply, queued.deadline);
            }
        }
    }

    /// Fails requests past their deadline and resets streams nobody waits for any more
    /// (timed out, or their sender dropped), freeing their slots.
    fn sweep(&mut self, now: Instant) {
        let timeout = self.timeout;
        let late = || Err(format!("no answer within {timeout:?}"));
        let expired: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.deadline <= now || s.reply.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let stream = self.streams.remove(&id).expect("just seen");
            frame::put_rst_stream(&mut self.out, id, frame::CANCEL);
            if !stream.reply.is_closed() {
                self.done.push((stream.reply, late()));
            }
        }
        self.waiting.retain(|queued| !queued.reply.is_closed());
        // Deadlines in the queue come in submission order.
        while self.waiting.front().is_some_and(|q| q.deadline <= now) {
            let queued = self.waiting.pop_front().expect("just seen");
            self.done.push((queued.reply, late()));
        }
        self.open_waiting();
    }

    /// Hands out a finished answer and lets a waiting request take the slot.
    fn finish(&mut self, id: u32) {
        if let Some(stream) = self.streams.remove(&id) {
            if !stream.body.is_empty() {
                // Answered before the whole body went out: stop sending it (RFC 9113 §8.1).
                frame::put_rst_stream(&mut self.out, id, frame::NO_ERROR);
            }
            let status = stream.status.unwrap_or(StatusCode::OK);
            let answer = match declared_length(status, &stream.headers) {
                Some(length) if length != stream.data.len() => Err(format!(
                    "HTTP/2 response body of {} bytes, though its content-length says {length}",
                    stream.data.len()
                )),
                _ => Ok(H2Response {
                    status,
                    headers: stream.headers,
                    body: Bytes::from(stream.data),
                }),
            };
            self.done.push((stream.reply, answer));
            self.open_waiting();
        }
    }

    /// Fails one request; the connection goes on.
    fn fail_stream(&mut self, id: u32, reason: String, reset: Option<u32>) {
        if let Some(stream) = self.streams.remove(&id) {
            if let Some(code) = reset {
                frame::put_rst_stream(&mut self.out, id, code);
            }
            self.done.push((stream.reply, Err(reason)));
            self.open_waiting();
        }
    }

    /// Applies a SETTINGS frame's payload from the server.
    fn apply_settings(&mut self, payload: &[u8]) -> Result<(), String> {
        if !payload.len().is_multiple_of(6) {
            return Err("SETTINGS frame of a bad size".into());
        }
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                frame::SETTINGS_HEADER_TABLE_SIZE => {
                    self.encoder.set_peer_limit(value as usize);
                }
                frame::SETTINGS_MAX_CONCURRENT_STREAMS => self.max_streams = value as usize,
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return Err("SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1".into());
                    }
                    let delta = value - self.initial_window;
                    self.initial_window = value;
                    for stream in self.streams.values_mut() {
                        stream.send_window += delta;
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME_SIZE..1 << 24).contains(&(value as usize)) {
                        return Err(format!("SETTINGS_MAX_FRAME_SIZE {value} out of range"));
                    }
                    self.max_frame = value as usize;
                }
                // Push is off, header lists are small, unknown settings are ignored.
                _ => {}
            }
        }
        frame::put_settings_ack(&mut self.out);
        self.send_blocked();
        self.open_waiting();
        Ok(())
    }
}

/// Writes the client preface and settings, reads the server's SETTINGS, and starts the task.
pub async fn handshake<T>(
    mut io: T,
    authority: String,
    timeout: Duration,
) -> Result<Arc<Shared>, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut hello = frame::PREFACE.to_vec();
    frame::put_settings(
        &mut hello,
        &[
            (frame::SETTINGS_ENABLE_PUSH, 0),
            (frame::SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW),
            (
                frame::SETTINGS_MAX_HEADER_LIST_SIZE,
                MAX_HEADER_BLOCK as u32,
            ),
        ],
    );
    frame::put_window_update(
        &mut hello,
        0,
        CONNECTION_WINDOW - frame::DEFAULT_WINDOW as u32,
    );
    io.write_all(&hello).await.map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())?;

    // The server's first frame is its SETTINGS (RFC 9113 §3.4): its limits apply from the
    // first request on.
    let mut read = vec![0; READ_BUFFER];
    let mut filled = 0;
    let head = loop {
        let n = io
            .read(&mut read[filled..])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the server's SETTINGS".into());
        }
        filled += n;
        if filled >= frame::HEADER_LEN {
            let head = Head::parse(&read);
            if head.kind != frame::SETTINGS || head.flags & frame::ACK != 0 || head.stream != 0 {
                return Err("the server did not start with SETTINGS".into());
            }
            if head.len > frame::DEFAULT_MAX_FRAME_SIZE {
                return Err("the server's SETTINGS frame is too large".into());
            }
            if filled >= frame::HEADER_LEN + head.len {
                break head;
            }
        }
    };
    let mut state = State::new(authority, timeout);
    let end = frame::HEADER_LEN + head.len;
    state.apply_settings(&read[frame::HEADER_LEN..end])?;
    read.copy_within(end..filled, 0);
    filled -= end;

    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        waker: AtomicWaker::new(),
        closed: AtomicBool::new(false),
    });
    let task = Connection {
        io,
        shared: shared.clone(),
        decoder: HeadDecoder::default(),
        read,
        filled,
        write: Vec::with_capacity(64 * 1024),
        written: 0,
        yielded: false,
        continuation: None,
        keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE_INTERVAL)),
        sweep_every: sweep_interval(timeout),
        sweep: Box::pin(tokio::time::sleep(sweep_interval(timeout))),
        ping_sent: false,
        ending: false,
        answers: Vec::new(),
    };
    tokio::spawn(task);
    Ok(shared)
}

/// The task that owns the socket.
struct Connection<T> {
    io: T,
    shared: Arc<Shared>,
    decoder: HeadDecoder,
    read: Vec<u8>,
    filled: usize,
    write: Vec<u8>,
    written: usize,
    yielded: bool,
    /// A header block being continued: stream, fragments so far, END_STREAM.
    continuation: Option<(u32, Vec<u8>, bool)>,
    keep_alive: Pin<Box<Sleep>>,
    ping_sent: bool,
    /// Request deadlines are checked this often, here rather than by a timer per request.
    sweep_every: Duration,
    sweep: Pin<Box<Sleep>>,
    /// GOAWAY written: the task ends once it is out.
    ending: bool,
    /// Answers on their way out, kept to reuse its buffer.
    answers: Vec<(Reply, Result<H2Response, String>)>,
}

enum Wrote {
    /// Nothing left to write.
    Idle,
    /// Some bytes went out.
    Some,
    /// Waiting on the socket.
    Blocked,
    /// Output is waiting but small: let the senders already woken add to it first.
    Gather,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Connection<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.shared.waker.register(cx.waker());
        match this.drive(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                let reason = match result {
                    Ok(()) => "HTTP/2 connection closed".to_owned(),
                    Err(reason) => {
                        tracing::debug!(%reason, "HTTP/2 connection ended");
                        reason
                    }
                };
                this.shared.fail(&reason);
                Poll::Ready(())
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Connection<T> {
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        // A timer reset after it fired is polled again, so its new deadline wakes this task.
        if !self.ending && self.keep_alive.as_mut().poll(cx).is_ready() {
            self.on_keep_alive()?;
            let _ = self.keep_alive.as_mut().poll(cx);
        }
        if self.sweep.as_mut().poll(cx).is_ready() {
            self.on_sweep();
            let _ = self.sweep.as_mut().poll(cx);
        }
        // Bounded, so one busy connection cannot hold its worker thread forever.
        for _ in 0..64 {
            let mut progress = false;
            if !self.ending {
                match self.poll_read(cx)? {
                    Poll::Ready(0) => {
                        return Poll::Ready(Err("the server closed the connection".into()));
                    }
                    Poll::Ready(_) => {
                        if let Err(reason) = self.process() {
                            // The GOAWAY saying why goes out if the socket takes it now.
                            self.yielded = true;
                            let _ = self.poll_write(cx);
                            return Poll::Ready(Err(reason));
                        }
                        progress = true;
                    }
                    Poll::Pending => {}
                }
                self.end_if_done();
            }
            match self.poll_write(cx)? {
                Wrote::Some => progress = true,
                Wrote::Gather => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Wrote::Idle if self.ending => return Poll::Ready(Ok(())),
                Wrote::Idle | Wrote::Blocked => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Once closed to new requests and with nothing in flight, says goodbye.
    fn end_if_done(&mut self) {
        if !self.shared.is_closed() {
            return;
        }
        let mut state = self.shared.lock();
        if state.streams.is_empty() && state.waiting.is_empty() {
            frame::put_goaway(&mut state.out, 0, frame::NO_ERROR);
            self.ending = true;
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, String>> {
        let mut buf = ReadBuf::new(&mut self.read[self.filled..]);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                self.filled += n;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(format!("HTTP/2 read: {e}"))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Handles every whole frame read so far, under one lock, then hands out the answers.
    fn process(&mut self) -> Result<(), String> {
        let shared = self.shared.clone();
        let mut state = shared.lock();
        let mut at = 0;
        let mut result = Ok(());
        while self.filled - at >= frame::HEADER_LEN {
            let head = Head::parse(&self.read[at..]);
            if head.len > frame::DEFAULT_MAX_FRAME_SIZE {
                frame::put_goaway(&mut state.out, 0, frame::FRAME_SIZE_ERROR);
                result = Err(format!(
                    "a {}-byte frame, over the 16 KiB allowed",
                    head.len
                ));
                break;
            }
            let end = at + frame::HEADER_LEN + head.len;
            if end > self.filled {
                break;
            }
            let payload = &self.read[at + frame::HEADER_LEN..end];
            if let Err((code, reason)) = handle(
                &mut state,
                &mut self.decoder,
                &mut self.continuation,
                &mut self.ping_sent,
                &mut self.keep_alive,
                head,
                payload,
            ) {
                frame::put_goaway(&mut state.out, 0, code);
                result = Err(reason);
                break;
            }
            at = end;
        }
        if state.next_id > LAST_STREAM_ID - 2 {
            // Told to go away (or out of ids): no new stream here.
            shared.closed.store(true, Ordering::Relaxed);
        }
        hand_out(state, &mut self.answers);
        self.read.copy_within(at..self.filled, 0);
        self.filled -= at;
        result
    }

    fn on_sweep(&mut self) {
        let now = Instant::now();
        let mut state = self.shared.lock();
        state.sweep(now);
        hand_out(state, &mut self.answers);
        self.sweep.as_mut().reset(now + self.sweep_every);
    }

    fn on_keep_alive(&mut self) -> Result<(), String> {
        if self.ping_sent {
            return Err(format!("no PING answer within {KEEP_ALIVE_TIMEOUT:?}"));
        }
        frame::put_ping(&mut self.shared.lock().out, 0, *b"herald\0\0");
        self.ping_sent = true;
        self.keep_alive
            .as_mut()
            .reset(Instant::now() + KEEP_ALIVE_TIMEOUT);
        Ok(())
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<Wrote, String> {
        let mut wrote = false;
        loop {
            if self.written == self.write.len() {
                self.write.clear();
                self.written = 0;
                let mut state = self.shared.lock();
                if state.out.is_empty() {
                    break;
                }
                if !self.yielded && state.out.len() < GATHER_LIMIT {
                    // Woken by a sender, whose wake puts this task first in line: step back
                    // once so the senders queued behind it add their requests to this write.
                    self.yielded = true;
                    return Ok(if wrote { Wrote::Some } else { Wrote::Gather });
                }
                std::mem::swap(&mut state.out, &mut self.write);
                drop(state);
                self.yielded = false;
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.write[self.written..]) {
                Poll::Ready(Ok(0)) => return Err("HTTP/2 write: connection closed".into()),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    wrote = true;
                }
                Poll::Ready(Err(e)) => return Err(format!("HTTP/2 write: {e}")),
                Poll::Pending => return Ok(if wrote { Wrote::Some } else { Wrote::Blocked }),
            }
        }
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(Err(e)) => Err(format!("HTTP/2 write: {e}")),
            Poll::Ready(Ok(())) if !wrote => Ok(Wrote::Idle),
            Poll::Ready(Ok(())) => Ok(Wrote::Some),
            Poll::Pending => Ok(if wrote { Wrote::Some } else { Wrote::Blocked }),
        }
    }
}

type ConnectionError = (u32, String);

fn protocol_error(reason: impl Into<String>) -> ConnectionError {
    (frame::PROTOCOL_ERROR, reason.into())
}

/// One frame from the server. An `Err` ends the connection with that error code.
fn handle(
    state: &mut State,
    decoder: &mut HeadDecoder,
    continuation: &mut Option<(u32, Vec<u8>, bool)>,
    ping_sent: &mut bool,
    keep_alive: &mut Pin<Box<Sleep>>,
    head: Head,
    payload: &[u8],
) -> Result<(), ConnectionError> {
    if continuation.is_some() && head.kind != frame::CONTINUATION {
        return Err(protocol_error("a header block was interrupted"));
    }
    match head.kind {
        frame::DATA => {
            if head.stream == 0 {
                return Err(protocol_error("DATA on stream 0"));
            }
            state.unacknowledged += head.len as u32;
            if state.unacknowledged >= CONNECTION_WINDOW / 2 {
                let n = std::mem::take(&mut state.unacknowledged);
                frame::put_window_update(&mut state.out, 0, n);
            }
            let data = unpad(head, payload)?;
            let Some(stream) = state.streams.get_mut(&head.stream) else {
                return Ok(());
            };
            if stream.status.is_none() {
                state.fail_stream(
                    head.stream,
                    "HTTP/2 response: DATA before HEADERS".into(),
                    Some(frame::PROTOCOL_ERROR),
                );
                return Ok(());
            }
            if stream.data.len() + data.len() > MAX_RESPONSE_BODY {
                let reason = format!("HTTP/2 response body over {MAX_RESPONSE_BODY} bytes");
                state.fail_stream(head.stream, reason, Some(frame::CANCEL));
                return Ok(());
            }
            stream.data.extend_from_slice(data);
            if head.flags & frame::END_STREAM != 0 {
                state.finish(head.stream);
            } else {
                stream.unacknowledged += head.len as u32;
                if stream.unacknowledged >= STREAM_WINDOW / 2 {
                    let n = std::mem::take(&mut stream.unacknowledged);
                    frame::put_window_update(&mut state.out, head.stream, n);
                }
            }
        }
        frame::HEADERS => {
            if head.stream == 0 {
                return Err(protocol_error("HEADERS on stream 0"));
            }
            let mut fragment = unpad(head, payload)?;
            if head.flags & frame::PRIORITY != 0 {
                fragment = fragment
                    .get(5..)
                    .ok_or_else(|| protocol_error("HEADERS too short for its priority"))?;
            }
            let end_stream = head.flags & frame::END_STREAM != 0;
            if head.flags & frame::END_HEADERS != 0 {
                headers(state, decoder, head.stream, fragment, end_stream)?;
            } else {
                *continuation = Some((head.stream, fragment.to_vec(), end_stream));
            }
        }
        frame::CONTINUATION => {
            let Some((stream, block, _)) = continuation.as_mut() else {
                return Err(protocol_error("CONTINUATION without HEADERS"));
            };
            if *stream != head.stream {
                return Err(protocol_error("CONTINUATION on another stream"));
            }
            if block.len() + payload.len() > MAX_HEADER_BLOCK {
                return Err((
                    frame::PROTOCOL_ERROR,
                    format!("a response header block over {MAX_HEADER_BLOCK} bytes"),
                ));
            }
            block.extend_from_slice(payload);
            if head.flags & frame::END_HEADERS != 0 {
                let (stream, block, end_stream) = continuation.take().expect("checked above");
                headers(state, decoder, stream, &block, end_stream)?;
            }
        }
        frame::RST_STREAM => {
            let code = four_bytes(head, payload)?;
            let reason = format!(
                "HTTP/2 stream reset by the server: {}",
                frame::error_name(code)
            );
            state.fail_stream(head.stream, reason, None);
        }
        frame::SETTINGS => {
            if head.stream != 0 {
                return Err(protocol_error("SETTINGS on a stream"));
            }
            if head.flags & frame::ACK == 0 {
                state
                    .apply_settings(payload)
                    .map_err(|reason| (frame::PROTOCOL_ERROR, reason))?;
            }
        }
        frame::PUSH_PROMISE => return Err(protocol_error("PUSH_PROMISE, though push is off")),
        frame::PING => {
            let payload: [u8; 8] = payload
                .try_into()
                .map_err(|_| (frame::FRAME_SIZE_ERROR, "PING of a bad size".to_owned()))?;
            if head.flags & frame::ACK == 0 {
                frame::put_ping(&mut state.out, frame::ACK, payload);
            } else if *ping_sent {
                *ping_sent = false;
                keep_alive
                    .as_mut()
                    .reset(Instant::now() + KEEP_ALIVE_INTERVAL);
            }
        }
        frame::GOAWAY => {
            if payload.len() < 8 {
                return Err((frame::FRAME_SIZE_ERROR, "GOAWAY too short".into()));
            }
            let last =
                u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
            let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
            let reason = format!(
                "HTTP/2 server going away ({}); request not processed",
                frame::error_name(code)
            );
            // Streams past `last` were never processed; the rest may still be answered.
            let unprocessed: Vec<u32> = state
                .streams
                .keys()
                .copied()
                .filter(|id| *id > last)
                .collect();
            for id in unprocessed {
                state.fail_stream(id, reason.clone(), None);
            }
            let waiting: Vec<_> = state.waiting.drain(..).collect();
            for queued in waiting {
                state.done.push((queued.reply, Err(reason.clone())));
            }
            // No new stream on this connection: `next_id` past the end closes it to senders.
            state.next_id = LAST_STREAM_ID;
        }
        frame::WINDOW_UPDATE => {
            let increment = i64::from(four_bytes(head, payload)? & 0x7fff_ffff);
            if head.stream == 0 {
                if increment == 0 {
                    return Err(protocol_error("WINDOW_UPDATE of 0"));
                }
                state.send_window += increment;
                if state.send_window > frame::MAX_WINDOW {
                    return Err((frame::FLOW_CONTROL_ERROR, "window over 2^31-1".into()));
                }
            } else if let Some(stream) = state.streams.get_mut(&head.stream) {
                stream.send_window += increment;
                if increment == 0 || stream.send_window > frame::MAX_WINDOW {
                    let reason = "HTTP/2 flow control error from the server".to_owned();
                    state.fail_stream(head.stream, reason, Some(frame::FLOW_CONTROL_ERROR));
                }
            }
            if !state.blocked.is_empty() {
                state.send_blocked();
            }
        }
        // PRIORITY and unknown frame types are ignored (RFC 9113 §5.5).
        _ => {}
    }
    Ok(())
}

/// A whole response header block (or trailers) for `id`.
fn headers(
    state: &mut State,
    decoder: &mut HeadDecoder,
    id: u32,
    block: &[u8],
    end_stream: bool,
) -> Result<(), ConnectionError> {
    let decoding_error = |e| (frame::COMPRESSION_ERROR, format!("HPACK: {e}"));
    match state.streams.get(&id).map(|s| s.status.is_some()) {
        // Not ours (any more): decoded all the same, the table must stay in step.
        None => return decoder.skip(block).map_err(decoding_error),
        // Trailers: nothing Herald reads.
        Some(true) => {
            decoder.skip(block).map_err(decoding_error)?;
            if end_stream {
                state.finish(id);
            }
            return Ok(());
        }
        Some(false) => {}
    }
    let (status, headers) = match decoder.decode(block).map_err(decoding_error)? {
        Ok(head) => head,
        Err(malformed) => {
            let reason = format!("HTTP/2 response with {malformed}");
            state.fail_stream(id, reason, Some(frame::PROTOCOL_ERROR));
            return Ok(());
        }
    };
    if status.is_informational() {
        // 1xx comes before the real answer.
        return Ok(());
    }
    if let Some(stream) = state.streams.get_mut(&id) {
        stream.status = Some(status);
        stream.headers = headers;
    }
    if end_stream {
        state.finish(id);
    }
    Ok(())
}

fn unpad(head: Head, payload: &[u8]) -> Result<&[u8], ConnectionError> {
    if head.flags & frame::PADDED == 0 {
        return Ok(payload);
    }
    let pad = usize::from(
        *payload
            .first()
            .ok_or_else(|| protocol_error("empty padded frame"))?,
    );
    payload
        .len()
        .checked_sub(1 + pad)
        .map(|len| &payload[1..1 + len])
        .ok_or_else(|| protocol_error("padding longer than its frame"))
}

fn four_bytes(head: Head, payload: &[u8]) -> Result<u32, ConnectionError> {
    let bytes: [u8; 4] = payload.try_into().map_err(|_| {
        (
            frame::FRAME_SIZE_ERROR,
            format!("frame type {} of a bad size", head.kind),
        )
    })?;
    Ok(u32::from_be_bytes(bytes))
}
