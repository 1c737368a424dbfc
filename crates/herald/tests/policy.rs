//! Delivery policy over the HTTP API, on both engines: categories, preferences and mute,
//! frequency caps under racing publishes, quiet hours, collapse keys, TTL, and the per-user
//! decision log. Push goes to the fake FCM over TLS and HTTP/2.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::engines::Engine;
use common::push_fakes::*;
use common::*;
use herald_fakes::{Failure, FakeHandle};
use herald_testkit::{RedisServer, ServerOptions};
use serde_json::{Value, json};

/// A running Herald on one engine, with its fakes (and its Redis).
struct Env {
    server: Server,
    fakes: Fakes,
    _redis: Option<RedisServer>,
}

async fn start(engine: Engine, extra_config: &str) -> Env {
    let fakes = Fakes::start().await;
    let redis = match engine {
        Engine::Embedded => None,
        Engine::Redis => Some(RedisServer::start_with(
            ServerOptions::default().append_only(false),
        )),
    };
    let url = redis.as_ref().map(|r| r.url());
    let env: Vec<(&str, &str)> = url
        .iter()
        .map(|u| ("HERALD_REDIS_URL", u.as_str()))
        .collect();
    let server = fakes.herald(&env, extra_config).await;
    Env {
        server,
        fakes,
        _redis: redis,
    }
}

on_both_engines!(
    preferences_mute_what_users_may_turn_off,
    caps_hold_exactly_when_publishes_race,
    quiet_hours_defer_push_until_they_end,
    collapse_keys_replace_unread_entries_and_push_once,
    expired_sends_are_dropped_and_counted,
    high_priority_push_overtakes_a_low_backlog,
);

async fn put_category(server: &Server, name: &str, body: Value) {
    let (status, body) = server
        .put_as(&format!("/v1/categories/{name}"), API_KEY, body)
        .await;
    assert_eq!(status, 200, "{body}\nserver log:\n{}", server.logs());
}

async fn put_preferences(server: &Server, user: &str, prefs: Value) {
    let (status, body) = server
        .put_as("/v1/me/preferences", &server.token(user), prefs)
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Registers one FCM device for each user; its token is `tok-{user}`.
async fn devices(server: &Server, users: &[&str]) {
    for user in users {
        register_token(server, user, "fcm", &format!("tok-{user}")).await;
    }
}

/// The fake FCM's sends to `user`'s device, so far.
fn pushes_to(fakes: &Fakes, user: &str) -> Vec<Value> {
    let token = format!("tok-{user}");
    fakes
        .fcm
        .received()
        .into_iter()
        .filter(|m| m.token == token)
        .map(|m| m.message)
        .collect()
}

async fn decisions(server: &Server, user: &str) -> Vec<Value> {
    let (status, body) = server
        .get_as(&format!("/v1/users/{user}/deliveries"), API_KEY)
        .await;
    assert_eq!(status, 200, "{body}");
    body["decisions"].as_array().unwrap().clone()
}

/// Polls until `check` holds for the value `read` returns (15 s at most).
async fn eventually<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    read: impl Fn() -> F,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = read().await;
        if check(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn preferences_mute_what_users_may_turn_off(engine: Engine) {
    let Env {
        server,
        fakes,
        _redis,
    } = start(engine, "").await;
    put_category(&server, "marketing", json!({"description": "offers"})).await;
    put_category(&server, "security", json!({"opt_out": false})).await;
    devices(&server, &["alice", "bob"]).await;

    // Users may not turn off what they may not opt out of; nothing is stored then.
    let (status, problem) = server
        .put_as(
            "/v1/me/preferences",
            &server.token("alice"),
            json!({"categories": {"security": {"push": false}, "marketing": {"push": false}}}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "categories.security");
    let (_, stored) = server
        .get_as("/v1/me/preferences", &server.token("alice"))
        .await;
    assert_eq!(stored["categories"], json!({}));
    put_preferences(
        &server,
        "alice",
        json!({"categories": {"marketing": {"push": false}}}),
    )
    .await;

    let offer = server
        .publish_ok(
            json!({"to": {"users": ["alice", "bob"]}, "title": "50% off", "category": "marketing"}),
        )
        .await;
    let report = report_until(&server, &offer, "bob pushed, alice muted", |r| {
        r["push"]["sent"] == 1 && r["push"]["muted"] == 1 && r["push"]["pending"] == 0
    })
    .await;
    assert_eq!(report["inbox"]["delivered"], 2, "the inbox still keeps it");
    assert!(pushes_to(&fakes, "alice").is_empty());
    assert_eq!(pushes_to(&fakes, "bob").len(), 1);
    assert_eq!(titles(&server.inbox("alice").await), ["50% off"]);

    // A global mute silences push, but never a category users may not opt out of.
    put_preferences(&server, "alice", json!({"mute": true})).await;
    let news = server
        .publish_ok(json!({"to": {"users": ["alice"]}, "title": "news"}))
        .await;
    report_until(&server, &news, "muted", |r| r["push"]["muted"] == 1).await;
    let alert = server
        .publish_ok(
            json!({"to": {"users": ["alice"]}, "title": "new login", "category": "security"}),
        )
        .await;
    report_until(&server, &alert, "sent despite the mute", |r| {
        r["push"]["sent"] == 1
    })
    .await;

    // The decision log explains, newest first.
    let log = decisions(&server, "alice").await;
    let about: Vec<(&str, &str)> = log
        .iter()
        .map(|d| {
            (
                d["notification"].as_str().unwrap(),
                d["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(about.contains(&(news.as_str(), "muted")), "{log:?}");
    assert!(about.contains(&(offer.as_str(), "muted")), "{log:?}");
    let offer_entry = log
        .iter()
        .find(|d| d["notification"] == offer.as_str())
        .unwrap();
    assert_eq!(offer_entry["channel"], "push");
    assert!(
        offer_entry["detail"]
            .as_str()
            .unwrap()
            .contains("marketing"),
        "{offer_entry}"
    );

    // A user reads only their own preferences; the admin twin needs the API key.
    let (status, _) = server
        .get_as("/v1/users/alice/preferences", &server.token("bob"))
        .await;
    assert!(status == 401 || status == 403, "{status}");
    let (status, prefs) = server.get_as("/v1/users/alice/preferences", API_KEY).await;
    assert_eq!((status, prefs["mute"].clone()), (200, json!(true)));
}

async fn caps_hold_exactly_when_publishes_race(engine: Engine) {
    let Env {
        server,
        fakes,
        _redis,
    } = start(engine, "").await;
    put_category(
        &server,
        "news",
        json!({"caps": [{"limit": 3, "window_seconds": 86400}]}),
    )
    .await;
    put_category(
        &server,
        "promo",
        json!({"caps": [{"limit": 1, "window_seconds": 86400}], "over_cap": "drop"}),
    )
    .await;
    devices(&server, &["carol"]).await;

    // 50 publishes race; exactly 3 are pushed, every one lands in the inbox.
    let publishes = (0..50).map(|i| {
        let server = &server;
        async move {
            server
                .publish_ok(json!({"to": {"users": ["carol"]}, "title": format!("news {i}"), "category": "news"}))
                .await
        }
    });
    let ids = futures_util::future::join_all(publishes).await;
    let total = |field: &'static str| {
        let (server, ids) = (&server, &ids);
        async move {
            let mut sum = 0;
            for id in ids {
                let (_, body) = server
                    .get_as(&format!("/v1/notifications/{id}"), API_KEY)
                    .await;
                sum += body["report"]["push"][field].as_u64().unwrap_or(0);
            }
            sum
        }
    };
    eventually("47 capped", || total("capped"), |n| *n == 47).await;
    eventually("3 sent", || total("sent"), |n| *n == 3).await;
    assert_eq!(pushes_to(&fakes, "carol").len(), 3);
    let inbox = server.inbox("carol").await;
    assert_eq!(
        inbox["items"].as_array().unwrap().len(),
        50,
        "over the cap: inbox only"
    );

    // With over_cap = "drop", what exceeds the cap does not reach the inbox either.
    let mut promos = Vec::new();
    for i in 0..3 {
        promos.push(
            server
                .publish_ok(json!({"to": {"users": ["carol"]}, "title": format!("promo {i}"), "category": "promo"}))
                .await,
        );
    }
    for id in &promos[1..] {
        report_until(&server, id, "capped", |r| {
            r["push"]["capped"] == 1 && r["inbox"]["capped"] == 1
        })
        .await;
    }
    let titles = titles(&server.inbox("carol").await);
    assert_eq!(titles.iter().filter(|t| t.starts_with("promo")).count(), 1);
    let log = decisions(&server, "carol").await;
    assert!(
        log.iter().any(|d| d["reason"] == "capped"
            && d["detail"].as_str().unwrap().contains("1 push per 86400 s")),
        "{log:?}"
    );
}

async fn quiet_hours_defer_push_until_they_end(engine: Engine) {
    let Env {
        server,
        fakes,
        _redis,
    } = start(engine, "").await;
    put_category(&server, "digest", json!({})).await;
    devices(&server, &["dana"]).await;
    let quiet_for = Duration::from_secs(4);
    put_preferences(
        &server,
        "dana",
        json!({
            "timezone": "UTC",
            "quiet_hours": {
                "start": utc_time_of_day(Duration::from_secs(60), true),
                "end": utc_time_of_day(quiet_for, false),
            }
        }),
    )
    .await;
    let started = Instant::now();
    let later = server
        .publish_ok(
            json!({"to": {"users": ["dana"]}, "title": "weekly digest", "category": "digest"}),
        )
        .await;
    let doomed = server
        .publish_ok(json!({"to": {"users": ["dana"]}, "title": "flash sale", "ttl_seconds": 1}))
        .await;
    let urgent = server
        .publish_ok(json!({"to": {"users": ["dana"]}, "title": "server down", "priority": "high"}))
        .await;
    let report = report_until(&server, &later, "deferred", |r| {
        r["push"]["quiet_deferred"] == 1
    })
    .await;
    assert_eq!(report["push"]["pending"], 1, "waiting, not dropped");
    report_until(&server, &doomed, "dropped: its TTL ends first", |r| {
        r["push"]["expired"] == 1 && r["push"]["queued"] == 0
    })
    .await;
    report_until(
        &server,
        &urgent,
        "high bypasses quiet hours by default",
        |r| r["push"]["sent"] == 1,
    )
    .await;
    assert_eq!(
        pushes_to(&fakes, "dana").len(),
        1,
        "only the urgent one so far"
    );
    assert_eq!(
        titles(&server.inbox("dana").await).len(),
        3,
        "quiet hours hold push only"
    );

    report_until(&server, &later, "sent once quiet hours ended", |r| {
        r["push"]["sent"] == 1 && r["push"]["pending"] == 0
    })
    .await;
    assert!(
        started.elapsed() >= quiet_for - Duration::from_millis(1500),
        "sent only after the end of quiet hours ({:?})",
        started.elapsed()
    );
    assert_eq!(pushes_to(&fakes, "dana").len(), 2);
    let log = decisions(&server, "dana").await;
    assert!(
        log.iter()
            .any(|d| d["notification"] == later.as_str() && d["reason"] == "quiet_deferred"),
        "{log:?}"
    );
}

async fn collapse_keys_replace_unread_entries_and_push_once(engine: Engine) {
    let Env {
        server,
        fakes,
        _redis,
    } = start(engine, "").await;
    devices(&server, &["erin", "fred"]).await;
    let score = |title: &str| json!({"to": {"users": ["erin", "fred"]}, "title": title, "collapse_key": "match-42"});
    let first = server.publish_ok(score("1 - 0")).await;
    report_until(&server, &first, "pushed", |r| r["push"]["sent"] == 2).await;
    // Fred reads the first score; Erin does not.
    let (status, _) = server
        .post_as(
            &format!("/v1/me/notifications/{first}/read"),
            &server.token("fred"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let second = server.publish_ok(score("2 - 0")).await;
    report_until(&server, &second, "collapsed, not pushed again", |r| {
        r["push"]["collapsed"] == 2 && r["push"]["queued"] == 0
    })
    .await;
    assert_eq!(pushes_to(&fakes, "erin").len(), 1);
    assert_eq!(
        pushes_to(&fakes, "erin")[0]["android"]["collapse_key"],
        "match-42",
        "the key is passed to the provider"
    );
    inbox_until(&server, "erin", &["2 - 0"]).await;
    assert_eq!(
        titles(&server.inbox("fred").await),
        ["2 - 0", "1 - 0"],
        "a read entry stays"
    );
}

async fn inbox_until(server: &Server, user: &str, expected: &[&str]) {
    eventually(
        "the inbox",
        || async { titles(&server.inbox(user).await) },
        |t| t == expected,
    )
    .await;
}

async fn expired_sends_are_dropped_and_counted(engine: Engine) {
    let Env {
        server,
        fakes,
        _redis,
    } = start(engine, "").await;
    devices(&server, &["gina"]).await;
    // FCM is unavailable for 2 s; the notification lives 1 s: the retry finds it expired.
    fakes
        .fcm
        .behaviour()
        .fail_next(1, Failure::status(503).retry_after(2));
    let id = server
        .publish_ok(json!({"to": {"users": ["gina"]}, "title": "ride arriving", "ttl_seconds": 1}))
        .await;
    let report = report_until(&server, &id, "expired", |r| {
        r["push"]["expired"] == 1 && r["push"]["pending"] == 0
    })
    .await;
    assert_eq!(report["push"]["sent"], 0);
    assert!(pushes_to(&fakes, "gina").is_empty());
    assert_eq!(
        titles(&server.inbox("gina").await),
        ["ride arriving"],
        "still listed in the inbox"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn categories_are_validated_and_fill_in_publishes() {
    let server = Server::start().await;
    let (status, problem) = server
        .put_as(
            "/v1/categories/news",
            API_KEY,
            json!({"caps": [{"limit": 0, "window_seconds": 60}], "channels": []}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    let fields: Vec<_> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["channels", "caps[0].limit"]);
    let (status, _) = server
        .put_as("/v1/categories/news", &server.token("u"), json!({}))
        .await;
    assert!(
        status == 401 || status == 403,
        "a user token cannot define categories"
    );
    let (status, _) = server
        .put_as("/v1/categories/news", API_KEY, json!({"unknown": 1}))
        .await;
    assert_eq!(status, 400);
    let (status, listed) = server.get_as("/v1/categories", API_KEY).await;
    assert_eq!((status, listed["categories"].clone()), (200, json!([])));

    put_category(
        &server,
        "news",
        json!({"channels": ["inbox"], "priority": "low", "ttl_seconds": 3600}),
    )
    .await;
    let (_, news) = server.get_as("/v1/categories/news", API_KEY).await;
    assert_eq!(news["name"], "news");
    assert_eq!(news["opt_out"], true);
    let id = server
        .publish_ok(json!({"to": {"users": ["u"]}, "title": "t", "category": "news"}))
        .await;
    let (_, stored) = server
        .get_as(&format!("/v1/notifications/{id}"), API_KEY)
        .await;
    assert_eq!(stored["priority"], "low");
    assert_eq!(stored["ttl_seconds"], 3600);
    assert_eq!(stored["channels"], json!(["inbox"]));

    let (status, _) = server.delete_as("/v1/categories/news", API_KEY).await;
    assert_eq!(status, 204);
    let (status, _) = server.delete_as("/v1/categories/news", API_KEY).await;
    assert_eq!(status, 404);

    let (status, problem) = server
        .put_as(
            "/v1/me/preferences",
            &server.token("u"),
            json!({"timezone": "Mars/Olympus", "quiet_hours": {"start": "22:00", "end": "7:00"}}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
}

async fn high_priority_push_overtakes_a_low_backlog(engine: Engine) {
    // A slow provider and few sends in flight: 1,000 low sends take seconds to drain.
    let Env {
        server,
        fakes,
        _redis,
    } = start(engine, "[push]\nmax_in_flight = 8\nbatch = 8\n").await;
    fakes.fcm.behaviour().set_delay(Duration::from_millis(20));
    let users: Vec<String> = (0..100).map(|i| format!("bulk{i}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    devices(&server, &names).await;
    devices(&server, &["vip"]).await;
    for i in 0..10 {
        server
            .publish_ok(json!({"to": {"users": users}, "title": format!("bulk {i}"),
                               "priority": "low", "channels": ["push"]}))
            .await;
    }
    assert!(
        fakes.fcm.wait_for(20, Duration::from_secs(15)).await,
        "the bulk started"
    );
    let urgent = server
        .publish_ok(
            json!({"to": {"users": ["vip"]}, "title": "urgent", "priority": "high",
                           "channels": ["push"]}),
        )
        .await;
    report_until(&server, &urgent, "the urgent push", |r| {
        r["push"]["sent"] == 1
    })
    .await;
    let order: Vec<String> = fakes.fcm.received().into_iter().map(|m| m.token).collect();
    let position = order.iter().position(|t| t == "tok-vip").unwrap();
    assert!(
        position < 200,
        "the high push went out after {position} of 1,000 low sends"
    );
}
