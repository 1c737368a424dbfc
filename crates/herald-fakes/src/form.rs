//! `application/x-www-form-urlencoded` bodies (the OAuth token request).

/// The value of `name` in a form body, percent- and plus-decoded; `None` if absent or not UTF-8.
pub(crate) fn form_value(body: &[u8], name: &str) -> Option<String> {
    body.split(|&byte| byte == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&byte| byte == b'=') {
            Some(equals) => (&pair[..equals], &pair[equals + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (decode(key)? == name).then(|| decode(value)).flatten()
    })
}

fn decode(encoded: &[u8]) -> Option<String> {
    let mut decoded = Vec::with_capacity(encoded.len());
    let mut bytes = encoded.iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'+' => decoded.push(b' '),
            b'%' => {
                let high = hex_digit(*bytes.next()?)?;
                let low = hex_digit(*bytes.next()?)?;
                decoded.push(high << 4 | low);
            }
            other => decoded.push(other),
        }
    }
    String::from_utf8(decoded).ok()
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use super::form_value;

    #[test]
    fn decodes_percent_and_plus() {
        let body = b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c&x=1+2";
        assert_eq!(
            form_value(body, "grant_type").as_deref(),
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        );
        assert_eq!(form_value(body, "assertion").as_deref(), Some("a.b.c"));
        assert_eq!(form_value(body, "x").as_deref(), Some("1 2"));
        assert_eq!(form_value(body, "missing"), None);
        assert_eq!(form_value(b"bad=%zz", "bad"), None);
    }
}
