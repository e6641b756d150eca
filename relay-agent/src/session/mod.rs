//! Shell and command sessions: what they may do (off unless `--allow-shell`),
//! whom they run as, their clean environment, and the process plumbing that
//! [`exec`] (a command without a terminal) and [`shell`] (on a PTY,
//! [`record`]ed when asked) share. "Session" in this crate means only these;
//! the agent's connection to a relay is its [`uplink`](crate::uplink).
//!
//! A session runs as the agent's OS user, or as `--shell-user` (an agent
//! running as root drops to it), in a **clean environment**: only the
//! variables of [`BASE_ENV`], the session's `TERM`, `HOME`, `USER`,
//! `LOGNAME`, `SHELL`, `RELAY_CALLER` and the names added with `--shell-env`
//! reach the program. The agent's own variables (its `RELAY_CREDENTIAL`,
//! `KUBERNETES_SERVICE_*`, cloud tokens, …) do not, unless configured.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::User;
use proto::Identity;

pub mod exec;
pub mod record;
pub mod shell;
pub mod tree;

/// How a shell or command session ended, for the agent's log.
#[derive(Debug)]
pub struct SessionSummary {
    /// The program's exit, if it was seen.
    pub exit: Option<proto::Exit>,
    /// Bytes of stdin delivered.
    pub bytes_in: u64,
    /// Bytes of output sent (or `None` if the client went away).
    pub bytes_out: Option<u64>,
    /// Whether the client went away before the end.
    pub client_gone: bool,
}

impl SessionSummary {
    /// A session whose client was gone before it started.
    pub fn client_gone() -> SessionSummary {
        SessionSummary {
            exit: None,
            bytes_in: 0,
            bytes_out: None,
            client_gone: true,
        }
    }
}

/// The agent's variables a session inherits when they are set (locale, time
/// zone and search path; nothing that names a secret).
pub const BASE_ENV: [&str; 5] = ["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ"];

/// The `PATH` of a session when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a program gets to exit after SIGHUP when its client is gone,
/// before SIGKILL.
pub const HANGUP_GRACE: Duration = Duration::from_secs(2);

/// The OS user a session runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (the session's working directory if it exists).
    pub home: PathBuf,
    /// Whether sessions switch to this user (setgid/setuid before exec);
    /// `false` when it is the agent's own user.
    pub switch: bool,
}

/// Why a user could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("shell user {user:?}: {reason}")]
pub struct UserError {
    /// The name given.
    pub user: String,
    /// Why.
    pub reason: String,
}

impl RunAs {
    /// The user the agent runs as, from the system's user database by uid
    /// (`$HOME` and a numeric name if it has no entry, as in a container
    /// with a random uid).
    pub fn current() -> RunAs {
        let uid = nix::unistd::getuid();
        match User::from_uid(uid) {
            Ok(Some(user)) => RunAs::of(user, false),
            _ => RunAs {
                name: uid.to_string(),
                uid: uid.as_raw(),
                gid: nix::unistd::getgid().as_raw(),
                home: std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from),
                switch: false,
            },
        }
    }

    /// `--shell-user NAME`: looked up through libc (`getpwnam`), so users
    /// from NSS sources (LDAP, sssd) count as well as `/etc/passwd`.
    /// Switching needs the agent to run as root (or as that user already).
    ///
    /// # Errors
    /// If there is no such user, or the agent is not allowed to switch to it.
    pub fn lookup(name: &str) -> Result<RunAs, UserError> {
        let fail = |reason: String| UserError {
            user: name.to_owned(),
            reason,
        };
        let user = User::from_name(name)
            .map_err(|e| fail(format!("cannot look the user up: {e}")))?
            .ok_or_else(|| fail("no such user".into()))?;
        let me = nix::unistd::getuid();
        if !me.is_root() && me != user.uid {
            return Err(fail(format!(
                "the agent runs as uid {me}, and only root can start sessions as another user"
            )));
        }
        let switch = me != user.uid;
        Ok(RunAs::of(user, switch))
    }

    fn of(user: User, switch: bool) -> RunAs {
        RunAs {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
            switch,
        }
    }
}

/// Shell and command sessions on this agent. Off by default.
#[derive(Clone, Debug)]
pub struct Sessions {
    /// `--allow-shell`: serve `Shell` and `Exec` opens at all.
    pub allow: bool,
    /// The shell of interactive sessions (`--shell`).
    pub shell: PathBuf,
    /// Whom sessions run as.
    pub user: RunAs,
    /// `--shell-env`: `NAME` (copied from the agent's environment when set)
    /// or `NAME=VALUE`.
    pub env: Vec<String>,
    /// `--record-dir`: where interactive sessions are recorded (asciicast v2).
    pub record_dir: Option<PathBuf>,
    /// `--record-fail-open`: run a session even if its recording cannot be
    /// written. Off: such a session is refused (fail closed).
    pub record_fail_open: bool,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            allow: false,
            shell: default_shell(),
            user: RunAs::current(),
            env: Vec::new(),
            record_dir: None,
            record_fail_open: false,
        }
    }
}

/// `/bin/bash` if there is one, else `/bin/sh`.
pub fn default_shell() -> PathBuf {
    let bash = Path::new("/bin/bash");
    if bash.exists() {
        bash.to_owned()
    } else {
        PathBuf::from("/bin/sh")
    }
}

impl Sessions {
    /// A command with the session's user, working directory and clean
    /// environment (plus `TERM` when given), killed if dropped.
    pub fn command(
        &self,
        program: &str,
        caller: &Identity,
        term: Option<&str>,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env_clear();
        for (name, value) in self.environment(caller, term) {
            cmd.env(name, value);
        }
        let home = &self.user.home;
        cmd.current_dir(if home.is_dir() { home } else { Path::new("/") });
        if self.user.switch {
            cmd.gid(self.user.gid).uid(self.user.uid);
        }
        cmd.kill_on_drop(true);
        cmd
    }

    /// The session's whole environment, in a stable order.
    pub fn environment(&self, caller: &Identity, term: Option<&str>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |name: &str, value: String| {
            env.retain(|(n, _)| n != name);
            env.push((name.to_owned(), value));
        };
        set(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
        );
        for name in BASE_ENV {
            if let Ok(value) = std::env::var(name) {
                set(name, value);
            }
        }
        set("HOME", self.user.home.display().to_string());
        set("USER", self.user.name.clone());
        set("LOGNAME", self.user.name.clone());
        set("SHELL", self.shell.display().to_string());
        set("RELAY_CALLER", caller.to_string());
        if let Some(term) = term {
            set("TERM", term.to_owned());
        }
        for spec in &self.env {
            match spec.split_once('=') {
                Some((name, value)) => set(name, value.to_owned()),
                None => {
                    if let Ok(value) = std::env::var(spec) {
                        set(spec, value);
                    }
                }
            }
        }
        env
    }
}

/// Maps a wire signal number to the signal to deliver, if it is one we know.
pub fn signal_of(number: u8) -> Option<rustix::process::Signal> {
    use rustix::process::Signal as S;
    Some(match number {
        proto::Signal::HUP => S::HUP,
        proto::Signal::INT => S::INT,
        proto::Signal::QUIT => S::QUIT,
        proto::Signal::KILL => S::KILL,
        proto::Signal::TERM => S::TERM,
        _ => return None,
    })
}

/// Sends `signal` to the process group led by `pid` (the session's program
/// and whatever it started).
pub fn signal_group(pid: Option<u32>, signal: rustix::process::Signal) {
    let pid = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        if let Err(e) = rustix::process::kill_process_group(pid, signal) {
            tracing::debug!(err = %e, "signal not delivered");
        }
    }
}

/// Delivers the client's `Signal` frame to the session's process group;
/// a number this version does not know is ignored.
pub fn deliver(pid: Option<u32>, signal: &proto::Signal) {
    match signal_of(signal.signal) {
        Some(known) => signal_group(pid, known),
        None => tracing::debug!(signal = signal.signal, "unknown signal ignored"),
    }
}

/// Ends a program whose client is gone: SIGHUP to its whole tree (as a
/// terminal hang-up would), up to [`HANGUP_GRACE`] for all of it to exit,
/// then SIGKILL to what is left; reaps the program.
pub async fn hang_up(
    child: &mut tokio::process::Child,
    tree: &mut tree::Tree,
) -> Option<std::process::ExitStatus> {
    tree.end(HANGUP_GRACE).await;
    child.wait().await.ok()
}

/// The [`proto::Exit`] for a process status.
pub fn exit_of(status: std::process::ExitStatus) -> proto::Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => proto::Exit::Code(code),
        (None, Some(signal)) => proto::Exit::Signal(u8::try_from(signal).unwrap_or(u8::MAX)),
        (None, None) => proto::Exit::Code(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_come_from_the_system_database() {
        let me = RunAs::current();
        assert_eq!(me.uid, nix::unistd::getuid().as_raw());
        assert!(!me.switch);
        // root is in every user database; as another user the agent may
        // not switch to it.
        match RunAs::lookup("root") {
            Ok(root) => {
                assert_eq!((root.uid, root.name.as_str()), (0, "root"));
                assert_eq!(root.switch, me.uid != 0);
            }
            Err(e) => {
                assert_ne!(me.uid, 0, "{e}");
                assert!(e.to_string().contains("only root can"), "{e}");
            }
        }
        let e = RunAs::lookup("no-such-user-x7").unwrap_err();
        assert_eq!(
            e.to_string(),
            "shell user \"no-such-user-x7\": no such user"
        );
    }

    #[test]
    fn environment_is_clean_and_configurable() {
        let sessions = Sessions {
            env: vec!["EXTRA=1".into(), "NOT_SET_ANYWHERE_X".into()],
            ..Sessions::default()
        };
        let caller = Identity::new(proto::Role::Client, "alice".parse().unwrap());
        let env = sessions.environment(&caller, Some("xterm"));
        let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("TERM"), Some("xterm"));
        assert_eq!(get("EXTRA"), Some("1"));
        assert_eq!(get("RELAY_CALLER"), Some("client/alice"));
        assert!(get("PATH").is_some());
        assert_eq!(get("NOT_SET_ANYWHERE_X"), None);
        assert_eq!(get("RELAY_CREDENTIAL"), None);
        let allowed = [
            "PATH",
            "LANG",
            "LC_ALL",
            "LC_CTYPE",
            "TZ",
            "HOME",
            "USER",
            "LOGNAME",
            "SHELL",
            "RELAY_CALLER",
            "TERM",
            "EXTRA",
        ];
        for (name, _) in &env {
            assert!(allowed.contains(&name.as_str()), "{name} leaked");
        }
    }

    #[test]
    fn signals_and_exits() {
        assert_eq!(signal_of(2), Some(rustix::process::Signal::INT));
        assert_eq!(signal_of(77), None);
    }
}
