//! `OPEN` (type 0x10): first frame on a client's stream; asks for `agent/target` of `kind`.
//!
//! ```text
//! | agent: name | target: name | kind: u8 | kind fields… |
//!
//! kind 0 Tcp:   (no fields)
//! kind 1 Shell: | term: len u8 + ASCII 0x21..=0x7e (≤ 64) | cols: u16 | rows: u16 |
//!               | count: u16 (≥ 0) | arg: string16 × count |   (no NUL in an arg)
//! kind 2 Exec:  | count: u16 (≥ 1) | arg: string16 × count |   (no NUL in an arg)
//! kind 3 Socks: | destination |   (see crate::Destination: type u8, host, port u16)
//! ```
//!
//! A `Socks` stream carries raw bytes after `Accepted`, as `Tcp` does; its
//! `target` names the kind (`socks`): the destination is chosen by the
//! caller and checked by the agent against its `--allow-socks` rules.
//!
//! After `Accepted`, `Shell` and `Exec` streams carry session frames
//! ([`Data`](crate::Data), [`Eof`](crate::Eof), [`Resize`](crate::Resize),
//! [`Signal`](crate::Signal), [`Exit`](crate::Exit)); the `target` of such
//! an `Open` is not a dialled target and by convention names the kind
//! (`shell`, `exec`).
//!
//! ```text
//! ```
//!
//! The same fields follow the caller in [`Forwarded`](crate::Forwarded).

use std::fmt;

use bytes::BufMut;

use super::{Frame, FrameType};
use crate::capabilities::Capabilities;
use crate::codec::{list_len, name_len, put_list, put_name, put_string16, string16_len, Reader};
use crate::destination::Destination;
use crate::error::DecodeError;
use crate::name::{AgentName, TargetName};

/// A request to reach `target` on `agent`. The relay adds the caller's
/// identity before forwarding it to the agent.
///
/// The client may send the stream's first bytes right behind this frame
/// without waiting for [`Accepted`](crate::Accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The agent (pool) to reach.
    pub agent: AgentName,
    /// The target on that agent.
    pub target: TargetName,
    /// What the stream carries.
    pub kind: StreamKind,
}

/// What a stream carries once accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamKind {
    /// Raw bytes both ways to a TCP target (wire 0).
    Tcp,
    /// An interactive terminal (wire 1).
    Shell {
        /// The `TERM` value, 0 to [`StreamKind::MAX_TERM_LEN`] visible ASCII
        /// characters (`0x21..=0x7e`); empty means the agent's default.
        term: String,
        /// Terminal width in columns.
        cols: u16,
        /// Terminal height in rows.
        rows: u16,
        /// A program to run on the terminal instead of the agent's shell
        /// (`relay-client shell AGENT -- htop`); empty for the shell. Same
        /// rule as [`StreamKind::Exec`]'s `argv`: no NUL byte.
        argv: Vec<String>,
    },
    /// One command, run without a shell (wire 2).
    Exec {
        /// The program and its arguments: at least one element, none with a
        /// NUL byte (it could not be passed to `execve`).
        argv: Vec<String>,
    },
    /// Raw bytes both ways to a destination the caller chose, resolved and
    /// checked by the agent (wire 3): a SOCKS5 CONNECT.
    Socks {
        /// Host (IP or domain name) and port.
        dest: Destination,
    },
    /// A session recording on the agent, read only (wire 4): the list of
    /// them when `name` is empty (JSON lines), else that recording's bytes.
    Recording {
        /// A file name in the agent's recordings folder: 1 to
        /// [`StreamKind::MAX_RECORDING_NAME`] bytes of `A-Z a-z 0-9 . _ -`,
        /// not starting with a dot (no path, no `..`); or empty.
        name: String,
    },
}

impl StreamKind {
    /// The longest `term` in a [`StreamKind::Shell`], in bytes.
    pub const MAX_TERM_LEN: usize = 64;

    const TCP: u8 = 0;
    const SHELL: u8 = 1;
    const EXEC: u8 = 2;
    const SOCKS: u8 = 3;
    const RECORDING: u8 = 4;

    /// The longest recording name, in bytes.
    pub const MAX_RECORDING_NAME: usize = 255;

    /// Whether `name` may name a recording: a plain file name (see
    /// [`StreamKind::Recording`]), or empty for the list.
    pub fn is_recording_name(name: &str) -> bool {
        name.is_empty()
            || (name.len() <= Self::MAX_RECORDING_NAME
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    }

    /// The kind's name in logs and policy: `tcp`, `shell`, `exec` or `socks`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            StreamKind::Tcp => "tcp",
            StreamKind::Shell { .. } => "shell",
            StreamKind::Exec { .. } => "exec",
            StreamKind::Socks { .. } => "socks",
            StreamKind::Recording { .. } => "recording",
        }
    }

    /// The capability a peer needs to serve this kind.
    pub const fn capability(&self) -> Capabilities {
        match self {
            StreamKind::Tcp => Capabilities::TCP,
            StreamKind::Shell { .. } => Capabilities::SHELL,
            StreamKind::Exec { .. } => Capabilities::EXEC,
            StreamKind::Socks { .. } => Capabilities::SOCKS,
            StreamKind::Recording { .. } => Capabilities::RECORDINGS,
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.read_u8()? {
            Self::TCP => Ok(StreamKind::Tcp),
            Self::SHELL => {
                let len = usize::from(r.read_u8()?);
                // Rule: TERM is at most 64 visible ASCII characters, so it is
                // safe to put in the environment and in a log line as is.
                if len > Self::MAX_TERM_LEN {
                    return Err(r.malformed("term longer than 64 bytes"));
                }
                let term = r.bytes(len)?;
                if !term.iter().all(u8::is_ascii_graphic) {
                    return Err(r.malformed("term is not visible ascii"));
                }
                let term = String::from_utf8_lossy(term).into_owned();
                let cols = r.read_u16()?;
                let rows = r.read_u16()?;
                let argv = Self::read_argv(r)?;
                Ok(StreamKind::Shell {
                    term,
                    cols,
                    rows,
                    argv,
                })
            }
            Self::EXEC => {
                let argv = Self::read_argv(r)?;
                // Rule: argv[0] names the program, so it must exist.
                if argv.is_empty() {
                    return Err(r.malformed("exec argv is empty"));
                }
                Ok(StreamKind::Exec { argv })
            }
            Self::SOCKS => Ok(StreamKind::Socks {
                dest: Destination::read(r)?,
            }),
            Self::RECORDING => {
                let name = r.read_string16()?;
                // Rule: a plain file name, so it cannot leave the folder.
                if !Self::is_recording_name(&name) {
                    return Err(r.malformed("a recording name is a plain file name"));
                }
                Ok(StreamKind::Recording { name })
            }
            _ => Err(r.malformed("unknown stream kind")),
        }
    }

    fn read_argv(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
        r.read_list(|r| {
            let arg = r.read_string16()?;
            // Rule: no NUL, which execve cannot pass.
            if arg.contains('\0') {
                return Err(r.malformed("exec argument contains a nul byte"));
            }
            Ok(arg)
        })
    }

    /// The command of a `Shell` or `Exec` (empty for `Tcp` and a plain
    /// shell), each argument single-quoted when it is not plain, for logs
    /// and audit lines: `sh -c 'echo hi'`.
    pub fn command_line(&self) -> String {
        let argv: &[String] = match self {
            StreamKind::Tcp | StreamKind::Socks { .. } | StreamKind::Recording { .. } => &[],
            StreamKind::Shell { argv, .. } | StreamKind::Exec { argv } => argv,
        };
        let quote = |arg: &String| {
            let plain = !arg.is_empty()
                && arg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', "'\\''"))
            }
        };
        argv.iter().map(quote).collect::<Vec<_>>().join(" ")
    }

    fn encode(&self, dst: &mut impl BufMut) {
        match self {
            StreamKind::Tcp => dst.put_u8(Self::TCP),
            StreamKind::Shell {
                term,
                cols,
                rows,
                argv,
            } => {
                debug_assert!(
                    term.len() <= Self::MAX_TERM_LEN,
                    "term of {} bytes",
                    term.len()
                );
                dst.put_u8(Self::SHELL);
                dst.put_u8(u8::try_from(term.len()).unwrap_or(u8::MAX));
                dst.put_slice(term.as_bytes());
                dst.put_u16(*cols);
                dst.put_u16(*rows);
                put_list(dst, argv, |dst, arg| put_string16(dst, arg));
            }
            StreamKind::Exec { argv } => {
                dst.put_u8(Self::EXEC);
                put_list(dst, argv, |dst, arg| put_string16(dst, arg));
            }
            StreamKind::Socks { dest } => {
                dst.put_u8(Self::SOCKS);
                dest.encode(dst);
            }
            StreamKind::Recording { name } => {
                dst.put_u8(Self::RECORDING);
                put_string16(dst, name);
            }
        }
    }

    fn encoded_len(&self) -> usize {
        1 + match self {
            StreamKind::Tcp => 0,
            StreamKind::Shell { term, argv, .. } => {
                1 + term.len() + 2 + 2 + list_len(argv, |arg| string16_len(arg))
            }
            StreamKind::Exec { argv } => list_len(argv, |arg| string16_len(arg)),
            StreamKind::Socks { dest } => dest.encoded_len(),
            StreamKind::Recording { name } => string16_len(name),
        }
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Open {
    /// Reads the fields of an `Open`, here or inside a `Forwarded`.
    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let agent = AgentName::from(r.read_name()?);
        let target = TargetName::from(r.read_name()?);
        let kind = StreamKind::read(r)?;
        Ok(Self {
            agent,
            target,
            kind,
        })
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(FrameType::Open, payload);
        let open = Self::read(&mut r)?;
        r.finish()?;
        Ok(open)
    }

    pub(crate) fn encode(&self, dst: &mut impl BufMut) {
        put_name(dst, self.agent.as_name());
        put_name(dst, self.target.as_name());
        self.kind.encode(dst);
    }

    pub(crate) fn encoded_len(&self) -> usize {
        name_len(self.agent.as_name()) + name_len(self.target.as_name()) + self.kind.encoded_len()
    }
}

impl From<Open> for Frame {
    fn from(frame: Open) -> Self {
        Frame::Open(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn open(kind: StreamKind) -> Frame {
        Frame::from(Open {
            agent: "edge".parse().unwrap(),
            target: "kube".parse().unwrap(),
            kind,
        })
    }

    fn malformed(reason: &'static str) -> Result<Open, DecodeError> {
        Err(DecodeError::Malformed {
            frame: FrameType::Open,
            reason,
        })
    }

    #[test]
    fn wire_examples() {
        let cases: [(StreamKind, &[u8]); 3] = [
            (StreamKind::Tcp, b"\x10\x00\x00\x00\x0b\x04edge\x04kube\x00"),
            (
                StreamKind::Shell {
                    term: "xterm".into(),
                    cols: 80,
                    rows: 24,
                    argv: vec![],
                },
                b"\x10\x00\x00\x00\x17\x04edge\x04kube\x01\x05xterm\x00\x50\x00\x18\x00\x00",
            ),
            (
                StreamKind::Exec {
                    argv: vec!["ls".into(), "".into()],
                },
                b"\x10\x00\x00\x00\x13\x04edge\x04kube\x02\x00\x02\x00\x02ls\x00\x00",
            ),
        ];
        for (kind, wire) in cases {
            let frame = open(kind);
            assert_eq!(&frame.to_bytes()[..], wire);
            assert_eq!(Frame::decode(&mut BytesMut::from(wire)), Ok(Some(frame)));
        }
    }

    #[test]
    fn socks_destinations_on_the_wire() {
        let dest = crate::Destination {
            host: crate::Host::parse("kube.internal").unwrap(),
            port: 443,
        };
        let frame = open(StreamKind::Socks { dest });
        let wire = b"\x10\x00\x00\x00\x1c\x04edge\x04kube\x03\x03\x0dkube.internal\x01\xbb";
        assert_eq!(&frame.to_bytes()[..], wire);
        assert_eq!(
            Frame::decode(&mut BytesMut::from(&wire[..])),
            Ok(Some(frame))
        );
        let head = b"\x04edge\x04kube\x03";
        let with = |tail: &[u8]| Open::decode(&[&head[..], tail].concat());
        assert_eq!(
            with(b"\x02\x00\x00"),
            malformed("unknown destination address type")
        );
        assert_eq!(
            with(b"\x03\x03a/b\x00\x01"),
            malformed("invalid domain name")
        );
        assert_eq!(with(b"\x03\x00\x00\x01"), malformed("invalid domain name"));
        assert_eq!(
            with(b"\x01\x7f\x00\x00\x01\x00"),
            malformed("payload ends inside a field")
        );
    }

    #[test]
    fn kind_fields_are_checked() {
        let head = b"\x04edge\x04kube";
        let with = |tail: &[u8]| Open::decode(&[&head[..], tail].concat());
        assert_eq!(with(b"\x05"), malformed("unknown stream kind"));
        assert_eq!(
            with(b"\x04\x00\x04a/bc"),
            malformed("a recording name is a plain file name")
        );
        assert_eq!(
            with(b"\x01\x03a b\x00\x50\x00\x18\x00\x00"),
            malformed("term is not visible ascii")
        );
        let mut long = vec![1, 65];
        long.extend([b'x'; 65]);
        long.extend([0, 80, 0, 24, 0, 0]);
        assert_eq!(with(&long), malformed("term longer than 64 bytes"));
        assert_eq!(with(b"\x02\x00\x00"), malformed("exec argv is empty"));
        assert_eq!(
            with(b"\x02\x00\x01\x00\x01\x00"),
            malformed("exec argument contains a nul byte")
        );
        assert_eq!(with(b"\x00\x00"), malformed("trailing bytes"));
    }

    #[test]
    fn kinds_name_their_capability() {
        assert_eq!(StreamKind::Tcp.as_str(), "tcp");
        let exec = StreamKind::Exec {
            argv: vec!["true".into()],
        };
        assert_eq!(exec.to_string(), "exec");
        assert_eq!(exec.capability(), Capabilities::EXEC);
        assert_eq!(exec.command_line(), "true");
    }

    #[test]
    fn command_line_quotes_what_is_not_plain() {
        let exec = StreamKind::Exec {
            argv: vec!["sh".into(), "-c".into(), "echo it's".into(), "".into()],
        };
        assert_eq!(exec.command_line(), r#"sh -c 'echo it'\''s' ''"#);
        let shell = StreamKind::Shell {
            term: String::new(),
            cols: 1,
            rows: 1,
            argv: vec![],
        };
        assert_eq!(shell.command_line(), "");
        assert_eq!(StreamKind::Tcp.command_line(), "");
    }
}
