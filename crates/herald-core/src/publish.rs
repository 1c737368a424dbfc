//! A publish request as a product service sends it, and the rules that turn it into a notification.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::limits::Limits;
use crate::names::check_name;
use crate::notification::{Channel, ChannelSet, Notification, Priority, Recipients};
use crate::policy::Category;
use crate::validation::{Checker, ValidationError};

/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;

/// Longest collapse key in bytes: APNs refuses an `apns-collapse-id` over 64 bytes.
pub const MAX_COLLAPSE_KEY_BYTES: usize = 64;

/// `POST /v1/notifications` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Exactly one of `{"users": [...]}`, `{"topic": "name"}` or `{"all": true}`.
    #[schema(value_type = Object, example = json!({"users": ["alice", "bob"]}))]
    pub to: Recipients,
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub category: Option<String>,
    /// Free-form JSON object handed to clients as is.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// Default: the category's, else `normal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Default: the category's, else none (kept until retention ends).
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
    /// Channels to use; default: the category's, else every channel the recipient can take.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Channel>>)]
    pub channels: Option<Vec<Channel>>,
    /// The same key returns the same id and delivers once; also accepted as the `Idempotency-Key` header.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Push only: a newer push with the same key replaces the older one on the device.
    /// 1 to 64 characters (the APNs limit).
    #[serde(default)]
    pub collapse_key: Option<String>,
    /// Runs the whole pipeline without delivering push: FCM validates only, APNs, Web Push and
    /// webhooks are not called; the delivery report counts the sends as `dry_run`.
    #[serde(default)]
    pub dry_run: bool,
}

impl PublishRequest {
    /// Checks every rule and reports every broken one.
    pub fn validate(&self, limits: &Limits) -> Result<(), ValidationError> {
        let mut c = Checker::default();
        match &self.to {
            Recipients::Users(users) => {
                if users.is_empty() {
                    c.fail("to.users", "list at least one user id");
                }
                if users.len() > limits.max_recipients {
                    c.fail(
                        "to.users",
                        format!(
                            "{} users listed; the limit is {} per request (use a topic or a campaign for more)",
                            users.len(),
                            limits.max_recipients
                        ),
                    );
                }
                // Report the first few bad ids, not ten thousand of them.
                for (i, user) in users
                    .iter()
                    .enumerate()
                    .filter(|(_, u)| check_name("user id", u).is_err())
                    .take(5)
                {
                    c.check(format!("to.users[{i}]"), check_name("user id", user));
                }
            }
            Recipients::Topic(topic) => c.check("to.topic", check_name("topic", topic)),
            Recipients::All => {}
            Recipients::Campaign(_) => c.fail(
                "to.campaign",
                "campaigns are created with POST /v1/campaigns",
            ),
        }
        let title_chars = self.title.chars().count();
        if self.title.trim().is_empty() {
            c.fail("title", "a title is required");
        } else if title_chars > limits.max_title_chars {
            c.fail(
                "title",
                format!(
                    "{title_chars} characters; the limit is {}",
                    limits.max_title_chars
                ),
            );
        }
        let body_chars = self.body.chars().count();
        if body_chars > limits.max_body_chars {
            c.fail(
                "body",
                format!(
                    "{body_chars} characters; the limit is {}",
                    limits.max_body_chars
                ),
            );
        }
        if let Some(category) = &self.category {
            c.check("category", check_name("category", category));
        }
        let data_bytes = serde_json::to_vec(&self.data)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if data_bytes > limits.max_data_bytes {
            c.fail(
                "data",
                format!(
                    "{data_bytes} bytes as JSON; the limit is {}",
                    limits.max_data_bytes
                ),
            );
        }
        if let Some(ttl) = self.ttl_seconds
            && (ttl == 0 || ttl > limits.max_ttl_seconds)
        {
            c.fail(
                "ttl_seconds",
                format!("must be between 1 and {}", limits.max_ttl_seconds),
            );
        }
        if self.channels.as_ref().is_some_and(Vec::is_empty) {
            c.fail(
                "channels",
                "list at least one channel, or leave the field out for all of them",
            );
        }
        if let Some(key) = &self.idempotency_key {
            let chars = key.chars().count();
            if chars == 0 || chars > MAX_IDEMPOTENCY_KEY_CHARS {
                c.fail(
                    "idempotency_key",
                    format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
                );
            }
        }
        if let Some(key) = &self.collapse_key
            && (key.is_empty() || key.len() > MAX_COLLAPSE_KEY_BYTES)
        {
            c.fail(
                "collapse_key",
                format!("must be 1 to {MAX_COLLAPSE_KEY_BYTES} bytes"),
            );
        }
        c.finish()
    }

    /// A digest of everything but the idempotency key: a retry must carry the same content.
    pub fn fingerprint(&self) -> String {
        let mut canonical = self.clone();
        canonical.idempotency_key = None;
        let json = serde_json::to_vec(&canonical).expect("a request always serializes");
        hex::encode(Sha256::digest(json))
    }

    /// The stored notification, with what the request leaves out taken from its category.
    /// Call after [`validate`](Self::validate).
    pub fn into_notification(
        self,
        id: String,
        created_at: i64,
        category: Option<&Category>,
    ) -> Notification {
        let mut to = self.to;
        if let Recipients::Users(users) = &mut to {
            // A user listed twice still gets it once.
            let mut seen = std::collections::HashSet::with_capacity(users.len());
            users.retain(|u| seen.insert(u.clone()));
        }
        Notification {
            id,
            to,
            title: self.title,
            body: self.body,
            category: self.category,
            data: self.data,
            priority: self
                .priority
                .or(category.and_then(|c| c.priority))
                .unwrap_or_default(),
            ttl_seconds: self.ttl_seconds.or(category.and_then(|c| c.ttl_seconds)),
            channels: match self.channels {
                Some(channels) => channels.into_iter().collect(),
                None => category.map_or_else(ChannelSet::all, |c| c.channels),
            },
            created_at,
            idempotency_key: self.idempotency_key,
            collapse_key: self.collapse_key,
            dry_run: self.dry_run,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> PublishRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_good_request_passes_and_dedupes_users() {
        let req = parse(
            r#"{"to":{"users":["a","b","a"]},"title":"Hi","priority":"high","channels":["inbox"]}"#,
        );
        req.validate(&Limits::default()).unwrap();
        let n = req.into_notification("01J".into(), 5, None);
        assert_eq!(n.to, Recipients::Users(vec!["a".into(), "b".into()]));
        assert_eq!(n.priority, Priority::High);
        assert!(n.channels.contains(Channel::Inbox) && !n.channels.contains(Channel::Push));
    }

    #[test]
    fn the_category_fills_in_what_the_request_leaves_out() {
        let category: Category =
            serde_json::from_str(r#"{"channels":["inbox"],"priority":"low","ttl_seconds":60}"#)
                .unwrap();
        let bare = parse(r#"{"to":{"all":true},"title":"x","category":"news"}"#);
        let n = bare.into_notification("1".into(), 5, Some(&category));
        assert_eq!(n.priority, Priority::Low);
        assert_eq!(n.ttl_seconds, Some(60));
        assert_eq!(n.channels, category.channels);
        let explicit = parse(
            r#"{"to":{"all":true},"title":"x","priority":"high","ttl_seconds":5,"channels":["push"]}"#,
        );
        let n = explicit.into_notification("2".into(), 5, Some(&category));
        assert_eq!(n.priority, Priority::High);
        assert_eq!(n.ttl_seconds, Some(5));
        assert!(n.channels.contains(Channel::Push) && !n.channels.contains(Channel::Inbox));
        let plain =
            parse(r#"{"to":{"all":true},"title":"x"}"#).into_notification("3".into(), 5, None);
        assert_eq!(plain.priority, Priority::Normal);
        assert_eq!(plain.channels, ChannelSet::all());
    }

    #[test]
    fn every_broken_rule_is_reported() {
        let limits = Limits {
            max_recipients: 2,
            ..Limits::default()
        };
        let req = parse(&format!(
            r#"{{"to":{{"users":["a","b c","d"]}},"title":"{}","category":"x/y","ttl_seconds":0,"channels":[]}}"#,
            "t".repeat(300)
        ));
        let err = req.validate(&limits).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "to.users",
                "to.users[1]",
                "title",
                "category",
                "ttl_seconds",
                "channels"
            ]
        );
    }

    #[test]
    fn unknown_fields_and_shapes_are_refused() {
        assert!(
            serde_json::from_str::<PublishRequest>(
                r#"{"to":{"all":true},"title":"x","titel":"y"}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<PublishRequest>(r#"{"to":{"everyone":true},"title":"x"}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<PublishRequest>(
                r#"{"to":{"all":true},"title":"x","priority":"urgent"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn fingerprint_ignores_only_the_key() {
        let a = parse(r#"{"to":{"all":true},"title":"x","idempotency_key":"k1"}"#);
        let b = parse(r#"{"to":{"all":true},"title":"x","idempotency_key":"k2"}"#);
        let c = parse(r#"{"to":{"all":true},"title":"y","idempotency_key":"k1"}"#);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
