//! Realtime channel history on Redis. A channel's keys share the hash tag `{ch:NAME}`, so one
//! script gives positions, appends, trims and announces atomically on one shard:
//! - `{ch:NAME}:seq`: the last position given; expires after `idle_ms` without a publish, which
//!   is how a channel is forgotten;
//! - `{ch:NAME}:log`: a Stream whose entry ids are `POSITION-1`, fields `m` (the encoded
//!   message) and `t` (publish ms), capped at `history_messages` and trimmed by age at each
//!   publish; the whole key expires `history_ms` after the last publish;
//! - `{ch:NAME}:u:UPLOAD:INDEX`: a large message's chunks, expiring after history and the
//!   upload grace time.
//!
//! Every publish is also PUBLISHed on `herald:channels` (inline payloads included), so each
//! node's hub hears messages published on any node. On a Cluster it is SPUBLISHed instead, on
//! the channel-notice shard channel of the channel's slot (see `sharded`).

use ::redis::Script;
use bytes::{BufMut, Bytes, BytesMut};

use super::{RedisStore, backend, sharded};
use crate::{ChannelMessage, ChannelRead, NewChannelMessage, Result, StoreError};

pub const CHANNELS_PUBSUB: &str = "herald:channels";

/// Entries read per page when skipping expired entries at the front of a log.
const SKIP_PAGE: usize = 256;

fn seq_key(channel: &str) -> String {
    format!("{{ch:{channel}}}:seq")
}
fn log_key(channel: &str) -> String {
    format!("{{ch:{channel}}}:log")
}
fn chunk_key(channel: &str, upload: &str, index: u32) -> String {
    format!("{{ch:{channel}}}:u:{upload}:{index}")
}

/// KEYS: seq, log. ARGV: history_messages, history_ms, idle_ms, now_ms, notice prefix,
/// pub/sub channel, then the encoded messages (position 0, spliced in here). Returns the first
/// position given.
const PUBLISH: &str = r#"
local n = #ARGV - 6
local last = redis.call('INCRBY', KEYS[1], n)
local first = last - n + 1
local function be64(p)
  local t = {}
  for i = 8, 1, -1 do t[i] = string.char(p % 256); p = math.floor(p / 256) end
  return table.concat(t)
end
for i = 1, n do
  local pos = first + i - 1
  local m = ARGV[6 + i]
  local stored = string.sub(m, 1, 1) .. be64(pos) .. string.sub(m, 10)
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], pos .. '-1', 'm', stored, 't', ARGV[4])
  redis.call('PUBLISH', ARGV[6], ARGV[5] .. stored)
end
-- Trim by age: what is older than the history time goes, a bounded number per publish.
local cutoff = tonumber(ARGV[4]) - tonumber(ARGV[2])
for _ = 1, 64 do
  local front = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
  if #front == 0 or tonumber(front[1][2][4]) >= cutoff then break end
  redis.call('XDEL', KEYS[2], front[1][1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return first
"#;

pub struct ChannelScripts {
    publish: Script,
    /// On a Cluster: the script SPUBLISHes on the shard channel of its slot.
    sharded: bool,
}

impl ChannelScripts {
    pub fn new(sharded: bool) -> Self {
        let publish = if sharded {
            Script::new(&sharded::with_spublish(PUBLISH))
        } else {
            Script::new(PUBLISH)
        };
        Self { publish, sharded }
    }

    /// The pub/sub channel a publish to `channel` announces its messages on.
    fn notices_channel(&self, channel: &str) -> String {
        if self.sharded {
            sharded::channels_channel(sharded::key_slot(&seq_key(channel)))
        } else {
            CHANNELS_PUBSUB.to_owned()
        }
    }
}

type Entry = (String, Vec<(String, Vec<u8>)>);

fn decode_entry(entry: Entry) -> Result<(i64, ChannelMessage)> {
    let mut message = None;
    let mut at = None;
    for (field, value) in entry.1 {
        match field.as_str() {
            "m" => message = Some(ChannelMessage::decode(&Bytes::from(value))?),
            "t" => {
                at = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|t| t.parse().ok())
            }
            _ => {}
        }
    }
    match (message, at) {
        (Some(m), Some(t)) => Ok((t, m)),
        _ => Err(StoreError::Backend(format!(
            "corrupt channel entry {}",
            entry.0
        ))),
    }
}

impl RedisStore {
    pub(super) async fn channel_chunk_put(
        &self,
        channel: &str,
        upload: &str,
        index: u32,
        data: Bytes,
    ) -> Result<()> {
        let keep = self.options.channels.history_ms + self.options.channels.upload_grace_ms;
        ::redis::cmd("SET")
            .arg(chunk_key(channel, upload, index))
            .arg(data.as_ref())
            .arg("PX")
            .arg(keep)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(backend)
    }

    pub(super) async fn channel_chunks_drop(
        &self,
        channel: &str,
        upload: &str,
        chunks: u32,
    ) -> Result<()> {
        let mut pipe = ::redis::pipe();
        for index in 0..chunks {
            pipe.cmd("DEL")
                .arg(chunk_key(channel, upload, index))
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn())
            .await
            .map_err(backend)
    }

    pub(super) async fn channel_chunk_get(
        &self,
        channel: &str,
        upload: &str,
        index: u32,
    ) -> Result<Option<Bytes>> {
        let raw: Option<Vec<u8>> = ::redis::cmd("GET")
            .arg(chunk_key(channel, upload, index))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok(raw.map(Bytes::from))
    }

    pub(super) async fn channel_append(
        &self,
        channel: &str,
        messages: Vec<NewChannelMessage>,
        now_ms: i64,
    ) -> Result<Vec<u64>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let options = &self.options.channels;
        let mut prefix = BytesMut::new();
        prefix.put_u16(channel.len() as u16);
        prefix.put_slice(channel.as_bytes());
        let mut invocation = self.channel_scripts.publish.prepare_invoke();
        invocation
            .key(seq_key(channel))
            .key(log_key(channel))
            .arg(options.history_messages)
            .arg(options.history_ms)
            .arg(options.idle_ms.max(options.history_ms))
            .arg(now_ms)
            .arg(prefix.as_ref())
            .arg(self.channel_scripts.notices_channel(channel));
        let n = messages.len() as u64;
        for m in messages {
            let encoded = ChannelMessage {
                position: 0,
                published_ms: now_ms,
                content_type: m.content_type,
                bytes: m.bytes,
                body: m.body,
            }
            .encode();
            invocation.arg(encoded.as_ref());
        }
        let first: u64 = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok((first..first + n).collect())
    }

    pub(super) async fn channel_range(
        &self,
        channel: &str,
        after: u64,
        max: usize,
        now_ms: i64,
    ) -> Result<ChannelRead> {
        let fresh_from = now_ms - self.options.channels.history_ms;
        let log = log_key(channel);
        let (head, mut page): (Option<u64>, Vec<Entry>) = ::redis::pipe()
            .cmd("GET")
            .arg(seq_key(channel))
            .cmd("XRANGE")
            .arg(&log)
            .arg(format!("{}-0", after + 1))
            .arg("+")
            .arg("COUNT")
            .arg(max.max(1))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let Some(head) = head else {
            return Ok(ChannelRead {
                messages: Vec::new(),
                head: 0,
            });
        };
        if max == 0 {
            return Ok(ChannelRead {
                messages: Vec::new(),
                head,
            });
        }
        let mut messages = Vec::with_capacity(page.len());
        loop {
            let mut last_expired = None;
            for entry in page.drain(..) {
                let (at, message) = decode_entry(entry)?;
                if at >= fresh_from {
                    messages.push(message);
                } else {
                    last_expired = Some(message.position);
                }
            }
            // Expired entries sit at the front until trimmed (a publish trims a few): read past
            // them, so they neither count against `max` nor hide fresh messages behind them.
            match last_expired {
                Some(position) if messages.is_empty() && position < head => {
                    let from = self
                        .first_fresh(&log, position + 1, fresh_from, head)
                        .await?;
                    if from > head {
                        break;
                    }
                    page = ::redis::cmd("XRANGE")
                        .arg(&log)
                        .arg(format!("{from}-1"))
                        .arg("+")
                        .arg("COUNT")
                        .arg(max)
                        .query_async(&mut self.conn())
                        .await
                        .map_err(backend)?;
                }
                _ => break,
            }
        }
        Ok(ChannelRead { messages, head })
    }

    /// The first position younger than `fresh_from`, paging past expired entries at the front
    /// (a channel that went quiet keeps them until its log key expires).
    async fn first_fresh(&self, log: &str, from: u64, fresh_from: i64, head: u64) -> Result<u64> {
        let mut start = format!("{from}-1");
        loop {
            let page: Vec<Entry> = ::redis::cmd("XRANGE")
                .arg(log)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(SKIP_PAGE)
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let full = page.len() == SKIP_PAGE;
            let mut last = None;
            for entry in page {
                let (at, message) = decode_entry(entry)?;
                if at >= fresh_from {
                    return Ok(message.position);
                }
                last = Some(message.position);
            }
            match last {
                Some(position) if full => start = format!("{}-1", position + 1),
                _ => return Ok(head + 1),
            }
        }
    }
}

/// A pub/sub payload as a notice, if it is one.
pub fn notice_of(payload: &[u8]) -> Option<crate::ChannelNotice> {
    crate::ChannelNotice::decode(Bytes::copy_from_slice(payload)).ok()
}
