//! Session recordings in asciicast v2, one file per interactive session,
//! replayable with `asciinema play FILE`.
//!
//! ```text
//! {"version":2,"width":80,"height":24,"timestamp":1767225600,"env":{"TERM":"xterm","SHELL":"/bin/bash"},"title":"client/alice on aks-prod"}
//! [0.012345,"o","$ "]
//! [1.500000,"r","100x40"]
//! ```
//!
//! Only the terminal's output ("o") and resizes ("r") are written: stdin,
//! which holds whatever the operator typed (passwords at a prompt that
//! turned echo off, say), is never recorded. Output that ends inside a
//! UTF-8 sequence is held back until the rest arrives, since JSON strings
//! must be text.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

/// An open recording.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    out: BufWriter<File>,
    started: Instant,
    pending: Vec<u8>,
}

/// What the header says about the session.
#[derive(Debug)]
pub struct Header<'a> {
    /// Terminal width.
    pub cols: u16,
    /// Terminal height.
    pub rows: u16,
    /// `TERM`.
    pub term: &'a str,
    /// The shell or program.
    pub shell: &'a str,
    /// Who and where, e.g. `client/alice on aks-prod`.
    pub title: String,
}

/// A recording could not be written.
#[derive(Debug, thiserror::Error)]
#[error("session recording {path}: {err}")]
pub struct RecordError {
    /// The file (or the folder, when it could not be created).
    pub path: String,
    /// What went wrong.
    pub err: std::io::Error,
}

impl Recorder {
    /// Creates a new recording file in `dir` (mode 0600, never overwriting)
    /// named after the time and the caller, and writes the header.
    ///
    /// # Errors
    /// If the folder or file cannot be created or written.
    pub fn create(dir: &Path, caller: &str, header: &Header<'_>) -> Result<Recorder, RecordError> {
        use std::os::unix::fs::OpenOptionsExt;
        let now = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let safe: String = caller
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{stamp}-{safe}-{:08x}.cast", rand::random::<u32>()));
        let fail = |err| RecordError {
            path: path.display().to_string(),
            err,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(fail)?;
        let mut rec = Recorder {
            out: BufWriter::new(file),
            path: path.clone(),
            started: Instant::now(),
            pending: Vec::new(),
        };
        let header = json!({
            "version": 2,
            "width": header.cols,
            "height": header.rows,
            "timestamp": now.unix_timestamp(),
            "env": {"TERM": header.term, "SHELL": header.shell},
            "title": header.title,
        });
        rec.line(&header)?;
        Ok(rec)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records terminal output.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn output(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        self.pending.extend_from_slice(bytes);
        let text = take_text(&mut self.pending);
        if text.is_empty() {
            return Ok(());
        }
        let event = json!([self.elapsed(), "o", text]);
        self.line(&event)
    }

    /// Records a resize.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn resize(&mut self, cols: u16, rows: u16) -> Result<(), RecordError> {
        let event = json!([self.elapsed(), "r", format!("{cols}x{rows}")]);
        self.line(&event)
    }

    /// Writes what is held back (as replacement characters) and flushes.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn finish(&mut self) -> Result<(), RecordError> {
        if !self.pending.is_empty() {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            let event = json!([self.elapsed(), "o", text]);
            self.line(&event)?;
        }
        self.out.flush().map_err(|err| self.error(err))
    }

    fn elapsed(&self) -> f64 {
        // Microseconds, as asciinema writes them.
        (self.started.elapsed().as_micros() as f64) / 1e6
    }

    fn line(&mut self, value: &serde_json::Value) -> Result<(), RecordError> {
        let mut line = value.to_string();
        line.push('\n');
        // Flushed per event: a recording must survive the agent being killed.
        let written = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.flush());
        written.map_err(|err| self.error(err))
    }

    fn error(&self, err: std::io::Error) -> RecordError {
        RecordError {
            path: self.path.display().to_string(),
            err,
        }
    }
}

/// Takes the longest prefix of `buf` that is text: invalid bytes become
/// U+FFFD, an incomplete sequence at the end stays in `buf`.
fn take_text(buf: &mut Vec<u8>) -> String {
    let mut text = String::new();
    let mut rest: &[u8] = buf;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                text.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                text.push_str(&String::from_utf8_lossy(good));
                match e.error_len() {
                    Some(n) => {
                        text.push('\u{fffd}');
                        rest = &bad[n..];
                    }
                    None => {
                        rest = bad;
                        break;
                    }
                }
            }
        }
    }
    let keep = rest.to_vec();
    *buf = keep;
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_utf8_is_held_back() {
        let mut buf = "hé".as_bytes()[..2].to_vec();
        assert_eq!(take_text(&mut buf), "h");
        assert_eq!(buf, vec![0xc3]);
        buf.push(0xa9);
        assert_eq!(take_text(&mut buf), "é");
        assert!(buf.is_empty());
        let mut bad = vec![b'a', 0xff, b'b'];
        assert_eq!(take_text(&mut bad), "a\u{fffd}b");
    }

    #[test]
    fn writes_asciicast_v2() {
        let dir = tempfile::tempdir().unwrap();
        let header = Header {
            cols: 80,
            rows: 24,
            term: "xterm",
            shell: "/bin/sh",
            title: "client/alice on edge".into(),
        };
        let mut rec = Recorder::create(dir.path(), "client/alice", &header).unwrap();
        rec.output(b"hello \xc3").unwrap();
        rec.output(b"\xa9\r\n").unwrap();
        rec.resize(100, 40).unwrap();
        rec.finish().unwrap();
        let text = std::fs::read_to_string(rec.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 80);
        assert_eq!(lines[0]["env"]["TERM"], "xterm");
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[1][2], "hello ");
        assert_eq!(lines[2][2], "é\r\n");
        assert_eq!(lines[3][1], "r");
        assert_eq!(lines[3][2], "100x40");
        let name = rec
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.contains("client_alice") && name.ends_with(".cast"),
            "{name}"
        );
    }

    #[test]
    fn missing_folder_is_an_error() {
        let header = Header {
            cols: 1,
            rows: 1,
            term: "",
            shell: "",
            title: String::new(),
        };
        let err = Recorder::create(Path::new("/nonexistent/dir"), "c", &header).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dir"), "{err}");
    }
}
