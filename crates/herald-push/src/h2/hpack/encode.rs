//! The request side of HPACK: the encoder, tuned for a provider's traffic, where
//! every request on a connection repeats the same authority, path (FCM), bearer token and
//! content type. A field sent twice in a row with the same value goes into the dynamic table and
//! costs one byte from then on. Strings go out raw, not Huffman-coded: cheaper for both ends on
//! a fast link.
//!
//! Only exact (name, value) pairs are matched, never a prefix of a value, and a header's name is
//! Herald's own: an outsider who controls a value (a device token in an APNs path, a collapse
//! id) learns nothing from the compressed size about another field, such as the bearer token.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use super::{DEFAULT_TABLE_SIZE, ENTRY_OVERHEAD, Entry, put_int};

const STATIC_ENTRIES: usize = 61;

pub struct Encoder {
    /// Newest first: index 62 is `table[0]`.
    table: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// Size updates owed at the start of the next block: the smallest since the last block
    /// and the latest (RFC 7541 §4.2).
    owed_update: Option<(usize, usize)>,
    /// The last value sent unindexed per name, as a hash: a value seen twice gets indexed.
    last_unindexed: Vec<(Box<[u8]>, u64)>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
            owed_update: None,
            last_unindexed: Vec::new(),
        }
    }
}

impl Encoder {
    /// The peer's SETTINGS_HEADER_TABLE_SIZE: the table never grows past the default, and a
    /// smaller limit is announced at the start of the next block.
    pub fn set_peer_limit(&mut self, limit: usize) {
        let size = limit.min(DEFAULT_TABLE_SIZE);
        if size == self.max_size && self.owed_update.is_none() {
            return;
        }
        let smallest = self
            .owed_update
            .map_or(size, |(smallest, _)| smallest.min(size));
        self.owed_update = Some((smallest, size));
        self.max_size = size;
        self.evict_to(size);
    }

    /// Starts a header block: any table size update owed comes first.
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        if let Some((smallest, last)) = self.owed_update.take() {
            put_int(out, 5, 0x20, smallest);
            if last != smallest {
                put_int(out, 5, 0x20, last);
            }
        }
    }

    /// Appends one field.
    pub fn field(&mut self, out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        if let Some(index) = static_pair(name, value) {
            put_int(out, 7, 0x80, index);
            return;
        }
        if let Some(at) = self
            .table
            .iter()
            .position(|(n, v)| **n == *name && **v == *value)
        {
            put_int(out, 7, 0x80, STATIC_ENTRIES + 1 + at);
            return;
        }
        let name_index = static_name(name);
        let entry_size = name.len() + value.len() + ENTRY_OVERHEAD;
        if name != b"content-length"
            && entry_size <= self.max_size / 2
            && self.repeated(name, value)
        {
            put_literal(out, 6, 0x40, name_index, name, value);
            self.insert(name, value, entry_size);
        } else {
            put_literal(out, 4, 0x00, name_index, name, value);
        }
    }

    /// Whether `value` is what was last sent unindexed for `name`; remembers it if not.
    fn repeated(&mut self, name: &[u8], value: &[u8]) -> bool {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        value.hash(&mut hasher);
        let hash = hasher.finish();
        match self.last_unindexed.iter_mut().find(|(n, _)| **n == *name) {
            Some((_, last)) if *last == hash => true,
            Some((_, last)) => {
                *last = hash;
                false
            }
            None => {
                // Bounded: a peer cannot be made to grow this past a few dozen names.
                if self.last_unindexed.len() >= 64 {
                    self.last_unindexed.remove(0);
                }
                self.last_unindexed.push((name.into(), hash));
                false
            }
        }
    }

    fn insert(&mut self, name: &[u8], value: &[u8], entry_size: usize) {
        self.evict_to(self.max_size - entry_size);
        self.table.push_front((name.into(), value.into()));
        self.size += entry_size;
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            let (name, value) = self.table.pop_back().expect("table size counts entries");
            self.size -= name.len() + value.len() + ENTRY_OVERHEAD;
        }
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    put_int(out, 7, 0x00, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_literal(
    out: &mut Vec<u8>,
    prefix: u8,
    flags: u8,
    name_index: Option<usize>,
    name: &[u8],
    value: &[u8],
) {
    match name_index {
        Some(index) => put_int(out, prefix, flags, index),
        None => {
            out.push(flags);
            put_string(out, name);
        }
    }
    put_string(out, value);
}

/// Static table entries a request uses whole (RFC 7541 Appendix A).
fn static_pair(name: &[u8], value: &[u8]) -> Option<usize> {
    match (name, value) {
        (b":method", b"GET") => Some(2),
        (b":method", b"POST") => Some(3),
        (b":path", b"/") => Some(4),
        (b":scheme", b"http") => Some(6),
        (b":scheme", b"https") => Some(7),
        _ => None,
    }
}

/// The static table's index for `name` (RFC 7541 Appendix A): a `match`, not a scan of
/// `STATIC_TABLE`, since every field not in the dynamic table asks.
fn static_name(name: &[u8]) -> Option<usize> {
    Some(match name {
        b":authority" => 1,
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        b":status" => 8,
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Decoder, decode_to_strings};
    use super::*;

    fn block(encoder: &mut Encoder, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        encoder.begin(&mut out);
        for (name, value) in fields {
            encoder.field(&mut out, name.as_bytes(), value.as_bytes());
        }
        out
    }

    #[test]
    fn repeated_fields_shrink_to_an_index_and_decode_exactly() {
        let mut encoder = Encoder::default();
        let mut decoder = Decoder::default();
        let token = format!("Bearer {}", "t".repeat(900));
        let mut sizes = Vec::new();
        for i in 0..300 {
            let length = (100 + i % 7).to_string();
            let device = format!("/3/device/{i:064x}");
            // The token changes now and then, as access tokens are refreshed.
            let token = if i < 150 {
                token.clone()
            } else {
                format!("{token}2")
            };
            let fields: Vec<(&str, &str)> = vec![
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", "fcm.googleapis.com"),
                (
                    ":path",
                    if i % 2 == 0 {
                        "/v1/projects/p/messages:send"
                    } else {
                        &device
                    },
                ),
                ("authorization", &token),
                ("content-type", "application/json"),
                ("content-length", &length),
            ];
            let encoded = block(&mut encoder, &fields);
            let expected: Vec<(String, String)> = fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(
                decode_to_strings(&mut decoder, &encoded),
                expected,
                "request {i}"
            );
            sizes.push(encoded.len());
        }
        // Once learned, only the varying path and the content length travel as text.
        assert!(sizes[0] > 900, "{}", sizes[0]);
        assert!(sizes[100] < 100, "{}", sizes[100]);
        assert!(sizes[299] < 100, "{}", sizes[299]);
    }

    #[test]
    fn a_smaller_peer_table_is_announced_and_respected() {
        let mut encoder = Encoder::default();
        let mut decoder = Decoder::default();
        let fields = [("x-kind", "alert"), ("x-kind", "alert"), ("x-other", "v")];
        for _ in 0..3 {
            decode_to_strings(&mut decoder, &block(&mut encoder, &fields));
        }
        assert!(!encoder.table.is_empty());
        encoder.set_peer_limit(0);
        encoder.set_peer_limit(100);
        let mut decoder = Decoder::default();
        let encoded = block(&mut encoder, &fields);
        // Two updates: down to 0 first (emptying the table), then up to 100.
        assert_eq!(&encoded[..2], &[0x20, 0x3f]);
        let decoded = decode_to_strings(&mut decoder, &encoded);
        assert_eq!(decoded.len(), 3);
        assert!(encoder.size <= 100);
        assert_eq!(decoded[0], ("x-kind".to_owned(), "alert".to_owned()));
    }
}
