//! The built-in benchmark target's sub-protocol: what a `Tcp` stream to an
//! agent's `bench` target (`relay-agent --expose-bench`), or a TCP
//! connection to `relay-agent bench-server`, carries after `Accepted`.
//!
//! It is not a frame: it rides inside the raw bytes of a stream, exactly as
//! a real target's protocol would, so the tunnel treats it like any other.
//!
//! ```text
//! client → target:  mode: u8 | len: u64 BE          (BenchHeader, 9 bytes)
//!   mode 1 SINK    client sends bytes, then finishes; the target reads to
//!                  the end and answers count: u64 BE (bytes it read), then
//!                  finishes. `len` is ignored.
//!   mode 2 SOURCE  the target sends `len` bytes, then finishes. The client
//!                  sends nothing after the header but its finish.
//!   mode 3 ECHO    the target echoes every byte until the client finishes,
//!                  then finishes. `len` is ignored.
//! ```

use bytes::{Buf, BufMut, BytesMut};

/// Length of an encoded [`BenchHeader`].
pub const BENCH_HEADER_LEN: usize = 9;

/// Length of the sink's answer (a `u64` byte count).
pub const BENCH_COUNT_LEN: usize = 8;

/// What the benchmark target does with a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BenchMode {
    /// Read to the end, answer the byte count.
    Sink,
    /// Send `len` bytes, then finish.
    Source,
    /// Echo until the end.
    Echo,
}

impl BenchMode {
    /// The wire value.
    pub const fn to_u8(self) -> u8 {
        match self {
            BenchMode::Sink => 1,
            BenchMode::Source => 2,
            BenchMode::Echo => 3,
        }
    }

    /// The mode of a wire value.
    ///
    /// # Errors
    /// [`BenchError::UnknownMode`] for anything but 1, 2 or 3.
    pub const fn from_u8(b: u8) -> Result<BenchMode, BenchError> {
        match b {
            1 => Ok(BenchMode::Sink),
            2 => Ok(BenchMode::Source),
            3 => Ok(BenchMode::Echo),
            other => Err(BenchError::UnknownMode(other)),
        }
    }
}

/// Why bytes are not a valid [`BenchHeader`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The mode byte is not 1 (sink), 2 (source) or 3 (echo).
    #[error("unknown benchmark mode {0:#04x} (expected 1 sink, 2 source or 3 echo)")]
    UnknownMode(u8),
}

/// The first bytes a benchmark client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchHeader {
    /// What the target does.
    pub mode: BenchMode,
    /// For [`BenchMode::Source`], how many bytes to send.
    pub len: u64,
}

impl BenchHeader {
    /// A header of `mode` with `len`.
    pub const fn new(mode: BenchMode, len: u64) -> BenchHeader {
        BenchHeader { mode, len }
    }

    /// Decodes a header from the front of `buf`; `Ok(None)` (nothing
    /// consumed) if fewer than [`BENCH_HEADER_LEN`] bytes are there.
    ///
    /// # Errors
    /// [`BenchError::UnknownMode`] (nothing consumed).
    pub fn decode(buf: &mut BytesMut) -> Result<Option<BenchHeader>, BenchError> {
        if buf.len() < BENCH_HEADER_LEN {
            return Ok(None);
        }
        let mode = BenchMode::from_u8(buf[0])?;
        buf.advance(1);
        let len = buf.get_u64();
        Ok(Some(BenchHeader { mode, len }))
    }

    /// Appends exactly [`BENCH_HEADER_LEN`] bytes to `dst`.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u8(self.mode.to_u8());
        dst.put_u64(self.len);
    }

    /// The encoded header.
    pub fn to_bytes(&self) -> bytes::Bytes {
        let mut b = BytesMut::with_capacity(BENCH_HEADER_LEN);
        self.encode(&mut b);
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mode() -> impl Strategy<Value = BenchMode> {
        prop_oneof![
            Just(BenchMode::Sink),
            Just(BenchMode::Source),
            Just(BenchMode::Echo)
        ]
    }

    #[test]
    fn wire_example() {
        let h = BenchHeader::new(BenchMode::Source, 0x0102);
        assert_eq!(&h.to_bytes()[..], b"\x02\0\0\0\0\0\0\x01\x02");
        let mut junk = BytesMut::from(&b"\x07\0\0\0\0\0\0\0\0"[..]);
        assert_eq!(
            BenchHeader::decode(&mut junk),
            Err(BenchError::UnknownMode(7))
        );
        assert_eq!(junk.len(), BENCH_HEADER_LEN, "nothing consumed on error");
    }

    proptest! {
        #[test]
        fn round_trip(m in mode(), len in any::<u64>(), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
            let h = BenchHeader::new(m, len);
            let mut b = BytesMut::new();
            h.encode(&mut b);
            prop_assert_eq!(b.len(), BENCH_HEADER_LEN);
            b.extend_from_slice(&tail);
            prop_assert_eq!(BenchHeader::decode(&mut b), Ok(Some(h)));
            prop_assert_eq!(&b[..], &tail[..]);
        }

        #[test]
        fn prefix_is_incomplete(m in mode(), len in any::<u64>(), at in 0..BENCH_HEADER_LEN) {
            let bytes = BenchHeader::new(m, len).to_bytes();
            let mut b = BytesMut::from(&bytes[..at]);
            prop_assert_eq!(BenchHeader::decode(&mut b), Ok(None));
            prop_assert_eq!(b.len(), at);
        }

        #[test]
        fn junk_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&b[..]);
            match BenchHeader::decode(&mut buf) {
                Ok(Some(_)) => prop_assert_eq!(buf.len() + BENCH_HEADER_LEN, b.len()),
                Ok(None) => prop_assert!(b.len() < BENCH_HEADER_LEN),
                Err(BenchError::UnknownMode(m)) => prop_assert_eq!(m, b[0]),
            }
        }
    }
}
