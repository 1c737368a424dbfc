//! Sharded pub/sub on a Cluster. Classic PUBLISH is broadcast over the cluster bus to every node,
//! which does not scale with the cluster; SPUBLISH keeps a message on the shard that owns its
//! channel's slot. A script may only SPUBLISH on a channel of its own slot, so there is one
//! channel per slot and kind: `herald:ev:{TAG}` (feed events) and `herald:ch:{TAG}` (channel
//! notices), where `TAG` is a short string that hashes to that slot (the same table on every
//! node, see [`slot_tag`]). Every Herald node SSUBSCRIBEs to all 2 × 16384 of them, each on the
//! master that owns its slot.
//!
//! Why not redis-rs's cluster pub/sub (`ClusterConnection::ssubscribe`): it resubscribes after a
//! reconnect, but does not say when that is done (so a `Live::Resync` could not be sent at the
//! right time), refreshes slots only when a command is redirected (a subscriber sends none), and
//! drops a channel for good when the server unsubscribes it because its slot moved. Instead this
//! reads the slot map (`CLUSTER SLOTS`), opens one RESP3 connection per master and subscribes
//! each to the channels of its slots. Any sign that the map changed (the server unsubscribing a
//! channel, a lost connection, a failed ping, a different `CLUSTER SLOTS` answer at a periodic
//! check) tears the whole set down and builds it again from a fresh map, and the caller then
//! sends `Live::Resync` as the classic path does after a resubscription.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, Msg, ProtocolVersion, PushInfo,
    PushKind, RedisError, RedisResult, Value,
};
use futures_util::future::try_join_all;
use tokio::sync::mpsc;

/// Hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;
/// Feed events of the slot's users (and of the global feed, on its slot).
pub const EVENTS_PREFIX: &str = "herald:ev:";
/// Realtime channel notices of the channels on the slot.
pub const CHANNELS_PREFIX: &str = "herald:ch:";

/// How often the subscriptions are checked against the cluster's slot map.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Subscriptions sent per pipeline (one channel per SSUBSCRIBE, so replies pair with commands).
const SUBSCRIBE_CHUNK: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// CRC16/XMODEM of a hash tag, mod 16384: the slot of every key (or shard channel) with that tag.
pub fn tag_slot(tag: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % SLOTS
}

/// The slot of a key by Redis's rule: the content of the first `{…}` if it is not empty, else
/// the whole key.
pub fn key_slot(key: &str) -> u16 {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return tag_slot(&key[open + 1..open + 1 + len]);
    }
    tag_slot(key)
}

/// A short tag that hashes to `slot`: the first decimal number (0, 1, 2, …) that does. Computed
/// once; the same on every node and every version, since publishers and subscribers must agree.
pub fn slot_tag(slot: u16) -> &'static str {
    static TAGS: OnceLock<Vec<Box<str>>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags: Vec<Option<Box<str>>> = vec![None; SLOTS as usize];
        let mut missing = SLOTS as usize;
        let mut n: u64 = 0;
        while missing > 0 {
            let tag = n.to_string();
            let slot = &mut tags[tag_slot(&tag) as usize];
            if slot.is_none() {
                *slot = Some(tag.into());
                missing -= 1;
            }
            n += 1;
        }
        tags.into_iter().map(|t| t.expect("every slot")).collect()
    });
    &tags[slot as usize]
}

/// The feed-event channel of `slot`.
pub fn events_channel(slot: u16) -> String {
    format!("{EVENTS_PREFIX}{{{}}}", slot_tag(slot))
}

/// The channel-notice channel of `slot`.
pub fn channels_channel(slot: u16) -> String {
    format!("{CHANNELS_PREFIX}{{{}}}", slot_tag(slot))
}

/// A script's source with its classic PUBLISH calls turned into SPUBLISH (on a Cluster). Panics
/// if the source has none, so a script reworded so this misses it fails at once.
pub fn with_spublish(source: &str) -> String {
    const CLASSIC: &str = "redis.call('PUBLISH',";
    assert!(source.contains(CLASSIC), "a script that publishes");
    source.replace(CLASSIC, "redis.call('SPUBLISH',")
}

/// Slot ranges (inclusive) by the address of the master that serves them.
pub type SlotMap = BTreeMap<(String, u16), Vec<(u16, u16)>>;

/// One shard message, or why the subscriptions must be built again.
pub enum Event {
    Message(Msg),
    Lost(String),
}

/// The subscriptions of one generation: a connection per master.
pub struct Subscriptions {
    map: SlotMap,
    conns: Vec<MultiplexedConnection>,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    check: tokio::time::Interval,
    next_check: usize,
}

/// The connection settings of a seed (auth, …) with another address and RESP3, which pushes
/// shard messages on a connection that can still answer commands.
fn node_info(seed: &str, host: &str, port: u16) -> RedisResult<::redis::ConnectionInfo> {
    let info = seed.into_connection_info()?;
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Ok(info
        .set_addr(ConnectionAddr::Tcp(host.to_owned(), port))
        .set_redis_settings(redis))
}

fn config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

fn seed_addr(seed: &str) -> RedisResult<(String, u16)> {
    match seed.into_connection_info()?.addr() {
        ConnectionAddr::Tcp(host, port) => Ok((host.clone(), *port)),
        other => Err(RedisError::from((
            ::redis::ErrorKind::InvalidClientConfig,
            "a cluster seed must be host:port",
            format!("{other:?}"),
        ))),
    }
}

fn protocol_error(what: &str) -> RedisError {
    RedisError::from((
        ::redis::ErrorKind::Parse,
        "unexpected CLUSTER SLOTS reply",
        what.to_owned(),
    ))
}

/// Parses `CLUSTER SLOTS`: per range its first and last slot, then the master (host, port, …)
/// and its replicas. An empty host means the node that answered.
pub fn parse_slots(reply: Value, asked: &str) -> RedisResult<SlotMap> {
    let Value::Array(ranges) = reply else {
        return Err(protocol_error("not an array"));
    };
    let int = |v: &Value| match v {
        Value::Int(i) => u16::try_from(*i).map_err(|_| protocol_error("slot out of range")),
        _ => Err(protocol_error("slot not an integer")),
    };
    let mut map = SlotMap::new();
    for range in ranges {
        let Value::Array(parts) = range else {
            return Err(protocol_error("range not an array"));
        };
        if parts.len() < 3 {
            return Err(protocol_error("range without a master"));
        }
        let (start, end) = (int(&parts[0])?, int(&parts[1])?);
        let Value::Array(master) = &parts[2] else {
            return Err(protocol_error("master not an array"));
        };
        let host = match master.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => return Err(protocol_error("master without a host")),
        };
        let host = if host.is_empty() || host == "?" {
            asked.to_owned()
        } else {
            host
        };
        let port = master
            .get(1)
            .ok_or_else(|| protocol_error("master without a port"))
            .and_then(int)?;
        map.entry((host, port)).or_default().push((start, end));
    }
    for ranges in map.values_mut() {
        ranges.sort_unstable();
    }
    Ok(map)
}

async fn cluster_slots(conn: &mut MultiplexedConnection, asked: &str) -> RedisResult<SlotMap> {
    let reply: Value = ::redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(conn)
        .await?;
    parse_slots(reply, asked)
}

/// The slot map from the first seed that answers, starting at `attempt` so a dead seed is not
/// asked first forever.
async fn read_slot_map(seeds: &[String], attempt: usize) -> RedisResult<SlotMap> {
    let mut last = None;
    for i in 0..seeds.len() {
        let seed = &seeds[(attempt + i) % seeds.len()];
        let answer = async {
            let (host, port) = seed_addr(seed)?;
            let client = ::redis::Client::open(node_info(seed, &host, port)?)?;
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config())
                .await?;
            cluster_slots(&mut conn, &host).await
        }
        .await;
        match answer {
            Ok(map) if !map.is_empty() => return Ok(map),
            Ok(_) => last = Some(protocol_error("no slot is served")),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| protocol_error("no seed")))
}

/// Connects to a master and subscribes it to both channels of each of its slots.
async fn subscribe_master(
    seed: &str,
    (host, port): &(String, u16),
    ranges: &[(u16, u16)],
    pushes: mpsc::UnboundedSender<PushInfo>,
) -> RedisResult<MultiplexedConnection> {
    let client = ::redis::Client::open(node_info(seed, host, *port)?)?;
    let config = config().set_push_sender(pushes);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let channels: Vec<String> = ranges
        .iter()
        .flat_map(|&(start, end)| start..=end)
        .flat_map(|slot| [events_channel(slot), channels_channel(slot)])
        .collect();
    for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
        // One channel per command: each is confirmed by exactly one reply.
        let mut pipe = ::redis::pipe();
        for channel in chunk {
            pipe.cmd("SSUBSCRIBE").arg(channel);
        }
        let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
        if let Some(Value::ServerError(e)) =
            replies.iter().find(|v| matches!(v, Value::ServerError(_)))
        {
            return Err(RedisError::from(e.clone()));
        }
    }
    Ok(conn)
}

impl Subscriptions {
    /// Reads the slot map and subscribes every master to the channels of its slots.
    pub async fn open(seeds: &[String], attempt: usize) -> RedisResult<Self> {
        let map = read_slot_map(seeds, attempt).await?;
        let (tx, pushes) = mpsc::unbounded_channel();
        let seed = &seeds[attempt % seeds.len()];
        let conns = try_join_all(
            map.iter()
                .map(|(addr, ranges)| subscribe_master(seed, addr, ranges, tx.clone())),
        )
        .await?;
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.reset();
        Ok(Self {
            map,
            conns,
            pushes,
            check,
            next_check: 0,
        })
    }

    /// The next shard message, or why these subscriptions are no longer complete.
    pub async fn next(&mut self) -> Event {
        loop {
            tokio::select! {
                push = self.pushes.recv() => {
                    let Some(push) = push else {
                        return Event::Lost("every connection closed".into());
                    };
                    match push.kind {
                        PushKind::SMessage => {
                            if let Some(msg) = Msg::from_push_info(push) {
                                return Event::Message(msg);
                            }
                        }
                        // Herald never unsubscribes: the server did, because the slot moved.
                        PushKind::SUnsubscribe => {
                            return Event::Lost("a shard channel's slot moved".into());
                        }
                        PushKind::Disconnection => {
                            return Event::Lost("a master's connection closed".into());
                        }
                        _ => {}
                    }
                }
                _ = self.check.tick() => {
                    if let Err(why) = self.check().await {
                        return Event::Lost(why);
                    }
                }
            }
        }
    }

    /// Pings every master and compares one's slot map (a different one at each check) with the
    /// map subscribed to.
    async fn check(&mut self) -> Result<(), String> {
        for conn in &mut self.conns {
            ::redis::cmd("PING")
                .query_async::<()>(conn)
                .await
                .map_err(|e| format!("a master did not answer a ping: {e}"))?;
        }
        let i = self.next_check % self.conns.len();
        self.next_check += 1;
        let asked = self
            .map
            .keys()
            .nth(i)
            .map(|a| a.0.clone())
            .unwrap_or_default();
        let map = cluster_slots(&mut self.conns[i], &asked)
            .await
            .map_err(|e| format!("cannot read the slot map: {e}"))?;
        if map != self.map {
            return Err("the cluster's slot map changed".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // `CLUSTER KEYSLOT` on a real cluster.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("hello"), 866);
        assert_eq!(key_slot("{hello}:x"), 866);
        assert_eq!(key_slot("a{hello}b{foo}"), 866);
        assert_eq!(
            key_slot("{}hello"),
            tag_slot("{}hello"),
            "an empty tag is no tag"
        );
        assert_eq!(key_slot("x{hello"), tag_slot("x{hello"));
    }

    #[test]
    fn every_slot_has_a_channel_of_its_own_slot() {
        let mut seen = std::collections::HashSet::new();
        for slot in 0..SLOTS {
            for channel in [events_channel(slot), channels_channel(slot)] {
                assert_eq!(key_slot(&channel), slot, "{channel}");
                assert!(seen.insert(channel));
            }
        }
        assert_eq!(slot_tag(0), "3560", "tags are stable across versions");
        assert!(slot_tag(SLOTS - 1).len() <= 6);
    }

    #[test]
    fn spublish_replaces_every_publish() {
        let script = "redis.call('PUBLISH', a, b)\nredis.call('PUBLISH', c, d)";
        let sharded = with_spublish(script);
        assert_eq!(sharded.matches("redis.call('SPUBLISH',").count(), 2);
        assert!(!sharded.contains("'PUBLISH'"));
    }

    #[test]
    fn parses_cluster_slots() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("id1")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7003), bulk("id4")]),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                Value::Array(vec![bulk(""), Value::Int(7001), bulk("id2")]),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(16383),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("id1")]),
            ]),
        ]);
        let map = parse_slots(reply, "10.0.0.9").unwrap();
        assert_eq!(
            map[&("127.0.0.1".to_owned(), 7000)],
            [(0, 5460), (10923, 16383)]
        );
        assert_eq!(map[&("10.0.0.9".to_owned(), 7001)], [(5461, 10922)]);
        assert_eq!(map.len(), 2);
    }
}
