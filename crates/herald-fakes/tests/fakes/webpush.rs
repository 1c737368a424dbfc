use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_fakes::{Failure, FakeHandle, FakeWebPush, Subscription, TestCa};
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use rand::Rng as _;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{answer, http2_client, now};

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn random_secret_key() -> SecretKey {
    loop {
        if let Ok(key) = SecretKey::from_slice(&rand::rng().random::<[u8; 32]>()) {
            return key;
        }
    }
}

/// The application server's side of RFC 8291, written here independently of the fake.
fn encrypt(plaintext: &[u8], subscription: &Subscription) -> Vec<u8> {
    let user_agent_public = URL_SAFE_NO_PAD
        .decode(&subscription.p256dh)
        .expect("p256dh");
    let auth_secret = URL_SAFE_NO_PAD.decode(&subscription.auth).expect("auth");
    let sender = random_secret_key();
    let sender_public = sender.public_key().to_encoded_point(false);
    let user_agent = PublicKey::from_sec1_bytes(&user_agent_public).expect("point");
    let shared = p256::ecdh::diffie_hellman(sender.to_nonzero_scalar(), user_agent.as_affine());

    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(&user_agent_public);
    key_info.extend_from_slice(sender_public.as_bytes());
    let mut input_key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&auth_secret), shared.raw_secret_bytes())
        .expand(&key_info, &mut input_key)
        .expect("HKDF");
    let salt: [u8; 16] = rand::rng().random();
    let content = Hkdf::<Sha256>::new(Some(&salt), &input_key);
    let (mut key, mut nonce) = ([0u8; 16], [0u8; 12]);
    content
        .expand(b"Content-Encoding: aes128gcm\0", &mut key)
        .expect("HKDF");
    content
        .expand(b"Content-Encoding: nonce\0", &mut nonce)
        .expect("HKDF");

    let mut record = plaintext.to_vec();
    record.push(0x02);
    record.extend_from_slice(&[0, 0, 0]); // some padding
    let ciphertext = Aes128Gcm::new_from_slice(&key)
        .expect("key")
        .encrypt(&Nonce::from(nonce), record.as_slice())
        .expect("encrypts");

    let mut body = salt.to_vec();
    body.extend_from_slice(&4096u32.to_be_bytes());
    body.push(65);
    body.extend_from_slice(sender_public.as_bytes());
    body.extend_from_slice(&ciphertext);
    body
}

struct Vapid {
    key: SigningKey,
}

impl Vapid {
    fn new() -> Self {
        Self {
            key: SigningKey::from(random_secret_key()),
        }
    }

    fn public_key(&self) -> String {
        b64(self.key.verifying_key().to_encoded_point(false).as_bytes())
    }

    fn header_with(&self, claims: Value) -> String {
        let signed = format!(
            "{}.{}",
            b64(json!({"typ": "JWT", "alg": "ES256"}).to_string()),
            b64(claims.to_string())
        );
        let signature: Signature = self.key.sign(signed.as_bytes());
        format!(
            "vapid t={signed}.{}, k={}",
            b64(signature.to_bytes()),
            self.public_key()
        )
    }

    fn header(&self, push: &FakeWebPush) -> String {
        self.header_with(
            json!({"aud": push.url(), "exp": now() + 3600, "sub": "mailto:ops@example.com"}),
        )
    }
}

async fn start() -> (TestCa, FakeWebPush, reqwest::Client) {
    let ca = TestCa::new();
    let push = FakeWebPush::start(&ca).await.expect("starts");
    let client = http2_client(&ca);
    (ca, push, client)
}

#[tokio::test]
async fn decrypts_and_records_a_push_message() {
    let (_ca, push, client) = start().await;
    let subscription = push.subscribe();
    assert!(subscription.endpoint.starts_with(&push.url()));
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(&subscription.p256dh)
            .expect("b64")
            .len(),
        65
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(&subscription.auth)
            .expect("b64")
            .len(),
        16
    );
    let vapid = Vapid::new();
    let payload = br#"{"title":"Hi","body":"there"}"#;

    let created = answer(
        client
            .post(&subscription.endpoint)
            .header("authorization", vapid.header(&push))
            .header("ttl", "60")
            .header("urgency", "high")
            .header("topic", "greeting_1")
            .header("content-encoding", "aes128gcm")
            .body(encrypt(payload, &subscription)),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.json);
    assert_eq!(created.version, reqwest::Version::HTTP_2);
    assert!(
        created
            .header("location")
            .is_some_and(|location| location.starts_with(&push.url()))
    );

    assert!(push.wait_for(1, Duration::from_secs(1)).await);
    let message = &push.received()[0];
    assert_eq!(message.subscription_id, subscription.id);
    assert_eq!(message.plaintext, payload);
    assert_eq!(
        message.json(),
        Some(json!({"title": "Hi", "body": "there"}))
    );
    assert_eq!(
        (
            message.ttl,
            message.urgency.as_deref(),
            message.topic.as_deref()
        ),
        (60, Some("high"), Some("greeting_1"))
    );
    assert_eq!(message.vapid_subject, "mailto:ops@example.com");
    assert_eq!(message.vapid_public_key, vapid.public_key());
}

#[tokio::test]
async fn refuses_what_a_push_service_refuses() {
    let (_ca, push, client) = start().await;
    let subscription = push.subscribe();
    let expired = push.subscribe();
    push.expire(&expired.id);
    let vapid = Vapid::new();
    let good = vapid.header(&push);
    let body = encrypt(b"hello", &subscription);
    let post = |endpoint: &str, authorization: Option<String>| {
        let mut request = client
            .post(endpoint)
            .header("ttl", "60")
            .header("content-encoding", "aes128gcm")
            .body(body.clone());
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request
    };
    let claims = |aud: &str, exp: u64, sub: &str| {
        vapid.header_with(json!({"aud": aud, "exp": exp, "sub": sub}))
    };
    // One signature character changed: still base64url, no longer the signature.
    let mut tampered = good.clone();
    let in_signature = good.find(", k=").expect("k parameter") - 2;
    let swapped = if &good[in_signature..=in_signature] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(in_signature..=in_signature, swapped);
    // Signed by one key, claiming another.
    let impostor = Vapid::new();
    let impersonating = impostor
        .header(&push)
        .replace(&impostor.public_key(), &vapid.public_key());
    let endpoint = subscription.endpoint.as_str();
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (
            post(&format!("{}/push/unknown", push.url()), Some(good.clone())),
            404,
        ),
        (post(&expired.endpoint, Some(good.clone())), 410),
        (post(endpoint, None), 401),
        (post(endpoint, Some(format!("WebPush {good}"))), 401),
        (post(endpoint, Some(tampered)), 401),
        (post(endpoint, Some(impersonating)), 401),
        (
            post(
                endpoint,
                Some(claims(
                    "https://elsewhere.example",
                    now() + 60,
                    "mailto:a@b",
                )),
            ),
            401,
        ),
        (
            post(
                endpoint,
                Some(claims(&push.url(), now() + 2 * 86_400, "mailto:a@b")),
            ),
            401,
        ),
        (
            post(endpoint, Some(claims(&push.url(), now() - 1, "mailto:a@b"))),
            401,
        ),
        (
            post(
                endpoint,
                Some(claims(&push.url(), now() + 60, "ops@example.com")),
            ),
            401,
        ),
        (
            client
                .post(endpoint)
                .header("authorization", &good)
                .header("content-encoding", "aes128gcm")
                .body(body.clone()),
            400,
        ),
        (
            client
                .post(endpoint)
                .header("authorization", &good)
                .header("ttl", "60")
                .header("content-encoding", "aesgcm")
                .body(body.clone()),
            415,
        ),
        (
            post(endpoint, Some(good.clone())).header("urgency", "urgent"),
            400,
        ),
        (
            post(endpoint, Some(good.clone())).header("topic", "t".repeat(33)),
            400,
        ),
        (
            post(endpoint, Some(good.clone())).header("topic", "not+base64url"),
            400,
        ),
        (
            post(endpoint, Some(good.clone()))
                .body(encrypt(b"for someone else", &push.subscribe())),
            400,
        ),
        (
            post(endpoint, Some(good.clone())).body(vec![0u8; 5000]),
            413,
        ),
    ];
    for (index, (request, status)) in cases.into_iter().enumerate() {
        let refused = answer(request).await;
        assert_eq!(refused.status, status, "case {index}: {}", refused.json);
    }
    assert_eq!(push.stats().common.accepted, 0);

    // A push without payload needs no content coding.
    let empty = answer(
        client
            .post(endpoint)
            .header("authorization", &good)
            .header("ttl", "0"),
    )
    .await;
    assert_eq!(empty.status, 201, "{}", empty.json);
    assert!(push.received()[0].plaintext.is_empty());
}

#[tokio::test]
async fn restricted_subscriptions_take_only_their_vapid_key() {
    let (_ca, push, client) = start().await;
    let vapid = Vapid::new();
    let subscription = push.subscribe_restricted(&vapid.public_key());
    let send = |authorization: String| {
        client
            .post(&subscription.endpoint)
            .header("authorization", authorization)
            .header("ttl", "60")
            .header("content-encoding", "aes128gcm")
            .body(encrypt(b"hello", &subscription))
    };
    assert_eq!(answer(send(Vapid::new().header(&push))).await.status, 403);
    assert_eq!(answer(send(vapid.header(&push))).await.status, 201);
}

#[tokio::test]
async fn injected_failures_and_subscribing_over_http() {
    let (_ca, push, client) = start().await;
    let created = answer(client.post(format!("{}/_fake/subscribe", push.url()))).await;
    assert_eq!(created.status, 201);
    let subscription = Subscription {
        id: created.json["id"].as_str().expect("id").to_string(),
        endpoint: created.json["endpoint"]
            .as_str()
            .expect("endpoint")
            .to_string(),
        p256dh: created.json["keys"]["p256dh"]
            .as_str()
            .expect("p256dh")
            .to_string(),
        auth: created.json["keys"]["auth"]
            .as_str()
            .expect("auth")
            .to_string(),
    };
    let vapid = Vapid::new();
    push.behaviour()
        .fail_next(1, Failure::status(429).retry_after(5));
    let send = || {
        client
            .post(&subscription.endpoint)
            .header("authorization", vapid.header(&push))
            .header("ttl", "60")
            .header("content-encoding", "aes128gcm")
            .body(encrypt(b"hello", &subscription))
    };
    let throttled = answer(send()).await;
    assert_eq!(
        (throttled.status, throttled.header("retry-after")),
        (429, Some("5"))
    );
    assert_eq!(answer(send()).await.status, 201);
    assert_eq!(push.received()[0].plaintext, b"hello");
}
