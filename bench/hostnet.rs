//! Time of `host_attach` + `host_detach` on the host table of standalone
//! sandboxes, in a fresh network namespace (root; sends no packet):
//!
//!     cargo run --release --example hostnet_bench [-- RUNS]
//!
//! cold: the attach creates the table and the detach deletes it (the first
//! and the last sandbox); warm: N other sandboxes keep the table, so both
//! only add or delete elements (after reading the sets).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use sbx_oci::nft::{host_attach, host_detach};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[(v.len() * 9 / 10).min(v.len() - 1)])
}

fn addrs(i: u32) -> (Ipv4Addr, Ipv6Addr) {
    (
        Ipv4Addr::from(0x0a50_0000 + i),
        Ipv6Addr::from(0xfd80_u128 << 112 | u128::from(i)),
    )
}

/// (attach, detach) times of `runs` rounds on link "sbx-bench", with
/// `others` sandboxes attached around it.
fn rounds(runs: usize, others: u32) -> (Vec<f64>, Vec<f64>) {
    for i in 0..others {
        let (a, b) = addrs(i + 1);
        host_attach(&format!("sbx-o{i}"), Some(a), Some(b), "other").unwrap();
    }
    let (a, b) = addrs(0xffff);
    let (mut att, mut det) = (vec![], vec![]);
    for _ in 0..runs {
        let t = Instant::now();
        host_attach("sbx-bench", Some(a), Some(b), "bench").unwrap();
        att.push(ms(t.elapsed()));
        let t = Instant::now();
        assert_eq!(host_detach("sbx-bench").unwrap(), 2);
        det.push(ms(t.elapsed()));
    }
    for i in 0..others {
        host_detach(&format!("sbx-o{i}")).unwrap();
    }
    (att, det)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map_or(200, |s| s.parse().expect("RUNS"));
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET): run as root");
        println!(
            "{runs} rounds each; median / p90 in ms, each call until it returned (socket closed)"
        );
        println!(
            "{:>22} {:>15} {:>15} {:>15}",
            "", "attach", "detach", "attach+detach"
        );
        for (label, others) in [
            ("cold (table made/gone)", 0),
            ("warm, 1 other", 1),
            ("warm, 100 others", 100),
            ("warm, 1000 others", 1000),
        ] {
            let (a, d) = rounds(runs, others);
            let both: Vec<f64> = a.iter().zip(&d).map(|(x, y)| x + y).collect();
            let pair = |(m, p): (f64, f64)| format!("{m:>6.2} / {p:>6.2}");
            println!(
                "{label:>22} {:>15} {:>15} {:>15}",
                pair(stats(a)),
                pair(stats(d)),
                pair(stats(both))
            );
        }
    })
    .join()
    .unwrap();
}
