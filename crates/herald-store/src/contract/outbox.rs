//! Contract cases of the push outbox: queueing, handing out, finishing, reports, dead letters.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use herald_core::Priority;
use herald_core::time::now_ms;

use super::{Harness, Limits};
use crate::*;

const LEASE: Duration = Duration::from_secs(30);

/// A notification id as the server makes them (a ULID), so the outbox can tell its age.
fn notification_id() -> String {
    ulid::Ulid::new().to_string()
}

fn send(notification: &str, device: &str, lane: Priority) -> PushTask {
    PushTask::device(notification, device, "u", lane)
}

fn done(task: &PushTask, status: SendStatus) -> PushOutcome {
    PushOutcome::Done {
        task: task.clone(),
        status,
        reason: None,
    }
}

fn targets(tasks: &[PushTask]) -> Vec<&str> {
    tasks.iter().map(|t| t.target.as_str()).collect()
}

fn counts(report: &DeliveryReport, channel: &str) -> ChannelCounts {
    report.get(channel).cloned().unwrap_or_default()
}

pub async fn enqueue_push_is_idempotent<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let n = notification_id();
    let a = send(&n, "a", Priority::Normal);
    let b = send(&n, "b", Priority::Normal);
    assert_eq!(
        store
            .enqueue_push(&[a.clone(), b.clone(), a.clone()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.enqueue_push(std::slice::from_ref(&a)).await.unwrap(),
        0
    );
    assert_eq!(store.push_depths().await.unwrap(), [0, 2, 0]);
    assert_eq!(store.next_push(10, now_ms(), LEASE).await.unwrap().len(), 2);
    store
        .finish_push(&[done(&a, SendStatus::Sent)])
        .await
        .unwrap();
    assert_eq!(
        store.enqueue_push(&[a.clone(), b.clone()]).await.unwrap(),
        0,
        "a finished pair and a pending one are both skipped"
    );
    assert_eq!(store.push_depths().await.unwrap(), [0, 1, 0]);
    let hook = PushTask::webhook(&n, "crm", Priority::Normal);
    assert_eq!(store.enqueue_push(&[hook]).await.unwrap(), 1);
    let report = store.delivery_report(&n).await.unwrap();
    assert_eq!(
        counts(&report, "push"),
        ChannelCounts {
            queued: 2,
            sent: 1,
            ..Default::default()
        }
    );
    assert_eq!(counts(&report, "webhook").queued, 1);
    assert_eq!(store.enqueue_push(&[]).await.unwrap(), 0);
}

pub async fn next_push_serves_high_lanes_first_and_only_when_due<
    H: Harness,
    F: Future<Output = H>,
>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    // Outlasts the jump to `now + 61 s` below, so no lease runs out on the way (Redis).
    const LONG_LEASE: Duration = Duration::from_secs(3600);
    let now = now_ms();
    let n = notification_id();
    let at = |device: &str, lane: Priority, due_ms: i64| PushTask {
        due_ms,
        ..send(&n, device, lane)
    };
    store
        .enqueue_push(&[
            at("low", Priority::Low, 0),
            at("later", Priority::Normal, now + 60_000),
            at("normal", Priority::Normal, now - 10),
            at("older", Priority::Normal, now - 20),
            at("high", Priority::High, now),
        ])
        .await
        .unwrap();
    assert_eq!(store.push_depths().await.unwrap(), [1, 3, 1]);
    let first = store.next_push(3, now, LONG_LEASE).await.unwrap();
    assert_eq!(
        targets(&first),
        ["d:high", "d:older", "d:normal"],
        "highest lane first, oldest due first"
    );
    let rest = store.next_push(10, now, LONG_LEASE).await.unwrap();
    assert_eq!(targets(&rest), ["d:low"]);
    assert!(
        store
            .next_push(10, now, LONG_LEASE)
            .await
            .unwrap()
            .is_empty(),
        "a send due later waits"
    );
    let later = store.next_push(10, now + 61_000, LONG_LEASE).await.unwrap();
    assert_eq!(targets(&later), ["d:later"]);
    assert_eq!(later[0].due_ms, now + 60_000);
    assert_eq!(
        store.push_depths().await.unwrap(),
        [1, 3, 1],
        "handed out sends stay in the outbox until finished"
    );
    assert!(
        store
            .next_push(0, now, LONG_LEASE)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn handed_out_push_tasks_wait_for_finish_or_restart<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut h = make(Limits::default()).await;
    let store = h.store();
    let now = now_ms();
    let n = notification_id();
    let tasks: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|d| send(&n, d, Priority::Normal))
        .collect();
    store.enqueue_push(&tasks).await.unwrap();
    let first = store.next_push(2, now, LEASE).await.unwrap();
    let second = store.next_push(10, now, LEASE).await.unwrap();
    assert_eq!((first.len(), second.len()), (2, 1));
    assert!(!targets(&first).contains(&second[0].target.as_str()));
    assert!(store.next_push(10, now, LEASE).await.unwrap().is_empty());
    store
        .finish_push(&[done(&first[0], SendStatus::Sent)])
        .await
        .unwrap();
    drop(store);
    h.restart().await;
    let store = h.store();
    // After the leases ran out, so a Redis node takes them over the same as a restarted one.
    let back = store
        .next_push(10, now + LEASE.as_millis() as i64 + 1_000, LEASE)
        .await
        .unwrap();
    let mut back = targets(&back);
    back.sort();
    let mut expected = vec![first[1].target.as_str(), second[0].target.as_str()];
    expected.sort();
    assert_eq!(
        back, expected,
        "unfinished sends come back, finished ones do not"
    );
}

pub async fn concurrent_next_push_never_hands_out_a_task_twice<
    H: Harness,
    F: Future<Output = H>,
>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let n = notification_id();
    let tasks: Vec<_> = (0..400)
        .map(|i| send(&n, &format!("d{i}"), Priority::LANES[i % 3]))
        .collect();
    assert_eq!(store.enqueue_push(&tasks).await.unwrap(), 400);
    let now = now_ms();
    let mut takers = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        takers.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            loop {
                let batch = store.next_push(25, now, LEASE).await.unwrap();
                if batch.is_empty() {
                    return taken;
                }
                taken.extend(batch.into_iter().map(|t| t.target));
            }
        }));
    }
    let mut all = Vec::new();
    for taker in takers {
        all.extend(taker.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (400, 400));
}

pub async fn retry_reschedules_with_one_more_attempt<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let now = now_ms();
    let n = notification_id();
    store
        .enqueue_push(&[send(&n, "a", Priority::High)])
        .await
        .unwrap();
    let task = store.next_push(10, now, LEASE).await.unwrap().remove(0);
    assert_eq!(task.attempt, 0);
    let retry = PushOutcome::Retry {
        task: task.clone(),
        due_ms: now + 10_000,
    };
    store
        .finish_push(std::slice::from_ref(&retry))
        .await
        .unwrap();
    assert!(
        store.next_push(10, now, LEASE).await.unwrap().is_empty(),
        "not before its backoff"
    );
    assert_eq!(store.push_depths().await.unwrap(), [1, 0, 0]);
    let again = store.next_push(10, now + 10_000, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].attempt, again[0].due_ms), (1, now + 10_000));
    assert_eq!(again[0].lane, Priority::High);
    store
        .finish_push(&[done(&again[0], SendStatus::Sent)])
        .await
        .unwrap();
    store.finish_push(&[retry]).await.unwrap();
    assert!(
        store
            .next_push(10, now + 20_000, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "a retry of a finished send changes nothing"
    );
    let report = counts(&store.delivery_report(&n).await.unwrap(), "push");
    assert_eq!((report.queued, report.sent, report.pending()), (1, 1, 0));
    assert_eq!(store.push_depths().await.unwrap(), [0, 0, 0]);
}

pub async fn finished_sends_are_counted_in_the_delivery_report<
    H: Harness,
    F: Future<Output = H>,
>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let n = notification_id();
    let mut tasks: Vec<_> = (1..=6)
        .map(|i| send(&n, &format!("d{i}"), Priority::Normal))
        .collect();
    tasks.push(PushTask::webhook(&n, "crm", Priority::Normal));
    assert_eq!(store.enqueue_push(&tasks).await.unwrap(), 7);
    assert_eq!(
        store.next_push(100, now_ms(), LEASE).await.unwrap().len(),
        7
    );
    let outcomes = vec![
        done(&tasks[0], SendStatus::Sent),
        PushOutcome::Done {
            task: tasks[1].clone(),
            status: SendStatus::Failed,
            reason: Some("invalid registration token".into()),
        },
        done(&tasks[2], SendStatus::Pruned),
        done(&tasks[3], SendStatus::DryRun),
        done(&tasks[4], SendStatus::Expired),
        done(&tasks[6], SendStatus::Sent),
    ];
    store.finish_push(&outcomes).await.unwrap();
    let expected_push = ChannelCounts {
        queued: 6,
        sent: 1,
        failed: 1,
        pruned: 1,
        dry_run: 1,
        expired: 1,
        ..Default::default()
    };
    let expected_webhook = ChannelCounts {
        queued: 1,
        sent: 1,
        ..Default::default()
    };
    let report = store.delivery_report(&n).await.unwrap();
    assert_eq!(report.len(), 2);
    assert_eq!(counts(&report, "push"), expected_push);
    assert_eq!(counts(&report, "push").pending(), 1);
    assert_eq!(counts(&report, "webhook"), expected_webhook);
    assert_eq!(counts(&report, "webhook").pending(), 0);
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].notification.as_str(),
            dead[0].target.as_str(),
            dead[0].user.as_str()
        ),
        (n.as_str(), "d:d2", "u")
    );
    assert_eq!(dead[0].reason, "invalid registration token");
    assert_eq!(dead[0].attempts, 1);
    assert!(dead[0].at > 0);

    store.finish_push(&outcomes).await.unwrap();
    let stranger = send(&notification_id(), "x", Priority::Normal);
    store
        .finish_push(&[done(&stranger, SendStatus::Sent)])
        .await
        .unwrap();
    assert_eq!(
        store.delivery_report(&n).await.unwrap(),
        report,
        "finishing twice changes nothing"
    );
    assert_eq!(store.dead_letters(10).await.unwrap().len(), 1);
    assert_eq!(store.push_depths().await.unwrap(), [0, 1, 0]);
    assert!(
        store
            .delivery_report(&stranger.notification)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn dead_letters_keep_the_newest<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits {
        dead_letters_max: 3,
        ..Limits::default()
    })
    .await;
    let store = h.store();
    let n = notification_id();
    let tasks: Vec<_> = (0..5)
        .map(|i| send(&n, &format!("d{i}"), Priority::Low))
        .collect();
    store.enqueue_push(&tasks).await.unwrap();
    store.next_push(10, now_ms(), LEASE).await.unwrap();
    for (i, task) in tasks.iter().enumerate() {
        store
            .finish_push(&[PushOutcome::Done {
                task: task.clone(),
                status: SendStatus::Failed,
                reason: Some(format!("r{i}")),
            }])
            .await
            .unwrap();
    }
    let reasons = |letters: Vec<DeadLetter>| -> Vec<String> {
        letters.into_iter().map(|l| l.reason).collect()
    };
    assert_eq!(
        reasons(store.dead_letters(10).await.unwrap()),
        ["r4", "r3", "r2"]
    );
    assert_eq!(reasons(store.dead_letters(1).await.unwrap()), ["r4"]);
    assert!(store.dead_letters(0).await.unwrap().is_empty());
    assert_eq!(
        counts(&store.delivery_report(&n).await.unwrap(), "push").failed,
        5
    );
}
