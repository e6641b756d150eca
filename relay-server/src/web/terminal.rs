//! A shell the web page opened: the agent's stream, held by the relay, so
//! the shell outlives the page's WebSocket. A closed tab or a lost network
//! detaches the page; the shell runs on, its output kept in a bounded
//! buffer, and a page that comes back within the resume window re-attaches
//! where it left off (it says how many output bytes it has; no byte is sent
//! twice, none skipped while the buffer holds them).
//!
//! The buffer is here, not on the agent: the relay is where the browser
//! comes back to, the agent's protocol stays as the CLI uses it, and the
//! relay already holds the stream. A relay that restarts ends its
//! terminals (as it ends every stream through it).
//!
//! ```text
//! agent ─Data─▶ reader task ─▶ Output (ring, absolute offsets) ─▶ attached page (WebSocket)
//! page ─keys, resize─▶ input queue ─▶ send_frames ─▶ agent
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::{Channel, Exit, Frame};
use relay_net::framed::FrameReader;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::session::WebSession;

/// Output bytes kept per terminal for a page that re-attaches.
pub(crate) const BUFFER: usize = 1 << 20;

/// How a terminal ended.
#[derive(Clone, Debug)]
pub(crate) enum Ended {
    /// The program exited.
    Exit(Exit),
    /// Anything else: revoked, signed out, agent lost, never re-attached.
    Other(String),
}

/// What the reader has put out, and who reads it.
#[derive(Debug, Default)]
struct Output {
    /// The last [`BUFFER`] bytes at most.
    ring: VecDeque<u8>,
    /// The offset of `ring[0]` in the whole output.
    start: u64,
    /// How far the attached page has been sent, if one is attached: the
    /// reader waits rather than drop what it has not seen.
    sent: Option<u64>,
    /// The end, once known.
    ended: Option<Ended>,
    /// When the last page left (for the resume window); `None` while attached.
    detached: Option<Instant>,
    /// The attached page, if one is.
    attachment: Option<Attachment>,
    /// Pages attached so far (numbers attachments).
    attachments: u64,
}

impl Output {
    fn end(&self) -> u64 {
        self.start + self.ring.len() as u64
    }
}

/// One shell opened from the web page.
#[derive(Debug)]
pub(crate) struct Terminal {
    /// Its id, which the page re-attaches with.
    pub(crate) id: String,
    /// The agent it runs on.
    pub(crate) agent: proto::AgentName,
    /// The sign-in that opened it: only it may attach.
    pub(crate) session: Arc<WebSession>,
    /// Frames to the agent (keys, resizes).
    pub(crate) input: mpsc::Sender<Frame>,
    output: Mutex<Output>,
    /// Wakes whoever waits on `output`.
    changed: Notify,
    /// Cancelled to hang the program up (reset the agent's stream).
    pub(crate) hang_up: CancellationToken,
    /// Who watches it now (identities, one entry per watching page).
    watchers: Mutex<Vec<String>>,
}

impl Terminal {
    /// A terminal on `agent`'s stream, detached until a page attaches.
    pub(crate) fn new(
        id: String,
        agent: proto::AgentName,
        session: Arc<WebSession>,
        input: mpsc::Sender<Frame>,
    ) -> Terminal {
        Terminal {
            id,
            agent,
            session,
            input,
            output: Mutex::new(Output {
                detached: Some(Instant::now()),
                ..Output::default()
            }),
            changed: Notify::new(),
            hang_up: CancellationToken::new(),
            watchers: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies the agent's frames into the buffer until the program exits or
    /// the stream fails; returns the output bytes read.
    pub(crate) async fn read_agent(&self, mut agent: FrameReader) -> (u64, Ended) {
        let mut total = 0u64;
        loop {
            let frame = tokio::select! {
                frame = agent.read() => frame,
                () = self.hang_up.cancelled() => return (total, self.ended_or("hung up")),
            };
            match frame {
                Ok(Some(Frame::Data(d))) if d.channel != Channel::Stdin => {
                    total += d.bytes.len() as u64;
                    self.put(&d.bytes).await;
                }
                Ok(Some(Frame::Eof(_))) => {}
                Ok(Some(Frame::Exit(exit))) => {
                    self.finish(Ended::Exit(exit));
                    return (total, Ended::Exit(exit));
                }
                Ok(Some(other)) => {
                    let why = format!("the agent sent {:?} in a shell", other.frame_type());
                    return (total, self.finish(Ended::Other(why)));
                }
                Ok(None) => {
                    return (
                        total,
                        self.finish(Ended::Other(
                            "the agent ended the shell without an exit status".into(),
                        )),
                    );
                }
                Err(e) => {
                    return (
                        total,
                        self.finish(Ended::Other(format!("the agent's stream failed: {e}"))),
                    );
                }
            }
        }
    }

    /// Appends output; while a page is attached and behind by a whole
    /// buffer, waits for it (the agent's stream then slows the program), and
    /// while none is, drops the oldest bytes.
    async fn put(&self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let waiting = {
                let mut out = self.lock();
                let room = match out.sent {
                    Some(sent) => BUFFER.saturating_sub((out.end() - sent) as usize),
                    None => bytes.len(),
                };
                if room > 0 {
                    let n = room.min(bytes.len());
                    out.ring.extend(&bytes[..n]);
                    bytes = &bytes[n..];
                    while out.ring.len() > BUFFER {
                        let over = out.ring.len() - BUFFER;
                        out.ring.drain(..over);
                        out.start += over as u64;
                    }
                    None
                } else {
                    Some(self.changed.notified())
                }
            };
            self.changed.notify_waiters();
            if let Some(waiting) = waiting {
                tokio::select! {
                    () = waiting => {}
                    () = self.hang_up.cancelled() => return,
                }
            }
        }
    }

    /// Records how the terminal ended (the first reason wins).
    pub(crate) fn finish(&self, ended: Ended) -> Ended {
        let ended = self.lock().ended.get_or_insert(ended).clone();
        self.changed.notify_waiters();
        ended
    }

    fn ended_or(&self, why: &str) -> Ended {
        self.finish(Ended::Other(why.to_owned()))
    }

    /// Attaches a page that has `from` bytes of output; a page attached
    /// before is detached (its token cancelled). Returns the attachment
    /// (to detach with) and where its output starts: later than `from` when
    /// the buffer no longer holds those bytes.
    pub(crate) fn attach(&self, from: u64) -> (Attachment, u64) {
        let mut out = self.lock();
        out.attachments += 1;
        let attachment = Attachment {
            number: out.attachments,
            gone: CancellationToken::new(),
        };
        if let Some(old) = out.attachment.replace(attachment.clone()) {
            old.gone.cancel();
        }
        let from = from.clamp(out.start, out.end());
        out.sent = Some(from);
        out.detached = None;
        drop(out);
        self.changed.notify_waiters();
        (attachment, from)
    }

    /// Detaches `attachment`, unless a newer page took its place.
    pub(crate) fn detach(&self, attachment: &Attachment) {
        let mut out = self.lock();
        if out
            .attachment
            .as_ref()
            .is_some_and(|a| a.number == attachment.number)
        {
            out.attachment = None;
            out.sent = None;
            out.detached = Some(Instant::now());
        }
        drop(out);
        self.changed.notify_waiters();
    }

    /// The output from `from` on, as it comes, for the attached page:
    /// waits until there is some; marks it sent. `Err` once the terminal
    /// ended and all was read.
    pub(crate) async fn next_output(&self, from: u64) -> Result<Bytes, Ended> {
        self.output_from(from, true).await
    }

    /// As [`Terminal::next_output`], for someone watching: the attached
    /// page never waits for a watcher, so a slow one may miss bytes (the
    /// output then resumes where the buffer starts). Gives the offset of
    /// the bytes too.
    pub(crate) async fn watched_output(&self, from: u64) -> Result<(u64, Bytes), Ended> {
        let from = from.max(self.lock().start);
        self.output_from(from, false).await.map(|b| (from, b))
    }

    async fn output_from(&self, from: u64, attached: bool) -> Result<Bytes, Ended> {
        loop {
            let waiting = {
                let mut out = self.lock();
                if from < out.end() {
                    let skip = (from.max(out.start) - out.start) as usize;
                    let chunk: Vec<u8> = out.ring.range(skip..).take(64 << 10).copied().collect();
                    if attached {
                        out.sent = Some(out.start + (skip + chunk.len()) as u64);
                        drop(out);
                        self.changed.notify_waiters();
                    }
                    return Ok(Bytes::from(chunk));
                }
                if let Some(ended) = &out.ended {
                    return Err(ended.clone());
                }
                self.changed.notified()
            };
            waiting.await;
        }
    }

    /// Adds a watcher (`client/bob`); the attached page is told.
    pub(crate) fn watched_by(&self, who: &str) {
        self.watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(who.to_owned());
        self.changed.notify_waiters();
    }

    /// Removes one watcher entry of `who`.
    pub(crate) fn unwatched_by(&self, who: &str) {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = watchers.iter().position(|w| w == who) {
            watchers.remove(at);
        }
        drop(watchers);
        self.changed.notify_waiters();
    }

    /// Who watches now, each once.
    pub(crate) fn watchers(&self) -> Vec<String> {
        let mut all = self
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        all.sort();
        all.dedup();
        all
    }

    /// Waits until something changes (output, attachment, watchers).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// How long it has been detached, if it is.
    pub(crate) fn detached_for(&self) -> Option<Duration> {
        self.lock().detached.map(|at| at.elapsed())
    }
}

/// One page's hold on a terminal.
#[derive(Clone, Debug)]
pub(crate) struct Attachment {
    number: u64,
    /// Cancelled when another page attaches in its place.
    pub(crate) gone: CancellationToken,
}
