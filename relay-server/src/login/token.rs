//! Checking an identity token and reading who it names.
//!
//! Signature (the provider's published keys, asymmetric algorithms only:
//! an `HS256` token would be "signed" with a key anyone may know), issuer,
//! audience, expiry and not-before (within the clock skew), the nonce for
//! people, the provider's required claims; then the name and groups from
//! the configured claims ([`super::names`]). Every refusal says what was
//! wrong in words a person can act on, read from the token's own claims.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use proto::{Name, ProviderKind};
use serde_json::{Map, Value};

use super::keys::ProviderKeys;
use super::names;
use super::settings::Provider;

/// Who a valid token names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    /// The issuer (`iss`).
    pub(crate) issuer: String,
    /// The subject there (`sub`).
    pub(crate) subject: String,
    /// The client name.
    pub(crate) name: Name,
    /// The client's groups.
    pub(crate) groups: Vec<Name>,
    /// The token's id (`jti`), or its hash: what a single use is tracked by.
    pub(crate) token_id: String,
    /// The token's end of validity (`exp`), Unix seconds.
    pub(crate) expires: u64,
}

/// Signature algorithms a provider may sign with.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Checks `token` from `provider`. For people, `nonce` is the one the
/// relay gave this login, if the token claims one of them; a token without
/// a nonce (the device flow has none: RFC 8628) must have been issued
/// after `offered_at` (Unix seconds), when the relay first answered on this
/// connection, so only a token fetched for this login counts (and it
/// counts once: [`super::Logins`] tracks use).
///
/// # Errors
/// Why the token is refused.
pub(crate) async fn verify(
    provider: &Provider,
    keys: &ProviderKeys,
    token: &str,
    nonce: Option<&str>,
    offered_at: Option<u64>,
    skew: Duration,
) -> Result<Verified, String> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| format!("this is not a signed token (JWT): {e}"))?;
    if !ASYMMETRIC.contains(&header.alg) {
        return Err(format!(
            "the token is signed with {:?}; only a provider's public-key signatures are accepted",
            header.alg
        ));
    }
    // Read unchecked, only to word a refusal.
    let claimed = unverified_claims(token).unwrap_or_default();
    if claimed.get("iss").and_then(Value::as_str) != Some(provider.issuer.as_str()) {
        return Err(format!(
            "the token was issued by {}, not by provider {}'s issuer {}",
            shown(claimed.get("iss")),
            provider.name,
            provider.issuer
        ));
    }
    let key = keys.key_for(&header).await?;
    let key = DecodingKey::from_jwk(&key).map_err(|e| format!("the provider's key: {e}"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&provider.issuer]);
    validation.set_audience(&[&provider.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = skew.as_secs();
    validation.validate_nbf = true;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|e| refusal(&e, &claimed, provider))?
        .claims;
    if provider.kind == ProviderKind::People {
        let expected = nonce.unwrap_or_default();
        match claims.get("nonce").and_then(Value::as_str) {
            Some(got) if !expected.is_empty() && got == expected => {}
            Some(_) => return Err("the token's nonce is not one this relay gave for this login (a token from another login, or one used before): log in again".into()),
            None => {
                let issued = claims.get("iat").and_then(Value::as_u64).unwrap_or_default();
                let since = offered_at.ok_or("a login starts with LoginHello on the same connection")?;
                if issued + skew.as_secs() < since {
                    return Err("the token carries no nonce and was issued before this login began: it was not fetched for this login; log in again".into());
                }
            }
        }
    }
    for (claim, accepted) in &provider.require {
        let got = claims.get(claim).and_then(Value::as_str);
        if !got.is_some_and(|g| accepted.values().iter().any(|a| a == g)) {
            return Err(format!(
                "the token's {claim} is {}, and provider {} accepts only {:?}",
                shown(claims.get(claim)),
                provider.name,
                accepted.values()
            ));
        }
    }
    let value = claims
        .get(&provider.name_claim)
        .and_then(Value::as_str)
        .ok_or_else(|| {
            let mut have: Vec<&str> = claims.keys().map(String::as_str).collect();
            have.sort_unstable();
            format!(
                "the token has no {:?} claim to name you by (it has {}); the relay's name-claim for provider {} must be one of them{}",
                provider.name_claim,
                have.join(", "),
                provider.name,
                if provider.kind == ProviderKind::People { ", or the login must ask for the scope that adds it" } else { "" }
            )
        })?;
    let name = names::client_name(
        &provider.name_prefix,
        value,
        provider.name_domain.as_deref(),
    )?;
    let mut groups = provider.groups.clone();
    if let Some(claim) = &provider.groups_claim {
        let values: Vec<&str> = match claims.get(claim) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(one)) => vec![one.as_str()],
            _ => Vec::new(),
        };
        groups.extend(names::groups(values, &provider.group_map));
        groups.sort();
        groups.dedup();
    }
    let string = |key: &str| claims.get(key).and_then(Value::as_str).unwrap_or_default();
    let token_id = match string("jti") {
        "" => {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(token.as_bytes()))
        }
        jti => jti.to_owned(),
    };
    Ok(Verified {
        issuer: string("iss").to_owned(),
        subject: string("sub").to_owned(),
        name,
        groups,
        token_id,
        expires: claims
            .get("exp")
            .and_then(Value::as_u64)
            .unwrap_or_default(),
    })
}

/// What jsonwebtoken's error means for this token, in words.
fn refusal(e: &jsonwebtoken::errors::Error, claimed: &Map<String, Value>, p: &Provider) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => format!(
            "the token expired at {} (Unix time): log in again for a fresh one",
            shown(claimed.get("exp"))
        ),
        ErrorKind::ImmatureSignature => {
            "the token is not valid yet (nbf): check the clocks of the relay and the provider".into()
        }
        ErrorKind::InvalidAudience => format!(
            "the token is for audience {}, not {:?} that provider {} expects",
            shown(claimed.get("aud")),
            p.audience,
            p.name
        ),
        ErrorKind::InvalidIssuer => format!(
            "the token was issued by {}, not by {}",
            shown(claimed.get("iss")),
            p.issuer
        ),
        ErrorKind::InvalidSignature => format!(
            "the token's signature does not verify with provider {}'s keys: it was not issued by {}",
            p.name, p.issuer
        ),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim:?} claim"),
        _ => format!("the token is invalid: {e}"),
    }
}

/// A claim as a refusal shows it.
fn shown(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => format!("{s:?}"),
        Some(v) => v.to_string(),
        None => "missing".into(),
    }
}

/// The nonce a token claims, unchecked: which of the connection's nonces
/// the login spends ([`verify`] then checks it with the signature).
pub(crate) fn nonce_of(token: &str) -> Option<String> {
    unverified_claims(token)?
        .get("nonce")?
        .as_str()
        .map(str::to_owned)
}

/// The claims of a token without checking anything: for messages only.
fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Junk from the network never panics the claim peek.
        #[test]
        fn unverified_claims_never_panics(s in ".{0,200}") {
            let _ = unverified_claims(&s);
        }
    }

    #[test]
    fn peeks_at_the_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#);
        let claims = unverified_claims(&format!("h.{payload}.s")).unwrap();
        assert_eq!(claims["iss"], "x");
        assert!(unverified_claims("nodots").is_none());
    }
}
