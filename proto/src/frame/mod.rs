//! [`Frame`] and [`FrameType`]: the framing shared by every stream.
//!
//! ```text
//! | type: u8 | len: u32 big-endian | payload: len bytes |     len ≤ MAX_FRAME_LEN
//! ```
//!
//! One file per frame type, each with the payload layout in its module doc
//! and the same three functions: `decode(payload)`, `encode(dst)` and
//! `encoded_len()` (of the payload; the header is added here).

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

mod accepted;
mod agent_info;
mod data;
mod direct;
mod eof;
mod exit;
mod forwarded;
mod go_away;
mod grant;
mod list;
mod login_cert;
mod login_hello;
mod login_offer;
mod login_token;
mod open;
mod path;
mod refused;
mod register;
mod registered;
mod resize;
mod signal;

pub use accepted::Accepted;
pub use agent_info::AgentInfo;
pub use data::{Channel, Data};
pub use direct::Direct;
pub use eof::Eof;
pub use exit::Exit;
pub use forwarded::Forwarded;
pub use go_away::GoAway;
pub use grant::{CertSerial, Grant};
pub use list::List;
pub use login_cert::LoginCert;
pub use login_hello::LoginHello;
pub use login_offer::{LoginOffer, ProviderInfo, ProviderKind};
pub use login_token::LoginToken;
pub use open::{Open, StreamKind};
pub use path::Path;
pub use refused::Refused;
pub use register::Register;
pub use registered::Registered;
pub use resize::Resize;
pub use signal::Signal;

/// The largest payload a frame may carry, in bytes (64 KiB).
///
/// Frames are small messages; bulk data on a `Tcp` stream travels as raw
/// bytes after `Accepted`, and a session's [`Data`] is cut into frames of at
/// most this size. The limit bounds what a peer can make us buffer before we
/// can reject it.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// The length of a frame header: type `u8` and length `u32`.
pub const HEADER_LEN: usize = 5;

/// The type byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// [`Register`]: agent → relay, first frame on the control stream.
    Register = 0x01,
    /// [`Registered`]: relay → agent, the registration is accepted.
    Registered = 0x02,
    /// [`GoAway`]: relay → agent, the relay is shutting down.
    GoAway = 0x03,
    /// [`Open`]: client → relay, first frame on a session stream.
    Open = 0x10,
    /// [`Forwarded`]: relay → agent, an `Open` with the caller's identity.
    Forwarded = 0x11,
    /// [`Accepted`]: agent → relay → client, the stream is open.
    Accepted = 0x12,
    /// [`Refused`]: the open (or registration) is refused, with a code.
    Refused = 0x13,
    /// [`Grant`]: relay → agent, a client may use a direct path.
    Grant = 0x14,
    /// [`List`]: client → relay, asks which agents the caller may reach.
    List = 0x20,
    /// [`AgentInfo`]: relay → client, one reachable agent.
    AgentInfo = 0x21,
    /// [`Direct`]: client → relay, asks for a direct path to an agent.
    Direct = 0x22,
    /// [`Path`]: relay → client, the direct path is granted.
    Path = 0x23,
    /// [`Data`]: session bytes on stdin, stdout or stderr.
    Data = 0x30,
    /// [`Eof`]: one channel of a session ended.
    Eof = 0x31,
    /// [`Resize`]: client → agent, the terminal changed size.
    Resize = 0x32,
    /// [`Signal`]: client → agent, signal the session's program.
    Signal = 0x33,
    /// [`Exit`]: agent → client, the session's program ended.
    Exit = 0x34,
    /// [`LoginHello`]: client → relay, a single sign-on begins.
    LoginHello = 0x40,
    /// [`LoginOffer`]: relay → client, the providers and a nonce.
    LoginOffer = 0x41,
    /// [`LoginToken`]: client → relay, a token to exchange.
    LoginToken = 0x42,
    /// [`LoginCert`]: relay → client, the certificate it earned.
    LoginCert = 0x43,
}

impl FrameType {
    /// The frame's name, as in [`Frame`]'s variants (`"Open"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            FrameType::Register => "Register",
            FrameType::Registered => "Registered",
            FrameType::GoAway => "GoAway",
            FrameType::Open => "Open",
            FrameType::Forwarded => "Forwarded",
            FrameType::Accepted => "Accepted",
            FrameType::Refused => "Refused",
            FrameType::Grant => "Grant",
            FrameType::List => "List",
            FrameType::AgentInfo => "AgentInfo",
            FrameType::Direct => "Direct",
            FrameType::Path => "Path",
            FrameType::Data => "Data",
            FrameType::Eof => "Eof",
            FrameType::Resize => "Resize",
            FrameType::Signal => "Signal",
            FrameType::Exit => "Exit",
            FrameType::LoginHello => "LoginHello",
            FrameType::LoginOffer => "LoginOffer",
            FrameType::LoginToken => "LoginToken",
            FrameType::LoginCert => "LoginCert",
        }
    }
}

impl TryFrom<u8> for FrameType {
    type Error = DecodeError;

    /// # Errors
    ///
    /// [`DecodeError::UnknownType`] for a byte no frame type has.
    fn try_from(byte: u8) -> Result<Self, Self::Error> {
        Ok(match byte {
            0x01 => FrameType::Register,
            0x02 => FrameType::Registered,
            0x03 => FrameType::GoAway,
            0x10 => FrameType::Open,
            0x11 => FrameType::Forwarded,
            0x12 => FrameType::Accepted,
            0x13 => FrameType::Refused,
            0x14 => FrameType::Grant,
            0x20 => FrameType::List,
            0x21 => FrameType::AgentInfo,
            0x22 => FrameType::Direct,
            0x23 => FrameType::Path,
            0x30 => FrameType::Data,
            0x31 => FrameType::Eof,
            0x32 => FrameType::Resize,
            0x33 => FrameType::Signal,
            0x34 => FrameType::Exit,
            0x40 => FrameType::LoginHello,
            0x41 => FrameType::LoginOffer,
            0x42 => FrameType::LoginToken,
            0x43 => FrameType::LoginCert,
            _ => return Err(DecodeError::UnknownType(byte)),
        })
    }
}

impl From<FrameType> for u8 {
    fn from(ty: FrameType) -> Self {
        ty as u8
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One protocol message. See the crate docs for which frame goes where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// See [`Register`].
    Register(Register),
    /// See [`Registered`].
    Registered(Registered),
    /// See [`GoAway`].
    GoAway(GoAway),
    /// See [`Open`].
    Open(Open),
    /// See [`Forwarded`].
    Forwarded(Forwarded),
    /// See [`Accepted`].
    Accepted(Accepted),
    /// See [`Refused`].
    Refused(Refused),
    /// See [`Grant`].
    Grant(Grant),
    /// See [`List`].
    List(List),
    /// See [`AgentInfo`].
    AgentInfo(AgentInfo),
    /// See [`Direct`].
    Direct(Direct),
    /// See [`Path`].
    Path(Path),
    /// See [`Data`].
    Data(Data),
    /// See [`Eof`].
    Eof(Eof),
    /// See [`Resize`].
    Resize(Resize),
    /// See [`Signal`].
    Signal(Signal),
    /// See [`Exit`].
    Exit(Exit),
    /// See [`LoginHello`].
    LoginHello(LoginHello),
    /// See [`LoginOffer`].
    LoginOffer(LoginOffer),
    /// See [`LoginToken`].
    LoginToken(LoginToken),
    /// See [`LoginCert`].
    LoginCert(LoginCert),
}

impl Frame {
    /// The frame's type byte.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Register(_) => FrameType::Register,
            Frame::Registered(_) => FrameType::Registered,
            Frame::GoAway(_) => FrameType::GoAway,
            Frame::Open(_) => FrameType::Open,
            Frame::Forwarded(_) => FrameType::Forwarded,
            Frame::Accepted(_) => FrameType::Accepted,
            Frame::Refused(_) => FrameType::Refused,
            Frame::Grant(_) => FrameType::Grant,
            Frame::List(_) => FrameType::List,
            Frame::AgentInfo(_) => FrameType::AgentInfo,
            Frame::Direct(_) => FrameType::Direct,
            Frame::Path(_) => FrameType::Path,
            Frame::Data(_) => FrameType::Data,
            Frame::Eof(_) => FrameType::Eof,
            Frame::Resize(_) => FrameType::Resize,
            Frame::Signal(_) => FrameType::Signal,
            Frame::Exit(_) => FrameType::Exit,
            Frame::LoginHello(_) => FrameType::LoginHello,
            Frame::LoginOffer(_) => FrameType::LoginOffer,
            Frame::LoginToken(_) => FrameType::LoginToken,
            Frame::LoginCert(_) => FrameType::LoginCert,
        }
    }

    /// Decodes one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` and consumes nothing while the frame is incomplete;
    /// the caller reads more bytes and calls again. On success it consumes
    /// exactly the frame, leaving any bytes behind it (e.g. a client's early
    /// data after `Open`) in `buf`.
    ///
    /// # Errors
    ///
    /// - [`DecodeError::UnknownType`] as soon as the first byte is not a frame
    ///   type;
    /// - [`DecodeError::TooLarge`] as soon as the 5-byte header announces more
    ///   than [`MAX_FRAME_LEN`], before any payload is buffered;
    /// - [`DecodeError::Malformed`] if a field breaks its rule or the payload
    ///   has bytes left over; the frame's bytes are consumed.
    ///
    /// After an error the stream is out of sync: reset it or close the
    /// connection with [`DecodeError::code`].
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let Some(&type_byte) = buf.first() else {
            return Ok(None);
        };
        // Reject an unknown type on its first byte: no point waiting for more.
        let ty = FrameType::try_from(type_byte)?;
        let Some(len_bytes) = buf.get(1..HEADER_LEN) else {
            return Ok(None);
        };
        let mut len = [0; 4];
        len.copy_from_slice(len_bytes);
        let len = u32::from_be_bytes(len);
        // Reject an oversize frame from its header alone, so a peer cannot make
        // us buffer more than MAX_FRAME_LEN (DESIGN: "oversize lengths are
        // errors, not allocations").
        let len = match usize::try_from(len) {
            Ok(len) if len <= MAX_FRAME_LEN => len,
            _ => {
                return Err(DecodeError::TooLarge {
                    len: u64::from(len),
                    max: MAX_FRAME_LEN as u64,
                })
            }
        };
        if buf.len() < HEADER_LEN + len {
            // Make room for the rest once, rather than growing in steps.
            buf.reserve(HEADER_LEN + len - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let payload = buf.split_to(len);
        Self::decode_payload(ty, payload).map(Some)
    }

    /// Parses a complete payload of type `ty`.
    fn decode_payload(ty: FrameType, payload: BytesMut) -> Result<Frame, DecodeError> {
        let payload = payload.freeze();
        Ok(match ty {
            FrameType::Register => Frame::Register(Register::decode(&payload)?),
            FrameType::Registered => Frame::Registered(Registered::decode(&payload)?),
            FrameType::GoAway => Frame::GoAway(GoAway::decode(&payload)?),
            FrameType::Open => Frame::Open(Open::decode(&payload)?),
            FrameType::Forwarded => Frame::Forwarded(Forwarded::decode(&payload)?),
            FrameType::Accepted => Frame::Accepted(Accepted::decode(&payload)?),
            FrameType::Refused => Frame::Refused(Refused::decode(&payload)?),
            FrameType::List => Frame::List(List::decode(&payload)?),
            FrameType::AgentInfo => Frame::AgentInfo(AgentInfo::decode(&payload)?),
            FrameType::Direct => Frame::Direct(Direct::decode(&payload)?),
            FrameType::Path => Frame::Path(Path::decode(&payload)?),
            FrameType::Grant => Frame::Grant(Grant::decode(&payload)?),
            // Session bytes keep sharing the receive buffer: no copy.
            FrameType::Data => Frame::Data(Data::decode(payload)?),
            FrameType::Eof => Frame::Eof(Eof::decode(&payload)?),
            FrameType::Resize => Frame::Resize(Resize::decode(&payload)?),
            FrameType::Signal => Frame::Signal(Signal::decode(&payload)?),
            FrameType::Exit => Frame::Exit(Exit::decode(&payload)?),
            FrameType::LoginHello => Frame::LoginHello(LoginHello::decode(&payload)?),
            FrameType::LoginOffer => Frame::LoginOffer(LoginOffer::decode(&payload)?),
            FrameType::LoginToken => Frame::LoginToken(LoginToken::decode(&payload)?),
            FrameType::LoginCert => Frame::LoginCert(LoginCert::decode(&payload)?),
        })
    }

    /// Appends exactly [`encoded_len`](Self::encoded_len) bytes to `dst`.
    ///
    /// Encoding cannot fail. A frame whose payload would exceed
    /// [`MAX_FRAME_LEN`] is a programming error (this version's frames stay
    /// far below it unless a list holds about a thousand names): debug builds
    /// assert, release builds write it and the peer rejects it as
    /// [`DecodeError::TooLarge`]. Check [`payload_len`](Self::payload_len)
    /// first when a frame is built from unbounded input.
    pub fn encode(&self, dst: &mut impl BufMut) {
        let len = self.payload_len();
        debug_assert!(
            len <= MAX_FRAME_LEN,
            "{} frame of {len} bytes exceeds MAX_FRAME_LEN",
            self.frame_type()
        );
        dst.put_u8(self.frame_type().into());
        dst.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        match self {
            Frame::Register(f) => f.encode(dst),
            Frame::Registered(f) => f.encode(dst),
            Frame::GoAway(f) => f.encode(dst),
            Frame::Open(f) => f.encode(dst),
            Frame::Forwarded(f) => f.encode(dst),
            Frame::Accepted(f) => f.encode(dst),
            Frame::Refused(f) => f.encode(dst),
            Frame::List(f) => f.encode(dst),
            Frame::AgentInfo(f) => f.encode(dst),
            Frame::Direct(f) => f.encode(dst),
            Frame::Path(f) => f.encode(dst),
            Frame::Grant(f) => f.encode(dst),
            Frame::Data(f) => f.encode(dst),
            Frame::Eof(f) => f.encode(dst),
            Frame::Resize(f) => f.encode(dst),
            Frame::Signal(f) => f.encode(dst),
            Frame::Exit(f) => f.encode(dst),
            Frame::LoginHello(f) => f.encode(dst),
            Frame::LoginOffer(f) => f.encode(dst),
            Frame::LoginToken(f) => f.encode(dst),
            Frame::LoginCert(f) => f.encode(dst),
        }
    }

    /// The number of bytes [`encode`](Self::encode) writes: header plus payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// The payload's length alone; a frame can be sent only if this is at
    /// most [`MAX_FRAME_LEN`].
    pub fn payload_len(&self) -> usize {
        match self {
            Frame::Register(f) => f.encoded_len(),
            Frame::Registered(f) => f.encoded_len(),
            Frame::GoAway(f) => f.encoded_len(),
            Frame::Open(f) => f.encoded_len(),
            Frame::Forwarded(f) => f.encoded_len(),
            Frame::Accepted(f) => f.encoded_len(),
            Frame::Refused(f) => f.encoded_len(),
            Frame::List(f) => f.encoded_len(),
            Frame::AgentInfo(f) => f.encoded_len(),
            Frame::Direct(f) => f.encoded_len(),
            Frame::Path(f) => f.encoded_len(),
            Frame::Grant(f) => f.encoded_len(),
            Frame::Data(f) => f.encoded_len(),
            Frame::Eof(f) => f.encoded_len(),
            Frame::Resize(f) => f.encoded_len(),
            Frame::Signal(f) => f.encoded_len(),
            Frame::Exit(f) => f.encoded_len(),
            Frame::LoginHello(f) => f.encoded_len(),
            Frame::LoginOffer(f) => f.encoded_len(),
            Frame::LoginToken(f) => f.encoded_len(),
            Frame::LoginCert(f) => f.encoded_len(),
        }
    }

    /// Encodes the frame into a new buffer of exactly
    /// [`encoded_len`](Self::encoded_len) bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_types_round_trip_through_their_byte() {
        for byte in 0..=u8::MAX {
            match FrameType::try_from(byte) {
                Ok(ty) => assert_eq!(u8::from(ty), byte),
                Err(err) => assert_eq!(err, DecodeError::UnknownType(byte)),
            }
        }
    }

    #[test]
    fn decode_waits_for_the_whole_frame_and_leaves_the_rest() {
        // GoAway { reconnect_in_ms: 258 } followed by two early bytes.
        let wire = [0x03, 0, 0, 0, 4, 0, 0, 1, 2, 0xaa, 0xbb];
        for end in 0..HEADER_LEN + 4 {
            let mut buf = BytesMut::from(&wire[..end]);
            assert_eq!(Frame::decode(&mut buf), Ok(None));
            assert_eq!(&buf[..], &wire[..end]);
        }
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            Frame::decode(&mut buf),
            Ok(Some(Frame::GoAway(GoAway {
                reconnect_in_ms: 258
            })))
        );
        assert_eq!(&buf[..], &[0xaa, 0xbb]);
    }

    #[test]
    fn header_errors_come_before_buffering() {
        let mut buf = BytesMut::from(&[0x7f][..]);
        assert_eq!(Frame::decode(&mut buf), Err(DecodeError::UnknownType(0x7f)));
        let mut buf = BytesMut::from(&[0x10, 0, 1, 0, 1][..]);
        assert_eq!(
            Frame::decode(&mut buf),
            Err(DecodeError::TooLarge {
                len: 65537,
                max: 65536
            })
        );
        assert_eq!(
            DecodeError::UnknownType(0x7f).to_string(),
            "unknown frame type 0x7f"
        );
    }

    #[test]
    fn a_bad_payload_is_consumed_and_reported() {
        // Accepted with one payload byte, then a valid List.
        let mut buf = BytesMut::from(&[0x12, 0, 0, 0, 1, 0, 0x20, 0, 0, 0, 0][..]);
        let err = Frame::decode(&mut buf).unwrap_err();
        assert_eq!(err.to_string(), "malformed Accepted frame: trailing bytes");
        assert_eq!(err.code(), crate::ErrorCode::PROTOCOL_VIOLATION);
        assert_eq!(Frame::decode(&mut buf), Ok(Some(Frame::List(List))));
    }
}
