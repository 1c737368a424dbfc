//! Contract cases of realtime channels: positions given in order, history trimmed by count and
//! by age, large messages uploaded in chunks, and every publish announced.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use herald_core::time::now_ms;

use super::{Harness, Limits};
use crate::*;

fn text(s: &str) -> NewChannelMessage {
    NewChannelMessage {
        content_type: "text/plain".into(),
        bytes: s.len() as u64,
        body: ChannelBody::Inline(Bytes::copy_from_slice(s.as_bytes())),
    }
}

fn inline_text(m: &ChannelMessage) -> String {
    match &m.body {
        ChannelBody::Inline(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("expected an inline body, got {other:?}"),
    }
}

fn upload_id() -> String {
    ulid::Generator::new().generate().expect("ulid").to_string()
}

pub async fn channel_messages_get_positions_in_order<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let empty = store
        .channel_read("c:fresh", 0, 10, now_ms())
        .await
        .unwrap();
    assert_eq!((empty.head, empty.messages.len()), (0, 0));

    let first = store
        .channel_publish("c:1", vec![text("a")], now_ms())
        .await
        .unwrap();
    assert_eq!(first, vec![1]);
    let more = store
        .channel_publish("c:1", vec![text("b"), text("c"), text("d")], now_ms())
        .await
        .unwrap();
    assert_eq!(more, vec![2, 3, 4]);
    // Another channel counts on its own.
    assert_eq!(
        store
            .channel_publish("c:2", vec![text("x")], now_ms())
            .await
            .unwrap(),
        vec![1]
    );

    let all = store.channel_read("c:1", 0, 10, now_ms()).await.unwrap();
    assert_eq!(all.head, 4);
    let got: Vec<(u64, String)> = all
        .messages
        .iter()
        .map(|m| (m.position, inline_text(m)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "a".into()),
            (2, "b".into()),
            (3, "c".into()),
            (4, "d".into())
        ]
    );
    assert_eq!(all.messages[0].content_type, "text/plain");
    assert_eq!(all.messages[0].bytes, 1);

    let after = store.channel_read("c:1", 2, 1, now_ms()).await.unwrap();
    assert_eq!(after.messages.len(), 1, "max is honoured");
    assert_eq!(after.messages[0].position, 3);
    let none = store.channel_read("c:1", 4, 10, now_ms()).await.unwrap();
    assert!(none.messages.is_empty());
    assert_eq!(none.head, 4);
}

pub async fn channel_history_is_trimmed_by_count<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut limits = Limits::default();
    limits.channels.history_messages = 5;
    let h = make(limits).await;
    let store = h.store();
    for i in 1..=12 {
        store
            .channel_publish("c:trim", vec![text(&i.to_string())], now_ms())
            .await
            .unwrap();
    }
    let read = store
        .channel_read("c:trim", 0, 100, now_ms())
        .await
        .unwrap();
    assert_eq!(read.head, 12);
    let positions: Vec<u64> = read.messages.iter().map(|m| m.position).collect();
    assert_eq!(
        positions,
        vec![8, 9, 10, 11, 12],
        "a reader at 0 can tell it missed 1..=7"
    );
    // A batch larger than the history keeps its newest.
    let batch: Vec<_> = (0..7).map(|i| text(&format!("b{i}"))).collect();
    store
        .channel_publish("c:trim", batch, now_ms())
        .await
        .unwrap();
    let read = store
        .channel_read("c:trim", 0, 100, now_ms())
        .await
        .unwrap();
    assert_eq!(read.head, 19);
    let positions: Vec<u64> = read.messages.iter().map(|m| m.position).collect();
    assert_eq!(positions, vec![15, 16, 17, 18, 19]);
}

pub async fn channel_history_expires_by_age<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut limits = Limits::default();
    limits.channels.history_ms = 600;
    let h = make(limits).await;
    let store = h.store();
    store
        .channel_publish("c:age", vec![text("old1"), text("old2")], now_ms())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let gone = store.channel_read("c:age", 0, 10, now_ms()).await.unwrap();
    assert!(gone.messages.is_empty(), "{gone:?}");
    assert_eq!(gone.head, 2, "nothing left, but the head stays");
    store
        .channel_publish("c:age", vec![text("new")], now_ms())
        .await
        .unwrap();
    let read = store.channel_read("c:age", 0, 10, now_ms()).await.unwrap();
    assert_eq!(
        (read.head, read.messages[0].position),
        (3, 3),
        "positions go on after expiry"
    );
    assert_eq!(inline_text(&read.messages[0]), "new");
    // A purge (embedded) or trimming (Redis) changes nothing a reader sees.
    store.purge_expired(now_ms()).await.unwrap();
    let after = store.channel_read("c:age", 0, 10, now_ms()).await.unwrap();
    assert_eq!(after, read);
}

pub async fn channel_uploads_are_chunked_and_discardable<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut limits = Limits::default();
    limits.channels.chunk_bytes = 1000;
    let h = make(limits).await;
    let store = h.store();
    let payload: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
    let upload = upload_id();
    // Chunks may arrive out of order (they are written by index).
    for index in [2u32, 0, 1] {
        let start = index as usize * 1000;
        let end = (start + 1000).min(payload.len());
        store
            .channel_put_chunk(
                "c:big",
                &upload,
                index,
                Bytes::copy_from_slice(&payload[start..end]),
            )
            .await
            .unwrap();
    }
    let before = store.channel_read("c:big", 0, 10, now_ms()).await.unwrap();
    assert!(
        before.messages.is_empty(),
        "chunks are invisible until published"
    );
    let positions = store
        .channel_publish(
            "c:big",
            vec![NewChannelMessage {
                content_type: "application/octet-stream".into(),
                bytes: payload.len() as u64,
                body: ChannelBody::Chunked {
                    upload: upload.clone(),
                    chunks: 3,
                },
            }],
            now_ms(),
        )
        .await
        .unwrap();
    let read = store.channel_read("c:big", 0, 10, now_ms()).await.unwrap();
    let message = &read.messages[0];
    assert_eq!(message.position, positions[0]);
    assert_eq!(message.bytes, 2500);
    let ChannelBody::Chunked { upload: u, chunks } = &message.body else {
        panic!("expected a chunked body");
    };
    let mut joined = Vec::new();
    for index in 0..*chunks {
        let chunk = store
            .channel_chunk("c:big", u, index)
            .await
            .unwrap()
            .unwrap();
        assert!(chunk.len() <= 1000);
        joined.extend_from_slice(&chunk);
    }
    assert_eq!(joined, payload);
    assert_eq!(store.channel_chunk("c:big", u, 3).await.unwrap(), None);

    // An upload cut short is dropped whole and never published.
    let cut = upload_id();
    store
        .channel_put_chunk("c:big", &cut, 0, Bytes::from_static(&[1; 1000]))
        .await
        .unwrap();
    store.channel_discard("c:big", &cut, 1).await.unwrap();
    assert_eq!(store.channel_chunk("c:big", &cut, 0).await.unwrap(), None);
    assert_eq!(
        store
            .channel_read("c:big", 0, 10, now_ms())
            .await
            .unwrap()
            .head,
        1
    );
}

pub async fn channel_publishes_are_announced<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let mut events = store
        .channel_events()
        .expect("first call gets the receiver");
    assert!(store.channel_events().is_none(), "only one consumer");
    // Redis: the subscription may need a moment; publish until the first notice arrives.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no notice arrived");
        store
            .channel_publish("c:warm", vec![text("w")], now_ms())
            .await
            .unwrap();
        if let Ok(Some(n)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            seen.push(n);
        }
    }
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {}

    store
        .channel_publish("c:n", vec![text("one"), text("two")], now_ms())
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let notice = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("a notice in time")
            .expect("open");
        got.push((
            notice.channel.to_string(),
            notice.message.position,
            inline_text(&notice.message),
        ));
    }
    assert_eq!(
        got,
        vec![
            ("c:n".to_string(), 1, "one".to_string()),
            ("c:n".to_string(), 2, "two".to_string())
        ]
    );
}

pub async fn channel_positions_survive_restart<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut h = make(Limits::default()).await;
    h.store()
        .channel_publish("c:r", vec![text("1"), text("2")], now_ms())
        .await
        .unwrap();
    h.restart().await;
    let store = h.store();
    let read = store.channel_read("c:r", 0, 10, now_ms()).await.unwrap();
    assert_eq!(read.head, 2);
    assert_eq!(read.messages.len(), 2);
    assert_eq!(
        store
            .channel_publish("c:r", vec![text("3")], now_ms())
            .await
            .unwrap(),
        vec![3]
    );
}

pub async fn concurrent_channel_publishes_never_share_a_position<
    H: Harness,
    F: Future<Output = H>,
>(
    make: impl Fn(Limits) -> F,
) {
    let h = make(Limits::default()).await;
    let store = h.store();
    let tasks: Vec<_> = (0..20)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..10 {
                    mine.extend(
                        store
                            .channel_publish("c:race", vec![text(&format!("{t}-{i}"))], now_ms())
                            .await
                            .unwrap(),
                    );
                }
                mine
            })
        })
        .collect();
    let mut positions = Vec::new();
    for task in tasks {
        positions.extend(task.await.unwrap());
    }
    positions.sort_unstable();
    assert_eq!(positions, (1..=200).collect::<Vec<u64>>());
    let read = store
        .channel_read("c:race", 0, 500, now_ms())
        .await
        .unwrap();
    let stored: Vec<u64> = read.messages.iter().map(|m| m.position).collect();
    assert_eq!(stored, (1..=200).collect::<Vec<u64>>());
}

pub async fn idle_channels_are_forgotten<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut limits = Limits::default();
    limits.channels.history_ms = 300;
    limits.channels.idle_ms = 500;
    let h = make(limits).await;
    let store = h.store();
    store
        .channel_publish("c:idle", vec![text("1"), text("2")], now_ms())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let read = store.channel_read("c:idle", 0, 10, now_ms()).await.unwrap();
    assert_eq!((read.head, read.messages.len()), (0, 0));
    assert_eq!(
        store
            .channel_publish("c:idle", vec![text("again")], now_ms())
            .await
            .unwrap(),
        vec![1],
        "a forgotten channel starts again at 1"
    );
    let read = store.channel_read("c:idle", 0, 10, now_ms()).await.unwrap();
    assert_eq!(read.messages.len(), 1);
    assert_eq!(inline_text(&read.messages[0]), "again");
}

pub async fn expired_messages_hide_no_fresh_ones<H: Harness, F: Future<Output = H>>(
    make: impl Fn(Limits) -> F,
) {
    let mut limits = Limits::default();
    limits.channels.history_ms = 500;
    let h = make(limits).await;
    let store = h.store();
    let old: Vec<_> = (0..300).map(|i| text(&format!("old{i}"))).collect();
    store
        .channel_publish("c:front", old, now_ms())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // More expired messages than one publish trims (Redis) and no purge (embedded): they are
    // still stored in front of the new one.
    store
        .channel_publish("c:front", vec![text("new")], now_ms())
        .await
        .unwrap();
    for max in [1, 10, 500] {
        let read = store
            .channel_read("c:front", 0, max, now_ms())
            .await
            .unwrap();
        assert_eq!(read.head, 301);
        let got: Vec<(u64, String)> = read
            .messages
            .iter()
            .map(|m| (m.position, inline_text(m)))
            .collect();
        assert_eq!(got, vec![(301, "new".to_string())], "max {max}");
    }
    let head_only = store.channel_read("c:front", 0, 0, now_ms()).await.unwrap();
    assert_eq!((head_only.head, head_only.messages.len()), (301, 0));
}
