//! The body of `messages:send`, checked the way FCM's JSON parser checks it: unknown fields,
//! wrongly typed values and reserved data keys are `INVALID_ARGUMENT` naming the field.

use serde_json::{Map, Value};

use super::error::GoogleError;

/// A send request that passed validation.
pub(crate) struct SendRequest {
    pub(crate) token: String,
    pub(crate) message: Value,
    pub(crate) validate_only: bool,
}

const REQUEST_FIELDS: &[&str] = &["validate_only", "validateOnly", "message"];
const MESSAGE_FIELDS: &[&str] = &[
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "fcmOptions",
    "token",
    "topic",
    "condition",
];
const NOTIFICATION_FIELDS: &[&str] = &["title", "body", "image"];
const RESERVED_DATA_KEYS: &[&str] = &["from", "notification", "message_type"];
const RESERVED_DATA_PREFIXES: &[&str] = &["google.", "gcm."];
const ANDROID_PRIORITIES: &[&str] = &["NORMAL", "HIGH"];

pub(crate) fn parse(body: &[u8]) -> Result<SendRequest, GoogleError> {
    let request: Value = serde_json::from_slice(body).map_err(|error| {
        GoogleError::invalid_argument(format!("Invalid JSON payload received. {error}"))
    })?;
    let Value::Object(mut request) = request else {
        return Err(GoogleError::invalid_argument(
            "Invalid JSON payload received. Expected an object.",
        ));
    };
    reject_unknown_fields(&request, REQUEST_FIELDS, None)?;
    let validate_only = match request.get("validate_only").or(request.get("validateOnly")) {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => return Err(wrong_type("validate_only", "TYPE_BOOL", other)),
    };
    let message = match request.remove("message") {
        Some(Value::Object(message)) => message,
        Some(other) => {
            return Err(wrong_type(
                "message",
                "type.googleapis.com/google.firebase.fcm.v1.Message",
                &other,
            ));
        }
        None => {
            return Err(GoogleError::invalid_argument(
                "Request contains an invalid argument.",
            ));
        }
    };
    reject_unknown_fields(&message, MESSAGE_FIELDS, Some("message"))?;
    let token = target_token(&message)?;
    check_string_map(&message, "data", "message")?;
    check_notification(&message)?;
    check_android(&message)?;
    check_object_with_string_maps(&message, "apns", &["headers"])?;
    check_object_with_string_maps(&message, "webpush", &["headers", "data"])?;
    check_object_with_string_maps(&message, "fcm_options", &[])?;
    Ok(SendRequest {
        token,
        message: Value::Object(message),
        validate_only,
    })
}

fn target_token(message: &Map<String, Value>) -> Result<String, GoogleError> {
    match message.get("token") {
        Some(Value::String(token)) => Ok(token.clone()),
        Some(other) => Err(wrong_type("message.token", "TYPE_STRING", other)),
        None if message.contains_key("topic") || message.contains_key("condition") => {
            Err(GoogleError::invalid_argument(
                "herald-fakes supports token targets only, not topics or conditions.",
            ))
        }
        None => Err(GoogleError::invalid_argument(
            "Recipient of the message is not set.",
        )),
    }
}

fn check_notification(message: &Map<String, Value>) -> Result<(), GoogleError> {
    let Some(notification) = message.get("notification") else {
        return Ok(());
    };
    let Value::Object(notification) = notification else {
        return Err(wrong_type(
            "message.notification",
            "type.googleapis.com/google.firebase.fcm.v1.Notification",
            notification,
        ));
    };
    reject_unknown_fields(
        notification,
        NOTIFICATION_FIELDS,
        Some("message.notification"),
    )?;
    for (name, value) in notification {
        if !value.is_string() {
            return Err(wrong_type(
                &format!("message.notification.{name}"),
                "TYPE_STRING",
                value,
            ));
        }
    }
    Ok(())
}

fn check_android(message: &Map<String, Value>) -> Result<(), GoogleError> {
    check_object_with_string_maps(message, "android", &["data"])?;
    let Some(Value::Object(android)) = message.get("android") else {
        return Ok(());
    };
    if let Some(priority) = android.get("priority")
        && !priority
            .as_str()
            .is_some_and(|priority| ANDROID_PRIORITIES.contains(&priority))
    {
        return Err(wrong_type(
            "message.android.priority",
            "type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority",
            priority,
        ));
    }
    if let Some(ttl) = android.get("ttl")
        && !ttl.as_str().is_some_and(is_duration)
    {
        return Err(GoogleError::field_violation(
            "message.android.ttl",
            format!(
                "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), {ttl}"
            ),
        ));
    }
    Ok(())
}

/// Protobuf JSON durations: seconds with up to nine decimals and an `s`, e.g. `"3.5s"`.
fn is_duration(text: &str) -> bool {
    let Some(number) = text.strip_suffix('s') else {
        return false;
    };
    let (seconds, fraction) = number.split_once('.').unwrap_or((number, ""));
    !seconds.is_empty()
        && seconds.bytes().all(|byte| byte.is_ascii_digit())
        && fraction.len() <= 9
        && fraction.bytes().all(|byte| byte.is_ascii_digit())
        && !(number.contains('.') && fraction.is_empty())
}

/// `parent.name`, when present, must be an object whose `maps` fields are string maps.
fn check_object_with_string_maps(
    parent: &Map<String, Value>,
    name: &str,
    maps: &[&str],
) -> Result<(), GoogleError> {
    let Some(value) = parent.get(name) else {
        return Ok(());
    };
    let path = format!("message.{name}");
    let Value::Object(object) = value else {
        return Err(wrong_type(&path, "TYPE_MESSAGE", value));
    };
    for map in maps {
        check_string_map(object, map, &path)?;
    }
    Ok(())
}

/// `parent.name`, when present, must map strings to strings (`data`, `headers`).
fn check_string_map(
    parent: &Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<(), GoogleError> {
    let Some(value) = parent.get(name) else {
        return Ok(());
    };
    let path = format!("{path}.{name}");
    let Value::Object(entries) = value else {
        return Err(wrong_type(&path, "TYPE_MESSAGE", value));
    };
    for (index, (key, value)) in entries.iter().enumerate() {
        if !value.is_string() {
            return Err(wrong_type(
                &format!("{path}[{index}].value"),
                "TYPE_STRING",
                value,
            ));
        }
        if path == "message.data" && is_reserved_data_key(key) {
            return Err(GoogleError::invalid_argument(format!(
                "Invalid data payload key: {key}"
            )));
        }
    }
    Ok(())
}

fn is_reserved_data_key(key: &str) -> bool {
    RESERVED_DATA_KEYS.contains(&key)
        || RESERVED_DATA_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix))
}

fn reject_unknown_fields(
    object: &Map<String, Value>,
    known: &[&str],
    at: Option<&str>,
) -> Result<(), GoogleError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        None => Ok(()),
        Some(unknown) => {
            let location = at.map(|at| format!(" at '{at}'")).unwrap_or_default();
            Err(GoogleError::field_violation(
                at.unwrap_or(""),
                format!(
                    "Invalid JSON payload received. Unknown name \"{unknown}\"{location}: \
                     Cannot find field."
                ),
            ))
        }
    }
}

fn wrong_type(field: &str, expected: &str, value: &Value) -> GoogleError {
    GoogleError::field_violation(
        field,
        format!("Invalid value at '{field}' ({expected}), {value}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error's message and details, as Debug shows them.
    fn reject_message(body: &str) -> String {
        match parse(body.as_bytes()) {
            Ok(_) => panic!("{body} was accepted"),
            Err(error) => format!("{error:?}"),
        }
    }

    #[test]
    fn accepts_a_full_message() {
        let request = parse(
            br#"{"validate_only":true,"message":{"token":"t1","notification":{"title":"a","body":"b"},
                "data":{"k":"v"},"android":{"priority":"HIGH","ttl":"3.5s"},"apns":{"headers":{"apns-priority":"10"}},
                "webpush":{"headers":{"TTL":"60"}}}}"#,
        )
        .unwrap_or_else(|_| panic!("valid message rejected"));
        assert_eq!(request.token, "t1");
        assert!(request.validate_only);
        assert_eq!(request.message["data"]["k"], "v");
    }

    #[test]
    fn names_the_offending_field() {
        assert!(
            reject_message(r#"{"message":{"token":"t","data":{"a":"x","b":1}}}"#)
                .contains("message.data[1].value")
        );
        assert!(
            reject_message(r#"{"message":{"data":{"a":"x"}}}"#)
                .contains("Recipient of the message is not set.")
        );
        assert!(
            reject_message(r#"{"message":{"token":"t","bogus":1}}"#)
                .contains("Unknown name \\\"bogus\\\" at 'message'")
        );
        assert!(
            reject_message(r#"{"message":{"token":"t","data":{"from":"x"}}}"#)
                .contains("Invalid data payload key: from")
        );
        assert!(
            reject_message(r#"{"message":{"token":"t","android":{"ttl":"10"}}}"#)
                .contains("message.android.ttl")
        );
        assert!(reject_message(r#"{"message":{"token":7}}"#).contains("message.token"));
        assert!(reject_message("not json").contains("Invalid JSON payload received."));
    }

    #[test]
    fn durations() {
        assert!(is_duration("3s") && is_duration("3.5s") && is_duration("0.000000001s"));
        assert!(
            !is_duration("3") && !is_duration("s") && !is_duration("3.s") && !is_duration("-1s")
        );
    }
}
