//! The `apns-*` headers, device token and payload of one notification, checked as APNs does.

use http::HeaderMap;
use serde_json::Value;

use super::rejection::{
    BAD_COLLAPSE_ID, BAD_DEVICE_TOKEN, BAD_EXPIRATION_DATE, BAD_MESSAGE_ID, BAD_PRIORITY,
    DUPLICATE_HEADERS, INVALID_PUSH_TYPE, MISSING_DEVICE_TOKEN, MISSING_TOPIC, PAYLOAD_EMPTY,
    PAYLOAD_TOO_LARGE, Rejection, TOPIC_DISALLOWED,
};

const PUSH_TYPES: &[&str] = &[
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
    "widgets",
    "controls",
];
/// Topic suffixes Apple appends to a bundle id for the special push types.
const TOPIC_SUFFIXES: &[&str] = &[
    ".voip",
    ".complication",
    ".pushkit.fileprovider",
    ".push-type.liveactivity",
    ".voip-ptt",
];
const PRIORITIES: &[u8] = &[1, 5, 10];
const MAX_COLLAPSE_ID_BYTES: usize = 64;
const MAX_PAYLOAD_BYTES: usize = 4096;
const MAX_VOIP_PAYLOAD_BYTES: usize = 5120;

/// The checked `apns-*` request headers (`apns-id` is checked, and read by [`request_apns_id`]).
#[derive(Debug, Clone)]
pub(crate) struct ApnsHeaders {
    pub(crate) topic: String,
    pub(crate) push_type: String,
    pub(crate) priority: Option<u8>,
    pub(crate) expiration: Option<u64>,
    pub(crate) collapse_id: Option<String>,
}

/// The request's `apns-id`, if it is a well-formed UUID (echoed even on errors).
pub(crate) fn request_apns_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("apns-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_uuid(id))
}

/// Checks the `apns-*` headers; `topics` empty means any topic is accepted.
pub(crate) fn parse_headers(
    headers: &HeaderMap,
    topics: &[String],
) -> Result<ApnsHeaders, Rejection> {
    if single(headers, "apns-id")?.is_some_and(|id| !is_uuid(id)) {
        return Err(BAD_MESSAGE_ID);
    }
    let topic = single(headers, "apns-topic")?.ok_or(MISSING_TOPIC)?;
    if !topic_allowed(topic, topics) {
        return Err(TOPIC_DISALLOWED);
    }
    let push_type = single(headers, "apns-push-type")?
        .filter(|push_type| PUSH_TYPES.contains(push_type))
        .ok_or(INVALID_PUSH_TYPE)?;
    let priority = single(headers, "apns-priority")?
        .map(|priority| {
            priority
                .parse::<u8>()
                .ok()
                .filter(|priority| PRIORITIES.contains(priority))
                .ok_or(BAD_PRIORITY)
        })
        .transpose()?;
    let expiration = single(headers, "apns-expiration")?
        .map(|expiration| expiration.parse::<u64>().map_err(|_| BAD_EXPIRATION_DATE))
        .transpose()?;
    let collapse_id = match single(headers, "apns-collapse-id")? {
        Some(id) if id.len() > MAX_COLLAPSE_ID_BYTES => return Err(BAD_COLLAPSE_ID),
        id => id.map(str::to_string),
    };
    Ok(ApnsHeaders {
        topic: topic.to_string(),
        push_type: push_type.to_string(),
        priority,
        expiration,
        collapse_id,
    })
}

/// Device tokens are hex strings of whole bytes.
pub(crate) fn check_device_token(token: &str) -> Result<(), Rejection> {
    if token.is_empty() {
        return Err(MISSING_DEVICE_TOKEN);
    }
    if !token.len().is_multiple_of(2) || !token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(BAD_DEVICE_TOKEN);
    }
    Ok(())
}

/// The payload must be a JSON object with an `aps` dictionary, within the size limit.
pub(crate) fn parse_payload(body: &[u8], push_type: &str) -> Result<Value, Rejection> {
    let limit = if push_type == "voip" {
        MAX_VOIP_PAYLOAD_BYTES
    } else {
        MAX_PAYLOAD_BYTES
    };
    if body.len() > limit {
        return Err(PAYLOAD_TOO_LARGE);
    }
    // Apple documents no reason for malformed JSON; it answers PayloadEmpty for an unusable one.
    let payload: Value = serde_json::from_slice(body).map_err(|_| PAYLOAD_EMPTY)?;
    if !payload.get("aps").is_some_and(Value::is_object) {
        return Err(PAYLOAD_EMPTY);
    }
    Ok(payload)
}

/// A header that must appear at most once.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DUPLICATE_HEADERS);
    }
    // Non-ASCII header values are as wrong as unparsable ones: the checks below refuse "".
    Ok(Some(first.to_str().unwrap_or("")))
}

fn topic_allowed(topic: &str, topics: &[String]) -> bool {
    topics.is_empty()
        || topics.iter().any(|bundle| {
            topic
                .strip_prefix(bundle.as_str())
                .is_some_and(|suffix| suffix.is_empty() || TOPIC_SUFFIXES.contains(&suffix))
        })
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_and_tokens() {
        assert!(is_uuid("123E4567-E89B-12D3-A456-42665544000A"));
        assert!(!is_uuid("123E4567E89B12D3A45642665544000A"));
        assert_eq!(check_device_token("0aFF"), Ok(()));
        assert_eq!(check_device_token("0aF"), Err(BAD_DEVICE_TOKEN));
        assert_eq!(check_device_token("zz"), Err(BAD_DEVICE_TOKEN));
        assert_eq!(check_device_token(""), Err(MISSING_DEVICE_TOKEN));
    }

    #[test]
    fn topics_with_push_type_suffixes() {
        let topics = vec!["com.example.app".to_string()];
        assert!(topic_allowed("com.example.app", &topics));
        assert!(topic_allowed("com.example.app.voip", &topics));
        assert!(!topic_allowed("com.example.app.other", &topics));
        assert!(!topic_allowed("com.example", &topics));
        assert!(topic_allowed("anything", &[]));
    }
}
