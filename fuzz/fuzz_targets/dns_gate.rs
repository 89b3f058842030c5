//! The DNS gatekeeper's parser and decisions on hostile bytes: a query
//! from the sandbox, and an answer to a pending listed query. Never panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sbx_oci::netpolicy::gate::{self, Decision, GateConfig, Pending, Transport};
use sbx_oci::netpolicy::names::{NamePattern, NameSet};

struct Fixture {
    names: NameSet<usize>,
    cfg: GateConfig,
    /// A pending query for a listed name (so that answers are examined).
    pending: Pending,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let names = NameSet::new(
            ["pypi.org", "*.x.test", "**.d.test"]
                .iter()
                .enumerate()
                .map(|(i, p)| (NamePattern::parse(p).unwrap(), i))
                .collect(),
        );
        let cfg = GateConfig::default();
        // A for pypi.org, id 0x1234, RD.
        let mut q = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend(b"\x04pypi\x03org\x00\x00\x01\x00\x01");
        let Decision::Forward { pending, .. } = gate::query(&q, &names, &cfg, Transport::Udp)
        else {
            panic!("pypi.org is listed");
        };
        Fixture {
            names,
            cfg,
            pending,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let transport = if data.first().is_some_and(|b| b & 1 == 1) {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let _ = gate::query(data, &f.names, &f.cfg, transport);
    let _ = gate::answer(&f.pending, data, &f.cfg);
    let _ = gate::refused(data);
});
