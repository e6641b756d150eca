//! Field readers and writers shared by every frame file, written once.
//!
//! Field encodings (all integers big-endian):
//!
//! ```text
//! name     = len: u8 | bytes[len]       a valid Name (1..=63 bytes of a-z 0-9 - .)
//! string16 = len: u16 | bytes[len]      UTF-8
//! list     = count: u16 | item × count
//! ```
//!
//! A [`Reader`] knows which frame it reads, so every error names the frame
//! and the rule; it never panics on short or hostile input.

use bytes::BufMut;

use crate::cid_prefix::CidPrefix;
use crate::error::DecodeError;
use crate::frame::FrameType;
use crate::name::Name;

/// A cursor over one frame's payload.
pub(crate) struct Reader<'a> {
    frame: FrameType,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `payload`, blaming errors on `frame`.
    pub(crate) fn new(frame: FrameType, payload: &'a [u8]) -> Self {
        Self {
            frame,
            buf: payload,
        }
    }

    /// A [`DecodeError::Malformed`] for this frame.
    pub(crate) fn malformed(&self, reason: &'static str) -> DecodeError {
        DecodeError::Malformed {
            frame: self.frame,
            reason,
        }
    }

    /// How many payload bytes are left.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(self.malformed("payload ends inside a field"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes exactly `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// Reads a `u8`.
    pub(crate) fn read_u8(&mut self) -> Result<u8, DecodeError> {
        self.array::<1>().map(|[b]| b)
    }

    /// Reads a big-endian `u16`.
    pub(crate) fn read_u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    /// Reads a big-endian `u32`.
    pub(crate) fn read_u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    /// Reads a big-endian `u64`.
    pub(crate) fn read_u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    /// Reads a connection-ID prefix (`u32`); only a routable one (high bit
    /// set) is a prefix at all.
    pub(crate) fn read_prefix(&mut self) -> Result<CidPrefix, DecodeError> {
        let v = self.read_u32()?;
        CidPrefix::from_u32(v)
            .ok_or(self.malformed("connection-ID prefix without its high bit set"))
    }

    /// Reads a `name`: length `u8`, then bytes that follow the [`Name`] rule.
    pub(crate) fn read_name(&mut self) -> Result<Name, DecodeError> {
        let len = self.read_u8()?;
        let bytes = self.bytes(usize::from(len))?;
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| Name::try_from(s).ok())
            .ok_or_else(|| self.malformed("invalid name"))
    }

    /// Reads a `string16`: length `u16`, then UTF-8.
    pub(crate) fn read_string16(&mut self) -> Result<String, DecodeError> {
        let len = self.read_u16()?;
        let bytes = self.bytes(usize::from(len))?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(self.malformed("invalid utf-8")),
        }
    }

    /// Reads a `list`: count `u16`, then `count` items read by `item`.
    pub(crate) fn read_list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = usize::from(self.read_u16()?);
        // Every item takes at least one byte, so a hostile count cannot make
        // us reserve more than the payload could hold.
        let mut items = Vec::with_capacity(count.min(self.remaining()));
        for _ in 0..count {
            items.push(item(self)?);
        }
        Ok(items)
    }

    /// Ends the payload: any byte left over is an error ("trailing bytes").
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("trailing bytes"))
        }
    }
}

/// Writes a `name`.
pub(crate) fn put_name(dst: &mut impl BufMut, name: &Name) {
    // A Name is at most 63 bytes, so the length always fits the u8.
    dst.put_u8(u8::try_from(name.as_str().len()).unwrap_or(u8::MAX));
    dst.put_slice(name.as_str().as_bytes());
}

/// The encoded length of a `name`.
pub(crate) fn name_len(name: &Name) -> usize {
    1 + name.as_str().len()
}

/// Writes a `string16`. The caller keeps `s` under 64 KiB (see
/// [`Frame::encode`](crate::Frame::encode)); a longer string would overflow
/// the frame anyway.
pub(crate) fn put_string16(dst: &mut impl BufMut, s: &str) {
    debug_assert!(
        s.len() <= usize::from(u16::MAX),
        "string16 of {} bytes",
        s.len()
    );
    dst.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
    dst.put_slice(s.as_bytes());
}

/// The encoded length of a `string16`.
pub(crate) fn string16_len(s: &str) -> usize {
    2 + s.len()
}

/// Writes a `list` of `items` with `put` for each item.
pub(crate) fn put_list<D: BufMut, T>(dst: &mut D, items: &[T], mut put: impl FnMut(&mut D, &T)) {
    debug_assert!(
        items.len() <= usize::from(u16::MAX),
        "list of {} items",
        items.len()
    );
    dst.put_u16(u16::try_from(items.len()).unwrap_or(u16::MAX));
    for item in items {
        put(dst, item);
    }
}

/// The encoded length of a `list`, given each item's length.
pub(crate) fn list_len<T>(items: &[T], len: impl Fn(&T) -> usize) -> usize {
    2 + items.iter().map(len).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader<'_> {
        Reader::new(FrameType::Open, bytes)
    }

    fn malformed(reason: &'static str) -> DecodeError {
        DecodeError::Malformed {
            frame: FrameType::Open,
            reason,
        }
    }

    #[test]
    fn integers_are_big_endian() {
        let mut r = reader(&[1, 0x01, 0x02, 0x01, 0x02, 0x03, 0x04]);
        assert_eq!(r.read_u8(), Ok(1));
        assert_eq!(r.read_u16(), Ok(0x0102));
        assert_eq!(r.read_u32(), Ok(0x0102_0304));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn short_input_is_malformed() {
        let short = malformed("payload ends inside a field");
        assert_eq!(reader(&[]).read_u8(), Err(short.clone()));
        assert_eq!(reader(&[0]).read_u16(), Err(short.clone()));
        assert_eq!(reader(&[0, 0, 0]).read_u32(), Err(short.clone()));
        assert_eq!(reader(&[3, b'a', b'b']).read_name(), Err(short.clone()));
        assert_eq!(reader(&[0, 2, b'a']).read_string16(), Err(short));
        assert_eq!(reader(&[0]).finish(), Err(malformed("trailing bytes")));
    }

    #[test]
    fn names_and_strings_are_checked() {
        assert_eq!(reader(&[0]).read_name(), Err(malformed("invalid name")));
        assert_eq!(
            reader(&[1, b'A']).read_name(),
            Err(malformed("invalid name"))
        );
        assert_eq!(
            reader(&[1, 0xff]).read_name(),
            Err(malformed("invalid name"))
        );
        assert_eq!(
            reader(&[0, 1, 0xff]).read_string16(),
            Err(malformed("invalid utf-8"))
        );
        assert_eq!(
            reader(&[0, 2, b'h', b'i']).read_string16().as_deref(),
            Ok("hi")
        );
    }

    #[test]
    fn writers_match_their_lengths() {
        let name = Name::try_from("edge").unwrap();
        let mut out = Vec::new();
        put_name(&mut out, &name);
        put_string16(&mut out, "hé");
        assert_eq!(out, b"\x04edge\x00\x03h\xc3\xa9");
        assert_eq!(out.len(), name_len(&name) + string16_len("hé"));
    }
}
