//! The proxy's answer to CONNECT: its header block, read off the socket
//! without one byte of the tunnel behind it, and its status line.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::MAX_HEAD;

/// Why the answer's header block could not be read.
#[derive(Debug)]
pub(super) enum HeadError {
    Closed,
    Io(std::io::Error),
    Malformed(String),
}

impl From<std::io::Error> for HeadError {
    fn from(e: std::io::Error) -> HeadError {
        HeadError::Io(e)
    }
}

/// Reads the answer's header block, up to and including its empty line,
/// and nothing after it: each chunk is peeked, and only the part that
/// belongs to the header block is then read off the socket.
pub(super) async fn read_head(tcp: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = vec![0u8; 2048];
    loop {
        let n = tcp.peek(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let before = head.len();
        head.extend_from_slice(&chunk[..n]);
        // The empty line may straddle two chunks: look from just before this one.
        let from = before.saturating_sub(2);
        if let Some(end) = head_end(&head[from..]).map(|e| from + e) {
            head.truncate(end);
            tcp.read_exact(&mut chunk[..end - before]).await?;
            return Ok(head);
        }
        tcp.read_exact(&mut chunk[..n]).await?;
        if head.len() >= MAX_HEAD {
            return Err(HeadError::Malformed(format!(
                "no end of its header block in {MAX_HEAD} bytes"
            )));
        }
    }
}

/// Where the header block in `buf` ends (just after its empty line,
/// `\r\n\r\n`, or `\n\n` from a lax proxy).
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match buf.get(i + 1..) {
            Some([b'\n', ..]) => Some(i + 2),
            Some([b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        }
    })
}

/// A response's status: its code and reason phrase.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Status {
    pub(super) code: u16,
    pub(super) reason: String,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {}", self.code, self.reason)
        }
    }
}

/// The status line of `head` (RFC 9112 §4): `HTTP/1.x SP code SP reason`.
/// The reason is what the proxy wrote, cut to printable ASCII and 100
/// characters, since it ends up in our messages.
pub(super) fn parse_status(head: &[u8]) -> Result<Status, HeadError> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let shown = || printable(line, 60);
    let rest = line
        .strip_prefix(b"HTTP/1.")
        .filter(|r| r.first().is_some_and(u8::is_ascii_digit))
        .map(|r| &r[1..])
        .ok_or_else(|| HeadError::Malformed(format!("no HTTP/1.x status line: {:?}", shown())))?;
    let bad_code = || HeadError::Malformed(format!("no status code: {:?}", shown()));
    let rest = rest.strip_prefix(b" ").ok_or_else(bad_code)?;
    let (code, reason) = match rest.get(..3) {
        Some(code) if code.iter().all(u8::is_ascii_digit) => (code, &rest[3..]),
        _ => return Err(bad_code()),
    };
    if !reason.is_empty() && reason[0] != b' ' {
        return Err(bad_code());
    }
    let code = std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad_code)?;
    Ok(Status {
        code,
        reason: printable(reason, 100).trim().to_owned(),
    })
}

/// `bytes` as text fit for a message: printable ASCII only, at most `max` characters.
fn printable(bytes: &[u8], max: usize) -> String {
    bytes
        .iter()
        .take(max)
        .map(|&b| {
            if b == b' ' || b.is_ascii_graphic() {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}
