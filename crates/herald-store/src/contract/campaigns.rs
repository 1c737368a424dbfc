//! Contract cases of campaigns: records changed by compare-and-set, recipient lists that hold
//! each user once in upload order, and the device owners a push to everyone walks.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use herald_core::campaign::CampaignRequest;
use herald_core::device::device_id;
use herald_core::{Campaign, CampaignState, Device, Platform, Priority, Recipients};

use super::devices::device;
use super::{Harness, Limits, accepted, note};
use crate::*;

fn campaign(name: &str) -> Campaign {
    let request: CampaignRequest = serde_json::from_value(serde_json::json!({
        "name": name,
        "message": {"title": format!("{name} title"), "priority": "low"},
    }))
    .unwrap();
    let id = ulid::Generator::new().generate().expect("ulid").to_string();
    request.into_campaign(id, 1_800_000_000_000)
}

fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:05}")).collect()
}

pub async fn campaigns_are_kept_listed_and_found_while_active<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut h = make(Limits::default()).await;
    let store = h.store();
    let mut made = Vec::new();
    for name in ["first", "second", "third"] {
        let c = campaign(name);
        store.create_campaign(&c).await.unwrap();
        made.push(c);
        // ULIDs of different milliseconds, so the order is unambiguous.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert_eq!(
        store.campaign(&made[1].id).await.unwrap(),
        Some(made[1].clone())
    );
    assert_eq!(store.campaign("nope").await.unwrap(), None);
    let names = |list: Vec<Campaign>| list.into_iter().map(|c| c.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.campaigns(None, 10).await.unwrap()),
        ["third", "second", "first"],
        "newest first"
    );
    assert_eq!(
        names(store.campaigns(Some(&made[2].id), 1).await.unwrap()),
        ["second"]
    );
    let done = Campaign {
        state: CampaignState::Completed,
        ..made[0].clone()
    };
    assert!(store.update_campaign(&done).await.unwrap());
    drop(store);
    h.restart().await;
    let store = h.store();
    assert_eq!(
        names(store.active_campaigns().await.unwrap()),
        ["second", "third"],
        "oldest first, without finished ones; kept across restarts"
    );
    let stored = store.campaign(&made[0].id).await.unwrap().unwrap();
    assert_eq!(stored.state, CampaignState::Completed);
    assert_eq!(stored.version, 1);
}

pub async fn campaign_changes_are_compare_and_set<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let c = campaign("race");
    store.create_campaign(&c).await.unwrap();
    // Ten writers start from the same copy: exactly one wins.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store: Arc<dyn Store> = store.clone();
            let mut change = c.clone();
            change.owner = Some(format!("node-{i}"));
            change.state = CampaignState::Sending;
            tokio::spawn(async move { store.update_campaign(&change).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        won += u32::from(task.await.unwrap());
    }
    assert_eq!(won, 1);
    let stored = store.campaign(&c.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.state, CampaignState::Sending);
    assert!(
        !store.update_campaign(&c).await.unwrap(),
        "a stale copy changes nothing"
    );
    let next = Campaign {
        done: 42,
        ..stored.clone()
    };
    assert!(store.update_campaign(&next).await.unwrap());
    assert_eq!(store.campaign(&c.id).await.unwrap().unwrap().done, 42);
    let ghost = campaign("never created");
    assert!(!store.update_campaign(&ghost).await.unwrap());
    assert_eq!(store.campaign(&ghost.id).await.unwrap(), None);
}

pub async fn recipients_are_listed_once_in_upload_order<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut h = make(Limits::default()).await;
    let store = h.store();
    let (a, b) = (campaign("a"), campaign("b"));
    let list = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        store
            .add_recipients(&a.id, &list(&["ann", "bob", "ann", "cat"]))
            .await
            .unwrap(),
        RecipientsAdded {
            added: 3,
            duplicates: 1
        }
    );
    assert_eq!(
        store
            .add_recipients(&a.id, &list(&["cat", "dan"]))
            .await
            .unwrap(),
        RecipientsAdded {
            added: 1,
            duplicates: 1
        }
    );
    store.add_recipients(&b.id, &list(&["dan"])).await.unwrap();
    drop(store);
    h.restart().await;
    let store = h.store();
    assert_eq!(store.recipient_count(&a.id).await.unwrap(), 4);
    assert_eq!(store.recipient_count(&b.id).await.unwrap(), 1);
    assert_eq!(store.recipient_count("none").await.unwrap(), 0);
    assert_eq!(
        store.recipients(&a.id, 0, 10).await.unwrap(),
        list(&["ann", "bob", "cat", "dan"])
    );
    assert_eq!(store.recipients(&a.id, 2, 1).await.unwrap(), list(&["cat"]));
    assert!(store.recipients(&a.id, 4, 10).await.unwrap().is_empty());
    assert!(store.add_recipients(&a.id, &[]).await.unwrap() == RecipientsAdded::default());

    // One large call whose repeats lie far apart (engines may work in slices of it).
    let c = campaign("c");
    let mut many = users("m", 2_000);
    many.extend(users("m", 500));
    many.insert(1_500, "m00001".into());
    assert_eq!(
        store.add_recipients(&c.id, &many).await.unwrap(),
        RecipientsAdded {
            added: 2_000,
            duplicates: 501
        }
    );
    assert_eq!(
        store.recipients(&c.id, 0, 5_000).await.unwrap(),
        users("m", 2_000)
    );
}

pub async fn concurrent_uploads_never_share_a_position<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let c = campaign("big");
    let tasks: Vec<_> = ["x", "y", "z"]
        .into_iter()
        .map(|prefix| {
            let store: Arc<dyn Store> = store.clone();
            let id = c.id.clone();
            tokio::spawn(async move {
                for chunk in users(prefix, 3000).chunks(500) {
                    store.add_recipients(&id, chunk).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.recipient_count(&c.id).await.unwrap(), 9000);
    let mut seen = HashSet::new();
    let mut from = 0;
    loop {
        let page = store.recipients(&c.id, from, 2048).await.unwrap();
        if page.is_empty() {
            break;
        }
        from += page.len() as u64;
        seen.extend(page);
    }
    assert_eq!(
        (from, seen.len()),
        (9000, 9000),
        "every user at one position"
    );
}

pub async fn device_owners_are_walked_in_id_order<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let device = |user: &str, token: &str| device(user, token, 1_000);
    for (user, token) in [
        ("carl", "t1"),
        ("abby", "t2"),
        ("abby", "t3"),
        ("bert", "t4"),
    ] {
        store.register_device(device(user, token)).await.unwrap();
    }
    let owners = store.device_owners(None, 10).await.unwrap();
    assert_eq!(owners, ["abby", "bert", "carl"]);
    assert_eq!(
        store.device_owners(Some("abby"), 1).await.unwrap(),
        ["bert"]
    );
    assert!(
        store
            .device_owners(Some("carl"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .remove_device("bert", &device_id(Platform::Fcm, "t4"))
        .await
        .unwrap();
    // A device moving to another user moves its owner too.
    store.register_device(device("dora", "t1")).await.unwrap();
    assert_eq!(
        store.device_owners(None, 10).await.unwrap(),
        ["abby", "dora"]
    );
}

pub async fn dropped_recipient_lists_keep_their_count<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let (a, b) = (campaign("a"), campaign("b"));
    store
        .add_recipients(&a.id, &users("a", 25_000))
        .await
        .unwrap();
    store.add_recipients(&b.id, &users("b", 3)).await.unwrap();
    store.drop_recipients(&a.id, false).await.unwrap();
    assert_eq!(store.recipient_count(&a.id).await.unwrap(), 25_000);
    assert!(store.recipients(&a.id, 0, 10).await.unwrap().is_empty());
    // Dropping twice, or a list never uploaded, changes nothing.
    store.drop_recipients(&a.id, false).await.unwrap();
    store.drop_recipients("none", false).await.unwrap();
    assert_eq!(store.recipient_count(&a.id).await.unwrap(), 25_000);
    assert_eq!(store.recipient_count("none").await.unwrap(), 0);
    // Other lists are untouched.
    assert_eq!(store.recipients(&b.id, 0, 10).await.unwrap(), users("b", 3));
}

pub async fn shared_campaign_entries_reach_only_listed_users<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    use herald_core::{Channel, Cursor, Position, Priority, Recipients};

    async fn listed(store: &dyn Store, user: &str) -> usize {
        let page = store.inbox_page(user, Cursor::START, 10).await.unwrap();
        page.items.len()
    }

    let mut h = make(Limits::default()).await;
    let store = h.store();
    let mut live = store.live_events().expect("live events");
    let c = campaign("shared");
    store.create_campaign(&c).await.unwrap();
    store
        .add_recipients(&c.id, &["amy".into(), "bob".into(), "cat".into()])
        .await
        .unwrap();
    store
        .exclude_recipients(
            &c.id,
            &[
                Exclusion {
                    user: "cat".into(),
                    inbox: true,
                    live: false,
                },
                Exclusion {
                    user: "nobody-listed".into(),
                    inbox: true,
                    live: true,
                },
            ],
        )
        .await
        .unwrap();
    let n = accepted(
        &*store,
        note(
            "to the list",
            Recipients::Campaign(c.id.clone()),
            Priority::Normal,
        ),
    )
    .await;
    let gseq = store
        .deliver_shared(n.clone(), EntryFlags::BOTH, &c.id)
        .await
        .unwrap();
    assert_eq!(
        store
            .deliver_shared(n.clone(), EntryFlags::BOTH, &c.id)
            .await
            .unwrap(),
        gseq,
        "published once"
    );
    assert_eq!(store.global_entry(&n.id).await.unwrap(), Some(gseq));
    // The live event names its audience; each connection asks whether its user is listed.
    let event = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), live.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Live::Event(e) if e.seq == gseq && e.user.is_none() => break e,
            _ => {}
        }
    };
    assert_eq!(event.audience.as_deref(), Some(c.id.as_str()));

    let titles = |user: &'static str| {
        let store = store.clone();
        async move {
            let page = store.inbox_page(user, Cursor::START, 10).await.unwrap();
            let titles: Vec<String> = page
                .items
                .iter()
                .map(|i| i.notification.title.clone())
                .collect();
            (titles, page.unread)
        }
    };
    for user in ["amy", "bob"] {
        assert_eq!(
            titles(user).await,
            (vec!["to the list".into()], 1),
            "{user}"
        );
        assert_eq!(store.unread(user).await.unwrap(), 1);
        assert!(
            store
                .campaign_shows(&c.id, user, Channel::Realtime)
                .await
                .unwrap()
        );
    }
    assert_eq!(
        titles("cat").await,
        (vec![], 0),
        "their inbox is off for it"
    );
    assert!(
        !store
            .campaign_shows(&c.id, "cat", Channel::Inbox)
            .await
            .unwrap()
    );
    assert!(
        store
            .campaign_shows(&c.id, "cat", Channel::Realtime)
            .await
            .unwrap()
    );
    assert_eq!(titles("dan").await, (vec![], 0), "not listed");
    assert!(
        !store
            .campaign_shows(&c.id, "dan", Channel::Realtime)
            .await
            .unwrap()
    );
    for outsider in ["cat", "dan"] {
        assert_eq!(
            store.mark_read(outsider, &n.id).await.unwrap(),
            ChangeOutcome::NotFound,
            "{outsider} cannot touch what they are not shown"
        );
        assert_eq!(
            store.archive(outsider, &n.id).await.unwrap(),
            ChangeOutcome::NotFound
        );
    }
    let Replay::Events { events, .. } =
        store.replay("dan", Position::new(0, 0), 100).await.unwrap()
    else {
        panic!("events")
    };
    assert!(events.is_empty(), "not replayed to outsiders");
    let Replay::Events { events, .. } =
        store.replay("cat", Position::new(0, 0), 100).await.unwrap()
    else {
        panic!("events")
    };
    assert_eq!(events.len(), 1, "live is on for cat");

    assert!(matches!(
        store.mark_read("amy", &n.id).await.unwrap(),
        ChangeOutcome::Changed(Change { unread: 0, .. })
    ));
    assert_eq!(store.unread("bob").await.unwrap(), 1, "bob's is his own");
    assert!(matches!(
        store.archive("bob", &n.id).await.unwrap(),
        ChangeOutcome::Changed(Change { unread: 0, .. })
    ));
    assert_eq!(titles("bob").await, (vec![], 0));
    // An own delivery to an outsider counts only what they are shown.
    store
        .deliver(&[Delivery {
            user: "dan".into(),
            notification: n.clone(),
            flags: EntryFlags::BOTH,
        }])
        .await
        .unwrap();
    assert_eq!(store.unread("dan").await.unwrap(), 1);

    drop(store);
    h.restart().await;
    let store = h.store();
    assert_eq!(listed(&*store, "amy").await, 1, "kept across a restart");
    assert!(listed(&*store, "cat").await == 0);
    // Dropping the positions keeps who is listed; dropping the members ends the entry's reach.
    store.drop_recipients(&c.id, true).await.unwrap();
    assert_eq!(store.unread("cat").await.unwrap(), 0);
    assert_eq!(listed(&*store, "amy").await, 1);
    store.drop_recipients(&c.id, false).await.unwrap();
    assert!(listed(&*store, "amy").await == 0);
}

pub async fn push_stages_are_kept_once_count_each_send_once_and_are_dropped<
    H: Harness,
    F: Future<Output = H>,
>(
    make: impl Fn(Limits) -> F,
) {
    let mut h = make(Limits::default()).await;
    let c = campaign("staged");
    let n = accepted(
        &*h.store(),
        note("staged", Recipients::Campaign(c.id.clone()), Priority::Low),
    )
    .await;
    let sends: Vec<Device> = (0..20)
        .map(|i| staged_device(&device(&format!("u{i}"), &format!("tok{i}"), 1_000)))
        .collect();
    let deferred = vec![PushTask {
        due_ms: 1_900_000_000_000,
        ..PushTask::device(&n.id, &sends[0].id, "u0", Priority::Low)
    }];
    let stage = PushStage {
        from: 4096,
        to: 4116,
        sends: sends.clone(),
        deferred,
    };
    {
        let store = h.store();
        assert!(store.push_stage(&c.id, 4096).await.unwrap().is_none());
        assert!(store.stage_push(&c.id, &stage).await.unwrap(), "stored");
        // A stage never changes once stored: a second one at the same position is ignored.
        let other = PushStage {
            sends: sends[..3].to_vec(),
            ..stage.clone()
        };
        assert!(!store.stage_push(&c.id, &other).await.unwrap());
        let (read, progress) = store.push_stage(&c.id, 4096).await.unwrap().unwrap();
        assert_eq!(read, stage);
        assert_eq!(progress.count(), 0);
        assert!(store.push_stage(&c.id, 0).await.unwrap().is_none());

        let letter = letter_for(&n.id, &sends[2].id);
        let outcome = |index: u32, status: SendStatus| StagedOutcome {
            index,
            status: Some(status),
            letter: (status == SendStatus::Failed).then(|| letter.clone()),
        };
        // Handed on to the outbox: finished here, counted there.
        let retried = StagedOutcome {
            index: 4,
            status: None,
            letter: None,
        };
        store
            .finish_staged(
                &c.id,
                4096,
                &n.id,
                &[
                    outcome(0, SendStatus::Sent),
                    outcome(1, SendStatus::Sent),
                    outcome(2, SendStatus::Failed),
                    outcome(19, SendStatus::Pruned),
                ],
            )
            .await
            .unwrap();
        // Recorded again (a batch repeated after a crash) and once more with a new one.
        store
            .finish_staged(
                &c.id,
                4096,
                &n.id,
                &[
                    outcome(1, SendStatus::Sent),
                    outcome(2, SendStatus::Failed),
                    outcome(3, SendStatus::Sent),
                    retried,
                ],
            )
            .await
            .unwrap();
    }
    h.restart().await;
    let store = h.store();
    let (_, progress) = store.push_stage(&c.id, 4096).await.unwrap().unwrap();
    let finished: Vec<u32> = (0..20).filter(|&i| progress.finished(i)).collect();
    assert_eq!(finished, [0, 1, 2, 3, 4, 19]);
    let push = store.delivery_report(&n.id).await.unwrap()["push"].clone();
    assert_eq!(
        (
            push.queued,
            push.sent,
            push.failed,
            push.pruned,
            push.pending()
        ),
        (5, 3, 1, 1, 0)
    );
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead, [letter_for(&n.id, &sends[2].id)]);

    // Once the campaign ended, its stages and their progress go; another campaign's stay,
    // even one whose id starts with this one's.
    let mut longer = campaign("longer");
    longer.id = format!("{}0", c.id);
    assert!(store.stage_push(&longer.id, &stage).await.unwrap());
    store.drop_push_stages(&c.id).await.unwrap();
    assert!(store.push_stage(&c.id, 4096).await.unwrap().is_none());
    assert!(store.push_stage(&longer.id, 4096).await.unwrap().is_some());
    // No progress is left behind for a stage stored there again.
    assert!(store.stage_push(&c.id, &stage).await.unwrap());
    let (_, progress) = store.push_stage(&c.id, 4096).await.unwrap().unwrap();
    assert_eq!(progress.count(), 0);

    // The stages go with the list too.
    store.drop_recipients(&c.id, false).await.unwrap();
    assert!(store.push_stage(&c.id, 4096).await.unwrap().is_none());
}

fn letter_for(notification: &str, device: &str) -> DeadLetter {
    DeadLetter {
        notification: notification.to_owned(),
        target: format!("d:{device}"),
        user: "u2".into(),
        attempts: 1,
        reason: "invalid argument".into(),
        at: 1_000,
    }
}
