//! What this agent exposes: named targets, each a `host:port` inside the
//! private network, or the built-in benchmark service (`--expose-bench`,
//! off by default). The agent is the last gate: a target that is not here
//! is never dialled, whatever the relay's policy says.

use std::collections::BTreeMap;

use proto::TargetName;

/// One exposed target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A TCP service to dial.
    Tcp {
        /// `host:port` to dial, resolved inside the private network.
        addr: String,
    },
    /// The benchmark service inside the agent process
    /// ([`crate::bench`]): nothing is dialled, the stream itself is served.
    Bench,
}

/// The name of the built-in benchmark target.
pub const BENCH_TARGET: &str = "bench";

/// Named targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    targets: BTreeMap<TargetName, Target>,
}

/// A malformed `--expose` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid --expose {spec:?}: {reason} (expected NAME=HOST:PORT, e.g. kube-api=10.0.0.1:6443)"
)]
pub struct ExposeError {
    /// The value given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks a `host:port` string: a non-empty host and a numeric, non-zero port.
pub fn check_addr(addr: &str) -> Result<(), String> {
    let (host, port) = addr.rsplit_once(':').ok_or("missing :PORT")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("missing host".into());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port {port:?}")),
        Ok(_) => Ok(()),
    }
}

impl Allowlist {
    /// Adds `NAME=HOST:PORT`.
    ///
    /// # Errors
    /// On a bad name, address or a duplicate name.
    pub fn add_spec(&mut self, spec: &str) -> Result<(), ExposeError> {
        let err = |reason: String| ExposeError {
            spec: spec.to_owned(),
            reason,
        };
        let (name, addr) = spec
            .split_once('=')
            .ok_or_else(|| err("missing '='".into()))?;
        self.add(name, addr).map_err(err)
    }

    /// Adds a target by name and address.
    ///
    /// # Errors
    /// On a bad name, address or a duplicate name.
    pub fn add(&mut self, name: &str, addr: &str) -> Result<(), String> {
        let name = TargetName::try_from(name).map_err(|e| e.to_string())?;
        check_addr(addr)?;
        if self.targets.contains_key(&name) {
            return Err(format!("target {name} is exposed twice"));
        }
        self.targets.insert(
            name,
            Target::Tcp {
                addr: addr.to_owned(),
            },
        );
        Ok(())
    }

    /// Exposes the built-in benchmark service as target [`BENCH_TARGET`].
    ///
    /// # Errors
    /// If a target of that name is already exposed.
    pub fn add_bench(&mut self) -> Result<(), String> {
        let name = TargetName::try_from(BENCH_TARGET).map_err(|e| e.to_string())?;
        if self.targets.contains_key(&name) {
            return Err(format!(
                "target {name} is exposed twice (--expose-bench uses that name)"
            ));
        }
        self.targets.insert(name, Target::Bench);
        Ok(())
    }

    /// The target of that name, if exposed.
    pub fn get(&self, name: &TargetName) -> Option<&Target> {
        self.targets.get(name)
    }

    /// Exposed target names, for `Register`.
    pub fn names(&self) -> Vec<TargetName> {
        self.targets.keys().cloned().collect()
    }

    /// Whether nothing is exposed.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_rejects() {
        let mut a = Allowlist::default();
        a.add_spec("kube-api=127.0.0.1:6443").unwrap();
        a.add_spec("db=db.internal:5432").unwrap();
        a.add_spec("v6=[::1]:22").unwrap();
        assert_eq!(a.names().len(), 3);
        for bad in [
            "kube-api",
            "Kube=1.2.3.4:1",
            "x=1.2.3.4",
            "x=:80",
            "x=h:0",
            "x=h:99999",
            "db=h:1",
        ] {
            assert!(a.add_spec(bad).is_err(), "{bad}");
        }
        assert!(a.get(&TargetName::try_from("ssh").unwrap()).is_none());
        a.add_bench().unwrap();
        assert_eq!(
            a.get(&TargetName::try_from(BENCH_TARGET).unwrap()),
            Some(&Target::Bench)
        );
        assert!(a.add_bench().is_err(), "bench exposed twice");
    }

    proptest! {
        #[test]
        fn arbitrary_specs_never_panic(s in ".{0,80}") {
            let _ = Allowlist::default().add_spec(&s);
        }

        /// Only the exact name that was exposed matches.
        #[test]
        fn lookup_is_exact(a in "[a-z][a-z0-9-]{0,8}", b in "[a-z][a-z0-9-]{0,8}") {
            let mut list = Allowlist::default();
            list.add(&a, "127.0.0.1:1").unwrap();
            let b = TargetName::try_from(b.as_str()).unwrap();
            prop_assert_eq!(list.get(&b).is_some(), a == b.as_str());
        }
    }
}
