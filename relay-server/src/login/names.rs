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

use proto::Name;
use sha2::{Digest, Sha256};

/// Hex digits of the hash a mapped name ends with.
const HASH_HEX: usize = 16;

/// The client name for claim `value` with `prefix` (already checked to
/// be name characters).
///
/// # Errors
/// If the value is empty.
pub(crate) fn client_name(prefix: &str, value: &str) -> Result<Name, String> {
    if value.is_empty() {
        return Err("the claim that names the client is empty".into());
    }
    let lower = format!("{prefix}{}", value.to_lowercase());
    if !looks_mapped(&lower) {
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
    let hash = hex::encode(Sha256::digest(lower.as_bytes()));
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
        assert_eq!(client_name("", "alice").unwrap().as_str(), "alice");
        assert_eq!(client_name("ci-", "Octo").unwrap().as_str(), "ci-octo");
        let mapped = client_name("", "Alice.Smith@Example.com").unwrap();
        assert!(
            mapped.as_str().starts_with("alice.smith-example.com-"),
            "{mapped}"
        );
        let repo = client_name("ci-", "octo-org/deploy").unwrap();
        assert!(repo.as_str().starts_with("ci-octo-org-deploy-"), "{repo}");
        assert!(client_name("", "").is_err());
        assert!(client_name("", "@@@").unwrap().as_str().starts_with("x-"));
        let long = "a".repeat(200);
        assert_eq!(client_name("", &long).unwrap().as_str().len(), 63);
    }

    #[test]
    fn a_value_cannot_spell_another_values_mapped_name() {
        let mapped = client_name("", "alice@example.com").unwrap();
        let spelled = client_name("", mapped.as_str()).unwrap();
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
            let (na, nb) = (client_name("", &a).unwrap(), client_name("", &b).unwrap());
            if a.to_lowercase() != b.to_lowercase() {
                prop_assert_ne!(na, nb);
            } else {
                prop_assert_eq!(na, nb);
            }
        }

        #[test]
        fn near_names_never_collide(a in "[a-z0-9@./-]{1,70}", b in "[a-z0-9@./-]{1,70}") {
            prop_assume!(a != b);
            prop_assert_ne!(client_name("ci-", &a).unwrap(), client_name("ci-", &b).unwrap());
        }
    }
}
