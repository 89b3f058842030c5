//! The DNS gatekeeper, for real (root): sandboxes with names and wildcards
//! in their allowlist resolve them through their own gatekeeper, which asks
//! a dnsmasq on a test host (10.205.N.0/29, in a namespace the test made)
//! and pins the answers into the sandbox's nft sets. Every promise of
//! docs/sandbox.md#names-the-dns-gatekeeper is checked here: listed names
//! connect and only on their ports; addresses follow the records as they
//! change, new connections need a fresh lookup while live ones survive;
//! wildcards match one label or any depth, never the apex; unlisted names
//! never reach upstream; DNS to any other address, and DoT, never leaves;
//! the gatekeeper is gone with the sandbox (also when killed, then DNS
//! fails closed); denials are recorded; learn mode lets all through and
//! records it. Only addresses the tests created are contacted; every wait
//! is bounded.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::{DnsServer, Upstream};
use common::{Env, expect_probes as expect};
use sbx_oci::uplink::link_name;
use serde_json::Value;

const SUBNET: u8 = 205;
const PORT: u16 = 8443;
const OTHER: u16 = 8444;

/// Test hosts .2 (the resolver), .3, .4, .5 (servers on PORT and OTHER).
fn upstream() -> Upstream {
    let mut up = Upstream::new("dg", SUBNET, &[2, 3, 4, 5]);
    for h in [3, 4, 5] {
        for p in [PORT, OTHER] {
            up.tcp(SocketAddr::new(up.v4(h), p));
            up.tcp(SocketAddr::new(up.v6(h), p));
        }
    }
    up
}

/// A shell line printing `label=open` when a TCP connection to
/// `host:port` (a name or an address) gets the server's "ok" within 2 s:
/// for connections expected to be dropped, which always take the whole wait.
fn tcp(label: &str, host: &str, port: u16) -> String {
    format!(
        "if [ \"$(busybox nc -w 2 {host} {port} </dev/null 2>/dev/null)\" = ok ]; \
         then echo {label}=open; else echo {label}=closed; fi; "
    )
}

/// [`tcp`] for connections expected to go through: two tries of 10 s each.
/// nc's wait includes a name's lookup (gatekeeper, resolver, pin), which
/// under TCG beside the other tests has taken over 3 s; a pass costs
/// nothing, and a policy that drops the connection fails both tries.
fn tcp_open(label: &str, host: &str, port: u16) -> String {
    format!(
        "if [ \"$(busybox nc -w 10 {host} {port} </dev/null 2>/dev/null)\" = ok ] || \
            [ \"$(busybox nc -w 10 {host} {port} </dev/null 2>/dev/null)\" = ok ]; \
         then echo {label}=open; else echo {label}=closed; fi; "
    )
}

/// A shell line printing `label=found` when `name` resolves (A), else
/// `label=missing`.
fn resolve(label: &str, name: &str) -> String {
    format!(
        "if getent ahostsv4 {name} >/dev/null 2>&1; then echo {label}=found; \
         else echo {label}=missing; fi; "
    )
}

/// A spec file: an allowlist with `allow`, resolver `dns`, short pins.
fn spec(env: &Env, allow: &[String], dns: IpAddr, extra: &str) -> String {
    let path = env.dir.join(format!("spec-{}.json", allow.len()));
    let allow: Vec<Value> = allow.iter().map(|a| Value::from(a.as_str())).collect();
    let text = format!(
        r#"{{"network": {{"mode": "allowlist", "allow": {}, "dns": ["{dns}"],
            "gatekeeper": {{"ttl_min_s": 1, "ttl_max_s": 60, "grace_s": 1}}{extra}}}}}"#,
        Value::from(allow)
    );
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn run(env: &Env, id: &str, spec: &str, flags: &[&str], script: &str) -> String {
    let mut args = vec!["sandbox", "run", "--name", id, "--spec", spec];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    env.ok(&args)
}

/// The gatekeepers of sandboxes under `root`.
fn gatekeepers(root: &Path) -> Vec<i32> {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            (comm.trim_end() == "sbx-oci-dns" && String::from_utf8_lossy(&cmdline).contains(&root))
                .then_some(pid)
        })
        .collect()
}

/// The runtime's own processes under `root` (sbx-oci, its idle init
/// `sbx-oci-init`, libcontainer's `youki:[...]` stages), the gatekeeper
/// excepted.
fn runtime_processes(root: &Path) -> Vec<i32> {
    let root = root.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim_end();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            ((comm.starts_with("sbx-oci") || comm.starts_with("youki:"))
                && comm != "sbx-oci-dns"
                && pid != me
                && String::from_utf8_lossy(&cmdline).contains(&root))
            .then_some(pid)
        })
        .collect()
}

fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Waits (up to 5 s) for the gatekeepers under `root` to be gone.
fn wait_no_gatekeeper(root: &Path, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gatekeepers(root).is_empty() {
        assert!(
            Instant::now() < deadline,
            "gatekeepers {:?} left {why}",
            gatekeepers(root)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No gatekeeper of `env`'s sandboxes and nothing of `id`'s network left:
/// the gatekeeper exits with the sandbox's init, the link with its
/// namespace (both asynchronously: waited for, up to 10 s).
fn assert_nothing_left(env: &Env, id: &str) {
    let link = link_name(id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gatekeepers(&env.root).is_empty()
        || Path::new(&format!("/sys/class/net/{link}")).exists()
    {
        assert!(
            Instant::now() < deadline,
            "left: gatekeepers {:?}, link {link}",
            gatekeepers(&env.root)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !env.root.join(id).exists(),
        "the state directory of {id} is left"
    );
}

#[test]
fn a_listed_name_connects_on_its_port_only_and_only_after_a_lookup() {
    let mut up = upstream();
    let dns = DnsServer::start(&up.ns, up.v4(2), 60, &[("svc.x.test", up.v4(3))]);
    let env = Env::new("dnslisted");
    let id = env.id("l");
    let addr = up.v4(3).to_string();
    let spec = spec(&env, &[format!("svc.x.test:{PORT}")], up.v4(2), "");
    let script = [
        tcp("before_lookup", &addr, PORT),
        resolve("svc", "svc.x.test"),
        tcp_open("after_lookup", &addr, PORT),
        tcp_open("by_name", "svc.x.test", PORT),
        tcp("other_port", &addr, OTHER),
        tcp("other_host", &up.v4(4).to_string(), PORT),
        resolve("unlisted", "evil.x.test"),
        "getent ahostsv4 evil.x.test; echo unlisted_status=$?; ".to_owned(),
    ]
    .concat();
    let out = run(&env, &id, &spec, &[], &script);
    expect(
        &out,
        &[
            ("before_lookup", "closed"),
            ("svc", "found"),
            ("after_lookup", "open"),
            ("by_name", "open"),
            ("other_port", "closed"),
            ("other_host", "closed"),
            ("unlisted", "missing"),
            // getent: 2 is "not found" (NXDOMAIN), not a failed resolver.
            ("unlisted_status", "2"),
        ],
    );
    let asked = dns.queried();
    assert!(asked.iter().any(|n| n == "svc.x.test"), "{asked:?}");
    assert!(
        !asked.iter().any(|n| n.contains("evil")),
        "an unlisted name reached upstream: {asked:?}"
    );
    assert_nothing_left(&env, &id);
    up.servers.stop();
}

#[test]
fn wildcards_match_one_label_or_any_depth_never_the_apex() {
    let mut up = upstream();
    let (a, b, c) = (up.v4(3), up.v4(4), up.v4(5));
    let records = [
        ("w.x.test", a),
        ("a.w.x.test", b),
        ("a.b.w.x.test", c),
        ("d.x.test", a),
        ("a.d.x.test", b),
        ("a.b.d.x.test", c),
    ];
    let dns = DnsServer::start(&up.ns, up.v4(2), 60, &records);
    let env = Env::new("dnswild");
    let id = env.id("w");
    let spec = spec(
        &env,
        &[format!("*.w.x.test:{PORT}"), format!("**.d.x.test:{PORT}")],
        up.v4(2),
        "",
    );
    let script = [
        resolve("one_label", "a.w.x.test"),
        resolve("one_apex", "w.x.test"),
        resolve("one_deeper", "a.b.w.x.test"),
        resolve("any_one", "a.d.x.test"),
        resolve("any_two", "a.b.d.x.test"),
        resolve("any_apex", "d.x.test"),
        tcp_open("any_two_connects", "a.b.d.x.test", PORT),
        tcp_open("one_label_connects", "a.w.x.test", PORT),
    ]
    .concat();
    let out = run(&env, &id, &spec, &[], &script);
    expect(
        &out,
        &[
            ("one_label", "found"),
            ("one_apex", "missing"),
            ("one_deeper", "missing"),
            ("any_one", "found"),
            ("any_two", "found"),
            ("any_apex", "missing"),
            ("any_two_connects", "open"),
            ("one_label_connects", "open"),
        ],
    );
    let asked = dns.queried();
    for never in ["w.x.test", "a.b.w.x.test", "d.x.test"] {
        assert!(
            !asked.iter().any(|n| n == never),
            "{never} reached upstream: {asked:?}"
        );
    }
    assert_nothing_left(&env, &id);
    up.servers.stop();
}

#[test]
fn dns_to_any_other_address_is_the_gatekeepers_and_dot_never_leaves() {
    let mut up = upstream();
    let dns = DnsServer::start(&up.ns, up.v4(2), 60, &[("svc.x.test", up.v4(3))]);
    // Another resolver on .4 that answers everything: it must hear nothing.
    let rogue = DnsServer::start(&up.ns, up.v4(4), 60, &[("svc.x.test", up.v4(5))]);
    up.tcp(SocketAddr::new(up.v4(4), 853));
    let env = Env::new("dnsother");
    let id = env.id("o");
    let spec = spec(&env, &[format!("svc.x.test:{PORT}")], up.v4(2), "");
    let rogue_addr = up.v4(4);
    // A query sent straight to .4 over UDP and over TCP (python3: the
    // host's, which the sandbox's root has).
    let py = format!(
        r#"
import socket, struct
def q(name):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + labels + b"\0\0\1\0\1"
def answer(b):
    rcode = b[3] & 15
    n = struct.unpack(">H", b[6:8])[0]
    return rcode, n, b[-4:]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10)
u.sendto(q("svc.x.test"), ("{rogue_addr}", 53))
rc, n, last = answer(u.recv(1500))
print("udp_listed=%d,%d,%s" % (rc, n, ".".join(map(str, last))))
u.sendto(q("leak.x.test"), ("{rogue_addr}", 53))
rc, n, _ = answer(u.recv(1500))
print("udp_unlisted=%d" % rc)
t = socket.create_connection(("{rogue_addr}", 53), 10)
m = q("svc.x.test"); t.sendall(struct.pack(">H", len(m)) + m)
ln = struct.unpack(">H", t.recv(2))[0]; b = b""
while len(b) < ln: b += t.recv(ln - len(b))
rc, n, last = answer(b)
print("tcp_listed=%d,%d,%s" % (rc, n, ".".join(map(str, last))))
try:
    socket.create_connection(("{rogue_addr}", 853), 2); print("dot=open")
except OSError:
    print("dot=closed")
"#
    );
    let script = format!("python3 -c '{py}'");
    let out = run(&env, &id, &spec, &[], &script);
    let svc = up.v4(3).to_string();
    expect(
        &out,
        &[
            // The gatekeeper's answer (the listed resolver's address for
            // the name), not the rogue's (.5).
            ("udp_listed", &format!("0,1,{svc}")),
            ("udp_unlisted", "3"),
            ("tcp_listed", &format!("0,1,{svc}")),
            ("dot", "closed"),
        ],
    );
    assert!(
        rogue.queried().is_empty(),
        "the other resolver heard {:?}",
        rogue.queried()
    );
    assert!(dns.queried().iter().any(|n| n == "svc.x.test"));
    assert!(!dns.queried().iter().any(|n| n.contains("leak")));
    assert_nothing_left(&env, &id);
    up.servers.stop();
}

#[test]
fn addresses_follow_the_records_and_live_connections_survive_expiry() {
    let mut up = upstream();
    let (old, new) = (up.v4(3), up.v4(4));
    up.servers.echo(&up.ns.clone(), SocketAddr::new(old, 9000));
    let dns = DnsServer::start(&up.ns, up.v4(2), 1, &[("svc.x.test", old)]);
    let env = Env::new("dnsttl");
    let id = env.id("t");
    let spec = spec(
        &env,
        &[format!("svc.x.test:{PORT}"), "svc.x.test:9000".into()],
        up.v4(2),
        "",
    );
    env.ok(&["sandbox", "create", "--spec", &spec, &id]);
    let exec = |script: &str| env.ok(&["sandbox", "exec", &id, "--", "sh", "-c", script]);
    // A connection opened while the address was pinned, kept by a process
    // in the sandbox: it talks once now and once after the pin expired.
    let keeper = format!(
        r#"
import socket, sys, time
s = socket.create_connection(("{old}", 9000), 2)
s.sendall(b"a"); print("live_before=" + s.recv(8).decode(), flush=True)
time.sleep(4)
s.sendall(b"b"); print("live_after=" + s.recv(8).decode(), flush=True)
"#
    );
    let first = exec(
        &[
            resolve("first", "svc.x.test"),
            tcp("old", &old.to_string(), PORT),
        ]
        .concat(),
    );
    expect(&first, &[("first", "found"), ("old", "open")]);
    let keeper_out = std::thread::scope(|s| {
        let k = s.spawn(|| exec(&format!("python3 -c '{keeper}'")));
        std::thread::sleep(Duration::from_millis(500));
        dns.set(&[("svc.x.test", new)]);
        // TTL 1 s, grace 1 s: the old pin is gone after 2 s.
        std::thread::sleep(Duration::from_millis(2500));
        let after = exec(
            &[
                tcp("old_unresolved", &old.to_string(), PORT),
                resolve("again", "svc.x.test"),
                tcp("new", &new.to_string(), PORT),
                tcp("old_after", &old.to_string(), PORT),
            ]
            .concat(),
        );
        expect(
            &after,
            &[
                ("old_unresolved", "closed"),
                ("again", "found"),
                ("new", "open"),
                ("old_after", "closed"),
            ],
        );
        k.join().unwrap()
    });
    expect(&keeper_out, &[("live_before", "a"), ("live_after", "b")]);
    env.ok(&["delete", "--force", &id]);
    assert_nothing_left(&env, &id);
    up.servers.stop();
}

#[test]
fn stats_record_denials_and_learning_lets_all_through_recording_it() {
    let mut up = upstream();
    let _dns = DnsServer::start(
        &up.ns,
        up.v4(2),
        60,
        &[("svc.x.test", up.v4(3)), ("other.x.test", up.v4(4))],
    );
    let env = Env::new("dnsaudit");
    let id = env.id("a");
    let spec_enforced = spec(&env, &[format!("svc.x.test:{PORT}")], up.v4(2), "");
    env.ok(&["sandbox", "create", "--spec", &spec_enforced, &id]);
    let out = env.ok(&[
        "sandbox",
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        &[
            resolve("denied", "other.x.test"),
            resolve("denied_again", "other.x.test"),
            resolve("listed", "svc.x.test"),
        ]
        .concat(),
    ]);
    expect(&out, &[("denied", "missing"), ("listed", "found")]);
    // The audit is written at most every 200 ms.
    std::thread::sleep(Duration::from_millis(400));
    let stats: Value = serde_json::from_str(&env.ok(&["sandbox", "stats", &id])).unwrap();
    let dns = &stats["network"]["dns"];
    let denied = dns["denied"].as_array().unwrap();
    let other: Vec<&Value> = denied
        .iter()
        .filter(|d| d["name"] == "other.x.test")
        .collect();
    assert!(!other.is_empty(), "{dns}");
    assert!(
        other
            .iter()
            .any(|d| d["type"] == "A" && d["count"].as_u64() >= Some(2)),
        "{dns}"
    );
    assert!(
        other.iter().all(|d| d["reason"] == "unlisted name"),
        "{dns}"
    );
    assert!(dns["queries"].as_u64().unwrap() >= 3, "{dns}");
    let answered = dns["answered"].as_array().unwrap();
    assert!(
        answered
            .iter()
            .any(|a| a["name"] == "svc.x.test" && a["addresses"][0] == up.v4(3).to_string()),
        "{dns}"
    );
    env.ok(&["delete", "--force", &id]);
    assert_nothing_left(&env, &id);

    // Learning: the unlisted name resolves and connects, and is recorded.
    let id = env.id("learn");
    let report = env.dir.join("report.json");
    let out = env.ok(&[
        "sandbox",
        "run",
        "--name",
        &id,
        "--spec",
        &spec_enforced,
        "--learn",
        "--report",
        report.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &[
            resolve("learned", "other.x.test"),
            tcp_open("learned_connects", "other.x.test", PORT),
            tcp_open("unnamed_port", &up.v4(5).to_string(), OTHER),
        ]
        .concat(),
    ]);
    expect(
        &out,
        &[
            ("learned", "found"),
            ("learned_connects", "open"),
            ("unnamed_port", "open"),
        ],
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let net = &report["network"];
    assert_eq!(net["learn"], true, "{net}");
    assert!(
        net["dns"]["denied"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "other.x.test"
                && d["reason"].as_str().unwrap().contains("learn")),
        "{net}"
    );
    // The connections the policy would have dropped, with the name that
    // resolved to their address.
    let dropped = net["dropped"].as_array().unwrap();
    let recorded = dropped
        .iter()
        .find(|d| {
            d["address"] == up.v4(4).to_string()
                && d["port"] == PORT
                && d["names"][0] == "other.x.test"
        })
        .unwrap_or_else(|| panic!("{net}"));
    // When: the last such attempt, moments ago.
    let last = chrono::DateTime::parse_from_rfc3339(recorded["last"].as_str().unwrap()).unwrap();
    let ago = chrono::Utc::now().signed_duration_since(last);
    assert!(ago.num_seconds().abs() < 60, "{recorded}");
    assert_nothing_left(&env, &id);
    up.servers.stop();
}

#[test]
fn the_gatekeeper_goes_with_the_sandbox_and_its_death_fails_closed() {
    let mut up = upstream();
    let _dns = DnsServer::start(&up.ns, up.v4(2), 60, &[("svc.x.test", up.v4(3))]);
    let env = Env::new("dnsgone");
    let spec = spec(&env, &[format!("svc.x.test:{PORT}")], up.v4(2), "");

    // Killed: the sandbox's lookups fail (nothing answers the redirect),
    // and no other resolver is reached instead.
    let id = env.id("k");
    env.ok(&["sandbox", "create", "--spec", &spec, &id]);
    let gk = gatekeepers(&env.root);
    assert_eq!(gk.len(), 1, "one gatekeeper per sandbox");
    let status = std::fs::read_to_string(format!("/proc/{}/status", gk[0])).unwrap();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(caps, "0000000000001000", "only CAP_NET_ADMIN is kept");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    kill9(gk[0]);
    let out = env.ok(&[
        "sandbox",
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        &[
            resolve("after_kill", "svc.x.test"),
            tcp("unresolved", &up.v4(3).to_string(), PORT),
        ]
        .concat(),
    ]);
    expect(&out, &[("after_kill", "missing"), ("unresolved", "closed")]);
    env.ok(&["delete", "--force", &id]);
    assert_nothing_left(&env, &id);

    // Left behind (stopped, so it could not see its sandbox end): gc
    // removes it once the sandbox's state is gone.
    let id = env.id("gc");
    env.ok(&["sandbox", "create", "--spec", &spec, &id]);
    let gk = gatekeepers(&env.root);
    assert_eq!(gk.len(), 1);
    let pid = nix::unistd::Pid::from_raw(gk[0]);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    env.ok(&["delete", "--force", &id]);
    assert_eq!(gatekeepers(&env.root), gk, "stopped, it is still there");
    let report: Value = serde_json::from_str(&env.ok(&["gc"])).unwrap();
    assert_eq!(report["dns_gatekeepers"][0], gk[0], "{report}");
    assert_nothing_left(&env, &id);
    up.servers.stop();
}

#[test]
fn kill_9_of_every_sbx_oci_process_leaves_no_gatekeeper() {
    let mut up = upstream();
    let _dns = DnsServer::start(&up.ns, up.v4(2), 60, &[("svc.x.test", up.v4(3))]);
    let env = Env::new("dnskill");
    let spec = spec(&env, &[format!("svc.x.test:{PORT}")], up.v4(2), "");

    // A `sandbox run` whose runtime is killed, at whatever point it had
    // reached (its state file may be cut short): `delete --force` removes
    // the sandbox, and its gatekeeper exits with the init.
    let id = env.id("run");
    let mut child = env
        .command(&[
            "sandbox",
            "run",
            "--name",
            &id,
            "--spec",
            &spec,
            "--",
            "sh",
            "-c",
            "getent ahostsv4 svc.x.test; sleep 30",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gatekeepers(&env.root).is_empty() {
        assert!(Instant::now() < deadline, "no gatekeeper started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let runtime = runtime_processes(&env.root);
    assert!(!runtime.is_empty(), "no sbx-oci process of {id}");
    for pid in &runtime {
        kill9(*pid);
    }
    let _ = child.wait();
    // Killed before its exec, the init was one of them and the sandbox is
    // gone already; otherwise it runs on. Either way:
    env.ok(&["delete", "--force", &id]);
    wait_no_gatekeeper(&env.root, "after kill -9 of the runtime and delete --force");
    assert_nothing_left(&env, &id);

    // A persistent sandbox whose init (and every sbx-oci process) dies: the
    // gatekeeper exits by itself, before anyone deletes anything.
    let id = env.id("create");
    env.ok(&["sandbox", "create", "--spec", &spec, &id]);
    assert_eq!(gatekeepers(&env.root).len(), 1);
    let mut runtime = runtime_processes(&env.root);
    runtime.push(env.pid(&id));
    for pid in &runtime {
        kill9(*pid);
    }
    wait_no_gatekeeper(&env.root, "after its sandbox died");
    env.ok(&["delete", "--force", &id]);
    assert_nothing_left(&env, &id);
    up.servers.stop();
}

#[test]
fn bad_name_entries_are_refused_before_anything_is_created() {
    let env = Env::new("dnsbad");
    for (entry, want) in [
        ("*.com:443", "wildcard over the top-level domain \"com\""),
        ("**.co.uk:443", "public suffix \"co.uk\""),
        ("a.*.example.com:443", "only as the first label"),
        ("bücher.example:443", "punycode"),
        ("*.example.com", "needs a port"),
    ] {
        let id = env.id("bad");
        env.fails(
            &[
                "sandbox",
                "run",
                "--name",
                &id,
                "--allow",
                entry,
                "--dns",
                "10.205.0.1",
                "--",
                "true",
            ],
            want,
        );
        assert!(!env.root.join(&id).exists());
        assert!(gatekeepers(&env.root).is_empty());
    }
}
