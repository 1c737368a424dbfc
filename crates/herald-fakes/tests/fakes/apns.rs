use std::time::Duration;

use herald_fakes::{ApnsConfig, Failure, FakeApns, FakeHandle, TestCa};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};

use crate::common::{Answer, answer, http1_client, http2_client, now};

const TOPIC: &str = "com.example.herald";
const DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

async fn start_with(config: ApnsConfig) -> (TestCa, FakeApns, reqwest::Client) {
    let ca = TestCa::new();
    let apns = FakeApns::start(&ca, config).await.expect("starts");
    let client = http2_client(&ca);
    (ca, apns, client)
}

async fn start() -> (TestCa, FakeApns, reqwest::Client) {
    start_with(ApnsConfig::default()).await
}

/// A provider token signed with `key_pem`.
fn provider_token_signed_with(key_pem: &str, key_id: &str, team_id: &str, iat: u64) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key_id.to_string());
    let key = EncodingKey::from_ec_pem(key_pem.as_bytes()).expect("P-256 PKCS#8 key");
    jsonwebtoken::encode(&header, &json!({"iss": team_id, "iat": iat}), &key).expect("signs")
}

fn provider_token(iat: u64) -> String {
    let config = ApnsConfig::default();
    provider_token_signed_with(
        FakeApns::signing_key_pem(),
        &config.key_id,
        &config.team_id,
        iat,
    )
}

fn push(
    client: &reqwest::Client,
    apns: &FakeApns,
    device: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{}/3/device/{device}", apns.url()))
        .header("authorization", format!("bearer {token}"))
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "alert")
}

fn alert() -> Value {
    json!({"aps": {"alert": {"title": "Hi", "body": "there"}}})
}

#[tokio::test]
async fn accepts_a_notification_over_http2_and_echoes_apns_id() {
    let (_ca, apns, client) = start().await;
    let token = provider_token(now());
    let apns_id = "123E4567-E89B-12D3-A456-42665544000A";
    let accepted = answer(
        push(&client, &apns, DEVICE, &token)
            .header("apns-id", apns_id)
            .header("apns-priority", "10")
            .header("apns-expiration", "0")
            .header("apns-collapse-id", "greeting")
            .json(&alert()),
    )
    .await;
    assert_eq!(accepted.status, 200, "{}", accepted.json);
    assert_eq!(accepted.version, reqwest::Version::HTTP_2);
    assert_eq!(accepted.header("apns-id"), Some(apns_id));

    let generated = answer(push(&client, &apns, DEVICE, &token).json(&alert())).await;
    assert_eq!(generated.status, 200);
    let generated_id = generated.header("apns-id").expect("an apns-id");
    assert_eq!(generated_id.len(), 36);

    assert!(apns.wait_for(2, Duration::from_secs(1)).await);
    let received = apns.received();
    assert_eq!(received[0].device_token, DEVICE);
    assert_eq!(received[0].apns_id, apns_id);
    assert_eq!(received[0].topic, TOPIC);
    assert_eq!(received[0].push_type, "alert");
    assert_eq!(received[0].priority, Some(10));
    assert_eq!(received[0].expiration, Some(0));
    assert_eq!(received[0].collapse_id.as_deref(), Some("greeting"));
    assert_eq!(received[0].payload, alert());
    assert_eq!(received[1].apns_id, generated_id);
    assert_eq!(apns.provider_tokens().len(), 1, "one token, verified once");
}

#[tokio::test]
async fn speaks_http2_only() {
    let (ca, apns, _client) = start().await;
    let http1 = http1_client(&ca);
    let result = http1
        .post(format!("{}/3/device/{DEVICE}", apns.url()))
        .send()
        .await;
    assert!(
        result.is_err(),
        "an HTTP/1.1-only client must not get through"
    );
}

#[tokio::test]
async fn refuses_missing_bad_and_expired_provider_tokens() {
    let (_ca, apns, client) = start().await;
    let config = ApnsConfig::default();
    let other_key = p256::SecretKey::from_slice(&[7u8; 32])
        .expect("scalar")
        .to_pkcs8_pem(Default::default())
        .expect("PEM");

    let cases = [
        (None, 403, "MissingProviderToken"),
        (Some("not.a.jwt".to_string()), 403, "InvalidProviderToken"),
        (
            Some(provider_token_signed_with(
                &other_key,
                &config.key_id,
                &config.team_id,
                now(),
            )),
            403,
            "InvalidProviderToken",
        ),
        (
            Some(provider_token_signed_with(
                FakeApns::signing_key_pem(),
                "OTHERKEYID",
                &config.team_id,
                now(),
            )),
            403,
            "InvalidProviderToken",
        ),
        (
            Some(provider_token_signed_with(
                FakeApns::signing_key_pem(),
                &config.key_id,
                "OTHERTEAM",
                now(),
            )),
            403,
            "InvalidProviderToken",
        ),
        (
            Some(provider_token(now() - 3601)),
            403,
            "ExpiredProviderToken",
        ),
    ];
    for (token, status, reason) in cases {
        let mut request = client
            .post(format!("{}/3/device/{DEVICE}", apns.url()))
            .header("apns-topic", TOPIC)
            .header("apns-push-type", "alert")
            .json(&alert());
        if let Some(token) = token {
            request = request.header("authorization", format!("bearer {token}"));
        }
        let refused = answer(request).await;
        assert_eq!(
            (refused.status, refused.json["reason"].as_str()),
            (status, Some(reason))
        );
    }
    assert!(apns.provider_tokens().is_empty());
}

#[tokio::test]
async fn new_provider_tokens_within_twenty_minutes_are_too_many_updates() {
    let (_ca, apns, client) = start().await;
    let first = provider_token(now() - 60);
    assert_eq!(
        answer(push(&client, &apns, DEVICE, &first).json(&alert()))
            .await
            .status,
        200
    );
    let second = provider_token(now());
    let refused = answer(push(&client, &apns, DEVICE, &second).json(&alert())).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json["reason"], "TooManyProviderTokenUpdates");
    // The first token stays good.
    assert_eq!(
        answer(push(&client, &apns, DEVICE, &first).json(&alert()))
            .await
            .status,
        200
    );

    let (_ca, relaxed, client) = start_with(ApnsConfig {
        min_provider_token_interval: Duration::ZERO,
        ..ApnsConfig::default()
    })
    .await;
    for token in [provider_token(now() - 60), provider_token(now())] {
        assert_eq!(
            answer(push(&client, &relaxed, DEVICE, &token).json(&alert()))
                .await
                .status,
            200
        );
    }
    let seen = relaxed.provider_tokens();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].issued_at < seen[1].issued_at);
}

#[tokio::test]
async fn validates_headers_device_tokens_and_payloads() {
    let (_ca, apns, client) = start().await;
    let token = provider_token(now());
    apns.behaviour().mark_invalid("00ff");
    apns.behaviour().mark_dead("dead00");
    let url = |device: &str| format!("{}/3/device/{device}", apns.url());
    let bare = |device: &str| {
        client
            .post(url(device))
            .header("authorization", format!("bearer {token}"))
    };
    let big = json!({"aps": {"alert": "x".repeat(5000)}});
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            bare(DEVICE)
                .header("apns-push-type", "alert")
                .json(&alert()),
            400,
            "MissingTopic",
        ),
        (
            bare(DEVICE)
                .header("apns-topic", "com.other")
                .header("apns-push-type", "alert")
                .json(&alert()),
            400,
            "TopicDisallowed",
        ),
        (
            bare(DEVICE).header("apns-topic", TOPIC).json(&alert()),
            400,
            "InvalidPushType",
        ),
        (
            bare(DEVICE)
                .header("apns-topic", TOPIC)
                .header("apns-push-type", "shout")
                .json(&alert()),
            400,
            "InvalidPushType",
        ),
        (
            push(&client, &apns, DEVICE, &token)
                .header("apns-priority", "7")
                .json(&alert()),
            400,
            "BadPriority",
        ),
        (
            push(&client, &apns, DEVICE, &token)
                .header("apns-expiration", "soon")
                .json(&alert()),
            400,
            "BadExpirationDate",
        ),
        (
            push(&client, &apns, DEVICE, &token)
                .header("apns-collapse-id", "c".repeat(65))
                .json(&alert()),
            400,
            "BadCollapseId",
        ),
        (
            push(&client, &apns, DEVICE, &token)
                .header("apns-id", "not-a-uuid")
                .json(&alert()),
            400,
            "BadMessageId",
        ),
        (
            push(&client, &apns, "not-hex", &token).json(&alert()),
            400,
            "BadDeviceToken",
        ),
        (
            push(&client, &apns, "00ff", &token).json(&alert()),
            400,
            "BadDeviceToken",
        ),
        (push(&client, &apns, DEVICE, &token), 400, "PayloadEmpty"),
        (
            push(&client, &apns, DEVICE, &token).json(&json!({"alert": "no aps"})),
            400,
            "PayloadEmpty",
        ),
        (
            push(&client, &apns, DEVICE, &token).json(&big),
            413,
            "PayloadTooLarge",
        ),
        (client.get(url(DEVICE)), 405, "MethodNotAllowed"),
        (
            client.post(format!("{}/3/elsewhere", apns.url())),
            404,
            "BadPath",
        ),
    ];
    for (request, status, reason) in cases {
        let refused = answer(request).await;
        assert_eq!(
            (refused.status, refused.json["reason"].as_str()),
            (status, Some(reason)),
            "expected {reason}"
        );
        assert!(refused.header("apns-id").is_some());
    }

    let gone = answer(push(&client, &apns, "dead00", &token).json(&alert())).await;
    assert_eq!(gone.status, 410);
    assert_eq!(gone.json["reason"], "Unregistered");
    assert!(
        gone.json["timestamp"]
            .as_u64()
            .is_some_and(|millis| millis >= now() * 1000)
    );

    let voip = answer(
        client
            .post(url(DEVICE))
            .header("authorization", format!("bearer {token}"))
            .header("apns-topic", format!("{TOPIC}.voip"))
            .header("apns-push-type", "voip")
            .header("apns-priority", "5")
            .json(&alert()),
    )
    .await;
    assert_eq!(voip.status, 200, "{}", voip.json);
    assert_eq!(apns.stats().common.accepted, 1);
}

#[tokio::test]
async fn injected_failures_use_apple_reasons() {
    let (_ca, apns, client) = start().await;
    let token = provider_token(now());
    for (status, reason) in [
        (429, "TooManyRequests"),
        (500, "InternalServerError"),
        (503, "ServiceUnavailable"),
    ] {
        apns.behaviour()
            .fail_next(1, Failure::status(status).retry_after(3));
        let refused: Answer = answer(push(&client, &apns, DEVICE, &token).json(&alert())).await;
        assert_eq!(
            (refused.status, refused.json["reason"].as_str()),
            (status, Some(reason))
        );
        assert_eq!(refused.header("retry-after"), Some("3"));
    }
    assert_eq!(
        answer(push(&client, &apns, DEVICE, &token).json(&alert()))
            .await
            .status,
        200
    );
}
