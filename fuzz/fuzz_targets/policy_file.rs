//! The network policy file the hook reads, from hostile bytes: parse,
//! check, the policy, its nftables ruleset and its text. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sbx_oci::netpolicy::{PolicyFile, compile};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = serde_json::from_slice::<PolicyFile>(data) else {
        return;
    };
    if file.check().is_err() {
        return;
    }
    if let Ok(policy) = file.policy()
        && let Ok(rules) = compile(&policy)
    {
        let _ = rules.to_string();
    }
});
