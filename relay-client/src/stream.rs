//! A client stream: `Open` written, data may follow at once; the answer is
//! read in front of the first downstream byte.

use bytes::Bytes;
use proto::ErrorCode;
use relay_net::answer::{read_answer, AnswerError};
use relay_net::framed::FrameReader;
use relay_net::splice::{read_one, ChunkRead, Failure};

use crate::direct::InUse;
use crate::Side;

/// An accepted stream.
#[derive(Debug)]
pub struct Opened {
    /// Toward the agent.
    pub send: quinn::SendStream,
    /// From the agent.
    pub recv: quinn::RecvStream,
    /// Bytes that arrived right behind `Accepted`.
    pub early: Bytes,
    /// On a direct path, keeps the path up: hold it as long as the stream.
    pub in_use: InUse,
}

/// A receive stream whose first frame is the answer to our `Open`: on
/// `Accepted` it yields the data behind it; on `Refused` it fails with the
/// refusal's code and message, so the splice aborts both ways.
#[derive(Debug)]
pub struct Answered {
    state: State,
    /// Who answers: the relay, or the agent on a direct path.
    peer: Side,
    /// Keeps a direct path up while the stream lives.
    _in_use: InUse,
}

#[derive(Debug)]
enum State {
    Waiting(FrameReader),
    Open(quinn::RecvStream),
    Done,
}

impl Answered {
    /// Wraps the receive half of a stream that has just sent `Open` to the relay.
    pub fn new(recv: quinn::RecvStream) -> Answered {
        Answered::on(recv, Side::Relay, InUse::default())
    }

    /// As [`Answered::new`], for a stream whose other end is `peer` (on a
    /// direct path, `in_use` keeps the path up for it).
    pub fn on(recv: quinn::RecvStream, peer: Side, in_use: InUse) -> Answered {
        Answered {
            state: State::Waiting(FrameReader::new(recv)),
            peer,
            _in_use: in_use,
        }
    }
}

impl ChunkRead for Answered {
    async fn read_chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        if let State::Waiting(reader) = &mut self.state {
            match read_answer(reader, None).await {
                Ok(_) => {
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
                Err(AnswerError::Refused(r)) => return Err(Failure::new(r.code, r.message)),
                Err(e) => {
                    let reason = crate::StreamError {
                        side: self.peer,
                        cause: crate::Cause::Answer(e),
                    };
                    return Err(Failure::new(reason.code(), reason.to_string()));
                }
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
