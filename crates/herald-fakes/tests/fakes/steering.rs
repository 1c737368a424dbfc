//! The `/_fake/...` endpoints a staging user drives a running fake with.

use herald_fakes::{FakeFcm, FakeHandle, FcmConfig, TestCa};
use serde_json::json;

use crate::common::{answer, http2_client};

#[tokio::test]
async fn behaviour_and_stats_over_http() {
    let ca = TestCa::new();
    let fcm = FakeFcm::start(&ca, FcmConfig::default())
        .await
        .expect("starts");
    let client = http2_client(&ca);
    let token = fcm.issue_access_token();
    let send = |device: &str| {
        client
            .post(fcm.send_url())
            .bearer_auth(&token)
            .json(&json!({"message": {"token": device}}))
    };

    let settings = answer(
        client
            .post(format!("{}/_fake/behaviour", fcm.url()))
            .json(&json!({
                "fail_next": 1, "status": 503, "retry_after": 2, "delay_ms": 0,
                "dead_tokens": ["dead-device"], "recording": false,
            })),
    )
    .await;
    assert_eq!(settings.status, 200, "{}", settings.json);
    assert_eq!(settings.json["failures_left"], 1);
    assert_eq!(settings.json["dead_tokens"], json!(["dead-device"]));

    let failed = answer(send("device-1")).await;
    assert_eq!(
        (failed.status, failed.header("retry-after")),
        (503, Some("2"))
    );
    assert_eq!(answer(send("dead-device")).await.status, 404);
    assert_eq!(answer(send("device-1")).await.status, 200);
    assert!(fcm.received().is_empty(), "recording was turned off");

    let stats = answer(client.get(format!("{}/_fake/stats", fcm.url()))).await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.json["accepted"], 1);
    assert_eq!(stats.json["rejected"], json!({"404": 1, "503": 1}));
    assert_eq!(stats.json["access_tokens_issued"], 1);
    assert_eq!(stats.json["recording"], false);

    let typo = answer(
        client
            .post(format!("{}/_fake/behaviour", fcm.url()))
            .json(&json!({"fail_nxt": 1})),
    )
    .await;
    assert_eq!(typo.status, 400);
    let bad_status = answer(
        client
            .post(format!("{}/_fake/behaviour", fcm.url()))
            .json(&json!({"fail_next": 1, "status": 42})),
    )
    .await;
    assert_eq!(bad_status.status, 400);

    let reset = answer(
        client
            .post(format!("{}/_fake/behaviour", fcm.url()))
            .json(&json!({"reset": true})),
    )
    .await;
    assert_eq!(reset.json["dead_tokens"], json!([]));
    assert_eq!(answer(send("dead-device")).await.status, 200);

    let account = answer(client.get(format!("{}/_fake/service-account", fcm.url()))).await;
    assert_eq!(account.json["token_uri"], fcm.token_url());
}
