//! Web Push (RFC 8030) with aes128gcm payload encryption (RFC 8291) and VAPID (RFC 8292).
//!
//! A device's address is its push service endpoint; its keys are the subscription's `p256dh` and
//! `auth`. Each send encrypts a small JSON payload for the device and POSTs it to the endpoint.

pub mod ece;
pub mod vapid;

use std::borrow::Cow;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use herald_core::{Device, Platform};
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::WebPushConfig;
use crate::http::{ClientPool, HttpOptions};
use crate::message::PushMessage;
use crate::provider::{Provider, SendResult, retry_after, transport_error};
use vapid::VapidKey;

/// Push services keep a message at most this long anyway (28 days); the TTL without one.
const MAX_TTL_SECS: u64 = 28 * 24 * 3600;
/// RFC 8030 section 5.4: a topic is at most 32 characters of the base64url alphabet.
const MAX_TOPIC_LEN: usize = 32;
/// How much of an error answer goes into a failure's reason.
const MAX_REASON_BODY_BYTES: usize = 200;

const TTL: HeaderName = HeaderName::from_static("ttl");
const URGENCY: HeaderName = HeaderName::from_static("urgency");
const TOPIC: HeaderName = HeaderName::from_static("topic");

/// Sends to browsers through their push services, signed with the VAPID key.
#[derive(Debug)]
pub struct WebPush {
    vapid: VapidKey,
    subject: String,
    clients: ClientPool,
}

/// What one send POSTs, ready but not sent.
#[derive(Debug)]
struct PreparedRequest {
    endpoint: reqwest::Url,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl WebPush {
    pub fn new(config: &WebPushConfig, http: HttpOptions) -> Result<Self, String> {
        let vapid = VapidKey::from_base64url(&config.vapid_private_key)
            .map_err(|e| format!("[push.webpush] vapid_private_key: {e}"))?;
        // Push services (Apple's among them) refuse a VAPID token without a usable contact.
        let subject = config.subject.trim();
        let contact = subject
            .strip_prefix("mailto:")
            .or_else(|| subject.strip_prefix("https://"));
        if contact.is_none_or(str::is_empty) {
            return Err(format!(
                "[push.webpush] subject must be a mailto: or https: contact, not {subject:?}"
            ));
        }
        let clients = ClientPool::new(&http).map_err(|e| format!("[push.webpush] {e}"))?;
        Ok(Self {
            vapid,
            subject: subject.to_owned(),
            clients,
        })
    }

    /// The VAPID public key browsers subscribe with (`applicationServerKey`).
    pub fn public_key_b64url(&self) -> &str {
        self.vapid.public_key_b64url()
    }

    /// Everything a send does before the network: checks the device, encrypts, signs.
    fn prepare(
        &self,
        message: &PushMessage,
        device: &Device,
        now_ms: i64,
    ) -> Result<PreparedRequest, String> {
        let keys = device
            .keys
            .as_ref()
            .ok_or_else(|| "web push device without keys".to_owned())?;
        let endpoint = reqwest::Url::parse(&device.address)
            .ok()
            .filter(|url| matches!(url.scheme(), "https" | "http") && url.has_host())
            .ok_or_else(|| "web push endpoint is not an http(s) URL".to_owned())?;
        let ua_public = decode_base64url(&keys.p256dh)
            .map_err(|_| "web push device key p256dh is not base64url".to_owned())?;
        let auth_secret = decode_base64url(&keys.auth)
            .map_err(|_| "web push device key auth is not base64url".to_owned())?;

        let payload = payload_json(message, ece::MAX_PLAINTEXT_LEN)
            .map_err(|e| format!("web push payload: {e}"))?;
        let body = ece::encrypt(&payload, &ua_public, &auth_secret)
            .map_err(|e| format!("web push encryption: {e}"))?;

        let now_secs = u64::try_from(now_ms / 1000).unwrap_or(0);
        let authorization = self.vapid.authorization(
            &endpoint.origin().ascii_serialization(),
            &self.subject,
            now_secs,
        );
        let ttl = message
            .ttl_left_seconds(now_ms)
            .map_or(MAX_TTL_SECS, |left| left.min(MAX_TTL_SECS));

        let mut headers = HeaderMap::new();
        headers.insert(TTL, HeaderValue::from(ttl));
        headers.insert(URGENCY, HeaderValue::from_static(message.priority.as_str()));
        if let Some(key) = &message.collapse_key {
            let topic = HeaderValue::try_from(topic(key))
                .map_err(|e| format!("web push topic header: {e}"))?;
            headers.insert(TOPIC, topic);
        }
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("aes128gcm"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let authorization = HeaderValue::try_from(authorization)
            .map_err(|e| format!("web push authorization header: {e}"))?;
        headers.insert(AUTHORIZATION, authorization);

        Ok(PreparedRequest {
            endpoint,
            headers,
            body,
        })
    }
}

#[async_trait]
impl Provider for WebPush {
    fn platform(&self) -> Platform {
        Platform::Webpush
    }

    async fn send(&self, message: &PushMessage, device: &Device, dry_run: bool) -> SendResult {
        let request = match self.prepare(message, device, herald_core::time::now_ms()) {
            Ok(request) => request,
            Err(reason) => return SendResult::Fail { reason },
        };
        // Push services have no validate-only mode: a dry run stops once the message is encrypted
        // and signed, which is what shows bad keys.
        if dry_run {
            return SendResult::DryRun;
        }
        let response = match self
            .clients
            .client()
            .post(request.endpoint)
            .headers(request.headers)
            .body(request.body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => return transport_error(&e),
        };
        let status = response.status();
        let after = retry_after(response.headers());
        let detail = body_prefix(response, MAX_REASON_BODY_BYTES).await;
        classify(status, after, &detail)
    }
}

/// What a push service's answer means for the send and the device.
fn classify(status: StatusCode, after: Option<std::time::Duration>, detail: &str) -> SendResult {
    let reason = if detail.is_empty() {
        format!("push service answered {status}")
    } else {
        format!("push service answered {status}: {detail}")
    };
    match status.as_u16() {
        200..=299 => SendResult::Sent,
        // The subscription expired or the user unsubscribed.
        404 | 410 => SendResult::Prune { reason },
        408 | 429 | 500..=599 => SendResult::Retry { reason, after },
        // 400, 401, 403, 413 and anything else unexpected: retrying would not change the answer.
        _ => SendResult::Fail { reason },
    }
}

/// The start of an answer's body, as text, reading no more of it than needed.
async fn body_prefix(mut response: reqwest::Response, max_bytes: usize) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < max_bytes {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(max_bytes);
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

/// The `Topic` for a collapse key: the key itself when RFC 8030 allows it, otherwise the
/// base64url of the first 24 bytes of its SHA-256 (exactly 32 characters).
fn topic(collapse_key: &str) -> String {
    let fits = !collapse_key.is_empty()
        && collapse_key.len() <= MAX_TOPIC_LEN
        && collapse_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fits {
        collapse_key.to_owned()
    } else {
        URL_SAFE_NO_PAD.encode(&Sha256::digest(collapse_key.as_bytes())[..24])
    }
}

/// Base64url as browsers give subscription keys: padded or not.
pub(crate) fn decode_base64url(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(text.trim())
}

/// What the service worker receives.
#[derive(Serialize)]
struct Payload<'a> {
    id: &'a str,
    title: Cow<'a, str>,
    body: Cow<'a, str>,
    category: Option<&'a str>,
    data: &'a Map<String, Value>,
    priority: &'static str,
}

#[derive(Clone, Copy)]
enum TextField {
    Body,
    Title,
}

impl<'a> Payload<'a> {
    fn text_mut(&mut self, field: TextField) -> &mut Cow<'a, str> {
        match field {
            TextField::Body => &mut self.body,
            TextField::Title => &mut self.title,
        }
    }
}

/// The message as JSON of at most `max_len` bytes. Too long, it loses its `data` first, then as
/// much of its body (and, in the extreme, its title) as needed, so the push still arrives.
fn payload_json(message: &PushMessage, max_len: usize) -> Result<Vec<u8>, serde_json::Error> {
    let no_data = Map::new();
    let mut payload = Payload {
        id: &message.notification_id,
        title: Cow::Borrowed(&message.title),
        body: Cow::Borrowed(&message.body),
        category: message.category.as_deref(),
        data: &message.data,
        priority: message.priority.as_str(),
    };
    let json = serde_json::to_vec(&payload)?;
    if json.len() <= max_len {
        return Ok(json);
    }
    payload.data = &no_data;
    let json = serde_json::to_vec(&payload)?;
    if json.len() <= max_len {
        return Ok(json);
    }
    for (field, text) in [
        (TextField::Body, message.body.as_str()),
        (TextField::Title, message.title.as_str()),
    ] {
        if let Some(json) = shorten_to_fit(&mut payload, field, text, max_len)? {
            return Ok(json);
        }
    }
    // Only an id and category of thousands of bytes get here; encryption then refuses it.
    serde_json::to_vec(&payload)
}

/// The JSON with the longest prefix of `text` (marked with an ellipsis) in `field` that keeps
/// it within `max_len`; `None`, with the field emptied, if not even the ellipsis fits.
fn shorten_to_fit<'a>(
    payload: &mut Payload<'a>,
    field: TextField,
    text: &str,
    max_len: usize,
) -> Result<Option<Vec<u8>>, serde_json::Error> {
    // Escaping makes the JSON length of a prefix hard to predict, but it only grows with the
    // prefix, so a binary search over the character boundaries finds the longest that fits.
    let cuts: Vec<usize> = text.char_indices().map(|(at, _)| at).collect();
    let (mut low, mut high) = (0, cuts.len());
    let mut best = None;
    while low < high {
        let mid = low + (high - low) / 2;
        *payload.text_mut(field) = Cow::Owned(format!("{}…", &text[..cuts[mid]]));
        let json = serde_json::to_vec(&*payload)?;
        if json.len() <= max_len {
            best = Some(json);
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    if best.is_none() {
        *payload.text_mut(field) = Cow::Borrowed("");
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::Priority;
    use herald_core::WebPushKeys;
    use p256::SecretKey;
    use p256::elliptic_curve::rand_core::OsRng;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use std::time::Duration;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn message() -> PushMessage {
        let mut data = Map::new();
        data.insert("url".into(), Value::from("/inbox/N1"));
        PushMessage {
            notification_id: "N1".into(),
            title: "Hello".into(),
            body: "World".into(),
            category: Some("news".into()),
            data,
            priority: Priority::High,
            expires_at_ms: None,
            collapse_key: None,
            string_data_cache: Default::default(),
            fcm_body_cache: Default::default(),
        }
    }

    struct Browser {
        private: SecretKey,
        auth: [u8; 16],
        device: Device,
    }

    fn browser() -> Browser {
        let private = SecretKey::random(&mut OsRng);
        let auth = [9u8; 16];
        let public = private.public_key().to_encoded_point(false);
        let device = Device {
            id: "d1".into(),
            user: "u1".into(),
            platform: Platform::Webpush,
            address: "https://push.example.net:8443/send/abc?x=1".into(),
            // Browsers' keys sometimes come padded.
            keys: Some(WebPushKeys {
                p256dh: URL_SAFE_NO_PAD.encode(public.as_bytes()),
                auth: base64::engine::general_purpose::URL_SAFE.encode(auth),
            }),
            app: None,
            locale: None,
            timezone: None,
            registered_at: 0,
        };
        Browser {
            private,
            auth,
            device,
        }
    }

    fn web_push() -> WebPush {
        let (private, _) = vapid::generate();
        let config = WebPushConfig {
            vapid_private_key: private,
            subject: "mailto:ops@example.com".into(),
            limits: Default::default(),
        };
        WebPush::new(&config, HttpOptions::default()).unwrap()
    }

    fn header<'a>(request: &'a PreparedRequest, name: &str) -> Option<&'a str> {
        request.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn new_rejects_bad_configuration() {
        let (private, _) = vapid::generate();
        let config = |key: &str, subject: &str| WebPushConfig {
            vapid_private_key: key.into(),
            subject: subject.into(),
            limits: Default::default(),
        };
        let error =
            WebPush::new(&config("abc", "mailto:a@b.c"), HttpOptions::default()).unwrap_err();
        assert!(error.contains("vapid_private_key"), "{error}");
        assert!(error.contains("32-byte"), "{error}");
        let error =
            WebPush::new(&config(&private, "ops@example.com"), HttpOptions::default()).unwrap_err();
        assert!(error.contains("subject"), "{error}");
        assert!(
            WebPush::new(
                &config(&private, "https://example.com/contact"),
                HttpOptions::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn prepares_an_encrypted_signed_request() {
        let push = web_push();
        let browser = browser();
        let mut message = message();
        message.expires_at_ms = Some(NOW_MS + 90_500);
        message.collapse_key = Some("score-update".into());

        let request = push.prepare(&message, &browser.device, NOW_MS).unwrap();
        assert_eq!(request.endpoint.as_str(), browser.device.address);
        assert_eq!(header(&request, "ttl"), Some("90"));
        assert_eq!(header(&request, "urgency"), Some("high"));
        assert_eq!(header(&request, "topic"), Some("score-update"));
        assert_eq!(header(&request, "content-encoding"), Some("aes128gcm"));
        assert_eq!(
            header(&request, "content-type"),
            Some("application/octet-stream")
        );
        let authorization = header(&request, "authorization").unwrap();
        assert!(authorization.starts_with("vapid t="), "{authorization}");
        assert!(authorization.ends_with(&format!(", k={}", push.public_key_b64url())));
        let jwt = authorization["vapid t=".len()..].split(',').next().unwrap();
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["aud"], "https://push.example.net:8443");
        assert_eq!(claims["exp"], NOW_MS / 1000 + 12 * 3600);

        let plaintext = ece::tests::decrypt(&request.body, &browser.private, &browser.auth);
        let payload: Value = serde_json::from_slice(&plaintext).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({
                "id": "N1", "title": "Hello", "body": "World", "category": "news",
                "data": {"url": "/inbox/N1"}, "priority": "high"
            })
        );
    }

    #[test]
    fn ttl_and_urgency_follow_the_message() {
        let push = web_push();
        let browser = browser();
        let mut message = message();
        message.priority = Priority::Low;
        let request = push.prepare(&message, &browser.device, NOW_MS).unwrap();
        assert_eq!(header(&request, "ttl"), Some("2419200"));
        assert_eq!(header(&request, "urgency"), Some("low"));
        assert_eq!(header(&request, "topic"), None);

        message.priority = Priority::Normal;
        message.expires_at_ms = Some(NOW_MS - 5_000);
        let request = push.prepare(&message, &browser.device, NOW_MS).unwrap();
        assert_eq!(header(&request, "ttl"), Some("0"));
        assert_eq!(header(&request, "urgency"), Some("normal"));
    }

    #[test]
    fn bad_devices_fail_before_the_network() {
        let push = web_push();
        let mut device = browser().device;
        let keys = device.keys.take().unwrap();
        let fail = |device: &Device| push.prepare(&message(), device, NOW_MS).unwrap_err();
        assert_eq!(fail(&device), "web push device without keys");

        device.keys = Some(WebPushKeys {
            p256dh: "AAAA".into(),
            auth: keys.auth.clone(),
        });
        assert!(fail(&device).contains("p256dh"), "{}", fail(&device));
        device.keys = Some(WebPushKeys {
            p256dh: keys.p256dh.clone(),
            auth: "!!".into(),
        });
        assert!(fail(&device).contains("auth"), "{}", fail(&device));
        device.keys = Some(keys);
        device.address = "mailto:someone@example.com".into();
        assert!(fail(&device).contains("endpoint"), "{}", fail(&device));
    }

    #[tokio::test]
    async fn dry_run_encrypts_without_sending() {
        let push = web_push();
        let mut device = browser().device;
        // Nothing listens there: a network call would not come back as DryRun.
        device.address = "https://127.0.0.1:9/push/abc".into();
        assert_eq!(
            push.send(&message(), &device, true).await,
            SendResult::DryRun
        );

        device.keys.as_mut().unwrap().p256dh = URL_SAFE_NO_PAD.encode([4u8; 65]);
        let SendResult::Fail { reason } = push.send(&message(), &device, true).await else {
            panic!("a key off the curve must fail");
        };
        assert!(reason.contains("P-256"), "{reason}");

        device.keys = None;
        assert_eq!(
            push.send(&message(), &device, true).await,
            SendResult::Fail {
                reason: "web push device without keys".into()
            }
        );
    }

    #[test]
    fn topic_is_the_key_or_its_hash() {
        assert_eq!(topic("score-update_42"), "score-update_42");
        let longest = "a".repeat(32);
        assert_eq!(topic(&longest), longest);
        for unfit in [
            "a".repeat(33),
            "has space".into(),
            "ünïcode".into(),
            "a.b".into(),
            String::new(),
        ] {
            let derived = topic(&unfit);
            assert_eq!(derived.len(), 32, "{unfit:?} -> {derived}");
            assert!(
                derived
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{derived}"
            );
            assert_eq!(
                derived,
                URL_SAFE_NO_PAD.encode(&Sha256::digest(unfit.as_bytes())[..24])
            );
        }
        assert_ne!(topic(&"a".repeat(33)), topic(&"a".repeat(34)));
    }

    #[test]
    fn small_payloads_are_whole() {
        let json = payload_json(&message(), ece::MAX_PLAINTEXT_LEN).unwrap();
        let payload: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(payload["data"]["url"], "/inbox/N1");
        assert_eq!(payload["body"], "World");

        let mut message = message();
        message.category = None;
        let payload: Value =
            serde_json::from_slice(&payload_json(&message, ece::MAX_PLAINTEXT_LEN).unwrap())
                .unwrap();
        assert_eq!(payload["category"], Value::Null);
    }

    #[test]
    fn large_data_is_dropped_before_the_body_is_cut() {
        let mut message = message();
        message.body = "b".repeat(2000);
        message
            .data
            .insert("blob".into(), Value::from("x".repeat(3000)));
        let json = payload_json(&message, ece::MAX_PLAINTEXT_LEN).unwrap();
        assert!(json.len() <= ece::MAX_PLAINTEXT_LEN);
        let payload: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(payload["data"], serde_json::json!({}));
        assert_eq!(payload["body"], message.body);
        assert_eq!(payload["title"], "Hello");
    }

    #[test]
    fn long_bodies_are_cut_to_fit_exactly() {
        let mut message = message();
        // Multi-byte characters and characters JSON escapes, so cuts must respect both.
        message.body = "é\"\n\u{1}😀".repeat(2000);
        message
            .data
            .insert("blob".into(), Value::from("x".repeat(100)));
        let json = payload_json(&message, ece::MAX_PLAINTEXT_LEN).unwrap();
        assert!(json.len() <= ece::MAX_PLAINTEXT_LEN);
        assert!(
            json.len() > ece::MAX_PLAINTEXT_LEN - 12,
            "cut no more than needed: {}",
            json.len()
        );
        let payload: Value = serde_json::from_slice(&json).unwrap();
        let body = payload["body"].as_str().unwrap();
        let kept = body.strip_suffix('…').unwrap();
        assert!(!kept.is_empty());
        assert!(message.body.starts_with(kept));
        assert_eq!(payload["data"], serde_json::json!({}));
        assert_eq!(payload["title"], "Hello");
        assert_eq!(payload["id"], "N1");

        // And the result encrypts into one record a push service must accept.
        let browser = browser();
        let request = web_push()
            .prepare(&message, &browser.device, NOW_MS)
            .unwrap();
        assert!(request.body.len() <= 4096);
    }

    #[test]
    fn a_huge_title_is_cut_after_the_body() {
        let mut message = message();
        message.title = "t".repeat(5000);
        message.body = "b".repeat(5000);
        let json = payload_json(&message, ece::MAX_PLAINTEXT_LEN).unwrap();
        assert!(json.len() <= ece::MAX_PLAINTEXT_LEN);
        let payload: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(payload["body"], "");
        assert!(payload["title"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn answers_map_to_results() {
        let after = Some(Duration::from_secs(30));
        assert_eq!(classify(StatusCode::CREATED, None, ""), SendResult::Sent);
        for gone in [StatusCode::NOT_FOUND, StatusCode::GONE] {
            assert!(matches!(classify(gone, None, ""), SendResult::Prune { .. }));
        }
        for transient in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert_eq!(
                classify(transient, after, ""),
                SendResult::Retry {
                    reason: format!("push service answered {transient}"),
                    after
                }
            );
        }
        for permanent in [400u16, 401, 403, 413] {
            let status = StatusCode::from_u16(permanent).unwrap();
            assert_eq!(
                classify(status, None, "VAPID token expired"),
                SendResult::Fail {
                    reason: format!("push service answered {status}: VAPID token expired")
                }
            );
        }
    }
}
