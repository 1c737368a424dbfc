//! Fake push providers that speak the real protocols over TLS and HTTP/2, for Herald's tests,
//! benchmarks and staging:
//!
//! - [`FakeFcm`]: FCM HTTP v1 (`POST /v1/projects/{project}/messages:send`) behind Google's
//!   OAuth service-account token endpoint (`POST /token`).
//! - [`FakeApns`]: APNs (`POST /3/device/{token}`), HTTP/2 only, ES256 provider tokens.
//! - [`FakeWebPush`]: a Web Push service (RFC 8030) checking VAPID (RFC 8292) and decrypting
//!   every message as the browser would (RFC 8291 / RFC 8188 `aes128gcm`).
//! - [`FakeWebhook`]: a webhook receiver checking Herald's `Herald-Signature` HMAC.
//!
//! Every fake serves TLS with a certificate from a [`TestCa`]: clients trust
//! [`TestCa::ca_pem`] (or the file [`TestCa::write_ca_pem`] writes) like any extra CA.
//! Each handle implements [`FakeHandle`]: `url()`, `behaviour()` for failure injection ([`Behaviour::fail_next`],
//! [`Behaviour::set_delay`], [`Behaviour::mark_dead`], [`Behaviour::mark_invalid`]),
//! `received()` for copies of what it accepted, `stats()` for counters, and
//! `wait_for(count, timeout)`. `set_record_filter` keeps copies of only the requests of
//! interest during a load test, and `wait_for_records` waits for them. Dropping a handle stops its server.
//!
//! The fakes are built for load: no lock is held across an await, tokens and VAPID headers
//! verified once are remembered, nothing is logged per request, and `set_recording(false)`
//! leaves only atomic counters on the request path.
//!
//! # Steering a running fake over HTTP
//!
//! Besides its protocol, every fake serves:
//!
//! - `GET /_fake/stats`: the counters as JSON, e.g.
//!   `{"accepted":10,"rejected":{"503":3},"recording":true,"behaviour":{…},…}`
//!   plus per-fake fields (`validate_only` and `access_tokens_issued` for FCM,
//!   `provider_tokens` for APNs, `subscriptions` for Web Push).
//! - `POST /_fake/behaviour` with a JSON object whose fields are all optional:
//!   `{"reset":false,"fail_next":3,"status":503,"retry_after":1,"delay_ms":0,
//!   "dead_tokens":["…"],"invalid_tokens":["…"],"revive_tokens":["…"],"recording":false}`.
//!   It answers the resulting settings (`GET /_fake/behaviour` shows them too). Dead ids are
//!   device tokens (FCM, APNs), subscription ids (Web Push) or paths (webhook).
//!
//! and per fake:
//!
//! - FCM: `GET /_fake/service-account` (the service-account JSON to give Herald) and
//!   `POST /_fake/revoke-access-tokens`.
//! - Web Push: `POST /_fake/subscribe`, optionally with
//!   `{"application_server_key":"<base64url>"}`, answers a new subscription as
//!   `{"endpoint":…,"keys":{"p256dh":…,"auth":…},"id":…}`.
//!
//! Injected failures (`fail_next`) apply to the protocol endpoint only (not to `/token` or
//! `/_fake/...`) and answer in the provider's own error shape with `Retry-After`.
//!
//! # Entry points for `herald fake-provider`
//!
//! [`serve_fcm`], [`serve_apns`], [`serve_webpush`] and [`serve_webhook`] start a fake on a
//! given address and return its handle; the server runs until the handle is dropped.

pub mod apns;
pub mod behaviour;
mod clock;
mod control;
pub mod ece;
pub mod fcm;
mod form;
mod handle;
pub mod keys;
mod record;
mod reply;
pub mod server;
pub mod tls;
mod vapid;
pub mod webhook;
pub mod webpush;

use std::io;
use std::net::SocketAddr;

pub use apns::{ApnsConfig, ApnsNotification, ApnsStats, FakeApns, ProviderTokenSeen};
pub use behaviour::{Behaviour, BehaviourSummary, BehaviourUpdate, Failure};
pub use fcm::{FakeFcm, FcmConfig, FcmMessage, FcmStats};
pub use handle::FakeHandle;
pub use record::{CommonStats, RecordFilter};
pub use server::{FakeServer, HttpsListener, Protocols};
pub use tls::TestCa;
pub use webhook::{FakeWebhook, WebhookDelivery, WebhookStats};
pub use webpush::{FakeWebPush, Subscription, WebPushMessage, WebPushStats};

/// Starts a fake FCM on `addr`; it serves until the handle is dropped.
pub async fn serve_fcm(addr: SocketAddr, ca: &TestCa, config: FcmConfig) -> io::Result<FakeFcm> {
    FakeFcm::start_on(addr, ca, config).await
}

/// Starts a fake APNs on `addr`; it serves until the handle is dropped.
pub async fn serve_apns(addr: SocketAddr, ca: &TestCa, config: ApnsConfig) -> io::Result<FakeApns> {
    FakeApns::start_on(addr, ca, config).await
}

/// Starts a fake Web Push service on `addr`; it serves until the handle is dropped.
pub async fn serve_webpush(addr: SocketAddr, ca: &TestCa) -> io::Result<FakeWebPush> {
    FakeWebPush::start_on(addr, ca).await
}

/// Starts a fake webhook receiver on `addr` checking signatures made with `secret`; it serves
/// until the handle is dropped.
pub async fn serve_webhook(
    addr: SocketAddr,
    ca: &TestCa,
    secret: impl Into<Vec<u8>>,
) -> io::Result<FakeWebhook> {
    FakeWebhook::start_on(addr, ca, secret).await
}
