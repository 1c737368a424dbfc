//! The response side of HPACK: a decoder whose dynamic table follows the server's encoder.

use std::collections::VecDeque;

use super::{DEFAULT_TABLE_SIZE, ENTRY_OVERHEAD, Entry, STATIC_TABLE, huffman, read_int};

pub struct Decoder {
    /// Newest first: index 62 is `table[0]`.
    table: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// The most the server may set the table to: what this client's SETTINGS allow.
    limit: usize,
    /// Counts the table's changes: a block decoded twice with no change between (and none made
    /// by the block itself) means the same both times.
    generation: u64,
    /// The literal field being read (strings Huffman-decoded).
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
            limit: DEFAULT_TABLE_SIZE,
            generation: 0,
            name: Vec::new(),
            value: Vec::new(),
        }
    }
}

impl Decoder {
    /// Decodes a whole header block, calling `field` with each name and value in order.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), &'static str> {
        let mut at = 0;
        while at < block.len() {
            let first = block[at];
            if first & 0x80 != 0 {
                let index = read_int(block, &mut at, 7)?;
                let (name, value) = self.entry(index)?;
                field(name, value);
            } else if first & 0x40 != 0 {
                let index = read_int(block, &mut at, 6)?;
                self.literal(block, &mut at, index)?;
                field(&self.name, &self.value);
                self.insert();
            } else if first & 0x20 != 0 {
                let size = read_int(block, &mut at, 5)?;
                if size > self.limit {
                    return Err("table size update over the limit");
                }
                self.max_size = size;
                self.evict_to(size);
                self.generation += 1;
            } else {
                // Without indexing (0000) or never indexed (0001): the same to a client.
                let index = read_int(block, &mut at, 4)?;
                self.literal(block, &mut at, index)?;
                field(&self.name, &self.value);
            }
        }
        Ok(())
    }

    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), &'static str> {
        match index {
            0 => Err("index 0"),
            1..=61 => {
                let (name, value) = STATIC_TABLE[index - 1];
                Ok((name.as_bytes(), value.as_bytes()))
            }
            _ => self
                .table
                .get(index - 62)
                .map(|(n, v)| (&**n, &**v))
                .ok_or("index past the dynamic table"),
        }
    }

    /// Reads a literal field into `self.name` and `self.value`; `index` 0 means a literal name.
    fn literal(&mut self, block: &[u8], at: &mut usize, index: usize) -> Result<(), &'static str> {
        let mut name = std::mem::take(&mut self.name);
        name.clear();
        self.value.clear();
        let read = match index {
            0 => read_string(block, at, &mut name),
            _ => self.entry(index).map(|(n, _)| name.extend_from_slice(n)),
        };
        self.name = name;
        read?;
        read_string(block, at, &mut self.value)
    }

    /// See the field: changes whenever the table does.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Adds the field just read to the table.
    fn insert(&mut self) {
        self.generation += 1;
        let size = self.name.len() + self.value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            // RFC 7541 §4.4: an entry larger than the table empties it.
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max_size - size);
        self.table
            .push_front((self.name.as_slice().into(), self.value.as_slice().into()));
        self.size += size;
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            let (name, value) = self.table.pop_back().expect("table size counts entries");
            self.size -= name.len() + value.len() + ENTRY_OVERHEAD;
        }
    }
}

/// Appends a string literal (raw or Huffman-coded) at `*at` to `out`.
fn read_string(block: &[u8], at: &mut usize, out: &mut Vec<u8>) -> Result<(), &'static str> {
    let huffman = block.get(*at).ok_or("string past the end")? & 0x80 != 0;
    let len = read_int(block, at, 7)?;
    let bytes = block
        .get(*at..*at + len)
        .ok_or("string past the end of the block")?;
    *at += len;
    if huffman {
        huffman::decode(bytes, out)
    } else {
        out.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode_to_strings;
    use super::*;

    fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// RFC 7541 C.6: three responses, Huffman-coded, with a 256-byte table.
    #[test]
    fn decodes_the_rfc_response_sequence() {
        let mut decoder = Decoder {
            max_size: 256,
            ..Decoder::default()
        };
        let first = [
            0x48, 0x82, 0x64, 0x02, 0x58, 0x85, 0xae, 0xc3, 0x77, 0x1a, 0x4b, 0x61, 0x96, 0xd0,
            0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b, 0x81,
            0x66, 0xe0, 0x82, 0xa6, 0x2d, 0x1b, 0xff, 0x6e, 0x91, 0x9d, 0x29, 0xad, 0x17, 0x18,
            0x63, 0xc7, 0x8f, 0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82, 0xae, 0x43, 0xd3,
        ];
        assert_eq!(
            decode_to_strings(&mut decoder, &first),
            pairs(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        assert_eq!(decoder.size, 222);
        let second = [0x48, 0x83, 0x64, 0x0e, 0xff, 0xc1, 0xc0, 0xbf];
        assert_eq!(
            decode_to_strings(&mut decoder, &second),
            pairs(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        let third = [
            0x88, 0xc1, 0x61, 0x96, 0xd0, 0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20,
            0x05, 0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0, 0x84, 0xa6, 0x2d, 0x1b, 0xff, 0xc0, 0x5a,
            0x83, 0x9b, 0xd9, 0xab, 0x77, 0xad, 0x94, 0xe7, 0x82, 0x1d, 0xd7, 0xf2, 0xe6, 0xc7,
            0xb3, 0x35, 0xdf, 0xdf, 0xcd, 0x5b, 0x39, 0x60, 0xd5, 0xaf, 0x27, 0x08, 0x7f, 0x36,
            0x72, 0xc1, 0xab, 0x27, 0x0f, 0xb5, 0x29, 0x1f, 0x95, 0x87, 0x31, 0x60, 0x65, 0xc0,
            0x03, 0xed, 0x4e, 0xe5, 0xb1, 0x06, 0x3d, 0x50, 0x07,
        ];
        assert_eq!(
            decode_to_strings(&mut decoder, &third),
            pairs(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                ("location", "https://www.example.com"),
                ("content-encoding", "gzip"),
                (
                    "set-cookie",
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
                ),
            ])
        );
        // RFC 7541 C.6.3: three entries left, 215 bytes.
        assert_eq!((decoder.table.len(), decoder.size), (3, 215));
    }

    #[test]
    fn bad_blocks_are_errors_not_panics() {
        let mut decoder = Decoder::default();
        for block in [
            &[0x80][..],               // index 0
            &[0xbe],                   // past an empty dynamic table
            &[0x40, 0x85, 0x61],       // string past the end
            &[0x3f, 0xe2, 0x1f],       // table size update over 4096
            &[0x00, 0x81, 0x00, 0x80], // Huffman name with zero padding
        ] {
            assert!(decoder.decode(block, |_, _| {}).is_err(), "{block:?}");
        }
    }
}
