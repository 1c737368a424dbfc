//! A fake Apple Push Notification service: `POST /3/device/{token}` over HTTP/2 only, with
//! token-based (ES256 JWT) provider authentication.

mod provider_token;
mod rejection;
mod request;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderValue, Method, StatusCode};
use rand::Rng as _;
use serde::Serialize;
use serde_json::{Value, json};

pub use self::provider_token::ProviderTokenSeen;
use self::provider_token::ProviderTokens;
use self::rejection::{BAD_DEVICE_TOKEN, BAD_PATH, METHOD_NOT_ALLOWED, Rejection, UNREGISTERED};
use self::request::{check_device_token, parse_headers, parse_payload, request_apns_id};
use crate::behaviour::{Behaviour, BehaviourSummary};
use crate::clock::unix_millis;
use crate::control::{self, Steerable};
use crate::handle::FakeHandle;
use crate::keys::{TEST_P256_PRIVATE_KEY_PEM, TEST_P256_PUBLIC_KEY_PEM};
use crate::record::{CommonStats, Received};
use crate::reply;
use crate::server::{FakeRequest, FakeResponse, FakeServer, HttpsListener, Protocols};
use crate::tls::TestCa;

const DEVICE_PATH: &str = "/3/device/";

/// How the fake APNs is set up.
#[derive(Debug, Clone)]
pub struct ApnsConfig {
    /// The provider tokens' `iss`.
    pub team_id: String,
    /// The provider tokens' `kid`.
    pub key_id: String,
    /// The provider key's public half (PEM) that tokens must verify with.
    pub public_key_pem: String,
    /// Bundle ids accepted as `apns-topic`, each also with Apple's push-type suffixes
    /// (`.voip`, `.complication`, …). Empty accepts any topic.
    pub topics: Vec<String>,
    /// A new provider token sooner than this after the previous new one answers 429
    /// `TooManyProviderTokenUpdates`, as Apple does (20 minutes). Zero turns the check off.
    pub min_provider_token_interval: Duration,
}

impl Default for ApnsConfig {
    /// Team `HERALDTEAM`, key `HERALDKEY1`, topic `com.example.herald` and the fixture key,
    /// whose private half is [`FakeApns::signing_key_pem`].
    fn default() -> Self {
        Self {
            team_id: "HERALDTEAM".into(),
            key_id: "HERALDKEY1".into(),
            public_key_pem: TEST_P256_PUBLIC_KEY_PEM.into(),
            topics: vec!["com.example.herald".into()],
            min_provider_token_interval: Duration::from_secs(20 * 60),
        }
    }
}

/// One notification the fake accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApnsNotification {
    pub device_token: String,
    /// The `apns-id` answered: the request's, or one the fake made up.
    pub apns_id: String,
    pub topic: String,
    pub push_type: String,
    pub priority: Option<u8>,
    pub expiration: Option<u64>,
    pub collapse_id: Option<String>,
    pub payload: Value,
}

/// Counters of a fake APNs, as `GET /_fake/stats` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApnsStats {
    #[serde(flatten)]
    pub common: CommonStats,
    /// Distinct provider tokens accepted, oldest first.
    pub provider_tokens: Vec<ProviderTokenSeen>,
    pub behaviour: BehaviourSummary,
}

/// A running fake APNs. Dropping it stops the server.
pub struct FakeApns {
    server: FakeServer,
    state: Arc<ApnsState>,
}

struct ApnsState {
    config: ApnsConfig,
    provider_tokens: ProviderTokens,
    behaviour: Behaviour,
    received: Received<ApnsNotification>,
}

impl FakeApns {
    /// Starts on a free loopback port.
    pub async fn start(ca: &TestCa, config: ApnsConfig) -> io::Result<Self> {
        Self::start_with(HttpsListener::bind_loopback().await?, ca, config)
    }

    /// Starts on `addr` (the `herald fake-provider apns --listen ADDR` entry point).
    pub async fn start_on(addr: SocketAddr, ca: &TestCa, config: ApnsConfig) -> io::Result<Self> {
        Self::start_with(HttpsListener::bind(addr).await?, ca, config)
    }

    fn start_with(listener: HttpsListener, ca: &TestCa, config: ApnsConfig) -> io::Result<Self> {
        let provider_tokens = ProviderTokens::new(
            &config.public_key_pem,
            &config.team_id,
            &config.key_id,
            config.min_provider_token_interval,
        )
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let state = Arc::new(ApnsState {
            config,
            provider_tokens,
            behaviour: Behaviour::default(),
            received: Received::default(),
        });
        let handler_state = state.clone();
        let server = listener.serve(
            ca,
            Protocols::Http2Only,
            Arc::new(move |request| {
                let state = handler_state.clone();
                Box::pin(async move { state.handle(request).await })
            }),
        );
        Ok(Self { server, state })
    }

    /// The fixture provider key (PKCS#8 PEM, like Apple's `.p8` file) matching
    /// [`ApnsConfig::default`]'s public key.
    pub fn signing_key_pem() -> &'static str {
        TEST_P256_PRIVATE_KEY_PEM
    }

    pub fn config(&self) -> &ApnsConfig {
        &self.state.config
    }

    /// Distinct provider tokens accepted so far, oldest first.
    pub fn provider_tokens(&self) -> Vec<ProviderTokenSeen> {
        self.state.provider_tokens.seen()
    }

    pub fn stats(&self) -> ApnsStats {
        self.state.stats()
    }
}

impl FakeHandle for FakeApns {
    type Record = ApnsNotification;

    fn parts(&self) -> (&FakeServer, &Behaviour, &Received<ApnsNotification>) {
        (&self.server, &self.state.behaviour, &self.state.received)
    }
}

impl ApnsState {
    async fn handle(&self, request: FakeRequest) -> FakeResponse {
        if let Some(response) = control::answer(self, &request) {
            return response;
        }
        let apns_id = request_apns_id(request.headers())
            .map(str::to_string)
            .unwrap_or_else(new_apns_id);
        let Some(device_token) = request.uri().path().strip_prefix(DEVICE_PATH) else {
            return self.refuse(BAD_PATH, &apns_id);
        };
        if request.method() != Method::POST {
            return self.refuse(METHOD_NOT_ALLOWED, &apns_id);
        }
        if let Some(failure) = self.behaviour.before_request().await {
            let response = self.refuse(Rejection::injected(&failure), &apns_id);
            return reply::with_failure_headers(response, &failure);
        }
        match self.check(&request, device_token, &apns_id) {
            Ok(notification) => {
                self.received.accept(|| notification);
                with_apns_id(reply::empty(StatusCode::OK), &apns_id)
            }
            Err(rejection) => self.refuse(rejection, &apns_id),
        }
    }

    /// The notification if APNs would accept it, else why not.
    fn check(
        &self,
        request: &FakeRequest,
        device_token: &str,
        apns_id: &str,
    ) -> Result<ApnsNotification, Rejection> {
        let headers = request.headers();
        self.provider_tokens.check(headers.get(AUTHORIZATION))?;
        let apns = parse_headers(headers, &self.config.topics)?;
        check_device_token(device_token)?;
        let payload = parse_payload(request.body(), &apns.push_type)?;
        if self.behaviour.is_invalid(device_token) {
            return Err(BAD_DEVICE_TOKEN);
        }
        if self.behaviour.is_dead(device_token) {
            return Err(UNREGISTERED);
        }
        Ok(ApnsNotification {
            device_token: device_token.to_string(),
            apns_id: apns_id.to_string(),
            topic: apns.topic,
            push_type: apns.push_type,
            priority: apns.priority,
            expiration: apns.expiration,
            collapse_id: apns.collapse_id,
            payload,
        })
    }

    /// `{"reason":…}` (plus `timestamp` for 410), counted as a rejection.
    fn refuse(&self, rejection: Rejection, apns_id: &str) -> FakeResponse {
        self.received.reject(rejection.status);
        let mut body = json!({"reason": rejection.reason});
        if rejection.status == StatusCode::GONE {
            body["timestamp"] = json!(unix_millis());
        }
        with_apns_id(reply::json_value(rejection.status, &body), apns_id)
    }
}

impl Steerable for ApnsState {
    type Stats = ApnsStats;

    fn behaviour(&self) -> &Behaviour {
        &self.behaviour
    }

    fn set_recording(&self, on: bool) {
        self.received.set_recording(on);
    }

    fn stats(&self) -> ApnsStats {
        ApnsStats {
            common: self.received.common_stats(),
            provider_tokens: self.provider_tokens.seen(),
            behaviour: self.behaviour.summary(),
        }
    }
}

fn with_apns_id(mut response: FakeResponse, apns_id: &str) -> FakeResponse {
    if let Ok(value) = HeaderValue::from_str(apns_id) {
        response.headers_mut().insert("apns-id", value);
    }
    response
}

/// A random UUID (version 4) in upper case, as APNs makes them.
fn new_apns_id() -> String {
    let mut bytes: [u8; 16] = rand::rng().random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode_upper(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
