//! What the browser face needs from the server, over plain HTTP: minted user tokens (API key
//! only), the admin overview, the VAPID public key, and the embedded pages and SDK with their
//! content types and security headers. The pages themselves run in `browser.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_api_key_mints_user_tokens_and_they_open_the_users_routes() {
    let server = Server::start().await;
    let response = server
        .http
        .post(server.url("/v1/users/alice/token"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let minted: Value = response.json().await.unwrap();
    assert_eq!(minted["user"], "alice");
    assert_eq!(minted["expires_in"], 3600);
    assert!(minted["expires_at"].as_str().unwrap().ends_with('Z'));
    let token = minted["token"].as_str().unwrap();
    let (status, unread) = server.get_as("/v1/me/unread", token).await;
    assert_eq!((status, unread), (200, json!({"unread": 0})));

    // A user token cannot mint one, neither for its own user nor for anybody else.
    for user in ["alice", "bob"] {
        let as_user = server
            .http
            .post(server.url(&format!("/v1/users/{user}/token")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_problem(as_user, 403).await;
    }
    let anonymous = server
        .http
        .post(server.url("/v1/users/alice/token"))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401).await;

    let (status, short) = server
        .post_as("/v1/users/alice/token?ttl_seconds=120", API_KEY, None)
        .await;
    assert_eq!((status, short["expires_in"].clone()), (200, json!(120)));
    // A token may name the realtime channels it reads; no other channel opens to it.
    let (status, viewer) = server
        .post_as(
            "/v1/users/alice/token?channels=session:12*,logs",
            API_KEY,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(viewer["channels"], json!(["session:12*", "logs"]));
    let viewer = viewer["token"].as_str().unwrap();
    for (channel, expected) in [
        ("session:1234", 200),
        ("logs", 200),
        ("session:99", 403),
        ("other", 403),
    ] {
        let response = server
            .http
            .get(server.url(&format!("/v1/channels/{channel}/stream")))
            .bearer_auth(viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{channel}");
    }
    let (_, plain) = server.post_as("/v1/users/alice/token", API_KEY, None).await;
    let response = server
        .http
        .get(server.url("/v1/channels/logs/stream"))
        .bearer_auth(plain["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_problem(response, 403).await;

    for bad in [
        "/v1/users/alice/token?channels=a*b",
        "/v1/users/alice/token?ttl_seconds=10",
        "/v1/users/alice/token?ttl_seconds=100000",
        "/v1/users/not%20a%20user/token",
    ] {
        let response = server
            .http
            .post(server.url(bad))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_lanes_and_what_each_provider_answered() {
    // A dry run counts push sends without a provider to call.
    let server = Server::start_with_args(&[], &["--dry-run"]).await;
    let (status, _) = server
        .post_as(
            "/v1/users/alice/devices",
            API_KEY,
            Some(json!({"platform": "fcm", "token": "overview-phone"})),
        )
        .await;
    assert_eq!(status, 201);
    server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "t", "channels": ["push"]}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let overview = loop {
        let (status, overview) = server.get_as("/v1/admin/overview", API_KEY).await;
        assert_eq!(status, 200, "{overview}");
        if overview["providers"]["fcm"]["dry_run"] == 1 {
            break overview;
        }
        assert!(Instant::now() < deadline, "no dry run counted: {overview}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(overview["channel_subscribers"], 0, "{overview}");
    for queue in ["fanout_queue", "push_queue"] {
        for lane in ["high", "normal", "low"] {
            assert!(overview[queue][lane].is_u64(), "{queue}.{lane}: {overview}");
        }
    }
    for provider in ["fcm", "apns", "webpush", "webhook"] {
        for count in ["sent", "failed", "pruned", "retried", "dry_run"] {
            assert!(
                overview["providers"][provider][count].is_u64(),
                "{overview}"
            );
        }
    }
    let as_user = server
        .http
        .get(server.url("/v1/admin/overview"))
        .bearer_auth(server.token("alice"))
        .send()
        .await
        .unwrap();
    assert_problem(as_user, 403).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vapid_public_key_is_served_when_web_push_is_configured() {
    let server = Server::start().await;
    let missing = server
        .http
        .get(server.url("/v1/webpush/vapid-public-key"))
        .send()
        .await
        .unwrap();
    assert_problem(missing, 404).await;
    drop(server);

    let (private, public) = herald_push::webpush::vapid::generate();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[push.webpush]\nvapid_private_key = \"{private}\"\nsubject = \"mailto:ops@example.com\"\n"
        ),
    )
    .unwrap();
    let server = Server::start_with_args(&[], &["--config", config.to_str().unwrap()]).await;
    let response = server
        .http
        .get(server.url("/v1/webpush/vapid-public-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["public_key"], public.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_the_sdk_are_served_with_their_headers() {
    let server = Server::start().await;
    for page in ["/demo", "/admin"] {
        let response = server.http.get(server.url(page)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{page}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        let html = response.text().await.unwrap();
        // The CSP forbids inline scripts: every script must come from a file.
        for script in html.split("<script").skip(1) {
            assert!(
                script.split('>').next().unwrap().contains("src="),
                "inline script in {page}"
            );
        }
    }
    let sdk = server
        .http
        .get(server.url("/sdk/herald.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(sdk.status(), 200);
    assert_eq!(
        sdk.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(sdk.headers()["x-content-type-options"], "nosniff");
    let etag = sdk.headers()["etag"].clone();
    assert!(sdk.text().await.unwrap().contains("export class Herald"));
    let again = server
        .http
        .get(server.url("/sdk/herald.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let worker = server
        .http
        .get(server.url("/sdk/herald-sw.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(worker.headers()["service-worker-allowed"], "/");
    let types = server
        .http
        .get(server.url("/sdk/herald.d.ts"))
        .send()
        .await
        .unwrap();
    assert_eq!(types.status(), 200);
    assert!(types.text().await.unwrap().contains("class Herald"));

    let (_, openapi) = server.get_as("/v1/openapi.json", API_KEY).await;
    for path in [
        "/v1/users/{user}/token",
        "/v1/admin/overview",
        "/v1/webpush/vapid-public-key",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} not documented");
    }
}
