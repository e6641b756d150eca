//! `relay-server check-oidc`: fetches each configured provider's discovery
//! document and keys and says what it found, so a mistake in `[login]` (a
//! wrong issuer, a provider without device login, a proxy in the way)
//! shows at set-up, not at the first person's login.

use std::fmt::Write;

use proto::ProviderKind;
use relay_net::oidc::{discover, get_json, http_client};

use crate::login::settings::LoginSettings;

/// The report for every provider; `Err` if any has a problem (after all
/// were checked and reported).
pub async fn report(settings: &LoginSettings) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let http = match http_client() {
        Ok(http) => http,
        Err(e) => return (format!("{e}\n"), false),
    };
    for p in &settings.providers {
        let kind = match p.kind {
            ProviderKind::People => "people",
            ProviderKind::Workload => "workload",
        };
        let _ = writeln!(out, "provider {} ({kind}): issuer {}", p.name, p.issuer);
        let doc = match discover(&http, &p.issuer).await {
            Ok(doc) => doc,
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "  PROBLEM: {e}");
                continue;
            }
        };
        let show = |what: &str, v: &Option<String>| {
            format!("  {what}: {}\n", v.as_deref().unwrap_or("(none)"))
        };
        out.push_str(&show("authorization endpoint", &doc.authorization_endpoint));
        out.push_str(&show("token endpoint", &doc.token_endpoint));
        out.push_str(&show("device endpoint", &doc.device_authorization_endpoint));
        let _ = writeln!(out, "  keys: {}", doc.jwks_uri);
        match get_json::<serde_json::Value>(&http, &doc.jwks_uri).await {
            Ok(set) => {
                let keys = set["keys"].as_array().cloned().unwrap_or_default();
                if keys.is_empty() {
                    ok = false;
                    let _ = writeln!(out, "  PROBLEM: the provider publishes no keys");
                }
                for k in keys {
                    let field = |f: &str| k[f].as_str().unwrap_or("-").to_owned();
                    let _ = writeln!(
                        out,
                        "    kid {} kty {} alg {} use {}",
                        field("kid"),
                        field("kty"),
                        field("alg"),
                        field("use")
                    );
                }
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "  PROBLEM: {e}");
            }
        }
        if p.kind == ProviderKind::People {
            if doc.authorization_endpoint.is_none() || doc.token_endpoint.is_none() {
                ok = false;
                let _ = writeln!(out, "  PROBLEM: no authorization or token endpoint: people cannot log in in a browser");
            }
            if !doc.code_challenge_methods_supported.is_empty()
                && !doc
                    .code_challenge_methods_supported
                    .iter()
                    .any(|m| m == "S256")
            {
                ok = false;
                let _ = writeln!(out, "  PROBLEM: the provider does not offer PKCE S256");
            }
            if doc.device_authorization_endpoint.is_none() {
                let _ = writeln!(
                    out,
                    "  note: no device login: `relay-client login --device` will not work with it"
                );
            }
            let domain = p
                .name_domain
                .as_ref()
                .map(|d| format!(" (@{d} by its local part)"))
                .unwrap_or_default();
            let groups = p
                .groups_claim
                .as_ref()
                .map(|g| format!(", groups from {g:?}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  client id {}, scopes {:?}; names from {:?}{domain}{groups}",
                p.client_id, p.scopes, p.name_claim
            );
        } else {
            let _ = writeln!(
                out,
                "  audience {:?}; names from {:?} with prefix {:?}",
                p.audience, p.name_claim, p.name_prefix
            );
        }
    }
    (out, ok)
}
