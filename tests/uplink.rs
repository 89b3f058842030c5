//! Standalone sandboxes on the network, for real (root): `sandbox run` and
//! `create` with `allowlist` and `full` modes get a veth pair, their own
//! addresses and NAT, and reach test hosts in a namespace the test made
//! (10.202.N.0/29, fd00:202:N::/64, joined to the host by a veth pair).
//! Those test hosts have no route back to the sandboxes' pools, so every
//! answer proves the NAT. Only addresses the test created are contacted;
//! names come from a dnsmasq on a test host; every wait is bounded.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use common::netns::Upstream;
use common::{Env, expect_probes as expect};
use sbx_oci::uplink::link_name;

const SUBNET: u8 = 202;
const ALLOWED: u16 = 8001;
const OTHER: u16 = 8002;

/// Test hosts .2 and .3 with TCP servers on ALLOWED and OTHER (IPv4 and
/// IPv6), and UDP servers on ALLOWED and 53.
fn upstream() -> Upstream {
    let mut up = Upstream::new("ul", SUBNET, &[2, 3]);
    for h in [2, 3] {
        for a in [up.v4(h), up.v6(h)] {
            for p in [ALLOWED, OTHER] {
                up.tcp(SocketAddr::new(a, p));
            }
            up.udp(SocketAddr::new(a, ALLOWED));
        }
    }
    up
}

/// A shell line that prints `label=open` when a TCP connection to `addr`
/// gets the server's "ok" within 1 s, `label=closed` otherwise: for ports
/// expected to be dropped, which always take the whole wait.
fn tcp_probe(label: &str, addr: IpAddr, port: u16) -> String {
    format!(
        "if [ \"$(busybox nc -w 1 {addr} {port} </dev/null 2>/dev/null)\" = ok ]; \
         then echo {label}=open; else echo {label}=closed; fi; "
    )
}

/// [`tcp_probe`] for ports expected open: two tries of 10 s each. Under
/// TCG, beside the suite's other tests (or 20 sandboxes starting at once),
/// a first answer has taken seconds (a new veth's first IPv6 SYN alone
/// waits 1 s); a pass costs nothing, and a drop fails both tries.
fn tcp_open(label: &str, addr: IpAddr, port: u16) -> String {
    let once = format!("[ \"$(busybox nc -w 10 {addr} {port} </dev/null 2>/dev/null)\" = ok ]");
    format!("if {once} || {once}; then echo {label}=open; else echo {label}=closed; fi; ")
}

/// The same for UDP: a datagram and its answer, within 1 s, sent `tries`
/// times until one is answered (more than once for ports expected open: a
/// datagram lost on a loaded machine is not resent by anything else).
/// busybox's nc has no UDP: the host's python3, which the sandbox's root has.
fn udp_probe(label: &str, addr: IpAddr, port: u16, tries: u32) -> String {
    let family = if addr.is_ipv4() {
        "AF_INET"
    } else {
        "AF_INET6"
    };
    format!(
        "python3 -c 'import socket, sys
s = socket.socket(socket.{family}, socket.SOCK_DGRAM); s.settimeout(1)
for _ in range({tries}):
    s.sendto(b\"x\", (\"{addr}\", {port}))
    try: print(s.recv(16).decode()); sys.exit()
    except OSError: pass' \
         2>/dev/null | grep -qx ok && echo {label}=open || echo {label}=closed; "
    )
}

/// Runs `script` in a one-shot sandbox named `id` with `flags`; returns
/// its stdout. The command must succeed.
fn run(env: &Env, id: &str, flags: &[&str], script: &str) -> String {
    let mut args = vec!["sandbox", "run", "--name", id];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    env.ok(&args)
}

/// The host's NAT table, as nft lists it ("" when there is none).
fn host_table() -> String {
    let out = Command::new("nft")
        .args(["list", "table", "inet", "sbx_oci_host"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Nothing of sandbox `id`'s network is left on the host: no link, no
/// route through it, no NAT entry.
/// The link goes with the sandbox's namespace, which the kernel tears down
/// asynchronously once its last process is gone: waited for, up to 10 s.
fn assert_no_network_left(id: &str) {
    let link = link_name(id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/sys/class/net/{link}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "link {link} of {id} left"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for family in ["-4", "-6"] {
        let routes = Command::new("ip").args([family, "route"]).output().unwrap();
        assert!(
            !String::from_utf8_lossy(&routes.stdout).contains(&link),
            "a route through {link} left"
        );
    }
    let table = host_table();
    assert!(
        !table.contains(&format!("\"{link}\"")) && !table.contains(&format!("\"{id}\"")),
        "NAT entries of {id} left: {table}"
    );
}

#[test]
fn full_mode_reaches_test_hosts_over_ipv4_and_ipv6_through_nat() {
    let up = upstream();
    let env = Env::new("ulfull");
    let id = env.id("full");
    let script = [
        tcp_open("v4", up.v4(2), ALLOWED),
        tcp_open("v6", up.v6(2), ALLOWED),
        tcp_open("v4other", up.v4(3), OTHER),
        udp_probe("udp", up.v4(2), ALLOWED, 5),
        "busybox ip -o addr show eth0; ".into(),
    ]
    .concat();
    let out = run(&env, &id, &["--network", "full"], &script);
    expect(
        &out,
        &[
            ("v4", "open"),
            ("v6", "open"),
            ("v4other", "open"),
            ("udp", "open"),
        ],
    );
    // Its own addresses from the default pools.
    assert!(out.contains("inet 10.199."), "{out}");
    assert!(out.contains("inet6 fd5b:c0c1:a7c4:"), "{out}");
    assert!(!env.root.join(&id).exists());
    assert_no_network_left(&id);
}

#[test]
fn allowlist_lets_out_only_what_it_lists() {
    let up = upstream();
    let env = Env::new("ulallow");
    let id = env.id("allow");
    let allow4 = format!("{}:{ALLOWED}", up.v4(2));
    let allow6 = format!("[{}]:{OTHER}", up.v6(2));
    let allow_udp = format!("udp://{}:{ALLOWED}", up.v4(3));
    let dns = up.v4(2).to_string();
    let script = [
        tcp_open("allowed", up.v4(2), ALLOWED),
        tcp_probe("other_port", up.v4(2), OTHER),
        tcp_probe("other_host", up.v4(3), ALLOWED),
        udp_probe("udp_same_port", up.v4(2), ALLOWED, 1),
        udp_probe("udp_listed", up.v4(3), ALLOWED, 5),
        tcp_open("v6_listed", up.v6(2), OTHER),
        tcp_probe("v6_unlisted_port", up.v6(2), ALLOWED),
        // 53 on .3 answers anything; .3 is not a listed resolver.
        udp_probe("dns_unlisted", up.v4(3), 53, 1),
        "cat /etc/resolv.conf; ".into(),
    ]
    .concat();
    let out = run(
        &env,
        &id,
        &[
            "--allow", &allow4, "--allow", &allow6, "--allow", &allow_udp, "--dns", &dns,
        ],
        &script,
    );
    expect(
        &out,
        &[
            ("allowed", "open"),
            ("other_port", "closed"),
            ("other_host", "closed"),
            ("udp_same_port", "closed"),
            ("udp_listed", "open"),
            ("v6_listed", "open"),
            ("v6_unlisted_port", "closed"),
            ("dns_unlisted", "closed"),
        ],
    );
    assert!(out.contains(&format!("nameserver {dns}")), "{out}");
    assert_no_network_left(&id);
}

#[test]
fn names_resolve_through_the_listed_resolver_and_only_their_addresses_open() {
    let mut up = upstream();
    let resolver = up.v4(2);
    let (v4, v6) = (up.v4(3), up.v6(3));
    up.dns(resolver, &[("svc.sbx.test", v4), ("svc.sbx.test", v6)]);
    let env = Env::new("uldns");
    let id = env.id("dns");
    let allow = format!("svc.sbx.test:{ALLOWED}");
    let script = [
        "busybox nslookup svc.sbx.test | grep -c Address: ; ".to_owned(),
        format!(
            "if [ \"$(busybox nc -w 10 svc.sbx.test {ALLOWED} </dev/null)\" = ok ]; then echo by_name=open; \
             else echo by_name=closed; fi; "
        ),
        tcp_open("v6", v6, ALLOWED),
        tcp_probe("other_port", v4, OTHER),
        tcp_probe("resolver_host", resolver, ALLOWED),
    ]
    .concat();
    let out = run(
        &env,
        &id,
        &["--allow", &allow, "--dns", &resolver.to_string()],
        &script,
    );
    expect(
        &out,
        &[
            ("by_name", "open"),
            ("v6", "open"),
            ("other_port", "closed"),
            ("resolver_host", "closed"),
        ],
    );
    assert_no_network_left(&id);
}

#[test]
fn twenty_sandboxes_at_once_each_with_its_own_allowlist_and_address() {
    const N: usize = 20;
    let mut up = Upstream::new("ul20", SUBNET, &[2]);
    let base = 9100;
    for i in 0..N {
        let a = SocketAddr::new(up.v4(2), base + i as u16);
        up.tcp(a);
    }
    let env = Env::new("ul20");
    let target = up.v4(2);
    let outs: Vec<(String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let env = &env;
                s.spawn(move || {
                    let id = env.id(&format!("n{i}"));
                    let own = base + i as u16;
                    let next = base + ((i + 1) % N) as u16;
                    let script = [
                        tcp_open("own", target, own),
                        tcp_probe("neighbour", target, next),
                        "busybox ip -o -4 addr show eth0; ".into(),
                    ]
                    .concat();
                    let allow = format!("{target}:{own}");
                    (
                        id.clone(),
                        run(
                            env,
                            &id,
                            // The test host as the resolver: no lookup is
                            // made, and none could leave for elsewhere.
                            &["--allow", &allow, "--dns", &target.to_string()],
                            &script,
                        ),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addresses = BTreeSet::new();
    for (id, out) in &outs {
        expect(out, &[("own", "open"), ("neighbour", "closed")]);
        let addr = out
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap_or_else(|| panic!("no address in {out}"))
            .to_owned();
        addresses.insert(addr);
        assert_no_network_left(id);
    }
    assert_eq!(
        addresses.len(),
        N,
        "every sandbox its own address: {addresses:?}"
    );
}

#[test]
fn runc_running_a_sandbox_bundle_enforces_its_policy_and_cleans_up() {
    if Command::new("runc").arg("--version").output().is_err() {
        panic!("runc is not installed (apt-get install runc)");
    }
    let mut up = upstream();
    // A name too: the gatekeeper runc's hook starts answers it.
    up.dns(up.v4(2), &[("svc.sbx.test", up.v4(3))]);
    let env = Env::new("ulrunc");
    let id = env.id("runc");
    let bundle = env.dir.join("bundle");
    let allow = format!("{}:{ALLOWED}", up.v4(2));
    let named = format!("svc.sbx.test:{ALLOWED}");
    let script = [
        tcp_open("allowed", up.v4(2), ALLOWED),
        tcp_probe("other_port", up.v4(2), OTHER),
        format!(
            // busybox nc's -w covers the name's resolution too, and the
            // first answer goes through the gatekeeper, the upstream and a
            // pin: 0.2-0.3 s in an idle TCG guest, over 3 s at times while
            // the suite's other tests run beside it. Expected open, so a
            // longer wait costs nothing when it passes.
            "if [ \"$(busybox nc -w 10 svc.sbx.test {ALLOWED} </dev/null)\" = ok ]; then \
             echo by_name=open; else echo by_name=closed; fi; "
        ),
        "getent hosts unlisted.sbx.test >/dev/null && echo unlisted=found || echo unlisted=missing; "
            .to_owned(),
    ]
    .concat();
    env.ok(&[
        "sandbox",
        "bundle",
        "--name",
        &id,
        "--out",
        bundle.to_str().unwrap(),
        "--allow",
        &allow,
        "--allow",
        &named,
        "--dns",
        &up.v4(2).to_string(),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let runc_root = env.dir.join("runc");
    let out = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "-b", bundle.to_str().unwrap(), &id])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "runc: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect(
        &stdout,
        &[
            ("allowed", "open"),
            ("other_port", "closed"),
            ("by_name", "open"),
            ("unlisted", "missing"),
        ],
    );
    // runc ran the poststop hook when the container went, and the
    // gatekeeper went with the container's init.
    assert_no_network_left(&id);
    let bundle_path = bundle.to_string_lossy().into_owned();
    let gatekeeper_left = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let p = e.path();
            std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim_end() == "sbx-oci-dns")
                && std::fs::read(p.join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&bundle_path))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gatekeeper_left() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gatekeeper outlived runc's container"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_pool_with_no_free_address_fails_closed_and_leaves_nothing() {
    let env = Env::new("ulpool");
    let spec = env.dir.join("spec.json");
    // A /30: two sandbox addresses.
    std::fs::write(
        &spec,
        r#"{"network": {"mode": "full", "ipv4_pool": "10.202.254.0/30", "ipv6_pool": "none"}}"#,
    )
    .unwrap();
    let spec = spec.to_str().unwrap();
    let (a, b, c) = (env.id("a"), env.id("b"), env.id("c"));
    env.ok(&["sandbox", "create", "--spec", spec, &a]);
    env.ok(&["sandbox", "create", "--spec", spec, &b]);
    let err = env.fails(
        &["sandbox", "create", "--spec", spec, &c],
        "no free address in the pool 10.202.254.0/30",
    );
    assert!(err.contains("larger pool"), "{err}");
    assert!(
        !env.root.join(&c).exists(),
        "state of the failed sandbox left"
    );
    assert_no_network_left(&c);
    for id in [&a, &b] {
        env.ok(&["delete", "--force", id]);
        assert_no_network_left(id);
    }
}

#[test]
fn gc_removes_what_a_crashed_runtime_left() {
    let env = Env::new("ulgc");
    let id = env.id("gc");
    env.ok(&["sandbox", "create", "--network", "full", &id]);
    let link = link_name(&id);
    assert!(host_table().contains(&format!("\"{link}\"")));
    // A crash: the sandbox's processes die and the runtime's state is lost;
    // the kernel takes the namespace and its link, not the NAT entries.
    let pid = env.pid(&id);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/sys/class/net/{link}")).exists() {
        assert!(std::time::Instant::now() < deadline, "{link} never went");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The runtime's state and cgroups are gone with it.
    let _ = std::fs::remove_dir_all(env.root.join(&id));
    for dir in common::cgroup_dirs(&format!("sbx-oci-{id}")) {
        let _ = std::fs::remove_dir(dir);
    }
    assert!(
        host_table().contains(&format!("\"{link}\"")),
        "the leftover is there"
    );
    // Two half-created containers (a directory, no state): one from a crash
    // long ago, one that could be a create in progress.
    let (old, fresh) = (env.id("old"), env.id("fresh"));
    for dir in [&old, &fresh] {
        std::fs::create_dir_all(env.root.join(dir)).unwrap();
    }
    let st = Command::new("touch")
        .args(["-d", "5 minutes ago"])
        .arg(env.root.join(&old))
        .status()
        .unwrap();
    assert!(st.success());
    let report: serde_json::Value = serde_json::from_str(&env.ok(&["gc"])).unwrap();
    assert_eq!(report["half_created"], serde_json::json!([old]), "{report}");
    assert!(!env.root.join(&old).exists());
    assert!(
        env.root.join(&fresh).exists(),
        "a create in progress is left alone"
    );
    let nat = report["nat_entries"].as_array().unwrap();
    assert!(
        nat.iter()
            .any(|e| e["link"] == link.as_str() && e["sandbox"] == id.as_str()),
        "{report}"
    );
    assert_no_network_left(&id);
}

#[test]
fn exposed_ports_are_open_from_the_host_and_stats_show_the_addresses() {
    let env = Env::new("ulexpose");
    let id = env.id("exp");
    let spec = env.dir.join("spec.json");
    std::fs::write(
        &spec,
        r#"{"network": {"mode": "allowlist", "dns": [], "expose": ["8080"]}}"#,
    )
    .unwrap();
    env.ok(&["sandbox", "create", "--spec", spec.to_str().unwrap(), &id]);
    // Two servers in the sandbox, only one of them exposed.
    env.ok(&[
        "sandbox",
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "for p in 8080 8081; do busybox nc -ll -p $p -e echo ok </dev/null >/dev/null 2>&1 & done",
    ]);
    let stats: serde_json::Value =
        serde_json::from_str(&env.ok(&["sandbox", "stats", &id])).unwrap();
    let net = &stats["network"];
    assert_eq!(net["link"], link_name(&id).as_str(), "{stats}");
    let addrs: Vec<IpAddr> = net["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(addrs.len(), 2, "{stats}");
    let connect = |addr: IpAddr, port: u16| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        // The servers may still be starting: retry refusals, not silence.
        loop {
            match std::net::TcpStream::connect_timeout(
                &SocketAddr::new(addr, port),
                std::time::Duration::from_secs(1),
            ) {
                Ok(mut s) => {
                    let mut buf = String::new();
                    let _ = std::io::Read::read_to_string(&mut s, &mut buf);
                    return buf.trim() == "ok";
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    if std::time::Instant::now() > deadline {
                        return false;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(_) => return false,
            }
        }
    };
    for a in &addrs {
        assert!(connect(*a, 8080), "exposed port at {a}");
        assert!(!connect(*a, 8081), "port 8081 at {a} is not exposed");
    }
    env.ok(&["delete", "--force", &id]);
    assert_no_network_left(&id);
}

/// A plain bundle (not a sandbox) whose annotations ask for an allowlist in
/// a namespace the runtime makes gets the same way out; `delete` takes it
/// down (ctr without CNI, or `sbx-oci run` directly).
#[test]
fn annotations_on_a_runtime_made_namespace_get_a_way_out_too() {
    let up = upstream();
    let mut env = Env::new("ulann");
    let id = env.id("ann");
    let script = [
        tcp_open("allowed", up.v4(2), ALLOWED),
        tcp_probe("other_port", up.v4(2), OTHER),
    ]
    .concat()
    .replace("busybox nc", "nc");
    let allow = format!("{}:{ALLOWED}", up.v4(2));
    let dns = up.v4(2).to_string();
    let bundle = env.bundle_with(&id, &["sh", "-c", &script], |c| {
        c["annotations"] = serde_json::json!({
            "org.sbx-oci.network.allow": allow,
            "org.sbx-oci.network.dns": dns,
        });
    });
    let out = env.ok(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    expect(&out, &[("allowed", "open"), ("other_port", "closed")]);
    env.assert_gone(&id);
    assert_no_network_left(&id);
}

/// A create that fails after the network hook ran (here: the command does
/// not exist) takes the way out down again: its poststop hook never runs.
#[test]
fn a_failed_create_after_the_hook_leaves_no_network() {
    let env = Env::new("ulfail");
    let id = env.id("fail");
    let out = env.sbx(&[
        "sandbox",
        "run",
        "--name",
        &id,
        "--network",
        "full",
        "--",
        "/no/such/cmd",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/cmd"), "{err}");
    assert!(!env.root.join(&id).exists(), "state of {id} left");
    assert_no_network_left(&id);
}
