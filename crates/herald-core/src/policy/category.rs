//! A category of notifications, as the publisher defines it with `PUT /v1/categories/{name}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::limits::Limits;
use crate::names::check_name;
use crate::notification::{Channel, ChannelSet, Priority};
use crate::validation::{Checker, ValidationError};

/// Most caps one category (or the server-wide user caps) may have.
pub const MAX_CAPS: usize = 8;
/// The longest cap window: 31 days.
pub const MAX_CAP_WINDOW_SECONDS: u32 = 31 * 24 * 3600;

/// Defaults and rules for every notification of one category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// Set from the URL; a body may repeat it but not contradict it.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Channels used when a publish names none (default: all).
    #[serde(default)]
    #[schema(value_type = Vec<Channel>)]
    pub channels: ChannelSet,
    /// Whether users may turn this category off. Security and billing notices set `false`:
    /// they reach users whatever their preferences and quiet hours say.
    #[serde(default = "yes")]
    pub opt_out: bool,
    /// Frequency caps on push per user for this category.
    #[serde(default)]
    pub caps: Vec<Cap>,
    /// What happens to a notification over a cap.
    #[serde(default)]
    pub over_cap: OverCap,
    /// Priority when a publish gives none.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// TTL when a publish gives none.
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
    /// Whether a `high` notification of this category is pushed during the user's quiet hours.
    #[serde(default)]
    pub high_bypasses_quiet_hours: bool,
    /// How long a collapse key keeps replacing: a second notification with the same key within
    /// this time replaces the first's unread inbox entry and is not pushed again.
    #[serde(default)]
    pub collapse_window_seconds: Option<u32>,
}

fn yes() -> bool {
    true
}

/// At most `limit` pushes per user within any `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    pub limit: u32,
    pub window_seconds: u32,
}

impl Cap {
    pub fn window_ms(&self) -> i64 {
        i64::from(self.window_seconds) * 1000
    }

    pub fn check_all(c: &mut Checker, field: &str, caps: &[Cap]) {
        if caps.len() > MAX_CAPS {
            c.fail(field, format!("at most {MAX_CAPS} caps"));
        }
        for (i, cap) in caps.iter().enumerate() {
            if cap.limit == 0 {
                c.fail(
                    format!("{field}[{i}].limit"),
                    "must be at least 1 (turn the channel off instead)",
                );
            }
            if cap.window_seconds == 0 || cap.window_seconds > MAX_CAP_WINDOW_SECONDS {
                c.fail(
                    format!("{field}[{i}].window_seconds"),
                    format!("must be between 1 and {MAX_CAP_WINDOW_SECONDS}"),
                );
            }
        }
    }
}

/// What happens to a notification over a frequency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverCap {
    /// Not delivered at all.
    Drop,
    /// Kept in the inbox, but neither pushed nor announced live.
    #[default]
    InboxOnly,
}

impl Category {
    /// Checks every rule and reports every broken one. `name` is the one in the URL.
    pub fn validate(&self, name: &str, limits: &Limits) -> Result<(), ValidationError> {
        let mut c = Checker::default();
        c.check("name", check_name("category", name));
        if !self.name.is_empty() && self.name != name {
            c.fail("name", format!("the URL names category {name}"));
        }
        if self.channels.is_empty() {
            c.fail("channels", "list at least one channel");
        }
        if self.description.chars().count() > 500 {
            c.fail("description", "at most 500 characters");
        }
        Cap::check_all(&mut c, "caps", &self.caps);
        if let Some(ttl) = self.ttl_seconds
            && (ttl == 0 || ttl > limits.max_ttl_seconds)
        {
            c.fail(
                "ttl_seconds",
                format!("must be between 1 and {}", limits.max_ttl_seconds),
            );
        }
        if let Some(window) = self.collapse_window_seconds
            && (window == 0 || window > MAX_CAP_WINDOW_SECONDS)
        {
            c.fail(
                "collapse_window_seconds",
                format!("must be between 1 and {MAX_CAP_WINDOW_SECONDS}"),
            );
        }
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_let_users_opt_out_and_keep_over_cap_in_the_inbox() {
        let c: Category = serde_json::from_str("{}").unwrap();
        assert!(c.opt_out);
        assert_eq!(c.over_cap, OverCap::InboxOnly);
        assert_eq!(c.channels, ChannelSet::all());
        assert!(c.validate("news", &Limits::default()).is_ok());
    }

    #[test]
    fn validation_reports_every_broken_rule() {
        let c: Category = serde_json::from_str(
            r#"{"name":"other","channels":[],"caps":[{"limit":0,"window_seconds":0}],"ttl_seconds":0}"#,
        )
        .unwrap();
        let err = c.validate("news", &Limits::default()).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "channels",
                "caps[0].limit",
                "caps[0].window_seconds",
                "ttl_seconds"
            ]
        );
        assert!(c.validate("bad name!", &Limits::default()).is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<Category>(r#"{"optout":false}"#).is_err());
    }
}
