//! Realtime channel messages as every engine stores them, and their compact binary encoding
//! (payloads are arbitrary bytes, so JSON would cost a third more on every one).
//!
//! A message up to [`ChannelOptions::chunk_bytes`] is stored inline. A larger one is uploaded
//! first as numbered chunks under an upload id and then published in one step, so readers only
//! ever see whole messages and a truncated upload is never published.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// Channel history and chunking (`[channels]` in `herald.toml`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelOptions {
    /// How long a message stays in a channel's history, in milliseconds.
    pub history_ms: i64,
    /// Most messages kept per channel; the oldest are dropped past it.
    pub history_messages: usize,
    /// A channel with no message for this long is forgotten, its position counter included.
    pub idle_ms: i64,
    /// Payload bytes per chunk; messages up to this size are stored and sent whole.
    pub chunk_bytes: usize,
    /// How long an unfinished upload's chunks are kept before they are swept.
    pub upload_grace_ms: i64,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            history_ms: 5 * 60 * 1000,
            history_messages: 10_000,
            idle_ms: 60 * 60 * 1000,
            chunk_bytes: 256 * 1024,
            upload_grace_ms: 60 * 60 * 1000,
        }
    }
}

/// Where a message's payload is.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelBody {
    /// The whole payload.
    Inline(Bytes),
    /// Uploaded as `chunks` chunks under `upload`; read them with `Store::channel_chunk`.
    Chunked { upload: String, chunks: u32 },
}

/// One message of a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMessage {
    /// Its place in the channel, from 1; assigned by the store at publish (0 before).
    pub position: u64,
    pub published_ms: i64,
    pub content_type: String,
    /// Payload length in bytes.
    pub bytes: u64,
    pub body: ChannelBody,
}

/// A message to publish (the store assigns its position).
#[derive(Debug, Clone)]
pub struct NewChannelMessage {
    pub content_type: String,
    pub bytes: u64,
    pub body: ChannelBody,
}

/// What a reader gets from a channel's history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelRead {
    /// The messages still in history after the asked position, oldest first, at most the asked
    /// number. When the first is not the one right after the asked position, or there is none
    /// while `head` is past it, the reader has missed messages: a gap.
    pub messages: Vec<ChannelMessage>,
    /// The newest position the channel has given (0 for a channel with none, or forgotten).
    pub head: u64,
}

/// A published message, announced to every node's realtime hub.
#[derive(Debug, Clone)]
pub struct ChannelNotice {
    pub channel: Arc<str>,
    pub message: Arc<ChannelMessage>,
}

const VERSION: u8 = 1;
const INLINE: u8 = 0;
const CHUNKED: u8 = 1;

impl ChannelMessage {
    /// The stored form: version, position, time, length, content type, then the body.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(40 + self.content_type.len() + self.inline_len());
        self.encode_into(&mut out);
        out.freeze()
    }

    fn inline_len(&self) -> usize {
        match &self.body {
            ChannelBody::Inline(b) => b.len(),
            ChannelBody::Chunked { upload, .. } => upload.len(),
        }
    }

    pub fn encode_into(&self, out: &mut BytesMut) {
        out.put_u8(VERSION);
        out.put_u64(self.position);
        out.put_i64(self.published_ms);
        out.put_u64(self.bytes);
        out.put_u16(self.content_type.len() as u16);
        out.put_slice(self.content_type.as_bytes());
        match &self.body {
            ChannelBody::Inline(data) => {
                out.put_u8(INLINE);
                out.put_u32(data.len() as u32);
                out.put_slice(data);
            }
            ChannelBody::Chunked { upload, chunks } => {
                out.put_u8(CHUNKED);
                out.put_u8(upload.len() as u8);
                out.put_slice(upload.as_bytes());
                out.put_u32(*chunks);
            }
        }
    }

    /// The publish time of an encoded message, read without decoding it (its payload may be
    /// large); None if `encoded` is not one.
    pub fn published_ms_of(encoded: &[u8]) -> Option<i64> {
        if encoded.first() != Some(&VERSION) {
            return None;
        }
        Some(i64::from_be_bytes(encoded.get(9..17)?.try_into().ok()?))
    }

    /// Reads a message written by [`encode`](Self::encode); inline payloads share `input`.
    pub fn decode(input: &Bytes) -> Result<Self> {
        let mut at = input.clone();
        Self::decode_from(&mut at)
    }

    fn decode_from(buf: &mut Bytes) -> Result<Self> {
        let corrupt = || StoreError::Backend("corrupt channel message".into());
        if buf.remaining() < 1 + 8 + 8 + 8 + 2 || buf.get_u8() != VERSION {
            return Err(corrupt());
        }
        let position = buf.get_u64();
        let published_ms = buf.get_i64();
        let bytes = buf.get_u64();
        let ct_len = buf.get_u16() as usize;
        if buf.remaining() < ct_len + 1 {
            return Err(corrupt());
        }
        let content_type =
            String::from_utf8(buf.split_to(ct_len).to_vec()).map_err(|_| corrupt())?;
        let body = match buf.get_u8() {
            INLINE => {
                if buf.remaining() < 4 {
                    return Err(corrupt());
                }
                let len = buf.get_u32() as usize;
                if buf.remaining() < len {
                    return Err(corrupt());
                }
                ChannelBody::Inline(buf.split_to(len))
            }
            CHUNKED => {
                if buf.remaining() < 1 {
                    return Err(corrupt());
                }
                let len = buf.get_u8() as usize;
                if buf.remaining() < len + 4 {
                    return Err(corrupt());
                }
                let upload =
                    String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| corrupt())?;
                ChannelBody::Chunked {
                    upload,
                    chunks: buf.get_u32(),
                }
            }
            _ => return Err(corrupt()),
        };
        Ok(Self {
            position,
            published_ms,
            content_type,
            bytes,
            body,
        })
    }
}

impl ChannelNotice {
    /// The pub/sub form: the channel name, then the message.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u16(self.channel.len() as u16);
        out.put_slice(self.channel.as_bytes());
        self.message.encode_into(&mut out);
        out.freeze()
    }

    pub fn decode(input: Bytes) -> Result<Self> {
        let corrupt = || StoreError::Backend("corrupt channel notice".into());
        let mut buf = input;
        if buf.remaining() < 2 {
            return Err(corrupt());
        }
        let len = buf.get_u16() as usize;
        if buf.remaining() < len {
            return Err(corrupt());
        }
        let channel = std::str::from_utf8(&buf.split_to(len))
            .map_err(|_| corrupt())?
            .into();
        let message = Arc::new(ChannelMessage::decode_from(&mut buf)?);
        Ok(Self { channel, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: ChannelBody) -> ChannelMessage {
        ChannelMessage {
            position: 42,
            published_ms: 1_700_000_000_123,
            content_type: "image/png".into(),
            bytes: 7,
            body,
        }
    }

    #[test]
    fn messages_round_trip() {
        for body in [
            ChannelBody::Inline(Bytes::from_static(b"\x00\x01binary")),
            ChannelBody::Inline(Bytes::new()),
            ChannelBody::Chunked {
                upload: "01KA0000000000000000000000".into(),
                chunks: 400,
            },
        ] {
            let m = message(body);
            assert_eq!(ChannelMessage::decode(&m.encode()).unwrap(), m);
            assert_eq!(
                ChannelMessage::published_ms_of(&m.encode()),
                Some(m.published_ms)
            );
            let notice = ChannelNotice {
                channel: "session:1".into(),
                message: Arc::new(m.clone()),
            };
            let back = ChannelNotice::decode(notice.encode()).unwrap();
            assert_eq!(&*back.channel, "session:1");
            assert_eq!(*back.message, m);
        }
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let encoded = message(ChannelBody::Inline(Bytes::from_static(b"payload"))).encode();
        for cut in 0..encoded.len() {
            assert!(
                ChannelMessage::decode(&encoded.slice(..cut)).is_err(),
                "{cut}"
            );
        }
    }
}
