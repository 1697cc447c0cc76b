//! A bounds-checked little-endian cursor over a byte slice: the one place
//! where decoders index into network bytes.

use super::error::DecodeError;

/// Reads values from a byte slice, failing with [`DecodeError::Truncated`]
/// instead of panicking when the slice is too short.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    context: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], context: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            context,
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                context: self.context,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.take(n).map(|_| ())
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16_le(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u16_be(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32_le(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u32_be(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64_le(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A UTF-16LE string of `chars` code units (TDS counts characters, not bytes).
    pub fn utf16(&mut self, chars: usize) -> Result<String, DecodeError> {
        let bytes = self.take(chars.saturating_mul(2))?;
        utf16_to_string(bytes, self.context)
    }

    /// B_VARCHAR: a one-byte character count, then UTF-16LE.
    pub fn b_varchar(&mut self) -> Result<String, DecodeError> {
        let n = self.u8()? as usize;
        self.utf16(n)
    }

    /// US_VARCHAR: a two-byte character count, then UTF-16LE.
    pub fn us_varchar(&mut self) -> Result<String, DecodeError> {
        let n = self.u16_le()? as usize;
        self.utf16(n)
    }
}

/// Decodes UTF-16LE bytes; an odd length or an unpaired surrogate is an error.
pub fn utf16_to_string(bytes: &[u8], context: &'static str) -> Result<String, DecodeError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(DecodeError::invalid(context, "odd UTF-16 byte length"));
    }
    if let Some(ascii) = narrow_ascii(bytes) {
        return Ok(ascii);
    }
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|e| DecodeError::invalid(context, format!("invalid UTF-16: {e}")))
}

/// UTF-16LE text that is all ASCII (most SQL, most names) as a `String`,
/// without decoding it unit by unit: four units at a time are checked to
/// have every high byte zero and every low byte below 0x80, and their low
/// bytes are the UTF-8. `None` for anything else.
fn narrow_ascii(bytes: &[u8]) -> Option<String> {
    const NOT_ASCII: u64 = 0xFF80_FF80_FF80_FF80;
    let mut narrow = Vec::with_capacity(bytes.len() / 2);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let units = u64::from_le_bytes(word.try_into().ok()?);
        if units & NOT_ASCII != 0 {
            return None;
        }
        narrow.extend_from_slice(&[word[0], word[2], word[4], word[6]]);
    }
    for unit in words.remainder().chunks_exact(2) {
        if unit[1] != 0 || unit[0] >= 0x80 {
            return None;
        }
        narrow.push(unit[0]);
    }
    String::from_utf8(narrow).ok()
}

/// Appends `s` as UTF-16LE.
pub fn put_utf16(out: &mut Vec<u8>, s: &str) {
    for unit in s.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
}

/// Appends a B_VARCHAR (one-byte character count). Longer strings are cut at
/// 255 UTF-16 code units, the most the format can carry.
pub fn put_b_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    out.push(units.len() as u8);
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
}

/// Appends a US_VARCHAR (two-byte character count), cut at 65535 code units.
pub fn put_us_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(u16::MAX as usize).collect();
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    for u in units {
        out.extend_from_slice(&u.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let mut r = Reader::new(&[1, 2, 3], "test");
        assert_eq!(r.u16_le().unwrap(), 0x0201);
        assert!(matches!(
            r.u32_le(),
            Err(DecodeError::Truncated { needed: 3, .. })
        ));
    }

    #[test]
    fn utf16_round_trip() {
        let mut out = Vec::new();
        put_b_varchar(&mut out, "héllo");
        let mut r = Reader::new(&out, "test");
        assert_eq!(r.b_varchar().unwrap(), "héllo");
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn ascii_and_wider_text_decode_alike() {
        for text in [
            "",
            "SELECT 1",
            "\u{7f}",
            "caf\u{e9}",
            "\u{100}",
            "a\u{4e2d}b",
            "x\u{1F600}",
        ] {
            let mut wide = Vec::new();
            put_utf16(&mut wide, text);
            assert_eq!(utf16_to_string(&wide, "test").unwrap(), text);
        }
        // A low byte of 0x80 or more, or a high byte, is not ASCII.
        assert_eq!(narrow_ascii(&[0x80, 0x00]), None);
        assert_eq!(narrow_ascii(&[0x41, 0x01]), None);
        assert_eq!(narrow_ascii(&[0x41, 0x00]).as_deref(), Some("A"));
        // A wide unit anywhere, in a whole word or in the tail.
        for len in 1..=11 {
            for at in 0..len {
                let mut text: Vec<char> = "abcdefghijk".chars().take(len).collect();
                text[at] = '\u{e9}';
                let text: String = text.into_iter().collect();
                let mut wide = Vec::new();
                put_utf16(&mut wide, &text);
                assert_eq!(narrow_ascii(&wide), None, "{text}");
                assert_eq!(utf16_to_string(&wide, "test").unwrap(), text);
            }
        }
    }

    #[test]
    fn unpaired_surrogate_is_rejected() {
        assert!(utf16_to_string(&[0x00, 0xD8], "test").is_err());
    }
}
