//! A fake webhook receiver checking Herald's Stripe-style signatures:
//! `Herald-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
//! Every path except `/_fake/...` receives webhooks.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::behaviour::{Behaviour, BehaviourSummary};
use crate::clock::unix_seconds;
use crate::control::{self, Steerable};
use crate::handle::FakeHandle;
use crate::record::{CommonStats, Received};
use crate::reply;
use crate::server::{FakeRequest, FakeResponse, FakeServer, HttpsListener, Protocols};
use crate::tls::TestCa;

pub const SIGNATURE_HEADER: &str = "herald-signature";
pub const DELIVERY_HEADER: &str = "herald-delivery";
/// Signatures older or newer than this are refused (replay protection).
const TOLERANCE_SECS: u64 = 300;

/// One webhook the receiver accepted.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    pub path: String,
    /// `Herald-Delivery`, the notification id.
    pub delivery_id: Option<String>,
    /// The signature's `t`.
    pub timestamp: u64,
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub body: Value,
    pub raw_body: Bytes,
    pub headers: HeaderMap,
}

/// Counters of a fake webhook receiver, as `GET /_fake/stats` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    #[serde(flatten)]
    pub common: CommonStats,
    pub behaviour: BehaviourSummary,
}

/// A running fake webhook receiver. Dropping it stops the server.
pub struct FakeWebhook {
    server: FakeServer,
    state: Arc<WebhookState>,
}

struct WebhookState {
    secret: Vec<u8>,
    behaviour: Behaviour,
    received: Received<WebhookDelivery>,
}

impl FakeWebhook {
    /// Starts on a free loopback port, checking signatures made with `secret`.
    pub async fn start(ca: &TestCa, secret: impl Into<Vec<u8>>) -> io::Result<Self> {
        Ok(Self::start_with(
            HttpsListener::bind_loopback().await?,
            ca,
            secret.into(),
        ))
    }

    /// Starts on `addr` (the `herald fake-provider webhook --listen ADDR` entry point).
    pub async fn start_on(
        addr: SocketAddr,
        ca: &TestCa,
        secret: impl Into<Vec<u8>>,
    ) -> io::Result<Self> {
        Ok(Self::start_with(
            HttpsListener::bind(addr).await?,
            ca,
            secret.into(),
        ))
    }

    fn start_with(listener: HttpsListener, ca: &TestCa, secret: Vec<u8>) -> Self {
        let state = Arc::new(WebhookState {
            secret,
            behaviour: Behaviour::default(),
            received: Received::default(),
        });
        let handler_state = state.clone();
        let server = listener.serve(
            ca,
            Protocols::Http2AndHttp1,
            Arc::new(move |request| {
                let state = handler_state.clone();
                Box::pin(async move { state.handle(request).await })
            }),
        );
        Self { server, state }
    }

    /// A URL to configure as a webhook endpoint: `<url>/webhook`.
    pub fn endpoint_url(&self) -> String {
        format!("{}/webhook", self.url())
    }

    pub fn stats(&self) -> WebhookStats {
        self.state.stats()
    }
}

impl FakeHandle for FakeWebhook {
    type Record = WebhookDelivery;

    fn parts(&self) -> (&FakeServer, &Behaviour, &Received<WebhookDelivery>) {
        (&self.server, &self.state.behaviour, &self.state.received)
    }
}

impl WebhookState {
    async fn handle(&self, request: FakeRequest) -> FakeResponse {
        if let Some(response) = control::answer(self, &request) {
            return response;
        }
        if request.method() != Method::POST {
            return self.refuse(StatusCode::METHOD_NOT_ALLOWED, "webhooks are POSTed");
        }
        if let Some(failure) = self.behaviour.before_request().await {
            let response = self.refuse(failure.status, "injected failure");
            return reply::with_failure_headers(response, &failure);
        }
        let headers = request.headers();
        let Some(timestamp) = headers
            .get(SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|signature| verify_signature(&self.secret, signature, request.body()))
        else {
            return self.refuse(
                StatusCode::UNAUTHORIZED,
                "missing or wrong Herald-Signature",
            );
        };
        if unix_seconds().abs_diff(timestamp) > TOLERANCE_SECS {
            return self.refuse(
                StatusCode::BAD_REQUEST,
                "the signature timestamp is too far from now",
            );
        }
        let path = request.uri().path();
        if self.behaviour.is_dead(path) {
            return self.refuse(StatusCode::GONE, "this endpoint is gone");
        }
        self.received.accept(|| WebhookDelivery {
            path: path.to_string(),
            delivery_id: headers
                .get(DELIVERY_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string),
            timestamp,
            body: serde_json::from_slice(request.body()).unwrap_or(Value::Null),
            raw_body: request.body().clone(),
            headers: headers.clone(),
        });
        reply::json_value(StatusCode::OK, &json!({"received": true}))
    }

    fn refuse(&self, status: StatusCode, reason: &str) -> FakeResponse {
        self.received.reject(status);
        reply::json_value(status, &json!({"error": reason}))
    }
}

impl Steerable for WebhookState {
    type Stats = WebhookStats;

    fn behaviour(&self) -> &Behaviour {
        &self.behaviour
    }

    fn set_recording(&self, on: bool) {
        self.received.set_recording(on);
    }

    fn stats(&self) -> WebhookStats {
        WebhookStats {
            common: self.received.common_stats(),
            behaviour: self.behaviour.summary(),
        }
    }
}

/// The signature's timestamp if one of its `v1` values is the HMAC of `"<t>.<body>"`.
/// Several `v1` values are allowed, as during a secret rotation.
fn verify_signature(secret: &[u8], signature: &str, body: &[u8]) -> Option<u64> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in signature.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = Some(value),
            Some(("v1", value)) => candidates.push(value),
            _ => {}
        }
    }
    let timestamp_text = timestamp?;
    let timestamp = timestamp_text.parse::<u64>().ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    candidates.into_iter().find_map(|candidate| {
        let candidate = hex::decode(candidate).ok()?;
        // verify_slice compares in constant time.
        mac.clone()
            .verify_slice(&candidate)
            .ok()
            .map(|()| timestamp)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn verifies_any_matching_v1() {
        let good = sign(b"s3cret", 1_700_000_000, b"{}");
        let header = format!("t=1700000000,v1={},v1={good}", "00".repeat(32));
        assert_eq!(
            verify_signature(b"s3cret", &header, b"{}"),
            Some(1_700_000_000)
        );
        assert_eq!(verify_signature(b"other", &header, b"{}"), None);
        assert_eq!(verify_signature(b"s3cret", &header, b"{ }"), None);
        assert_eq!(
            verify_signature(b"s3cret", &format!("v1={good}"), b"{}"),
            None
        );
    }
}
