use std::time::Duration;

use herald_fakes::keys::TEST_RSA_PRIVATE_KEY_PEM;
use herald_fakes::{Failure, FakeFcm, FakeHandle, FcmConfig, TestCa};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::{Answer, answer, http2_client, now};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

async fn start() -> (TestCa, FakeFcm, reqwest::Client) {
    let ca = TestCa::new();
    let fcm = FakeFcm::start(&ca, FcmConfig::default())
        .await
        .expect("starts");
    let client = http2_client(&ca);
    (ca, fcm, client)
}

fn assertion(claims: Value) -> String {
    let key = EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE_KEY_PEM.as_bytes()).expect("RSA key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).expect("signs")
}

fn good_claims(fcm: &FakeFcm) -> Value {
    let iat = now();
    json!({
        "iss": FcmConfig::default().client_email,
        "scope": SCOPE,
        "aud": fcm.token_url(),
        "iat": iat,
        "exp": iat + 3600,
    })
}

async fn token_request(client: &reqwest::Client, fcm: &FakeFcm, assertion: &str) -> Answer {
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    );
    answer(
        client
            .post(fcm.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
    .await
}

async fn send(client: &reqwest::Client, fcm: &FakeFcm, token: &str, body: Value) -> Answer {
    answer(client.post(fcm.send_url()).bearer_auth(token).json(&body)).await
}

#[tokio::test]
async fn exchanges_a_signed_assertion_and_sends_over_http2() {
    let (_ca, fcm, client) = start().await;

    let granted = token_request(&client, &fcm, &assertion(good_claims(&fcm))).await;
    assert_eq!(granted.status, 200, "{}", granted.json);
    assert_eq!(granted.version, reqwest::Version::HTTP_2);
    assert_eq!(granted.json["token_type"], "Bearer");
    assert_eq!(granted.json["expires_in"], 3599);
    let access_token = granted.json["access_token"].as_str().expect("a token");

    let message = json!({"token": "device-1", "notification": {"title": "Hi", "body": "there"},
                         "data": {"k": "v"}, "android": {"priority": "HIGH"}});
    let sent = send(&client, &fcm, access_token, json!({"message": message})).await;
    assert_eq!(sent.status, 200, "{}", sent.json);
    assert_eq!(sent.version, reqwest::Version::HTTP_2);
    let name = sent.json["name"].as_str().expect("a name");
    assert!(name.starts_with("projects/herald-test/messages/"), "{name}");

    assert!(fcm.wait_for(1, Duration::from_secs(1)).await);
    let received = fcm.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].token, "device-1");
    assert_eq!(received[0].message, message);
    assert!(!received[0].validate_only);
    let stats = fcm.stats();
    assert_eq!((stats.common.accepted, stats.access_tokens_issued), (1, 1));
}

#[tokio::test]
async fn token_endpoint_refuses_bad_assertions() {
    let (_ca, fcm, client) = start().await;
    let base = good_claims(&fcm);
    let with = |field: &str, value: Value| {
        let mut claims = base.clone();
        claims[field] = value;
        assertion(claims)
    };
    // One signature character changed: still base64url, no longer the signature.
    let mut tampered = assertion(base.clone());
    let in_signature = tampered.rfind('.').expect("three parts") + 10;
    let swapped = if &tampered[in_signature..=in_signature] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(in_signature..=in_signature, swapped);
    let cases = [
        (tampered, "invalid_grant", "Invalid JWT Signature."),
        (
            with("iss", json!("someone@else")),
            "invalid_grant",
            "Invalid email or User ID",
        ),
        (
            with("aud", json!("https://elsewhere/token")),
            "invalid_grant",
            "audience",
        ),
        (
            with("scope", json!("https://www.googleapis.com/auth/drive")),
            "invalid_scope",
            "scope",
        ),
        (
            with("exp", json!(now() + 7200)),
            "invalid_grant",
            "short-lived",
        ),
        (
            with("exp", json!(now() - 10)),
            "invalid_grant",
            "short-lived",
        ),
        (
            with("iat", json!(now() + 600)),
            "invalid_grant",
            "short-lived",
        ),
        ("not-a-jwt".to_string(), "invalid_grant", "Invalid JWT"),
    ];
    for (assertion, error, description) in cases {
        let refused = token_request(&client, &fcm, &assertion).await;
        assert_eq!(refused.status, 400, "{}", refused.json);
        assert_eq!(refused.json["error"], error, "{}", refused.json);
        let text = refused.json["error_description"]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains(description), "{text} lacks {description}");
    }

    let wrong_grant = answer(
        client
            .post(fcm.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=password&assertion=x"),
    )
    .await;
    assert_eq!(wrong_grant.json["error"], "unsupported_grant_type");
    assert_eq!(fcm.stats().access_tokens_issued, 0);
}

#[tokio::test]
async fn send_refuses_bad_credentials_and_revoked_tokens() {
    let (_ca, fcm, client) = start().await;
    let message = json!({"message": {"token": "device-1"}});

    let anonymous = answer(client.post(fcm.send_url()).json(&message)).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json["error"]["status"], "UNAUTHENTICATED");
    assert!(anonymous.header("www-authenticate").is_some());

    let unknown = send(&client, &fcm, "ya29.made-up", message.clone()).await;
    assert_eq!(unknown.status, 401);
    let text = unknown.json["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(text.starts_with("Request had invalid authentication credentials."));

    let token = fcm.issue_access_token();
    assert_eq!(
        send(&client, &fcm, &token, message.clone()).await.status,
        200
    );
    fcm.revoke_access_tokens();
    assert_eq!(
        send(&client, &fcm, &token, message.clone()).await.status,
        401
    );

    let other_project = format!("{}/v1/projects/not-mine/messages:send", fcm.url());
    let token = fcm.issue_access_token();
    let forbidden = answer(
        client
            .post(other_project)
            .bearer_auth(&token)
            .json(&message),
    )
    .await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.json["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(fcm.stats().common.rejected.get(&401), Some(&3));
}

#[tokio::test]
async fn send_validates_messages_and_knows_dead_and_invalid_tokens() {
    let (_ca, fcm, client) = start().await;
    let token = fcm.issue_access_token();
    fcm.behaviour().mark_dead("dead-device");
    fcm.behaviour().mark_invalid("bad-device");

    let bad_data = send(
        &client,
        &fcm,
        &token,
        json!({"message": {"token": "d", "data": {"n": 1}}}),
    )
    .await;
    assert_eq!(bad_data.status, 400);
    assert_eq!(bad_data.json["error"]["status"], "INVALID_ARGUMENT");
    let field = &bad_data.json["error"]["details"][0]["fieldViolations"][0]["field"];
    assert_eq!(field, "message.data[0].value");

    let no_token = send(
        &client,
        &fcm,
        &token,
        json!({"message": {"data": {"a": "b"}}}),
    )
    .await;
    assert_eq!(no_token.status, 400);
    assert_eq!(no_token.json["error"]["status"], "INVALID_ARGUMENT");

    let invalid = send(
        &client,
        &fcm,
        &token,
        json!({"message": {"token": "bad-device"}}),
    )
    .await;
    assert_eq!(invalid.status, 400);
    assert_eq!(
        invalid.json["error"]["message"],
        "The registration token is not a valid FCM registration token"
    );
    assert_eq!(
        invalid.json["error"]["details"][0]["errorCode"],
        "INVALID_ARGUMENT"
    );

    let dead = send(
        &client,
        &fcm,
        &token,
        json!({"message": {"token": "dead-device"}}),
    )
    .await;
    assert_eq!(dead.status, 404);
    assert_eq!(
        dead.json,
        json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}})
    );

    let dry_run = send(
        &client,
        &fcm,
        &token,
        json!({"validate_only": true, "message": {"token": "d"}}),
    )
    .await;
    assert_eq!(dry_run.status, 200);
    let stats = fcm.stats();
    assert_eq!((stats.common.accepted, stats.validate_only), (1, 1));
    assert!(fcm.received()[0].validate_only);
    assert_eq!(stats.common.rejected.get(&400), Some(&3));
}

#[tokio::test]
async fn injected_failures_use_googles_shape_and_retry_after() {
    let (_ca, fcm, client) = start().await;
    let token = fcm.issue_access_token();
    let message = json!({"message": {"token": "device-1"}});

    fcm.behaviour()
        .fail_next(2, Failure::status(503).retry_after(7));
    for _ in 0..2 {
        let unavailable = send(&client, &fcm, &token, message.clone()).await;
        assert_eq!(unavailable.status, 503);
        assert_eq!(unavailable.header("retry-after"), Some("7"));
        assert_eq!(unavailable.json["error"]["status"], "UNAVAILABLE");
    }
    fcm.behaviour()
        .fail_next(1, Failure::status(429).retry_after(1));
    let throttled = send(&client, &fcm, &token, message.clone()).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(
        throttled.json["error"]["details"][0]["errorCode"],
        "QUOTA_EXCEEDED"
    );
    fcm.behaviour().fail_next(1, Failure::status(500));
    assert_eq!(
        send(&client, &fcm, &token, message.clone()).await.json["error"]["status"],
        "INTERNAL"
    );

    assert_eq!(send(&client, &fcm, &token, message).await.status, 200);
}

#[tokio::test]
async fn static_token_and_recording_off_for_load_generators() {
    let ca = TestCa::new();
    let config = FcmConfig {
        static_access_token: Some("bench-token".into()),
        ..FcmConfig::default()
    };
    let fcm = FakeFcm::start(&ca, config).await.expect("starts");
    fcm.set_recording(false);
    let client = http2_client(&ca);
    let mut sends = tokio::task::JoinSet::new();
    for index in 0..20 {
        let request = client
            .post(fcm.send_url())
            .bearer_auth("bench-token")
            .json(&json!({"message": {"token": format!("d{index}")}}));
        sends.spawn(async move { request.send().await.expect("sent").status().as_u16() });
    }
    while let Some(status) = sends.join_next().await {
        assert_eq!(status.expect("joins"), 200);
    }
    assert!(fcm.wait_for(20, Duration::from_secs(1)).await);
    assert!(!fcm.wait_for(21, Duration::from_millis(20)).await);
    assert!(fcm.received().is_empty());
}

#[tokio::test]
async fn service_account_json_is_usable_as_is() {
    let (_ca, fcm, client) = start().await;
    let account: Value = serde_json::from_str(&fcm.service_account_json()).expect("JSON");
    assert_eq!(account["type"], "service_account");
    assert_eq!(account["project_id"], "herald-test");
    assert_eq!(account["token_uri"], fcm.token_url());
    let key = EncodingKey::from_rsa_pem(account["private_key"].as_str().expect("key").as_bytes())
        .expect("PEM");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = account["private_key_id"].as_str().map(str::to_string);
    let iat = now();
    let claims = json!({"iss": account["client_email"], "scope": SCOPE,
                        "aud": account["token_uri"], "iat": iat, "exp": iat + 3600});
    let jwt = jsonwebtoken::encode(&header, &claims, &key).expect("signs");
    assert_eq!(token_request(&client, &fcm, &jwt).await.status, 200);
}
