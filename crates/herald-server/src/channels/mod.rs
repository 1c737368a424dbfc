//! Realtime channels: authenticated pub/sub for any stream of bytes, with short-lived history.
//!
//! Publishing and history live in the store (`Store::channel_*`); here are the hub that hands
//! published messages to this node's subscribers ([`hub`]) and each subscriber's delivery loop
//! ([`delivery`]). The HTTP side is `api::channels`.

pub mod delivery;
pub mod hub;

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use herald_store::{ChannelMessage, Store};

use self::hub::ChannelHub;

/// Feeds the hub from the store's channel events (from every node, on Redis) until the store
/// closes.
pub async fn dispatch(store: Arc<dyn Store>, hub: Arc<ChannelHub>) {
    let Some(mut events) = store.channel_events() else {
        tracing::warn!(
            "the store gives no channel events; channel subscribers poll history instead"
        );
        return;
    };
    while let Some(notice) = events.recv().await {
        hub.dispatch(notice);
    }
}

/// A message on its way to this node's subscribers. Its wire forms are made once, by the first
/// subscriber that sends it, and shared by all the others: with 100 subscribers a message is
/// escaped into JSON once, not 100 times.
pub struct Outgoing {
    message: Arc<ChannelMessage>,
    first_frame: OnceLock<axum::extract::ws::Utf8Bytes>,
    sse_data: OnceLock<String>,
}

impl Outgoing {
    pub fn new(message: Arc<ChannelMessage>) -> Arc<Self> {
        Arc::new(Self {
            message,
            first_frame: OnceLock::new(),
            sse_data: OnceLock::new(),
        })
    }

    /// The message's first WebSocket text frame (the whole message, or the header of its
    /// binary frames), made by `render` the first time.
    pub fn first_frame(
        &self,
        render: impl FnOnce(&ChannelMessage) -> String,
    ) -> axum::extract::ws::Utf8Bytes {
        self.first_frame
            .get_or_init(|| render(&self.message).into())
            .clone()
    }

    /// The `data` of the message's SSE `message` event, made by `render` the first time.
    pub fn sse_data(&self, render: impl FnOnce(&ChannelMessage) -> String) -> String {
        self.sse_data.get_or_init(|| render(&self.message)).clone()
    }
}

impl Deref for Outgoing {
    type Target = ChannelMessage;

    fn deref(&self) -> &ChannelMessage {
        &self.message
    }
}

/// Whether a payload of this content type is shown as text (when it is valid UTF-8): `text/*`,
/// `application/json` and `application/*+json`.
pub fn is_text_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/") || essence == "application/json" || essence.ends_with("+json")
}

/// The payload as text when its type is textual and it is valid UTF-8.
pub fn as_text<'a>(content_type: &str, data: &'a [u8]) -> Option<&'a str> {
    if is_text_type(content_type) {
        std::str::from_utf8(data).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_types() {
        for t in [
            "text/plain",
            "text/html; charset=utf-8",
            "application/json",
            "application/ld+json",
            "Text/Plain",
        ] {
            assert!(is_text_type(t), "{t}");
        }
        for t in [
            "image/png",
            "application/octet-stream",
            "application/jsonx",
            "",
        ] {
            assert!(!is_text_type(t), "{t}");
        }
        assert_eq!(as_text("text/plain", b"hi"), Some("hi"));
        assert_eq!(as_text("text/plain", b"\xff"), None);
        assert_eq!(as_text("image/png", b"hi"), None);
    }
}
