//! A response's header block turned into its status and headers, with few allocations: every
//! value shares one buffer, and the scratch space is kept from one response to the next.

use std::ops::Range;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::hpack::Decoder;

#[derive(Default)]
pub struct HeadDecoder {
    hpack: Decoder,
    fields: Vec<(HeaderName, Range<usize>)>,
    values: Vec<u8>,
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
        Ok(Ok((status, headers)))
    }
}
