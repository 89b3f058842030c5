//! A standalone sandbox's network, set up and torn down: the veth pair, its
//! addresses and routes, the host's NAT entries and a 100-entry egress
//! policy, as the network hook does it (`sbx_oci::uplink` and
//! `sbx_oci::nft` over netlink), against the shell approach it replaces
//! (`ip`, `nsenter`, `sysctl` and `nft` processes, 19 of them). Neither
//! deletes the veth pair: the kernel does, with the namespace, when the
//! sandbox's last process is gone (`ip link del` alone waits 40-45 ms for
//! the unregistration). Alternated,
//! one fresh network namespace per run (held by a sleeping process); root;
//! sends no packet.
//!
//!     cargo run --release --example uplink_bench [-- RUNS]

use std::fs::File;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sbx_oci::netpolicy::{Allow, Cidr, Policy, Ports, Proto, compile};
use sbx_oci::{nft, uplink};

fn policy(n: usize) -> Policy {
    let allow = (0..n)
        .map(|i| Allow {
            proto: if i % 5 == 0 { Proto::Udp } else { Proto::Tcp },
            net: Cidr::host([10, (i / 250) as u8, 0, (i % 250) as u8 + 1].into()),
            ports: Ports::one(443),
        })
        .collect();
    Policy {
        allow,
        gatekeeper: true,
        ..Policy::default()
    }
}

/// A process sleeping in a new network namespace.
fn holder() -> Child {
    Command::new("unshare")
        .args(["--net", "sleep", "30"])
        .spawn()
        .expect("unshare(1)")
}

fn wait_ns_ready(pid: u32) {
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .as_ref()
        == Some(&own)
    {
        assert!(
            Instant::now() < deadline,
            "unshare never entered its namespace"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// (total, policy, attach, detach)
fn ours(pid: u32, id: &str, rules: &sbx_oci::netpolicy::Ruleset) -> [Duration; 4] {
    let ns = File::open(format!("/proc/{pid}/ns/net")).unwrap();
    let t = Instant::now();
    // The hook's order: rules, then the way out.
    let ns2 = ns.try_clone().unwrap();
    let r = rules.clone();
    let nl = std::thread::spawn(move || {
        nix::sched::setns(ns2, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let nl = nft::Netlink::open().unwrap();
        nl.apply(&r).unwrap();
        nl // closed after the clock stops, as the hook's forked child does
    })
    .join()
    .unwrap();
    let t1 = Instant::now();
    let host = nft::Netlink::open().unwrap();
    uplink::attach(id, &ns, &uplink::Pools::default(), &host).unwrap();
    let t2 = Instant::now();
    uplink::detach(id).unwrap();
    let t3 = Instant::now();
    drop(nl);
    drop(host);
    // What the hook leaves to a background process when the table is empty.
    nft::host_sweep().unwrap();
    [t3 - t, t1 - t, t2 - t1, t3 - t2]
}

/// The same steps as a shell script: what the issue calls the approach
/// this replaces.
fn shell_script(pid: u32, n: usize, policy_file: &str) -> String {
    let h = format!("sbxsh{n}");
    let a4 = format!("10.198.{}.{}", n / 250, n % 250 + 1);
    let a6 = format!("fd5b:c0c1:a7c5::{:x}", n + 1);
    let inside = format!("nsenter -t {pid} -n");
    [
        format!("ip link add {h} type veth peer name eth0 netns {pid}"),
        format!("ip addr add 169.254.1.1/32 dev {h}"),
        format!("ip -6 addr add fe80::1/64 dev {h} nodad"),
        format!("ip link set {h} up"),
        format!("ip route add {a4}/32 dev {h}"),
        format!("ip -6 route add {a6}/128 dev {h}"),
        format!("{inside} ip link set lo up"),
        format!("{inside} ip addr add {a4}/32 dev eth0"),
        format!("{inside} ip -6 addr add {a6}/128 dev eth0 nodad"),
        format!("{inside} ip link set eth0 up"),
        format!("{inside} ip route add 169.254.1.1 dev eth0"),
        format!("{inside} ip route add default via 169.254.1.1"),
        format!("{inside} ip -6 route add default via fe80::1 dev eth0"),
        "sysctl -qw net.ipv4.ip_forward=1".into(),
        format!("nft add table inet sbxsh_{h}"),
        format!(
            "nft add chain inet sbxsh_{h} post '{{ type nat hook postrouting priority srcnat; }}'"
        ),
        format!("nft add rule inet sbxsh_{h} post ip saddr {a4} masquerade"),
        format!("{inside} nft -f {policy_file}"),
        // The link goes with the namespace, as sbx-oci leaves it.
        format!("nft delete table inet sbxsh_{h}"),
    ]
    .join(" && ")
}

fn shell(pid: u32, n: usize, policy_file: &str) -> Duration {
    let script = shell_script(pid, n, policy_file);
    let t = Instant::now();
    let st = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let d = t.elapsed();
    assert!(st.success(), "the shell approach failed: {script}");
    d
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map_or(20, |s| s.parse().expect("RUNS"));
    let rules = compile(&policy(100)).unwrap();
    let policy_file = std::env::temp_dir().join(format!("uplink-bench-{}.nft", std::process::id()));
    File::create(&policy_file)
        .unwrap()
        .write_all(rules.to_string().as_bytes())
        .unwrap();
    let pf = policy_file.to_str().unwrap().to_owned();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut parts: [Vec<f64>; 3] = Default::default();
    for i in 0..runs {
        for which in [i % 2, 1 - i % 2] {
            let mut child = holder();
            wait_ns_ready(child.id());
            if which == 0 {
                let d = ours(child.id(), &format!("bench{i}"), &rules);
                a.push(ms(d[0]));
                for (p, d) in parts.iter_mut().zip(&d[1..]) {
                    p.push(ms(*d));
                }
            } else {
                b.push(ms(shell(child.id(), i, &pf)));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let _ = std::fs::remove_file(&policy_file);
    let (ma, mb) = (median(a), median(b));
    println!("{runs} runs each, alternated; set up + torn down: veth pair, IPv4 and IPv6");
    println!("addresses and routes, host NAT, a 100-entry egress policy");
    println!("  sbx-oci (netlink)        median {ma:8.2} ms");
    println!("  shell (19 ip/nft calls)  median {mb:8.2} ms");
    println!("  shell / sbx-oci          {:8.1}x", mb / ma);
    let [p, at, de] = parts.map(median);
    println!(
        "  sbx-oci's parts: policy {p:.2} ms, veth+addresses+routes+NAT {at:.2} ms, teardown {de:.2} ms"
    );
}
