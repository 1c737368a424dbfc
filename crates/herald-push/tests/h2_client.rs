//! Conformance tests for [`H2Client`] against a real HTTP/2 server: the `h2` crate's server over
//! TLS on loopback, configured per test (stream limit, windows, frame size, HPACK table size) and
//! answering per request as the test says (echo, reset, hang, GOAWAY, drop the connection...).
//!
//! They go through the client's public API only, so they hold for any implementation of it, and
//! every check is on data the other side really received: echoed headers and bodies, what the
//! server recorded, and the bytes the client wrote (the server taps its side of the TLS stream,
//! so HPACK details the `h2` server tolerates, like an unsignalled table size, are checked too).

use std::collections::{HashMap, HashSet};
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use h2::Reason;
use herald_fakes::TestCa;
use herald_push::h2::{H2Client, H2Response};
use herald_push::http::HttpOptions;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

// ---------------------------------------------------------------------------------------------
// The test server
// ---------------------------------------------------------------------------------------------

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Handler = Arc<dyn Fn(Exchange) -> BoxFuture + Send + Sync>;

/// What a test asks of one server connection.
#[derive(Debug, Clone, Copy)]
enum Ctl {
    /// GOAWAY(2^31-1), PING, GOAWAY(last stream), close once the open streams are done.
    GracefulShutdown,
    /// GOAWAY(last stream, reason) and close at once.
    Abrupt(Reason),
    /// Drop the TCP connection, no GOAWAY, no TLS close_notify.
    Drop,
    /// A new SETTINGS_INITIAL_WINDOW_SIZE (retried until the previous one is acknowledged).
    SetInitialWindow(u32),
}

/// How the server's connections are set up.
#[derive(Clone)]
struct ServerBuilder {
    max_concurrent_streams: Option<u32>,
    initial_window_size: Option<u32>,
    max_frame_size: Option<u32>,
    header_table_size: Option<u32>,
    alpn: Vec<&'static [u8]>,
}

impl ServerBuilder {
    fn new() -> Self {
        Self {
            max_concurrent_streams: None,
            initial_window_size: None,
            max_frame_size: None,
            header_table_size: None,
            alpn: vec![b"h2"],
        }
    }

    fn max_concurrent_streams(mut self, n: u32) -> Self {
        self.max_concurrent_streams = Some(n);
        self
    }

    fn initial_window_size(mut self, n: u32) -> Self {
        self.initial_window_size = Some(n);
        self
    }

    fn max_frame_size(mut self, n: u32) -> Self {
        self.max_frame_size = Some(n);
        self
    }

    fn header_table_size(mut self, n: u32) -> Self {
        self.header_table_size = Some(n);
        self
    }

    fn alpn(mut self, alpn: Vec<&'static [u8]>) -> Self {
        self.alpn = alpn;
        self
    }

    fn h2(&self) -> h2::server::Builder {
        let mut builder = h2::server::Builder::new();
        if let Some(n) = self.max_concurrent_streams {
            builder.max_concurrent_streams(n);
        }
        if let Some(n) = self.initial_window_size {
            builder.initial_window_size(n);
        }
        if let Some(n) = self.max_frame_size {
            builder.max_frame_size(n);
        }
        if let Some(n) = self.header_table_size {
            builder.header_table_size(n);
        }
        builder
    }

    /// Listens on 127.0.0.1 and answers every request with `handler`, each in its own task.
    async fn serve<F, Fut>(self, handler: F) -> TestServer
    where
        F: Fn(Exchange) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |exchange| Box::pin(handler(exchange)));
        let ca = TestCa::new();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&self.alpn));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let accept_task = tokio::spawn({
            let shared = shared.clone();
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(run_connection(
                        tcp,
                        acceptor.clone(),
                        self.h2(),
                        handler.clone(),
                        shared.clone(),
                    ));
                }
            }
        });
        TestServer {
            addr,
            ca_pem: Arc::new(ca.ca_pem().into_bytes()),
            shared,
            accept_task,
        }
    }
}

#[derive(Default)]
struct Shared {
    conns: Mutex<Vec<ConnInfo>>,
    /// Errors the server saw that a conforming client never causes (connection errors, request
    /// bodies that failed to arrive).
    errors: Mutex<Vec<String>>,
    tls_failures: AtomicUsize,
}

impl Shared {
    fn error(&self, what: String) {
        self.errors.lock().unwrap().push(what);
    }
}

struct ConnInfo {
    ctl: mpsc::UnboundedSender<Ctl>,
    ping: Option<h2::PingPong>,
    /// Every byte the client sent on this connection, after TLS.
    inbound: Arc<Mutex<Vec<u8>>>,
    closed: Arc<AtomicBool>,
}

async fn run_connection(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    builder: h2::server::Builder,
    handler: Handler,
    shared: Arc<Shared>,
) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(_) => {
            shared.tls_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let inbound = Arc::new(Mutex::new(Vec::new()));
    let io = Tap {
        io: tls,
        inbound: inbound.clone(),
    };
    let mut conn = match builder.handshake::<_, Bytes>(io).await {
        Ok(conn) => conn,
        Err(e) => {
            shared.error(format!("server HTTP/2 handshake: {e}"));
            return;
        }
    };
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
    let closed = Arc::new(AtomicBool::new(false));
    let index = {
        let mut conns = shared.conns.lock().unwrap();
        conns.push(ConnInfo {
            ctl: ctl_tx.clone(),
            ping: conn.ping_pong(),
            inbound,
            closed: closed.clone(),
        });
        conns.len() - 1
    };
    let mut pending_window: Option<u32> = None;
    let mut retry = tokio::time::interval(Duration::from_millis(5));
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    let (head, body) = request.into_parts();
                    tokio::spawn(handler(Exchange {
                        head,
                        body,
                        respond,
                        conn: index,
                        ctl: ctl_tx.clone(),
                        shared: shared.clone(),
                    }));
                }
                Some(Err(e)) => {
                    shared.error(format!("server connection {index}: {e}"));
                    break;
                }
                None => break,
            },
            Some(ctl) = ctl_rx.recv() => match ctl {
                Ctl::GracefulShutdown => conn.graceful_shutdown(),
                Ctl::Abrupt(reason) => conn.abrupt_shutdown(reason),
                Ctl::Drop => break,
                Ctl::SetInitialWindow(size) => {
                    if conn.set_initial_window_size(size).is_err() {
                        pending_window = Some(size);
                    }
                }
            },
            _ = retry.tick(), if pending_window.is_some() => {
                let size = pending_window.expect("checked");
                if conn.set_initial_window_size(size).is_ok() {
                    pending_window = None;
                }
            }
        }
    }
    drop(conn);
    closed.store(true, Ordering::SeqCst);
}

struct TestServer {
    addr: SocketAddr,
    ca_pem: Arc<Vec<u8>>,
    shared: Arc<Shared>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.ctl_all(Ctl::Drop);
    }
}

impl TestServer {
    fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    fn options(&self, connections: usize, timeout: Duration) -> HttpOptions {
        HttpOptions {
            connections,
            timeout,
            extra_ca_pem: Some(self.ca_pem.clone()),
            http2_only: true,
        }
    }

    fn client(&self, connections: usize, timeout: Duration) -> Arc<H2Client> {
        Arc::new(
            H2Client::new(&self.base(), &self.options(connections, timeout))
                .expect("client for the test server"),
        )
    }

    /// HTTP/2 connections established so far (TLS and preface done).
    fn connections(&self) -> usize {
        self.shared.conns.lock().unwrap().len()
    }

    fn open_server_connections(&self) -> usize {
        self.shared
            .conns
            .lock()
            .unwrap()
            .iter()
            .filter(|c| !c.closed.load(Ordering::SeqCst))
            .count()
    }

    fn ctl_all(&self, ctl: Ctl) {
        for conn in self.shared.conns.lock().unwrap().iter() {
            let _ = conn.ctl.send(ctl);
        }
    }

    fn inbound(&self, conn: usize) -> Vec<u8> {
        self.shared.conns.lock().unwrap()[conn]
            .inbound
            .lock()
            .unwrap()
            .clone()
    }

    fn take_ping(&self, conn: usize) -> h2::PingPong {
        self.shared.conns.lock().unwrap()[conn]
            .ping
            .take()
            .expect("the server connection's PingPong")
    }

    fn errors(&self) -> Vec<String> {
        self.shared.errors.lock().unwrap().clone()
    }

    fn assert_no_errors(&self) {
        let errors = self.errors();
        assert!(errors.is_empty(), "the server saw errors: {errors:#?}");
    }
}

/// One request as the server got it, and the means to answer it.
struct Exchange {
    head: http::request::Parts,
    body: h2::RecvStream,
    respond: h2::server::SendResponse<Bytes>,
    /// Which server connection (in order of establishment) it came on.
    conn: usize,
    ctl: mpsc::UnboundedSender<Ctl>,
    shared: Arc<Shared>,
}

impl Exchange {
    fn header(&self, name: &str) -> Option<String> {
        self.head
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    fn path(&self) -> String {
        self.head
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default()
    }

    fn ctl(&self, ctl: Ctl) {
        let _ = self.ctl.send(ctl);
    }

    /// The whole request body, giving flow-control capacity back as it arrives.
    async fn read_body(&mut self) -> Result<Bytes, h2::Error> {
        let mut body = Vec::new();
        while let Some(chunk) = self.body.data().await {
            let chunk = chunk?;
            body.extend_from_slice(&chunk);
            let _ = self.body.flow_control().release_capacity(chunk.len());
        }
        Ok(body.into())
    }

    /// [`Exchange::read_body`], a failure recorded as a server error.
    async fn read_body_or_record(&mut self) -> Option<Bytes> {
        match self.read_body().await {
            Ok(body) => Some(body),
            Err(e) => {
                self.shared
                    .error(format!("request body of {}: {e}", self.path()));
                None
            }
        }
    }

    /// Waits until the client resets the stream (or `limit` passes).
    async fn reset_by_client(&mut self, limit: Duration) -> Option<Reason> {
        tokio::time::timeout(limit, poll_fn(|cx| self.respond.poll_reset(cx)))
            .await
            .ok()
            .and_then(Result::ok)
    }

    async fn reply(mut self, reply: Reply) -> Result<(), String> {
        if let Some((status, headers)) = &reply.informational {
            let response = response_head(*status, headers);
            self.respond
                .send_informational(response)
                .map_err(|e| format!("informational response: {e}"))?;
        }
        let end_now = reply.body.is_empty() && reply.trailers.is_empty() && !reply.empty_data;
        let mut stream = self
            .respond
            .send_response(response_head(reply.status, &reply.headers), end_now)
            .map_err(|e| format!("response head: {e}"))?;
        if end_now {
            return Ok(());
        }
        let last_in_body = reply.trailers.is_empty() && !reply.empty_data;
        send_body(&mut stream, reply.body, reply.chunk, last_in_body).await?;
        if reply.empty_data {
            stream
                .send_data(Bytes::new(), reply.trailers.is_empty())
                .map_err(|e| format!("empty DATA frame: {e}"))?;
        }
        if !reply.trailers.is_empty() {
            stream
                .send_trailers(header_map(&reply.trailers))
                .map_err(|e| format!("trailers: {e}"))?;
        }
        Ok(())
    }
}

/// A response as the server sends it.
#[derive(Default)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    /// Largest DATA frame payload the server sends (0: 16 KiB).
    chunk: usize,
    /// An empty DATA frame after the body (carrying END_STREAM unless trailers follow).
    empty_data: bool,
    trailers: Vec<(String, String)>,
    /// A 1xx response sent before this one.
    informational: Option<(u16, Vec<(String, String)>)>,
}

impl Reply {
    fn new(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    fn header(mut self, name: &str, value: impl ToString) -> Self {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }

    fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    fn chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk;
        self
    }
}

fn header_map(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

fn response_head(status: u16, headers: &[(String, String)]) -> Response<()> {
    let mut response = Response::builder()
        .status(status)
        .body(())
        .expect("response head");
    *response.headers_mut() = header_map(headers);
    response
}

/// Sends `body` in DATA frames of at most `chunk` bytes, each when flow control allows.
async fn send_body(
    stream: &mut h2::SendStream<Bytes>,
    mut body: Bytes,
    chunk: usize,
    end_of_stream: bool,
) -> Result<(), String> {
    let chunk = if chunk == 0 { 16 * 1024 } else { chunk };
    if body.is_empty() {
        if end_of_stream {
            stream
                .send_data(Bytes::new(), true)
                .map_err(|e| format!("response body: {e}"))?;
        }
        return Ok(());
    }
    while !body.is_empty() {
        let want = body.len().min(chunk);
        stream.reserve_capacity(want);
        let granted = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(format!("response body capacity: {e}")),
            None => return Err("response stream closed".into()),
        };
        if granted == 0 {
            continue;
        }
        let piece = body.split_to(granted.min(want));
        stream
            .send_data(piece, end_of_stream && body.is_empty())
            .map_err(|e| format!("response body: {e}"))?;
    }
    Ok(())
}

/// The server's side of the TLS stream, keeping a copy of everything the client wrote.
struct Tap<T> {
    io: T,
    inbound: Arc<Mutex<Vec<u8>>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tap<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.inbound
                .lock()
                .unwrap()
                .extend_from_slice(&buf.filled()[before..]);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tap<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Echoes the request: body as body; `x-req-id`, path, method and body length in headers.
async fn echo(mut ex: Exchange) {
    let Some(body) = ex.read_body_or_record().await else {
        return;
    };
    let reply = echo_reply(&ex, body);
    let _ = ex.reply(reply).await;
}

fn echo_reply(ex: &Exchange, body: Bytes) -> Reply {
    let mut reply = Reply::new(200)
        .header("x-echo-path", ex.path())
        .header("x-echo-method", ex.head.method.as_str())
        .header("x-echo-len", body.len())
        .header("x-echo-conn", ex.conn);
    if let Some(id) = ex.header("x-req-id") {
        reply = reply.header("x-echo-id", id);
    }
    reply.body(body)
}

// ---------------------------------------------------------------------------------------------
// The client's bytes on the wire, as the server tapped them
// ---------------------------------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const ACK: u8 = 0x1;

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The frames in what the client wrote (a frame cut short at the end is left out).
fn frames(bytes: &[u8]) -> Vec<Frame> {
    assert!(
        bytes.starts_with(PREFACE),
        "the client did not open with the HTTP/2 preface"
    );
    let mut rest = &bytes[PREFACE.len()..];
    let mut out = Vec::new();
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        if rest.len() < 9 + len {
            break;
        }
        out.push(Frame {
            kind: rest[3],
            flags: rest[4],
            stream: u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff,
            payload: rest[9..9 + len].to_vec(),
        });
        rest = &rest[9 + len..];
    }
    out
}

enum WireEvent {
    SettingsAck,
    HeaderBlock(Vec<u8>),
}

/// SETTINGS acknowledgements and whole header blocks (HEADERS plus CONTINUATIONs), in order.
fn wire_events(frames: &[Frame]) -> Vec<WireEvent> {
    let mut events = Vec::new();
    let mut open: Option<(u32, Vec<u8>)> = None;
    for frame in frames {
        if let Some((stream, block)) = open.as_mut() {
            assert!(
                frame.kind == CONTINUATION && frame.stream == *stream,
                "a header block on stream {stream} was interrupted by a frame of type {} on \
                 stream {}",
                frame.kind,
                frame.stream
            );
            block.extend_from_slice(&frame.payload);
            if frame.flags & END_HEADERS != 0 {
                let (_, block) = open.take().expect("open block");
                events.push(WireEvent::HeaderBlock(block));
            }
            continue;
        }
        match frame.kind {
            SETTINGS if frame.flags & ACK != 0 => events.push(WireEvent::SettingsAck),
            HEADERS => {
                let mut payload = &frame.payload[..];
                let mut pad = 0;
                if frame.flags & PADDED != 0 {
                    pad = usize::from(payload[0]);
                    payload = &payload[1..];
                }
                if frame.flags & PRIORITY != 0 {
                    payload = &payload[5..];
                }
                let fragment = payload[..payload.len() - pad].to_vec();
                if frame.flags & END_HEADERS != 0 {
                    events.push(WireEvent::HeaderBlock(fragment));
                } else {
                    open = Some((frame.stream, fragment));
                }
            }
            CONTINUATION => panic!("CONTINUATION on stream {} without HEADERS", frame.stream),
            _ => {}
        }
    }
    events
}

/// One HPACK field representation (RFC 7541 §6), without the strings.
#[derive(Debug, PartialEq)]
enum Field {
    Indexed(u64),
    Literal { name_index: u64, indexing: bool },
    SizeUpdate(u64),
}

fn hpack_int(block: &[u8], pos: &mut usize, prefix: u32) -> u64 {
    let mask = (1u8 << prefix) - 1;
    let mut value = u64::from(block[*pos] & mask);
    *pos += 1;
    if value < u64::from(mask) {
        return value;
    }
    let mut shift = 0;
    loop {
        let byte = block[*pos];
        *pos += 1;
        value += u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return value;
        }
    }
}

fn hpack_skip_string(block: &[u8], pos: &mut usize) {
    let len = hpack_int(block, pos, 7);
    *pos += usize::try_from(len).expect("string length");
    assert!(*pos <= block.len(), "an HPACK string runs past its block");
}

fn hpack_fields(block: &[u8]) -> Vec<Field> {
    let mut pos = 0;
    let mut fields = Vec::new();
    while pos < block.len() {
        let first = block[pos];
        let field = if first & 0x80 != 0 {
            Field::Indexed(hpack_int(block, &mut pos, 7))
        } else if first & 0x40 != 0 {
            let name_index = hpack_int(block, &mut pos, 6);
            if name_index == 0 {
                hpack_skip_string(block, &mut pos);
            }
            hpack_skip_string(block, &mut pos);
            Field::Literal {
                name_index,
                indexing: true,
            }
        } else if first & 0x20 != 0 {
            Field::SizeUpdate(hpack_int(block, &mut pos, 5))
        } else {
            let name_index = hpack_int(block, &mut pos, 4);
            if name_index == 0 {
                hpack_skip_string(block, &mut pos);
            }
            hpack_skip_string(block, &mut pos);
            Field::Literal {
                name_index,
                indexing: false,
            }
        };
        fields.push(field);
    }
    fields
}

/// RFC 7541 §4.2: after the client acknowledged a SETTINGS_HEADER_TABLE_SIZE of `limit` (below
/// the initial 4,096), its next header block starts with a table size update to at most `limit`;
/// with a limit of 0, nothing refers to the (empty) dynamic table afterwards.
fn assert_table_size_signalled(inbound: &[u8], limit: u64) {
    let events = wire_events(&frames(inbound));
    let ack = events
        .iter()
        .position(|e| matches!(e, WireEvent::SettingsAck))
        .expect("the client acknowledged the server's SETTINGS");
    let mut blocks = events[ack..].iter().filter_map(|e| match e {
        WireEvent::HeaderBlock(block) => Some(block),
        WireEvent::SettingsAck => None,
    });
    let first = hpack_fields(
        blocks
            .next()
            .expect("a header block after the SETTINGS ACK"),
    );
    let updates: Vec<u64> = first
        .iter()
        .map_while(|f| match f {
            Field::SizeUpdate(size) => Some(*size),
            _ => None,
        })
        .collect();
    assert!(
        updates.last().is_some_and(|size| *size <= limit),
        "the first header block after acknowledging a table size of {limit} must start with a \
         size update to at most that; it starts {:?}",
        &first[..first.len().min(3)]
    );
    if limit == 0 {
        for fields in std::iter::once(first).chain(blocks.map(|b| hpack_fields(b))) {
            for field in &fields {
                let dynamic = match field {
                    Field::Indexed(index) => *index > 61,
                    Field::Literal { name_index, .. } => *name_index > 61,
                    Field::SizeUpdate(size) => *size > 0,
                };
                assert!(
                    !dynamic,
                    "{field:?} with a dynamic table of size 0 (fields: {fields:?})"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Deterministic bytes that differ with `seed`.
fn noise(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push((x >> 32) as u8);
    }
    out.into()
}

/// Deterministic header-safe text (letters, digits, `-`, `_`) that differs with `seed`.
fn token(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    noise(seed ^ 0x5555, len)
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first_difference = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {}; first difference at {first_difference:?}",
            got.len(),
            want.len()
        );
    }
}

fn header<'a>(response: &'a H2Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header value"))
}

fn post(client: &H2Client, path: &str) -> http::request::Builder {
    Request::post(client.uri(path).expect("URI"))
}

fn get(client: &H2Client, path: &str) -> Request<()> {
    Request::get(client.uri(path).expect("URI"))
        .body(())
        .expect("request")
}

/// Sends a POST of `body` tagged `x-req-id: id` to an echo-like server, checking the echo.
async fn send_echo(client: &H2Client, path: &str, id: &str, body: Bytes) -> H2Response {
    let request = post(client, path)
        .header("x-req-id", id)
        .body(())
        .expect("request");
    let response = client
        .send(request, body.clone())
        .await
        .unwrap_or_else(|e| panic!("request {id}: {e}"));
    assert_eq!(response.status, 200, "request {id}");
    assert_eq!(header(&response, "x-echo-id"), Some(id), "request {id}");
    assert_same_bytes(&response.body, &body, &format!("echoed body of {id}"));
    response
}

async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const LONG: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// 1. Concurrency against a small stream limit
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct InFlight {
    now: HashMap<usize, usize>,
    max: HashMap<usize, usize>,
    ids: Vec<String>,
}

/// An echo server with at most `limit` streams per connection, counting streams in progress.
async fn counting_echo_server(limit: u32) -> (TestServer, Arc<Mutex<InFlight>>) {
    let stats = Arc::new(Mutex::new(InFlight::default()));
    let server = ServerBuilder::new()
        .max_concurrent_streams(limit)
        .serve({
            let stats = stats.clone();
            move |mut ex: Exchange| {
                let stats = stats.clone();
                async move {
                    {
                        let mut stats = stats.lock().unwrap();
                        let now = stats.now.entry(ex.conn).or_default();
                        *now += 1;
                        let now = *now;
                        let max = stats.max.entry(ex.conn).or_default();
                        *max = (*max).max(now);
                        stats.ids.push(ex.header("x-req-id").unwrap_or_default());
                    }
                    let body = ex.read_body_or_record().await;
                    // Answers finish out of order.
                    let id: u64 = ex
                        .header("x-req-id")
                        .and_then(|id| id.parse().ok())
                        .unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(1 + id % 3)).await;
                    *stats
                        .lock()
                        .unwrap()
                        .now
                        .get_mut(&ex.conn)
                        .expect("counted") -= 1;
                    if let Some(body) = body {
                        let reply = echo_reply(&ex, body);
                        let _ = ex.reply(reply).await;
                    }
                }
            }
        })
        .await;
    (server, stats)
}

async fn burst(client: &Arc<H2Client>, count: u64) -> Vec<Result<(), String>> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let id = i.to_string();
                let body =
                    Bytes::from([id.as_bytes(), b":", &noise(i, (i % 700) as usize)].concat());
                let path = format!("/3/device/{i:x}");
                let request = post(&client, &path)
                    .header("x-req-id", &id)
                    .body(())
                    .expect("request");
                let response = client.send(request, body.clone()).await?;
                if response.status != 200
                    || header(&response, "x-echo-id") != Some(id.as_str())
                    || header(&response, "x-echo-path") != Some(path.as_str())
                    || response.body != body
                {
                    return Err(format!(
                        "request {id} got the answer to another: status {}, echo id {:?}, path \
                         {:?}, {} body bytes",
                        response.status,
                        header(&response, "x-echo-id"),
                        header(&response, "x-echo-path"),
                        response.body.len()
                    ));
                }
                Ok(())
            })
        })
        .collect();
    join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("send task"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_concurrent_requests_each_get_their_own_answer() {
    let (server, stats) = counting_echo_server(8).await;
    let client = server.client(2, LONG);
    // One answer per connection first: the server's SETTINGS (8 streams) are known by then.
    client.warm().await.expect("warm");
    for i in 0..2 {
        send_echo(&client, "/prime", &format!("prime-{i}"), Bytes::new()).await;
    }

    let results = burst(&client, 3000).await;
    let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of 3000 failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    assert_eq!(
        server.connections(),
        2,
        "exactly the configured connections"
    );
    let stats = stats.lock().unwrap();
    let mut seen: Vec<&String> = stats
        .ids
        .iter()
        .filter(|id| !id.starts_with("prime"))
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3000, "every request reached the server once");
    assert_eq!(stats.ids.len(), 3002, "no request reached the server twice");
    for conn in 0..2 {
        assert_eq!(
            stats.max.get(&conn),
            Some(&8),
            "connection {conn} runs up to the server's 8 streams at once, never more"
        );
    }
    server.assert_no_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_cold_client_respects_the_stream_limit() {
    // The burst starts before the client can have read the server's SETTINGS: streams it opens
    // past the limit meanwhile are refused (REFUSED_STREAM), and must not surface as failures.
    let (server, stats) = counting_echo_server(8).await;
    let client = server.client(2, LONG);
    let results = burst(&client, 1000).await;
    let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of 1000 failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let stats = stats.lock().unwrap();
    for conn in 0..server.connections() {
        assert!(stats.max.get(&conn).is_some_and(|max| *max <= 8));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Request bodies against small and changing flow-control windows
// ---------------------------------------------------------------------------------------------

/// Records each request body by `x-req-id` and answers with its length.
async fn recording_server(
    builder: ServerBuilder,
    before_body: Option<Vec<(Duration, Ctl)>>,
) -> (TestServer, Arc<Mutex<HashMap<String, Bytes>>>) {
    let bodies = Arc::new(Mutex::new(HashMap::new()));
    let before_body = Arc::new(before_body.unwrap_or_default());
    let server = builder
        .serve({
            let bodies = bodies.clone();
            move |mut ex: Exchange| {
                let bodies = bodies.clone();
                let before_body = before_body.clone();
                async move {
                    if ex.header("x-upload").is_some() {
                        for (wait, ctl) in before_body.iter() {
                            tokio::time::sleep(*wait).await;
                            ex.ctl(*ctl);
                        }
                    }
                    let Some(body) = ex.read_body_or_record().await else {
                        return;
                    };
                    let id = ex.header("x-req-id").unwrap_or_default();
                    let len = body.len();
                    bodies.lock().unwrap().insert(id, body);
                    let _ = ex.reply(Reply::new(200).header("x-received", len)).await;
                }
            }
        })
        .await;
    (server, bodies)
}

async fn upload(client: &H2Client, id: &str, body: Bytes) -> Result<(), String> {
    let request = post(client, "/upload")
        .header("x-req-id", id)
        .header("x-upload", "1")
        .body(())
        .expect("request");
    let len = body.len();
    let response = client.send(request, body).await?;
    if response.status != 200 || header(&response, "x-received") != Some(&len.to_string()) {
        return Err(format!(
            "upload {id}: status {}, server received {:?} of {len} bytes",
            response.status,
            header(&response, "x-received")
        ));
    }
    Ok(())
}

/// The largest DATA frame the client sent after acknowledging the server's SETTINGS (before,
/// the default window of 65,535 applies).
/// Uploads `sent` at once as `{prefix}-{i}` and checks the server recorded each exactly.
async fn upload_at_once(
    client: &H2Client,
    recorded: &Mutex<HashMap<String, Bytes>>,
    prefix: &str,
    sent: &[Bytes],
) {
    let ids: Vec<String> = (0..sent.len()).map(|i| format!("{prefix}-{i}")).collect();
    let results = join_all(
        ids.iter()
            .zip(sent)
            .map(|(id, body)| upload(client, id, body.clone())),
    )
    .await;
    for (id, result) in ids.iter().zip(results) {
        result.unwrap_or_else(|e| panic!("upload {id}: {e}"));
    }
    let recorded = recorded.lock().unwrap();
    for (id, body) in ids.iter().zip(sent) {
        assert_same_bytes(&recorded[id], body, &format!("upload {id}"));
    }
}

fn max_data_frame_after_settings(inbound: &[u8]) -> usize {
    frames(inbound)
        .iter()
        .skip_while(|f| !(f.kind == SETTINGS && f.flags & ACK != 0))
        .filter(|f| f.kind == DATA)
        .map(|f| f.payload.len())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_uploads_fit_a_small_stream_window() {
    let (server, bodies) =
        recording_server(ServerBuilder::new().initial_window_size(1000), None).await;
    let client = server.client(1, LONG);
    send_echo_to_recorder(&client).await;

    let single = noise(1, 300_000);
    upload(&client, "single", single.clone())
        .await
        .expect("upload");

    let many: Vec<Bytes> = (0..6)
        .map(|i| noise(100 + i, 300_000 + 1111 * i as usize))
        .collect();
    upload_at_once(&client, &bodies, "many", &many).await;
    assert_same_bytes(&bodies.lock().unwrap()["single"], &single, "single upload");
    let largest = max_data_frame_after_settings(&server.inbound(0));
    assert!(
        largest <= 1000,
        "a DATA frame of {largest} bytes overran the 1000-byte stream window"
    );
    server.assert_no_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_waits_for_a_zero_window_to_open_by_settings() {
    // The stream window starts at 0; only a later SETTINGS_INITIAL_WINDOW_SIZE lets the body
    // through, which the client must apply to the stream already open.
    let (server, bodies) = recording_server(
        ServerBuilder::new().initial_window_size(0),
        Some(vec![(
            Duration::from_millis(50),
            Ctl::SetInitialWindow(65_535),
        )]),
    )
    .await;
    let client = server.client(1, Duration::from_secs(10));
    // Settings known before the upload starts.
    send_echo_to_recorder(&client).await;
    let body = noise(7, 200_000);
    upload(&client, "zero", body.clone()).await.expect("upload");
    assert_same_bytes(&bodies.lock().unwrap()["zero"], &body, "upload");
    server.assert_no_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_survive_the_stream_window_shrinking_and_growing_mid_body() {
    // The window shrinks below what is already in flight (windows go negative, RFC 9113
    // §6.9.2), then grows again: the body still arrives whole and no frame overruns the window.
    let (server, bodies) = recording_server(
        ServerBuilder::new(),
        Some(vec![
            (Duration::ZERO, Ctl::SetInitialWindow(100)),
            (Duration::from_millis(100), Ctl::SetInitialWindow(1 << 20)),
        ]),
    )
    .await;
    let client = server.client(1, Duration::from_secs(10));
    send_echo_to_recorder(&client).await;
    let bodies_sent: Vec<Bytes> = (0..3).map(|i| noise(200 + i, 500_000)).collect();
    upload_at_once(&client, &bodies, "shift", &bodies_sent).await;
    server.assert_no_errors();
}

async fn send_echo_to_recorder(client: &H2Client) {
    let response = client
        .send(get(client, "/hello"), Bytes::new())
        .await
        .expect("first request");
    assert_eq!(response.status, 200);
}

// ---------------------------------------------------------------------------------------------
// 3. Large and fragmented response bodies
// ---------------------------------------------------------------------------------------------

/// `/big/<seed>/<len>`: `noise(seed, len)`; `/tiny/<n>`: n one-byte DATA frames, then an empty
/// one with END_STREAM.
async fn bodies_server() -> TestServer {
    ServerBuilder::new()
        .serve(|ex: Exchange| async move {
            let path = ex.path();
            let parts: Vec<&str> = path.split('/').collect();
            let reply = match parts.as_slice() {
                ["", "big", seed, len] => {
                    Reply::new(200).body(noise(seed.parse().unwrap(), len.parse().unwrap()))
                }
                ["", "tiny", n] => {
                    let mut reply = Reply::new(200).body(noise(9, n.parse().unwrap())).chunk(1);
                    reply.empty_data = true;
                    reply
                }
                _ => Reply::new(404),
            };
            let _ = ex.reply(reply).await;
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_megabyte_responses_arrive_whole() {
    let server = bodies_server().await;
    let client = server.client(1, LONG);

    let response = client
        .send(get(&client, "/big/1/3000000"), Bytes::new())
        .await
        .expect("3 MB response");
    assert_eq!(response.status, 200);
    assert_same_bytes(&response.body, &noise(1, 3_000_000), "3 MB body");

    // Together more than any connection window the client is likely to advertise up front.
    let responses = join_all((0..5u64).map(|seed| {
        let client = client.clone();
        async move {
            let path = format!("/big/{}/{}", 10 + seed, 3_000_000 + seed);
            client.send(get(&client, &path), Bytes::new()).await
        }
    }))
    .await;
    for (seed, response) in (0..5u64).zip(responses) {
        let response = response.expect("concurrent 3 MB response");
        assert_same_bytes(
            &response.body,
            &noise(10 + seed, 3_000_000 + seed as usize),
            &format!("concurrent body {seed}"),
        );
    }
    assert_eq!(server.connections(), 1);
    server.assert_no_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_in_thousands_of_one_byte_frames_arrives_whole() {
    let server = bodies_server().await;
    let client = server.client(1, LONG);
    let response = client
        .send(get(&client, "/tiny/3000"), Bytes::new())
        .await
        .expect("response");
    assert_eq!(response.status, 200);
    assert_same_bytes(&response.body, &noise(9, 3000), "body of one-byte frames");
}

// ---------------------------------------------------------------------------------------------
// 4. Header blocks split into CONTINUATION frames
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_blocks_larger_than_a_frame_go_both_ways() {
    // 48 KB of header value is more than two 16 KB frames even after Huffman coding: the
    // server's response head needs CONTINUATION frames, and so does the client's request head.
    let big_response = token(1, 48_000);
    let received = Arc::new(Mutex::new(HashMap::new()));
    let server = ServerBuilder::new()
        .max_frame_size(16_384)
        .serve({
            let big_response = big_response.clone();
            let received = received.clone();
            move |mut ex: Exchange| {
                let big_response = big_response.clone();
                let received = received.clone();
                async move {
                    let id = ex.header("x-req-id").unwrap_or_default();
                    if let Some(big) = ex.header("x-big-request") {
                        received.lock().unwrap().insert(id.clone(), big);
                    }
                    let Some(body) = ex.read_body_or_record().await else {
                        return;
                    };
                    let mut reply = echo_reply(&ex, body);
                    if ex.header("x-want-big").is_some() {
                        reply = reply.header("x-big-response", &big_response);
                    }
                    let _ = ex.reply(reply).await;
                }
            }
        })
        .await;
    let client = server.client(1, LONG);

    let response = client
        .send(
            post(&client, "/big-head")
                .header("x-req-id", "one")
                .header("x-want-big", "1")
                .body(())
                .unwrap(),
            Bytes::from_static(b"small body"),
        )
        .await
        .expect("response with a big head");
    assert_eq!(response.status, 200);
    assert_eq!(
        header(&response, "x-big-response"),
        Some(big_response.as_str())
    );
    assert_eq!(response.body, Bytes::from_static(b"small body"));

    // Big heads both ways, interleaved with small requests on the same connection: a header
    // block's frames must go out back to back.
    let sends = (0..60u64).map(|i| {
        let client = client.clone();
        let big_response = big_response.clone();
        async move {
            let id = format!("r{i}");
            let big_request = i
                .is_multiple_of(3)
                .then(|| token(1000 + i, 40_000 + i as usize));
            let mut request = post(&client, "/mixed").header("x-req-id", &id);
            if let Some(big) = &big_request {
                request = request.header("x-big-request", big);
            }
            if i.is_multiple_of(4) {
                request = request.header("x-want-big", "1");
            }
            let body = noise(i, 100);
            let response = client
                .send(request.body(()).unwrap(), body.clone())
                .await
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(header(&response, "x-echo-id"), Some(id.as_str()));
            assert_eq!(response.body, body);
            if i.is_multiple_of(4) {
                assert_eq!(
                    header(&response, "x-big-response"),
                    Some(big_response.as_str())
                );
            } else {
                assert_eq!(header(&response, "x-big-response"), None);
            }
            (id, big_request)
        }
    });
    let sent = join_all(sends).await;
    let received = received.lock().unwrap();
    for (id, big_request) in sent {
        assert_eq!(
            received.get(&id),
            big_request.as_ref(),
            "big request header of {id}"
        );
    }
    let continuations = frames(&server.inbound(0))
        .iter()
        .filter(|f| f.kind == CONTINUATION)
        .count();
    assert!(
        continuations >= 20,
        "20 request heads of 40 KB need CONTINUATION frames; saw {continuations}"
    );
    server.assert_no_errors();
}

// ---------------------------------------------------------------------------------------------
// 5. Trailers, informational responses, empty bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_informational_responses_and_empty_bodies() {
    let server = ServerBuilder::new()
        .serve(|ex: Exchange| async move {
            let trailers = vec![
                ("x-checksum".to_owned(), "abc123".to_owned()),
                ("grpc-status".to_owned(), "0".to_owned()),
            ];
            let reply = match ex.path().as_str() {
                "/trailers" => Reply {
                    trailers,
                    ..Reply::new(200)
                        .header("x-head", "1")
                        .body(noise(3, 100_000))
                },
                "/trailers-only" => Reply {
                    trailers,
                    ..Reply::new(200).header("x-head", "2")
                },
                "/early-hints" => Reply {
                    informational: Some((
                        103,
                        vec![("link".to_owned(), "</style.css>; rel=preload".to_owned())],
                    )),
                    ..Reply::new(201).header("x-head", "3").body("final answer")
                },
                "/no-content" => Reply::new(204).header("x-head", "4"),
                "/empty-data" => Reply {
                    empty_data: true,
                    ..Reply::new(200).header("x-head", "5")
                },
                _ => Reply::new(404),
            };
            let _ = ex.reply(reply).await;
        })
        .await;
    let client = server.client(1, Duration::from_secs(10));
    let cases: [(&str, u16, &str, Bytes); 5] = [
        ("/trailers", 200, "1", noise(3, 100_000)),
        ("/trailers-only", 200, "2", Bytes::new()),
        (
            "/early-hints",
            201,
            "3",
            Bytes::from_static(b"final answer"),
        ),
        ("/no-content", 204, "4", Bytes::new()),
        ("/empty-data", 200, "5", Bytes::new()),
    ];
    for (path, status, head, body) in cases {
        let response = client
            .send(get(&client, path), Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(response.status, status, "{path}");
        assert_eq!(header(&response, "x-head"), Some(head), "{path}");
        assert_same_bytes(&response.body, &body, path);
    }
    assert_eq!(server.connections(), 1);
    server.assert_no_errors();
}

// ---------------------------------------------------------------------------------------------
// 6. Stream resets
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_stream_fails_only_its_own_request() {
    let server = ServerBuilder::new()
        .serve(|mut ex: Exchange| async move {
            match ex.header("x-reset").as_deref() {
                Some("refused") => ex.respond.send_reset(Reason::REFUSED_STREAM),
                Some("internal") => {
                    let _ = ex.read_body().await;
                    ex.respond.send_reset(Reason::INTERNAL_ERROR);
                }
                Some("after-head") => {
                    // A head and part of the body, then the reset: not a complete answer.
                    let _ = ex.read_body().await;
                    if let Ok(mut stream) = ex.respond.send_response(response_head(200, &[]), false)
                    {
                        let _ = stream.send_data(Bytes::from_static(b"partial"), false);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        stream.send_reset(Reason::INTERNAL_ERROR);
                    }
                }
                _ => echo(ex).await,
            }
        })
        .await;
    let client = server.client(1, Duration::from_secs(10));
    send_echo(&client, "/first", "first", Bytes::from_static(b"x")).await;

    let marked = ["refused", "internal", "after-head"].map(|kind| {
        let client = client.clone();
        async move {
            let request = post(&client, "/reset")
                .header("x-reset", kind)
                .body(())
                .unwrap();
            let started = Instant::now();
            let result = client.send(request, Bytes::from_static(b"data")).await;
            (kind, result, started.elapsed())
        }
    });
    let plain = (0..50u64).map(|i| {
        let client = client.clone();
        async move { send_echo(&client, "/plain", &format!("p{i}"), noise(i, 300)).await }
    });
    let (marked, _) = tokio::join!(join_all(marked), join_all(plain));
    for (kind, result, took) in marked {
        assert!(
            result.is_err(),
            "the stream reset ({kind}) must fail its send, got status {:?}",
            result.map(|r| r.status)
        );
        assert!(
            took < Duration::from_secs(3),
            "{kind}: the reset was not noticed promptly"
        );
    }
    for i in 0..5 {
        send_echo(&client, "/after", &format!("after-{i}"), noise(i, 10)).await;
    }
    assert_eq!(
        server.connections(),
        1,
        "a stream error does not cost the connection"
    );
    server.assert_no_errors();
}

// ---------------------------------------------------------------------------------------------
// 7. GOAWAY and dropped connections
// ---------------------------------------------------------------------------------------------

/// Requests with `x-hold` wait for the gate; `x-ctl` makes the server act on its connection
/// (`graceful`, `abrupt`, `drop`) before answering.
async fn gated_server(
    builder: ServerBuilder,
) -> (TestServer, watch::Sender<bool>, Arc<AtomicUsize>) {
    let (gate, gate_rx) = watch::channel(false);
    let held = Arc::new(AtomicUsize::new(0));
    let server = builder
        .serve({
            let held = held.clone();
            move |mut ex: Exchange| {
                let mut gate_rx = gate_rx.clone();
                let held = held.clone();
                async move {
                    let Some(body) = ex.read_body_or_record().await else {
                        return;
                    };
                    if ex.header("x-hold").is_some() {
                        held.fetch_add(1, Ordering::SeqCst);
                        let _ = gate_rx.wait_for(|open| *open).await;
                    }
                    match ex.header("x-ctl").as_deref() {
                        Some("graceful") => ex.ctl(Ctl::GracefulShutdown),
                        Some("abrupt") => {
                            ex.ctl(Ctl::Abrupt(Reason::NO_ERROR));
                            return;
                        }
                        Some("drop") => {
                            ex.ctl(Ctl::Drop);
                            return;
                        }
                        _ => {}
                    }
                    let reply = echo_reply(&ex, body);
                    let _ = ex.reply(reply).await;
                }
            }
        })
        .await;
    (server, gate, held)
}

/// A gated server, and a client with one connection (10 s timeout) that has had one answer.
async fn gated_pair() -> (
    TestServer,
    watch::Sender<bool>,
    Arc<AtomicUsize>,
    Arc<H2Client>,
) {
    let (server, gate, held) = gated_server(ServerBuilder::new()).await;
    let client = server.client(1, Duration::from_secs(10));
    send_echo(&client, "/first", "first", Bytes::from_static(b"1")).await;
    (server, gate, held, client)
}

/// Sends `count` requests the gated server holds, and returns once it holds them all.
async fn hold(
    client: &Arc<H2Client>,
    held: &Arc<AtomicUsize>,
    count: usize,
) -> Vec<tokio::task::JoinHandle<(String, Result<H2Response, String>)>> {
    let in_flight = (0..count)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let id = format!("held-{i}");
                let request = post(&client, "/held")
                    .header("x-req-id", &id)
                    .header("x-hold", "1")
                    .body(())
                    .unwrap();
                let result = client.send(request, Bytes::from(id.clone())).await;
                (id, result)
            })
        })
        .collect();
    wait_until(
        &format!("{count} held requests at the server"),
        Duration::from_secs(5),
        || held.load(Ordering::SeqCst) == count,
    )
    .await;
    in_flight
}

async fn control(client: &H2Client, what: &str) -> Result<H2Response, String> {
    let request = post(client, "/control")
        .header("x-req-id", what)
        .header("x-ctl", what)
        .body(())
        .unwrap();
    client.send(request, Bytes::from_static(b"ctl")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_goaway_lets_requests_in_flight_finish_then_a_new_connection_serves() {
    let (server, gate, held, client) = gated_pair().await;
    let in_flight = hold(&client, &held, 10).await;

    // The answer to the request that triggered the GOAWAY still counts.
    let response = control(&client, "graceful")
        .await
        .expect("the GOAWAY request itself");
    assert_eq!(header(&response, "x-echo-id"), Some("graceful"));
    tokio::time::sleep(Duration::from_millis(200)).await;

    gate.send_replace(true);
    for task in in_flight {
        let (id, result) = task.await.unwrap();
        let response = result.unwrap_or_else(|e| panic!("{id} was in flight at GOAWAY: {e}"));
        assert_eq!(header(&response, "x-echo-id"), Some(id.as_str()));
        assert_eq!(response.body, Bytes::from(id));
    }

    // Drained, the server closes the connection; the client notices and opens another.
    wait_until(
        "the server to close the drained connection",
        Duration::from_secs(5),
        || server.open_server_connections() == 0,
    )
    .await;
    wait_until(
        "the client to let the closed connection go",
        Duration::from_secs(5),
        || client.open_connections() == 0,
    )
    .await;
    for i in 0..20 {
        send_echo(&client, "/after", &format!("after-{i}"), noise(i, 50)).await;
    }
    assert_eq!(server.connections(), 2);
    server.assert_no_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_while_the_old_connection_drains_after_goaway_succeeds() {
    // After GOAWAY the old connection takes no new streams but stays open for the ones in
    // flight: a request made meanwhile belongs on a new connection, not to the caller as an
    // error.
    let (server, gate, held, client) = gated_pair().await;
    let in_flight = hold(&client, &held, 3).await;
    control(&client, "graceful")
        .await
        .expect("the GOAWAY request itself");
    tokio::time::sleep(Duration::from_millis(200)).await;

    for i in 0..5 {
        send_echo(&client, "/draining", &format!("draining-{i}"), noise(i, 20)).await;
    }
    assert_eq!(
        server.connections(),
        2,
        "the new requests went on a new connection"
    );

    gate.send_replace(true);
    for task in in_flight {
        let (id, result) = task.await.unwrap();
        result.unwrap_or_else(|e| panic!("{id} was in flight at GOAWAY: {e}"));
    }
    server.assert_no_errors();
}

/// Holds 5 requests, ends their connection with the `control` action (`abrupt`: GOAWAY with an
/// error; `drop`: TCP closed) and checks they all fail at once, not at their timeout.
async fn held_requests_fail_at_once(client: &Arc<H2Client>, held: &Arc<AtomicUsize>, action: &str) {
    let in_flight = hold(client, held, 5).await;
    let started = Instant::now();
    assert!(
        control(client, action).await.is_err(),
        "{action}: its connection was ended under it"
    );
    for task in in_flight {
        let (id, result) = task.await.unwrap();
        assert!(
            result.is_err(),
            "{id}: its connection was ended under it ({action})"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{action}: requests on an ended connection fail at once, not at their timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_goaway_fails_requests_in_flight_promptly_and_the_next_send_reconnects() {
    let (server, _gate, held, client) = gated_pair().await;
    held_requests_fail_at_once(&client, &held, "abrupt").await;
    send_echo(&client, "/next", "next", Bytes::from_static(b"2")).await;
    assert_eq!(server.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tcp_connection_fails_requests_in_flight_and_the_next_send_reconnects() {
    let (server, _gate, held, client) = gated_pair().await;

    // Mid-request.
    held_requests_fail_at_once(&client, &held, "drop").await;
    send_echo(&client, "/next", "next", Bytes::from_static(b"2")).await;
    assert_eq!(server.connections(), 2);

    // While idle: the client notices and the next send goes on a new connection.
    server.ctl_all(Ctl::Drop);
    wait_until(
        "the client to see its idle connection dropped",
        Duration::from_secs(5),
        || client.open_connections() == 0,
    )
    .await;
    send_echo(
        &client,
        "/after-idle-drop",
        "after",
        Bytes::from_static(b"3"),
    )
    .await;
    assert_eq!(server.connections(), 3);
}

// ---------------------------------------------------------------------------------------------
// 8. Timeouts
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_answer_times_out_and_frees_its_stream() {
    let resets = Arc::new(Mutex::new(Vec::new()));
    let server = ServerBuilder::new()
        .max_concurrent_streams(1)
        .serve({
            let resets = resets.clone();
            move |mut ex: Exchange| {
                let resets = resets.clone();
                async move {
                    match ex.header("x-hang").as_deref() {
                        Some("silent") => {
                            let _ = ex.read_body().await;
                            let reason = ex.reset_by_client(Duration::from_secs(5)).await;
                            resets.lock().unwrap().push(("silent", reason));
                        }
                        Some("mid-body") => {
                            // The head and part of the body, then nothing.
                            let _ = ex.read_body().await;
                            let Ok(mut stream) =
                                ex.respond.send_response(response_head(200, &[]), false)
                            else {
                                return;
                            };
                            let _ = stream.send_data(Bytes::from_static(b"partial"), false);
                            let reason = tokio::time::timeout(
                                Duration::from_secs(5),
                                poll_fn(|cx| stream.poll_reset(cx)),
                            )
                            .await
                            .ok()
                            .and_then(Result::ok);
                            resets.lock().unwrap().push(("mid-body", reason));
                        }
                        _ => echo(ex).await,
                    }
                }
            }
        })
        .await;
    let timeout = Duration::from_millis(300);
    let client = server.client(1, timeout);
    send_echo(&client, "/first", "first", Bytes::from_static(b"1")).await;

    for (round, kind) in ["silent", "mid-body", "silent", "mid-body"]
        .iter()
        .enumerate()
    {
        let request = post(&client, "/hang")
            .header("x-hang", *kind)
            .body(())
            .unwrap();
        let started = Instant::now();
        let result = client.send(request, Bytes::from_static(b"x")).await;
        let took = started.elapsed();
        let error = match result {
            Ok(response) => panic!(
                "{kind}: got status {} without a whole answer",
                response.status
            ),
            Err(e) => e,
        };
        assert!(error.contains("no answer within"), "{kind}: {error}");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "{kind}: timed out after {took:?} with a {timeout:?} timeout"
        );
        // One stream allowed: this only gets through if the abandoned one was reset.
        send_echo(
            &client,
            "/next",
            &format!("next-{round}"),
            noise(round as u64, 64),
        )
        .await;
    }
    wait_until(
        "the server to see all four streams reset",
        Duration::from_secs(3),
        || resets.lock().unwrap().len() == 4,
    )
    .await;
    for (kind, reason) in resets.lock().unwrap().iter() {
        assert!(
            reason.is_some(),
            "{kind}: the client never reset the abandoned stream"
        );
    }
    assert_eq!(
        server.connections(),
        1,
        "a timeout does not cost the connection"
    );
    server.assert_no_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_streaming_responses_leave_the_connection_usable() {
    // Responses that never end, sending as fast as flow control allows: when the client gives
    // up on them, data still arriving for the reset streams must not use up the connection's
    // window for good.
    let stopped = Arc::new(AtomicUsize::new(0));
    let server = ServerBuilder::new()
        .serve({
            let stopped = stopped.clone();
            move |ex: Exchange| {
                let stopped = stopped.clone();
                async move {
                    if ex.path() == "/endless" {
                        let mut ex = ex;
                        if let Ok(mut stream) =
                            ex.respond.send_response(response_head(200, &[]), false)
                        {
                            let mut seed = 0;
                            while send_body(&mut stream, noise(seed, 64 * 1024), 0, false)
                                .await
                                .is_ok()
                            {
                                seed += 1;
                            }
                        }
                        stopped.fetch_add(1, Ordering::SeqCst);
                    } else {
                        let size: usize = ex.path().trim_start_matches("/size/").parse().unwrap();
                        let _ = ex.reply(Reply::new(200).body(noise(5, size))).await;
                    }
                }
            }
        })
        .await;
    let client = server.client(1, Duration::from_millis(600));
    let endless =
        join_all((0..6).map(|_| client.send(get(&client, "/endless"), Bytes::new()))).await;
    for result in endless {
        let error = result.err().expect("an endless response cannot complete");
        assert!(error.contains("no answer within"), "{error}");
    }
    for round in 0..3 {
        let response = client
            .send(get(&client, "/size/1000000"), Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("round {round} after abandoning the endless ones: {e}"));
        assert_same_bytes(&response.body, &noise(5, 1_000_000), "1 MB after");
    }
    wait_until(
        "every endless stream to be reset",
        Duration::from_secs(3),
        || stopped.load(Ordering::SeqCst) == 6,
    )
    .await;
    assert_eq!(server.connections(), 1);
}

// ---------------------------------------------------------------------------------------------
// 9. Header fidelity and HPACK state
// ---------------------------------------------------------------------------------------------

struct SentRequest {
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

fn fidelity_request(i: u64) -> SentRequest {
    let path = if i.is_multiple_of(2) {
        format!("/3/device/{}", hex_of(&noise(i, 32)))
    } else {
        "/3/device/constant-device-token".to_owned()
    };
    let path = if i % 10 == 4 {
        format!("{path}?attempt={i}&x=%20y")
    } else {
        path
    };
    SentRequest {
        path,
        headers: vec![
            ("x-req-id", i.to_string()),
            (
                "authorization",
                format!("bearer {}", token(1000 + i / 50, 120)),
            ),
            ("x-custom", token(i, 200 + (i % 7) as usize)),
            ("content-type", "application/json".to_owned()),
            ("apns-topic", "com.example.app".to_owned()),
            ("apns-push-type", "alert".to_owned()),
        ],
        body: Bytes::from(format!("{{\"aps\":{{\"alert\":\"message {i}\"}}}}")),
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn header_fidelity(builder: ServerBuilder) -> TestServer {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = builder
        .serve({
            let seen = seen.clone();
            move |mut ex: Exchange| {
                let seen = seen.clone();
                async move {
                    let Some(body) = ex.read_body_or_record().await else {
                        return;
                    };
                    seen.lock().unwrap().push((ex.head.clone(), body.clone()));
                    let reply = echo_reply(&ex, Bytes::new());
                    let _ = ex.reply(reply).await;
                }
            }
        })
        .await;
    let client = server.client(2, LONG);

    let send = |i: u64| {
        let client = client.clone();
        async move {
            let sent = fidelity_request(i);
            let mut request = post(&client, &sent.path);
            for (name, value) in &sent.headers {
                request = request.header(*name, value);
            }
            let response = client
                .send(request.body(()).unwrap(), sent.body.clone())
                .await
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(response.status, 200, "request {i}");
            assert_eq!(header(&response, "x-echo-id"), Some(i.to_string().as_str()));
        }
    };
    for i in 0..100 {
        send(i).await;
    }
    for batch in 0..10u64 {
        join_all((0..50).map(|j| send(100 + batch * 50 + j))).await;
    }

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 600);
    let authority = format!("127.0.0.1:{}", server.addr.port());
    for (head, body) in seen.iter() {
        let id: u64 = head.headers["x-req-id"].to_str().unwrap().parse().unwrap();
        let sent = fidelity_request(id);
        assert_eq!(head.method, Method::POST, "request {id}");
        assert_eq!(head.uri.scheme_str(), Some("https"), "request {id}");
        assert_eq!(
            head.uri.authority().map(|a| a.as_str()),
            Some(authority.as_str()),
            "request {id}"
        );
        assert_eq!(
            head.uri.path_and_query().map(|p| p.as_str()),
            Some(sent.path.as_str()),
            "request {id}"
        );
        assert_eq!(body, &sent.body, "request {id}");
        for (name, value) in &sent.headers {
            let values: Vec<_> = head.headers.get_all(*name).iter().collect();
            assert_eq!(values, [value.as_str()], "{name} of request {id}");
        }
        let expected: HashSet<&str> = sent
            .headers
            .iter()
            .map(|(name, _)| *name)
            .chain(["content-length"])
            .collect();
        for name in head.headers.keys() {
            assert!(
                expected.contains(name.as_str()),
                "request {id} arrived with a header it was not sent with: {name}"
            );
        }
        assert_eq!(
            head.headers
                .get_all("content-length")
                .iter()
                .collect::<Vec<_>>(),
            [sent.body.len().to_string().as_str()],
            "content-length of request {id}"
        );
    }
    assert_eq!(server.connections(), 2);
    server.assert_no_errors();
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_arrive_exactly_with_the_default_hpack_table() {
    header_fidelity(ServerBuilder::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_arrive_exactly_with_no_hpack_table() {
    let server = header_fidelity(ServerBuilder::new().header_table_size(0)).await;
    for conn in 0..2 {
        assert_table_size_signalled(&server.inbound(conn), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_arrive_exactly_with_a_small_hpack_table() {
    // 200 bytes: room for a couple of the short headers, never the long ones, so the table
    // evicts on almost every request.
    let server = header_fidelity(ServerBuilder::new().header_table_size(200)).await;
    for conn in 0..2 {
        assert_table_size_signalled(&server.inbound(conn), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_size_check_can_fail() {
    // A server that keeps the default table is owed no size update: asked to find one, the check
    // must fail, so its passing above means the client really signalled the smaller table.
    let server = ServerBuilder::new().serve(echo).await;
    let client = server.client(1, Duration::from_secs(10));
    for i in 0..5 {
        send_echo(&client, "/3/device/x", &i.to_string(), noise(i, 20)).await;
    }
    let inbound = server.inbound(0);
    let fields = wire_events(&frames(&inbound))
        .iter()
        .filter(|e| matches!(e, WireEvent::HeaderBlock(_)))
        .count();
    assert_eq!(fields, 5, "one header block per request");
    let caught = std::panic::catch_unwind(|| assert_table_size_signalled(&inbound, 0));
    assert!(
        caught.is_err(),
        "the check passed without a table size update"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Status codes, headers and bodies of error answers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_headers_and_bodies_come_back_as_sent() {
    let server = ServerBuilder::new()
        .serve(|mut ex: Exchange| async move {
            // The body is read first: answering before it is would be an early answer (below).
            let _ = ex.read_body_or_record().await;
            let reply = match ex.path().as_str() {
                "/429" => Reply::new(429)
                    .header("retry-after", 7)
                    .header("content-type", "application/json")
                    .body(r#"{"reason":"TooManyRequests"}"#),
                "/410" => Reply::new(410)
                    .header("apns-id", "0E3C4D2A-0000-0000-0000-000000000000")
                    .body(r#"{"reason":"Unregistered","timestamp":1700000000000}"#),
                "/500" => Reply::new(500),
                "/multi" => Reply::new(200)
                    .header("x-multi", "one")
                    .header("x-multi", "two")
                    .header("x-empty", "")
                    .body("multi"),
                _ => Reply::new(404),
            };
            let _ = ex.reply(reply).await;
        })
        .await;
    let client = server.client(1, Duration::from_secs(10));
    let send = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .send(
                    post(&client, path).body(()).unwrap(),
                    Bytes::from_static(b"{}"),
                )
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"))
        }
    };

    let response = send("/429").await;
    assert_eq!(response.status, 429);
    assert_eq!(header(&response, "retry-after"), Some("7"));
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    assert_eq!(
        response.body,
        Bytes::from_static(br#"{"reason":"TooManyRequests"}"#)
    );

    let response = send("/410").await;
    assert_eq!(response.status, 410);
    assert_eq!(
        header(&response, "apns-id"),
        Some("0E3C4D2A-0000-0000-0000-000000000000")
    );
    assert_eq!(
        response.body,
        Bytes::from_static(br#"{"reason":"Unregistered","timestamp":1700000000000}"#)
    );

    let response = send("/500").await;
    assert_eq!(response.status, 500);
    assert!(response.body.is_empty());

    let response = send("/multi").await;
    assert_eq!(response.status, 200);
    let multi: Vec<_> = response.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(header(&response, "x-empty"), Some(""));
    assert_eq!(response.body, Bytes::from_static(b"multi"));

    let response = send("/elsewhere").await;
    assert_eq!(response.status, 404);
}

// ---------------------------------------------------------------------------------------------
// 11. content-length and the pseudo-headers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_matches_the_body_sent() {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let server = ServerBuilder::new()
        .serve({
            let seen = seen.clone();
            move |mut ex: Exchange| {
                let seen = seen.clone();
                async move {
                    let Some(body) = ex.read_body_or_record().await else {
                        return;
                    };
                    let id = ex.header("x-req-id").unwrap_or_default();
                    seen.lock()
                        .unwrap()
                        .insert(id, (ex.head.clone(), body.clone()));
                    let reply = echo_reply(&ex, body);
                    let _ = ex.reply(reply).await;
                }
            }
        })
        .await;
    let client = server.client(1, Duration::from_secs(10));
    let cases: [(&str, Method, Bytes, Option<&str>); 5] = [
        ("post", Method::POST, Bytes::from_static(b"hello"), None),
        ("post-empty", Method::POST, Bytes::new(), None),
        ("put-empty", Method::PUT, Bytes::new(), None),
        // A caller's wrong content-length is replaced by the body's.
        ("post-wrong-length", Method::POST, noise(1, 10), Some("999")),
        ("get", Method::GET, Bytes::new(), None),
    ];
    for (id, method, body, declared) in &cases {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(client.uri(&format!("/cl/{id}")).unwrap())
            .header("x-req-id", *id);
        if let Some(length) = declared {
            request = request.header("content-length", *length);
        }
        let response = client
            .send(request.body(()).unwrap(), body.clone())
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(response.status, 200, "{id}");
        assert_eq!(response.body, *body, "{id}");
    }
    let seen = seen.lock().unwrap();
    let authority = format!("127.0.0.1:{}", server.addr.port());
    for (id, method, body, _) in &cases {
        let (head, received) = &seen[*id];
        assert_eq!(head.method, *method, "{id}");
        assert_eq!(head.uri.scheme_str(), Some("https"), "{id}");
        assert_eq!(
            head.uri.authority().map(|a| a.as_str()),
            Some(authority.as_str())
        );
        assert_eq!(head.uri.path(), format!("/cl/{id}"));
        assert_eq!(received, body, "{id}");
        let lengths: Vec<_> = head.headers.get_all("content-length").iter().collect();
        if *method == Method::GET {
            assert!(
                lengths.is_empty() || lengths == ["0"],
                "{id}: content-length {lengths:?}"
            );
        } else {
            assert_eq!(lengths, [body.len().to_string().as_str()], "{id}");
        }
    }
    server.assert_no_errors();
}

// ---------------------------------------------------------------------------------------------
// 12. PING from the server
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_answers_the_servers_pings() {
    let (server, gate, held, client) = gated_pair().await;
    let mut ping = server.take_ping(0);
    for round in 0..3 {
        tokio::time::timeout(Duration::from_secs(5), ping.ping(h2::Ping::opaque()))
            .await
            .unwrap_or_else(|_| panic!("no PONG within 5 s (round {round})"))
            .expect("PING");
    }
    // And while a request is in flight.
    let in_flight = hold(&client, &held, 1).await;
    tokio::time::timeout(Duration::from_secs(5), ping.ping(h2::Ping::opaque()))
        .await
        .expect("no PONG within 5 s with a request in flight")
        .expect("PING");
    gate.send_replace(true);
    for task in in_flight {
        let (id, result) = task.await.unwrap();
        let response = result.expect("the held request");
        assert_eq!(header(&response, "x-echo-id"), Some(id.as_str()));
    }
    assert_eq!(server.connections(), 1);
    server.assert_no_errors();
}

// ---------------------------------------------------------------------------------------------
// 13. warm() and open_connections()
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_opens_every_connection_and_open_connections_counts_them() {
    let server = ServerBuilder::new().serve(echo).await;
    let client = server.client(3, Duration::from_secs(10));
    assert_eq!(client.open_connections(), 0, "nothing before it is asked");
    assert_eq!(server.connections(), 0);

    client.warm().await.expect("warm");
    assert_eq!(client.open_connections(), 3);
    wait_until("3 server connections", Duration::from_secs(5), || {
        server.connections() == 3
    })
    .await;
    client.warm().await.expect("warm again");
    assert_eq!(client.open_connections(), 3);

    // Requests use the warm connections, all of them, and open no more.
    let mut conns = HashSet::new();
    for i in 0..12 {
        let response = send_echo(&client, "/spread", &format!("s{i}"), noise(i, 10)).await;
        conns.insert(header(&response, "x-echo-conn").unwrap().to_owned());
    }
    assert_eq!(conns.len(), 3, "requests are spread over the connections");
    assert_eq!(server.connections(), 3);
    server.assert_no_errors();

    // All closed by the server: the count drops, and warm() opens them again.
    server.ctl_all(Ctl::GracefulShutdown);
    wait_until(
        "the client to see its connections closed",
        Duration::from_secs(5),
        || client.open_connections() == 0,
    )
    .await;
    client
        .warm()
        .await
        .expect("warm after the server closed them");
    assert_eq!(client.open_connections(), 3);
    wait_until("3 more server connections", Duration::from_secs(5), || {
        server.connections() == 6
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Setup failures and the base URL
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_localhost_base_works_and_uri_joins_the_path() {
    let server = ServerBuilder::new().serve(echo).await;
    let base = format!("https://localhost:{}/", server.addr.port());
    let client = H2Client::new(&base, &server.options(1, Duration::from_secs(10))).expect("client");
    let uri = client.uri("/3/device/abc?x=1").expect("URI");
    assert_eq!(
        uri.to_string(),
        format!("https://localhost:{}/3/device/abc?x=1", server.addr.port())
    );
    let response = send_echo(
        &client,
        "/3/device/abc?x=1",
        "local",
        Bytes::from_static(b"hi"),
    )
    .await;
    assert_eq!(header(&response, "x-echo-path"), Some("/3/device/abc?x=1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificates_missing_h2_and_closed_ports_fail_promptly() {
    let timeout = Duration::from_secs(10);
    let server = ServerBuilder::new().serve(echo).await;
    let other_ca = TestCa::new();
    let untrusted = H2Client::new(
        &server.base(),
        &HttpOptions {
            extra_ca_pem: Some(Arc::new(other_ca.ca_pem().into_bytes())),
            ..server.options(1, timeout)
        },
    )
    .expect("client");

    let no_h2 = ServerBuilder::new()
        .alpn(vec![b"http/1.1"])
        .serve(echo)
        .await;
    let no_alpn = ServerBuilder::new().alpn(vec![]).serve(echo).await;
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let closed = H2Client::new(
        &format!("https://127.0.0.1:{closed_port}"),
        &server.options(1, timeout),
    )
    .expect("client");

    let clients = [
        ("untrusted CA", untrusted),
        (
            "no h2 in ALPN",
            H2Client::new(&no_h2.base(), &no_h2.options(1, timeout)).unwrap(),
        ),
        (
            "no ALPN",
            H2Client::new(&no_alpn.base(), &no_alpn.options(1, timeout)).unwrap(),
        ),
        ("closed port", closed),
    ];
    for (what, client) in &clients {
        let started = Instant::now();
        let result = client.send(get(client, "/"), Bytes::new()).await;
        assert!(result.is_err(), "{what}: a request went through");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{what}: not prompt"
        );
        assert!(client.warm().await.is_err(), "{what}: warm() succeeded");
        assert_eq!(client.open_connections(), 0, "{what}");
    }
    assert_eq!(
        server.connections(),
        0,
        "no HTTP/2 connection past an untrusted certificate"
    );
}

#[test]
fn non_https_bases_are_refused() {
    for base in ["http://127.0.0.1:1", "127.0.0.1:1", "not a url"] {
        assert!(
            H2Client::new(base, &HttpOptions::default()).is_err(),
            "{base:?} accepted"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Early answers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_is_read_is_returned() {
    // RFC 9113 §8.1: a server may answer before the request body is complete and then reset
    // the stream with NO_ERROR; the client must not discard that answer.
    let server = ServerBuilder::new()
        .initial_window_size(1000)
        .serve(|ex: Exchange| async move {
            if ex.header("x-early").is_some() {
                let _ = ex
                    .reply(Reply::new(413).body(r#"{"reason":"PayloadTooLarge"}"#))
                    .await;
            } else {
                echo(ex).await;
            }
        })
        .await;
    let client = server.client(1, Duration::from_secs(10));
    send_echo(&client, "/first", "first", Bytes::from_static(b"1")).await;
    let early = |i: u64| {
        let client = client.clone();
        async move {
            let request = post(&client, "/early")
                .header("x-early", "1")
                .body(())
                .unwrap();
            client.send(request, noise(i, 20_000 + i as usize)).await
        }
    };
    let results = join_all((0..100).map(early)).await;
    let lost: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        lost.is_empty(),
        "{} of 100 early answers lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    for response in results.into_iter().flatten() {
        assert_eq!(response.status, 413);
    }
    for round in 0..3 {
        let request = post(&client, "/early")
            .header("x-early", "1")
            .body(())
            .unwrap();
        let response = client
            .send(request, noise(round, 300_000))
            .await
            .unwrap_or_else(|e| panic!("round {round}: the early answer was lost: {e}"));
        assert_eq!(response.status, 413);
        assert_eq!(
            response.body,
            Bytes::from_static(br#"{"reason":"PayloadTooLarge"}"#)
        );
        send_echo(
            &client,
            "/next",
            &format!("next-{round}"),
            noise(round, 5000),
        )
        .await;
    }
    assert_eq!(server.connections(), 1);
}

// ---------------------------------------------------------------------------------------------
// HPACK string coding, malformed answers, server push
// ---------------------------------------------------------------------------------------------

/// Every byte a header value may hold (RFC 9110 §5.5: tab, visible ASCII, obs-text), in an
/// order that Huffman codes awkwardly, between letters so nothing is trimmed.
fn every_value_byte() -> Vec<u8> {
    let mut bytes: Vec<u8> = std::iter::once(b'\t')
        .chain(0x20..=0x7e)
        .chain(0x80..=0xff)
        .collect();
    bytes.reverse();
    let mut value = b"a".to_vec();
    value.extend_from_slice(&bytes);
    value.extend_from_slice(b"z");
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_a_header_may_carry_survives_hpack_both_ways() {
    // Both sides code strings with HPACK's Huffman code when it is shorter: every symbol of it
    // turns up here, in names too (every token character), first as literals and then, the
    // same again, from the dynamic tables.
    const ODD_NAME: &str = "x-!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz";
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = ServerBuilder::new()
        .serve({
            let seen = seen.clone();
            move |mut ex: Exchange| {
                let seen = seen.clone();
                async move {
                    let _ = ex.read_body_or_record().await;
                    seen.lock().unwrap().push(ex.head.headers.clone());
                    let mut head = response_head(200, &[(ODD_NAME.to_owned(), "odd".to_owned())]);
                    for name in ["x-all-bytes", "x-empty"] {
                        if let Some(value) = ex.head.headers.get(name) {
                            head.headers_mut()
                                .insert(HeaderName::from_static(name), value.clone());
                        }
                    }
                    if let Ok(mut stream) = ex.respond.send_response(head, false) {
                        let _ = stream.send_data(Bytes::from_static(b"ok"), true);
                    }
                }
            }
        })
        .await;
    let client = server.client(1, Duration::from_secs(10));
    let all = HeaderValue::from_bytes(&every_value_byte()).expect("every allowed byte");
    for round in 0..3 {
        let request = post(&client, "/bytes")
            .header("x-all-bytes", all.clone())
            .header("x-empty", "")
            .header(ODD_NAME, "odd")
            .body(())
            .unwrap();
        let response = client
            .send(request, Bytes::from_static(b"{}"))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(
            response.headers.get("x-all-bytes"),
            Some(&all),
            "round {round}"
        );
        assert_eq!(
            response.headers.get("x-empty").map(HeaderValue::as_bytes),
            Some(&b""[..])
        );
        assert_eq!(
            response.headers.get(ODD_NAME).map(HeaderValue::as_bytes),
            Some(&b"odd"[..])
        );
        assert_eq!(response.body, Bytes::from_static(b"ok"));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for headers in seen.iter() {
        assert_eq!(headers.get("x-all-bytes"), Some(&all));
        assert_eq!(
            headers.get("x-empty").map(HeaderValue::as_bytes),
            Some(&b""[..])
        );
        assert_eq!(
            headers.get(ODD_NAME).map(HeaderValue::as_bytes),
            Some(&b"odd"[..])
        );
    }
    server.assert_no_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_or_longer_than_its_content_length_is_an_error() {
    // RFC 9113 §8.1.1: such a response is malformed; returning it would hand the caller a
    // truncated (or padded) body as if it were whole.
    let server = ServerBuilder::new()
        .serve(|mut ex: Exchange| async move {
            let _ = ex.read_body_or_record().await;
            let reply = match ex.path().as_str() {
                "/short" => Reply::new(200)
                    .header("content-length", 100)
                    .body(noise(1, 50)),
                "/long" => Reply::new(200)
                    .header("content-length", 10)
                    .body(noise(1, 50)),
                _ => Reply::new(200)
                    .header("content-length", 50)
                    .body(noise(1, 50)),
            };
            let _ = ex.reply(reply).await;
        })
        .await;
    let client = server.client(1, Duration::from_secs(10));
    let response = client
        .send(get(&client, "/exact"), Bytes::new())
        .await
        .expect("a body matching its content-length");
    assert_same_bytes(&response.body, &noise(1, 50), "exact body");
    for path in ["/short", "/long"] {
        let result = client.send(get(&client, path), Bytes::new()).await;
        assert!(
            result.is_err(),
            "{path}: a body that contradicts its content-length was returned ({:?} bytes)",
            result.map(|r| r.body.len())
        );
    }
    client
        .send(get(&client, "/exact"), Bytes::new())
        .await
        .expect("the connection still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_push_attempt_does_not_disturb_the_answer() {
    // The client may refuse pushes in its SETTINGS (the server's push then fails) or take and
    // discard them; either way the answer to the request is what comes back.
    let pushed = Arc::new(AtomicUsize::new(0));
    let server = ServerBuilder::new()
        .serve({
            let pushed = pushed.clone();
            move |mut ex: Exchange| {
                let pushed = pushed.clone();
                async move {
                    let Some(body) = ex.read_body_or_record().await else {
                        return;
                    };
                    let promise = Request::get(format!(
                        "https://{}/pushed",
                        ex.head.uri.authority().unwrap()
                    ))
                    .body(())
                    .unwrap();
                    if let Ok(mut push) = ex.respond.push_request(promise) {
                        pushed.fetch_add(1, Ordering::SeqCst);
                        if let Ok(mut stream) = push.send_response(response_head(200, &[]), false) {
                            let _ = stream.send_data(Bytes::from_static(b"pushed body"), true);
                        }
                    }
                    let reply = echo_reply(&ex, body);
                    let _ = ex.reply(reply).await;
                }
            }
        })
        .await;
    let client = server.client(1, Duration::from_secs(10));
    for i in 0..5 {
        let response = send_echo(&client, "/with-push", &format!("push-{i}"), noise(i, 100)).await;
        assert_eq!(header(&response, "x-echo-path"), Some("/with-push"));
    }
    assert_eq!(server.connections(), 1);
    server.assert_no_errors();
}

/// `send_parts` (a provider's hot path: method, path and headers borrowed) reaches the server
/// exactly as `send` does, also for the requests that must wait for a stream and so are kept
/// in an owned form meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_parts_arrive_as_sent_even_when_they_wait_for_a_stream() {
    let (server, stats) = counting_echo_server(2).await;
    let client = server.client(1, LONG);
    send_echo(&client, "/prime", "prime-0", Bytes::new()).await;
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let id = i.to_string();
                let path = format!("/v1/projects/p/messages:send?n={i}");
                let body = noise(i, 50 + (i % 300) as usize);
                let headers = [
                    (http::header::CONTENT_TYPE, &b"application/json"[..]),
                    (http::HeaderName::from_static("x-req-id"), id.as_bytes()),
                ];
                let response = client
                    .send_parts(&http::Method::POST, &path, &headers, body.clone())
                    .await
                    .unwrap_or_else(|e| panic!("request {id}: {e}"));
                assert_eq!(response.status, 200, "request {id}");
                assert_eq!(header(&response, "x-echo-id"), Some(id.as_str()));
                assert_eq!(header(&response, "x-echo-path"), Some(path.as_str()));
                assert_eq!(header(&response, "x-echo-method"), Some("POST"));
                assert_same_bytes(&response.body, &body, &format!("echoed body of {id}"));
            })
        })
        .collect();
    for task in join_all(tasks).await {
        task.expect("send task");
    }
    let stats = stats.lock().unwrap();
    assert_eq!(
        stats.ids.len(),
        201,
        "every request reached the server once"
    );
    assert_eq!(
        stats.max.get(&0),
        Some(&2),
        "never past the server's 2 streams"
    );
    server.assert_no_errors();
}
