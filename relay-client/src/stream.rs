//! A client stream: `Open` written, data may follow at once; the answer is
//! read in front of the first downstream byte.

use bytes::Bytes;
use proto::{ErrorCode, Frame};
use relay_net::framed::FrameReader;
use relay_net::splice::{read_one, ChunkRead, Failure};

/// An accepted stream.
#[derive(Debug)]
pub struct Opened {
    /// Toward the agent.
    pub send: quinn::SendStream,
    /// From the agent.
    pub recv: quinn::RecvStream,
    /// Bytes that arrived right behind `Accepted`.
    pub early: Bytes,
}

/// A receive stream whose first frame is the answer to our `Open`: on
/// `Accepted` it yields the data behind it; on `Refused` it fails with the
/// refusal's code and message, so the splice aborts both ways.
#[derive(Debug)]
pub struct Answered {
    state: State,
}

#[derive(Debug)]
enum State {
    Waiting(FrameReader),
    Open(quinn::RecvStream),
    Done,
}

impl Answered {
    /// Wraps the receive half of a stream that has just sent `Open`.
    pub fn new(recv: quinn::RecvStream) -> Answered {
        Answered {
            state: State::Waiting(FrameReader::new(recv)),
        }
    }
}

impl ChunkRead for Answered {
    async fn read_chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        if let State::Waiting(reader) = &mut self.state {
            let failure = Failure::new;
            match reader.read().await {
                Ok(Some(Frame::Accepted(_))) => {
                    let State::Waiting(reader) = std::mem::replace(&mut self.state, State::Done)
                    else {
                        unreachable!("matched Waiting above")
                    };
                    let (recv, early) = reader.into_parts();
                    self.state = State::Open(recv);
                    if !early.is_empty() {
                        return Ok(Some(early));
                    }
                }
                Ok(Some(Frame::Refused(r))) => return Err(failure(r.code, r.message)),
                Ok(Some(other)) => {
                    return Err(failure(
                        ErrorCode::PROTOCOL_VIOLATION,
                        format!("unexpected {} from the relay", other.frame_type()),
                    ))
                }
                Ok(None) => {
                    return Err(failure(
                        ErrorCode::PROTOCOL_VIOLATION,
                        "the relay closed the stream without an answer".into(),
                    ))
                }
                Err(e) => return Err(failure(e.code(), e.to_string())),
            }
        }
        match &mut self.state {
            State::Open(recv) => ChunkRead::read_chunk(recv).await,
            _ => Ok(None),
        }
    }

    async fn read_chunks(&mut self, out: &mut [Bytes]) -> Result<usize, Failure> {
        match &mut self.state {
            State::Open(recv) => ChunkRead::read_chunks(recv, out).await,
            _ => read_one(self, out).await,
        }
    }

    fn abort(&mut self, code: ErrorCode) {
        match &mut self.state {
            State::Waiting(reader) => {
                let _ = reader.recv.stop(code.0.into());
            }
            State::Open(recv) => ChunkRead::abort(recv, code),
            State::Done => {}
        }
    }
}
