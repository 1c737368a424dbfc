//! Why a user did or did not get a notification on a channel.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A delivery decision, as counted in a notification's report and logged per user.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Written to the inbox or announced live.
    Delivered,
    /// The user turned this channel or category off, or muted everything.
    Muted,
    /// Over a frequency cap.
    Capped,
    /// Push held until the user's quiet hours end.
    QuietDeferred,
    /// Past its TTL before it could go out.
    Expired,
    /// A newer notification with the same collapse key replaced it, or it replaced an earlier one
    /// and so was not pushed again.
    Collapsed,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::Delivered,
        Reason::Muted,
        Reason::Capped,
        Reason::QuietDeferred,
        Reason::Expired,
        Reason::Collapsed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Delivered => "delivered",
            Reason::Muted => "muted",
            Reason::Capped => "capped",
            Reason::QuietDeferred => "quiet_deferred",
            Reason::Expired => "expired",
            Reason::Collapsed => "collapsed",
        }
    }

    pub fn parse(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}
