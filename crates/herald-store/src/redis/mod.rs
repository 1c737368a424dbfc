//! The Redis engine: many Herald nodes share one Redis. Feed writes are Lua scripts on one hash
//! slot each (see `scripts`), work queues are Redis Streams with a consumer group (one stream per
//! priority lane), and live events travel over pub/sub to every node (on a Cluster sharded pub/sub,
//! one channel per slot; see `sharded`). The push outbox is one
//! script per batch on the `{q}` slot (see `outbox`); devices are in `devices`. Delivery policy
//! keeps categories and preferences in `policy`, frequency caps in `caps`, collapse keys in
//! `collapse` and decision counts and logs in `decisions`. Campaigns are in `campaigns`, their
//! recipient lists in `recipients`, and the index of device owners a push to everyone walks in
//! `owners`.

mod campaigns;
mod caps;
mod channels;
mod collapse;
mod connection;
mod decisions;
mod devices;
mod events;
mod global;
mod keys;
mod outbox;
mod owners;
mod per_master;
mod policy;
mod recipients;
mod scripts;
mod sharded;
mod stages;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use ::redis::{AsyncCommands, Script, Value};
use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream};
use herald_core::{Channel, Cursor, Device, EventBody, Notification, Position, Recipients};
use tokio::sync::mpsc;

use self::campaigns::CampaignScripts;
use self::channels::ChannelScripts;
use self::connection::{Conn, Deployment};
use self::devices::DeviceScripts;
use self::global::GlobalCache;
use self::outbox::OutboxScripts;
use self::policy::PolicyScripts;
use crate::feed_state::{GlobalState, UserMeta};
use crate::page::{Candidate, merge_page, replay_events};
use crate::*;

/// What a Redis engine needs beyond the shared [`StoreOptions`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// This node's consumer name in the work-queue group. Stable across restarts, so a restarted
    /// node takes back its own unfinished jobs at once; unique per node.
    pub node_id: String,
    /// Jobs another node took and has not finished for this long are taken over (a dead node's work).
    pub claim_idle: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            node_id: "herald".into(),
            claim_idle: Duration::from_secs(15),
        }
    }
}

struct Scripts {
    accept: Script,
    deliver_many: Script,
    deliver_many_source: String,
    mark: Script,
    mark_all: Script,
    deliver_global: Script,
    membership: Script,
}

pub struct RedisStore {
    conn: Conn,
    /// On a Cluster: scripts SPUBLISH on the channel of their slot instead of PUBLISHing.
    sharded: bool,
    /// Blocking stream reads get a connection of their own so they never hold up other commands.
    blocking: tokio::sync::Mutex<Conn>,
    options: StoreOptions,
    redis: RedisOptions,
    global: Arc<GlobalCache>,
    scripts: Scripts,
    device_scripts: DeviceScripts,
    outbox_scripts: OutboxScripts,
    policy_scripts: PolicyScripts,
    campaign_scripts: CampaignScripts,
    channel_scripts: ChannelScripts,
    channel_rx: Mutex<Option<mpsc::Receiver<ChannelNotice>>>,
    live_rx: Mutex<Option<mpsc::Receiver<Live>>>,
    live_enabled: Arc<AtomicBool>,
    /// Own unfinished jobs from a previous run are read back before new ones.
    own_pending_done: AtomicBool,
    last_claim_ms: AtomicI64,
    /// On a Cluster: which master serves each slot, for reads pipelined per master.
    slot_owners: per_master::SlotOwnersCache,
}

/// A user's meta hash fields (s, u, rm, f, gm) and their global read/archive states.
type MetaReply = (
    (
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<u64>,
    ),
    HashMap<u64, String>,
);

fn backend(e: ::redis::RedisError) -> StoreError {
    StoreError::Backend(format!("redis: {e}"))
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Backend(format!("corrupt record in redis: {e}"))
}

/// Capacity of the live event channel to the realtime hub.
const LIVE_QUEUE: usize = 64 * 1024;
/// Commands in flight at once for work that spans many keys (fan-out, content reads).
const CONCURRENCY: usize = 256;
/// Most entries one purge pass removes.
const MAX_PURGE_PER_PASS: isize = 10_000;
/// How long opening waits for the live event subscription.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);

impl RedisStore {
    /// Connects to `url` (`redis://host:port[/db]`), prepares the queues and starts listening
    /// for live events.
    pub async fn open(
        url: &str,
        options: StoreOptions,
        redis_options: RedisOptions,
    ) -> Result<Self> {
        let deployment = Deployment::parse(url).map_err(StoreError::Backend)?;
        let mut conn = deployment
            .connect(Duration::from_secs(10))
            .await
            .map_err(backend)?;
        let blocking = deployment
            .connect(Duration::from_secs(10))
            .await
            .map_err(backend)?;
        for lane in 0..3 {
            let created: ::redis::RedisResult<()> = ::redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(keys::lane(lane))
                .arg(keys::GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            if let Err(e) = created
                && e.code() != Some("BUSYGROUP")
            {
                return Err(backend(e));
            }
        }
        let sharded = matches!(deployment, Deployment::Cluster(_));
        let publishing = |source: &str| {
            if sharded {
                sharded::with_spublish(source)
            } else {
                source.to_owned()
            }
        };
        let deliver_many_source = publishing(&scripts::deliver_many());
        let scripts = Scripts {
            accept: Script::new(scripts::ACCEPT),
            deliver_many: Script::new(&deliver_many_source),
            deliver_many_source,
            mark: Script::new(&publishing(&scripts::mark())),
            mark_all: Script::new(&publishing(&scripts::mark_all())),
            deliver_global: Script::new(&publishing(scripts::DELIVER_GLOBAL)),
            membership: Script::new(scripts::MEMBERSHIP),
        };
        let global = Arc::new(GlobalCache::default());
        global.reload(&mut conn).await?;
        let (tx, rx) = mpsc::channel(LIVE_QUEUE);
        let (channel_tx, channel_rx) = mpsc::channel(LIVE_QUEUE);
        let live_enabled = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(events::listen(
            Arc::new(deployment),
            global.clone(),
            tx,
            channel_tx,
            live_enabled.clone(),
            ready_tx,
        ));
        // Events published once open returns are heard: on a Cluster subscribing takes a
        // moment (tens of thousands of shard channels). Bounded: live events are best effort and
        // the listener keeps trying on its own.
        if tokio::time::timeout(SUBSCRIBE_WAIT, ready).await.is_err() {
            tracing::warn!("live event subscription not in place yet; continuing without it");
        }
        Ok(Self {
            conn,
            sharded,
            blocking: tokio::sync::Mutex::new(blocking),
            options,
            redis: redis_options,
            global,
            scripts,
            device_scripts: DeviceScripts::new(),
            outbox_scripts: OutboxScripts::new(),
            policy_scripts: PolicyScripts::new(),
            campaign_scripts: CampaignScripts::new(),
            channel_scripts: ChannelScripts::new(sharded),
            channel_rx: Mutex::new(Some(channel_rx)),
            live_rx: Mutex::new(Some(rx)),
            live_enabled,
            own_pending_done: AtomicBool::new(false),
            last_claim_ms: AtomicI64::new(0),
            slot_owners: per_master::SlotOwnersCache::default(),
        })
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// The channel a script whose keys include `key` publishes feed events on.
    fn events_channel(&self, key: &str) -> String {
        if self.sharded {
            sharded::events_channel(sharded::key_slot(key))
        } else {
            keys::EVENTS_CHANNEL.to_owned()
        }
    }

    /// The first `limit` JSON values of a list kept newest first (dead letters, decision logs).
    async fn newest_of_list<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        limit: usize,
    ) -> Result<Vec<T>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let raw: Vec<String> = ::redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(limit - 1)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        raw.iter()
            .map(|json| serde_json::from_str(json).map_err(json_err))
            .collect()
    }

    async fn global(&self) -> Result<GlobalState> {
        self.global.current(&mut self.conn()).await
    }

    async fn user_meta(&self, user: &str) -> Result<UserMeta> {
        let ((s, u, rm, f, gm), states): MetaReply = ::redis::pipe()
            .cmd("HMGET")
            .arg(keys::user_meta(user))
            .arg(&["s", "u", "rm", "f", "gm"])
            .hgetall(keys::user_global(user))
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let mut meta = UserMeta {
            seq: s.unwrap_or(0),
            unread: u.unwrap_or(0),
            read_marker: rm.unwrap_or(0),
            floor: f.unwrap_or(0),
            global_marker: gm.unwrap_or(0),
            ..UserMeta::default()
        };
        for (gseq, state) in states {
            if state == "a" {
                meta.global_archived.push(gseq);
            } else {
                meta.global_read.push(gseq);
            }
        }
        Ok(meta)
    }

    async fn notifications(&self, ids: &[String]) -> Result<Vec<Option<Arc<Notification>>>> {
        let content_keys: Vec<String> = ids.iter().map(|id| keys::notification(id)).collect();
        let raw: Vec<Option<String>> = stream::iter(content_keys)
            .map(|key| {
                let mut conn = self.conn();
                async move { conn.get::<_, Option<String>>(key).await }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
            .map_err(backend)?;
        raw.into_iter()
            .map(|r| {
                r.map(|json| serde_json::from_str(&json).map(Arc::new).map_err(json_err))
                    .transpose()
            })
            .collect()
    }

    /// Total unread from what a feed script reports (`reply[2..5]`: own unread, global marker,
    /// global entries read above it): own unread + the global entries above the marker that
    /// the user sees, less those they read.
    async fn unread_from(&self, user: &str, global: &GlobalState, reply: &[Value]) -> Result<u64> {
        let (personal, marker, read_above) =
            (as_u64(&reply[2]), as_u64(&reply[3]), as_u64(&reply[4]));
        let memberships = self
            .memberships(user, &global.campaigns_after(marker))
            .await?;
        Ok((personal + global.listed_after(marker, &memberships)).saturating_sub(read_above))
    }

    async fn deliver_to_global(
        &self,
        notification: Arc<Notification>,
        flags: EntryFlags,
        campaign: Option<&str>,
    ) -> Result<u64> {
        let json = serde_json::to_string(&*notification).map_err(json_err)?;
        self.scripts
            .deliver_global
            .key(keys::GLOBAL_FEED)
            .key(keys::GLOBAL_META)
            .key(keys::GLOBAL_CAMPAIGNS)
            .arg(&notification.id)
            .arg(flags.bits())
            .arg(self.options.global_max)
            .arg(&json)
            .arg(self.events_channel(keys::GLOBAL_FEED))
            .arg(campaign.unwrap_or(""))
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)
    }

    fn parse_jobs(&self, lane: usize, entries: Vec<StreamId>) -> Result<(Vec<Job>, Vec<String>)> {
        let mut jobs = Vec::with_capacity(entries.len());
        let mut gone = Vec::new();
        for entry in entries {
            let Some(Value::BulkString(raw)) = entry.map.get("n") else {
                gone.push(entry.id); // deleted while pending: nothing left to do
                continue;
            };
            let notification: Notification = serde_json::from_slice(raw).map_err(json_err)?;
            jobs.push(Job {
                id: JobId(format!("{lane}:{}", entry.id)),
                lane: notification.priority,
                notification: Arc::new(notification),
                cursor: None,
            });
        }
        Ok((jobs, gone))
    }

    async fn with_checkpoints(&self, mut jobs: Vec<Job>) -> Result<Vec<Job>> {
        if jobs.is_empty() {
            return Ok(jobs);
        }
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.0.as_str()).collect();
        let cursors: Vec<Option<String>> = ::redis::cmd("HMGET")
            .arg(keys::CHECKPOINTS)
            .arg(&ids)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        for (job, cursor) in jobs.iter_mut().zip(cursors) {
            job.cursor = cursor;
        }
        Ok(jobs)
    }

    async fn read_group(
        &self,
        lanes: &[usize],
        start: &str,
        max: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Job>> {
        let stream_keys: Vec<String> = lanes.iter().map(|l| keys::lane(*l)).collect();
        let ids: Vec<&str> = lanes.iter().map(|_| start).collect();
        let mut opts = StreamReadOptions::default()
            .group(keys::GROUP, &self.redis.node_id)
            .count(max);
        if let Some(block) = block {
            opts = opts.block(block.as_millis() as usize);
        }
        let reply: Option<StreamReadReply> = if block.is_some() {
            let mut conn = self.blocking.lock().await;
            conn.xread_options(&stream_keys, &ids, &opts)
                .await
                .map_err(backend)?
        } else {
            self.conn()
                .xread_options(&stream_keys, &ids, &opts)
                .await
                .map_err(backend)?
        };
        let mut jobs = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let lane = lanes[stream_keys.iter().position(|k| *k == key.key).unwrap_or(0)];
            let (mut found, gone) = self.parse_jobs(lane, key.ids)?;
            if !gone.is_empty() {
                let _: () = self
                    .conn()
                    .xack(&key.key, keys::GROUP, &gone)
                    .await
                    .map_err(backend)?;
            }
            jobs.append(&mut found);
        }
        jobs.sort_by_key(|j| j.lane);
        Ok(jobs)
    }

    /// Takes over jobs that another consumer left unfinished for longer than `claim_idle`.
    async fn claim_abandoned(&self, max: usize) -> Result<Vec<Job>> {
        let now = herald_core::time::now_ms();
        let every = (self.redis.claim_idle.as_millis() as i64 / 2).max(100);
        if now - self.last_claim_ms.load(Ordering::Relaxed) < every {
            return Ok(Vec::new());
        }
        self.last_claim_ms.store(now, Ordering::Relaxed);
        let mut jobs = Vec::new();
        for lane in 0..3 {
            let reply: ::redis::streams::StreamAutoClaimReply = ::redis::cmd("XAUTOCLAIM")
                .arg(keys::lane(lane))
                .arg(keys::GROUP)
                .arg(&self.redis.node_id)
                .arg(self.redis.claim_idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(max)
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            let (mut found, _) = self.parse_jobs(lane, reply.claimed)?;
            if !found.is_empty() {
                tracing::info!(
                    jobs = found.len(),
                    lane,
                    "took over jobs another node left unfinished"
                );
            }
            jobs.append(&mut found);
        }
        self.with_checkpoints(jobs).await
    }
}

/// Most users one delivery script serves: a few milliseconds of Redis time.
const DELIVER_BATCH: usize = 128;
/// Users whose delivery scripts are in flight at once, per `deliver` call.
const IN_FLIGHT_USERS: usize = 16 * DELIVER_BATCH;

/// The Cluster hash slot of a user's keys (`{u:USER}`).
fn user_slot(user: &str) -> u16 {
    sharded::key_slot(&keys::user_meta(user))
}

impl RedisStore {
    /// One `deliver_many` script call (`keys` of its words are keys).
    async fn deliver_call(
        &self,
        keys: usize,
        words: &[String],
    ) -> ::redis::RedisResult<Vec<Value>> {
        let mut conn = self.conn();
        let sha = ::redis::cmd("EVALSHA")
            .arg(self.scripts.deliver_many.get_hash())
            .arg(keys)
            .arg(words)
            .query_async::<Vec<Value>>(&mut conn)
            .await;
        match sha {
            // Not cached on that server yet (a restart, a new shard): send it once.
            Err(e)
                if e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) =>
            {
                ::redis::cmd("EVAL")
                    .arg(&self.scripts.deliver_many_source)
                    .arg(keys)
                    .arg(words)
                    .query_async(&mut conn)
                    .await
            }
            other => other,
        }
    }

    /// Deliveries grouped into script calls: one notification and flags per call, at most
    /// [`DELIVER_BATCH`] users, and on a Cluster one slot (a script's keys must share it).
    /// Each user appears once per call, so a repeated user goes to a later call.
    fn delivery_batches(&self, deliveries: &[Delivery]) -> Vec<Vec<usize>> {
        let cluster = matches!(self.conn, Conn::Cluster(_));
        let mut open: HashMap<(u16, &str, u8), Vec<usize>> = HashMap::new();
        let mut batches = Vec::new();
        for (i, d) in deliveries.iter().enumerate() {
            let slot = if cluster { user_slot(&d.user) } else { 0 };
            let key = (slot, d.notification.id.as_str(), d.flags.bits());
            let batch = open.entry(key).or_default();
            if batch.iter().any(|&j| deliveries[j].user == d.user) {
                batches.push(std::mem::take(batch));
            }
            batch.push(i);
            if batch.len() >= DELIVER_BATCH {
                batches.push(std::mem::take(batch));
            }
        }
        batches.extend(open.into_values().filter(|b| !b.is_empty()));
        batches
    }
}

/// A notification's JSON for live events, without its recipient list: a notification to 10,000
/// listed users would otherwise carry the list in every one of its 10,000 script calls.
fn live_content(n: &Notification) -> Result<Arc<str>> {
    let content = Notification {
        id: n.id.clone(),
        to: Recipients::Users(Vec::new()),
        title: n.title.clone(),
        body: n.body.clone(),
        category: n.category.clone(),
        data: n.data.clone(),
        priority: n.priority,
        ttl_seconds: n.ttl_seconds,
        channels: n.channels,
        created_at: n.created_at,
        idempotency_key: n.idempotency_key.clone(),
        collapse_key: n.collapse_key.clone(),
        dry_run: n.dry_run,
    };
    Ok(serde_json::to_string(&content).map_err(json_err)?.into())
}

fn values(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => vec![other],
    }
}

fn as_u64(v: &Value) -> u64 {
    match v {
        Value::Int(i) => *i as u64,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn as_str(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn accept(&self, accept: Accept) -> Result<Accepted> {
        let n = accept.notification;
        let json = serde_json::to_string(&n).map_err(json_err)?;
        let lane_key = keys::lane(n.priority.lane());
        let mut conn = self.conn();
        // The content first: if the script below never runs, an orphan record is purged with retention.
        let _: () = conn
            .set(keys::notification(&n.id), &json)
            .await
            .map_err(backend)?;
        let (idem_key, fingerprint, key) = match &accept.idempotency {
            Some(i) => (
                keys::idempotency(&i.key),
                i.fingerprint.as_str(),
                i.key.as_str(),
            ),
            None => (lane_key.clone(), "", ""),
        };
        let reply: Vec<String> = self
            .scripts
            .accept
            .key(&lane_key)
            .key(&idem_key)
            .key(keys::NOTIFICATION_TIMES)
            .key(keys::IDEMPOTENCY_TIMES)
            .arg(&n.id)
            .arg(fingerprint)
            .arg(n.created_at)
            .arg(self.options.idempotency_ttl_ms)
            .arg(&json)
            .arg(key)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        match reply.first().map(String::as_str) {
            Some("created") => Ok(Accepted::Created(Arc::new(n))),
            Some(outcome) => {
                let _: () = conn.del(keys::notification(&n.id)).await.map_err(backend)?;
                let id = reply.get(1).cloned().unwrap_or_default();
                if outcome == "duplicate" {
                    Ok(Accepted::Duplicate { id })
                } else {
                    Err(StoreError::IdempotencyConflict { id })
                }
            }
            None => Err(StoreError::Backend("accept script gave no answer".into())),
        }
    }

    async fn notification(&self, id: &str) -> Result<Option<Arc<Notification>>> {
        Ok(self.notifications(&[id.to_owned()]).await?.pop().flatten())
    }

    async fn next_jobs(&self, max: usize, wait: Duration) -> Result<Vec<Job>> {
        if !self.own_pending_done.load(Ordering::Relaxed) {
            let own = self.read_group(&[0, 1, 2], "0", max, None).await?;
            if !own.is_empty() {
                return self.with_checkpoints(own).await;
            }
            self.own_pending_done.store(true, Ordering::Relaxed);
        }
        let claimed = self.claim_abandoned(max).await?;
        if !claimed.is_empty() {
            return Ok(claimed);
        }
        let mut jobs = Vec::new();
        for lane in 0..3 {
            if jobs.len() >= max {
                break;
            }
            jobs.extend(
                self.read_group(&[lane], ">", max - jobs.len(), None)
                    .await?,
            );
        }
        if jobs.is_empty() && !wait.is_zero() {
            jobs = self.read_group(&[0, 1, 2], ">", max, Some(wait)).await?;
        }
        Ok(jobs)
    }

    async fn checkpoint_job(&self, job: &JobId, cursor: &str) -> Result<()> {
        self.conn()
            .hset(keys::CHECKPOINTS, &job.0, cursor)
            .await
            .map_err(backend)
    }

    async fn finish_jobs(&self, jobs: &[JobId]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        for job in jobs {
            let (lane, id) = job
                .0
                .split_once(':')
                .ok_or_else(|| StoreError::Backend(format!("bad job id {}", job.0)))?;
            let lane_key = keys::lane(lane.parse().unwrap_or(0));
            pipe.xack(&lane_key, keys::GROUP, &[id]).ignore();
            pipe.xdel(&lane_key, &[id]).ignore();
            pipe.hdel(keys::CHECKPOINTS, &job.0).ignore();
        }
        pipe.query_async::<()>(&mut self.conn())
            .await
            .map_err(backend)
    }

    async fn queue_depths(&self) -> Result<[u64; 3]> {
        let mut depths = [0u64; 3];
        for (lane, depth) in depths.iter_mut().enumerate() {
            let groups: Vec<HashMap<String, Value>> = ::redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(keys::lane(lane))
                .query_async(&mut self.conn())
                .await
                .map_err(backend)?;
            *depth = groups
                .iter()
                .find(|g| g.get("name").map(as_str).as_deref() == Some(keys::GROUP))
                .map_or(0, |g| g.get("lag").map(as_u64).unwrap_or(0));
        }
        Ok(depths)
    }

    async fn deliver(&self, deliveries: &[Delivery]) -> Result<Vec<Delivered>> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let global = self.global().await?;
        let mut json_by_id: HashMap<&str, Arc<str>> = HashMap::new();
        for d in deliveries {
            // Only a live event carries the content; an inbox-only batch publishes nothing.
            if d.flags.live && !json_by_id.contains_key(d.notification.id.as_str()) {
                json_by_id.insert(&d.notification.id, live_content(&d.notification)?);
            }
        }
        // One script per batch of users of one notification (on a Cluster, of one slot); the
        // multiplexed connection pipelines the batches.
        let batches = self.delivery_batches(deliveries);
        let floor = global.floor;
        let calls: Vec<(usize, Vec<String>)> = batches
            .iter()
            .map(|batch| {
                let first = &deliveries[batch[0]];
                let mut words = Vec::with_capacity(batch.len() * 4 + 6);
                for &i in batch {
                    let user = &deliveries[i].user;
                    words.push(keys::user_meta(user));
                    words.push(keys::user_inbox(user));
                    words.push(keys::user_global(user));
                }
                words.push(first.notification.id.clone());
                words.push(first.flags.bits().to_string());
                words.push(self.options.inbox_max.to_string());
                words.push(floor.to_string());
                words.push(
                    json_by_id
                        .get(first.notification.id.as_str())
                        .map_or_else(String::new, |json| json.to_string()),
                );
                words.push(self.events_channel(&keys::user_meta(&first.user)));
                words.extend(batch.iter().map(|&i| deliveries[i].user.clone()));
                (batch.len() * 3, words)
            })
            .collect();
        let replies: Vec<Vec<Value>> = if let Conn::Cluster(cluster) = &self.conn {
            // A fan-out's users rarely share a slot, so its batches are mostly of one user
            // each: they go pipelined per master, and what was answered with an error (a
            // script not cached there yet, a slot that moved) goes again the ordinary way.
            let hash = self.scripts.deliver_many.get_hash();
            let commands = calls
                .iter()
                .zip(&batches)
                .map(|((keys, words), batch)| {
                    let mut call = ::redis::cmd("EVALSHA");
                    call.arg(hash).arg(keys).arg(words);
                    (user_slot(&deliveries[batch[0]].user), call)
                })
                .collect();
            let answers = self.per_master(cluster, commands).await?;
            let mut replies = Vec::with_capacity(calls.len());
            for ((keys, words), answer) in calls.iter().zip(answers) {
                replies.push(match answer {
                    Some(Value::Array(parts)) => parts,
                    Some(Value::Nil) => Vec::new(),
                    _ => self.deliver_call(*keys, words).await.map_err(backend)?,
                });
            }
            replies
        } else {
            let in_flight =
                (IN_FLIGHT_USERS * batches.len() / deliveries.len()).clamp(1, CONCURRENCY);
            stream::iter(0..calls.len())
                .map(|i| self.deliver_call(calls[i].0, &calls[i].1))
                .buffered(in_flight)
                .try_collect()
                .await
                .map_err(backend)?
        };
        let mut answers: Vec<Option<Value>> = vec![None; deliveries.len()];
        for (batch, reply) in batches.iter().zip(replies) {
            for (&i, answer) in batch.iter().zip(reply) {
                answers[i] = Some(answer);
            }
        }
        let mut delivered = Vec::new();
        for (d, reply) in deliveries.iter().zip(answers) {
            let parts = values(reply.unwrap_or(Value::Nil));
            if parts.len() < 4 {
                continue; // already delivered
            }
            delivered.push(Delivered {
                user: d.user.clone(),
                seq: as_u64(&parts[0]),
                flags: d.flags,
            });
        }
        Ok(delivered)
    }

    async fn deliver_global(
        &self,
        notification: Arc<Notification>,
        flags: EntryFlags,
    ) -> Result<u64> {
        self.deliver_to_global(notification, flags, None).await
    }

    async fn deliver_shared(
        &self,
        notification: Arc<Notification>,
        flags: EntryFlags,
        campaign: &str,
    ) -> Result<u64> {
        self.deliver_to_global(notification, flags, Some(campaign))
            .await
    }

    async fn global_entry(&self, notification: &str) -> Result<Option<u64>> {
        let score: Option<f64> = self
            .conn()
            .zscore(keys::GLOBAL_FEED, notification)
            .await
            .map_err(backend)?;
        Ok(score.map(|s| s as u64 / 8))
    }

    async fn exclude_recipients(&self, campaign: &str, exclusions: &[Exclusion]) -> Result<()> {
        self.exclude(campaign, exclusions).await
    }

    async fn campaign_shows(&self, campaign: &str, user: &str, channel: Channel) -> Result<bool> {
        let campaign: Arc<str> = Arc::from(campaign);
        let memberships = self
            .memberships(user, std::slice::from_ref(&campaign))
            .await?;
        Ok(memberships.shows(&campaign, channel))
    }

    async fn inbox_page(&self, user: &str, before: Cursor, limit: usize) -> Result<InboxPage> {
        let global = self.global().await?;
        let meta = self.user_meta(user).await?;
        let memberships = self.memberships(user, &global.campaigns_after(0)).await?;
        let want = limit + 1;
        let mut own_ids = Vec::new();
        let mut own_meta = Vec::new();
        let mut top = if before.user == u64::MAX {
            "+inf".to_owned()
        } else {
            format!("({}", before.user * 8)
        };
        'scan: loop {
            let batch: Vec<(String, f64)> = self
                .conn()
                .zrevrangebyscore_limit_withscores(
                    keys::user_inbox(user),
                    &top,
                    "-inf",
                    0,
                    want as isize,
                )
                .await
                .map_err(backend)?;
            let exhausted = batch.len() < want;
            for (id, score) in batch {
                let score = score as u64;
                top = format!("({score}");
                let (seq, flags) = (score / 8, score % 8);
                if flags & 1 == 0 {
                    continue;
                }
                own_ids.push(id);
                own_meta.push((seq, meta.is_read(seq, flags & 4 != 0)));
                if own_ids.len() == want {
                    break 'scan;
                }
            }
            if exhausted {
                break;
            }
        }
        let mut global_ids = Vec::new();
        let mut global_meta = Vec::new();
        let top = before.global.min(global.head.saturating_add(1));
        let listed: Vec<u64> = global
            .entries
            .iter()
            .rev()
            .filter(|(g, inbox)| {
                *g < top
                    && *inbox
                    && !meta.global_is_archived(*g)
                    && global.shows(*g, &memberships, Channel::Inbox)
            })
            .map(|(g, _)| *g)
            .take(want)
            .collect();
        if !listed.is_empty() {
            let low = listed.last().copied().unwrap_or(0) * 8;
            let high = listed[0] * 8 + 7;
            let entries: Vec<(String, f64)> = self
                .conn()
                .zrangebyscore_withscores(keys::GLOBAL_FEED, low, high)
                .await
                .map_err(backend)?;
            let by_seq: HashMap<u64, String> = entries
                .into_iter()
                .map(|(id, s)| ((s as u64) / 8, id))
                .collect();
            for g in listed {
                if let Some(id) = by_seq.get(&g) {
                    global_ids.push(id.clone());
                    global_meta.push((g, meta.global_is_read(g)));
                }
            }
        }
        let own_n = self.notifications(&own_ids).await?;
        let global_n = self.notifications(&global_ids).await?;
        let to_candidates = |metas: Vec<(u64, bool)>, ns: Vec<Option<Arc<Notification>>>| {
            metas
                .into_iter()
                .zip(ns)
                .map(|((seq, read), notification)| Candidate {
                    seq,
                    notification,
                    read,
                })
                .collect()
        };
        let unread = meta.unread + global.unread_for(&meta, &memberships);
        Ok(merge_page(
            to_candidates(own_meta, own_n),
            to_candidates(global_meta, global_n),
            before,
            limit,
            unread,
        ))
    }

    async fn unread(&self, user: &str) -> Result<u64> {
        let global = self.global().await?;
        let meta = self.user_meta(user).await?;
        let memberships = self
            .memberships(user, &global.campaigns_after(meta.global_marker))
            .await?;
        Ok(meta.unread + global.unread_for(&meta, &memberships))
    }

    async fn mark_read(&self, user: &str, id: &str) -> Result<ChangeOutcome> {
        self.mark(user, id, "read").await
    }

    async fn mark_all_read(&self, user: &str) -> Result<Change> {
        let global = self.global().await?;
        let reply: Vec<Value> = self
            .scripts
            .mark_all
            .key(keys::user_meta(user))
            .key(keys::user_changes(user))
            .key(keys::user_global(user))
            .arg(global.head)
            .arg(self.options.changes_max)
            .arg(global.floor)
            .arg(user)
            .arg(self.events_channel(&keys::user_meta(user)))
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        Ok(Change {
            seq: as_u64(&reply[1]),
            unread: self.unread_from(user, &global, &reply).await?,
        })
    }

    async fn archive(&self, user: &str, id: &str) -> Result<ChangeOutcome> {
        self.mark(user, id, "archive").await
    }

    async fn head(&self, user: &str) -> Result<Position> {
        let global = self.global().await?;
        let seq: Option<u64> = self
            .conn()
            .hget(keys::user_meta(user), "s")
            .await
            .map_err(backend)?;
        Ok(Position::new(seq.unwrap_or(0), global.head))
    }

    async fn replay(&self, user: &str, after: Position, max: usize) -> Result<Replay> {
        let global = self.global().await?;
        let meta = self.user_meta(user).await?;
        let head = Position::new(meta.seq, global.head);
        let ahead = after.user > meta.seq || after.global > global.head;
        let behind = after.user < meta.floor || after.global < global.floor;
        if ahead || behind {
            return Ok(Replay::Gap { head });
        }
        let from = (after.user + 1) * 8;
        // The user's keys share a slot; the global feed is on another.
        let (own, changes): (Vec<(String, f64)>, Vec<String>) = ::redis::pipe()
            .zrangebyscore_withscores(keys::user_inbox(user), from, "+inf")
            .zrangebyscore(keys::user_changes(user), after.user + 1, "+inf")
            .query_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let everyone: Vec<(String, f64)> = self
            .conn()
            .zrangebyscore_withscores(keys::GLOBAL_FEED, (after.global + 1) * 8, "+inf")
            .await
            .map_err(backend)?;
        let own: Vec<(String, u64)> = own
            .into_iter()
            .map(|(id, s)| (id, s as u64))
            .filter(|(_, s)| s & 2 != 0)
            .collect();
        let memberships = self
            .memberships(user, &global.campaigns_after(after.global))
            .await?;
        let everyone: Vec<(String, u64)> = everyone
            .into_iter()
            .map(|(id, s)| (id, s as u64))
            .filter(|(_, s)| {
                s & 2 != 0
                    && !meta.global_is_archived(s / 8)
                    && global.shows(s / 8, &memberships, Channel::Realtime)
            })
            .collect();
        if own.len() + changes.len() + everyone.len() > max {
            return Ok(Replay::Gap { head });
        }
        let own_n = self
            .notifications(&own.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>())
            .await?;
        let global_n = self
            .notifications(
                &everyone
                    .iter()
                    .map(|(id, _)| id.clone())
                    .collect::<Vec<_>>(),
            )
            .await?;
        let mut mine: Vec<(u64, EventBody)> = Vec::new();
        for ((_, score), n) in own.iter().zip(own_n) {
            let seq = score / 8;
            if let Some(n) = n {
                mine.push((
                    seq,
                    EventBody::Notification {
                        notification: n,
                        read: meta.is_read(seq, score & 4 != 0),
                    },
                ));
            }
        }
        for member in changes {
            let (seq, body) = member
                .split_once(' ')
                .ok_or_else(|| StoreError::Backend("corrupt change".into()))?;
            let seq: u64 = seq
                .parse()
                .map_err(|_| StoreError::Backend("corrupt change".into()))?;
            mine.push((seq, events::change_body(body)?));
        }
        let everyone = everyone
            .iter()
            .zip(global_n)
            .filter_map(|((_, score), n)| n.map(|n| (score / 8, n, meta.global_is_read(score / 8))))
            .collect();
        let events = replay_events(user, mine, everyone);
        Ok(Replay::Events { events, head })
    }

    async fn subscribe(&self, topic: &str, users: &[String]) -> Result<u64> {
        if users.is_empty() {
            return Ok(0);
        }
        let items: Vec<(u8, &String)> = users.iter().map(|u| (0u8, u)).collect();
        ::redis::cmd("ZADD")
            .arg(keys::topic(topic))
            .arg("NX")
            .arg(&items)
            .query_async(&mut self.conn())
            .await
            .map_err(backend)
    }

    async fn unsubscribe(&self, topic: &str, users: &[String]) -> Result<u64> {
        if users.is_empty() {
            return Ok(0);
        }
        self.conn()
            .zrem(keys::topic(topic), users)
            .await
            .map_err(backend)
    }

    async fn subscribers(
        &self,
        topic: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let min = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        self.conn()
            .zrangebylex_limit(keys::topic(topic), min, "+", 0, limit as isize)
            .await
            .map_err(backend)
    }

    async fn register_device(&self, device: Device) -> Result<()> {
        self.register_user_device(&device).await
    }

    async fn devices(&self, user: &str) -> Result<Vec<Device>> {
        self.devices_of_users(&[user.to_owned()]).await
    }

    async fn remove_device(&self, user: &str, id: &str) -> Result<bool> {
        self.remove_user_device(user, id).await
    }

    async fn devices_of(&self, users: &[String]) -> Result<Vec<Device>> {
        self.devices_of_users(users).await
    }

    async fn prune_device(&self, id: &str) -> Result<bool> {
        self.prune_any_device(id).await
    }

    async fn enqueue_push(&self, tasks: &[PushTask]) -> Result<u64> {
        if tasks.is_empty() {
            return Ok(0);
        }
        self.enqueue_push_tasks(tasks).await
    }

    async fn next_push(&self, max: usize, now_ms: i64, lease: Duration) -> Result<Vec<PushTask>> {
        self.next_push_tasks(max, now_ms, lease).await
    }

    async fn finish_push(&self, outcomes: &[PushOutcome]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.finish_push_tasks(outcomes).await
    }

    async fn push_depths(&self) -> Result<[u64; 3]> {
        self.outbox_depths().await
    }

    async fn delivery_report(&self, notification: &str) -> Result<DeliveryReport> {
        self.push_report(notification).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.newest_dead_letters(limit).await
    }

    async fn put_category(&self, category: &Category) -> Result<()> {
        self.store_category(category).await
    }

    async fn delete_category(&self, name: &str) -> Result<bool> {
        self.remove_category(name).await
    }

    async fn categories(&self) -> Result<Vec<Category>> {
        self.all_categories().await
    }

    async fn put_preferences(&self, user: &str, preferences: &Preferences) -> Result<()> {
        self.store_preferences(user, preferences).await
    }

    async fn preferences_of(&self, users: &[String]) -> Result<Vec<Option<Preferences>>> {
        self.preferences_of_users(users).await
    }

    async fn take_caps(&self, requests: &[CapRequest], now_ms: i64) -> Result<Vec<bool>> {
        self.take_user_caps(requests, now_ms).await
    }

    async fn claim_collapse(
        &self,
        claims: &[CollapseClaim],
        now_ms: i64,
    ) -> Result<Vec<Option<String>>> {
        self.claim_user_collapses(claims, now_ms).await
    }

    async fn archive_if_unread(&self, user: &str, id: &str) -> Result<ChangeOutcome> {
        self.mark(user, id, "archive_unread").await
    }

    async fn record_decisions(
        &self,
        counts: &[DecisionCount],
        records: &[DecisionRecord],
    ) -> Result<()> {
        self.record_user_decisions(counts, records).await
    }

    async fn decisions(&self, user: &str, limit: usize) -> Result<Vec<DecisionRecord>> {
        self.newest_decisions(user, limit).await
    }

    async fn create_campaign(&self, campaign: &Campaign) -> Result<()> {
        self.create_campaign_record(campaign).await
    }

    async fn campaign(&self, id: &str) -> Result<Option<Campaign>> {
        self.load_campaign(id).await
    }

    async fn campaigns(&self, before: Option<&str>, limit: usize) -> Result<Vec<Campaign>> {
        self.newest_campaigns(before, limit).await
    }

    async fn active_campaigns(&self) -> Result<Vec<Campaign>> {
        self.unfinished_campaigns().await
    }

    async fn update_campaign(&self, campaign: &Campaign) -> Result<bool> {
        self.replace_campaign(campaign).await
    }

    async fn add_recipients(&self, campaign: &str, users: &[String]) -> Result<RecipientsAdded> {
        self.append_recipients(campaign, users).await
    }

    async fn recipient_count(&self, campaign: &str) -> Result<u64> {
        self.count_recipients(campaign).await
    }

    async fn recipients(&self, campaign: &str, from: u64, limit: usize) -> Result<Vec<String>> {
        self.recipients_from(campaign, from, limit).await
    }

    async fn drop_recipients(&self, campaign: &str, keep_members: bool) -> Result<()> {
        self.drop_recipient_list(campaign, keep_members).await
    }

    async fn stage_push(&self, campaign: &str, stage: &PushStage) -> Result<bool> {
        self.put_push_stage(campaign, stage).await
    }

    async fn push_stage(
        &self,
        campaign: &str,
        from: u64,
    ) -> Result<Option<(PushStage, StagedProgress)>> {
        self.get_push_stage(campaign, from).await
    }

    async fn drop_push_stages(&self, campaign: &str) -> Result<()> {
        self.drop_stages(campaign).await
    }

    async fn finish_staged(
        &self,
        campaign: &str,
        from: u64,
        notification: &str,
        outcomes: &[StagedOutcome],
    ) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.record_staged(campaign, from, notification, outcomes)
            .await
    }

    async fn device_owners(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.owners_after(after, limit).await
    }

    async fn channel_put_chunk(
        &self,
        channel: &str,
        upload: &str,
        index: u32,
        data: bytes::Bytes,
    ) -> Result<()> {
        self.channel_chunk_put(channel, upload, index, data).await
    }

    async fn channel_discard(&self, channel: &str, upload: &str, chunks: u32) -> Result<()> {
        self.channel_chunks_drop(channel, upload, chunks).await
    }

    async fn channel_publish(
        &self,
        channel: &str,
        messages: Vec<NewChannelMessage>,
        now_ms: i64,
    ) -> Result<Vec<u64>> {
        self.channel_append(channel, messages, now_ms).await
    }

    async fn channel_read(
        &self,
        channel: &str,
        after: u64,
        max: usize,
        now_ms: i64,
    ) -> Result<ChannelRead> {
        self.channel_range(channel, after, max, now_ms).await
    }

    async fn channel_chunk(
        &self,
        channel: &str,
        upload: &str,
        index: u32,
    ) -> Result<Option<bytes::Bytes>> {
        self.channel_chunk_get(channel, upload, index).await
    }

    fn channel_events(&self) -> Option<mpsc::Receiver<ChannelNotice>> {
        self.channel_rx.lock().expect("channel events lock").take()
    }

    fn live_events(&self) -> Option<mpsc::Receiver<Live>> {
        let rx = self.live_rx.lock().expect("live lock").take();
        if rx.is_some() {
            self.live_enabled.store(true, Ordering::Release);
        }
        rx
    }

    async fn purge_expired(&self, now_ms: i64) -> Result<PurgeReport> {
        let mut conn = self.conn();
        let cutoff = now_ms - self.options.notification_retention_ms;
        let ids: Vec<String> = conn
            .zrangebyscore_limit(
                keys::NOTIFICATION_TIMES,
                "-inf",
                cutoff,
                0,
                MAX_PURGE_PER_PASS,
            )
            .await
            .map_err(backend)?;
        let mut report = PurgeReport::default();
        if !ids.is_empty() {
            // Each content key is on its own slot.
            let contents: Vec<String> = ids.iter().map(|id| keys::notification(id)).collect();
            stream::iter(contents)
                .map(|key| {
                    let mut conn = self.conn();
                    async move { conn.del::<_, ()>(key).await }
                })
                .buffered(CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await
                .map_err(backend)?;
            conn.zrem::<_, _, ()>(keys::NOTIFICATION_TIMES, &ids)
                .await
                .map_err(backend)?;
            report.notifications = ids.len() as u64;
        }
        let cutoff = now_ms - self.options.idempotency_ttl_ms;
        let idem: Vec<String> = conn
            .zrangebyscore_limit(
                keys::IDEMPOTENCY_TIMES,
                "-inf",
                cutoff,
                0,
                MAX_PURGE_PER_PASS,
            )
            .await
            .map_err(backend)?;
        if !idem.is_empty() {
            let mut pipe = ::redis::pipe();
            for key in &idem {
                pipe.del(keys::idempotency(key)).ignore();
            }
            pipe.zrem(keys::IDEMPOTENCY_TIMES, &idem).ignore();
            pipe.query_async::<()>(&mut conn).await.map_err(backend)?;
            report.idempotency_keys = idem.len() as u64;
        }
        Ok(report)
    }

    async fn health(&self) -> Result<()> {
        ::redis::cmd("PING")
            .query_async::<String>(&mut self.conn())
            .await
            .map(|_| ())
            .map_err(backend)
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

impl RedisStore {
    async fn mark(&self, user: &str, id: &str, kind: &str) -> Result<ChangeOutcome> {
        let global = self.global().await?;
        let score: Option<f64> = self
            .conn()
            .zscore(keys::GLOBAL_FEED, id)
            .await
            .map_err(backend)?;
        let mut gseq = score
            .map(|s| s as u64)
            .filter(|s| s & 1 != 0 && s / 8 > global.floor)
            .map(|s| s / 8);
        // A campaign's shared entry is there only for the users who see it.
        if let Some(g) = gseq
            && let Some(campaign) = global.restricted.get(&g)
        {
            let memberships = self
                .memberships(user, std::slice::from_ref(campaign))
                .await?;
            if !global.shows(g, &memberships, Channel::Inbox) {
                gseq = None;
            }
        }
        let gseq = gseq.map(|g| g.to_string()).unwrap_or_default();
        let reply: Vec<Value> = self
            .scripts
            .mark
            .key(keys::user_meta(user))
            .key(keys::user_inbox(user))
            .key(keys::user_changes(user))
            .key(keys::user_global(user))
            .arg(id)
            .arg(gseq)
            .arg(self.options.changes_max)
            .arg(global.floor)
            .arg(user)
            .arg(self.events_channel(&keys::user_meta(user)))
            .arg(kind)
            .invoke_async(&mut self.conn())
            .await
            .map_err(backend)?;
        let outcome = reply.first().map(as_str);
        if !matches!(outcome.as_deref(), Some("changed" | "unchanged")) {
            return Ok(ChangeOutcome::NotFound);
        }
        let unread = self.unread_from(user, &global, &reply).await?;
        Ok(match outcome.as_deref() {
            Some("changed") => ChangeOutcome::Changed(Change {
                seq: as_u64(&reply[1]),
                unread,
            }),
            _ => ChangeOutcome::Unchanged { unread },
        })
    }
}
