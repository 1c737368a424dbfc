//! A lean HTTP/2 client for the providers' hot path (FCM, APNs): a few long-lived TLS
//! connections to one host, each carrying many concurrent streams, with requests spread over
//! them. It skips what a general client does per request (URL parsing, pool checkout, redirect
//! and proxy logic), which is most of the cost at 100,000 sends a second.
//!
//! A connection that fails or receives GOAWAY is replaced on next use.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

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
    sender: std::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
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

    /// Sends the request on the next connection in turn and reads the whole answer.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<H2Response, String> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let work = async {
            let mut sender = self.sender(slot).await?;
            let response = match sender.send_request(request).await {
                Ok(response) => response,
                Err(e) => {
                    forget(slot, &sender);
                    return Err(format!("HTTP/2 request: {e}"));
                }
            };
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("HTTP/2 response body: {e}"))?
                .to_bytes();
            Ok(H2Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }

    async fn sender(&self, slot: &Slot) -> Result<SendRequest<Full<Bytes>>, String> {
        if let Some(sender) = live(slot) {
            return Ok(sender);
        }
        let _one = slot.connecting.lock().await;
        if let Some(sender) = live(slot) {
            return Ok(sender);
        }
        let sender = self.connect().await?;
        *slot.sender.lock().expect("slot lock") = Some(sender.clone());
        Ok(sender)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
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
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(8 << 20)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/2 handshake with {}: {e}", self.host))?;
        let host = self.host.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%host, error = %e, "HTTP/2 connection ended");
            }
        });
        Ok(sender)
    }
}

fn live(slot: &Slot) -> Option<SendRequest<Full<Bytes>>> {
    let guard = slot.sender.lock().expect("slot lock");
    guard.as_ref().filter(|s| !s.is_closed()).cloned()
}

/// Drops a broken connection so the next request opens a new one.
fn forget(slot: &Slot, broken: &SendRequest<Full<Bytes>>) {
    if broken.is_closed() {
        *slot.sender.lock().expect("slot lock") = None;
    }
}
