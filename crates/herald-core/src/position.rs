//! Where a reader stands in a user's feed.
//!
//! A user's feed is two sequences kept by the store: the user's own (targeted notifications and
//! changes such as "read") and the global one (notifications to everyone). A position names a
//! point in both, so it means the same on every Herald node. It is shown as `"U-G"`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Last seen sequence number of the user's own feed.
    pub user: u64,
    /// Last seen sequence number of the global feed.
    pub global: u64,
}

impl Position {
    pub fn new(user: u64, global: u64) -> Self {
        Self { user, global }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.user, self.global)
    }
}

impl FromStr for Position {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (user, global) = s.trim().split_once('-').ok_or_else(|| bad_position(s))?;
        Ok(Self {
            user: user.parse().map_err(|_| bad_position(s))?,
            global: global.parse().map_err(|_| bad_position(s))?,
        })
    }
}

fn bad_position(s: &str) -> String {
    format!(
        "{s:?} is not a stream position; positions look like \"12-3\" (the id of an event Herald sent)"
    )
}

/// A page boundary in an inbox: items strictly older than this in both feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub user: u64,
    pub global: u64,
}

impl Cursor {
    /// The start of a listing: everything.
    pub const START: Cursor = Cursor {
        user: u64::MAX,
        global: u64::MAX,
    };

    pub fn encode(self) -> String {
        format!("{}.{}", self.user, self.global)
    }

    pub fn decode(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a cursor; pass the `next` value of the previous page");
        let (user, global) = s.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            user: user.parse().map_err(|_| bad())?,
            global: global.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_round_trip() {
        let p = Position::new(12, 3);
        assert_eq!(p.to_string(), "12-3");
        assert_eq!("12-3".parse::<Position>().unwrap(), p);
        assert!("12".parse::<Position>().is_err());
        assert!("a-b".parse::<Position>().is_err());
    }

    #[test]
    fn cursor_round_trip() {
        let c = Cursor { user: 7, global: 9 };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("nope").is_err());
    }
}
