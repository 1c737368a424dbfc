//! A user's own choices: channels and categories on or off, a global mute, quiet hours.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::quiet_hours::{parse_time_of_day, parse_time_zone, quiet_until};
use crate::names::check_name;
use crate::notification::Channel;
use crate::validation::{Checker, ValidationError};

/// Most categories a user may set preferences for.
pub const MAX_CATEGORY_PREFERENCES: usize = 200;

/// `GET`/`PUT /v1/me/preferences`. Everything is on unless turned off here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Silences push and live announcements of every category users may opt out of; the
    /// inbox still keeps what arrives.
    #[serde(default)]
    pub mute: bool,
    /// Channels on or off for every category, e.g. `{"push": false}`.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"push": false}))]
    pub channels: BTreeMap<Channel, bool>,
    /// Channels on or off per category; wins over `channels`.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"marketing": {"push": false}}))]
    pub categories: BTreeMap<String, BTreeMap<Channel, bool>>,
    /// Push waits while these hours last, in `timezone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// The user's IANA time zone, e.g. `Europe/Paris` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// A daily window of local time, e.g. 22:00 to 07:00.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM` or `HH:MM:SS`.
    pub start: String,
    /// `HH:MM` or `HH:MM:SS`; before `start` when the window wraps midnight.
    pub end: String,
}

impl Preferences {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut c = Checker::default();
        if self.channels.contains_key(&Channel::Webhook) {
            c.fail(
                "channels.webhook",
                "webhooks go to the publisher, not to users",
            );
        }
        if self.categories.len() > MAX_CATEGORY_PREFERENCES {
            c.fail(
                "categories",
                format!("at most {MAX_CATEGORY_PREFERENCES} categories"),
            );
        }
        for (name, channels) in &self.categories {
            c.check(format!("categories.{name}"), check_name("category", name));
            if channels.contains_key(&Channel::Webhook) {
                c.fail(
                    format!("categories.{name}.webhook"),
                    "webhooks go to the publisher, not to users",
                );
            }
        }
        if let Some(zone) = &self.timezone {
            c.check("timezone", parse_time_zone(zone).map(drop));
        }
        if let Some(q) = &self.quiet_hours {
            let start = parse_time_of_day(&q.start);
            let end = parse_time_of_day(&q.end);
            if let (Ok(s), Ok(e)) = (&start, &end)
                && s == e
            {
                c.fail("quiet_hours", "start and end are the same time");
            }
            c.check("quiet_hours.start", start.map(drop));
            c.check("quiet_hours.end", end.map(drop));
        }
        c.finish()
    }

    /// Why the user does not want `channel` for `category`, if they turned it off.
    pub fn turned_off(&self, category: Option<&str>, channel: Channel) -> Option<String> {
        if let Some(category) = category
            && let Some(on) = self.categories.get(category).and_then(|c| c.get(&channel))
        {
            return (!on).then(|| {
                format!(
                    "the user turned {} off for category {category}",
                    channel.as_str()
                )
            });
        }
        if self.channels.get(&channel) == Some(&false) {
            return Some(format!("the user turned {} off", channel.as_str()));
        }
        if self.mute && matches!(channel, Channel::Push | Channel::Realtime) {
            return Some("the user muted notifications".into());
        }
        None
    }

    /// When the user's quiet hours end, if `now_ms` falls inside them.
    pub fn quiet_until(&self, now_ms: i64) -> Option<i64> {
        let q = self.quiet_hours.as_ref()?;
        let zone = match &self.timezone {
            Some(name) => parse_time_zone(name).ok()?,
            None => jiff::tz::TimeZone::UTC,
        };
        quiet_until(
            now_ms,
            parse_time_of_day(&q.start).ok()?,
            parse_time_of_day(&q.end).ok()?,
            &zone,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs(json: &str) -> Preferences {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn category_choices_win_over_channel_choices() {
        let p = prefs(r#"{"channels":{"push":false},"categories":{"orders":{"push":true}}}"#);
        assert!(p.turned_off(Some("orders"), Channel::Push).is_none());
        assert!(p.turned_off(Some("news"), Channel::Push).is_some());
        assert!(p.turned_off(None, Channel::Push).is_some());
        assert!(p.turned_off(None, Channel::Inbox).is_none());
    }

    #[test]
    fn mute_silences_push_and_live_but_keeps_the_inbox() {
        let p = prefs(r#"{"mute":true}"#);
        assert!(p.turned_off(None, Channel::Push).is_some());
        assert!(p.turned_off(None, Channel::Realtime).is_some());
        assert!(p.turned_off(None, Channel::Inbox).is_none());
    }

    #[test]
    fn validation_names_each_bad_field() {
        let p = prefs(
            r#"{"channels":{"webhook":false},"categories":{"bad name":{}},"timezone":"Nowhere/Land",
               "quiet_hours":{"start":"25:00","end":"07:00"}}"#,
        );
        let err = p.validate().unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "channels.webhook",
                "categories.bad name",
                "timezone",
                "quiet_hours.start"
            ]
        );
        let same = prefs(r#"{"quiet_hours":{"start":"07:00","end":"07:00"}}"#);
        assert!(same.validate().is_err());
        assert!(Preferences::default().validate().is_ok());
    }
}
