//! The storage contract suite against the embedded engine.

use std::sync::Arc;

use async_trait::async_trait;
use herald_store::contract::{Harness, Limits};
use herald_store::{EmbeddedStore, Store, StoreOptions};

struct Embedded {
    dir: tempfile::TempDir,
    options: StoreOptions,
    store: Option<Arc<EmbeddedStore>>,
}

#[async_trait]
impl Harness for Embedded {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("open")
    }

    async fn restart(&mut self) {
        let old = self.store.take().expect("open");
        old.close().await.unwrap();
        let old = Arc::try_unwrap(old)
            .unwrap_or_else(|_| panic!("a test still holds the store across restart"));
        drop(old);
        self.store = Some(Arc::new(
            reopen(self.dir.path(), self.options.clone()).await,
        ));
    }
}

async fn reopen(path: &std::path::Path, options: StoreOptions) -> EmbeddedStore {
    // fjall releases its directory lock when its background threads finish; retry briefly.
    let mut last = None;
    for _ in 0..100 {
        match EmbeddedStore::open(path, options.clone()) {
            Ok(store) => return store,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("could not reopen the store: {last:?}");
}

async fn embedded(limits: Limits) -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        inbox_max: limits.inbox_max,
        global_max: limits.global_max,
        changes_max: limits.changes_max,
        devices_per_user: limits.devices_per_user,
        dead_letters_max: limits.dead_letters_max,
        decisions_per_user: limits.decisions_per_user,
        channels: limits.channels,
        ..StoreOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), options.clone()).unwrap();
    Embedded {
        dir,
        options,
        store: Some(Arc::new(store)),
    }
}

herald_store::storage_contract_tests!(embedded);

mod embedded_only {
    use std::time::Duration;

    use herald_core::Priority;
    use herald_core::time::now_ms;
    use herald_store::contract::Harness;
    use herald_store::{CapCharge, CapRequest, CollapseClaim, PushOutcome, PushTask, SendStatus};

    use super::*;

    /// Redis drops expired channel history by itself (trimming and key expiry); the embedded
    /// engine's purge does it, and sweeps the files of old uploads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purge_drops_expired_channel_messages_and_upload_files() {
        let mut limits = Limits::default();
        limits.channels.history_ms = 300;
        limits.channels.upload_grace_ms = 0;
        let h = embedded(limits).await;
        let store = h.store();
        let text = |s: &'static str| herald_store::NewChannelMessage {
            content_type: "text/plain".into(),
            bytes: s.len() as u64,
            body: herald_store::ChannelBody::Inline(bytes::Bytes::from_static(s.as_bytes())),
        };
        store
            .channel_publish("c:p", vec![text("a"), text("b")], now_ms())
            .await
            .unwrap();
        let upload = ulid::Ulid::new().to_string();
        store
            .channel_put_chunk("c:p", &upload, 0, bytes::Bytes::from_static(b"part"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let report = store.purge_expired(now_ms()).await.unwrap();
        assert_eq!(report.channel_messages, 2);
        assert_eq!(store.channel_chunk("c:p", &upload, 0).await.unwrap(), None);
        let again = store.purge_expired(now_ms()).await.unwrap();
        assert_eq!(again.channel_messages, 0, "nothing is left to drop");
        assert_eq!(
            store
                .channel_publish("c:p", vec![text("c")], now_ms())
                .await
                .unwrap(),
            vec![3],
            "positions go on after a purge"
        );
    }

    /// Redis forgets the same by key expiry, in real time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purge_forgets_finished_sends_of_old_notifications() {
        let h = embedded(Limits::default()).await;
        let store = h.store();
        let n = ulid::Ulid::new().to_string();
        let sent = PushTask::device(&n, "a", "u", Priority::Normal);
        let pending = PushTask::device(&n, "b", "u", Priority::Normal);
        store
            .enqueue_push(&[sent.clone(), pending.clone()])
            .await
            .unwrap();
        let now = now_ms();
        store
            .next_push(10, now, Duration::from_secs(30))
            .await
            .unwrap();
        store
            .finish_push(&[PushOutcome::Done {
                task: sent.clone(),
                status: SendStatus::Sent,
                reason: None,
            }])
            .await
            .unwrap();
        store.purge_expired(now).await.unwrap();
        assert_eq!(store.delivery_report(&n).await.unwrap()["push"].sent, 1);
        store
            .purge_expired(now + 400 * 24 * 3600 * 1000)
            .await
            .unwrap();
        assert!(store.delivery_report(&n).await.unwrap().is_empty());
        assert_eq!(
            store.enqueue_push(&[sent, pending]).await.unwrap(),
            1,
            "the done marker went with the notification; the pending send stayed"
        );
        assert_eq!(store.push_depths().await.unwrap(), [0, 2, 0]);
    }

    /// Redis expires both by PEXPIRE; the embedded engine drops them on purge.
    #[tokio::test]
    async fn purge_drops_expired_caps_and_collapse_keys() {
        let h = embedded(Limits::default()).await;
        let store = h.store();
        let now = 1_800_000_000_000;
        let window = 1000;
        let claim = |notification: &str| CollapseClaim {
            user: "u".into(),
            key: "order-123".into(),
            notification: notification.into(),
            window_ms: window,
        };
        let charge = |notification: &str| CapRequest {
            user: "u".into(),
            notification: notification.into(),
            charges: vec![CapCharge {
                key: "all:1".into(),
                limit: 1,
                window_ms: window,
            }],
        };
        assert_eq!(
            store.claim_collapse(&[claim("a")], now).await.unwrap(),
            [None]
        );
        assert_eq!(store.take_caps(&[charge("a")], now).await.unwrap(), [true]);

        let early = store.purge_expired(now + window - 1).await.unwrap();
        assert_eq!(
            (early.caps, early.collapse_keys),
            (0, 0),
            "both still count"
        );
        let report = store.purge_expired(now + window + 1).await.unwrap();
        assert_eq!((report.caps, report.collapse_keys), (1, 0));
        // A collapse record is kept a second window, so a late retried claim keeps its answer.
        let report = store.purge_expired(now + 2 * window + 1).await.unwrap();
        assert_eq!((report.caps, report.collapse_keys), (0, 1));
        let again = store.purge_expired(now + 2 * window + 1).await.unwrap();
        assert_eq!(again, Default::default(), "nothing left to drop");

        let later = now + 2 * window + 2;
        assert_eq!(
            store.claim_collapse(&[claim("b")], later).await.unwrap(),
            [None]
        );
        assert_eq!(
            store.take_caps(&[charge("b")], later).await.unwrap(),
            [true]
        );
        assert_eq!(
            store.take_caps(&[charge("c")], later).await.unwrap(),
            [false],
            "a counter charged after the purge counts again"
        );
    }
}
