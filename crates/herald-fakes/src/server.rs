//! The HTTPS server every fake runs on: TLS via tokio-rustls, HTTP/2 or HTTP/1.1 chosen by ALPN,
//! whole request bodies handed to one handler. Built for throughput: no lock and no log per request.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::reply;
use crate::tls::TestCa;

/// A request as handlers see it: the whole body already read.
pub type FakeRequest = Request<Bytes>;
/// What handlers answer.
pub type FakeResponse = Response<Full<Bytes>>;
/// The future a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = FakeResponse> + Send>>;
/// One function answering every request of a server.
pub type Handler = Arc<dyn Fn(FakeRequest) -> HandlerFuture + Send + Sync>;

/// Request bodies past this are answered 413 before the handler runs.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Which HTTP versions a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/2 and HTTP/1.1, chosen by ALPN (`h2` preferred).
    Http2AndHttp1,
    /// HTTP/2 only, like APNs: ALPN offers only `h2`.
    Http2Only,
}

/// A bound TCP listener not serving yet, so a fake can learn its own URL before it starts.
#[derive(Debug)]
pub struct HttpsListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl HttpsListener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    /// Binds a free port on `127.0.0.1`.
    pub async fn bind_loopback() -> io::Result<Self> {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://HOST:PORT`, with a wildcard address replaced by loopback.
    pub fn url(&self) -> String {
        https_url(self.addr)
    }

    /// Starts serving TLS with `ca`'s server certificate; every request goes to `handler`.
    pub fn serve(self, ca: &TestCa, protocols: Protocols, handler: Handler) -> FakeServer {
        let alpn: &[&[u8]] = match protocols {
            Protocols::Http2AndHttp1 => &[b"h2", b"http/1.1"],
            Protocols::Http2Only => &[b"h2"],
        };
        let acceptor = TlsAcceptor::from(ca.server_config(alpn));
        let builders = Arc::new(Builders::new(protocols));
        let accept_task = tokio::spawn(accept_loop(self.listener, acceptor, builders, handler));
        FakeServer {
            addr: self.addr,
            accept_task,
        }
    }
}

/// A running server. Dropping it stops accepting and closes every open connection.
#[derive(Debug)]
pub struct FakeServer {
    addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl FakeServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://HOST:PORT`, with a wildcard address replaced by loopback.
    pub fn url(&self) -> String {
        https_url(self.addr)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it aborts them all.
        self.accept_task.abort();
    }
}

fn https_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("https://{}", SocketAddr::new(ip, addr.port()))
}

/// One hyper builder per protocol, so ALPN's answer picks the codec without sniffing bytes.
struct Builders {
    http2: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    /// For clients that negotiated no ALPN: HTTP/2 with prior knowledge or HTTP/1.1, by preface.
    sniffing: auto::Builder<TokioExecutor>,
    http2_only: bool,
}

impl Builders {
    fn new(protocols: Protocols) -> Self {
        Self {
            http2: configured(auto::Builder::new(TokioExecutor::new()).http2_only()),
            http1: configured(auto::Builder::new(TokioExecutor::new()).http1_only()),
            sniffing: configured(auto::Builder::new(TokioExecutor::new())),
            http2_only: protocols == Protocols::Http2Only,
        }
    }

    fn for_alpn(&self, alpn: Option<&[u8]>) -> &auto::Builder<TokioExecutor> {
        match alpn {
            _ if self.http2_only => &self.http2,
            Some(b"h2") => &self.http2,
            Some(b"http/1.1") => &self.http1,
            _ => &self.sniffing,
        }
    }
}

/// Generous HTTP/2 limits: benchmarks run hundreds of streams per connection.
fn configured(mut builder: auto::Builder<TokioExecutor>) -> auto::Builder<TokioExecutor> {
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(4096)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .max_send_buf_size(1 << 20);
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    builders: Arc<Builders>,
    handler: Handler,
) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                tracing::warn!(%error, "fake provider could not accept a connection");
                // Out of file descriptors and the like: pause instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(
            stream,
            acceptor.clone(),
            builders.clone(),
            handler.clone(),
        ));
    }
}

async fn serve_connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    builders: Arc<Builders>,
    handler: Handler,
) {
    let _ = stream.set_nodelay(true);
    let Ok(tls) = acceptor.accept(stream).await else {
        return;
    };
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let service = service_fn(move |request| respond(handler.clone(), request));
    let builder = builders.for_alpn(alpn.as_deref());
    // A client hanging up mid-stream is no concern of a fake.
    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
}

async fn respond(handler: Handler, request: Request<Incoming>) -> Result<FakeResponse, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => {
            return Ok(reply::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ));
        }
        Err(_) => {
            return Ok(reply::text(
                StatusCode::BAD_REQUEST,
                "unreadable request body",
            ));
        }
    };
    Ok(handler(Request::from_parts(parts, body)).await)
}
