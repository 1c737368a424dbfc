//! A lean HTTP/2 client for the providers' hot path (FCM, APNs): a few long-lived TLS
//! connections to one host, each carrying many concurrent streams, with requests spread over
//! them. It drives the `h2` crate directly and skips what a general client does per request
//! (URL parsing, pool checkout, a dispatch channel and spawned tasks per request, redirect and
//! proxy logic), which is most of the cost at 100,000 sends a second.
//!
//! A connection that fails, stops answering PINGs or receives GOAWAY is replaced on next use.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::http::{HttpOptions, HttpSetupError, client_tls};

/// A PING goes out this often, idle or not, so a dead peer is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// A connection whose PING is not answered within this is dropped.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// What came back.
pub struct H2Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct H2Client {
    authority: http::uri::Authority,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    timeout: Duration,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    conn: std::sync::Mutex<Option<Conn>>,
    /// One connect at a time per slot: a burst after a failure does not open many connections.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Conn {
    sender: h2::client::SendRequest<Bytes>,
    /// Set when the connection task ends (error, GOAWAY drained, PING timeout).
    closed: Arc<AtomicBool>,
}

impl H2Client {
    /// A client for the `https://host[:port]` of `base`; paths are given per request.
    pub fn new(base: &str, options: &HttpOptions) -> Result<Self, HttpSetupError> {
        let base: Uri = base
            .trim_end_matches('/')
            .parse()
            .map_err(|e| HttpSetupError::Client(format!("{base:?}: {e}")))?;
        if base.scheme_str() != Some("https") {
            return Err(HttpSetupError::Client(format!(
                "{base} is not an https:// URL"
            )));
        }
        let authority = base
            .authority()
            .cloned()
            .ok_or_else(|| HttpSetupError::Client(format!("{base} has no host")))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| HttpSetupError::Client(format!("{host}: {e}")))?;
        let tls = client_tls(options.extra_ca_pem.as_deref().map(Vec::as_slice), true)?;
        Ok(Self {
            port: authority.port_u16().unwrap_or(443),
            authority,
            host,
            server_name,
            tls: TlsConnector::from(Arc::new(tls)),
            timeout: options.timeout,
            slots: (0..options.connections.max(1))
                .map(|_| Slot::default())
                .collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// The absolute URI of `path` on this host.
    pub fn uri(&self, path: &str) -> Result<Uri, String> {
        Uri::builder()
            .scheme(http::uri::Scheme::HTTPS)
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| format!("{path:?}: {e}"))
    }

    /// Sends `request` with `body` on the next connection in turn and reads the whole answer.
    /// `content-length` is set from the body, as a general client would.
    pub async fn send(&self, mut request: Request<()>, body: Bytes) -> Result<H2Response, String> {
        if !body.is_empty() || has_payload_semantics(request.method()) {
            request
                .headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let late = || format!("no answer within {:?}", self.timeout);
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let conn = match live(slot) {
            Some(conn) => conn,
            // Boxed: the connect futures are large, and inline they would make every send's
            // future (moved and copied as it is boxed by the caller) that large too.
            None => Box::pin(tokio::time::timeout_at(deadline, self.connect_slot(slot)))
                .await
                .map_err(|_| late())??,
        };
        // Everything up to here is synchronous, so the awaited part below holds only the
        // response handle: small futures for the many sends in flight.
        let (response, closed) = start(slot, conn, request, body)?;
        tokio::time::timeout_at(deadline, finish(slot, response, closed))
            .await
            .map_err(|_| late())?
    }

    /// Opens every connection not open yet, at once, within the request timeout.
    pub async fn warm(&self) -> Result<(), String> {
        let opened = futures_util::future::join_all(
            self.slots
                .iter()
                .map(|slot| tokio::time::timeout(self.timeout, self.connect_slot(slot))),
        )
        .await;
        for result in opened {
            result.map_err(|_| format!("no connection within {:?}", self.timeout))??;
        }
        Ok(())
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.slots.iter().filter(|s| live(s).is_some()).count()
    }

    async fn connect_slot(&self, slot: &Slot) -> Result<Conn, String> {
        let _one = slot.connecting.lock().await;
        if let Some(conn) = live(slot) {
            return Ok(conn);
        }
        let conn = self.connect().await?;
        *slot.conn.lock().expect("slot lock") = Some(conn.clone());
        Ok(conn)
    }

    async fn connect(&self) -> Result<Conn, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect to {}:{}: {e}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", self.host))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(format!("{} does not speak HTTP/2", self.host));
        }
        let (sender, mut connection) = h2::client::Builder::new()
            .enable_push(false)
            .initial_window_size(1 << 20)
            .initial_connection_window_size(8 << 20)
            .handshake::<_, Bytes>(Coalesce::new(tls))
            .await
            .map_err(|e| format!("HTTP/2 handshake with {}: {e}", self.host))?;
        let closed = Arc::new(AtomicBool::new(false));
        let ping = connection.ping_pong();
        let host = self.host.clone();
        let ended = closed.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = &mut connection => {
                    if let Err(e) = result {
                        tracing::debug!(%host, error = %e, "HTTP/2 connection ended");
                    }
                }
                () = keep_alive(ping) => {
                    tracing::debug!(%host, "HTTP/2 connection dropped: no PING answer");
                }
            }
            ended.store(true, Ordering::Relaxed);
        });
        Ok(Conn { sender, closed })
    }
}

/// Opens the stream and queues the request and its body on `conn`.
fn start(
    slot: &Slot,
    conn: Conn,
    request: Request<()>,
    body: Bytes,
) -> Result<(h2::client::ResponseFuture, Arc<AtomicBool>), String> {
    let Conn { mut sender, closed } = conn;
    let end_of_stream = body.is_empty();
    let (response, mut stream) = match sender.send_request(request, end_of_stream) {
        Ok(sent) => sent,
        Err(e) => {
            // Errors here are about the connection (GOAWAY, closed, stream ids used up), not
            // this request: the next send opens a new one.
            forget(slot, &closed);
            return Err(format!("HTTP/2 request: {e}"));
        }
    };
    if !end_of_stream {
        stream
            .send_data(body, true)
            .map_err(|e| format!("HTTP/2 request body: {e}"))?;
    }
    Ok((response, closed))
}

/// Waits for the answer to a started request and reads it whole.
async fn finish(
    slot: &Slot,
    response: h2::client::ResponseFuture,
    closed: Arc<AtomicBool>,
) -> Result<H2Response, String> {
    let response = response.await.map_err(|e| {
        if e.is_go_away() || e.is_io() || closed.load(Ordering::Relaxed) {
            forget(slot, &closed);
        }
        format!("HTTP/2 request: {e}")
    })?;
    let (parts, mut recv) = response.into_parts();
    let body = read_body(&mut recv)
        .await
        .map_err(|e| format!("HTTP/2 response body: {e}"))?;
    Ok(H2Response {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// POST, PUT and PATCH carry a body by definition, so an empty one is still announced.
fn has_payload_semantics(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// Reads the whole response body, giving the flow-control window back as it goes.
async fn read_body(recv: &mut h2::RecvStream) -> Result<Bytes, h2::Error> {
    let mut first = Bytes::new();
    let mut rest: Option<BytesMut> = None;
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        if first.is_empty() {
            first = chunk;
        } else {
            rest.get_or_insert_with(|| BytesMut::from(&first[..]))
                .extend_from_slice(&chunk);
        }
    }
    Ok(rest.map_or(first, BytesMut::freeze))
}

/// Returns when the peer stops answering PINGs (or the connection is gone).
async fn keep_alive(ping: Option<h2::PingPong>) {
    let Some(mut ping) = ping else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(KEEP_ALIVE_INTERVAL).await;
        match tokio::time::timeout(KEEP_ALIVE_TIMEOUT, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            // The connection itself failed: its own future reports that.
            Ok(Err(_)) => return std::future::pending().await,
            Err(_) => return,
        }
    }
}

fn live(slot: &Slot) -> Option<Conn> {
    let guard = slot.conn.lock().expect("slot lock");
    guard
        .as_ref()
        .filter(|c| !c.closed.load(Ordering::Relaxed))
        .cloned()
}

/// Drops a broken connection so the next request opens a new one (unless that already happened).
fn forget(slot: &Slot, broken: &Arc<AtomicBool>) {
    let mut guard = slot.conn.lock().expect("slot lock");
    if guard
        .as_ref()
        .is_some_and(|c| Arc::ptr_eq(&c.closed, broken))
    {
        *guard = None;
    }
}

/// The TLS stream under h2, gathering what h2 writes so many requests leave in one TLS write.
///
/// Each sender wakes the connection task, and tokio runs a task woken that way next (its LIFO
/// slot): left alone, h2 would encrypt and write every request on its own, a syscall per send.
/// Instead the first flush of a batch yields once, so the senders already queued run first and
/// their requests join the batch; the next flush writes it all. Writes are also reported as
/// not vectored so that h2 copies small DATA frames into its buffer instead of flushing each.
struct Coalesce<T> {
    io: T,
    out: Vec<u8>,
    written: usize,
    yielded: bool,
}

/// Past this much gathered, writes go out before more is taken.
const GATHER_LIMIT: usize = 256 * 1024;

impl<T> Coalesce<T> {
    fn new(io: T) -> Self {
        Self {
            io,
            out: Vec::with_capacity(32 * 1024),
            written: 0,
            yielded: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() >= GATHER_LIMIT {
            ready!(this.drain(cx))?;
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.written < this.out.len() {
            if !this.yielded {
                // Back of the run queue: the senders woken before us add their requests first.
                // (Yielding more than once gathered no more in measurements.)
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.drain(cx))?;
        }
        this.yielded = false;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}
