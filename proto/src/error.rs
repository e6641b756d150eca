//! [`DecodeError`]: why bytes from a peer are not a valid frame.

use crate::code::ErrorCode;
use crate::frame::FrameType;

/// Why [`Frame::decode`](crate::Frame::decode) rejected its input.
///
/// Every variant is the peer's fault: the receiver resets the stream or closes
/// the connection with [`DecodeError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix exceeds [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN).
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The payload length the header announced.
        len: u64,
        /// The limit, [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN).
        max: u64,
    },
    /// The type byte is not an assigned [`FrameType`].
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// A field holds a value the protocol does not allow, or the payload is
    /// too short or too long for its fields.
    #[error("malformed {frame} frame: {reason}")]
    Malformed {
        /// The frame being decoded.
        frame: FrameType,
        /// The rule the payload breaks.
        reason: &'static str,
    },
}

impl DecodeError {
    /// The code to reset the stream or close the connection with.
    ///
    /// Always [`ErrorCode::PROTOCOL_VIOLATION`]: an oversize frame is a broken
    /// peer, not a limit a well-behaved peer could reach.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::PROTOCOL_VIOLATION
    }
}
