//! Naming rules for user ids, topics, categories and idempotency keys.
//!
//! Ids travel in URLs, Redis keys and log lines, so they are kept to a safe alphabet and length.

/// Longest user id, topic or category name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a name was refused, phrased for the person who sent it.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    check_safe(kind, name, MAX_NAME_LEN)
}

/// A name of the safe alphabet, 1 to `max` bytes long.
pub fn check_safe(kind: &str, name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{kind} must not be empty"));
    }
    if name.len() > max {
        return Err(format!(
            "{kind} is {} bytes long; the limit is {max}",
            name.len()
        ));
    }
    if let Some(bad) = name.chars().find(|c| !is_name_char(*c)) {
        return Err(format!(
            "{kind} {name:?} contains {bad:?}; use letters, digits and . _ - : @ only"
        ));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_ids() {
        for ok in ["u1", "user@example.com", "org:42:user_7", "a.b-c"] {
            assert!(check_name("user id", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_unsafe_ids() {
        assert!(check_name("user id", "").is_err());
        assert!(check_name("user id", "a b").unwrap_err().contains("' '"));
        assert!(check_name("user id", "a/b").is_err());
        assert!(check_name("user id", "{u:1}").is_err());
        assert!(
            check_name("user id", &"x".repeat(129))
                .unwrap_err()
                .contains("129")
        );
    }
}
