//! Campaigns over the HTTP API on both engines: audience upload with bad lines and duplicates,
//! scheduled and manual starts, pause / resume / cancel, and `kill -9` mid-campaign with
//! nothing lost and nothing doubled. Push goes to the fake FCM over TLS and HTTP/2.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::engines::Engine;
use common::push_fakes::*;
use common::sse::SseClient;
use common::*;
use herald_fakes::FakeHandle;
use herald_testkit::{RedisServer, ServerOptions};
use serde_json::{Value, json};

struct Env {
    server: Server,
    fakes: Fakes,
    redis: Option<RedisServer>,
}

async fn start(engine: Engine, extra_config: &str) -> Env {
    let fakes = Fakes::start().await;
    let redis = match engine {
        Engine::Embedded => None,
        Engine::Redis => Some(RedisServer::start_with(ServerOptions::default())),
    };
    let mut env = redis_env(&redis);
    env.push(("HERALD_NODE_ID", "node-a".into()));
    let server = fakes.herald(&env_refs(&env), extra_config).await;
    Env {
        server,
        fakes,
        redis,
    }
}

fn redis_env(redis: &Option<RedisServer>) -> Vec<(&'static str, String)> {
    redis
        .iter()
        .map(|r| ("HERALD_REDIS_URL", r.url()))
        .collect()
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

on_both_engines!(
    a_list_campaign_reaches_each_user_once,
    a_scheduled_campaign_starts_at_its_second,
    pause_resume_and_cancel,
    kill_9_mid_campaign_loses_nothing_and_doubles_nothing,
    topic_and_everyone_campaigns,
    an_ended_campaigns_list_is_deleted_and_its_count_kept,
    a_list_campaigns_shared_entry_respects_lists_and_preferences,
    a_staged_campaigns_push_follows_policy_and_provider_answers,
);

async fn create(server: &Server, body: Value) -> String {
    let (status, body) = server.post_as("/v1/campaigns", API_KEY, Some(body)).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn upload(server: &Server, id: &str, content_type: &str, text: String) -> (u16, Value) {
    let response = server
        .http
        .put(server.url(&format!("/v1/campaigns/{id}/recipients")))
        .bearer_auth(API_KEY)
        .header("content-type", content_type)
        .body(text)
        .send()
        .await
        .unwrap();
    status_json(response).await
}

async fn campaign(server: &Server, id: &str) -> Value {
    let (status, body) = server.get_as(&format!("/v1/campaigns/{id}"), API_KEY).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn act(server: &Server, id: &str, action: &str) -> (u16, Value) {
    server
        .post_as(&format!("/v1/campaigns/{id}/{action}"), API_KEY, None)
        .await
}

async fn campaign_until(
    server: &Server,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = campaign(server, id).await;
        if check(&c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {c}\nserver log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registers one FCM device (token `tok-{user}`) for each user, a few at a time.
async fn devices(server: &Server, users: &[String]) {
    for chunk in users.chunks(32) {
        futures_util::future::join_all(
            chunk.iter().map(|u| async move {
                register_token(server, u, "fcm", &format!("tok-{u}")).await
            }),
        )
        .await;
    }
}

/// How many pushes the fake FCM received per token.
fn pushes_per_token(fakes: &Fakes) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in fakes.fcm.received() {
        *counts.entry(m.token).or_default() += 1;
    }
    counts
}

async fn a_list_campaign_reaches_each_user_once(engine: Engine) {
    let Env {
        server,
        fakes,
        redis: _redis,
    } = start(engine, "").await;
    let users: Vec<String> = (0..40).map(|i| format!("fan{i:02}")).collect();
    devices(&server, &users).await;
    let id = create(
        &server,
        json!({"name": "launch", "message": {"title": "We launched", "category": "news"}}),
    )
    .await;
    assert_eq!(campaign(&server, &id).await["state"], "draft");

    // CSV: a header, every user, ten of them twice, three bad lines, an unknown user, a blank.
    let mut csv = String::from("email,user_id\n");
    for u in &users {
        csv.push_str(&format!("{u}@example.com,{u}\n"));
    }
    for u in &users[..10] {
        csv.push_str(&format!("again@example.com,{u}\n"));
    }
    csv.push_str(
        "x@example.com,not a user id\nno-comma-here\n\nx@example.com,ghost\nbad@x,\u{1F600}bad\n",
    );
    let (status, report) = upload(&server, &id, "text/csv", csv.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["added"], 41, "{report}");
    assert_eq!(report["duplicates"], 10);
    assert_eq!(report["malformed"], 3, "{report}");
    let lines: Vec<u64> = report["malformed_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [52, 53, 56], "{report}");
    // Uploading the same file again (a retried upload) lists nobody twice.
    let (_, again) = upload(&server, &id, "text/csv", csv).await;
    assert_eq!(
        (again["added"].clone(), again["recipients"].clone()),
        (json!(0), json!(41))
    );

    // Pressing start twice starts once.
    let (first, _) = act(&server, &id, "start").await;
    let (second, _) = act(&server, &id, "start").await;
    assert_eq!((first, second), (200, 200));
    let done = campaign_until(&server, &id, "completed", |c| {
        c["state"] == "completed" && c["channels"]["push"]["pending"] == 0
    })
    .await;
    assert_eq!(done["done"], 41);
    assert_eq!(done["channels"]["push"]["sent"], 40);
    assert_eq!(done["channels"]["inbox"]["delivered"], 41, "{done}");
    assert_eq!(done["malformed"], 6, "both uploads' bad lines are counted");
    let per_token = pushes_per_token(&fakes);
    assert_eq!(per_token.len(), 40);
    assert!(per_token.values().all(|n| *n == 1), "{per_token:?}");
    assert_eq!(titles(&server.inbox("fan07").await), ["We launched"]);
    assert_eq!(
        titles(&server.inbox("ghost").await),
        ["We launched"],
        "unknown users keep an inbox entry"
    );
    // Finished campaigns take no more recipients.
    let (status, _) = upload(&server, &id, "text/plain", "late\n".into()).await;
    assert_eq!(status, 409);
    let (_, list) = server.get_as("/v1/campaigns", API_KEY).await;
    assert_eq!(list["campaigns"][0]["id"], id.as_str());
}

async fn a_scheduled_campaign_starts_at_its_second(engine: Engine) {
    let Env {
        server,
        fakes,
        redis: _redis,
    } = start(engine, "").await;
    let users: Vec<String> = (0..20).map(|i| format!("early{i:02}")).collect();
    devices(&server, &users).await;
    let send_at = std::time::SystemTime::now() + Duration::from_secs(3);
    let send_at_ms = send_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let id = create(
        &server,
        json!({"name": "at the second", "message": {"title": "Kick-off"},
               "send_at": herald_core::time::rfc3339_ms(send_at_ms)}),
    )
    .await;
    let (status, _) = upload(&server, &id, "text/plain", users.join("\n")).await;
    assert_eq!(status, 200);
    assert_eq!(campaign(&server, &id).await["state"], "scheduled");
    assert!(
        !fakes.fcm.wait_for(1, Duration::from_secs(2)).await,
        "nothing is sent before its time"
    );
    // Staged ahead of its second: the provider's OAuth token is already fetched (and its
    // connections opened), so the first sends do not wait for them.
    assert_eq!(fakes.fcm.stats().access_tokens_issued, 1);
    assert!(fakes.fcm.wait_for(20, Duration::from_secs(10)).await);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(now_ms >= send_at_ms);
    let c = campaign_until(&server, &id, "completed", |c| c["state"] == "completed").await;
    assert_eq!(
        c["started_at"].as_str(),
        Some(herald_core::time::rfc3339_ms(send_at_ms).as_str())
    );
}

async fn pause_resume_and_cancel(engine: Engine) {
    let Env {
        server,
        redis: _redis,
        ..
    } = start(engine, "").await;
    let users: Vec<String> = (0..600).map(|i| format!("slow{i:03}")).collect();
    let id = create(
        &server,
        json!({"name": "slow", "message": {"title": "Trickle", "channels": ["inbox"]},
               "rate_per_second": 200}),
    )
    .await;
    upload(
        &server,
        &id,
        "application/x-ndjson",
        users
            .iter()
            .map(|u| format!("{{\"user_id\":\"{u}\"}}\n"))
            .collect(),
    )
    .await;
    let (status, problem) = act(&server, &id, "pause").await;
    assert_eq!(status, 409, "a draft cannot pause: {problem}");
    act(&server, &id, "start").await;
    campaign_until(&server, &id, "some progress", |c| {
        c["done"].as_u64().unwrap() > 0
    })
    .await;
    let (status, paused) = act(&server, &id, "pause").await;
    assert_eq!((status, paused["state"].clone()), (200, json!("paused")));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopped = campaign(&server, &id).await["done"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        campaign(&server, &id).await["done"].as_u64().unwrap(),
        stopped,
        "a paused campaign sends nothing"
    );
    assert!(stopped < 600, "paused before the end ({stopped})");
    act(&server, &id, "resume").await;
    let c = campaign_until(&server, &id, "completed", |c| c["state"] == "completed").await;
    assert_eq!(c["done"], 600);
    assert_eq!(c["channels"]["inbox"]["delivered"], 600);

    let other = create(
        &server,
        json!({"name": "never", "message": {"title": "No"}}),
    )
    .await;
    upload(&server, &other, "text/plain", "a\nb\n".into()).await;
    let (status, c) = act(&server, &other, "cancel").await;
    assert_eq!((status, c["state"].clone()), (200, json!("cancelled")));
    let (status, _) = act(&server, &other, "start").await;
    assert_eq!(status, 409);
    assert!(
        server.inbox("a").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn kill_9_mid_campaign_loses_nothing_and_doubles_nothing(engine: Engine) {
    // Short leases, so the survivor takes over the dead node's campaign and sends quickly.
    let config = "[workers]\ncampaign_lease_ms = 2000\n[push]\nlease_ms = 2000\n";
    let Env {
        mut server,
        fakes,
        redis,
    } = start(engine, config).await;
    let users: Vec<String> = (0..1500).map(|i| format!("crowd{i:04}")).collect();
    devices(&server, &users).await;
    let id = create(
        &server,
        // 500/s: batches of 500 a second apart, so when a third is done at least one batch
        // is still to come (at 1,000/s the last 244 could all be sent before the kill lands).
        json!({"name": "crash", "message": {"title": "Survive"}, "rate_per_second": 500}),
    )
    .await;
    upload(&server, &id, "text/plain", users.join("\n")).await;
    act(&server, &id, "start").await;
    campaign_until(&server, &id, "a third done", |c| {
        c["done"].as_u64().unwrap() >= 500
    })
    .await;
    server.kill9();
    let received_at_crash = fakes.fcm.received().len();
    assert!(received_at_crash < 1500, "killed mid-campaign");

    // On Redis a second node takes over once the dead node's claim runs out; the embedded
    // engine resumes when the same node restarts.
    let survivor = match engine {
        Engine::Redis => {
            let mut env = redis_env(&redis);
            env.push(("HERALD_NODE_ID", "node-b".into()));
            Some(fakes.herald(&env_refs(&env), config).await)
        }
        Engine::Embedded => {
            server.launch().await;
            None
        }
    };
    let live = survivor.as_ref().unwrap_or(&server);
    let c = campaign_until(live, &id, "completed after the crash", |c| {
        c["state"] == "completed" && c["channels"]["push"]["pending"] == 0
    })
    .await;
    assert_eq!(c["done"], 1500);
    let per_token = pushes_per_token(&fakes);
    assert_eq!(per_token.len(), 1500, "nobody skipped");
    let repeated: usize = per_token.values().map(|n| n - 1).sum();
    // Only sends in flight at the crash may repeat (their answer was not recorded yet).
    assert!(repeated <= 4096, "{repeated} sends repeated");
    // Every recipient has the notification in the inbox exactly once.
    for chunk in users.chunks(50) {
        let inboxes = futures_util::future::join_all(chunk.iter().map(|u| live.inbox(u))).await;
        for (user, inbox) in chunk.iter().zip(inboxes) {
            assert_eq!(titles(&inbox), ["Survive"], "one inbox entry for {user}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_campaign_input_is_refused_with_reasons() {
    let server = Server::start().await;
    let (status, problem) = server
        .post_as(
            "/v1/campaigns",
            API_KEY,
            Some(json!({"name": "", "message": {"title": ""}, "send_at": "soon"})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 3);
    let (status, _) = server
        .post_as("/v1/campaigns", &server.token("u"), Some(json!({})))
        .await;
    assert!(status == 401 || status == 403);
    let (status, _) = server.get_as("/v1/campaigns/nope", API_KEY).await;
    assert_eq!(status, 404);
    let topic = create(
        &server,
        json!({"name": "t", "message": {"title": "t"}, "audience": {"topic": "news"}}),
    )
    .await;
    let (status, _) = upload(&server, &topic, "text/plain", "a\n".into()).await;
    assert_eq!(status, 409, "a topic audience is not uploaded");
    let list = create(&server, json!({"name": "l", "message": {"title": "t"}})).await;
    let (status, _) = upload(&server, &list, "image/png", "a\n".into()).await;
    assert_eq!(status, 415);
    let (status, problem) = server
        .post_as(
            "/v1/notifications",
            API_KEY,
            Some(json!({"to": {"campaign": list}, "title": "sneaky"})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
}

async fn topic_and_everyone_campaigns(engine: Engine) {
    let Env {
        server,
        fakes,
        redis: _redis,
    } = start(engine, "").await;
    let fans: Vec<String> = (0..30).map(|i| format!("sub{i:02}")).collect();
    devices(&server, &fans).await;
    devices(&server, &["loner".to_owned()]).await;
    let (status, _) = server
        .post_as(
            "/v1/topics/match/subscribers",
            API_KEY,
            Some(json!({"add": fans})),
        )
        .await;
    assert!(status == 200 || status == 204, "{status}");
    let topic = create(
        &server,
        json!({"name": "match day", "message": {"title": "Goal!"}, "audience": {"topic": "match"}}),
    )
    .await;
    act(&server, &topic, "start").await;
    let c = campaign_until(&server, &topic, "completed", |c| {
        c["state"] == "completed" && c["channels"]["push"]["pending"] == 0
    })
    .await;
    assert_eq!(
        (c["done"].clone(), c["channels"]["push"]["sent"].clone()),
        (json!(30), json!(30))
    );
    assert!(
        server.inbox("loner").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let everyone = create(
        &server,
        json!({"name": "all hands", "message": {"title": "Hello all"}, "audience": "all"}),
    )
    .await;
    act(&server, &everyone, "start").await;
    let c = campaign_until(&server, &everyone, "completed", |c| {
        c["state"] == "completed" && c["channels"]["push"]["pending"] == 0
    })
    .await;
    assert_eq!(c["channels"]["push"]["sent"], 31, "every device owner: {c}");
    assert_eq!(titles(&server.inbox("loner").await), ["Hello all"]);
    assert_eq!(
        titles(&server.inbox("nobody-yet").await),
        ["Hello all"],
        "the global feed"
    );
    let per_token = pushes_per_token(&fakes);
    assert_eq!(per_token["tok-sub00"], 2);
    assert_eq!(per_token["tok-loner"], 1);
}

async fn an_ended_campaigns_list_is_deleted_and_its_count_kept(engine: Engine) {
    let Env {
        server,
        fakes: _fakes,
        redis: _redis,
    } = start(engine, "[workers]\ncampaign_recipients_keep_seconds = 1\n").await;
    let id = create(
        &server,
        // Push too: started by hand, its push is staged as it is sent (nobody has a device).
        json!({"name": "short-lived list", "message": {"title": "Hi", "channels": ["inbox", "push"]}}),
    )
    .await;
    let (status, _) = upload(&server, &id, "text/plain", "kim\nlee\nmay\n".into()).await;
    assert_eq!(status, 200);
    assert_eq!(act(&server, &id, "start").await.0, 200);
    let done = campaign_until(&server, &id, "completion", |c| c["state"] == "completed").await;
    assert_eq!(done["recipients_dropped"], false, "kept for a second first");
    let dropped = campaign_until(&server, &id, "the list's deletion", |c| {
        c["recipients_dropped"] == true
    })
    .await;
    assert_eq!(dropped["recipients"], 3, "the count stays in the report");
    assert_eq!(
        dropped["push_staged"], 0,
        "nothing was staged before the start"
    );
    assert_eq!(
        dropped["stages_dropped"], true,
        "the stages made as it sent"
    );
    assert_eq!(dropped["done"], 3);
    // The inbox entries stay: only the list went.
    let (_, inbox) = server.get_as("/v1/users/lee/notifications", API_KEY).await;
    assert_eq!(inbox["items"].as_array().map(Vec::len), Some(1), "{inbox}");
}

/// A list campaign's inbox and live delivery is one shared entry: listed users see it at once,
/// each as their preferences say; unlisted users neither see it nor can touch it.
async fn a_list_campaigns_shared_entry_respects_lists_and_preferences(engine: Engine) {
    let Env {
        server,
        fakes,
        redis: _redis,
    } = start(engine, "").await;
    let (status, body) = server
        .put_as("/v1/categories/promo", API_KEY, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    for (user, prefs) in [
        (
            "noinbox",
            json!({"categories": {"promo": {"inbox": false}}}),
        ),
        (
            "nolive",
            json!({"categories": {"promo": {"realtime": false}}}),
        ),
    ] {
        let (status, body) = server
            .put_as("/v1/me/preferences", &server.token(user), prefs)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    devices(&server, &["amy".to_owned()]).await;
    let stream = |user: &str| {
        let (url, token) = (server.url("/v1/me/stream"), server.token(user));
        async move {
            let mut sse = SseClient::connect(&url, Some(&token), None).await;
            assert_eq!(sse.next_event(Duration::from_secs(5)).await.event, "ready");
            sse
        }
    };
    let (mut amy, mut nolive, mut zed) = (
        stream("amy").await,
        stream("nolive").await,
        stream("zed").await,
    );

    let id = create(
        &server,
        json!({"name": "spring sale", "message": {"title": "Sale", "category": "promo",
               "channels": ["inbox", "realtime", "push"]}}),
    )
    .await;
    upload(
        &server,
        &id,
        "text/plain",
        "amy\nbob\nnoinbox\nnolive\n".into(),
    )
    .await;
    assert_eq!(act(&server, &id, "start").await.0, 200);
    let done = campaign_until(&server, &id, "completion", |c| {
        c["state"] == "completed" && c["channels"]["push"]["pending"] == 0
    })
    .await;
    assert_eq!(done["channels"]["inbox"]["delivered"], 3, "{done}");
    assert_eq!(done["channels"]["inbox"]["muted"], 1, "{done}");
    assert_eq!(done["channels"]["realtime"]["delivered"], 3, "{done}");
    assert_eq!(done["channels"]["realtime"]["muted"], 1, "{done}");
    assert_eq!(
        done["channels"]["push"]["sent"], 1,
        "the walk still pushes: {done}"
    );
    assert!(fakes.fcm.wait_for(1, Duration::from_secs(5)).await);

    for user in ["amy", "bob", "nolive"] {
        let inbox = server.inbox(user).await;
        assert_eq!(titles(&inbox), ["Sale"], "{user}: {inbox}");
        assert_eq!(inbox["unread"], 1, "{user}");
    }
    for user in ["noinbox", "zed"] {
        let inbox = server.inbox(user).await;
        assert!(titles(&inbox).is_empty(), "{user}: {inbox}");
        assert_eq!(inbox["unread"], 0, "{user}");
    }
    let muted = server
        .get_as("/v1/users/noinbox/deliveries", API_KEY)
        .await
        .1;
    assert!(
        muted["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["channel"] == "inbox" && d["reason"] == "muted"),
        "{muted}"
    );

    // Live: amy hears it; nolive and zed do not (their next event is a later one of their own).
    let e = amy
        .next_named("notification", Duration::from_secs(5))
        .await
        .json();
    assert_eq!(
        (e["notification"]["title"].clone(), e["unread"].clone()),
        (json!("Sale"), json!(1))
    );
    for user in ["nolive", "zed"] {
        server
            .publish_ok(json!({"to": {"users": [user]}, "title": format!("for {user}")}))
            .await;
    }
    for (user, sse) in [("nolive", &mut nolive), ("zed", &mut zed)] {
        let e = sse
            .next_named("notification", Duration::from_secs(5))
            .await
            .json();
        assert_eq!(
            e["notification"]["title"],
            format!("for {user}"),
            "{user}: {e}"
        );
    }
    let zed_inbox = server.inbox("zed").await;
    let campaign_entry = server.inbox("amy").await["items"][0]["id"].clone();
    assert_eq!(titles(&zed_inbox), ["for zed"]);
    let (status, _) = server
        .post_as(
            &format!(
                "/v1/me/notifications/{}/read",
                campaign_entry.as_str().unwrap()
            ),
            &server.token("zed"),
            None,
        )
        .await;
    assert_eq!(status, 404, "an unlisted user cannot mark it read");
    let (status, body) = server
        .post_as(
            &format!(
                "/v1/me/notifications/{}/read",
                campaign_entry.as_str().unwrap()
            ),
            &server.token("amy"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.inbox("amy").await["unread"], 0);
    assert_eq!(server.inbox("bob").await["unread"], 1);
}

async fn a_staged_campaigns_push_follows_policy_and_provider_answers(engine: Engine) {
    // Ended campaigns are looked at every second.
    let Env {
        server,
        fakes,
        redis: _redis,
    } = start(engine, "[workers]\ncampaign_recipients_keep_seconds = 1\n").await;
    let users: Vec<String> = (0..40).map(|i| format!("stg{i:02}")).collect();
    devices(&server, &users).await;
    // stg00 turned push off, stg01 is in quiet hours until 6 s from now (past send_at),
    // stg02's token is dead at FCM.
    let prefs = |user: &str, body: Value| {
        let token = server.token(user);
        let server = &server;
        async move {
            let (status, _) = server.put_as("/v1/me/preferences", &token, body).await;
            assert_eq!(status, 200);
        }
    };
    prefs("stg00", json!({"channels": {"push": false}})).await;
    prefs(
        "stg01",
        json!({"timezone": "UTC", "quiet_hours": {
            "start": utc_time_of_day(Duration::from_secs(60), true),
            "end": utc_time_of_day(Duration::from_secs(6), false),
        }}),
    )
    .await;
    fakes.fcm.behaviour().mark_dead("tok-stg02");
    let send_at_ms = herald_core::time::now_ms() + 2500;
    let id = create(
        &server,
        json!({"name": "staged", "message": {"title": "Staged", "channels": ["push"]},
               "send_at": herald_core::time::rfc3339_ms(send_at_ms)}),
    )
    .await;
    upload(&server, &id, "text/plain", users.join("\n")).await;
    let c = campaign_until(&server, &id, "push staged before send_at", |c| {
        c["push_staged"] == 40
    })
    .await;
    assert_eq!(c["state"], "scheduled", "staged ahead: {c}");
    assert!(
        fakes.fcm.received().is_empty(),
        "nothing sent before its time"
    );
    // A device registered after its user was staged is not seen by this campaign.
    register_token(&server, "stg05", "fcm", "tok-late-stg05").await;
    // Two transient failures at the first sends: those go to the outbox and are retried.
    fakes
        .fcm
        .behaviour()
        .fail_next(2, herald_fakes::Failure::status(503).retry_after(0));

    let c = campaign_until(&server, &id, "completed, quiet hours over", |c| {
        c["state"] == "completed" && c["channels"]["push"]["sent"] == 38
    })
    .await;
    // Quiet hours end 5 to 6 s after they were set, 2.5 s after send_at at the earliest.
    assert!(
        herald_core::time::now_ms() >= send_at_ms + 2000,
        "the quiet user's push waited for the end of quiet hours"
    );
    let push = &c["channels"]["push"];
    assert_eq!(push["muted"], 1, "{c}");
    assert_eq!(push["quiet_deferred"], 1, "{c}");
    assert_eq!(push["pruned"], 1, "{c}");
    assert_eq!(push["failed"], 0, "{c}");
    assert_eq!(push["pending"], 0, "{c}");
    let per_token = pushes_per_token(&fakes);
    assert!(!per_token.contains_key("tok-stg00"), "push turned off");
    assert!(
        !per_token.contains_key("tok-late-stg05"),
        "registered after staging"
    );
    for user in &users[3..] {
        assert_eq!(
            per_token.get(&format!("tok-{user}")),
            Some(&1),
            "{user} once"
        );
    }
    assert_eq!(per_token.get("tok-stg01"), Some(&1));
    // The dead token's device was removed.
    let (_, devices) = server.get_as("/v1/users/stg02/devices", API_KEY).await;
    assert_eq!(
        devices["devices"].as_array().map(Vec::len),
        Some(0),
        "{devices}"
    );
    // Ended, its stages go (the deferred send was in the outbox since send_at); the report stays.
    let c = campaign_until(&server, &id, "the stages' deletion", |c| {
        c["stages_dropped"] == true
    })
    .await;
    assert_eq!(c["push_staged"], 40, "{c}");
    assert_eq!(c["channels"]["push"]["sent"], 38, "{c}");
}
