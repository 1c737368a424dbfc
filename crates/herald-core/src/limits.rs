//! The bounds on what a request may carry. Each has a documented default (README, "Limits").

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted request body in bytes; larger is refused with 413.
    pub max_body_bytes: usize,
    /// Most user ids in one `to.users` list.
    pub max_recipients: usize,
    /// Most characters in a title.
    pub max_title_chars: usize,
    /// Most characters in a body.
    pub max_body_chars: usize,
    /// Most bytes of the `data` object, serialized as JSON.
    pub max_data_bytes: usize,
    /// Longest `ttl_seconds`.
    pub max_ttl_seconds: u32,
    /// Largest campaign audience upload in bytes (it is streamed, never held whole).
    pub max_upload_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_recipients: 10_000,
            max_title_chars: 256,
            max_body_chars: 4096,
            max_data_bytes: 16 * 1024,
            max_ttl_seconds: 30 * 24 * 3600,
            max_upload_bytes: 4 * 1024 * 1024 * 1024,
        }
    }
}
