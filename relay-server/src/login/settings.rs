//! The `[login]` section of the relay's config file: which OpenID providers
//! may vouch for clients, and how their tokens become names and groups.
//! Checked in full at start, so a typo is an error that names it, never a
//! login that silently fails or admits more than meant.
//!
//! ```toml
//! [login]
//! max-lifetime = "12h"        # the longest certificate any login gives
//!
//! [[login.provider]]
//! name = "entra"
//! issuer = "https://login.microsoftonline.com/<tenant-id>/v2.0"
//! client-id = "<application (client) id>"
//! name-claim = "email"        # the claim that names the person
//! name-domain = "example.com" # alice@example.com is "alice"
//! groups-claim = "groups"
//! group-map = { "<group object id>" = "sre" }
//!
//! [[login.provider]]
//! name = "github"
//! kind = "workload"
//! issuer = "https://token.actions.githubusercontent.com"
//! audience = "relay://relay.example.com"
//! name-claim = "repository"
//! name-prefix = "ci-"
//! require = { repository_owner = "example", ref = "refs/heads/main" }
//! groups = ["deploy"]
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use proto::{Name, ProviderKind};
use serde::{Deserialize, Deserializer};

/// A person's certificate from a login lives this long unless the provider
/// says less (Teleport's default session, the issue's ceiling).
pub const PEOPLE_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A CI job's certificate: its job, not its day.
pub const WORKLOAD_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The longest a workload may ask for.
pub const WORKLOAD_MAX: Duration = Duration::from_secs(3600);
/// How far the relay's clock and the provider's may disagree.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// `[login]` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LoginFile {
    /// The longest certificate a login gives (default 12 h).
    #[serde(default, deserialize_with = "duration")]
    pub max_lifetime: Option<Duration>,
    /// Tolerated clock difference with providers (default 60 s).
    #[serde(default, deserialize_with = "duration")]
    pub clock_skew: Option<Duration>,
    /// The providers, the default first.
    #[serde(default)]
    pub provider: Vec<ProviderFile>,
}

/// People or workloads, as written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KindFile {
    /// People: browser or device-code login, nonce checked.
    #[default]
    People,
    /// CI jobs: a platform's identity token, used once.
    Workload,
}

/// One `[[login.provider]]` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProviderFile {
    /// How clients name it (`relay-client login --provider`).
    pub name: String,
    /// People (default) or workload.
    #[serde(default)]
    pub kind: KindFile,
    /// The issuer URL, exactly as in its tokens' `iss`.
    pub issuer: String,
    /// People: the client id of the app registration clients log in with.
    pub client_id: Option<String>,
    /// The audience tokens must carry (people: default the client id).
    pub audience: Option<String>,
    /// People: scopes asked for (default openid email profile).
    pub scopes: Option<Vec<String>>,
    /// The claim that names the client (people: `email`; workload: `sub`).
    pub name_claim: Option<String>,
    /// Put before every name from this provider, e.g. `ci-`.
    #[serde(default)]
    pub name_prefix: String,
    /// An e-mail domain whose addresses are named by their local part
    /// (`alice@example.com` → `alice`); other values are mapped.
    pub name_domain: Option<String>,
    /// The claim that lists the client's groups.
    pub groups_claim: Option<String>,
    /// Provider group → policy group; when given, only these groups count.
    #[serde(default)]
    pub group_map: BTreeMap<String, String>,
    /// Groups every client of this provider is in.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Claims a token must carry with these values (a value or a list);
    /// a workload provider must have some.
    #[serde(default)]
    pub require: BTreeMap<String, OneOrMany>,
    /// Default certificate lifetime (people 12 h, workload 15 min).
    #[serde(default, deserialize_with = "duration")]
    pub lifetime: Option<Duration>,
    /// People: the client id the relay's web page signs in with (its
    /// redirect URI is `https://RELAY/login/callback`); default client-id.
    pub web_client_id: Option<String>,
    /// People: a file holding that web client's secret, if the provider
    /// wants one (Entra ID's "Web" platform does); relative to the config file.
    pub web_client_secret_file: Option<std::path::PathBuf>,
}

/// A required claim's accepted value, or values.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Any of these.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The accepted values.
    pub fn values(&self) -> &[String] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!("{text:?}: {e} (write e.g. \"12h\" or \"15m\")"))
    })
}

/// A provider, checked: what the relay works with.
#[derive(Clone, Debug)]
pub struct Provider {
    /// Its name.
    pub name: Name,
    /// People or workloads.
    pub kind: ProviderKind,
    /// Issuer URL.
    pub issuer: String,
    /// The client id people log in with (empty for workloads).
    pub client_id: String,
    /// The audience its tokens must carry.
    pub audience: String,
    /// Scopes, space-separated.
    pub scopes: String,
    /// The naming claim.
    pub name_claim: String,
    /// The name prefix.
    pub name_prefix: String,
    /// The e-mail domain named by local parts.
    pub name_domain: Option<String>,
    /// The groups claim, if any.
    pub groups_claim: Option<String>,
    /// Provider group → policy group (empty: groups that are names count as they are).
    pub group_map: BTreeMap<String, Name>,
    /// Groups every client of it is in.
    pub groups: Vec<Name>,
    /// Required claims.
    pub require: BTreeMap<String, OneOrMany>,
    /// Default certificate lifetime.
    pub lifetime: Duration,
    /// The longest certificate it gives.
    pub max_lifetime: Duration,
    /// The client id of the relay's web page (people).
    pub web_client_id: String,
    /// The file with the web client's secret, if it has one.
    pub web_client_secret_file: Option<std::path::PathBuf>,
}

/// `[login]`, checked.
#[derive(Clone, Debug)]
pub struct LoginSettings {
    /// The providers, the default first.
    pub providers: Vec<Provider>,
    /// Tolerated clock difference.
    pub clock_skew: Duration,
}

impl LoginFile {
    /// Checks every provider; the error names the provider and the key.
    ///
    /// # Errors
    /// A message a person can act on.
    pub fn check(&self) -> Result<LoginSettings, String> {
        let max = self.max_lifetime.unwrap_or(PEOPLE_LIFETIME);
        if max.is_zero() {
            return Err("[login] max-lifetime must be more than 0".into());
        }
        if self.provider.is_empty() {
            return Err(
                "[login] lists no provider: add a [[login.provider]] (or remove [login])".into(),
            );
        }
        let mut providers: Vec<Provider> = Vec::new();
        for file in &self.provider {
            let provider = file
                .check(max)
                .map_err(|e| format!("[[login.provider]] {:?}: {e}", file.name))?;
            if providers.iter().any(|p| p.name == provider.name) {
                return Err(format!("two [[login.provider]] are named {:?}", file.name));
            }
            if let Some(other) = providers
                .iter()
                .find(|p| p.name_prefix == provider.name_prefix)
            {
                return Err(format!(
                    "[[login.provider]] {:?} and {:?} have the same name-prefix {:?}: a name from one could be a name from the other; give each its own (e.g. name-prefix = \"ci-\")",
                    other.name.as_str(),
                    file.name,
                    provider.name_prefix
                ));
            }
            providers.push(provider);
        }
        Ok(LoginSettings {
            providers,
            clock_skew: self.clock_skew.unwrap_or(CLOCK_SKEW),
        })
    }
}

impl ProviderFile {
    fn check(&self, max: Duration) -> Result<Provider, String> {
        let name = Name::try_from(self.name.as_str()).map_err(|e| format!("name: {e}"))?;
        check_issuer(&self.issuer)?;
        let kind = match self.kind {
            KindFile::People => ProviderKind::People,
            KindFile::Workload => ProviderKind::Workload,
        };
        let client_id = self.client_id.clone().unwrap_or_default();
        let audience = match (kind, &self.audience) {
            (_, Some(aud)) if !aud.is_empty() => aud.clone(),
            (ProviderKind::People, _) if !client_id.is_empty() => client_id.clone(),
            (ProviderKind::People, _) => {
                return Err("client-id is missing: the id of the app registration people log in with".into())
            }
            (ProviderKind::Workload, _) => {
                return Err("audience is missing: the audience the CI job asks its token for, e.g. \"relay://relay.example.com\"".into())
            }
        };
        if kind == ProviderKind::People && client_id.is_empty() {
            return Err(
                "client-id is missing: the id of the app registration people log in with".into(),
            );
        }
        if kind == ProviderKind::Workload && self.require.is_empty() {
            return Err("a workload provider needs require = { ... }: a CI platform's issuer signs tokens for every project on it, and any of them can ask for this audience (e.g. require = { repository_owner = \"example-org\" })".into());
        }
        if kind == ProviderKind::Workload
            && (self.web_client_id.is_some() || self.web_client_secret_file.is_some())
        {
            return Err("web-client-id and web-client-secret-file are for people providers: the web page signs people in".into());
        }
        if kind == ProviderKind::Workload && self.client_id.is_some() {
            return Err(
                "client-id is for people providers; a workload provider checks audience".into(),
            );
        }
        let scopes = self
            .scopes
            .clone()
            .unwrap_or_else(|| ["openid", "email", "profile"].map(String::from).to_vec());
        if kind == ProviderKind::People && !scopes.iter().any(|s| s == "openid") {
            return Err("scopes must include \"openid\"".into());
        }
        let name_claim = self.name_claim.clone().unwrap_or_else(|| {
            match kind {
                ProviderKind::People => "email",
                ProviderKind::Workload => "sub",
            }
            .to_owned()
        });
        if !self.name_prefix.is_empty() {
            Name::try_from(format!("{}x", self.name_prefix).as_str()).map_err(|_| {
                format!(
                    "name-prefix {:?} may hold only lowercase letters, digits, '-' and '.'",
                    self.name_prefix
                )
            })?;
        }
        let group = |g: &str, key: &str| {
            Name::try_from(g).map_err(|_| {
                format!("{key}: {g:?} is not a group name (lowercase letters, digits, '-' and '.')")
            })
        };
        let group_map = self
            .group_map
            .iter()
            .map(|(from, to)| Ok((from.clone(), group(to, "group-map")?)))
            .collect::<Result<_, String>>()?;
        let groups = self
            .groups
            .iter()
            .map(|g| group(g, "groups"))
            .collect::<Result<_, _>>()?;
        let (default, ceiling) = match kind {
            ProviderKind::People => (PEOPLE_LIFETIME, max),
            ProviderKind::Workload => (WORKLOAD_LIFETIME, max.min(WORKLOAD_MAX)),
        };
        let lifetime = self.lifetime.unwrap_or(default.min(ceiling));
        if lifetime.is_zero() || lifetime > ceiling {
            return Err(format!(
                "lifetime {} is longer than this provider may give ({})",
                humantime::format_duration(lifetime),
                humantime::format_duration(ceiling)
            ));
        }
        Ok(Provider {
            name,
            kind,
            issuer: self.issuer.clone(),
            client_id: client_id.clone(),
            audience,
            scopes: scopes.join(" "),
            name_claim,
            name_prefix: self.name_prefix.clone(),
            name_domain: self.name_domain.clone(),
            groups_claim: self.groups_claim.clone(),
            group_map,
            groups,
            require: self.require.clone(),
            lifetime,
            max_lifetime: ceiling,
            web_client_id: self
                .web_client_id
                .clone()
                .unwrap_or_else(|| client_id.clone()),
            web_client_secret_file: self.web_client_secret_file.clone(),
        })
    }
}

/// An issuer is an `https://` URL; `http://` only on loopback, for tests
/// and a provider on the same host.
fn check_issuer(issuer: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(issuer).map_err(|e| format!("issuer {issuer:?}: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost",
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "issuer {issuer:?} must be an https:// URL (http:// only on loopback)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LoginSettings, String> {
        let file: LoginFile = toml::from_str(text).map_err(|e| e.to_string())?;
        file.check()
    }

    const ENTRA: &str = "[[provider]]\nname = \"entra\"\nissuer = \"https://login.example.com/t/v2.0\"\nclient-id = \"abc\"\n";

    #[test]
    fn a_people_provider_takes_its_defaults() {
        let s = parse(ENTRA).unwrap();
        let p = &s.providers[0];
        assert_eq!(p.audience, "abc");
        assert_eq!(p.scopes, "openid email profile");
        assert_eq!(p.name_claim, "email");
        assert_eq!(p.lifetime, PEOPLE_LIFETIME);
        assert_eq!(s.clock_skew, CLOCK_SKEW);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            ("[[provider]]\nname = \"e\"\nissuer = \"http://login.example.com\"\nclient-id = \"a\"\n", "https://"),
            ("[[provider]]\nname = \"e\"\nissuer = \"https://x\"\n", "client-id is missing"),
            ("[[provider]]\nname = \"ci\"\nkind = \"workload\"\nissuer = \"https://x\"\n", "audience is missing"),
            ("[[provider]]\nname = \"E\"\nissuer = \"https://x\"\nclient-id = \"a\"\n", "name"),
            ("[[provider]]\nname = \"e\"\nissuer = \"https://x\"\nclient-id = \"a\"\ngroup-map = { x = \"SRE\" }\n", "group-map"),
            ("[[provider]]\nname = \"e\"\nissuer = \"https://x\"\nclient-id = \"a\"\nlifetime = \"13h\"\n", "longer"),
            ("[[provider]]\nname = \"ci\"\nkind = \"workload\"\nissuer = \"https://x\"\naudience = \"a\"\nrequire = { ref = \"r\" }\nlifetime = \"2h\"\n", "longer"),
            ("[[provider]]\nname = \"ci\"\nkind = \"workload\"\nissuer = \"https://x\"\naudience = \"a\"\n", "needs require"),
            (&format!("{ENTRA}{}", ENTRA.replace("entra", "other")), "same name-prefix"),
            (&format!("{ENTRA}{ENTRA}"), "two"),
            ("", "no provider"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(parse(
            "[[provider]]\nname = \"e\"\nissuer = \"http://127.0.0.1:9\"\nclient-id = \"a\"\n"
        )
        .is_ok());
    }
}
