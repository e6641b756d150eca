//! The processes a session started, ended with it: a [`Tree`] is a drop
//! guard over the program's process group and (for a shell) its terminal
//! session, so no way out of a session, however early, leaves a process
//! behind.
//!
//! ```text
//! program exits / client gone / recording fails / stream reset / task dropped
//!   ─▶ SIGHUP + SIGCONT to every member, a grace to exit       (Tree::end)
//!   ─▶ SIGKILL to every member, again for any forked meanwhile (Tree::kill, Drop)
//! ```
//!
//! Members are found by a scan of `/proc`: every process whose process
//! group or session is the program's (a shell's background jobs get groups
//! of their own, but stay in its session), and every descendant of one
//! while its parent lives. What is out of reach: a process that left both
//! with `setsid`/`setpgid` and whose parent has already exited (a daemon's
//! double fork). Only a cgroup per session could hold those; the agent
//! does not make one.
//!
//! The program itself is left unreaped (a zombie) until its tree is gone,
//! via a pidfd: while it is, its pid (which names the group and session)
//! cannot be reused, so no signal can reach a stranger that got it.

use std::collections::HashSet;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How long what a session leaves behind gets to exit after SIGHUP before
/// SIGKILL: long enough for a well-behaved program to clean up, short
/// enough not to hold the client's `Exit` noticeably.
pub const TREE_GRACE: Duration = Duration::from_millis(500);

/// How often [`Tree::end`] looks whether the members are gone.
const POLL: Duration = Duration::from_millis(20);

/// Upper bound on SIGKILL rounds: each round kills what the previous scan
/// found, and only processes forked in between need another.
const KILL_ROUNDS: usize = 16;

/// The processes of one session; all of them get SIGKILL when dropped.
#[derive(Debug)]
pub struct Tree {
    /// The program: leader of its process group (and of its session, for
    /// a shell). `None` once killed, or when there was no program.
    leader: Option<Pid>,
}

impl Tree {
    /// The tree of the program `pid` (from [`tokio::process::Child::id`]),
    /// which must lead its own process group.
    pub fn new(pid: Option<u32>) -> Tree {
        let leader = pid
            .and_then(|p| i32::try_from(p).ok())
            .and_then(Pid::from_raw)
            .filter(|&p| {
                // Never the agent's own group: that would end the agent.
                let own = rustix::process::getpgid(None).ok();
                rustix::process::getpgid(Some(p)).ok() != own
            });
        if pid.is_some() && leader.is_none() {
            tracing::warn!(?pid, "session program leads no process group of its own");
        }
        Tree { leader }
    }

    /// The live members (zombies excluded), the program included while it runs.
    pub fn members(&self) -> Vec<Pid> {
        self.leader.map(members_of).unwrap_or_default()
    }

    /// Sends `signal` to every member.
    pub fn signal(&self, signal: Signal) {
        if let Some(leader) = self.leader {
            let _ = rustix::process::kill_process_group(leader, signal);
            for pid in members_of(leader) {
                let _ = rustix::process::kill_process(pid, signal);
            }
        }
    }

    /// Ends the tree politely: SIGHUP (and SIGCONT, for stopped jobs), up to
    /// `grace` for the members to exit, then [`Tree::kill`]. Returns at once
    /// when nothing is left.
    pub async fn end(&mut self, grace: Duration) {
        if !self.members().is_empty() {
            self.signal(Signal::HUP);
            self.signal(Signal::CONT);
            let _ = tokio::time::timeout(grace, async {
                while !self.members().is_empty() {
                    tokio::time::sleep(POLL).await;
                }
            })
            .await;
        }
        self.kill();
    }

    /// SIGKILL to every member, in rounds until a scan finds no member that
    /// was not already killed. Idempotent.
    pub fn kill(&mut self) {
        let Some(leader) = self.leader.take() else {
            return;
        };
        let mut killed = HashSet::new();
        for _ in 0..KILL_ROUNDS {
            let _ = rustix::process::kill_process_group(leader, Signal::KILL);
            let fresh: Vec<Pid> = members_of(leader)
                .into_iter()
                .filter(|p| !killed.contains(p))
                .collect();
            if fresh.is_empty() {
                return;
            }
            for pid in fresh {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
                killed.insert(pid);
            }
        }
        tracing::warn!(
            leader = leader.as_raw_pid(),
            "session processes still forking after SIGKILL"
        );
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `child` has exited, leaving it unreaped when the kernel has
/// pidfds (Linux 5.3+), so its pid stays reserved until [`Tree::kill`];
/// without them it is reaped here.
///
/// # Cancel safety
/// Cancel safe: nothing is consumed until the child has exited.
pub async fn exited(child: &mut tokio::process::Child) {
    let pidfd = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(Pid::from_raw)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::NONBLOCK).ok())
        .and_then(|fd| watch_pidfd(fd).ok());
    match pidfd {
        // A pidfd turns readable when its process exits.
        Some(fd) => {
            let _ = fd.readable().await;
        }
        None => {
            let _ = child.wait().await;
        }
    }
}

/// `fd` registered with the runtime, readable once its process has exited.
// `with_interest` is deprecated for fd types that do not own their fd (one
// could be closed while registered); an `OwnedFd` moved in is closed only
// when the `AsyncFd` is dropped, and the replacement is an `unsafe fn`.
#[allow(deprecated)]
fn watch_pidfd(fd: std::os::fd::OwnedFd) -> std::io::Result<AsyncFd<std::os::fd::OwnedFd>> {
    AsyncFd::with_interest(fd, Interest::READABLE)
}

/// One line of `/proc/PID/stat`, the fields that matter here.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    session: i32,
    zombie: bool,
}

/// Parses `/proc/PID/stat`: `pid (comm) state ppid pgrp session …`, where
/// `comm` may hold spaces and parentheses (so the fields are counted from
/// the last `)`).
fn parse_stat(text: &str) -> Option<Stat> {
    let (head, tail) = text.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0.trim().parse().ok()?;
    let mut fields = tail.split_whitespace();
    let state = fields.next()?;
    let mut num = || fields.next().and_then(|f| f.parse::<i32>().ok());
    Some(Stat {
        pid,
        ppid: num()?,
        pgrp: num()?,
        session: num()?,
        zombie: state == "Z" || state == "X",
    })
}

/// Every process visible in `/proc` (none where there is no `/proc`: then
/// only the process-group signal reaches the tree).
fn scan() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|text| parse_stat(&text))
        .collect()
}

/// The live members of the tree led by `leader` in `procs`.
fn members_in(procs: &[Stat], leader: i32) -> Vec<i32> {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let mut set: HashSet<i32> = procs
        .iter()
        .filter(|p| p.pid == leader || p.pgrp == leader || p.session == leader)
        .map(|p| p.pid)
        .collect();
    loop {
        let children: Vec<i32> = procs
            .iter()
            .filter(|p| !set.contains(&p.pid) && set.contains(&p.ppid))
            .map(|p| p.pid)
            .collect();
        if children.is_empty() {
            break;
        }
        set.extend(children);
    }
    procs
        .iter()
        .filter(|p| set.contains(&p.pid) && !p.zombie && p.pid > 1 && p.pid != me)
        .map(|p| p.pid)
        .collect()
}

fn members_of(leader: Pid) -> Vec<Pid> {
    members_in(&scan(), leader.as_raw_pid())
        .into_iter()
        .filter_map(Pid::from_raw)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_odd_names() {
        let s = parse_stat("42 (a) b (c)) S 7 42 40 0 -1 4194560 ...").unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 42,
                ppid: 7,
                pgrp: 42,
                session: 40,
                zombie: false
            }
        );
        assert!(parse_stat("9 (x) Z 1 9 9 0").unwrap().zombie);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn members_are_group_session_and_descendants() {
        let p = |pid, ppid, pgrp, session, zombie| Stat {
            pid,
            ppid,
            pgrp,
            session,
            zombie,
        };
        let procs = [
            p(10, 1, 10, 10, false),  // the shell, session leader
            p(11, 10, 11, 10, false), // a background job: own group, same session
            p(12, 11, 12, 12, false), // setsid by a child whose parent lives
            p(13, 1, 13, 13, false),  // a double-forked daemon: out of reach
            p(14, 10, 10, 10, true),  // a zombie: nothing to kill
            p(20, 1, 20, 20, false),  // a stranger
        ];
        let mut got = members_in(&procs, 10);
        got.sort_unstable();
        assert_eq!(got, vec![10, 11, 12]);
    }

    #[tokio::test]
    async fn a_dropped_tree_kills_background_children() {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "sleep 1000 & echo $!; exec sleep 1000"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let tree = Tree::new(child.id());
        let mut out = child.stdout.take().unwrap();
        let mut line = String::new();
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 32];
        while !line.ends_with('\n') {
            let n = out.read(&mut buf).await.unwrap();
            assert!(n > 0);
            line.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        let bg: i32 = line.trim().parse().unwrap();
        assert!(tree.members().iter().any(|p| p.as_raw_pid() == bg));
        drop(tree);
        let _ = child.wait().await;
        // A pidfd turns readable when its process has exited.
        match rustix::process::pidfd_open(
            Pid::from_raw(bg).unwrap(),
            rustix::process::PidfdFlags::NONBLOCK,
        ) {
            Ok(fd) => {
                let fd = watch_pidfd(fd).unwrap();
                let ended = tokio::time::timeout(Duration::from_secs(10), fd.readable()).await;
                assert!(ended.is_ok(), "{bg} survived its tree");
            }
            Err(e) => assert_eq!(e, rustix::io::Errno::SRCH),
        }
    }
}
