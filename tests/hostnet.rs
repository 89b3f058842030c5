//! The host table of standalone sandboxes for real (root). Each test makes
//! its own network namespaces and calls the API from threads that entered
//! them, so the host's own ruleset is never touched and tests run
//! concurrently (serialized only by the host-wide lock file). Packets go
//! only between namespaces the test made.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::netns::{Netns, enter, ip};
use sbx_oci::netpolicy::host::{HOST_TABLE, host_ruleset};
use sbx_oci::nft::{self, HostElement, host_attach, host_collect, host_detach, host_elements};

fn v4(s: &str) -> Option<Ipv4Addr> {
    Some(s.parse().unwrap())
}

fn v6(s: &str) -> Option<Ipv6Addr> {
    Some(s.parse().unwrap())
}

fn el(link: &str, addr: &str, owner: &str) -> HostElement {
    HostElement {
        link: link.into(),
        addr: addr.parse().unwrap(),
        owner: owner.into(),
    }
}

impl Netns {
    fn listed(&self) -> Option<String> {
        self.exec(&["nft", "list", "table", "inet", HOST_TABLE])
    }

    fn elements(&self) -> Vec<HostElement> {
        let mut v = self.run(|| host_elements().unwrap());
        v.sort();
        v
    }

    fn attach(&self, link: &'static str, a: Option<Ipv4Addr>, b: Option<Ipv6Addr>, owner: &str) {
        let owner = owner.to_owned();
        self.run(move || host_attach(link, a, b, &owner)).unwrap();
    }

    fn detach(&self, link: &'static str) -> usize {
        self.run(move || host_detach(link)).unwrap()
    }
}

#[test]
fn attach_list_detach_and_the_table_goes_with_the_last_sandbox() {
    let ns = Netns::new("hn");
    assert!(ns.elements().is_empty(), "no table: nothing listed");
    assert_eq!(ns.detach("sbx-unknown"), 0, "no table: nothing to detach");

    ns.attach("sbx-aaaa", v4("10.0.0.2"), v6("fd00::2"), "sandbox-a");
    ns.attach("sbx-bbbb", v4("10.0.0.3"), v6("fd00::3"), "sandbox-b");
    assert_eq!(
        ns.elements(),
        [
            el("sbx-aaaa", "10.0.0.2", "sandbox-a"),
            el("sbx-aaaa", "fd00::2", "sandbox-a"),
            el("sbx-bbbb", "10.0.0.3", "sandbox-b"),
            el("sbx-bbbb", "fd00::3", "sandbox-b"),
        ]
    );
    let listed = ns.listed().unwrap();
    for want in [
        r#""sbx-aaaa" . 10.0.0.2 comment "sandbox-a""#,
        r#""sbx-bbbb" . 10.0.0.3 comment "sandbox-b""#,
        r#""sbx-aaaa" . fd00::2 comment "sandbox-a""#,
        r#""sbx-bbbb" . fd00::3 comment "sandbox-b""#,
        r#"10.0.0.2 comment "sandbox-a""#,
        r#"fd00::3 comment "sandbox-b""#,
        "iifname . ip saddr @links4 accept",
        "ip6 saddr @nat6 masquerade",
    ] {
        assert!(listed.contains(want), "{want:?} in\n{listed}");
    }

    assert_eq!(ns.detach("sbx-unknown"), 0, "an unknown link");
    assert_eq!(ns.detach("sbx-aaaa"), 2);
    assert_eq!(
        ns.elements(),
        [
            el("sbx-bbbb", "10.0.0.3", "sandbox-b"),
            el("sbx-bbbb", "fd00::3", "sandbox-b"),
        ]
    );
    let listed = ns
        .listed()
        .expect("the table stays while a sandbox is attached");
    assert!(!listed.contains("sandbox-a"), "{listed}");
    assert!(!listed.contains("10.0.0.2"), "{listed}");
    assert_eq!(ns.detach("sbx-aaaa"), 0, "already detached");

    assert_eq!(ns.detach("sbx-bbbb"), 2);
    assert!(ns.listed().is_none(), "no table once the last one is gone");
    assert!(ns.elements().is_empty());
}

#[test]
fn attaching_again_replaces_the_links_elements() {
    let ns = Netns::new("hr");
    ns.attach("sbx-r", v4("10.0.0.2"), v6("fd00::2"), "first");
    ns.attach("sbx-r", v4("10.0.0.2"), v6("fd00::2"), "first");
    ns.attach("sbx-other", v4("10.0.0.7"), None, "other");
    assert_eq!(ns.elements().len(), 3, "attaching twice adds nothing");

    // Same link, a new sandbox: one address kept under a new owner, the
    // IPv6 one gone.
    ns.attach("sbx-r", v4("10.0.0.2"), None, "second");
    assert_eq!(
        ns.elements(),
        [
            el("sbx-other", "10.0.0.7", "other"),
            el("sbx-r", "10.0.0.2", "second"),
        ]
    );
    let listed = ns.listed().unwrap();
    assert!(listed.contains(r#"10.0.0.2 comment "second""#), "{listed}");
    assert!(!listed.contains("first"), "{listed}");
    assert!(!listed.contains("fd00::2"), "masquerade follows: {listed}");
    assert_eq!(ns.detach("sbx-r"), 1);
    assert_eq!(ns.detach("sbx-other"), 1);
    assert!(ns.listed().is_none());
}

/// What the netlink code installs is what nft installs from the golden
/// text and `add element … comment`: the same listing, comments included.
#[test]
fn netlink_installs_what_nft_f_installs() {
    let ours = Netns::new("hl");
    let theirs = Netns::new("hm");
    ours.attach("sbx-one", v4("10.0.0.2"), v6("fd00::2"), "sandbox-one");

    let mut text = host_ruleset().to_string();
    text.push_str(&format!(
        "add element inet {HOST_TABLE} links4 {{ \"sbx-one\" . 10.0.0.2 comment \"sandbox-one\" }}\n\
         add element inet {HOST_TABLE} links6 {{ \"sbx-one\" . fd00::2 comment \"sandbox-one\" }}\n\
         add element inet {HOST_TABLE} nat4 {{ 10.0.0.2 comment \"sandbox-one\" }}\n\
         add element inet {HOST_TABLE} nat6 {{ fd00::2 comment \"sandbox-one\" }}\n"
    ));
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hostnet-{}.nft", std::process::id()));
    std::fs::write(&file, text).unwrap();
    let applied = theirs.exec(&["nft", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    applied.expect("nft -f of the golden text and elements");

    let (a, b) = (ours.listed().unwrap(), theirs.listed().unwrap());
    assert_eq!(a, b, "netlink:\n{a}\nnft -f:\n{b}");
    assert!(
        a.contains(r#"elements = { "sbx-one" . 10.0.0.2 comment "sandbox-one" }"#),
        "{a}"
    );

    // And nft's elements read back through netlink.
    assert_eq!(
        theirs.elements(),
        [
            el("sbx-one", "10.0.0.2", "sandbox-one"),
            el("sbx-one", "fd00::2", "sandbox-one"),
        ]
    );
    assert_eq!(theirs.detach("sbx-one"), 2);
    assert!(theirs.listed().is_none());
}

/// Attaches and detaches link `sbx-conc<i>` 5 times, checking each time
/// that its elements are there, and only its own.
fn churn(i: u8) {
    let link = format!("sbx-conc{i}");
    let (a, b) = (
        Ipv4Addr::new(10, 0, 1, i + 2),
        format!("fd00:1::{}", i + 2).parse().unwrap(),
    );
    for round in 0..5 {
        let owner = format!("sandbox-{i}-{round}");
        host_attach(&link, Some(a), Some(b), &owner).unwrap();
        let mine: Vec<HostElement> = host_elements()
            .unwrap()
            .into_iter()
            .filter(|e| e.link == link)
            .collect();
        assert_eq!(mine.len(), 2, "{link} round {round}: {mine:?}");
        assert!(mine.iter().all(|e| e.owner == owner), "{mine:?}");
        assert_eq!(host_detach(&link).unwrap(), 2, "{link} round {round}");
    }
}

#[test]
fn concurrent_attach_and_detach_leave_no_table() {
    let ns = Netns::new("hc");
    let workers: Vec<_> = (0..10u8)
        .map(|i| {
            let name = ns.name.clone();
            std::thread::spawn(move || {
                enter(&name);
                churn(i);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(ns.listed().is_none(), "no table after the last detach");
}

const WORKER: &str = "SBX_HOSTNET_WORKER";

/// The worker of the test below, run by it in processes of its own.
#[test]
#[ignore = "run by concurrent_processes_leave_no_table"]
fn churn_process() {
    if let Ok(i) = std::env::var(WORKER) {
        churn(i.parse().unwrap());
    }
}

#[test]
fn concurrent_processes_leave_no_table() {
    let ns = Netns::new("hq");
    let exe = std::env::current_exe().unwrap();
    // All started before any is waited for.
    let children: Vec<_> = (0..6u8)
        .map(|i| {
            std::process::Command::new("ip")
                .args(["netns", "exec", &ns.name])
                .arg(&exe)
                .args(["--exact", "churn_process", "--ignored", "--quiet"])
                .env(WORKER, i.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(ns.listed().is_none(), "no table after the last detach");
}

#[test]
fn collect_removes_only_links_that_are_gone() {
    let ns = Netns::new("hg");
    ip(&[
        "-n", &ns.name, "link", "add", "sbx-here", "type", "veth", "peer", "name", "eth0",
    ]);
    ns.attach("sbx-here", v4("10.0.0.2"), v6("fd00::2"), "alive");
    ns.attach("sbx-gone", v4("10.0.0.3"), v6("fd00::3"), "dead");
    let mut gone = ns.run(|| host_collect().unwrap());
    gone.sort();
    assert_eq!(
        gone,
        [
            el("sbx-gone", "10.0.0.3", "dead"),
            el("sbx-gone", "fd00::3", "dead"),
        ]
    );
    assert_eq!(
        ns.elements(),
        [
            el("sbx-here", "10.0.0.2", "alive"),
            el("sbx-here", "fd00::2", "alive"),
        ]
    );
    ip(&["-n", &ns.name, "link", "del", "sbx-here"]);
    assert_eq!(ns.run(|| host_collect().unwrap()).len(), 2);
    assert!(
        ns.listed().is_none(),
        "the last collected sandbox takes the table"
    );
}

#[test]
fn errors_say_what_failed() {
    let ns = Netns::new("he");
    fn err(r: sbx_oci::Result<()>) -> String {
        r.unwrap_err().to_string()
    }
    let e = ns.run(|| err(host_attach("eth0", v4("10.0.0.2"), None, "x")));
    assert!(e.contains(r#"sandbox link name "eth0""#), "{e}");
    let e = ns.run(|| err(host_attach("sbx-x", None, None, "x")));
    assert!(
        e.contains("attach sbx-x to the host table: no address given"),
        "{e}"
    );
    let e = ns.run(|| err(host_attach("sbx-x", v4("10.0.0.2"), None, "a\"b")));
    assert!(e.contains("as a host table comment"), "{e}");

    // A table of that name that is not ours is left alone.
    ns.exec(&["nft", "add", "table", "inet", HOST_TABLE])
        .unwrap();
    let e = ns.run(|| err(host_attach("sbx-x", v4("10.0.0.2"), None, "x")));
    assert!(
        e.contains(
            "nftables: attach sbx-x to table inet sbx_oci_host: create table inet sbx_oci_host \
             (nothing was installed): File exists"
        ),
        "{e}"
    );
    let listed = ns.listed().unwrap();
    assert!(!listed.contains("chain"), "{listed}");
}

// ---- packets ----

/// A TCP server in a namespace that answers each connection with the
/// address it came from; stops when dropped (or after a minute).
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn new(ns: &str, addr: SocketAddr) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (ns, flag) = (ns.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let l = TcpListener::bind(addr).unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            let end = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::SeqCst) && Instant::now() < end {
                match l.accept() {
                    Ok((mut s, from)) => {
                        let _ = s.write_all(from.ip().to_string().as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        rx.recv().unwrap();
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.take().unwrap().join();
    }
}

/// The source address the server saw, or None when no connection was made
/// within `timeout`.
fn connect(ns: &Netns, to: SocketAddr, timeout: Duration) -> Option<IpAddr> {
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&to, timeout).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut seen = String::new();
        s.read_to_string(&mut seen).ok()?;
        seen.parse().ok()
    })
}

fn sa(a: &str, port: u16) -> SocketAddr {
    SocketAddr::new(a.parse().unwrap(), port)
}

/// A host `h` with two sandboxes (`s1`, `s2`) on links sbx-t1 and sbx-t2
/// (10.80.0.2 / fd80::2 and 10.80.0.4 / fd80::4, routed to their link) and
/// an upstream `up` (10.81.0.2, fd81::2) that routes the sandbox ranges
/// back to the host: replies come back with or without masquerade, so what
/// the server sees tells whether it happened.
struct Topology {
    h: Netns,
    s1: Netns,
    s2: Netns,
    up: Netns,
}

impl Topology {
    fn new() -> Topology {
        let t = Topology {
            h: Netns::new("hph"),
            s1: Netns::new("hps"),
            s2: Netns::new("hpt"),
            up: Netns::new("hpu"),
        };
        let (h, s1, s2, up) = (&t.h.name, &t.s1.name, &t.s2.name, &t.up.name);
        for (link, sbx, gw, addr, addr6) in [
            ("sbx-t1", s1, "10.80.0.1", "10.80.0.2", "fd80::2"),
            ("sbx-t2", s2, "10.80.0.3", "10.80.0.4", "fd80::4"),
        ] {
            ip(&[
                "link", "add", link, "netns", h, "type", "veth", "peer", "name", "eth0", "netns",
                sbx,
            ]);
            ip(&["-n", h, "addr", "add", gw, "peer", addr, "dev", link]);
            ip(&["-n", h, "addr", "add", "fe80::1/64", "dev", link, "nodad"]);
            ip(&["-n", h, "link", "set", link, "up"]);
            ip(&["-n", h, "-6", "route", "add", addr6, "dev", link]);
            ip(&["-n", sbx, "addr", "add", addr, "peer", gw, "dev", "eth0"]);
            ip(&[
                "-n",
                sbx,
                "addr",
                "add",
                &format!("{addr6}/128"),
                "dev",
                "eth0",
                "nodad",
            ]);
            ip(&["-n", sbx, "link", "set", "eth0", "up"]);
            ip(&["-n", sbx, "link", "set", "lo", "up"]);
            ip(&["-n", sbx, "route", "add", "default", "via", gw]);
            ip(&[
                "-n", sbx, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
            ]);
        }
        ip(&[
            "link", "add", "up0", "netns", h, "type", "veth", "peer", "name", "eth0", "netns", up,
        ]);
        ip(&["-n", h, "addr", "add", "10.81.0.1/24", "dev", "up0"]);
        ip(&["-n", h, "addr", "add", "fd81::1/64", "dev", "up0", "nodad"]);
        ip(&["-n", h, "link", "set", "up0", "up"]);
        ip(&["-n", h, "link", "set", "lo", "up"]);
        ip(&["-n", up, "addr", "add", "10.81.0.2/24", "dev", "eth0"]);
        ip(&[
            "-n",
            up,
            "addr",
            "add",
            "fd81::2/64",
            "dev",
            "eth0",
            "nodad",
        ]);
        ip(&["-n", up, "link", "set", "eth0", "up"]);
        ip(&["-n", up, "route", "add", "10.80.0.0/24", "via", "10.81.0.1"]);
        ip(&[
            "-n",
            up,
            "-6",
            "route",
            "add",
            "fd80::/64",
            "via",
            "fd81::1",
        ]);
        t.h.exec(&[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ])
        .unwrap();
        t
    }

    fn counter(&self, name: &'static str) -> u64 {
        self.h.run(move || {
            let all = nft::counters(HOST_TABLE).unwrap();
            all.iter().find(|(n, _)| n == name).unwrap().1.packets
        })
    }
}

#[test]
fn sandboxes_reach_out_masqueraded_and_nothing_else() {
    let t = Topology::new();
    let (s1, s2, up) = (&t.s1, &t.s2, &t.up);
    let _servers = [
        Server::new(&up.name, sa("10.81.0.2", 7000)),
        Server::new(&up.name, sa("fd81::2", 7000)),
        Server::new(&s2.name, sa("10.80.0.4", 7000)),
        Server::new(&s2.name, sa("fd80::4", 7000)),
        Server::new(&s1.name, sa("10.80.0.2", 7001)),
        Server::new(&t.h.name, sa("10.81.0.1", 7002)),
        Server::new(&t.h.name, sa("10.80.0.1", 7002)),
    ];
    let ok = Duration::from_secs(3);
    let blocked = Duration::from_millis(400);
    let ip_ = |s: &str| -> IpAddr { s.parse().unwrap() };

    // Without the table everything connects, unmasqueraded.
    assert_eq!(
        connect(s1, sa("10.81.0.2", 7000), ok),
        Some(ip_("10.80.0.2"))
    );
    assert_eq!(connect(s1, sa("fd81::2", 7000), ok), Some(ip_("fd80::2")));
    assert!(connect(s1, sa("10.80.0.4", 7000), ok).is_some());
    assert!(connect(s1, sa("fd80::4", 7000), ok).is_some());
    assert!(connect(s1, sa("10.81.0.1", 7002), ok).is_some());
    assert!(connect(up, sa("10.80.0.2", 7001), ok).is_some());

    t.h.attach("sbx-t1", v4("10.80.0.2"), v6("fd80::2"), "s1");
    t.h.attach("sbx-t2", v4("10.80.0.4"), v6("fd80::4"), "s2");
    // Neighbour discovery starts over, under the table's input chain.
    ip(&["-n", &s1.name, "-6", "neigh", "flush", "dev", "eth0"]);
    ip(&["-n", &t.h.name, "-6", "neigh", "flush", "dev", "sbx-t1"]);

    assert_eq!(
        connect(s1, sa("10.81.0.2", 7000), ok),
        Some(ip_("10.81.0.1")),
        "masqueraded to the host's address"
    );
    assert_eq!(connect(s1, sa("fd81::2", 7000), ok), Some(ip_("fd81::1")));
    assert_eq!(
        connect(s1, sa("10.80.0.4", 7000), blocked),
        None,
        "no sandbox reaches another"
    );
    assert_eq!(connect(s1, sa("fd80::4", 7000), blocked), None);
    assert!(t.counter("between_sandboxes") >= 2);
    assert_eq!(
        connect(s1, sa("10.81.0.1", 7002), blocked),
        None,
        "the host is no destination"
    );
    assert_eq!(connect(s1, sa("10.80.0.1", 7002), blocked), None);
    assert!(t.counter("to_host") >= 2);
    assert_eq!(
        connect(up, sa("10.80.0.2", 7001), blocked),
        None,
        "nothing new comes in"
    );
    assert!(t.counter("new_inbound") >= 1);

    // A forged source is dropped on the way in.
    ip(&["-n", &s1.name, "addr", "add", "10.80.0.9/32", "dev", "eth0"]);
    let before = t.counter("forged_source");
    s1.run(|| {
        let s = UdpSocket::bind("10.80.0.9:0").unwrap();
        s.send_to(b"x", "10.81.0.2:7000").unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(t.counter("forged_source"), before + 1);

    // Detached, its address is foreign on its link.
    assert_eq!(t.h.detach("sbx-t1"), 2);
    assert_eq!(connect(s1, sa("10.81.0.2", 7000), blocked), None);
    assert!(t.counter("forged_source") >= before + 2);
    assert_eq!(t.h.detach("sbx-t2"), 2);
    assert!(t.h.listed().is_none());
    assert_eq!(
        connect(s1, sa("10.81.0.2", 7000), ok),
        Some(ip_("10.80.0.2"))
    );
}
