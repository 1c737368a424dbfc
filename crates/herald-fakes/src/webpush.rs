//! A fake Web Push service (RFC 8030) with VAPID (RFC 8292) that decrypts every message as the
//! subscribed browser would (RFC 8291), so tests see the plaintext a user agent would get.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, LOCATION};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use p256::SecretKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::behaviour::{Behaviour, BehaviourSummary, Failure};
use crate::control::{self, Steerable};
use crate::ece::decrypt_aes128gcm;
use crate::handle::FakeHandle;
use crate::record::{CommonStats, Received};
use crate::reply;
use crate::server::{FakeRequest, FakeResponse, FakeServer, HttpsListener, Protocols};
use crate::tls::TestCa;
use crate::vapid::VapidVerifier;

const PUSH_PATH: &str = "/push/";
/// RFC 8030 section 7.2: push services must accept at least 4096 bytes; larger is 413.
const MAX_BODY_BYTES: usize = 4096;
const MAX_TOPIC_CHARS: usize = 32;
const URGENCIES: &[&str] = &["very-low", "low", "normal", "high"];

/// A push subscription, as a browser's `PushSubscription` would report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    /// The id in the endpoint path, for [`FakeWebPush::expire`] and the records.
    pub id: String,
    /// `<fake url>/push/<id>`.
    pub endpoint: String,
    /// The user agent's public key: base64url, 65-byte uncompressed P-256 point.
    pub p256dh: String,
    /// The authentication secret: base64url, 16 bytes.
    pub auth: String,
}

impl Subscription {
    /// The browser's `PushSubscription.toJSON()` shape: `{"endpoint":…,"keys":{"p256dh":…,"auth":…}}`.
    pub fn to_json(&self) -> Value {
        json!({
            "endpoint": self.endpoint,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        })
    }
}

/// One push message the fake accepted and decrypted.
#[derive(Debug, Clone)]
pub struct WebPushMessage {
    pub subscription_id: String,
    /// The decrypted payload (empty for a push without payload).
    pub plaintext: Vec<u8>,
    pub ttl: u64,
    pub urgency: Option<String>,
    pub topic: Option<String>,
    /// The VAPID JWT's `sub`.
    pub vapid_subject: String,
    /// The VAPID `k`, base64url.
    pub vapid_public_key: String,
    pub headers: HeaderMap,
}

impl WebPushMessage {
    /// The plaintext parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.plaintext).ok()
    }
}

/// Counters of a fake Web Push service, as `GET /_fake/stats` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebPushStats {
    #[serde(flatten)]
    pub common: CommonStats,
    pub subscriptions: usize,
    pub behaviour: BehaviourSummary,
}

/// The browser side of one subscription: what decrypting needs.
struct Subscriber {
    private_key: SecretKey,
    auth_secret: [u8; 16],
    /// `applicationServerKey` the subscription was made with: other VAPID keys answer 403.
    application_server_key: Option<Vec<u8>>,
}

/// A running fake Web Push service. Dropping it stops the server.
pub struct FakeWebPush {
    server: FakeServer,
    state: Arc<WebPushState>,
}

struct WebPushState {
    url: String,
    subscribers: RwLock<HashMap<String, Arc<Subscriber>>>,
    vapid: VapidVerifier,
    behaviour: Behaviour,
    received: Received<WebPushMessage>,
    next_message_id: AtomicU64,
}

impl FakeWebPush {
    /// Starts on a free loopback port.
    pub async fn start(ca: &TestCa) -> io::Result<Self> {
        Ok(Self::start_with(HttpsListener::bind_loopback().await?, ca))
    }

    /// Starts on `addr` (the `herald fake-provider webpush --listen ADDR` entry point).
    pub async fn start_on(addr: SocketAddr, ca: &TestCa) -> io::Result<Self> {
        Ok(Self::start_with(HttpsListener::bind(addr).await?, ca))
    }

    fn start_with(listener: HttpsListener, ca: &TestCa) -> Self {
        let url = listener.url();
        let state = Arc::new(WebPushState {
            vapid: VapidVerifier::new(url.clone()),
            url,
            subscribers: RwLock::new(HashMap::new()),
            behaviour: Behaviour::default(),
            received: Received::default(),
            next_message_id: AtomicU64::new(1),
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

    /// A new subscription with a fresh key pair and auth secret.
    pub fn subscribe(&self) -> Subscription {
        self.state.subscribe(None)
    }

    /// A subscription restricted to one VAPID key (the browser's `applicationServerKey`,
    /// base64url): messages signed with another key answer 403.
    pub fn subscribe_restricted(&self, application_server_key: &str) -> Subscription {
        let key = URL_SAFE_NO_PAD
            .decode(application_server_key.trim_end_matches('='))
            .expect("applicationServerKey is base64url");
        self.state.subscribe(Some(key))
    }

    /// Unsubscribes: messages to `subscription_id` answer 410 Gone from now on.
    pub fn expire(&self, subscription_id: &str) {
        self.state.behaviour.mark_dead(subscription_id);
    }

    pub fn stats(&self) -> WebPushStats {
        self.state.stats()
    }
}

impl FakeHandle for FakeWebPush {
    type Record = WebPushMessage;

    fn parts(&self) -> (&FakeServer, &Behaviour, &Received<WebPushMessage>) {
        (&self.server, &self.state.behaviour, &self.state.received)
    }
}

/// The optional body of `POST /_fake/subscribe`.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct SubscribeRequest {
    application_server_key: Option<String>,
}

impl WebPushState {
    fn subscribe(&self, application_server_key: Option<Vec<u8>>) -> Subscription {
        let private_key = random_secret_key();
        let auth_secret: [u8; 16] = rand::rng().random();
        let id = URL_SAFE_NO_PAD.encode(rand::rng().random::<[u8; 16]>());
        let subscription = Subscription {
            endpoint: format!("{}{PUSH_PATH}{id}", self.url),
            p256dh: URL_SAFE_NO_PAD.encode(private_key.public_key().to_encoded_point(false)),
            auth: URL_SAFE_NO_PAD.encode(auth_secret),
            id: id.clone(),
        };
        let subscriber = Arc::new(Subscriber {
            private_key,
            auth_secret,
            application_server_key,
        });
        self.subscribers
            .write()
            .expect("subscribers lock")
            .insert(id, subscriber);
        subscription
    }

    async fn handle(&self, request: FakeRequest) -> FakeResponse {
        let path = request.uri().path();
        if request.method() == Method::POST && path == "/_fake/subscribe" {
            return self.subscribe_over_http(request.body());
        }
        if let Some(response) = control::answer(self, &request) {
            return response;
        }
        let Some(id) = path.strip_prefix(PUSH_PATH) else {
            return self.refuse(StatusCode::NOT_FOUND, "no such push resource");
        };
        if request.method() != Method::POST {
            return self.refuse(StatusCode::METHOD_NOT_ALLOWED, "push with POST");
        }
        if let Some(failure) = self.behaviour.before_request().await {
            return self.injected(&failure);
        }
        match self.accept(&request, id) {
            Ok(message) => {
                let location = format!(
                    "{}/message/{}",
                    self.url,
                    self.next_message_id.fetch_add(1, Ordering::Relaxed)
                );
                self.received.accept(|| message);
                let mut response = reply::empty(StatusCode::CREATED);
                if let Ok(location) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(LOCATION, location);
                }
                response
            }
            Err((status, reason)) => self.refuse(status, &reason),
        }
    }

    /// The decrypted message, or the status and reason refusing it.
    fn accept(
        &self,
        request: &FakeRequest,
        id: &str,
    ) -> Result<WebPushMessage, (StatusCode, String)> {
        let subscriber = self
            .subscribers
            .read()
            .expect("subscribers lock")
            .get(id)
            .cloned()
            .ok_or((StatusCode::NOT_FOUND, "no such subscription".to_string()))?;
        if self.behaviour.is_dead(id) {
            return Err((StatusCode::GONE, "the subscription has expired".into()));
        }
        let headers = request.headers();
        let sender = self
            .vapid
            .verify(headers.get(AUTHORIZATION))
            .map_err(|error| (StatusCode::UNAUTHORIZED, error.0))?;
        if subscriber
            .application_server_key
            .as_ref()
            .is_some_and(|key| *key != sender.public_key)
        {
            return Err((
                StatusCode::FORBIDDEN,
                "the VAPID key is not the subscription's applicationServerKey".into(),
            ));
        }
        let ttl = header_str(headers, "ttl")
            .and_then(|ttl| ttl.parse::<u64>().ok())
            .ok_or((
                StatusCode::BAD_REQUEST,
                "a TTL header is required".to_string(),
            ))?;
        let urgency = header_str(headers, "urgency");
        if urgency.is_some_and(|urgency| !URGENCIES.contains(&urgency)) {
            return Err((StatusCode::BAD_REQUEST, "bad Urgency".into()));
        }
        let topic = header_str(headers, "topic");
        if topic.is_some_and(|topic| !is_valid_topic(topic)) {
            return Err((
                StatusCode::BAD_REQUEST,
                "Topic must be at most 32 base64url characters".into(),
            ));
        }
        let plaintext = self.decrypt(request, &subscriber)?;
        Ok(WebPushMessage {
            subscription_id: id.to_string(),
            plaintext,
            ttl,
            urgency: urgency.map(str::to_string),
            topic: topic.map(str::to_string),
            vapid_subject: sender.subject.clone(),
            vapid_public_key: URL_SAFE_NO_PAD.encode(&sender.public_key),
            headers: headers.clone(),
        })
    }

    fn decrypt(
        &self,
        request: &FakeRequest,
        subscriber: &Subscriber,
    ) -> Result<Vec<u8>, (StatusCode, String)> {
        let body = request.body();
        if body.len() > MAX_BODY_BYTES {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "the payload is too large".into(),
            ));
        }
        // A push without payload needs no content coding.
        if body.is_empty() {
            return Ok(Vec::new());
        }
        if header_str(request.headers(), CONTENT_ENCODING.as_str()) != Some("aes128gcm") {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Encoding must be aes128gcm".into(),
            ));
        }
        decrypt_aes128gcm(body, &subscriber.private_key, &subscriber.auth_secret)
            .map_err(|error| (StatusCode::BAD_REQUEST, format!("cannot decrypt: {error}")))
    }

    fn subscribe_over_http(&self, body: &[u8]) -> FakeResponse {
        let request: SubscribeRequest = if body.is_empty() {
            SubscribeRequest::default()
        } else {
            match serde_json::from_slice(body) {
                Ok(request) => request,
                Err(error) => return reply::text(StatusCode::BAD_REQUEST, error.to_string()),
            }
        };
        let key = match request.application_server_key {
            None => None,
            Some(key) => match URL_SAFE_NO_PAD.decode(key.trim_end_matches('=')) {
                Ok(key) => Some(key),
                Err(_) => {
                    return reply::text(
                        StatusCode::BAD_REQUEST,
                        "application_server_key is not base64url",
                    );
                }
            },
        };
        let subscription = self.subscribe(key);
        let mut body = subscription.to_json();
        body["id"] = json!(subscription.id);
        reply::json_value(StatusCode::CREATED, &body)
    }

    fn injected(&self, failure: &Failure) -> FakeResponse {
        let response = self.refuse(failure.status, "injected failure");
        reply::with_failure_headers(response, failure)
    }

    fn refuse(&self, status: StatusCode, reason: &str) -> FakeResponse {
        self.received.reject(status);
        reply::json_value(
            status,
            &json!({
                "code": status.as_u16(),
                "error": status.canonical_reason().unwrap_or("Error"),
                "message": reason,
            }),
        )
    }
}

impl Steerable for WebPushState {
    type Stats = WebPushStats;

    fn behaviour(&self) -> &Behaviour {
        &self.behaviour
    }

    fn set_recording(&self, on: bool) {
        self.received.set_recording(on);
    }

    fn stats(&self) -> WebPushStats {
        WebPushStats {
            common: self.received.common_stats(),
            subscriptions: self.subscribers.read().expect("subscribers lock").len(),
            behaviour: self.behaviour.summary(),
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// RFC 8030 section 5.4: at most 32 characters of the base64url alphabet.
fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_CHARS
        && topic
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// A random P-256 private key from the rand 0.9 generator (p256 wants an older rand_core).
fn random_secret_key() -> SecretKey {
    loop {
        let bytes: [u8; 32] = rand::rng().random();
        // Fails only for zero or a value past the group order: about 2^-32 of draws.
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}
