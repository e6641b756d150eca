//! What the relay and a client say to each other in QUIC datagrams: a
//! liveness probe and its answer, and the relay's notice that it is going
//! away (a client accepts no streams, so the notice cannot come on one).
//! Datagrams are unreliable; the sender repeats what must arrive.
//!
//! ```text
//! | kind: u8 | value: u64 |   1 Ping (nonce) · 2 Pong (the Ping's nonce) · 3 GoAway (reconnect_in_ms)
//! ```

use thiserror::Error;

/// One datagram between a client and the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datagram {
    /// Client → relay: are you there? Answered by a [`Datagram::Pong`].
    Ping(u64),
    /// Relay → client: the answer to the [`Datagram::Ping`] with this nonce.
    Pong(u64),
    /// Relay → client: this relay is shutting down; open new streams
    /// through another relay (or this one again after `reconnect_in_ms`).
    /// Streams already open are served until they end or the relay's grace
    /// period does.
    GoAway {
        /// When the client may dial this relay again.
        reconnect_in_ms: u32,
    },
}

/// Bytes that are not a [`Datagram`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("malformed datagram: {0}")]
pub struct DatagramError(&'static str);

/// The size of every encoded [`Datagram`].
pub const DATAGRAM_LEN: usize = 9;

impl Datagram {
    /// The wire form.
    pub fn encode(&self) -> [u8; DATAGRAM_LEN] {
        let (kind, value) = match *self {
            Datagram::Ping(nonce) => (1, nonce),
            Datagram::Pong(nonce) => (2, nonce),
            Datagram::GoAway { reconnect_in_ms } => (3, u64::from(reconnect_in_ms)),
        };
        let mut out = [0; DATAGRAM_LEN];
        out[0] = kind;
        out[1..].copy_from_slice(&value.to_be_bytes());
        out
    }

    /// Parses one datagram.
    ///
    /// # Errors
    /// A wrong length, an unknown kind, or a `GoAway` delay beyond `u32`.
    pub fn decode(bytes: &[u8]) -> Result<Datagram, DatagramError> {
        let [kind, rest @ ..] = bytes else {
            return Err(DatagramError("empty"));
        };
        let value: [u8; 8] = rest
            .try_into()
            .map_err(|_| DatagramError("not 9 bytes long"))?;
        let value = u64::from_be_bytes(value);
        match kind {
            1 => Ok(Datagram::Ping(value)),
            2 => Ok(Datagram::Pong(value)),
            3 => u32::try_from(value)
                .map(|reconnect_in_ms| Datagram::GoAway { reconnect_in_ms })
                .map_err(|_| DatagramError("GoAway delay beyond u32")),
            _ => Err(DatagramError("unknown kind")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_datagram() -> impl Strategy<Value = Datagram> {
        prop_oneof![
            any::<u64>().prop_map(Datagram::Ping),
            any::<u64>().prop_map(Datagram::Pong),
            any::<u32>().prop_map(|reconnect_in_ms| Datagram::GoAway { reconnect_in_ms }),
        ]
    }

    #[test]
    fn wire_example() {
        let ping = Datagram::Ping(0x0102_0304_0506_0708);
        assert_eq!(ping.encode(), *b"\x01\x01\x02\x03\x04\x05\x06\x07\x08");
        let away = Datagram::GoAway {
            reconnect_in_ms: 1000,
        };
        assert_eq!(away.encode(), *b"\x03\x00\x00\x00\x00\x00\x00\x03\xe8");
        assert_eq!(Datagram::decode(&away.encode()), Ok(away));
    }

    #[test]
    fn rejects_what_is_not_a_datagram() {
        assert!(Datagram::decode(b"").is_err());
        assert!(Datagram::decode(b"\x01\x00").is_err());
        assert!(Datagram::decode(b"\x04\x00\x00\x00\x00\x00\x00\x00\x00").is_err());
        assert!(Datagram::decode(b"\x03\x00\x00\x00\x01\x00\x00\x00\x00").is_err());
    }

    proptest! {
        #[test]
        fn round_trips(d in any_datagram()) {
            prop_assert_eq!(Datagram::decode(&d.encode()), Ok(d));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = Datagram::decode(&bytes);
        }
    }
}
