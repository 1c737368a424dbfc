//! The storage contract's test suite, written once and run against every engine.
//!
//! An engine's tests call [`storage_contract_tests!`](crate::storage_contract_tests) with an async
//! function that builds a [`Harness`] for given [`Limits`]; the macro makes one test per case.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_core::{Cursor, EventBody, Notification, Position, Priority, Recipients};

use crate::*;

mod campaigns;
mod channels;
mod devices;
mod outbox;
mod policy;

pub use campaigns::*;
pub use channels::*;
pub use devices::*;
pub use outbox::*;
pub use policy::*;

/// The engine-neutral limits a case may need to be small.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub inbox_max: usize,
    pub global_max: usize,
    pub changes_max: usize,
    pub devices_per_user: usize,
    pub dead_letters_max: usize,
    pub decisions_per_user: usize,
    pub channels: ChannelOptions,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            inbox_max: 1000,
            global_max: 1000,
            changes_max: 200,
            devices_per_user: 20,
            dead_letters_max: 1000,
            decisions_per_user: 50,
            channels: ChannelOptions::default(),
        }
    }
}

/// Owns one engine instance and its data; can restart it on the same data.
#[async_trait]
pub trait Harness: Send {
    fn store(&self) -> Arc<dyn Store>;
    /// Drops the store and opens it again on the same data, as after a crash or restart.
    /// Callers must not hold a handle from [`store`](Harness::store) across a restart.
    async fn restart(&mut self);
}

/// Makes one `#[tokio::test]` per contract case. `$make` is `async fn(Limits) -> impl Harness`.
#[macro_export]
macro_rules! storage_contract_tests {
    ($make:path) => {
        $crate::storage_contract_tests!(@cases $make;
            accept_stores_and_queues,
            idempotency_keys_dedupe_and_conflict,
            accepted_work_survives_restart,
            high_lane_is_served_first,
            checkpoints_survive_restart,
            deliver_is_idempotent,
            inbox_pages_newest_first_without_gaps,
            read_all_and_archive_keep_counts_right,
            users_cannot_touch_each_others_entries,
            global_feed_is_stored_once_and_read_by_everyone,
            global_and_own_entries_merge_in_pages,
            inbox_is_trimmed_to_its_limit,
            global_feed_is_trimmed_to_its_limit,
            replay_returns_what_was_missed,
            replay_reports_gaps,
            live_events_follow_commit_order,
            topics_subscribe_and_page,
            concurrent_deliveries_to_one_user_count_exactly,
            purge_drops_expired_content,
            live_only_entries_stay_out_of_the_inbox,
            devices_register_list_and_remove,
            registering_a_known_address_moves_the_device,
            devices_per_user_keeps_the_most_recent,
            devices_of_many_users_in_one_call,
            prune_device_removes_it_whoever_owns_it,
            enqueue_push_is_idempotent,
            next_push_serves_high_lanes_first_and_only_when_due,
            handed_out_push_tasks_wait_for_finish_or_restart,
            concurrent_next_push_never_hands_out_a_task_twice,
            retry_reschedules_with_one_more_attempt,
            finished_sends_are_counted_in_the_delivery_report,
            dead_letters_keep_the_newest,
            categories_are_kept_listed_and_removed,
            preferences_are_per_user_and_kept,
            caps_allow_up_to_the_limit_within_the_window,
            caps_count_every_charge_or_none,
            caps_hold_exactly_under_concurrency,
            collapse_claims_name_the_notification_replaced,
            archive_if_unread_spares_read_entries,
            decisions_are_counted_and_logged_per_user,
            campaigns_are_kept_listed_and_found_while_active,
            campaign_changes_are_compare_and_set,
            recipients_are_listed_once_in_upload_order,
            concurrent_uploads_never_share_a_position,
            dropped_recipient_lists_keep_their_count,
            shared_campaign_entries_reach_only_listed_users,
            push_stages_are_kept_once_count_each_send_once_and_are_dropped,
            device_owners_are_walked_in_id_order,
            channel_messages_get_positions_in_order,
            channel_history_is_trimmed_by_count,
            channel_history_expires_by_age,
            channel_uploads_are_chunked_and_discardable,
            channel_publishes_are_announced,
            channel_positions_survive_restart,
            concurrent_channel_publishes_never_share_a_position,
            idle_channels_are_forgotten,
            expired_messages_hide_no_fresh_ones
        );
    };
    (@cases $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::contract::$case(|limits| $make(limits)).await;
            }
        )*
    };
}

/// A notification as a publish would store it, for tests.
pub fn note(title: &str, to: Recipients, priority: Priority) -> Notification {
    // Ids are ULIDs; a strictly increasing generator keeps ordering deterministic in fast loops.
    let id = ulid::Generator::new().generate().expect("ulid").to_string();
    Notification {
        id,
        to,
        title: title.to_owned(),
        body: String::new(),
        category: None,
        data: Default::default(),
        priority,
        ttl_seconds: None,
        channels: Default::default(),
        created_at: herald_core::time::now_ms(),
        idempotency_key: None,
        collapse_key: None,
        dry_run: false,
    }
}

fn to_users(users: &[&str]) -> Recipients {
    Recipients::Users(users.iter().map(|u| u.to_string()).collect())
}

/// Accepts a new notification, for tests.
pub async fn accepted(store: &dyn Store, n: Notification) -> Arc<Notification> {
    match store
        .accept(Accept {
            notification: n,
            idempotency: None,
        })
        .await
        .unwrap()
    {
        Accepted::Created(n) => n,
        other => panic!("expected a new notification, got {other:?}"),
    }
}

/// Accepts a notification and delivers it to `users`, as the fan-out worker would.
async fn publish_to(store: &dyn Store, title: &str, users: &[&str]) -> Arc<Notification> {
    let n = accepted(store, note(title, to_users(users), Priority::Normal)).await;
    let deliveries: Vec<_> = users
        .iter()
        .map(|u| Delivery {
            user: u.to_string(),
            notification: n.clone(),
            flags: EntryFlags::BOTH,
        })
        .collect();
    store.deliver(&deliveries).await.unwrap();
    n
}

async fn publish_all(store: &dyn Store, title: &str) -> Arc<Notification> {
    let n = accepted(store, note(title, Recipients::All, Priority::Normal)).await;
    store
        .deliver_global(n.clone(), EntryFlags::BOTH)
        .await
        .unwrap();
    n
}

async fn titles(store: &dyn Store, user: &str) -> Vec<String> {
    let page = store.inbox_page(user, Cursor::START, 1000).await.unwrap();
    page.items
        .iter()
        .map(|i| i.notification.title.clone())
        .collect()
}

async fn drain_jobs(store: &dyn Store) -> Vec<Job> {
    let jobs = store
        .next_jobs(1000, Duration::from_millis(50))
        .await
        .unwrap();
    let ids: Vec<_> = jobs.iter().map(|j| j.id.clone()).collect();
    store.finish_jobs(&ids).await.unwrap();
    jobs
}

pub async fn accept_stores_and_queues<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let n = accepted(&*store, note("hello", to_users(&["a"]), Priority::Normal)).await;
    let stored = store.notification(&n.id).await.unwrap().expect("stored");
    assert_eq!(*stored, *n);
    assert_eq!(store.queue_depths().await.unwrap(), [0, 1, 0]);
    let jobs = store
        .next_jobs(10, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].notification.id, n.id);
    assert_eq!(jobs[0].lane, Priority::Normal);
    store.finish_jobs(&[jobs[0].id.clone()]).await.unwrap();
    assert!(
        store
            .next_jobs(10, Duration::from_millis(10))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .notification("01ARZ3NDEKTSV4RRFFQ69G5FAV")
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn idempotency_keys_dedupe_and_conflict<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let idem = |fp: &str| {
        Some(Idempotency {
            key: "order-42".into(),
            fingerprint: fp.into(),
        })
    };
    let first = note("one", to_users(&["a"]), Priority::Normal);
    let first_id = first.id.clone();
    let r = store
        .accept(Accept {
            notification: first,
            idempotency: idem("fp1"),
        })
        .await
        .unwrap();
    assert!(matches!(r, Accepted::Created(_)));
    let again = note("one", to_users(&["a"]), Priority::Normal);
    let r = store
        .accept(Accept {
            notification: again,
            idempotency: idem("fp1"),
        })
        .await
        .unwrap();
    assert_eq!(
        r,
        Accepted::Duplicate {
            id: first_id.clone()
        }
    );
    let other = note("two", to_users(&["a"]), Priority::Normal);
    let other_id = other.id.clone();
    match store
        .accept(Accept {
            notification: other,
            idempotency: idem("fp2"),
        })
        .await
    {
        Err(StoreError::IdempotencyConflict { id }) => assert_eq!(id, first_id),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(
        store.notification(&other_id).await.unwrap().is_none(),
        "a conflicting request changes nothing"
    );
    assert_eq!(
        drain_jobs(&*store).await.len(),
        1,
        "one job, however often the key was sent"
    );
}

pub async fn accepted_work_survives_restart<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut h = make(Limits::default()).await;
    let n = accepted(
        &*h.store(),
        note("durable", to_users(&["a"]), Priority::Low),
    )
    .await;
    let idem = Some(Idempotency {
        key: "k".into(),
        fingerprint: "f".into(),
    });
    let keyed = note("keyed", to_users(&["a"]), Priority::Normal);
    let keyed_id = keyed.id.clone();
    h.store()
        .accept(Accept {
            notification: keyed,
            idempotency: idem.clone(),
        })
        .await
        .unwrap();
    h.restart().await;
    let store = h.store();
    assert_eq!(*store.notification(&n.id).await.unwrap().unwrap(), *n);
    let jobs = drain_jobs(&*store).await;
    let mut ids: Vec<_> = jobs.iter().map(|j| j.notification.id.clone()).collect();
    ids.sort();
    let mut expected = vec![n.id.clone(), keyed_id.clone()];
    expected.sort();
    assert_eq!(ids, expected, "unfinished jobs come back after a restart");
    let retry = note("keyed", to_users(&["a"]), Priority::Normal);
    let r = store
        .accept(Accept {
            notification: retry,
            idempotency: idem,
        })
        .await
        .unwrap();
    assert_eq!(
        r,
        Accepted::Duplicate { id: keyed_id },
        "idempotency keys survive a restart"
    );
    drop(store);
    h.restart().await;
    assert!(
        drain_jobs(&*h.store()).await.is_empty(),
        "finished jobs do not come back"
    );
}

pub async fn high_lane_is_served_first<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    for _ in 0..3 {
        accepted(&*store, note("bulk", to_users(&["a"]), Priority::Low)).await;
    }
    accepted(&*store, note("normal", to_users(&["a"]), Priority::Normal)).await;
    let first = store.next_jobs(2, Duration::ZERO).await.unwrap();
    assert_eq!(
        first.iter().map(|j| j.lane).collect::<Vec<_>>(),
        [Priority::Normal, Priority::Low]
    );
    accepted(&*store, note("urgent", to_users(&["a"]), Priority::High)).await;
    let next = store.next_jobs(1, Duration::ZERO).await.unwrap();
    assert_eq!(
        next[0].notification.title, "urgent",
        "a high job that arrives mid-bulk is taken next"
    );
    assert_eq!(store.queue_depths().await.unwrap(), [0, 0, 2]);
}

pub async fn checkpoints_survive_restart<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut h = make(Limits::default()).await;
    accepted(
        &*h.store(),
        note("topic", Recipients::Topic("t".into()), Priority::Normal),
    )
    .await;
    let job = h
        .store()
        .next_jobs(1, Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(job.cursor, None);
    h.store().checkpoint_job(&job.id, "user-500").await.unwrap();
    h.restart().await;
    let job = h
        .store()
        .next_jobs(1, Duration::from_millis(50))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(job.cursor.as_deref(), Some("user-500"));
}

pub async fn deliver_is_idempotent<H: Harness, F: Future<Output = H>>(make: impl Fn(Limits) -> F) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let n = accepted(
        &*store,
        note("once", to_users(&["a", "b"]), Priority::Normal),
    )
    .await;
    let d = |u: &str| Delivery {
        user: u.into(),
        notification: n.clone(),
        flags: EntryFlags::BOTH,
    };
    let first = store.deliver(&[d("a"), d("b")]).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|d| (d.user.as_str(), d.seq))
            .collect::<Vec<_>>(),
        [("a", 1), ("b", 1)]
    );
    assert_eq!(store.unread("b").await.unwrap(), 1);
    let again = store.deliver(&[d("a"), d("b"), d("a")]).await.unwrap();
    assert!(
        again.is_empty(),
        "a retried delivery writes nothing: {again:?}"
    );
    assert_eq!(titles(&*store, "a").await, ["once"]);
    assert_eq!(store.unread("a").await.unwrap(), 1);
}

pub async fn inbox_pages_newest_first_without_gaps<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    for i in 0..25 {
        publish_to(&*store, &format!("n{i:02}"), &["a"]).await;
    }
    let mut seen = Vec::new();
    let mut cursor = Cursor::START;
    let mut pages = 0;
    loop {
        let page = store.inbox_page("a", cursor, 10).await.unwrap();
        assert_eq!(page.unread, 25);
        seen.extend(page.items.iter().map(|i| i.notification.title.clone()));
        pages += 1;
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let expected: Vec<_> = (0..25).rev().map(|i| format!("n{i:02}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    let empty = store.inbox_page("nobody", Cursor::START, 10).await.unwrap();
    assert!(empty.items.is_empty() && empty.next.is_none() && empty.unread == 0);
}

pub async fn read_all_and_archive_keep_counts_right<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let a = publish_to(&*store, "a", &["u"]).await;
    let b = publish_to(&*store, "b", &["u"]).await;
    let c = publish_to(&*store, "c", &["u"]).await;
    assert_eq!(store.unread("u").await.unwrap(), 3);
    let ChangeOutcome::Changed(change) = store.mark_read("u", &a.id).await.unwrap() else {
        panic!("not changed")
    };
    assert_eq!(change.unread, 2);
    assert_eq!(
        store.mark_read("u", &a.id).await.unwrap(),
        ChangeOutcome::Unchanged { unread: 2 }
    );
    let ChangeOutcome::Changed(change) = store.archive("u", &b.id).await.unwrap() else {
        panic!("not archived")
    };
    assert_eq!(
        change.unread, 1,
        "archiving an unread entry lowers the count"
    );
    assert_eq!(titles(&*store, "u").await, ["c", "a"]);
    assert_eq!(
        store.archive("u", &b.id).await.unwrap(),
        ChangeOutcome::NotFound
    );
    let all = store.mark_all_read("u").await.unwrap();
    assert_eq!(all.unread, 0);
    let page = store.inbox_page("u", Cursor::START, 10).await.unwrap();
    assert!(page.items.iter().all(|i| i.read));
    let d = publish_to(&*store, "d", &["u"]).await;
    assert_eq!(
        store.unread("u").await.unwrap(),
        1,
        "read-all does not cover later entries"
    );
    let page = store.inbox_page("u", Cursor::START, 10).await.unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|i| (i.notification.id.clone(), i.read))
            .collect::<Vec<_>>()[0],
        (d.id.clone(), false)
    );
    let ChangeOutcome::Changed(change) = store.archive("u", &c.id).await.unwrap() else {
        panic!()
    };
    assert_eq!(change.unread, 1, "archiving a read entry keeps the count");
}

pub async fn users_cannot_touch_each_others_entries<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let n = publish_to(&*store, "private", &["alice"]).await;
    assert_eq!(
        store.mark_read("mallory", &n.id).await.unwrap(),
        ChangeOutcome::NotFound
    );
    assert_eq!(
        store.archive("mallory", &n.id).await.unwrap(),
        ChangeOutcome::NotFound
    );
    assert!(titles(&*store, "mallory").await.is_empty());
    assert_eq!(store.unread("alice").await.unwrap(), 1);
    assert_eq!(titles(&*store, "alice").await, ["private"]);
}

pub async fn global_feed_is_stored_once_and_read_by_everyone<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let n = publish_all(&*store, "to everyone").await;
    let again = store
        .deliver_global(n.clone(), EntryFlags::BOTH)
        .await
        .unwrap();
    assert_eq!(
        again, 1,
        "a second global delivery of the same notification is a no-op"
    );
    for user in ["a", "b", "first-seen-later"] {
        assert_eq!(titles(&*store, user).await, ["to everyone"], "{user}");
        assert_eq!(store.unread(user).await.unwrap(), 1, "{user}");
    }
    assert!(matches!(
        store.mark_read("a", &n.id).await.unwrap(),
        ChangeOutcome::Changed(Change { unread: 0, .. })
    ));
    assert_eq!(store.unread("a").await.unwrap(), 0);
    assert_eq!(
        store.unread("b").await.unwrap(),
        1,
        "one user's read does not touch another's"
    );
    assert!(matches!(
        store.archive("b", &n.id).await.unwrap(),
        ChangeOutcome::Changed(Change { unread: 0, .. })
    ));
    assert!(titles(&*store, "b").await.is_empty());
    assert_eq!(titles(&*store, "a").await, ["to everyone"]);
    store.mark_all_read("c").await.unwrap();
    assert_eq!(store.unread("c").await.unwrap(), 0);
    publish_all(&*store, "second").await;
    assert_eq!(store.unread("c").await.unwrap(), 1);
    assert_eq!(store.head("c").await.unwrap().global, 2);
}

pub async fn global_and_own_entries_merge_in_pages<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let mut expected = Vec::new();
    for i in 0..12 {
        let title = format!("m{i:02}");
        if i % 3 == 0 {
            publish_all(&*store, &title).await;
        } else {
            publish_to(&*store, &title, &["u"]).await;
        }
        expected.push(title);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    expected.reverse();
    let mut seen = Vec::new();
    let mut cursor = Cursor::START;
    loop {
        let page = store.inbox_page("u", cursor, 5).await.unwrap();
        assert_eq!(page.unread, 12);
        seen.extend(page.items.iter().map(|i| i.notification.title.clone()));
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(seen, expected);
}

pub async fn inbox_is_trimmed_to_its_limit<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits {
        inbox_max: 5,
        ..Limits::default()
    })
    .await;
    let store = h.store();
    let first = publish_to(&*store, "n0", &["u"]).await;
    store.mark_read("u", &first.id).await.unwrap();
    for i in 1..8 {
        publish_to(&*store, &format!("n{i}"), &["u"]).await;
    }
    assert_eq!(titles(&*store, "u").await, ["n7", "n6", "n5", "n4", "n3"]);
    assert_eq!(
        store.unread("u").await.unwrap(),
        5,
        "dropped unread entries leave the count"
    );
    assert_eq!(
        store.mark_read("u", &first.id).await.unwrap(),
        ChangeOutcome::NotFound
    );
}

pub async fn global_feed_is_trimmed_to_its_limit<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut h = make(Limits {
        global_max: 3,
        ..Limits::default()
    })
    .await;
    let first = publish_all(&*h.store(), "g0").await;
    h.store().mark_read("u", &first.id).await.unwrap();
    for i in 1..5 {
        publish_all(&*h.store(), &format!("g{i}")).await;
    }
    assert_eq!(titles(&*h.store(), "u").await, ["g4", "g3", "g2"]);
    assert_eq!(h.store().unread("u").await.unwrap(), 3);
    h.restart().await;
    assert_eq!(
        titles(&*h.store(), "u").await,
        ["g4", "g3", "g2"],
        "the global feed survives a restart"
    );
    assert_eq!(h.store().head("u").await.unwrap().global, 5);
}

pub async fn replay_returns_what_was_missed<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    publish_to(&*store, "seen", &["u"]).await;
    let at = store.head("u").await.unwrap();
    assert_eq!(at, Position::new(1, 0));
    let missed = publish_to(&*store, "missed", &["u"]).await;
    publish_all(&*store, "everyone").await;
    store.mark_read("u", &missed.id).await.unwrap();
    let Replay::Events { events, head } = store.replay("u", at, 100).await.unwrap() else {
        panic!("gap")
    };
    assert_eq!(head, Position::new(3, 1));
    let summary: Vec<_> = events
        .iter()
        .map(|e| match &e.body {
            EventBody::Notification { notification, read } => {
                format!("{}:{}:{}", e.seq, notification.title, read)
            }
            other => format!("{}:{}", e.seq, other.name()),
        })
        .collect();
    assert_eq!(summary, ["2:missed:true", "3:read", "1:everyone:false"]);
    let Replay::Events { events, .. } = store.replay("u", head, 100).await.unwrap() else {
        panic!("gap")
    };
    assert!(events.is_empty(), "nothing after the head");
    assert!(
        matches!(store.replay("u", at, 1).await.unwrap(), Replay::Gap { .. }),
        "more than max is a gap"
    );
}

pub async fn replay_reports_gaps<H: Harness, F: Future<Output = H>>(make: impl Fn(Limits) -> F) {
    let h = make(Limits {
        inbox_max: 3,
        changes_max: 2,
        ..Limits::default()
    })
    .await;
    let store = h.store();
    let old = store.head("u").await.unwrap();
    for i in 0..5 {
        publish_to(&*store, &format!("n{i}"), &["u"]).await;
    }
    assert!(
        matches!(
            store.replay("u", old, 100).await.unwrap(),
            Replay::Gap { .. }
        ),
        "trimmed history"
    );
    let recent = store.head("u").await.unwrap();
    assert!(matches!(
        store.replay("u", recent, 100).await.unwrap(),
        Replay::Events { .. }
    ));
    let ahead = Position::new(recent.user + 10, 0);
    assert!(
        matches!(
            store.replay("u", ahead, 100).await.unwrap(),
            Replay::Gap { .. }
        ),
        "a position from the future"
    );
    store.mark_all_read("u").await.unwrap();
    let after_first_change = store.head("u").await.unwrap();
    store.mark_all_read("u").await.unwrap();
    store.mark_all_read("u").await.unwrap();
    assert!(
        matches!(
            store.replay("u", recent, 100).await.unwrap(),
            Replay::Gap { .. }
        ),
        "trimmed change log"
    );
    assert!(matches!(
        store.replay("u", after_first_change, 100).await.unwrap(),
        Replay::Events { .. }
    ));
}

pub async fn live_events_follow_commit_order<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let mut live = store
        .live_events()
        .expect("first call hands out the receiver");
    assert!(store.live_events().is_none(), "only one consumer");
    async fn next(
        live: &mut tokio::sync::mpsc::Receiver<Live>,
    ) -> (Option<String>, u64, Option<u64>, &'static str) {
        let Live::Event(e) = tokio::time::timeout(Duration::from_secs(5), live.recv())
            .await
            .unwrap()
            .unwrap()
        else {
            panic!("no resync expected")
        };
        (
            e.user.as_deref().map(str::to_owned),
            e.seq,
            e.unread,
            e.body.name(),
        )
    }
    // Each step waits for its event: the user's feed and the global feed may live on different
    // shards, so only the order within each feed is promised, and causal order across them.
    publish_all(&*store, "y").await;
    assert_eq!(next(&mut live).await, (None, 1, None, "notification"));
    let n = publish_to(&*store, "x", &["u"]).await;
    assert_eq!(
        next(&mut live).await,
        (Some("u".into()), 1, Some(2), "notification")
    );
    store.mark_read("u", &n.id).await.unwrap();
    store.mark_all_read("u").await.unwrap();
    assert_eq!(
        next(&mut live).await,
        (Some("u".into()), 2, Some(1), "read")
    );
    assert_eq!(
        next(&mut live).await,
        (Some("u".into()), 3, Some(0), "read_all")
    );
}

pub async fn topics_subscribe_and_page<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let users: Vec<String> = (0..25).map(|i| format!("u{i:02}")).collect();
    assert_eq!(store.subscribe("news", &users).await.unwrap(), 25);
    assert_eq!(
        store.subscribe("news", &users[..5]).await.unwrap(),
        0,
        "already subscribed"
    );
    assert_eq!(store.subscribe("news-extra", &users[..1]).await.unwrap(), 1);
    assert_eq!(
        store
            .unsubscribe("news", &["u03".to_owned(), "zz".to_owned()])
            .await
            .unwrap(),
        1
    );
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .subscribers("news", after.as_deref(), 10)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        all.extend(page);
    }
    let expected: Vec<_> = users.iter().filter(|u| *u != "u03").cloned().collect();
    assert_eq!(all, expected, "topics never mix (news vs news-extra)");
    assert!(
        store
            .subscribers("nobody-here", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn concurrent_deliveries_to_one_user_count_exactly<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            publish_to(&*store, &format!("c{i}"), &["u"]).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.unread("u").await.unwrap(), 50);
    assert_eq!(store.head("u").await.unwrap().user, 50);
    assert_eq!(titles(&*store, "u").await.len(), 50);
}

pub async fn purge_drops_expired_content<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let n = publish_to(&*store, "old", &["u"]).await;
    let idem = Some(Idempotency {
        key: "k".into(),
        fingerprint: "f".into(),
    });
    store
        .accept(Accept {
            notification: note("keyed", to_users(&["u"]), Priority::Normal),
            idempotency: idem,
        })
        .await
        .unwrap();
    let nothing = store
        .purge_expired(herald_core::time::now_ms())
        .await
        .unwrap();
    assert_eq!(nothing, PurgeReport::default(), "nothing is old yet");
    let far_future = herald_core::time::now_ms() + 400 * 24 * 3600 * 1000;
    let report = store.purge_expired(far_future).await.unwrap();
    assert_eq!(report.notifications, 2);
    assert_eq!(report.idempotency_keys, 1);
    assert!(store.notification(&n.id).await.unwrap().is_none());
    assert!(
        titles(&*store, "u").await.is_empty(),
        "entries whose content is gone are not listed"
    );
}

pub async fn live_only_entries_stay_out_of_the_inbox<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let at = store.head("u").await.unwrap();
    let n = accepted(&*store, note("flash", to_users(&["u"]), Priority::Normal)).await;
    let live_only = EntryFlags {
        inbox: false,
        live: true,
    };
    store
        .deliver(&[Delivery {
            user: "u".into(),
            notification: n.clone(),
            flags: live_only,
        }])
        .await
        .unwrap();
    assert!(titles(&*store, "u").await.is_empty());
    assert_eq!(store.unread("u").await.unwrap(), 0);
    let Replay::Events { events, .. } = store.replay("u", at, 10).await.unwrap() else {
        panic!("gap")
    };
    assert_eq!(
        events.len(),
        1,
        "live-only entries are still replayed to reconnecting clients"
    );
    assert_eq!(
        store.mark_read("u", &n.id).await.unwrap(),
        ChangeOutcome::NotFound
    );
    let quiet = accepted(&*store, note("quiet", to_users(&["u"]), Priority::Normal)).await;
    let inbox_only = EntryFlags {
        inbox: true,
        live: false,
    };
    store
        .deliver(&[Delivery {
            user: "u".into(),
            notification: quiet,
            flags: inbox_only,
        }])
        .await
        .unwrap();
    assert_eq!(titles(&*store, "u").await, ["quiet"]);
    let Replay::Events { events, .. } = store.replay("u", at, 10).await.unwrap() else {
        panic!("gap")
    };
    assert_eq!(events.len(), 1, "inbox-only entries are not announced");
}
