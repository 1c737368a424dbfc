//! Realtime channels: named streams of opaque messages (a test session's log lines, screenshots,
//! page sources) read by whoever holds a token naming the channel. Here live the naming rule and
//! the patterns a token's `channels` claim may hold; storage and delivery live elsewhere.

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 200;

/// Why a channel name was refused, phrased for the person who sent it.
///
/// Names use the same safe alphabet as user ids (letters, digits and `. _ - : @`), so they can
/// travel in URLs, Redis keys and log lines; `*` is kept for patterns.
pub fn check_channel(name: &str) -> Result<(), String> {
    crate::names::check_safe("channel name", name, MAX_CHANNEL_LEN)
}

/// Whether `pattern` (from a token's `channels` claim) allows reading `channel`.
///
/// A pattern is a channel name, or a prefix followed by one trailing `*` (`session:1234*`
/// matches `session:1234` and `session:1234:logs`). A lone `*` matches every channel. No other
/// wildcard exists, so a claim can never match more than its author could read off it.
pub fn pattern_matches(pattern: &str, channel: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => pattern == channel,
    }
}

/// Why a pattern cannot go into a token.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    if name.contains('*') {
        return Err(format!(
            "channel pattern {pattern:?} may hold one '*', at its end only"
        ));
    }
    check_channel(name).map_err(|e| format!("channel pattern {pattern:?}: {e}"))
}

/// Whether any of `patterns` allows reading `channel`.
pub fn allowed(patterns: &[String], channel: &str) -> bool {
    patterns.iter().any(|p| pattern_matches(p, channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_safe_alphabet() {
        for ok in ["session:1234", "a", "logs.build-7@ci_x"] {
            assert!(check_channel(ok).is_ok(), "{ok}");
        }
        assert!(check_channel("").is_err());
        assert!(check_channel("a b").unwrap_err().contains("' '"));
        assert!(check_channel("a/b").is_err());
        assert!(check_channel("session:*").is_err());
        assert!(check_channel(&"x".repeat(201)).unwrap_err().contains("201"));
        assert!(check_channel(&"x".repeat(200)).is_ok());
    }

    #[test]
    fn patterns_match_exactly_or_by_prefix() {
        assert!(pattern_matches("session:1234", "session:1234"));
        assert!(!pattern_matches("session:1234", "session:12345"));
        assert!(pattern_matches("session:1234*", "session:1234"));
        assert!(pattern_matches("session:1234*", "session:1234:logs"));
        assert!(!pattern_matches("session:1234*", "session:123"));
        assert!(pattern_matches("*", "anything"));
        assert!(allowed(&["a".into(), "b*".into()], "bc"));
        assert!(!allowed(&[], "a"));
    }

    #[test]
    fn patterns_are_checked() {
        assert!(check_pattern("*").is_ok());
        assert!(check_pattern("session:1*").is_ok());
        assert!(check_pattern("session:*:logs").is_err());
        assert!(check_pattern("a**").is_err());
        assert!(check_pattern("a b*").is_err());
    }
}
