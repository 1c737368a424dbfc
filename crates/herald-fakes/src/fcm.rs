//! A fake Firebase Cloud Messaging HTTP v1 API: Google's OAuth token endpoint for service
//! accounts (`POST /token`) and `POST /v1/projects/{project}/messages:send`.

mod error;
mod message;
mod oauth;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};
use rand::Rng as _;
use serde::Serialize;
use serde_json::{Value, json};

use self::error::GoogleError;
use self::oauth::{AccessTokens, TokenEndpoint};
use crate::behaviour::{Behaviour, BehaviourSummary};
use crate::clock::unix_millis;
use crate::control::{self, Steerable};
use crate::handle::FakeHandle;
use crate::keys::{TEST_RSA_PRIVATE_KEY_PEM, TEST_RSA_PUBLIC_KEY_PEM};
use crate::record::{CommonStats, Received};
use crate::reply;
use crate::server::{FakeRequest, FakeResponse, FakeServer, HttpsListener, Protocols};
use crate::tls::TestCa;

/// The `private_key_id` of the fixture service account.
const TEST_PRIVATE_KEY_ID: &str = "6865726c616c6466616b65736b657930";

/// How the fake FCM is set up.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    pub project_id: String,
    /// The service account allowed to get tokens (the JWT's `iss`).
    pub client_email: String,
    /// The service account's public key (PEM) that assertions must verify with.
    pub public_key_pem: String,
    /// `expires_in` of issued access tokens.
    pub access_token_lifetime: Duration,
    /// A bearer token always accepted, for load generators that cannot fetch one (h2load).
    pub static_access_token: Option<String>,
    /// The token URL put in the service account and required as the JWT's `aud`; `None` means
    /// this fake's own `/token` URL. Set it when clients reach the fake by another name.
    pub token_uri: Option<String>,
}

impl Default for FcmConfig {
    /// Project `herald-test` and the fixture key pair, so [`FakeFcm::service_account_json`]
    /// holds the matching private key.
    fn default() -> Self {
        Self {
            project_id: "herald-test".into(),
            client_email: "herald-fake@herald-test.iam.gserviceaccount.com".into(),
            public_key_pem: TEST_RSA_PUBLIC_KEY_PEM.into(),
            access_token_lifetime: Duration::from_secs(3599),
            static_access_token: None,
            token_uri: None,
        }
    }
}

/// One message the fake accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FcmMessage {
    /// `message.token`.
    pub token: String,
    /// The whole `message` object as sent.
    pub message: Value,
    pub validate_only: bool,
}

/// Counters of a fake FCM, as `GET /_fake/stats` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FcmStats {
    #[serde(flatten)]
    pub common: CommonStats,
    /// Accepted requests that had `validate_only: true` (also counted in `accepted`).
    pub validate_only: u64,
    pub access_tokens_issued: u64,
    pub behaviour: BehaviourSummary,
}

/// A running fake FCM. Dropping it stops the server.
pub struct FakeFcm {
    server: FakeServer,
    state: Arc<FcmState>,
}

struct FcmState {
    config: FcmConfig,
    token_uri: String,
    send_path: String,
    token_endpoint: TokenEndpoint,
    behaviour: Behaviour,
    received: Received<FcmMessage>,
    validate_only: AtomicU64,
    message_id_prefix: String,
    next_message_id: AtomicU64,
}

impl FakeFcm {
    /// Starts on a free loopback port.
    pub async fn start(ca: &TestCa, config: FcmConfig) -> io::Result<Self> {
        Self::start_with(HttpsListener::bind_loopback().await?, ca, config)
    }

    /// Starts on `addr` (the `herald fake-provider fcm --listen ADDR` entry point).
    pub async fn start_on(addr: SocketAddr, ca: &TestCa, config: FcmConfig) -> io::Result<Self> {
        Self::start_with(HttpsListener::bind(addr).await?, ca, config)
    }

    fn start_with(listener: HttpsListener, ca: &TestCa, config: FcmConfig) -> io::Result<Self> {
        let token_uri = config
            .token_uri
            .clone()
            .unwrap_or_else(|| format!("{}/token", listener.url()));
        let tokens = AccessTokens::new(
            config.access_token_lifetime,
            config.static_access_token.clone(),
        );
        let token_endpoint = TokenEndpoint::new(
            &config.public_key_pem,
            &config.client_email,
            &token_uri,
            tokens,
        )
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let state = Arc::new(FcmState {
            send_path: format!("/v1/projects/{}/messages:send", config.project_id),
            token_uri,
            config,
            token_endpoint,
            behaviour: Behaviour::default(),
            received: Received::default(),
            validate_only: AtomicU64::new(0),
            message_id_prefix: format!("0:{}%", rand::rng().random::<u64>()),
            next_message_id: AtomicU64::new(unix_millis() * 1000),
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
        Ok(Self { server, state })
    }

    /// The OAuth token URL (the service account's `token_uri`).
    pub fn token_url(&self) -> String {
        self.state.token_uri.clone()
    }

    /// The full `messages:send` URL of the configured project.
    pub fn send_url(&self) -> String {
        format!("{}{}", self.url(), self.state.send_path)
    }

    /// A service-account JSON file for the fixture key pair, whose `token_uri` is this fake.
    /// Only valid with the default `public_key_pem`.
    pub fn service_account_json(&self) -> String {
        self.state.service_account().to_string()
    }

    /// Issues an access token directly, without the OAuth round trip.
    pub fn issue_access_token(&self) -> String {
        self.state.token_endpoint.tokens().issue()
    }

    /// Makes every issued access token invalid, so the next send answers 401.
    pub fn revoke_access_tokens(&self) {
        self.state.token_endpoint.tokens().revoke_all();
    }

    pub fn stats(&self) -> FcmStats {
        self.state.stats()
    }
}

impl FakeHandle for FakeFcm {
    type Record = FcmMessage;

    fn parts(&self) -> (&FakeServer, &Behaviour, &Received<FcmMessage>) {
        (&self.server, &self.state.behaviour, &self.state.received)
    }
}

impl FcmState {
    async fn handle(&self, request: FakeRequest) -> FakeResponse {
        let path = request.uri().path();
        if project_of(path).is_some() {
            if request.method() != Method::POST {
                return reply::text(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            }
            return self.send(&request).await;
        }
        match (request.method(), path) {
            (&Method::POST, "/token") => {
                let content_type = request
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|value| value.to_str().ok());
                self.token_endpoint.answer(content_type, request.body())
            }
            (&Method::GET, "/_fake/service-account") => {
                reply::json_value(StatusCode::OK, &self.service_account())
            }
            (&Method::POST, "/_fake/revoke-access-tokens") => {
                self.token_endpoint.tokens().revoke_all();
                reply::json_value(StatusCode::OK, &json!({"revoked": true}))
            }
            _ => control::answer(self, &request)
                .unwrap_or_else(|| GoogleError::not_found_path().response()),
        }
    }

    async fn send(&self, request: &FakeRequest) -> FakeResponse {
        if let Some(failure) = self.behaviour.before_request().await {
            let response = self.reject(GoogleError::injected(&failure));
            return reply::with_failure_headers(response, &failure);
        }
        match bearer_token(request.headers()) {
            None => return self.reject(GoogleError::missing_credentials()),
            Some(token) if !self.token_endpoint.tokens().is_valid(token) => {
                return self.reject(GoogleError::invalid_credentials());
            }
            Some(_) => {}
        }
        if request.uri().path() != self.send_path {
            let project = project_of(request.uri().path()).unwrap_or_default();
            return self.reject(GoogleError::permission_denied(project));
        }
        let send = match message::parse(request.body()) {
            Ok(send) => send,
            Err(error) => return self.reject(error),
        };
        if send.token.is_empty() || self.behaviour.is_invalid(&send.token) {
            return self.reject(GoogleError::invalid_registration_token());
        }
        if self.behaviour.is_dead(&send.token) {
            return self.reject(GoogleError::unregistered());
        }
        if send.validate_only {
            self.validate_only.fetch_add(1, Ordering::Relaxed);
        }
        let id = self.next_message_id.fetch_add(1, Ordering::Relaxed);
        let body = format!(
            r#"{{"name":"projects/{}/messages/{}{}"}}"#,
            self.config.project_id, self.message_id_prefix, id
        );
        self.received.accept(|| FcmMessage {
            token: send.token,
            message: send.message,
            validate_only: send.validate_only,
        });
        reply::json(StatusCode::OK, body)
    }

    fn reject(&self, error: GoogleError) -> FakeResponse {
        self.received.reject(error.code);
        error.response()
    }

    fn service_account(&self) -> Value {
        json!({
            "type": "service_account",
            "project_id": self.config.project_id,
            "private_key_id": TEST_PRIVATE_KEY_ID,
            "private_key": TEST_RSA_PRIVATE_KEY_PEM,
            "client_email": self.config.client_email,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        })
    }
}

impl Steerable for FcmState {
    type Stats = FcmStats;

    fn behaviour(&self) -> &Behaviour {
        &self.behaviour
    }

    fn set_recording(&self, on: bool) {
        self.received.set_recording(on);
    }

    fn stats(&self) -> FcmStats {
        FcmStats {
            common: self.received.common_stats(),
            validate_only: self.validate_only.load(Ordering::Relaxed),
            access_tokens_issued: self.token_endpoint.tokens().issued_count(),
            behaviour: self.behaviour.summary(),
        }
    }
}

fn project_of(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/projects/")?
        .strip_suffix("/messages:send")
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}
