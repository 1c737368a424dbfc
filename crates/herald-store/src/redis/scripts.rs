//! Lua scripts: every write that must be atomic runs as one script in one hash slot. Scripts that
//! change a user's feed also PUBLISH its live event, so events leave in commit order per user,
//! whichever node made the change. On a Cluster they are loaded with SPUBLISH instead, and the
//! channel given is the shard channel of the script's slot (see `sharded`).
//!
//! Feed entries are sorted-set members (the notification id) scored `seq * 8 + flags`, where the
//! flag bits are 1 = listed in the inbox, 2 = announced live, 4 = read: one key per entry.

/// Helpers shared by the scripts that change a user's feed.
const PRELUDE: &str = r#"
local function num(v) return tonumber(v or '0') or 0 end
-- The user's global read state: their marker and how many global entries above it they read or archived.
local function global_read_state(m, gs, gfloor)
  local gm = num(redis.call('HGET', m, 'gm'))
  local low = math.max(gm, gfloor)
  local gx = 0
  local all = redis.call('HGETALL', gs)
  for k = 1, #all, 2 do if tonumber(all[k]) > low then gx = gx + 1 end end
  return gm, gx
end
local function event(channel, user, seq, unread, gm, gx, rest)
  redis.call('PUBLISH', channel, '{"u":"' .. user .. '","f":"u","s":' .. seq .. ',"pu":' .. unread ..
    ',"gm":' .. gm .. ',"gx":' .. gx .. ',' .. rest .. '}')
end
-- Appends a user action to the bounded change log and announces it.
local function change(m, c, gs, user, body, changes_max, gfloor, channel)
  local seq = redis.call('HINCRBY', m, 's', 1)
  redis.call('ZADD', c, seq, seq .. ' ' .. body)
  local n = redis.call('ZCARD', c)
  if n > changes_max then
    local old = redis.call('ZRANGE', c, 0, n - changes_max - 1, 'WITHSCORES')
    local floor = num(redis.call('HGET', m, 'f'))
    for k = 2, #old, 2 do floor = math.max(floor, tonumber(old[k])) end
    redis.call('HSET', m, 'f', floor)
    redis.call('ZREMRANGEBYRANK', c, 0, n - changes_max - 1)
  end
  local unread = num(redis.call('HGET', m, 'u'))
  local gm, gx = global_read_state(m, gs, gfloor)
  event(channel, user, seq, unread, gm, gx, string.sub(body, 2, -2))
  return {'changed', seq, unread, gm, gx}
end
"#;

/// KEYS: stream, idempotency key (or the stream again), notification time index, key time index.
/// ARGV: id, fingerprint ('' without a key), now ms, idempotency ttl ms, notification JSON, key.
pub const ACCEPT: &str = r#"
if ARGV[2] ~= '' then
  local rec = redis.call('GET', KEYS[2])
  if rec then
    local fp, at, id = string.match(rec, '^(%S+) (%S+) (%S+)$')
    if tonumber(at) + tonumber(ARGV[4]) >= tonumber(ARGV[3]) then
      if fp == ARGV[2] then return {'duplicate', id} end
      return {'conflict', id}
    end
  end
  redis.call('SET', KEYS[2], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[6])
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return {'created', redis.call('XADD', KEYS[1], '*', 'n', ARGV[5])}
"#;

/// One notification to many users in one call (on a Cluster, users of one slot).
/// KEYS: meta, inbox, global state of each user. ARGV: id, flags, inbox max, global floor,
/// notification JSON, channel, then the user of each key triple.
/// Returns, per user, false for a repeated delivery, else {seq, personal unread, gm, gx}. The
/// live events of the whole call leave as one message (`"f":"b"`), not one per user.
pub fn deliver_many() -> String {
    format!(
        "{PRELUDE}{}",
        r#"
local id, flags, max, gfloor = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local live = math.floor(flags / 2) % 2 == 1
local out, events = {}, {}
for u = 1, #KEYS / 3 do
  local m, i, gs = KEYS[u * 3 - 2], KEYS[u * 3 - 1], KEYS[u * 3]
  local h = redis.call('HMGET', m, 's', 'u', 'rm', 'f', 'gm')
  local seq = num(h[1]) + 1
  if redis.call('ZADD', i, 'NX', seq * 8 + flags, id) == 0 then
    out[u] = false
  else
    local unread = num(h[2])
    if flags % 2 == 1 then unread = unread + 1 end
    local rm = num(h[3])
    local len = redis.call('ZCARD', i)
    if len > max then
      local floor = num(h[4])
      local old = redis.call('ZRANGE', i, 0, len - max - 1, 'WITHSCORES')
      for k = 1, #old, 2 do
        local sc = tonumber(old[k + 1])
        local s, fl = math.floor(sc / 8), sc % 8
        if fl % 2 == 1 and fl < 4 and s > rm then unread = unread - 1 end
        floor = math.max(floor, s)
      end
      redis.call('ZREMRANGEBYRANK', i, 0, len - max - 1)
      redis.call('HSET', m, 's', seq, 'u', unread, 'f', floor)
    else
      redis.call('HSET', m, 's', seq, 'u', unread)
    end
    local gm = num(h[5])
    local low = math.max(gm, gfloor)
    local gx = 0
    local all = redis.call('HGETALL', gs)
    for k = 1, #all, 2 do if tonumber(all[k]) > low then gx = gx + 1 end end
    out[u] = {seq, unread, gm, gx}
    if live then
      events[#events + 1] = '["' .. ARGV[6 + u] .. '",' .. seq .. ',' .. unread .. ',' .. gm .. ',' .. gx .. ']'
    end
  end
end
if #events > 0 then
  redis.call('PUBLISH', ARGV[6], '{"f":"b","k":"notification","n":' .. ARGV[5] .. ',"b":[' ..
    table.concat(events, ',') .. ']}')
end
return out
"#
    )
}

/// KEYS: meta, inbox, changes, global state.
/// ARGV: id, global seq ('' unless the id is a listed global entry), changes max, global floor,
/// user, channel, 'read'|'archive'|'archive_unread' (archives only an entry the user has not read).
pub fn mark() -> String {
    format!(
        "{PRELUDE}{}",
        r#"
local m, i, c, gs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local only_unread = ARGV[7] == 'archive_unread'
local archive = ARGV[7] == 'archive' or only_unread
local function unchanged()
  local gm, gx = global_read_state(m, gs, tonumber(ARGV[4]))
  return {'unchanged', 0, num(redis.call('HGET', m, 'u')), gm, gx}
end
local rm = num(redis.call('HGET', m, 'rm'))
local sc = redis.call('ZSCORE', i, ARGV[1])
if sc then
  sc = tonumber(sc)
  local seq, fl = math.floor(sc / 8), sc % 8
  if fl % 2 == 0 then return {'notfound'} end
  local read = fl >= 4 or seq <= rm
  if archive then
    if read and only_unread then return unchanged() end
    redis.call('ZREM', i, ARGV[1])
    if not read then redis.call('HINCRBY', m, 'u', -1) end
  else
    if read then return unchanged() end
    redis.call('ZADD', i, 'XX', sc + 4, ARGV[1])
    redis.call('HINCRBY', m, 'u', -1)
  end
elseif ARGV[2] ~= '' then
  local st = redis.call('HGET', gs, ARGV[2])
  if st == 'a' then return {'notfound'} end
  local read = st == 'r' or tonumber(ARGV[2]) <= num(redis.call('HGET', m, 'gm'))
  if archive then
    if read and only_unread then return unchanged() end
    redis.call('HSET', gs, ARGV[2], 'a')
  else
    if read then return unchanged() end
    redis.call('HSET', gs, ARGV[2], 'r')
  end
else
  return {'notfound'}
end
local kind = 'read'
if archive then kind = 'archived' end
return change(m, c, gs, ARGV[5], '{"k":"' .. kind .. '","id":"' .. ARGV[1] .. '"}', tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[6])
"#
    )
}

/// KEYS: meta, changes, global state. ARGV: global head, changes max, global floor, user, channel.
pub fn mark_all() -> String {
    format!(
        "{PRELUDE}{}",
        r#"
local m, c, gs = KEYS[1], KEYS[2], KEYS[3]
redis.call('HSET', m, 'rm', num(redis.call('HGET', m, 's')), 'u', 0, 'gm', ARGV[1])
local all = redis.call('HGETALL', gs)
for k = 1, #all, 2 do
  if all[k + 1] == 'r' or tonumber(all[k]) <= tonumber(ARGV[3]) then redis.call('HDEL', gs, all[k]) end
end
return change(m, c, gs, ARGV[4], '{"k":"read_all"}', tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[5])
"#
    )
}

/// KEYS: global feed, global meta, global campaigns. ARGV: id, flags, global max, notification
/// JSON, channel, the campaign whose list alone sees it (or empty: everyone).
pub const DELIVER_GLOBAL: &str = r#"
local f, gm, gc = KEYS[1], KEYS[2], KEYS[3]
local sc = redis.call('ZSCORE', f, ARGV[1])
if sc then return math.floor(tonumber(sc) / 8) end
local head = redis.call('HINCRBY', gm, 'h', 1)
local flags = tonumber(ARGV[2])
redis.call('ZADD', f, head * 8 + flags, ARGV[1])
local audience = ''
if ARGV[6] ~= '' then
  redis.call('HSET', gc, head, ARGV[6])
  audience = ',"a":' .. cjson.encode(ARGV[6])
end
local n = redis.call('ZCARD', f)
local max = tonumber(ARGV[3])
local floor = tonumber(redis.call('HGET', gm, 'fl') or '0')
if n > max then
  local old = redis.call('ZRANGE', f, 0, n - max - 1, 'WITHSCORES')
  for k = 2, #old, 2 do
    local g = math.floor(tonumber(old[k]) / 8)
    floor = math.max(floor, g)
    redis.call('HDEL', gc, g)
  end
  redis.call('ZREMRANGEBYRANK', f, 0, n - max - 1)
  redis.call('HSET', gm, 'fl', floor)
end
local body = '"k":"quiet"'
if math.floor(flags / 2) % 2 == 1 then body = '"k":"notification","read":false,"n":' .. ARGV[4] end
redis.call('PUBLISH', ARGV[5], '{"f":"g","s":' .. head .. ',"fl":' .. floor .. ',"fg":' .. flags .. audience .. ',' .. body .. '}')
return head
"#;

/// KEYS: a campaign's member set and exclusions. ARGV: bits, then users. Listed users get the
/// bits added to their exclusions; others are skipped.
pub const EXCLUDE_RECIPIENTS: &str = r#"
local bits = tonumber(ARGV[1])
for i = 2, #ARGV do
  local user = ARGV[i]
  if redis.call('SISMEMBER', KEYS[1], user) == 1 then
    local old = tonumber(redis.call('HGET', KEYS[2], user) or '0')
    redis.call('HSET', KEYS[2], user, bit.bor(old, bits))
  end
end
return 0
"#;

/// KEYS: a campaign's member set and exclusions. ARGV: a user. Returns -1 when the user is not
/// listed, else their exclusion bits.
pub const MEMBERSHIP: &str = r#"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return -1 end
return tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
"#;

/// KEYS: the user's devices. ARGV: registered at (ms), device id, most devices per user.
/// Returns the ids dropped past the limit, least recently registered first.
pub const REGISTER_DEVICE: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if excess <= 0 then return {} end
local dropped = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
return dropped
"#;

/// KEYS: a device. ARGV: the user who must own it. Returns 1 when it was deleted.
pub const DELETE_OWN_DEVICE: &str = r#"
local stored = redis.call('GET', KEYS[1])
if stored and cjson.decode(stored).user == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// Helpers of the outbox scripts. Lists go to variadic commands in chunks: Lua's `unpack` has a
/// limit on how many values it can spread.
const OUTBOX_PRELUDE: &str = r#"
local CHUNK = 1000
local function each_chunk(list, call)
  for i = 1, #list, CHUNK do call(unpack(list, i, math.min(i + CHUNK - 1, #list))) end
end
local function hmget(key, fields)
  local values = {}
  each_chunk(fields, function(...)
    local part = redis.call('HMGET', key, ...)
    for j = 1, #part do values[#values + 1] = part[j] end
  end)
  return values
end
-- Adds `n` to a notification's counter `field` in `counts` (notification index -> field -> n).
local function count(counts, ni, field, n)
  local c = counts[ni] or {}
  c[field] = (c[field] or 0) + n
  counts[ni] = c
end
-- Keeps the newest `dead_max` dead letters in `key` once `dead` more were pushed.
local function trim_dead(key, dead, dead_max)
  if dead > 0 then
    if dead_max > 0 then redis.call('LTRIM', key, 0, dead_max - 1) else redis.call('DEL', key) end
  end
end
"#;

/// KEYS: tasks, due lanes 0..2, then per notification its done set and report.
/// ARGV: notification count N, their expiry times (Unix ms), then per task 7 values: notification
/// index (1-based), member (`notification|target`), target, lane, due ms, channel, task JSON.
/// Queues the tasks neither pending nor done; returns how many.
pub fn enqueue_push() -> String {
    format!(
        "{OUTBOX_PRELUDE}{}",
        r#"
local n = tonumber(ARGV[1])
local counts, added = {}, 0
for i = n + 2, #ARGV, 7 do
  local ni, member, target = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  local lane, due = ARGV[i + 3], ARGV[i + 4]
  if redis.call('SISMEMBER', KEYS[3 + 2 * ni], target) == 0
    and redis.call('HSETNX', KEYS[1], member, lane .. ':' .. due .. ':' .. ARGV[i + 6]) == 1 then
    redis.call('ZADD', KEYS[2 + tonumber(lane)], due, member)
    count(counts, ni, ARGV[i + 5] .. ':queued', 1)
    added = added + 1
  end
end
for ni, c in pairs(counts) do
  local report = KEYS[4 + 2 * ni]
  for field, k in pairs(c) do redis.call('HINCRBY', report, field, k) end
  redis.call('PEXPIREAT', report, ARGV[1 + ni])
end
return added
"#
    )
}

/// KEYS: tasks, due lanes 0..2, leased lanes 0..2. ARGV: now ms, lease end ms, most tasks.
/// Returns the stored values (`lane:due:JSON`) of the tasks handed out, highest lane first.
pub fn next_push() -> String {
    format!(
        "{OUTBOX_PRELUDE}{}",
        r#"
local now, lease_end, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
-- Leases that ran out are due again: the sends of a node that died are taken over.
for lane = 0, 2 do
  local due, leased = KEYS[2 + lane], KEYS[5 + lane]
  local expired = redis.call('ZRANGEBYSCORE', leased, '-inf', now, 'LIMIT', 0, 10000)
  if #expired > 0 then
    local stored = hmget(KEYS[1], expired)
    for i, member in ipairs(expired) do
      if stored[i] then redis.call('ZADD', due, string.match(stored[i], '^%d:(%-?%d+):'), member) end
    end
    each_chunk(expired, function(...) redis.call('ZREM', leased, ...) end)
  end
end
local out = {}
for lane = 0, 2 do
  if #out >= max then break end
  local due, leased = KEYS[2 + lane], KEYS[5 + lane]
  local members = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, max - #out)
  if #members > 0 then
    local stored = hmget(KEYS[1], members)
    local leases = {}
    for i, member in ipairs(members) do
      if stored[i] then
        out[#out + 1] = stored[i]
        leases[#leases + 1] = lease_end
        leases[#leases + 1] = member
      end
    end
    each_chunk(members, function(...) redis.call('ZREM', due, ...) end)
    if #leases > 0 then each_chunk(leases, function(...) redis.call('ZADD', leased, ...) end) end
  end
end
return out
"#
    )
}

/// KEYS: tasks, due lanes 0..2, leased lanes 0..2, dead letters, then per notification its done
/// set and report. ARGV: most dead letters, notification count N, their expiry times (Unix ms),
/// then per outcome 7 values: notification index (1-based), member, target, channel, then
/// `retry`, its due ms and the retried task's JSON, or the status, the dead letter JSON ('' unless
/// failed) and ''. Outcomes of tasks no longer pending change nothing.
pub fn finish_push() -> String {
    format!(
        "{OUTBOX_PRELUDE}{}",
        r#"
local dead_max, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local counts, dead = {}, 0
for i = n + 3, #ARGV, 7 do
  local ni, member = tonumber(ARGV[i]), ARGV[i + 1]
  local stored = redis.call('HGET', KEYS[1], member)
  if stored then
    local lane = tonumber(string.sub(stored, 1, 1))
    local due = KEYS[2 + lane]
    redis.call('ZREM', KEYS[5 + lane], member)
    if ARGV[i + 4] == 'retry' then
      redis.call('ZADD', due, ARGV[i + 5], member)
      redis.call('HSET', KEYS[1], member, lane .. ':' .. ARGV[i + 5] .. ':' .. ARGV[i + 6])
    else
      -- A lease that ran out may have put it back among the due ones.
      redis.call('ZREM', due, member)
      redis.call('HDEL', KEYS[1], member)
      redis.call('SADD', KEYS[7 + 2 * ni], ARGV[i + 2])
      count(counts, ni, ARGV[i + 3] .. ':' .. ARGV[i + 4], 1)
      if ARGV[i + 5] ~= '' then
        redis.call('LPUSH', KEYS[8], ARGV[i + 5])
        dead = dead + 1
      end
    end
  end
end
for ni, c in pairs(counts) do
  local done, report, expiry = KEYS[7 + 2 * ni], KEYS[8 + 2 * ni], ARGV[2 + ni]
  redis.call('PEXPIREAT', done, expiry)
  for field, k in pairs(c) do redis.call('HINCRBY', report, field, k) end
  redis.call('PEXPIREAT', report, expiry)
end
trim_dead(KEYS[8], dead, dead_max)
return dead
"#
    )
}

/// KEYS: a push stage's progress bitmap, the notification's report, the dead letters.
/// ARGV: dead letters kept, when the bitmap and report expire, then per outcome its index, its
/// status ("": handed on to the outbox, which counts it) and its dead letter JSON (or "").
/// Counts and keeps only sends not finished before.
pub fn finish_staged() -> String {
    format!(
        "{OUTBOX_PRELUDE}{}",
        r#"
local dead_max, dead = tonumber(ARGV[1]), 0
local counts = {}
for i = 3, #ARGV, 3 do
  if redis.call('SETBIT', KEYS[1], ARGV[i], 1) == 0 and ARGV[i + 1] ~= '' then
    count(counts, 1, 'push:queued', 1)
    count(counts, 1, 'push:' .. ARGV[i + 1], 1)
    if ARGV[i + 2] ~= '' then
      redis.call('LPUSH', KEYS[3], ARGV[i + 2])
      dead = dead + 1
    end
  end
end
for field, k in pairs(counts[1] or {}) do redis.call('HINCRBY', KEYS[2], field, k) end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
trim_dead(KEYS[3], dead, dead_max)
return dead
"#
    )
}

/// KEYS: the counters of every charge of every request, in order, all one user's.
/// ARGV: now ms, then per request its notification id, its charge count C, and per charge its
/// limit, the score at and below which an entry has left the window (now - window) and the
/// window in ms. Returns 1 (allowed) or 0 per request. Requests run in order, so two of one
/// user in one batch are counted one after the other.
pub const TAKE_CAPS: &str = r#"
local now, out = ARGV[1], {}
local i, k = 2, 0
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local allowed = 1
  for c = 0, n - 1 do redis.call('ZREMRANGEBYSCORE', KEYS[k + 1 + c], '-inf', ARGV[i + 3 * c + 1]) end
  -- Counted before (a retried fan-out): allowed again without counting twice.
  if n > 0 and not redis.call('ZSCORE', KEYS[k + 1], id) then
    for c = 0, n - 1 do
      if redis.call('ZCARD', KEYS[k + 1 + c]) >= tonumber(ARGV[i + 3 * c]) then allowed = 0 break end
    end
    if allowed == 1 then
      for c = 0, n - 1 do
        redis.call('ZADD', KEYS[k + 1 + c], now, id)
        redis.call('PEXPIRE', KEYS[k + 1 + c], ARGV[i + 3 * c + 2])
      end
    end
  end
  out[#out + 1] = allowed
  i, k = i + 3 * n, k + n
end
return out
"#;

/// KEYS: per claim its collapse key's HASH, all one user's. ARGV: now ms, then per claim its
/// notification id, window ms and how long to keep the key (ms). Returns per claim the id it
/// replaces, or nil.
pub const CLAIM_COLLAPSE: &str = r#"
local now, out = tonumber(ARGV[1]), {}
for c = 1, #KEYS do
  local key, id, window, keep = KEYS[c], ARGV[3 * c - 1], tonumber(ARGV[3 * c]), ARGV[3 * c + 1]
  local last = redis.call('HMGET', key, 'id', 'prev', 'at')
  if last[1] == id then
    -- Claimed again (a retried fan-out): the same answer as the first time.
    out[c] = last[2]
  else
    local prev = false
    if last[1] and now - tonumber(last[3]) <= window then prev = last[1] end
    if prev then
      redis.call('HSET', key, 'id', id, 'prev', prev, 'at', ARGV[1])
    else
      redis.call('HDEL', key, 'prev')
      redis.call('HSET', key, 'id', id, 'at', ARGV[1])
    end
    redis.call('PEXPIRE', key, keep)
    out[c] = prev
  end
end
return out
"#;

/// KEYS: per notification its delivery report. ARGV: per notification its expiry (Unix ms), its
/// field count F, then F pairs of field (`channel:reason`) and count. A report gets the
/// expiry only if it has none yet (the outbox may have set it).
pub const COUNT_DECISIONS: &str = r#"
local i = 1
for k = 1, #KEYS do
  local expiry, n = ARGV[i], tonumber(ARGV[i + 1])
  for f = 0, n - 1 do redis.call('HINCRBY', KEYS[k], ARGV[i + 2 + 2 * f], ARGV[i + 3 + 2 * f]) end
  if redis.call('PTTL', KEYS[k]) == -1 then redis.call('PEXPIREAT', KEYS[k], expiry) end
  i = i + 2 + 2 * n
end
return 0
"#;

/// KEYS: a user's decision log. ARGV: most kept, then the records' JSON, oldest first.
pub const LOG_DECISIONS: &str = r#"
local max = tonumber(ARGV[1])
if max <= 0 then redis.call('DEL', KEYS[1]) return 0 end
for i = 3, #ARGV, 1000 do redis.call('LPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
redis.call('LTRIM', KEYS[1], 0, max - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
"#;

/// KEYS: a user's devices. ARGV: a device id. Takes the device out of the user's index and
/// returns how many devices the index still holds (0: the user no longer owns any).
pub const UNINDEX_DEVICE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZCARD', KEYS[1])
"#;

/// KEYS: a campaign's record. ARGV: the version the caller read, the new version, the new JSON.
/// Returns 1 if replaced, 0 if the record is missing or has another version. Versions are
/// compared as the strings written, so there is no number conversion to get wrong.
pub const UPDATE_CAMPAIGN: &str = r#"
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'j', ARGV[3])
return 1
"#;

/// KEYS: a campaign's member set, its list. ARGV: users, in upload order. Lists each user not
/// yet a member at the end, in order; returns how many were new. The new ones go to RPUSH in
/// chunks: Lua's `unpack` has a limit on how many values it can spread.
pub const ADD_RECIPIENTS: &str = r#"
local fresh = {}
for i = 1, #ARGV do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then fresh[#fresh + 1] = ARGV[i] end
end
for i = 1, #fresh, 1000 do redis.call('RPUSH', KEYS[2], unpack(fresh, i, math.min(i + 999, #fresh))) end
return #fresh
"#;
