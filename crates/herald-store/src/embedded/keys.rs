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
}
