//! A response's header block turned into its status and headers, with few allocations: every
//! value shares one buffer, the scratch space is kept from one response to the next, and a
//! block identical to the last one, with the HPACK table unchanged, is not decoded again (a
//! provider answers thousands of requests a second with the same few headers).

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::hpack::Decoder;

#[derive(Default)]
pub struct HeadDecoder {
    hpack: Decoder,
    fields: Vec<(HeaderName, Range<usize>)>,
    values: Vec<u8>,
    last: Option<Last>,
}

/// The last block decoded that left the table as it was, and what it meant.
struct Last {
    block: Vec<u8>,
    generation: u64,
    status: StatusCode,
    headers: HeaderMap,
}

/// A decoded header block the client cannot use (the connection goes on).
pub type Malformed = &'static str;

impl HeadDecoder {
    /// Decodes a block only to keep the table in step with the server's (trailers, streams
    /// no longer waited for).
    pub fn skip(&mut self, block: &[u8]) -> Result<(), &'static str> {
        self.hpack.decode(block, |_, _| {})
    }

    /// The status and headers of a response block. The outer error is a compression error
    /// (the connection is lost); the inner one a malformed response (only its stream is).
    pub fn decode(
        &mut self,
        block: &[u8],
    ) -> Result<Result<(StatusCode, HeaderMap), Malformed>, &'static str> {
        if let Some(last) = &self.last
            && last.generation == self.hpack.generation()
            && last.block == block
        {
            return Ok(Ok((last.status, last.headers.clone())));
        }
        let generation = self.hpack.generation();
        let mut status = None;
        let mut bad = None;
        let (fields, values) = (&mut self.fields, &mut self.values);
        fields.clear();
        values.clear();
        self.hpack.decode(block, |name, value| {
            if name == b":status" {
                status = StatusCode::from_bytes(value).ok();
            } else if name.first() == Some(&b':') {
                bad.get_or_insert("an unknown pseudo-header");
            } else if let Ok(name) = HeaderName::from_bytes(name) {
                fields.push((name, values.len()..values.len() + value.len()));
                values.extend_from_slice(value);
            } else {
                bad.get_or_insert("a malformed header name");
            }
        })?;
        let status = match (status, bad) {
            (Some(status), None) => status,
            (_, bad) => return Ok(Err(bad.unwrap_or("no valid :status"))),
        };
        let mut headers = HeaderMap::with_capacity(fields.len());
        if !fields.is_empty() {
            let values = Bytes::copy_from_slice(values);
            for (name, range) in fields.drain(..) {
                match HeaderValue::from_maybe_shared(values.slice(range)) {
                    Ok(value) => {
                        headers.append(name, value);
                    }
                    Err(_) => return Ok(Err("a malformed header value")),
                }
            }
        }
        if self.hpack.generation() == generation {
            let last = self.last.get_or_insert_with(|| Last {
                block: Vec::new(),
                generation,
                status,
                headers: HeaderMap::new(),
            });
            last.block.clear();
            last.block.extend_from_slice(block);
            (last.generation, last.status) = (generation, status);
            last.headers.clone_from(&headers);
        }
        Ok(Ok((status, headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_block_means_the_same_until_the_table_changes() {
        let mut decoder = HeadDecoder::default();
        // :status 200, then `x-kind: a` added to the table (literal with incremental indexing).
        let insert = [
            0x88, 0x40, 0x06, b'x', b'-', b'k', b'i', b'n', b'd', 0x01, b'a',
        ];
        // :status 200, then the newest table entry.
        let indexed = [0x88, 0xbe];
        let (_, first) = decoder.decode(&insert).unwrap().unwrap();
        assert_eq!(first["x-kind"], "a");
        for _ in 0..2 {
            let (status, headers) = decoder.decode(&indexed).unwrap().unwrap();
            assert_eq!(
                (status, headers["x-kind"].as_bytes()),
                (StatusCode::OK, &b"a"[..])
            );
        }
        // A new entry moves index 62 to `x-kind: b`: the same bytes now mean something else.
        let insert_b = [
            0x88, 0x40, 0x06, b'x', b'-', b'k', b'i', b'n', b'd', 0x01, b'b',
        ];
        decoder.decode(&insert_b).unwrap().unwrap();
        let (_, headers) = decoder.decode(&indexed).unwrap().unwrap();
        assert_eq!(headers["x-kind"], "b");
        assert_eq!(headers.len(), 1);
    }
}
