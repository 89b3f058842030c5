//! Install time of an egress policy, in a fresh network namespace per run:
//! compile, then apply over netlink (`sbx_oci::nft::apply`) against the
//! same ruleset through `nft -f -`. Root; sends no packet.
//!
//!     cargo run --release --example netpolicy_bench [-- RUNS]
//!
//! Each run unshares a new network namespace in a new thread (netns is per
//! thread), so every install starts from an empty kernel table and the
//! namespace disappears with the thread.

use std::time::{Duration, Instant};

use sbx_oci::netpolicy::{Allow, Cidr, Policy, Ports, Proto, compile};
use sbx_oci::nft;

/// `n` entries of the shapes users write: hosts on one port, networks,
/// port ranges, UDP, a quarter IPv6.
fn policy(n: usize) -> Policy {
    let allow = (0..n)
        .map(|i| {
            let (a, b) = ((i / 250) as u8, (i % 250) as u8 + 1);
            let v6 = i % 4 == 3;
            let net = match (v6, i % 10) {
                (false, 0) => Cidr::new([10, a, b, 0].into(), 24).unwrap(),
                (false, _) => Cidr::host([10, a, 0, b].into()),
                (true, _) => Cidr::host(format!("fd00:{a}::{b}").parse().unwrap()),
            };
            let ports = match i % 7 {
                0 => Ports {
                    first: 8000,
                    last: 8999,
                },
                1 => Ports::ALL,
                _ => Ports::one(443),
            };
            let proto = if i % 5 == 0 { Proto::Udp } else { Proto::Tcp };
            Allow { proto, net, ports }
        })
        .collect();
    Policy {
        allow,
        gatekeeper: true,
        ..Policy::default()
    }
}

/// Runs `f` in a new thread inside a new network namespace.
fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET): run as root");
        f()
    })
    .join()
    .unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[(v.len() * 9 / 10).min(v.len() - 1)])
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map_or(30, |s| s.parse().expect("RUNS"));
    println!("{runs} runs each, a fresh network namespace per run; median / p90 in ms");
    println!("netlink: until the kernel acked the committed transaction (rules in force);");
    println!("+close: and the socket closed (waits for the kernel to free the old transaction)");
    println!(
        "{:>7} {:>8} {:>15} {:>15} {:>15} {:>15} {:>7}",
        "entries", "elements", "compile", "netlink", "netlink+close", "nft -f", "nft/nl"
    );
    for n in [100, 1000, 10000] {
        let p = policy(n);
        let (mut comp, mut nl, mut nl_close, mut nf) = (vec![], vec![], vec![], vec![]);
        let mut elements = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let r = compile(&p).unwrap();
            comp.push(ms(t.elapsed()));
            elements = r.sets.iter().map(|s| s.elements.len()).sum();
            let r2 = r.clone();
            let (a, c) = in_fresh_netns(move || {
                let t = Instant::now();
                let nl = nft::Netlink::open().unwrap();
                nl.apply(&r2).unwrap();
                let applied = t.elapsed();
                drop(nl);
                let closed = t.elapsed();
                assert_eq!(nft::counters(&r2.table).unwrap().len(), r2.counters.len());
                (ms(applied), ms(closed))
            });
            nl.push(a);
            nl_close.push(c);
            nf.push(in_fresh_netns(move || {
                let t = Instant::now();
                nft::apply_with_nft(&r).unwrap();
                ms(t.elapsed())
            }));
        }
        let (c, n1, n2, n3) = (stats(comp), stats(nl), stats(nl_close), stats(nf));
        let pair = |(m, p): (f64, f64)| format!("{m:>6.2} / {p:>6.2}");
        println!(
            "{n:>7} {elements:>8} {:>15} {:>15} {:>15} {:>15} {:>6.1}x",
            pair(c),
            pair(n1),
            pair(n2),
            pair(n3),
            n3.0 / n2.0
        );
    }
}
