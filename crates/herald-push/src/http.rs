//! Pooled HTTP/2 clients over rustls. One client keeps one HTTP/2 connection per host and queues
//! requests past the server's stream limit, so a provider that needs more throughput spreads its
//! requests over several clients (several connections).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("extra CA file: {0}")]
    ExtraCa(String),
    #[error("HTTP client: {0}")]
    Client(String),
}

/// How a provider's connections are made.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// HTTP/2 connections to open to the provider's host.
    pub connections: usize,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// PEM certificates trusted besides the public roots (`[tls] extra_ca`): tests, staging.
    pub extra_ca_pem: Option<Arc<Vec<u8>>>,
    /// Offer only `h2` in ALPN (APNs speaks nothing else).
    pub http2_only: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connections: 4,
            timeout: Duration::from_secs(30),
            extra_ca_pem: None,
            http2_only: false,
        }
    }
}

/// A few clients used round robin: each is its own HTTP/2 connection to a host.
#[derive(Debug, Clone)]
pub struct ClientPool {
    clients: Arc<[reqwest::Client]>,
    next: Arc<AtomicUsize>,
}

impl ClientPool {
    pub fn new(options: &HttpOptions) -> Result<Self, HttpSetupError> {
        let tls = client_tls(
            options.extra_ca_pem.as_deref().map(Vec::as_slice),
            options.http2_only,
        )?;
        let clients = (0..options.connections.max(1))
            .map(|_| {
                reqwest::Client::builder()
                    .tls_backend_preconfigured(tls.clone())
                    .timeout(options.timeout)
                    .connect_timeout(Duration::from_secs(10))
                    .tcp_nodelay(true)
                    .pool_idle_timeout(Duration::from_secs(600))
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .http2_keep_alive_while_idle(true)
                    .http2_initial_stream_window_size(1 << 20)
                    .http2_initial_connection_window_size(8 << 20)
                    .build()
                    .map_err(|e| HttpSetupError::Client(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            clients: clients.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The next client in turn.
    pub fn client(&self) -> &reqwest::Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[i]
    }
}

/// A rustls client configuration trusting the public web roots plus `extra_ca_pem`.
pub fn client_tls(
    extra_ca_pem: Option<&[u8]>,
    http2_only: bool,
) -> Result<rustls::ClientConfig, HttpSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| HttpSetupError::ExtraCa(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| HttpSetupError::ExtraCa(e.to_string()))?;
            found += 1;
        }
        if found == 0 {
            return Err(HttpSetupError::ExtraCa(
                "no PEM certificate found in it".into(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpSetupError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = if http2_only {
        vec![b"h2".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    Ok(config)
}
