//! The APNs JSON payload: the `aps` dictionary plus Herald's id and the notification's data.

use serde_json::{Map, Value, json};

use crate::message::PushMessage;

/// Apple refuses larger payloads with 413 `PayloadTooLarge`.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// The payload, shrunk to fit: first the data goes, then the body is shortened.
pub fn payload(message: &PushMessage) -> Vec<u8> {
    let full = build(message, &message.body, true);
    if full.len() <= MAX_PAYLOAD_BYTES {
        return full;
    }
    let without_data = build(message, &message.body, false);
    if without_data.len() <= MAX_PAYLOAD_BYTES {
        return without_data;
    }
    let overflow = without_data.len() - MAX_PAYLOAD_BYTES;
    // JSON escaping can make a character cost up to 6 bytes; shorten until it fits.
    let mut keep = message.body.len().saturating_sub(overflow + 3);
    loop {
        while !message.body.is_char_boundary(keep) {
            keep -= 1;
        }
        let body = format!("{}…", &message.body[..keep]);
        let shrunk = build(message, &body, false);
        if shrunk.len() <= MAX_PAYLOAD_BYTES || keep == 0 {
            return shrunk;
        }
        keep = keep.saturating_sub(64);
    }
}

fn build(message: &PushMessage, body: &str, with_data: bool) -> Vec<u8> {
    let mut alert = Map::new();
    alert.insert("title".into(), Value::String(message.title.clone()));
    if !body.is_empty() {
        alert.insert("body".into(), Value::String(body.to_owned()));
    }
    let mut aps = json!({ "alert": alert, "sound": "default" });
    if let Some(category) = &message.category {
        aps["thread-id"] = Value::String(category.clone());
    }
    let mut root = Map::new();
    if with_data {
        // Custom keys live beside `aps`, as Apple's documentation shows.
        for (k, v) in &message.data {
            root.insert(k.clone(), v.clone());
        }
    }
    root.insert(
        "herald_id".into(),
        Value::String(message.notification_id.clone()),
    );
    root.insert("aps".into(), aps);
    serde_json::to_vec(&root).expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> PushMessage {
        let n: herald_core::Notification = serde_json::from_value(json!({
            "id": "N1", "to": {"all": true}, "title": "T", "body": body,
            "data": {"big": "x".repeat(3000)}, "created_at": 0, "category": "chat"
        }))
        .unwrap();
        PushMessage::from_notification(&n)
    }

    #[test]
    fn small_payload_is_whole() {
        let p: Value = serde_json::from_slice(&payload(&message("hello"))).unwrap();
        assert_eq!(p["aps"]["alert"]["body"], "hello");
        assert_eq!(p["aps"]["thread-id"], "chat");
        assert_eq!(p["herald_id"], "N1");
        assert_eq!(p["big"].as_str().unwrap().len(), 3000);
    }

    #[test]
    fn large_payload_drops_data_then_shortens_the_body() {
        let p = payload(&message(&"é\"".repeat(2000)));
        assert!(p.len() <= MAX_PAYLOAD_BYTES, "{}", p.len());
        let v: Value = serde_json::from_slice(&p).unwrap();
        assert!(v.get("big").is_none());
        assert!(v["aps"]["alert"]["body"].as_str().unwrap().ends_with('…'));
    }
}
