//! Allowlist entries, name patterns and network annotations from hostile
//! text: an error or a value that prints back to itself, never a panic.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use sbx_oci::netpolicy::Entry;
use sbx_oci::netpolicy::file::{ALLOW, DNS, from_annotations};
use sbx_oci::netpolicy::names::NamePattern;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = s.parse::<Entry>() {
        let again: Entry = e.to_string().parse().expect("the canonical spelling parses");
        assert_eq!(again, e);
    }
    if let Ok(p) = NamePattern::parse(s) {
        assert_eq!(NamePattern::parse(&p.to_string()).unwrap(), p);
    }
    let (allow, dns) = s.split_once('|').unwrap_or((s, ""));
    let ann: BTreeMap<String, String> = [
        (ALLOW.to_owned(), allow.to_owned()),
        (DNS.to_owned(), dns.to_owned()),
    ]
    .into_iter()
    .collect();
    let _ = from_annotations(&ann);
});
