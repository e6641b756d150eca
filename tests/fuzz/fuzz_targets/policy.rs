//! The relay's policy file (`policy.toml`): any text parses or errors, and a
//! parsed policy answers queries without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_fuzz::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::parse(text, "fuzz.toml") {
        let (Ok(client), Ok(agent), Ok(target)) = (
            proto::Name::try_from("alice"),
            proto::AgentName::try_from("edge"),
            proto::TargetName::try_from("db"),
        ) else {
            return;
        };
        let _ = policy.allows_tcp(&client, &agent, &target);
        let _ = policy.allows_shell(&client, &agent);
        let _ = policy.allows_run(&client, &agent);
        let _ = policy.sessions(&client, &agent);
        let _ = policy.mentions(&client, &agent);
    }
});
