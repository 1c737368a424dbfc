use std::time::Duration;

use herald_fakes::{Failure, FakeHandle, FakeWebhook, TestCa};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::common::{answer, http1_client, http2_client, now};

const SECRET: &str = "whsec_test";

fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

fn delivery(
    client: &reqwest::Client,
    url: &str,
    signature: Option<String>,
    body: &[u8],
) -> reqwest::RequestBuilder {
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("herald-delivery", "01HZXDELIVERY")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("herald-signature", signature);
    }
    request
}

#[tokio::test]
async fn accepts_signed_deliveries_over_http2_and_http1() {
    let ca = TestCa::new();
    let webhook = FakeWebhook::start(&ca, SECRET).await.expect("starts");
    let body = json!({"id": "01HZXDELIVERY", "event": "notification.delivered"}).to_string();
    for (client, version) in [
        (http2_client(&ca), reqwest::Version::HTTP_2),
        (http1_client(&ca), reqwest::Version::HTTP_11),
    ] {
        let accepted = answer(delivery(
            &client,
            &webhook.endpoint_url(),
            Some(signature(SECRET, now(), body.as_bytes())),
            body.as_bytes(),
        ))
        .await;
        assert_eq!((accepted.status, accepted.version), (200, version));
    }
    assert!(webhook.wait_for(2, Duration::from_secs(1)).await);
    let received = &webhook.received()[0];
    assert_eq!(received.path, "/webhook");
    assert_eq!(received.delivery_id.as_deref(), Some("01HZXDELIVERY"));
    assert_eq!(received.body["event"], "notification.delivered");
    assert_eq!(received.raw_body, body.as_bytes());
    assert!(received.headers.contains_key("herald-signature"));
}

#[tokio::test]
async fn refuses_bad_signatures_stale_timestamps_and_dead_paths() {
    let ca = TestCa::new();
    let webhook = FakeWebhook::start(&ca, SECRET).await.expect("starts");
    let client = http2_client(&ca);
    let url = webhook.endpoint_url();
    let body = br#"{"id":"x"}"#;
    webhook.behaviour().mark_dead("/gone");
    let cases = [
        (delivery(&client, &url, None, body), 401),
        (
            delivery(&client, &url, Some(signature("wrong", now(), body)), body),
            401,
        ),
        (
            delivery(
                &client,
                &url,
                Some(signature(SECRET, now(), b"other body")),
                body,
            ),
            401,
        ),
        (
            delivery(
                &client,
                &url,
                Some(signature(SECRET, now() - 301, body)),
                body,
            ),
            400,
        ),
        (
            delivery(
                &client,
                &url,
                Some(signature(SECRET, now() + 301, body)),
                body,
            ),
            400,
        ),
        (
            delivery(
                &client,
                &format!("{}/gone", webhook.url()),
                Some(signature(SECRET, now(), body)),
                body,
            ),
            410,
        ),
    ];
    for (index, (request, status)) in cases.into_iter().enumerate() {
        assert_eq!(answer(request).await.status, status, "case {index}");
    }

    webhook
        .behaviour()
        .fail_next(1, Failure::status(500).retry_after(2));
    let failed = answer(delivery(
        &client,
        &url,
        Some(signature(SECRET, now(), body)),
        body,
    ))
    .await;
    assert_eq!(
        (failed.status, failed.header("retry-after")),
        (500, Some("2"))
    );
    let stats = webhook.stats();
    assert_eq!(stats.common.accepted, 0);
    assert_eq!(stats.common.rejected.get(&401), Some(&3));
}
