//! Key layout of the embedded engine. Per-user keys start with the user id and a 0 byte
//! (ids cannot contain 0), so one user's entries are one contiguous, ordered range.

/// `user \0 seq` — sequence numbers big-endian so byte order is numeric order.
pub fn user_seq(user: &str, seq: u64) -> Vec<u8> {
    let mut key = user_prefix(user);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `user \0 rest`
pub fn user_key(user: &str, rest: &[u8]) -> Vec<u8> {
    let mut key = user_prefix(user);
    key.extend_from_slice(rest);
    key
}

pub fn user_prefix(user: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(user.len() + 9);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key
}

/// The sequence number at the end of a `user \0 seq` key.
pub fn seq_suffix(key: &[u8]) -> u64 {
    let tail: [u8; 8] = key[key.len() - 8..]
        .try_into()
        .expect("key ends with a sequence number");
    u64::from_be_bytes(tail)
}

/// `lane seq` for the work queue.
pub fn job(lane: u8, seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = lane;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// An i64 as 8 bytes whose byte order is numeric order (sign bit flipped), for times in keys.
pub fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn ordered_i64_from(bytes: &[u8]) -> Option<i64> {
    let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(raw) ^ (1 << 63)) as i64)
}

/// `user \0 registered_at id`: a user's devices in registration order.
pub fn user_device(user: &str, registered_at: i64, id: &str) -> Vec<u8> {
    let mut key = user_prefix(user);
    key.extend_from_slice(&ordered_i64(registered_at));
    key.extend_from_slice(id.as_bytes());
    key
}

/// `notification \0 target`: one send's identity in the outbox. Prefixed by the notification, so
/// a notification's sends are one range (and old notifications' sends sort first, ids being ULIDs).
pub fn push_task(notification: &str, target: &str) -> Vec<u8> {
    user_key(notification, target.as_bytes())
}

/// Bytes before the task identity in a [`push_due`] key: the lane and the due time.
pub const PUSH_DUE_HEADER: usize = 9;

/// `lane due_ms notification \0 target`: the outbox in hand-out order, per lane oldest due first.
pub fn push_due(lane: u8, due_ms: i64, identity: &[u8]) -> Vec<u8> {
    let mut key = push_due_bound(lane, due_ms);
    key.extend_from_slice(identity);
    key
}

/// `lane due_ms`: below every due key of the lane at `due_ms`, above all earlier ones.
pub fn push_due_bound(lane: u8, due_ms: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(PUSH_DUE_HEADER + 48);
    key.push(lane);
    key.extend_from_slice(&ordered_i64(due_ms));
    key
}

/// `notification \0 channel`: a notification's report counters of one channel.
pub fn push_report(notification: &str, channel: &str) -> Vec<u8> {
    user_key(notification, channel.as_bytes())
}

/// `at seq`: dead letters in the order they were given up.
pub fn dead_letter(at: i64, seq: u64) -> Vec<u8> {
    let mut key = ordered_i64(at).to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `expires_at kind record`: cap counters and collapse records in the order they expire.
pub fn expiry(expires_at: i64, kind: u8, record: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + record.len());
    key.extend_from_slice(&ordered_i64(expires_at));
    key.push(kind);
    key.extend_from_slice(record);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_keys_sort_numerically_and_do_not_mix_users() {
        assert!(user_seq("a", 2) < user_seq("a", 256));
        assert!(
            user_seq("a", u64::MAX) < user_seq("a0", 0),
            "user a's range ends before user a0's"
        );
        assert_eq!(seq_suffix(&user_seq("bob", 42)), 42);
    }

    #[test]
    fn times_sort_numerically_even_below_zero() {
        assert!(ordered_i64(-5) < ordered_i64(0));
        assert!(ordered_i64(0) < ordered_i64(1));
        assert!(ordered_i64(255) < ordered_i64(256));
        assert_eq!(ordered_i64_from(&ordered_i64(-42)), Some(-42));
        let task = push_task("n1", "d:x");
        assert!(push_due(1, 5, &task) < push_due(1, 6, &task));
        assert!(push_due(1, i64::MAX, &task) < push_due_bound(2, i64::MIN));
        assert!(push_due(1, 5, &task) < push_due_bound(1, 6));
    }
}
