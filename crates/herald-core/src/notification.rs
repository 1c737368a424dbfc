//! A notification as Herald stores it, and the view a user's client sees.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::time::rfc3339_ms;

/// Delivery priority; each priority has its own queue lane and higher lanes are drained first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    /// Lanes in the order workers drain them.
    pub const LANES: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn lane(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// A way a notification reaches a user.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The user's notification center (stored, listed, read, archived).
    Inbox,
    /// Live to the user's open SSE and WebSocket connections.
    Realtime,
    /// Phones and browsers through FCM, APNs and Web Push.
    Push,
    /// Signed HTTP callbacks to configured URLs.
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Inbox,
        Channel::Realtime,
        Channel::Push,
        Channel::Webhook,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Inbox => "inbox",
            Channel::Realtime => "realtime",
            Channel::Push => "push",
            Channel::Webhook => "webhook",
        }
    }
}

/// A set of channels, stored as bits and shown as a list of names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelSet(u8);

impl ChannelSet {
    pub fn all() -> Self {
        Self::from_iter(Channel::ALL)
    }

    pub fn contains(self, channel: Channel) -> bool {
        self.0 & channel.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Channel> {
        Channel::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

impl Default for ChannelSet {
    fn default() -> Self {
        Self::all()
    }
}

impl FromIterator<Channel> for ChannelSet {
    fn from_iter<I: IntoIterator<Item = Channel>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, c| bits | c.bit()))
    }
}

impl Serialize for ChannelSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for ChannelSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Channel>::deserialize(d)?.into_iter().collect())
    }
}

/// Who a notification is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// Listed users, each written into their own inbox (fan-out on write).
    Users(Vec<String>),
    /// The subscribers of a topic at fan-out time.
    Topic(String),
    /// Everyone: stored once in the global feed and merged into each inbox on read.
    All,
    /// A campaign's audience: the campaign worker delivers it in checkpointed batches.
    Campaign(String),
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientsWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    users: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    campaign: Option<String>,
}

impl Serialize for Recipients {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let wire = match self {
            Recipients::Users(users) => RecipientsWire {
                users: Some(users.clone()),
                ..RecipientsWire::default()
            },
            Recipients::Topic(topic) => RecipientsWire {
                topic: Some(topic.clone()),
                ..RecipientsWire::default()
            },
            Recipients::All => RecipientsWire {
                all: Some(true),
                ..RecipientsWire::default()
            },
            Recipients::Campaign(id) => RecipientsWire {
                campaign: Some(id.clone()),
                ..RecipientsWire::default()
            },
        };
        wire.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Recipients {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = RecipientsWire::deserialize(d)?;
        match (wire.users, wire.topic, wire.all, wire.campaign) {
            (Some(users), None, None, None) => Ok(Recipients::Users(users)),
            (None, Some(topic), None, None) => Ok(Recipients::Topic(topic)),
            (None, None, Some(true), None) => Ok(Recipients::All),
            (None, None, None, Some(id)) => Ok(Recipients::Campaign(id)),
            _ => Err(serde::de::Error::custom(
                "`to` must be exactly one of {\"users\": [...]}, {\"topic\": \"name\"} or {\"all\": true}",
            )),
        }
    }
}

/// A notification as accepted and stored. Its content is stored once, however many users receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// A ULID: unique, and sortable by creation time.
    pub id: String,
    pub to: Recipients,
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default)]
    pub data: Map<String, Value>,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
    #[serde(default)]
    pub channels: ChannelSet,
    /// Unix milliseconds at accept.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Replaces an earlier push with the same key on the device (APNs `apns-collapse-id`,
    /// FCM `collapse_key`, Web Push `Topic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<String>,
    /// Runs the whole pipeline but delivers no push: FCM validates only, the others are skipped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl Notification {
    /// True once `ttl_seconds` have passed since accept: it is no longer announced live or pushed.
    pub fn expired_at(&self, now_ms: i64) -> bool {
        self.ttl_seconds
            .is_some_and(|ttl| now_ms > self.created_at + i64::from(ttl) * 1000)
    }

    /// What a user's client sees of this notification.
    pub fn view(&self, read: bool) -> NotificationView {
        NotificationView {
            id: self.id.clone(),
            title: self.title.clone(),
            body: self.body.clone(),
            category: self.category.clone(),
            data: self.data.clone(),
            priority: self.priority,
            created_at: rfc3339_ms(self.created_at),
            read,
        }
    }
}

/// A notification as shown in a user's inbox and live stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationView {
    pub id: String,
    pub title: String,
    pub body: String,
    pub category: Option<String>,
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    pub priority: Priority,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub read: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_round_trip() {
        for (json, expected) in [
            (
                r#"{"users":["a","b"]}"#,
                Recipients::Users(vec!["a".into(), "b".into()]),
            ),
            (r#"{"topic":"t"}"#, Recipients::Topic("t".into())),
            (r#"{"all":true}"#, Recipients::All),
        ] {
            let parsed: Recipients = serde_json::from_str(json).unwrap();
            assert_eq!(parsed, expected);
            assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
        }
    }

    #[test]
    fn recipients_refuse_ambiguous_shapes() {
        for json in [
            r#"{}"#,
            r#"{"all":false}"#,
            r#"{"users":[],"topic":"t"}"#,
            r#"{"group":"x"}"#,
        ] {
            assert!(serde_json::from_str::<Recipients>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn channel_set_round_trip() {
        let set: ChannelSet = serde_json::from_str(r#"["realtime","inbox"]"#).unwrap();
        assert!(set.contains(Channel::Inbox) && set.contains(Channel::Realtime));
        assert!(!set.contains(Channel::Push));
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"["inbox","realtime"]"#
        );
        assert_eq!(ChannelSet::default(), ChannelSet::all());
    }

    #[test]
    fn ttl_expiry() {
        let mut n: Notification = serde_json::from_str(
            r#"{"id":"x","to":{"all":true},"title":"t","created_at":1000,"ttl_seconds":2}"#,
        )
        .unwrap();
        assert!(!n.expired_at(3000));
        assert!(n.expired_at(3001));
        n.ttl_seconds = None;
        assert!(!n.expired_at(i64::MAX));
    }
}
