//! Devices: where push notifications go. A device is identified by its push address (an FCM or APNs
//! token, or a Web Push endpoint), so registering the same address again finds the same device,
//! even when a phone changes hands.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::validation::{Checker, ValidationError};

/// The push service a device is reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Fcm,
    Apns,
    Webpush,
}

impl Platform {
    pub const ALL: [Platform; 3] = [Platform::Fcm, Platform::Apns, Platform::Webpush];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Fcm => "fcm",
            Platform::Apns => "apns",
            Platform::Webpush => "webpush",
        }
    }
}

/// A browser's Web Push subscription keys (RFC 8291), base64url as the browser gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebPushKeys {
    /// The subscription's P-256 public key (65 bytes uncompressed).
    pub p256dh: String,
    /// The 16-byte authentication secret.
    pub auth: String,
}

/// What a client sends to register a device.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceRegistration {
    pub platform: Platform,
    /// FCM registration token or APNs device token (hex).
    #[serde(default)]
    pub token: Option<String>,
    /// Web Push: the push service endpoint URL.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Web Push: the subscription keys.
    #[serde(default)]
    pub keys: Option<WebPushKeys>,
    /// The app the token belongs to (e.g. an APNs topic / bundle id), if several are configured.
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    /// IANA time zone, e.g. `Europe/Berlin`.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    /// Derived from the platform and address: the same address always has the same id.
    pub id: String,
    pub user: String,
    pub platform: Platform,
    /// The FCM/APNs token, or the Web Push endpoint.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<WebPushKeys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Unix milliseconds of the latest registration.
    pub registered_at: i64,
}

/// The id of the device at this address: 32 hex characters of SHA-256(platform, address).
pub fn device_id(platform: Platform, address: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(platform.as_str().as_bytes());
    hash.update([0]);
    hash.update(address.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

const MAX_TOKEN_BYTES: usize = 4096;
const MAX_LABEL_CHARS: usize = 128;

impl DeviceRegistration {
    /// Checks the registration and turns it into the device of `user`.
    pub fn into_device(self, user: &str, now_ms: i64) -> Result<Device, ValidationError> {
        let mut c = Checker::default();
        let address = match self.platform {
            Platform::Fcm | Platform::Apns => {
                if self.endpoint.is_some() || self.keys.is_some() {
                    c.fail(
                        "endpoint",
                        "only Web Push devices have an endpoint and keys",
                    );
                }
                let token = self.token.clone().unwrap_or_default();
                c.check("token", check_token(self.platform, &token));
                token
            }
            Platform::Webpush => {
                if self.token.is_some() {
                    c.fail(
                        "token",
                        "Web Push devices give `endpoint` and `keys`, not `token`",
                    );
                }
                let endpoint = self.endpoint.clone().unwrap_or_default();
                c.check("endpoint", check_endpoint(&endpoint));
                match &self.keys {
                    None => c.fail("keys", "required for Web Push: {\"p256dh\", \"auth\"}"),
                    Some(k) => {
                        c.check(
                            "keys.p256dh",
                            check_b64url(&k.p256dh, 65, "a P-256 public key"),
                        );
                        c.check("keys.auth", check_b64url(&k.auth, 16, "an auth secret"));
                    }
                }
                endpoint
            }
        };
        for (field, value) in [
            ("app", &self.app),
            ("locale", &self.locale),
            ("timezone", &self.timezone),
        ] {
            if let Some(v) = value
                && (v.is_empty() || v.chars().count() > MAX_LABEL_CHARS)
            {
                c.fail(field, format!("must be 1 to {MAX_LABEL_CHARS} characters"));
            }
        }
        c.finish()?;
        Ok(Device {
            id: device_id(self.platform, &address),
            user: user.to_owned(),
            platform: self.platform,
            address,
            keys: self.keys,
            app: self.app,
            locale: self.locale,
            timezone: self.timezone,
            registered_at: now_ms,
        })
    }
}

fn check_token(platform: Platform, token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("required".into());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!("longer than {MAX_TOKEN_BYTES} bytes"));
    }
    if token
        .chars()
        .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        return Err("must not contain whitespace".into());
    }
    if platform == Platform::Apns && !token.chars().all(|ch| ch.is_ascii_hexdigit()) {
        return Err("an APNs device token is hexadecimal".into());
    }
    Ok(())
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.is_empty() {
        return Err("required for Web Push".into());
    }
    if endpoint.len() > MAX_TOKEN_BYTES {
        return Err(format!("longer than {MAX_TOKEN_BYTES} bytes"));
    }
    let Some(rest) = endpoint.strip_prefix("https://") else {
        return Err("must be an https:// URL".into());
    };
    if rest.is_empty() || rest.starts_with('/') || endpoint.chars().any(char::is_whitespace) {
        return Err("must be an https:// URL with a host".into());
    }
    Ok(())
}

fn check_b64url(value: &str, bytes: usize, what: &str) -> Result<(), String> {
    let chars = value.trim_end_matches('=');
    let valid = chars
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
    if !valid || chars.len() != (bytes * 4).div_ceil(3) {
        return Err(format!("must be {what}: {bytes} bytes, base64url"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(json: &str) -> DeviceRegistration {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn same_address_same_id_whoever_registers_it() {
        let a = reg(r#"{"platform":"fcm","token":"abc:123"}"#)
            .into_device("alice", 1)
            .unwrap();
        let b = reg(r#"{"platform":"fcm","token":"abc:123"}"#)
            .into_device("bob", 2)
            .unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        let apns = reg(r#"{"platform":"apns","token":"abc123"}"#)
            .into_device("bob", 2)
            .unwrap();
        assert_ne!(apns.id, device_id(Platform::Fcm, "abc123"));
    }

    #[test]
    fn web_push_needs_endpoint_and_keys() {
        let ok = reg(r#"{"platform":"webpush","endpoint":"https://push.example/abc",
            "keys":{"p256dh":"BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
            "auth":"tBHItJI5svbpez7KI4CCXg"}}"#)
        .into_device("u", 1)
        .unwrap();
        assert_eq!(ok.address, "https://push.example/abc");
        let err =
            reg(r#"{"platform":"webpush","endpoint":"http://x","keys":{"p256dh":"x","auth":"y"}}"#)
                .into_device("u", 1)
                .unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["endpoint", "keys.p256dh", "keys.auth"]);
    }

    #[test]
    fn tokens_are_checked() {
        for json in [
            r#"{"platform":"fcm"}"#,
            r#"{"platform":"fcm","token":""}"#,
            r#"{"platform":"fcm","token":"a b"}"#,
            r#"{"platform":"apns","token":"not-hex"}"#,
            r#"{"platform":"fcm","token":"t","endpoint":"https://x"}"#,
            r#"{"platform":"fcm","token":"t","locale":""}"#,
        ] {
            assert!(reg(json).into_device("u", 1).is_err(), "{json}");
        }
    }
}
