//! From a provider's claim to a client name, without two people ever
//! sharing one.
//!
//! A name is 1 to 63 bytes of `a-z 0-9 - .` (DESIGN "Identity and trust");
//! claims are whatever the provider holds (`Alice.Smith@Example.com`,
//! `octo-org/deploy-repo`). The value is lowercased (e-mail addresses, user
//! principal names and repository names do not differ by case), the
//! provider's `name-prefix` put before it, and if that is a name it is the
//! name. Anything else becomes its characters with each one outside the
//! charset replaced by `-`, cut to fit, and `-` plus 16 hex digits of the
//! value's SHA-256: readable, and two values collide only if SHA-256 does.
//! A value that is a name but ends like a mapped one (`-` and 16 hex
//! digits) is mapped too, so nobody can choose a value that spells
//! another's mapped name.
//!
//! With the provider's `name-domain` (`example.com`), an address in that
//! domain is named by its local part (`alice@example.com` → `alice`), and
//! every other value is mapped, so a bare `alice` from the same provider
//! cannot take that name.

use proto::Name;
use sha2::{Digest, Sha256};

/// Hex digits of the hash a mapped name ends with.
const HASH_HEX: usize = 16;

/// The client name for claim `value` with `prefix` (already checked to
/// be name characters) and, if the provider has one, its `domain`.
///
/// # Errors
/// If the value is empty.
pub(crate) fn client_name(prefix: &str, value: &str, domain: Option<&str>) -> Result<Name, String> {
    if value.is_empty() {
        return Err("the claim that names the client is empty".into());
    }
    let value = value.to_lowercase();
    let (local, in_domain) = match domain {
        Some(domain) => match value.strip_suffix(&format!("@{}", domain.to_lowercase())) {
            Some(local) if !local.is_empty() => (local.to_owned(), true),
            _ => (value.clone(), false),
        },
        None => (value.clone(), true),
    };
    let lower = format!("{prefix}{local}");
    if in_domain && !looks_mapped(&lower) {
        if let Ok(name) = Name::try_from(lower.as_str()) {
            return Ok(name);
        }
    }
    let mut readable: String = lower
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            _ => '-',
        })
        .collect();
    readable.truncate(Name::MAX_LEN - HASH_HEX - 1);
    let readable = readable.trim_end_matches(['-', '.']);
    // The whole value is hashed: two domains' `alice` differ.
    let hash = hex::encode(Sha256::digest(format!("{prefix}{value}").as_bytes()));
    let name = if readable.is_empty() || readable.starts_with(['-', '.']) {
        format!("x-{}", &hash[..HASH_HEX])
    } else {
        format!("{readable}-{}", &hash[..HASH_HEX])
    };
    Name::try_from(name.as_str()).map_err(|e| e.to_string())
}

/// Whether `name` ends in `-` and [`HASH_HEX`] hex digits.
fn looks_mapped(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > HASH_HEX
        && bytes[bytes.len() - HASH_HEX - 1] == b'-'
        && bytes[bytes.len() - HASH_HEX..]
            .iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The policy groups of a provider's group values: through `map` when the
/// provider has one (only mapped groups count), else each value that is a
/// name as it is (others are dropped: a group is matched by its exact name).
pub(crate) fn groups<'a>(
    values: impl IntoIterator<Item = &'a str>,
    map: &std::collections::BTreeMap<String, Name>,
) -> Vec<Name> {
    let mut out: Vec<Name> = values
        .into_iter()
        .filter_map(|v| {
            if map.is_empty() {
                Name::try_from(v).ok()
            } else {
                map.get(v).cloned()
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_stay_readable() {
        assert_eq!(client_name("", "alice", None).unwrap().as_str(), "alice");
        assert_eq!(
            client_name("ci-", "Octo", None).unwrap().as_str(),
            "ci-octo"
        );
        let mapped = client_name("", "Alice.Smith@Example.com", None).unwrap();
        assert!(
            mapped.as_str().starts_with("alice.smith-example.com-"),
            "{mapped}"
        );
        let repo = client_name("ci-", "octo-org/deploy", None).unwrap();
        assert!(repo.as_str().starts_with("ci-octo-org-deploy-"), "{repo}");
        assert!(client_name("", "", None).is_err());
        assert!(client_name("", "@@@", None)
            .unwrap()
            .as_str()
            .starts_with("x-"));
        let long = "a".repeat(200);
        assert_eq!(client_name("", &long, None).unwrap().as_str().len(), 63);
    }

    #[test]
    fn a_domain_names_its_people_by_their_local_part_only() {
        let d = Some("example.com");
        assert_eq!(
            client_name("", "Alice@Example.com", d).unwrap().as_str(),
            "alice"
        );
        let bare = client_name("", "alice", d).unwrap();
        assert!(bare.as_str().starts_with("alice-"), "{bare}");
        let other = client_name("", "alice@other.org", d).unwrap();
        assert!(other.as_str().starts_with("alice-other.org-"), "{other}");
        assert_ne!(client_name("", "@example.com", d).unwrap().as_str(), "");
    }

    #[test]
    fn a_value_cannot_spell_another_values_mapped_name() {
        let mapped = client_name("", "alice@example.com", None).unwrap();
        let spelled = client_name("", mapped.as_str(), None).unwrap();
        assert_ne!(mapped, spelled);
    }

    #[test]
    fn groups_go_through_the_map_when_there_is_one() {
        let map = [("0c1f".to_owned(), Name::try_from("sre").unwrap())]
            .into_iter()
            .collect();
        let names = |v: Vec<Name>| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(groups(["0c1f", "dev", "0c1f"], &map)), ["sre"]);
        assert_eq!(
            names(groups(["dev", "Ops", "sre"], &Default::default())),
            ["dev", "sre"]
        );
    }

    proptest! {
        /// Different values (after lowercasing) never share a name, and
        /// every value gives one.
        #[test]
        fn distinct_values_get_distinct_names(a in ".{1,80}", b in ".{1,80}") {
            let (na, nb) = (client_name("", &a, None).unwrap(), client_name("", &b, None).unwrap());
            if a.to_lowercase() != b.to_lowercase() {
                prop_assert_ne!(na, nb);
            } else {
                prop_assert_eq!(na, nb);
            }
        }

        #[test]
        fn with_a_domain_distinct_values_get_distinct_names(
            a in "[a-z0-9@.-]{1,20}(@example\\.com)?",
            b in "[a-z0-9@.-]{1,20}(@example\\.com)?",
        ) {
            prop_assume!(a != b);
            let d = Some("example.com");
            prop_assert_ne!(client_name("", &a, d).unwrap(), client_name("", &b, d).unwrap());
        }

        #[test]
        fn near_names_never_collide(a in "[a-z0-9@./-]{1,70}", b in "[a-z0-9@./-]{1,70}") {
            prop_assume!(a != b);
            prop_assert_ne!(client_name("ci-", &a, None).unwrap(), client_name("ci-", &b, None).unwrap());
        }
    }
}
