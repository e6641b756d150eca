//! The agent's allowlist rules (`--expose NAME=HOST:PORT`), several per
//! input (one per line), so duplicates are exercised too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_fuzz::allowlist::Allowlist;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut allowlist = Allowlist::default();
    let mut added = 0;
    for spec in text.lines() {
        if allowlist.add_spec(spec).is_ok() {
            added += 1;
        }
    }
    assert_eq!(allowlist.names().len(), added);
    for name in allowlist.names() {
        assert!(allowlist.get(&name).is_some());
    }
});
