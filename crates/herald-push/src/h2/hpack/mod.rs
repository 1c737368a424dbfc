//! HPACK (RFC 7541), the header compression of HTTP/2: [`Encoder`] for requests, [`Decoder`]
//! for responses, and what both share (the static table, integers, strings).

mod decode;
mod encode;
mod huffman;

pub use self::decode::Decoder;
pub use self::encode::Encoder;

/// The dynamic table size every decoder accepts until its SETTINGS say otherwise.
pub const DEFAULT_TABLE_SIZE: usize = 4_096;
/// RFC 7541 §4.1: an entry's size is its name and value plus this.
const ENTRY_OVERHEAD: usize = 32;

/// A dynamic table entry: name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// RFC 7541 Appendix A; index 1 is `STATIC_TABLE[0]`.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// An HPACK integer with a `prefix`-bit prefix, its first byte or-ed with `flags`.
fn put_int(out: &mut Vec<u8>, prefix: u8, flags: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// Reads an integer with a `prefix`-bit prefix at `*at`, moving past it.
fn read_int(block: &[u8], at: &mut usize, prefix: u8) -> Result<usize, &'static str> {
    let max = (1usize << prefix) - 1;
    let first = *block.get(*at).ok_or("integer past the end")?;
    *at += 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    for shift in (0..).step_by(7) {
        // Past 28 bits nothing in a header block makes sense.
        if shift > 28 {
            return Err("integer too large");
        }
        let byte = *block.get(*at).ok_or("integer past the end")?;
        *at += 1;
        value += (usize::from(byte) & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    Ok(value)
}

/// Every field of `block` as text (tests).
#[cfg(test)]
fn decode_to_strings(decoder: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    decoder
        .decode(block, |n, v| {
            fields.push((
                String::from_utf8(n.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            ));
        })
        .unwrap();
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_use_their_prefix_and_continue_past_it() {
        // RFC 7541 C.1: 10 and 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        put_int(&mut out, 5, 0, 10);
        put_int(&mut out, 5, 0, 1337);
        assert_eq!(out, [10, 31, 154, 10]);
        let mut at = 0;
        assert_eq!(read_int(&out, &mut at, 5), Ok(10));
        assert_eq!(read_int(&out, &mut at, 5), Ok(1337));
        assert_eq!(at, out.len());
        assert!(read_int(&[31, 0xff, 0xff, 0xff, 0xff, 0xff], &mut 0, 5).is_err());
        assert!(read_int(&[31, 0x80], &mut 0, 5).is_err());
    }
}
