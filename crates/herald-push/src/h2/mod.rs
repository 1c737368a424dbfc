//! Herald's own HTTP/2 client for the providers' hot path (FCM, APNs): a few long-lived TLS
//! connections to one host, each carrying many concurrent streams, with requests spread over
//! them.
//!
//! Why not a general client: at 100,000 sends a second the cost per request is what counts,
//! and a general client (and the `h2` crate under it) pays for a stream store, per-stream
//! locks and wake-ups, a header encoder that re-encodes the bearer token every time, and
//! copies between its buffers. Here a request is encoded straight into its connection's output
//! buffer, repeated headers shrink to one byte, many requests leave in one TLS write, and the
//! answer comes back on a oneshot channel. `conn` holds the protocol, `frame` the wire format,
//! `hpack` the header compression, `response` turns a header block into a status and headers.
//!
//! A connection that fails, stops answering PINGs, receives GOAWAY or runs out of stream ids is
//! replaced on next use.

mod conn;
mod frame;
mod hpack;
mod response;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Request, StatusCode, Uri};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use self::conn::{Outgoing, Refused, Shared};
use crate::http::{HttpOptions, HttpSetupError, client_tls};

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
    conn: std::sync::Mutex<Option<Arc<Shared>>>,
    /// One connect at a time per slot: a burst after a failure does not open many connections.
    connecting: tokio::sync::Mutex<()>,
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
    pub async fn send(&self, request: Request<()>, body: Bytes) -> Result<H2Response, String> {
        self.submit(Outgoing::Owned(Box::new(request)), body).await
    }

    /// Like [`H2Client::send`], for a request given by its method, path on this host and
    /// headers, borrowed: the hot path of a provider, which sends the same few headers every
    /// time, builds nothing per send.
    pub async fn send_parts(
        &self,
        method: &Method,
        path: &str,
        headers: &[(HeaderName, &[u8])],
        body: Bytes,
    ) -> Result<H2Response, String> {
        let request = Outgoing::Borrowed {
            method,
            path,
            headers,
        };
        self.submit(request, body).await
    }

    async fn submit(
        &self,
        mut request: Outgoing<'_>,
        mut body: Bytes,
    ) -> Result<H2Response, String> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let mut fresh = false;
        // Read only when a connection must be opened first: the timeout covers the whole send.
        let mut started = None;
        let answer = loop {
            let conn = match live(slot) {
                Some(conn) => conn,
                // Boxed: the connect future is large, and inline it would make every send's
                // future that large too.
                None => {
                    let deadline =
                        *started.get_or_insert_with(tokio::time::Instant::now) + self.timeout;
                    Box::pin(tokio::time::timeout_at(deadline, self.connect_slot(slot)))
                        .await
                        .map_err(|_| format!("no answer within {:?}", self.timeout))??
                }
            };
            match conn.submit(request, body, started) {
                Ok(answer) => break answer,
                // Closed between the check and the submit (GOAWAY, ids used up): once more
                // on a new connection.
                Err(Refused::Closed(owned, returned)) if !fresh => {
                    (request, body) = (Outgoing::Owned(owned), returned);
                    fresh = true;
                }
                Err(Refused::Closed(..)) => return Err("HTTP/2 connection closed".into()),
                Err(Refused::Invalid(reason)) => return Err(format!("HTTP/2 request: {reason}")),
            }
        };
        // The connection fails the request at its deadline (one sweep for all requests is
        // cheaper than a timer each), or when it ends.
        answer
            .await
            .unwrap_or_else(|_| Err("HTTP/2 connection ended without an answer".into()))
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

    async fn connect_slot(&self, slot: &Slot) -> Result<Arc<Shared>, String> {
        let _one = slot.connecting.lock().await;
        if let Some(conn) = live(slot) {
            return Ok(conn);
        }
        let conn = self.connect().await?;
        *slot.conn.lock().expect("slot lock") = Some(conn.clone());
        Ok(conn)
    }

    async fn connect(&self) -> Result<Arc<Shared>, String> {
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
        conn::handshake(tls, self.authority.to_string(), self.timeout)
            .await
            .map_err(|e| format!("HTTP/2 handshake with {}: {e}", self.host))
    }
}

impl Drop for H2Client {
    /// Connections end once their requests in flight are answered.
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Some(conn) = slot.conn.lock().ok().and_then(|mut c| c.take()) {
                conn.close();
            }
        }
    }
}

fn live(slot: &Slot) -> Option<Arc<Shared>> {
    let guard = slot.conn.lock().expect("slot lock");
    guard.as_ref().filter(|c| !c.is_closed()).cloned()
}
