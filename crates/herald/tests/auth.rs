//! Credentials: publisher keys and user tokens are separate, and a user sees only their own data.

mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed(alg: Algorithm, key: &EncodingKey, sub: &str, exp: u64) -> String {
    encode(&Header::new(alg), &json!({"sub": sub, "exp": exp}), key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_credential_opens_only_its_own_routes() {
    let server = Server::start().await;
    let alice = server.token("alice");
    let body = json!({"to": {"all": true}, "title": "t"});

    let anonymous = server
        .http
        .post(server.url("/v1/notifications"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401).await;
    let wrong_key = server
        .http
        .post(server.url("/v1/notifications"))
        .bearer_auth("hk_wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(wrong_key, 401).await;
    let as_user = server
        .http
        .post(server.url("/v1/notifications"))
        .bearer_auth(&alice)
        .json(&body)
        .send()
        .await
        .unwrap();
    let p = assert_problem(as_user, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("API key"));

    let key_on_me = server
        .http
        .get(server.url("/v1/me/notifications"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let p = assert_problem(key_on_me, 403).await;
    assert!(
        p["detail"].as_str().unwrap().contains("/v1/users/"),
        "points to the admin twin: {p}"
    );
    let user_on_admin = server
        .http
        .get(server.url("/v1/users/bob/notifications"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_problem(user_on_admin, 403).await;
    let user_on_topics = server
        .http
        .put(server.url("/v1/topics/t/subscribers/alice"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_problem(user_on_topics, 403).await;
    let anonymous_inbox = server
        .http
        .get(server.url("/v1/me/notifications"))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous_inbox, 401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_never_reaches_another_users_notifications() {
    let server = Server::start().await;
    let id = server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "for alice only"}))
        .await;
    server
        .inbox_until("alice", "delivery", |i| i["unread"] == 1)
        .await;
    let mallory = server.token("mallory");
    assert!(titles(&server.inbox("mallory").await).is_empty());
    let (status, _) = server
        .post_as(&format!("/v1/me/notifications/{id}/read"), &mallory, None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .delete_as(&format!("/v1/me/notifications/{id}"), &mallory)
        .await;
    assert_eq!(status, 404);
    let inbox = server.inbox("alice").await;
    assert_eq!(
        (inbox["unread"].clone(), inbox["items"][0]["read"].clone()),
        (json!(1), json!(false)),
        "untouched"
    );
    // The token's subject decides whose data is read, whatever the URL or query says.
    let (_, mine) = server
        .get_as("/v1/me/notifications?user=alice", &mallory)
        .await;
    assert!(titles(&mine).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified() {
    let server = Server::start().await;
    let secret = EncodingKey::from_secret(TOKEN_SECRET.as_bytes());
    let expired = signed(Algorithm::HS256, &secret, "alice", now() - 120);
    let p = assert_problem(
        server
            .http
            .get(server.url("/v1/me/unread"))
            .bearer_auth(&expired)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    let forged = signed(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-0123456789abcdefgh"),
        "alice",
        now() + 60,
    );
    let p = assert_problem(
        server
            .http
            .get(server.url("/v1/me/unread"))
            .bearer_auth(&forged)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("signature"), "{p}");
    let no_exp = encode(&Header::default(), &json!({"sub": "alice"}), &secret).unwrap();
    assert_problem(
        server
            .http
            .get(server.url("/v1/me/unread"))
            .bearer_auth(&no_exp)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    let valid = signed(Algorithm::HS256, &secret, "alice", now() + 60);
    assert_eq!(
        server
            .http
            .get(server.url("/v1/me/unread"))
            .bearer_auth(&valid)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // `?token=` is for stream endpoints only (browsers' EventSource cannot set headers).
    let r = server
        .http
        .get(server.url(&format!("/v1/me/notifications?token={valid}")))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_public_keys_are_accepted() {
    let keys = format!(
        "{},{}",
        fixture("rsa_public.pem").display(),
        fixture("ec_public.pem").display()
    );
    let server = Server::start_with(&[("HERALD_TOKEN_PUBLIC_KEYS", &keys)]).await;
    let rsa =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa_private.pem")).unwrap()).unwrap();
    let ec = EncodingKey::from_ec_pem(&std::fs::read(fixture("ec_private.pem")).unwrap()).unwrap();
    server
        .publish_ok(json!({"to": {"users": ["rsa-user", "ec-user"]}, "title": "hi"}))
        .await;
    for (token, user) in [
        (
            signed(Algorithm::RS256, &rsa, "rsa-user", now() + 60),
            "rsa-user",
        ),
        (
            signed(Algorithm::ES256, &ec, "ec-user", now() + 60),
            "ec-user",
        ),
    ] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (status, body) = server.get_as("/v1/me/notifications", &token).await;
            assert_eq!(status, 200, "{user}: {body}");
            if titles(&body) == ["hi"] {
                break;
            }
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // A key pair the server does not know is refused.
    let other_ec =
        EncodingKey::from_ec_pem(&std::fs::read(fixture("ec_unknown_private.pem")).unwrap())
            .unwrap();
    let stranger = signed(Algorithm::ES256, &other_ec, "ec-user", now() + 60);
    assert_problem(
        server
            .http
            .get(server.url("/v1/me/unread"))
            .bearer_auth(&stranger)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
}
