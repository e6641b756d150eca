//! The advisory database cannot be fetched here, so this test pins the
//! lock file past the known advisories of the crates that face the network
//! (notes/reliability.md §2): quinn-proto ≥ 0.11.18 (remote panics and OOM
//! fixed up to GHSA-465w-v9q3-7j98), rustls ≥ 0.23.45 (RUSTSEC-2026-0285).

/// The versions of `name` in Cargo.lock, as (major, minor, patch).
fn locked(lock: &str, name: &str) -> Vec<(u64, u64, u64)> {
    let mut found = Vec::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
            {
                let nums: Vec<u64> = version
                    .trim_end_matches('"')
                    .split(['.', '-', '+'])
                    .take(3)
                    .filter_map(|n| n.parse().ok())
                    .collect();
                if let [a, b, c] = nums[..] {
                    found.push((a, b, c));
                }
            }
        }
    }
    found
}

#[test]
fn network_facing_crates_are_past_known_advisories() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .expect("Cargo.lock at the workspace root");
    for (name, min) in [
        ("quinn-proto", (0, 11, 18)),
        ("rustls", (0, 23, 45)),
        ("quinn", (0, 11, 12)),
    ] {
        let versions = locked(&lock, name);
        assert!(!versions.is_empty(), "{name} not found in Cargo.lock");
        for v in versions {
            assert!(
                v >= min,
                "{name} {v:?} is older than {min:?}, which fixes known advisories"
            );
        }
    }
    assert!(
        locked(&lock, "aws-lc-rs").is_empty(),
        "exactly one crypto provider (ring) in the build"
    );
}
