//! The relay's authorization policy (`DIR/policy.toml`): deny by default,
//! every `Open` checked against the caller identity from its certificate.
//!
//! ```toml
//! [[allow]]
//! client  = "alice"          # a client name, or "*" for any client
//! # group = "sre"            # or, instead of client: any client in this group
//! agent   = "aks-prod"       # an agent name, or "*"
//! targets = ["kube-api", "db"]   # target names, or ["*"]
//! shell   = true             # interactive sessions (`relay-client shell`), default false
//! run     = true             # commands (`relay-client run`), default false
//! socks   = true             # SOCKS5 through the agent (`relay-client socks`), default false
//! watch   = true             # watch others' browser shells there, read-only, default false
//! recordings = true          # list and play the agent's session recordings, default false
//! direct  = "allow"          # end-to-end paths: "allow" (default), "deny" or "require"
//! ```
//!
//! `direct` says which carriers an entry's grants travel on: `"allow"` both
//! the relay path and end-to-end paths (`relay-client --end-to-end`);
//! `"deny"` only the relay path, where the relay reads, authorizes and
//! audits every stream; `"require"` only end-to-end paths, so the relay
//! never sees the traffic. The default is `"allow"`: it is what every policy
//! meant before the field existed, and an operator who wants the relay to
//! see each stream says `"deny"` where it matters.
//!
//! `socks = true` lets the client name any destination; the agent's own
//! `--allow-socks` rules then decide which ones it dials. It is its own
//! grant too: `targets = ["*"]` does not imply it.
//!
//! A shell or a command is code execution on the agent's host, so it is its
//! own grant, never implied by `targets = ["*"]`.
//!
//! `group` matches a client whose certificate names that group: the groups
//! a single sign-on's provider gave it (DESIGN "Single sign-on"). An entry
//! names `client` or `group`, never both.
//!
//! An empty or missing list allows nothing (an empty allowlist never means
//! "everything": Vault CVE-2024-7594).

use std::path::Path;

use proto::{AgentName, Capabilities, Name, TargetName};
use serde::{Deserialize, Deserializer};

/// A name or `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// `*`: any name.
    Any,
    /// Exactly this name.
    Exact(Name),
}

impl Pattern {
    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(n) => n.as_str() == name,
        }
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "*" {
            return Ok(Pattern::Any);
        }
        Name::try_from(s.as_str())
            .map(Pattern::Exact)
            .map_err(serde::de::Error::custom)
    }
}

/// Which carriers an entry's grants may travel on (its `direct` field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectRule {
    /// The relay path and end-to-end paths.
    #[default]
    Allow,
    /// The relay path only.
    Deny,
    /// End-to-end paths only.
    Require,
}

/// The carrier a request travels on, for [`Policy::on`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// Either (what `list` shows, and the wording of refusals).
    Any,
    /// An `Open` the relay splices.
    Relay,
    /// A direct path's grant (end-to-end mode).
    Direct,
}

impl DirectRule {
    /// Whether an entry with this rule grants on `carrier`.
    pub fn permits(self, carrier: Carrier) -> bool {
        !matches!(
            (self, carrier),
            (DirectRule::Deny, Carrier::Direct) | (DirectRule::Require, Carrier::Relay)
        )
    }
}

/// Which clients an entry grants to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// `client = "alice"` or `"*"`.
    Client(Pattern),
    /// `group = "sre"`: clients whose certificate names the group.
    Group(Name),
}

impl Who {
    /// Whether `caller` is among them.
    pub fn matches(&self, caller: Caller<'_>) -> bool {
        match self {
            Who::Client(pattern) => pattern.matches(caller.name.as_str()),
            Who::Group(group) => caller.groups.contains(group),
        }
    }
}

/// The client a request comes from, as its certificate says: its name and
/// its groups.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// The client's name.
    pub name: &'a Name,
    /// Its groups.
    pub groups: &'a [Name],
}

impl<'a> From<&'a Name> for Caller<'a> {
    /// A caller with no groups.
    fn from(name: &'a Name) -> Self {
        Caller { name, groups: &[] }
    }
}

impl<'a> From<&'a relay_net::cert::PeerCert> for Caller<'a> {
    fn from(peer: &'a relay_net::cert::PeerCert) -> Self {
        Caller {
            name: &peer.identity.name,
            groups: &peer.groups,
        }
    }
}

/// An `[[allow]]` entry as written, before `client`/`group` is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowFields {
    client: Option<Pattern>,
    group: Option<String>,
    agent: Pattern,
    #[serde(default)]
    targets: Vec<Pattern>,
    #[serde(default)]
    shell: bool,
    #[serde(default)]
    run: bool,
    #[serde(default)]
    socks: bool,
    #[serde(default)]
    watch: bool,
    #[serde(default)]
    recordings: bool,
    #[serde(default)]
    direct: DirectRule,
}

impl TryFrom<AllowFields> for Allow {
    type Error = &'static str;

    fn try_from(f: AllowFields) -> Result<Self, Self::Error> {
        let who = match (f.client, f.group) {
            (Some(client), None) => Who::Client(client),
            (None, Some(group)) => Who::Group(
                Name::try_from(group.as_str())
                    .map_err(|_| "a group is a name: lowercase letters, digits, '-' and '.'")?,
            ),
            (Some(_), Some(_)) => {
                return Err(
                    "an [[allow]] entry names client or group, not both (write two entries)",
                )
            }
            (None, None) => {
                return Err("an [[allow]] entry needs client = \"...\" or group = \"...\"")
            }
        };
        Ok(Allow {
            who,
            agent: f.agent,
            targets: f.targets,
            shell: f.shell,
            run: f.run,
            socks: f.socks,
            watch: f.watch,
            recordings: f.recordings,
            direct: f.direct,
        })
    }
}

/// One `[[allow]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "AllowFields")]
pub struct Allow {
    /// Which clients: by name, or by group.
    pub who: Who,
    /// Which agents.
    pub agent: Pattern,
    /// Which targets of those agents (TCP streams).
    pub targets: Vec<Pattern>,
    /// Interactive `Shell` sessions on those agents.
    pub shell: bool,
    /// Non-interactive `Exec` commands on those agents.
    pub run: bool,
    /// `Socks` streams through those agents (destinations checked by the
    /// agent's `--allow-socks` rules).
    pub socks: bool,
    /// Watching other people's browser shells on those agents, read-only
    /// (the relay's web page; each watch is audited).
    pub watch: bool,
    /// Listing and playing those agents' session recordings (they hold
    /// what people typed and saw: their own grant).
    pub recordings: bool,
    /// Whether these grants may (`allow`), may not (`deny`) or must
    /// (`require`) travel on end-to-end paths.
    pub direct: DirectRule,
}

/// The whole policy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Grants; anything not granted is denied.
    #[serde(default)]
    pub allow: Vec<Allow>,
}

/// Why a policy file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        err: std::io::Error,
    },
    /// The file is not a valid policy (the message names line and column).
    #[error("invalid policy {path}: {err}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        err: String,
    },
}

/// The policy `init` writes: it allows nothing until edited.
pub const INITIAL_POLICY: &str = r#"# Relay policy: which client may reach which agent/target. Deny by default.
# The relay reloads this file when it changes (or on SIGHUP); a file that
# fails to parse is ignored and the previous policy stays in force.
#
# [[allow]]
# client  = "alice"            # a client name, or "*"
# agent   = "aks-prod"         # an agent name, or "*"
# targets = ["kube-api", "db"] # target names, or ["*"]
# shell   = true               # interactive shells on the agent (default false)
# run     = true               # remote commands on the agent (default false)
# socks   = true               # SOCKS5 through the agent, to what its --allow-socks rules allow (default false)
# watch   = true               # watch others' browser shells on the agent, read-only (default false)
# recordings = true            # list and play the agent's session recordings (default false)
# direct  = "allow"            # end-to-end paths (--end-to-end): "allow" (default), "deny", "require"
"#;

impl Policy {
    /// Parses policy text.
    ///
    /// # Errors
    /// On invalid TOML, unknown fields or invalid names.
    pub fn parse(text: &str, path: &str) -> Result<Policy, PolicyError> {
        toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: path.to_owned(),
            err: e.to_string(),
        })
    }

    /// Reads and parses a policy file.
    ///
    /// # Errors
    /// If it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| PolicyError::Io {
            path: shown.clone(),
            err,
        })?;
        Policy::parse(&text, &shown)
    }

    /// The policy as it applies to requests on `carrier`.
    pub fn on(&self, carrier: Carrier) -> View<'_> {
        View {
            policy: self,
            carrier,
        }
    }

    /// Whether `client` may open a TCP stream to `agent/target` (on any carrier).
    pub fn allows_tcp<'c>(
        &self,
        client: impl Into<Caller<'c>>,
        agent: &AgentName,
        target: &TargetName,
    ) -> bool {
        self.on(Carrier::Any).allows_tcp(client, agent, target)
    }

    /// Whether `client` may open an interactive shell on `agent` (on any carrier).
    pub fn allows_shell<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> bool {
        self.on(Carrier::Any).allows_shell(client, agent)
    }

    /// Whether `client` may run a command on `agent` (on any carrier).
    pub fn allows_run<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> bool {
        self.on(Carrier::Any).allows_run(client, agent)
    }

    /// Whether `client` may open SOCKS streams through `agent` (on any carrier).
    pub fn allows_socks<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> bool {
        self.on(Carrier::Any).allows_socks(client, agent)
    }

    /// The targets among `exposed` that `client` may reach on `agent` (on any carrier).
    pub fn reachable<'a, 'c>(
        &self,
        client: impl Into<Caller<'c>>,
        agent: &AgentName,
        exposed: &'a [TargetName],
    ) -> Vec<&'a TargetName> {
        self.on(Carrier::Any).reachable(client, agent, exposed)
    }

    /// The session kinds `client` may open on `agent` (on any carrier).
    pub fn sessions<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> Capabilities {
        self.on(Carrier::Any).sessions(client, agent)
    }

    /// Whether any entry names `agent` for `client` at all.
    pub fn mentions<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> bool {
        self.on(Carrier::Any).mentions(client, agent)
    }
}

/// The entries of a [`Policy`] that grant on one [`Carrier`].
#[derive(Clone, Copy, Debug)]
pub struct View<'p> {
    policy: &'p Policy,
    carrier: Carrier,
}

impl<'p> View<'p> {
    /// Whether `client` may open a TCP stream to `agent/target`.
    pub fn allows_tcp<'c>(
        &self,
        client: impl Into<Caller<'c>>,
        agent: &AgentName,
        target: &TargetName,
    ) -> bool {
        self.grants(client.into(), agent)
            .any(|a| a.targets.iter().any(|t| t.matches(target.as_str())))
    }

    /// Whether `client` may open an interactive shell on `agent`.
    pub fn allows_shell<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> bool {
        self.grants(client.into(), agent).any(|a| a.shell)
    }

    /// Whether `client` may run a command on `agent`.
    pub fn allows_run<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> bool {
        self.grants(client.into(), agent).any(|a| a.run)
    }

    /// Whether `client` may open SOCKS streams through `agent`.
    pub fn allows_socks<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> bool {
        self.grants(client.into(), agent).any(|a| a.socks)
    }

    /// Whether `client` may list and play `agent`'s session recordings.
    pub fn allows_recordings<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> bool {
        self.grants(client.into(), agent).any(|a| a.recordings)
    }

    /// Whether `client` may watch other people's browser shells on `agent`.
    pub fn allows_watch<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> bool {
        self.grants(client.into(), agent).any(|a| a.watch)
    }

    /// The targets among `exposed` that `client` may reach on `agent`.
    pub fn reachable<'a, 'c>(
        &self,
        client: impl Into<Caller<'c>>,
        agent: &AgentName,
        exposed: &'a [TargetName],
    ) -> Vec<&'a TargetName> {
        let client: Caller<'_> = client.into();
        exposed
            .iter()
            .filter(|t| self.allows_tcp(client, agent, t))
            .collect()
    }

    /// The session kinds `client` may open on `agent`: `SHELL`, `EXEC`
    /// (`run`), `SOCKS` and `RECORDINGS`, as the grants say (for `list`).
    pub fn sessions<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> Capabilities {
        self.grants(client.into(), agent)
            .flat_map(|a| {
                [
                    (a.shell, Capabilities::SHELL),
                    (a.run, Capabilities::EXEC),
                    (a.socks, Capabilities::SOCKS),
                    (a.recordings, Capabilities::RECORDINGS),
                ]
            })
            .filter(|(granted, _)| *granted)
            .fold(Capabilities::EMPTY, |all, (_, kind)| all | kind)
    }

    /// Whether any entry names `agent` for `client` on this carrier.
    pub fn mentions<'c>(&self, client: impl Into<Caller<'c>>, agent: &AgentName) -> bool {
        self.grants(client.into(), agent).next().is_some()
    }

    fn grants<'a>(
        &'a self,
        client: Caller<'a>,
        agent: &'a AgentName,
    ) -> impl Iterator<Item = &'p Allow> + 'a
    where
        'p: 'a,
    {
        let carrier = self.carrier;
        self.policy.allow.iter().filter(move |a| {
            a.who.matches(client) && a.agent.matches(agent.as_str()) && a.direct.permits(carrier)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> Name {
        Name::try_from(s).unwrap()
    }
    fn a(s: &str) -> AgentName {
        AgentName::try_from(s).unwrap()
    }
    fn t(s: &str) -> TargetName {
        TargetName::try_from(s).unwrap()
    }

    #[test]
    fn issue_form_is_accepted() {
        let p = Policy::parse(
            "[[allow]]\nclient = \"alice\"\nagent = \"aks-prod\"\ntargets = [\"kube-api\", \"db\"]\n",
            "p",
        )
        .unwrap();
        assert!(p.allows_tcp(&n("alice"), &a("aks-prod"), &t("db")));
        assert!(!p.allows_tcp(&n("alice"), &a("aks-prod"), &t("ssh")));
        assert!(!p.allows_tcp(&n("bob"), &a("aks-prod"), &t("db")));
        assert!(!p.allows_tcp(&n("alice"), &a("other"), &t("db")));
    }

    #[test]
    fn shell_and_run_are_separate_grants_off_by_default() {
        let p = Policy::parse(
            "[[allow]]\nclient = \"alice\"\nagent = \"aks-prod\"\nshell = true\nrun = true\n\
             [[allow]]\nclient = \"ci\"\nagent = \"*\"\nrun = true\n\
             [[allow]]\nclient = \"*\"\nagent = \"*\"\ntargets = [\"*\"]\n",
            "p",
        )
        .unwrap();
        assert!(p.allows_shell(&n("alice"), &a("aks-prod")));
        assert!(p.allows_run(&n("alice"), &a("aks-prod")));
        assert!(!p.allows_shell(&n("alice"), &a("other")));
        assert!(p.allows_run(&n("ci"), &a("other")));
        assert!(!p.allows_shell(&n("ci"), &a("other")));
        assert!(
            !p.allows_shell(&n("bob"), &a("aks-prod")),
            "targets * is not a shell"
        );
        assert!(!p.allows_run(&n("bob"), &a("aks-prod")));
        let p = Policy::parse(INITIAL_POLICY, "p").unwrap();
        assert!(!p.allows_shell(&n("alice"), &a("x")) && !p.allows_run(&n("alice"), &a("x")));
    }

    #[test]
    fn socks_is_its_own_grant_off_by_default() {
        let p = Policy::parse(
            "[[allow]]\nclient = \"alice\"\nagent = \"aks-prod\"\nsocks = true\n\
             [[allow]]\nclient = \"*\"\nagent = \"*\"\ntargets = [\"*\"]\nshell = true\nrun = true\n",
            "p",
        )
        .unwrap();
        assert!(p.allows_socks(&n("alice"), &a("aks-prod")));
        assert!(!p.allows_socks(&n("alice"), &a("other")));
        assert!(
            !p.allows_socks(&n("bob"), &a("aks-prod")),
            "targets * is not socks"
        );
        let p = Policy::parse(INITIAL_POLICY, "p").unwrap();
        assert!(!p.allows_socks(&n("alice"), &a("x")));
    }

    #[test]
    fn a_group_grants_to_its_members_only() {
        let p = Policy::parse(
            "[[allow]]\ngroup = \"sre\"\nagent = \"edge\"\ntargets = [\"db\"]\nshell = true\n",
            "p",
        )
        .unwrap();
        let sre = [n("sre")];
        let member = Caller {
            name: &n("carol"),
            groups: &sre,
        };
        let other = Caller {
            name: &n("sre"),
            groups: &[],
        };
        assert!(p.allows_tcp(member, &a("edge"), &t("db")));
        assert!(p.allows_shell(member, &a("edge")));
        assert!(
            !p.allows_tcp(other, &a("edge"), &t("db")),
            "a client named like the group is not in it"
        );
        for (text, says) in [
            (
                "[[allow]]\nclient = \"a\"\ngroup = \"sre\"\nagent = \"x\"\n",
                "not both",
            ),
            ("[[allow]]\nagent = \"x\"\n", "needs client"),
            (
                "[[allow]]\ngroup = \"SRE\"\nagent = \"x\"\n",
                "a group is a name",
            ),
        ] {
            let e = Policy::parse(text, "p").unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn initial_policy_allows_nothing() {
        let p = Policy::parse(INITIAL_POLICY, "p").unwrap();
        assert!(p.allow.is_empty());
        assert!(!p.allows_tcp(&n("alice"), &a("x"), &t("y")));
    }

    #[test]
    fn wildcards_and_empty_targets() {
        let p = Policy::parse(
            "[[allow]]\nclient = \"*\"\nagent = \"edge\"\ntargets = [\"*\"]\n[[allow]]\nclient = \"bob\"\nagent = \"*\"\n",
            "p",
        )
        .unwrap();
        assert!(p.allows_tcp(&n("anyone"), &a("edge"), &t("whatever")));
        assert!(
            !p.allows_tcp(&n("bob"), &a("core"), &t("db")),
            "no targets = nothing"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Policy::parse(
            "[[allow]]\nclient = \"Alice\"\nagent = \"x\"\n",
            "policy.toml",
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("policy.toml") && msg.contains("line 2"),
            "{msg}"
        );
        let e = Policy::parse(
            "[[allow]]\nclient = \"a\"\nagent = \"x\"\ntarget = []\n",
            "p",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn direct_rule_picks_the_carrier() {
        let p = Policy::parse(
            "[[allow]]\nclient = \"alice\"\nagent = \"edge\"\ntargets = [\"open\"]\n\
             [[allow]]\nclient = \"alice\"\nagent = \"edge\"\ntargets = [\"plain\"]\nshell = true\ndirect = \"deny\"\n\
             [[allow]]\nclient = \"alice\"\nagent = \"edge\"\ntargets = [\"secret\"]\nrun = true\ndirect = \"require\"\n",
            "p",
        )
        .unwrap();
        let (c, ag) = (n("alice"), a("edge"));
        let relay = p.on(Carrier::Relay);
        let direct = p.on(Carrier::Direct);
        assert!(relay.allows_tcp(&c, &ag, &t("open")) && direct.allows_tcp(&c, &ag, &t("open")));
        assert!(relay.allows_tcp(&c, &ag, &t("plain")) && !direct.allows_tcp(&c, &ag, &t("plain")));
        assert!(
            !relay.allows_tcp(&c, &ag, &t("secret")) && direct.allows_tcp(&c, &ag, &t("secret"))
        );
        assert!(relay.allows_shell(&c, &ag) && !direct.allows_shell(&c, &ag));
        assert!(!relay.allows_run(&c, &ag) && direct.allows_run(&c, &ag));
        // Any carrier (what list shows) is the union.
        for target in ["open", "plain", "secret"] {
            assert!(p.allows_tcp(&c, &ag, &t(target)), "{target}");
        }
        assert_eq!(p.allow[0].direct, DirectRule::Allow, "allow is the default");
        let e = Policy::parse(
            "[[allow]]\nclient = \"a\"\nagent = \"x\"\ndirect = \"sometimes\"\n",
            "p",
        )
        .unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
    }

    proptest! {
        /// A request matches only entries that equal it or use `*`
        /// (the OpenSSH "one entry matched everything" lesson).
        #[test]
        fn exact_entries_match_only_themselves(
            c in "[a-z][a-z0-9]{0,6}", ag in "[a-z][a-z0-9]{0,6}", tg in "[a-z][a-z0-9]{0,6}",
            c2 in "[a-z][a-z0-9]{0,6}", ag2 in "[a-z][a-z0-9]{0,6}", tg2 in "[a-z][a-z0-9]{0,6}",
        ) {
            let p = Policy::parse(&format!(
                "[[allow]]\nclient = \"{c}\"\nagent = \"{ag}\"\ntargets = [\"{tg}\"]\n"), "p").unwrap();
            let expect = c == c2 && ag == ag2 && tg == tg2;
            prop_assert_eq!(p.allows_tcp(&n(&c2), &a(&ag2), &t(&tg2)), expect);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,400}") {
            let _ = Policy::parse(&s, "p");
        }
    }
}
