//! The FCM HTTP v1 `messages:send` request body, and how its error answers are read.

use std::collections::BTreeMap;

use herald_core::Priority;
use serde::{Deserialize, Serialize};

use crate::message::PushMessage;

#[derive(Serialize)]
pub struct SendRequest<'a> {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub validate_only: bool,
    pub message: Message<'a>,
}

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

pub fn request<'a>(
    message: &'a PushMessage,
    token: &'a str,
    validate_only: bool,
    now_ms: i64,
) -> SendRequest<'a> {
    let ttl = message.ttl_left_seconds(now_ms);
    let mut apns_headers = BTreeMap::new();
    apns_headers.insert(
        "apns-priority",
        if message.priority == Priority::High {
            "10"
        } else {
            "5"
        }
        .to_owned(),
    );
    if let Some(at) = message.expires_at_ms {
        apns_headers.insert("apns-expiration", (at / 1000).to_string());
    }
    if let Some(key) = &message.collapse_key {
        apns_headers.insert("apns-collapse-id", key.clone());
    }
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
                priority: if message.priority == Priority::High {
                    "HIGH"
                } else {
                    "NORMAL"
                },
                ttl: ttl.map(|s| format!("{s}s")),
                collapse_key: message.collapse_key.as_deref(),
            },
            apns: Apns {
                headers: apns_headers,
            },
        },
    }
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
