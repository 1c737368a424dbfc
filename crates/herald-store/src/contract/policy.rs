//! Contract cases of delivery policy: categories, preferences, frequency caps, collapse keys
//! and the per-user decision log.

use std::future::Future;
use std::sync::Arc;

use herald_core::policy::{Cap, OverCap};
use herald_core::{Category, Channel, ChannelSet, Preferences, Priority, Reason};

use super::{Harness, Limits, publish_to};
use crate::*;

fn category(name: &str, opt_out: bool) -> Category {
    Category {
        name: name.to_owned(),
        description: format!("{name} notices"),
        channels: [Channel::Inbox, Channel::Push].into_iter().collect(),
        opt_out,
        caps: vec![Cap {
            limit: 3,
            window_seconds: 86400,
        }],
        over_cap: OverCap::Drop,
        priority: Some(Priority::High),
        ttl_seconds: Some(600),
        high_bypasses_quiet_hours: true,
        collapse_window_seconds: Some(60),
    }
}

fn prefs(json: serde_json::Value) -> Preferences {
    serde_json::from_value(json).unwrap()
}

fn charge(key: &str, limit: u32, window_ms: i64) -> CapCharge {
    CapCharge {
        key: key.to_owned(),
        limit,
        window_ms,
    }
}

fn cap_request(user: &str, notification: &str, charges: &[CapCharge]) -> CapRequest {
    CapRequest {
        user: user.to_owned(),
        notification: notification.to_owned(),
        charges: charges.to_vec(),
    }
}

fn claim(user: &str, key: &str, notification: &str, window_ms: i64) -> CollapseClaim {
    CollapseClaim {
        user: user.to_owned(),
        key: key.to_owned(),
        notification: notification.to_owned(),
        window_ms,
    }
}

pub async fn categories_are_kept_listed_and_removed<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut h = make(Limits::default()).await;
    let store = h.store();
    assert!(store.categories().await.unwrap().is_empty());
    let security = category("security", false);
    let news = Category {
        channels: ChannelSet::all(),
        ..category("news", true)
    };
    store.put_category(&security).await.unwrap();
    store.put_category(&news).await.unwrap();
    let changed = Category {
        description: "changed".into(),
        ..news.clone()
    };
    store.put_category(&changed).await.unwrap();
    assert_eq!(
        store.categories().await.unwrap(),
        [changed.clone(), security.clone()],
        "by name, a second put replaces"
    );
    drop(store);
    h.restart().await;
    let store = h.store();
    assert_eq!(
        store.categories().await.unwrap().len(),
        2,
        "kept across restarts"
    );
    assert!(store.delete_category("news").await.unwrap());
    assert!(!store.delete_category("news").await.unwrap());
    assert_eq!(store.categories().await.unwrap(), [security]);
}

pub async fn preferences_are_per_user_and_kept<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut h = make(Limits::default()).await;
    let store = h.store();
    let alice = prefs(serde_json::json!({
        "mute": true,
        "channels": {"push": false},
        "categories": {"news": {"inbox": false}},
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "timezone": "Europe/Paris"
    }));
    let bob = prefs(serde_json::json!({"channels": {"realtime": false}}));
    store.put_preferences("alice", &alice).await.unwrap();
    store.put_preferences("bob", &bob).await.unwrap();
    store
        .put_preferences("bob", &Preferences::default())
        .await
        .unwrap();
    drop(store);
    h.restart().await;
    let store = h.store();
    let users = ["nobody", "alice", "bob"].map(String::from);
    assert_eq!(
        store.preferences_of(&users).await.unwrap(),
        [None, Some(alice), Some(Preferences::default())],
        "in the order asked, None for users who never set any"
    );
    assert!(store.preferences_of(&[]).await.unwrap().is_empty());
}

pub async fn caps_allow_up_to_the_limit_within_the_window<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let now = 1_800_000_000_000;
    let daily = [charge("c:news:1", 3, 1000)];
    for (i, expected) in [true, true, true, false, false].into_iter().enumerate() {
        let got = store
            .take_caps(
                &[cap_request("u", &format!("n{i}"), &daily)],
                now + i as i64,
            )
            .await
            .unwrap();
        assert_eq!(got, [expected], "push {i}");
    }
    assert_eq!(
        store
            .take_caps(&[cap_request("u", "n1", &daily)], now + 10)
            .await
            .unwrap(),
        [true],
        "a notification already counted is allowed again, not counted twice"
    );
    assert_eq!(
        store
            .take_caps(&[cap_request("other", "n9", &daily)], now + 10)
            .await
            .unwrap(),
        [true],
        "counters are per user"
    );
    // n0 leaves the window at now + 1000: one slot frees up, then the next.
    let later = store
        .take_caps(
            &[
                cap_request("u", "n5", &daily),
                cap_request("u", "n6", &daily),
            ],
            now + 1000,
        )
        .await
        .unwrap();
    assert_eq!(later, [true, false], "a rolling window, in request order");
}

pub async fn caps_count_every_charge_or_none<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let now = 1_800_000_000_000;
    let news = charge("c:news:60", 2, 60_000);
    let overall = charge("all:60", 3, 60_000);
    let promo = charge("c:promo:60", 5, 60_000);
    let take = |user: &'static str, id: &'static str, charges: Vec<CapCharge>| {
        let store = store.clone();
        async move {
            store
                .take_caps(&[cap_request(user, id, &charges)], now)
                .await
                .unwrap()[0]
        }
    };
    assert!(take("u", "a", vec![news.clone(), overall.clone()]).await);
    assert!(take("u", "b", vec![news.clone(), overall.clone()]).await);
    assert!(
        !take("u", "c", vec![news.clone(), overall.clone()]).await,
        "the category cap is full"
    );
    assert!(
        take("u", "d", vec![promo.clone(), overall.clone()]).await,
        "the denied one did not count against the overall cap"
    );
    assert!(
        !take("u", "e", vec![promo.clone(), overall.clone()]).await,
        "the overall cap is full"
    );
    assert!(
        take("u", "f", vec![promo.clone()]).await,
        "the denied one did not count against the promo cap either"
    );
}

pub async fn caps_hold_exactly_under_concurrency<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let now = 1_800_000_000_000;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store: Arc<dyn Store> = store.clone();
            tokio::spawn(async move {
                let charges = [charge("c:news:86400", 3, 86_400_000)];
                store
                    .take_caps(&[cap_request("u", &format!("n{i}"), &charges)], now)
                    .await
                    .unwrap()[0]
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += u32::from(task.await.unwrap());
    }
    assert_eq!(allowed, 3, "50 racing pushes, a cap of 3");
}

pub async fn collapse_claims_name_the_notification_replaced<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut h = make(Limits::default()).await;
    let store = h.store();
    let now = 1_800_000_000_000;
    let window = 60_000;
    let first = store
        .claim_collapse(
            &[
                claim("u", "score", "a", window),
                claim("v", "score", "a", window),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(first, [None, None]);
    let second = store
        .claim_collapse(&[claim("u", "score", "b", window)], now + 1000)
        .await
        .unwrap();
    assert_eq!(second, [Some("a".to_owned())]);
    drop(store);
    h.restart().await;
    let store = h.store();
    assert_eq!(
        store
            .claim_collapse(&[claim("u", "score", "b", window)], now + 2000)
            .await
            .unwrap(),
        [Some("a".to_owned())],
        "claiming again (a retried fan-out) gives the same answer, after a restart too"
    );
    assert_eq!(
        store
            .claim_collapse(&[claim("u", "other-key", "c", window)], now + 2000)
            .await
            .unwrap(),
        [None],
        "keys are independent"
    );
    assert_eq!(
        store
            .claim_collapse(&[claim("u", "score", "d", window)], now + 1000 + window + 1)
            .await
            .unwrap(),
        [None],
        "past the window nothing is replaced"
    );
    assert_eq!(
        store
            .claim_collapse(&[claim("v", "score", "e", window)], now + window)
            .await
            .unwrap(),
        [Some("a".to_owned())],
        "the window includes its last millisecond"
    );
}

pub async fn archive_if_unread_spares_read_entries<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let a = publish_to(&*store, "a", &["u"]).await;
    let b = publish_to(&*store, "b", &["u"]).await;
    store.mark_read("u", &a.id).await.unwrap();
    assert_eq!(
        store.archive_if_unread("u", &a.id).await.unwrap(),
        ChangeOutcome::Unchanged { unread: 1 }
    );
    let ChangeOutcome::Changed(change) = store.archive_if_unread("u", &b.id).await.unwrap() else {
        panic!("the unread entry is archived")
    };
    assert_eq!(change.unread, 0);
    assert_eq!(
        store.archive_if_unread("u", &b.id).await.unwrap(),
        ChangeOutcome::NotFound
    );
    assert_eq!(
        store.archive_if_unread("mallory", &a.id).await.unwrap(),
        ChangeOutcome::NotFound
    );
    let page = store
        .inbox_page("u", herald_core::Cursor::START, 10)
        .await
        .unwrap();
    let ids: Vec<_> = page
        .items
        .iter()
        .map(|i| i.notification.id.clone())
        .collect();
    assert_eq!(ids, std::slice::from_ref(&a.id));
}

pub async fn decisions_are_counted_and_logged_per_user<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits {
        decisions_per_user: 3,
        ..Limits::default()
    })
    .await;
    let store = h.store();
    let count = |channel, reason, n| DecisionCount {
        notification: "n1".into(),
        channel,
        reason,
        n,
    };
    let record = |user: &str, i: i64| DecisionRecord {
        notification: format!("n{i}"),
        user: user.to_owned(),
        channel: Channel::Push,
        reason: Reason::Muted,
        detail: format!("decision {i}"),
        at: 1_000 + i,
    };
    store
        .record_decisions(
            &[
                count(Channel::Push, Reason::Muted, 2),
                count(Channel::Inbox, Reason::Delivered, 5),
            ],
            &[record("u", 1), record("u", 2), record("v", 1)],
        )
        .await
        .unwrap();
    store
        .record_decisions(
            &[
                count(Channel::Push, Reason::Muted, 1),
                count(Channel::Push, Reason::Capped, 4),
                count(Channel::Push, Reason::QuietDeferred, 1),
                count(Channel::Push, Reason::Collapsed, 1),
                count(Channel::Realtime, Reason::Expired, 3),
            ],
            &[record("u", 3), record("u", 4)],
        )
        .await
        .unwrap();
    let report = store.delivery_report("n1").await.unwrap();
    let push = &report["push"];
    assert_eq!(
        (push.muted, push.capped, push.quiet_deferred, push.collapsed),
        (3, 4, 1, 1)
    );
    assert_eq!(report["inbox"].delivered, 5);
    assert_eq!(report["realtime"].expired, 3);
    assert_eq!(push.pending(), 0, "policy counts are not sends");
    let details = |records: Vec<DecisionRecord>| -> Vec<String> {
        records.into_iter().map(|r| r.detail).collect()
    };
    assert_eq!(
        details(store.decisions("u", 10).await.unwrap()),
        ["decision 4", "decision 3", "decision 2"],
        "newest first, kept to decisions_per_user"
    );
    assert_eq!(
        details(store.decisions("u", 1).await.unwrap()),
        ["decision 4"]
    );
    assert_eq!(store.decisions("v", 10).await.unwrap(), [record("v", 1)]);
    assert!(store.decisions("nobody", 10).await.unwrap().is_empty());
}
