//! The answer to a request that opens something (`Open`, `Grant`): the peer
//! sends `Accepted` or `Refused` as the first frame back (DESIGN
//! "Protocol"). One reader, so every caller tells the same cases apart.

use std::time::Duration;

use proto::{Accepted, ErrorCode, Frame, FrameType, Refused};

use crate::framed::{FrameError, FrameReader};

/// Why an answer was not `Accepted`.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The peer refused, with its code and message.
    #[error("{0}")]
    Refused(Refused),
    /// The peer answered with a frame that is not an answer.
    #[error("answered {0} instead of Accepted or Refused")]
    Unexpected(FrameType),
    /// The peer finished the stream without answering.
    #[error("ended the stream without an answer")]
    NoAnswer,
    /// The answer could not be read: a bad frame, a reset stream, a lost
    /// connection, or no answer in time.
    #[error(transparent)]
    Read(#[from] FrameError),
}

impl AnswerError {
    /// The code to reset the stream (or to refuse further back) with.
    pub fn code(&self) -> ErrorCode {
        match self {
            AnswerError::Refused(r) => r.code,
            AnswerError::Unexpected(_) | AnswerError::NoAnswer => ErrorCode::PROTOCOL_VIOLATION,
            AnswerError::Read(e) => e.code(),
        }
    }
}

/// Reads the answer at the front of `reader`, waiting at most `within` if
/// given. On `Accepted`, the bytes that came right behind it stay in the
/// reader's buffer (early data).
///
/// # Errors
/// A refusal, an unexpected frame, an end without answer, or a failed read
/// (`FrameError::Timeout` once `within` has passed).
///
/// # Cancel safety
/// Cancel safe, as [`FrameReader::read`].
pub async fn read_answer(
    reader: &mut FrameReader,
    within: Option<Duration>,
) -> Result<Accepted, AnswerError> {
    let frame = match within {
        None => reader.read().await?,
        Some(limit) => tokio::time::timeout(limit, reader.read())
            .await
            .map_err(|_| FrameError::Timeout(limit))??,
    };
    match frame {
        Some(Frame::Accepted(accepted)) => Ok(accepted),
        Some(Frame::Refused(refused)) => Err(AnswerError::Refused(refused)),
        Some(other) => Err(AnswerError::Unexpected(other.frame_type())),
        None => Err(AnswerError::NoAnswer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_case_has_its_code_and_words() {
        let refused = AnswerError::Refused(Refused::new(ErrorCode::TARGET_REFUSED, "no"));
        assert_eq!(refused.code(), ErrorCode::TARGET_REFUSED);
        let odd = AnswerError::Unexpected(FrameType::List);
        assert_eq!(odd.code(), ErrorCode::PROTOCOL_VIOLATION);
        assert_eq!(
            odd.to_string(),
            format!(
                "answered {} instead of Accepted or Refused",
                FrameType::List
            )
        );
        assert_eq!(AnswerError::NoAnswer.code(), ErrorCode::PROTOCOL_VIOLATION);
        assert_eq!(
            AnswerError::NoAnswer.to_string(),
            "ended the stream without an answer"
        );
        let late = AnswerError::Read(FrameError::Timeout(Duration::from_secs(3)));
        assert_eq!(late.code(), ErrorCode::LIMIT_EXCEEDED);
    }
}
