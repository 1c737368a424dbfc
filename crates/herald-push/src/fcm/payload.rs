//! The FCM HTTP v1 `messages:send` request body, and how its error answers are read.

use std::collections::BTreeMap;

use herald_core::Priority;
use serde::{Deserialize, Serialize};

use crate::message::PushMessage;

/// The `messages:send` shape, field for field; [`BodyTemplate`] writes the same bytes faster.
#[cfg(test)]
#[derive(Serialize)]
pub struct SendRequest<'a> {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub validate_only: bool,
    pub message: Message<'a>,
}

#[cfg(test)]
#[derive(Serialize)]
pub struct Message<'a> {
    pub token: &'a str,
    pub notification: Notification<'a>,
    pub data: &'a BTreeMap<String, String>,
    pub android: Android<'a>,
    pub apns: Apns,
}

#[derive(Serialize)]
pub struct Notification<'a> {
    pub title: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub body: &'a str,
}

#[cfg(test)]
#[derive(Serialize)]
pub struct Android<'a> {
    pub priority: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<&'a str>,
}

#[derive(Serialize)]
pub struct Apns {
    pub headers: BTreeMap<&'static str, String>,
}

#[cfg(test)]
pub fn request<'a>(
    message: &'a PushMessage,
    token: &'a str,
    validate_only: bool,
    now_ms: i64,
) -> SendRequest<'a> {
    let ttl = message.ttl_left_seconds(now_ms);
    SendRequest {
        validate_only,
        message: Message {
            token,
            notification: Notification {
                title: &message.title,
                body: &message.body,
            },
            data: message.string_data(),
            android: Android {
                priority: android_priority(message),
                ttl: ttl.map(|s| format!("{s}s")),
                collapse_key: message.collapse_key.as_deref(),
            },
            apns: apns(message),
        },
    }
}

fn android_priority(message: &PushMessage) -> &'static str {
    if message.priority == Priority::High {
        "HIGH"
    } else {
        "NORMAL"
    }
}

fn apns(message: &PushMessage) -> Apns {
    let mut headers = BTreeMap::new();
    headers.insert(
        "apns-priority",
        if message.priority == Priority::High {
            "10"
        } else {
            "5"
        }
        .to_owned(),
    );
    if let Some(at) = message.expires_at_ms {
        headers.insert("apns-expiration", (at / 1000).to_string());
    }
    if let Some(key) = &message.collapse_key {
        headers.insert("apns-collapse-id", key.clone());
    }
    Apns { headers }
}

/// A message's `messages:send` body rendered once, around the two parts that differ per send:
/// the device token and the TTL left. Every send of a notification to a million devices then
/// costs two copies instead of a serialisation. The bytes equal serde's for [`SendRequest`]
/// (field order: token, notification, data, android{priority, ttl, collapse_key}, apns).
#[derive(Debug, Clone, PartialEq)]
pub struct BodyTemplate {
    /// From after the token to before the TTL: `,"notification":…,"android":{"priority":"…"`.
    middle: String,
    /// From after the TTL to the end: `,"collapse_key":…},"apns":…}}`.
    tail: String,
}

impl BodyTemplate {
    pub fn new(message: &PushMessage) -> Result<Self, serde_json::Error> {
        let mut middle = String::from(r#","notification":"#);
        middle.push_str(&serde_json::to_string(&Notification {
            title: &message.title,
            body: &message.body,
        })?);
        middle.push_str(r#","data":"#);
        middle.push_str(&serde_json::to_string(message.string_data())?);
        middle.push_str(r#","android":{"priority":""#);
        middle.push_str(android_priority(message));
        middle.push('"');
        let mut tail = String::new();
        if let Some(key) = &message.collapse_key {
            tail.push_str(r#","collapse_key":"#);
            tail.push_str(&serde_json::to_string(key)?);
        }
        tail.push_str(r#"},"apns":"#);
        tail.push_str(&serde_json::to_string(&apns(message))?);
        tail.push_str("}}");
        Ok(Self { middle, tail })
    }

    /// The body for `token`, with the TTL left at `now_ms`.
    pub fn render(
        &self,
        message: &PushMessage,
        token: &str,
        validate_only: bool,
        now_ms: i64,
    ) -> Vec<u8> {
        let head: &[u8] = if validate_only {
            br#"{"validate_only":true,"message":{"token":"#
        } else {
            br#"{"message":{"token":"#
        };
        let ttl = message.ttl_left_seconds(now_ms);
        // Exactly the length for a plain token: a full Vec becomes `Bytes` without another
        // allocation.
        let ttl_len = ttl.map_or(0, |t| r#","ttl":"s""#.len() + decimal_len(t));
        let mut out = Vec::with_capacity(
            head.len() + token.len() + 2 + self.middle.len() + ttl_len + self.tail.len(),
        );
        out.extend_from_slice(head);
        if token
            .bytes()
            .all(|b| (b' '..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            // Real tokens are plain ASCII: nothing to escape.
            out.push(b'"');
            out.extend_from_slice(token.as_bytes());
            out.push(b'"');
        } else {
            serde_json::to_writer(&mut out, token).expect("a string serialises");
        }
        out.extend_from_slice(self.middle.as_bytes());
        if let Some(ttl) = ttl {
            out.extend_from_slice(br#","ttl":""#);
            out.extend_from_slice(crate::decimal::decimal(ttl, &mut [0; 20]));
            out.extend_from_slice(br#"s""#);
        }
        out.extend_from_slice(self.tail.as_bytes());
        out
    }
}

fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |digits| digits as usize + 1)
}

/// Google's error body: `{"error": {"code", "message", "status", "details": [{"errorCode"}]}}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: ErrorInfo,
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorInfo {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub details: Vec<ErrorDetail>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorDetail {
    #[serde(default, rename = "errorCode")]
    pub error_code: Option<String>,
}

impl ErrorInfo {
    /// The FCM error code (`UNREGISTERED`, `INVALID_ARGUMENT`, ...), else the RPC status.
    pub fn code(&self) -> &str {
        self.details
            .iter()
            .find_map(|d| d.error_code.as_deref())
            .unwrap_or(&self.status)
    }

    /// FCM says INVALID_ARGUMENT both for a bad token and for a bad message; only the first
    /// means the device is gone.
    pub fn is_about_the_token(&self) -> bool {
        self.message
            .to_ascii_lowercase()
            .contains("registration token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_follows_the_v1_shape() {
        let n: herald_core::Notification = serde_json::from_str(
            r#"{"id":"N1","to":{"all":true},"title":"Hi","body":"there","data":{"n":1},
                "priority":"high","created_at":1000000,"ttl_seconds":60,"collapse_key":"score"}"#,
        )
        .unwrap();
        let m = PushMessage::from_notification(&n);
        let json = serde_json::to_value(request(&m, "tok", true, 1_010_000)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "validate_only": true,
                "message": {
                    "token": "tok",
                    "notification": {"title": "Hi", "body": "there"},
                    "data": {"n": "1", "herald_id": "N1"},
                    "android": {"priority": "HIGH", "ttl": "50s", "collapse_key": "score"},
                    "apns": {"headers": {"apns-priority": "10", "apns-expiration": "1060", "apns-collapse-id": "score"}}
                }
            })
        );
    }

    #[test]
    fn template_writes_what_serde_writes() {
        let cases = [
            r#"{"id":"N1","to":{"all":true},"title":"Hi \"you\"","body":"there\n","data":{"n":1,"s":"é"},
                "priority":"high","created_at":1000000,"ttl_seconds":60,"collapse_key":"sc\\ore","category":"c"}"#,
            r#"{"id":"N2","to":{"all":true},"title":"t","created_at":1000000}"#,
            r#"{"id":"N3","to":{"all":true},"title":"t","body":"","priority":"low","created_at":1000000,"ttl_seconds":5}"#,
        ];
        for case in cases {
            let n: herald_core::Notification = serde_json::from_str(case).unwrap();
            let m = PushMessage::from_notification(&n);
            let template = BodyTemplate::new(&m).unwrap();
            for token in ["tok", "a\"b\\c\u{1}é", ""] {
                for validate_only in [false, true] {
                    for now in [0, 1_010_000, 9_000_000] {
                        let expected =
                            serde_json::to_vec(&request(&m, token, validate_only, now)).unwrap();
                        let got = template.render(&m, token, validate_only, now);
                        if !token.contains('"') {
                            assert_eq!(got.len(), got.capacity(), "sized exactly");
                        }
                        assert_eq!(
                            String::from_utf8(got).unwrap(),
                            String::from_utf8(expected).unwrap()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn error_codes_are_read_from_details() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND",
                "details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#,
        )
        .unwrap();
        assert_eq!(body.error.code(), "UNREGISTERED");
        let plain: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":503,"status":"UNAVAILABLE"}}"#).unwrap();
        assert_eq!(plain.error.code(), "UNAVAILABLE");
    }
}
