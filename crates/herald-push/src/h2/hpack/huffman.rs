//! HPACK's Huffman code (RFC 7541 Appendix B), decoding only: the encoder sends raw strings.
//!
//! The code is canonical (codes of one length are consecutive, assigned in symbol order, each
//! length continuing where the shorter left off), so the table is just every symbol's code
//! length, and decoding walks the bits with three small arrays instead of a tree.

use std::sync::LazyLock;

/// Code length in bits of each symbol 0..=255 and of EOS (256).
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];
const EOS: u16 = 256;
const MAX_LENGTH: usize = 30;

/// The canonical code's layout: per length, its first code, how many codes, and where its
/// symbols start in `symbols`.
struct Canonical {
    first: [u32; MAX_LENGTH + 1],
    count: [u32; MAX_LENGTH + 1],
    offset: [usize; MAX_LENGTH + 1],
    symbols: Vec<u16>,
}

static CANONICAL: LazyLock<Canonical> = LazyLock::new(|| {
    let mut count = [0u32; MAX_LENGTH + 1];
    for len in CODE_LENGTHS {
        count[usize::from(len)] += 1;
    }
    let (mut first, mut offset) = ([0u32; MAX_LENGTH + 1], [0usize; MAX_LENGTH + 1]);
    let (mut code, mut at) = (0u32, 0usize);
    for len in 1..=MAX_LENGTH {
        code = (code + count[len - 1]) << 1;
        first[len] = code;
        offset[len] = at;
        at += count[len] as usize;
    }
    let mut symbols: Vec<u16> = (0..=EOS).collect();
    symbols.sort_by_key(|s| CODE_LENGTHS[usize::from(*s)]);
    Canonical {
        first,
        count,
        offset,
        symbols,
    }
});

/// Appends the decoding of `bytes` to `out`.
pub fn decode(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    let table = &*CANONICAL;
    let (mut code, mut len) = (0u32, 0usize);
    for byte in bytes {
        for shift in (0..8).rev() {
            code = code << 1 | u32::from(byte >> shift & 1);
            len += 1;
            let index = code.wrapping_sub(table.first[len]);
            if index < table.count[len] {
                let symbol = table.symbols[table.offset[len] + index as usize];
                if symbol == EOS {
                    return Err("Huffman string holds EOS");
                }
                out.push(symbol as u8);
                (code, len) = (0, 0);
            } else if len == MAX_LENGTH {
                return Err("not a Huffman code");
            }
        }
    }
    // Padding: fewer than 8 bits, all ones (the start of EOS).
    if len > 7 || code != (1 << len) - 1 {
        return Err("bad Huffman padding");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code of `symbol`, rebuilt from the canonical layout.
    fn code_of(symbol: u16) -> (u32, u8) {
        let table = &*CANONICAL;
        let len = CODE_LENGTHS[usize::from(symbol)];
        let l = usize::from(len);
        let rank = table.symbols[table.offset[l]..table.offset[l] + table.count[l] as usize]
            .iter()
            .position(|s| *s == symbol)
            .unwrap();
        (table.first[l] + rank as u32, len)
    }

    #[test]
    fn the_layout_rebuilds_the_rfc_codes() {
        // A few codes as printed in RFC 7541 Appendix B.
        assert_eq!(code_of(0), (0x1ff8, 13));
        assert_eq!(code_of(u16::from(b'0')), (0x0, 5));
        assert_eq!(code_of(u16::from(b'a')), (0x3, 5));
        assert_eq!(code_of(u16::from(b' ')), (0x14, 6));
        assert_eq!(code_of(u16::from(b'{')), (0x7ffe, 15));
        assert_eq!(code_of(255), (0x3ffffee, 26));
        assert_eq!(code_of(EOS), (0x3fffffff, 30));
    }

    #[test]
    fn decodes_the_rfc_examples_and_rejects_bad_padding() {
        let mut out = Vec::new();
        // RFC 7541 C.4.1: "www.example.com".
        decode(
            &[
                0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
            ],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"www.example.com");
        out.clear();
        // C.6.1: "302".
        decode(&[0x64, 0x02], &mut out).unwrap();
        assert_eq!(out, b"302");
        // Padding of zeros, and padding of a whole byte, are errors.
        assert!(decode(&[0x00], &mut Vec::new()).is_err());
        assert!(decode(&[0x64, 0x02, 0xff], &mut Vec::new()).is_err());
    }
}
