//! Push delivery end to end: the real `herald` binary sends to fake FCM, APNs, Web Push and
//! webhook receivers that speak the real protocols over TLS and HTTP/2 with their own CA.

mod common;

use std::time::Duration;

use common::push_fakes::*;
use common::*;
use herald_fakes::{Failure, FakeHandle};
use herald_testkit::{RedisServer, ServerOptions};
use serde_json::{Value, json};

fn push_done(report: &Value, field: &str, n: u64) -> bool {
    report["push"][field] == n && report["push"]["pending"] == 0
}

async fn fcm_delivers_with_the_documented_message(server: &Server, fakes: &Fakes) {
    let device = register(
        server,
        "alice",
        json!({"platform": "fcm", "token": "fcm-alice-1"}),
    )
    .await;
    assert_eq!(device["platform"], "fcm");
    let id = server
        .publish_ok(json!({
            "to": {"users": ["alice", "nobody"]}, "title": "Goal!", "body": "2:1",
            "data": {"match": 7, "team": "home"}, "priority": "high", "ttl_seconds": 600,
            "collapse_key": "score", "channels": ["inbox", "push"]
        }))
        .await;
    let report = report_until(server, &id, "one FCM send", |r| push_done(r, "sent", 1)).await;
    assert_eq!(
        report["push"]["queued"], 1,
        "only alice has a device: {report}"
    );
    let received = fakes.fcm.received();
    assert_eq!(received.len(), 1);
    let message = &received[0].message;
    assert_eq!(received[0].token, "fcm-alice-1");
    assert!(!received[0].validate_only);
    assert_eq!(
        message["notification"],
        json!({"title": "Goal!", "body": "2:1"})
    );
    assert_eq!(message["data"]["match"], "7", "data values are strings");
    assert_eq!(message["data"]["herald_id"], id);
    assert_eq!(message["android"]["priority"], "HIGH");
    assert_eq!(message["android"]["collapse_key"], "score");
    assert!(message["android"]["ttl"].as_str().unwrap().ends_with('s'));
    assert_eq!(message["apns"]["headers"]["apns-collapse-id"], "score");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_send_report_and_the_device_api() {
    let fakes = Fakes::start().await;
    let server = fakes.herald(&[], "").await;
    fcm_delivers_with_the_documented_message(&server, &fakes).await;

    // The device API: list, the admin twin, move on re-registration, delete.
    let alice = server.token("alice");
    let (_, mine) = server.get_as("/v1/me/devices", &alice).await;
    assert_eq!(mine["devices"].as_array().unwrap().len(), 1);
    let id = mine["devices"][0]["id"].as_str().unwrap().to_owned();
    let (_, admin) = server.get_as("/v1/users/alice/devices", API_KEY).await;
    assert_eq!(admin, mine);
    let moved = register_token(&server, "bob", "fcm", "fcm-alice-1").await;
    assert_eq!(
        moved["id"],
        id.as_str(),
        "the same token is the same device"
    );
    let (_, mine) = server.get_as("/v1/me/devices", &alice).await;
    assert_eq!(mine["devices"], json!([]), "the phone changed hands");
    let (status, _) = server
        .delete_as(&format!("/v1/me/devices/{id}"), &alice)
        .await;
    assert_eq!(status, 404, "alice cannot remove bob's device");
    let (status, _) = server
        .delete_as(&format!("/v1/me/devices/{id}"), &server.token("bob"))
        .await;
    assert_eq!(status, 204);
    let (_, bobs) = server.get_as("/v1/users/bob/devices", API_KEY).await;
    assert_eq!(bobs["devices"], json!([]));

    // Bad registrations change nothing and say why.
    let response = server
        .http
        .post(server.url("/v1/me/devices"))
        .bearer_auth(&alice)
        .json(&json!({"platform": "apns", "token": "not hex"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 422).await;
    assert_eq!(problem["errors"][0]["field"], "token");
    let (status, _) = server
        .post_as(
            "/v1/me/devices",
            API_KEY,
            Some(json!({"platform": "fcm", "token": "t"})),
        )
        .await;
    assert_eq!(status, 403, "an API key is not a user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_on_redis_works_the_same() {
    let redis = RedisServer::start_with(ServerOptions::default().append_only(false));
    let fakes = Fakes::start().await;
    let server = fakes
        .herald(&[("HERALD_REDIS_URL", &redis.url())], "")
        .await;
    fcm_delivers_with_the_documented_message(&server, &fakes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_retries_prunes_and_refreshes_its_token() {
    let fakes = Fakes::start().await;
    let server = fakes.herald(&[], "").await;
    register_token(&server, "carol", "fcm", "fcm-carol").await;
    register_token(&server, "dave", "fcm", "fcm-dave-dead").await;
    fakes.fcm.behaviour().mark_dead("fcm-dave-dead");
    // Two answers of 503 with Retry-After: 0, then success.
    fakes
        .fcm
        .behaviour()
        .fail_next(2, Failure::status(503).retry_after(0));
    let id = server
        .publish_ok(json!({"to": {"users": ["carol", "dave"]}, "title": "t", "channels": ["push"]}))
        .await;
    let report = report_until(&server, &id, "one sent, one pruned", |r| {
        r["push"]["sent"] == 1 && r["push"]["pruned"] == 1 && r["push"]["pending"] == 0
    })
    .await;
    assert_eq!(report["push"]["failed"], 0);
    let (_, daves) = server.get_as("/v1/users/dave/devices", API_KEY).await;
    assert_eq!(
        daves["devices"],
        json!([]),
        "an UNREGISTERED token is removed"
    );
    assert!(
        fakes
            .fcm
            .stats()
            .common
            .rejected
            .get(&503)
            .copied()
            .unwrap_or(0)
            >= 1
    );

    // A revoked access token: FCM answers 401, Herald fetches a new one once and sends.
    let issued = fakes.fcm.stats().access_tokens_issued;
    fakes.fcm.revoke_access_tokens();
    let id = server
        .publish_ok(json!({"to": {"users": ["carol"]}, "title": "again", "channels": ["push"]}))
        .await;
    report_until(&server, &id, "sent after a token refresh", |r| {
        push_done(r, "sent", 1)
    })
    .await;
    assert_eq!(fakes.fcm.stats().access_tokens_issued, issued + 1);

    // Failing for good: attempts run out, the send is dead-lettered with the reason.
    fakes.fcm.behaviour().fail_next(100, Failure::status(500));
    let id = server
        .publish_ok(json!({"to": {"users": ["carol"]}, "title": "doomed", "channels": ["push"]}))
        .await;
    report_until(&server, &id, "failed after 3 attempts", |r| {
        push_done(r, "failed", 1)
    })
    .await;
    let (_, letters) = server.get_as("/v1/dead-letters", API_KEY).await;
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["notification"], id.as_str());
    assert_eq!(letter["user"], "carol");
    assert_eq!(letter["attempts"], 3);
    assert!(
        letter["reason"].as_str().unwrap().contains("FCM 500"),
        "{letter}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_sends_with_headers_and_prunes_dead_tokens() {
    let fakes = Fakes::start().await;
    let server = fakes.herald(&[], "").await;
    register_token(&server, "erin", "apns", "a1b2c3d4").await;
    register_token(&server, "erin", "apns", "dead0001").await;
    fakes.apns.behaviour().mark_dead("dead0001");
    // One 503 first: the send is retried.
    fakes.apns.behaviour().fail_next(1, Failure::status(503));
    let id = server
        .publish_ok(json!({
            "to": {"users": ["erin"]}, "title": "Hi", "body": "there", "category": "chat",
            "data": {"thread": 9}, "priority": "low", "ttl_seconds": 60, "collapse_key": "c1",
            "channels": ["push"]
        }))
        .await;
    report_until(&server, &id, "one sent, one pruned", |r| {
        r["push"]["sent"] == 1 && r["push"]["pruned"] == 1 && r["push"]["pending"] == 0
    })
    .await;
    let received = fakes.apns.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.device_token, "a1b2c3d4");
    assert_eq!(sent.topic, "com.example.herald");
    assert_eq!(sent.push_type, "alert");
    assert_eq!(sent.priority, Some(5));
    assert_eq!(sent.collapse_id.as_deref(), Some("c1"));
    assert!(sent.expiration.is_some());
    assert_eq!(
        sent.payload["aps"]["alert"],
        json!({"title": "Hi", "body": "there"})
    );
    assert_eq!(sent.payload["thread"], 9);
    assert_eq!(sent.payload["herald_id"], id.as_str());
    assert_eq!(
        fakes.apns.provider_tokens().len(),
        1,
        "one provider token, reused"
    );
    let (_, devices) = server.get_as("/v1/users/erin/devices", API_KEY).await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_push_payload_is_decryptable_by_the_subscriber() {
    let fakes = Fakes::start().await;
    let server = fakes.herald(&[], "").await;
    let subscription = fakes.webpush.subscribe();
    let mut device = subscription.to_json();
    device["platform"] = json!("webpush");
    register(&server, "frank", device).await;
    let gone = fakes.webpush.subscribe();
    let mut device = gone.to_json();
    device["platform"] = json!("webpush");
    register(&server, "frank", device).await;
    fakes.webpush.expire(&gone.id);
    // One 429 first: the send is retried.
    fakes
        .webpush
        .behaviour()
        .fail_next(1, Failure::status(429).retry_after(0));
    let id = server
        .publish_ok(json!({
            "to": {"users": ["frank"]}, "title": "Encrypted", "body": "only frank reads this",
            "priority": "high", "collapse_key": "news", "channels": ["push"]
        }))
        .await;
    report_until(&server, &id, "one sent, one pruned", |r| {
        r["push"]["sent"] == 1 && r["push"]["pruned"] == 1 && r["push"]["pending"] == 0
    })
    .await;
    let received = fakes.webpush.received();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(message.subscription_id, subscription.id);
    let payload = message.json().expect("the decrypted payload is JSON");
    assert_eq!(payload["title"], "Encrypted");
    assert_eq!(payload["body"], "only frank reads this");
    assert_eq!(payload["id"], id.as_str());
    assert_eq!(message.urgency.as_deref(), Some("high"));
    assert_eq!(message.topic.as_deref(), Some("news"));
    assert_eq!(message.vapid_subject, "mailto:push-test@example.com");
    assert_eq!(fakes.webpush.stats().common.rejected.get(&429), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_and_retried() {
    let fakes = Fakes::start().await;
    let server = fakes.herald(&[], "").await;
    fakes.webhook.behaviour().fail_next(1, Failure::status(503));
    let id = server
        .publish_ok(
            json!({"to": {"topic": "deploys"}, "title": "Deployed", "channels": ["webhook"]}),
        )
        .await;
    let report = report_until(&server, &id, "the webhook sent", |r| {
        r["webhook"]["sent"] == 1 && r["webhook"]["pending"] == 0
    })
    .await;
    assert!(report.get("push").is_none(), "no push channel: {report}");
    let received = fakes.webhook.received();
    assert_eq!(
        received.len(),
        1,
        "the receiver accepted it once (it checked the signature)"
    );
    assert_eq!(received[0].delivery_id.as_deref(), Some(id.as_str()));
    assert_eq!(received[0].body["title"], "Deployed");
    assert_eq!(received[0].body["id"], id.as_str());
    assert_eq!(fakes.webhook.stats().common.rejected.get(&503), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_validates_with_fcm_and_calls_nobody_else() {
    let fakes = Fakes::start().await;
    let server = fakes.herald(&[], "").await;
    register_token(&server, "gina", "fcm", "fcm-gina").await;
    register_token(&server, "gina", "apns", "abcdef01").await;
    let id = server
        .publish_ok(json!({"to": {"users": ["gina"]}, "title": "rehearsal", "dry_run": true}))
        .await;
    let report = report_until(&server, &id, "dry-run counted", |r| {
        push_done(r, "dry_run", 2) && r["webhook"]["dry_run"] == 1
    })
    .await;
    assert_eq!(report["push"]["sent"], 0);
    assert_eq!(
        fakes.fcm.stats().validate_only,
        1,
        "FCM validated the message"
    );
    assert!(fakes.fcm.received()[0].validate_only);
    assert_eq!(fakes.apns.stats().common.accepted, 0);
    assert_eq!(fakes.webhook.stats().common.accepted, 0);
    let inbox = server.inbox("gina").await;
    assert_eq!(
        titles(&inbox),
        ["rehearsal"],
        "the inbox is written as usual"
    );

    // Server-wide: `herald serve --dry-run`.
    drop(server);
    let config = fakes.config("");
    let server = Server::start_with_args(&[], &["--config", &config, "--dry-run"]).await;
    register_token(&server, "gina", "apns", "abcdef01").await;
    let id = server
        .publish_ok(json!({"to": {"users": ["gina"]}, "title": "t", "channels": ["push"]}))
        .await;
    report_until(&server, &id, "dry-run by the server", |r| {
        push_done(r, "dry_run", 1)
    })
    .await;
    assert_eq!(fakes.apns.stats().common.accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_send_and_a_restart_resends_nothing_finished() {
    let fakes = Fakes::start().await;
    // 20 sends at a time of 100 ms each: 400 sends take about 2 s, so the crash lands mid-way.
    let mut server = fakes
        .herald(&[], "[push.fcm.limits]\nconcurrency = 20\n")
        .await;
    let users: Vec<String> = (0..400).map(|i| format!("u{i}")).collect();
    for user in &users {
        register(
            &server,
            user,
            json!({"platform": "fcm", "token": format!("tok-{user}")}),
        )
        .await;
    }
    // Slow answers keep sends in flight when the process dies.
    fakes.fcm.behaviour().set_delay(Duration::from_millis(100));
    let id = server
        .publish_ok(json!({"to": {"users": users}, "title": "crash", "channels": ["push"]}))
        .await;
    assert!(
        fakes.fcm.wait_for(50, Duration::from_secs(15)).await,
        "sending started"
    );
    server.kill9();
    fakes.fcm.behaviour().set_delay(Duration::ZERO);
    let at_crash = fakes.fcm.stats().common.accepted;
    assert!(
        at_crash < 400,
        "the crash came before the end: {at_crash} answered"
    );
    server.launch().await;
    report_until(&server, &id, "all 400 sent after the restart", |r| {
        push_done(r, "sent", 400)
    })
    .await;
    let received = fakes.fcm.received();
    let distinct: std::collections::HashSet<_> = received.iter().map(|m| m.token.clone()).collect();
    assert_eq!(distinct.len(), 400, "nobody was skipped");
    let repeats = received.len() - 400;
    assert!(
        repeats as u64 <= at_crash,
        "only sends in flight at the crash may repeat: {repeats} repeats, {at_crash} answered before it"
    );

    // Everything finished: a clean restart sends nothing again.
    let before = fakes.fcm.stats().common.accepted;
    server.terminate(Duration::from_secs(15));
    server.launch().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        fakes.fcm.stats().common.accepted,
        before,
        "no re-send after a restart"
    );
}
