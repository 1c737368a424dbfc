//! What a push says, taken from a notification once and shared by every send of it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use herald_core::{Notification, Priority};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct PushMessage {
    pub notification_id: String,
    pub title: String,
    pub body: String,
    pub category: Option<String>,
    pub data: Map<String, Value>,
    pub priority: Priority,
    /// Unix milliseconds after which it must not be delivered.
    pub expires_at_ms: Option<i64>,
    pub collapse_key: Option<String>,
    /// [`string_data`](Self::string_data), made on first use and shared by every send.
    pub string_data_cache: OnceLock<BTreeMap<String, String>>,
    /// The FCM body with holes for the token and TTL, made on first use and shared likewise.
    pub fcm_body_cache: OnceLock<Result<crate::fcm::BodyTemplate, String>>,
}

impl PushMessage {
    pub fn from_notification(n: &Notification) -> Self {
        Self {
            notification_id: n.id.clone(),
            title: n.title.clone(),
            body: n.body.clone(),
            category: n.category.clone(),
            data: n.data.clone(),
            priority: n.priority,
            expires_at_ms: n
                .ttl_seconds
                .map(|ttl| n.created_at + i64::from(ttl) * 1000),
            collapse_key: n.collapse_key.clone(),
            string_data_cache: OnceLock::new(),
            fcm_body_cache: OnceLock::new(),
        }
    }

    /// Whole seconds the message may still wait for the device; `None` without a TTL.
    pub fn ttl_left_seconds(&self, now_ms: i64) -> Option<u64> {
        self.expires_at_ms
            .map(|at| u64::try_from((at - now_ms).max(0) / 1000).unwrap_or(0))
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }

    /// The data as string values, as FCM requires: strings stay as they are, anything else is
    /// its JSON text. Herald adds `herald_id` (and `category`) so apps can mark the inbox entry.
    pub fn string_data(&self) -> &BTreeMap<String, String> {
        self.string_data_cache
            .get_or_init(|| self.make_string_data())
    }

    fn make_string_data(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .data
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        out.insert("herald_id".into(), self.notification_id.clone());
        if let Some(category) = &self.category {
            out.insert("herald_category".into(), category.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_values_become_strings() {
        let n: Notification = serde_json::from_str(
            r#"{"id":"N1","to":{"all":true},"title":"t","data":{"a":"x","b":2,"c":{"d":true}},
                "created_at":1000,"ttl_seconds":60,"category":"news"}"#,
        )
        .unwrap();
        let m = PushMessage::from_notification(&n);
        let data = m.string_data();
        assert_eq!(data["a"], "x");
        assert_eq!(data["b"], "2");
        assert_eq!(data["c"], r#"{"d":true}"#);
        assert_eq!(data["herald_id"], "N1");
        assert_eq!(data["herald_category"], "news");
        assert_eq!(m.ttl_left_seconds(31_000), Some(30));
        assert!(!m.expired(60_999));
        assert!(m.expired(61_000));
    }
}
