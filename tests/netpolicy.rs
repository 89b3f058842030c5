//! The egress policy for real (root): each test makes two network
//! namespaces joined by a veth pair — "sbx", where the policy is applied,
//! and "peer", a test host with small TCP/UDP servers on two addresses per
//! family — and proves with real connections what gets through. Only these
//! private addresses are ever contacted; the namespaces (and with them the
//! veth pair and the table) are removed on drop, also when a test fails.

mod common;

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::netns::{Pair as Net, in_netns};

use sbx_oci::netpolicy::compile::{Rule, Statement};
use sbx_oci::netpolicy::{Entry, Policy, Ports, Proto, Ruleset, addresses, compile, name_classes};
use sbx_oci::nft;

/// How long a connection attempt expected to be dropped is given before it
/// counts as blocked; an allowed one on a veth answers in well under a
/// millisecond when the machine is idle.
const TIMEOUT: Duration = Duration::from_millis(300);

/// How long one expected to get through is given: the test host's server
/// is a thread that must be scheduled, which under TCG beside the other
/// tests can take longer than [`TIMEOUT`]. A pass costs nothing.
const OPEN_WAIT: Duration = Duration::from_secs(5);

/// The wait for an attempt expected to get through (`open`) or not.
fn wait(open: bool) -> Duration {
    if open { OPEN_WAIT } else { TIMEOUT }
}

/// `sbx` (.1, ::1), where the policy is applied, and the test host `peer`
/// (.2 and .3, ::2 and ::3), on 10.200.N.0/29 and fd00:200:N::/64.
fn pair() -> Net {
    Net::new("np", 200, &[1], &[2, 3])
}

impl Net {
    /// Servers on the host for every (address, port), TCP and UDP.
    fn serve(&mut self, addrs: &[IpAddr], ports: &[u16]) {
        for a in addrs {
            for p in ports {
                let host = self.peer.clone();
                self.tcp_server(&host, SocketAddr::new(*a, *p));
                self.udp_server(&host, SocketAddr::new(*a, *p));
            }
        }
        let first: Vec<SocketAddr> = addrs
            .iter()
            .map(|a| SocketAddr::new(*a, ports[0]))
            .collect();
        self.warm_up(&self.sbx, &first);
    }

    /// Whether a TCP connection from `from` to `to` gets the server's "ok";
    /// `open`: whether that is expected (see [`wait`]).
    fn tcp(&self, from: &str, to: SocketAddr, open: bool) -> bool {
        let wait = wait(open);
        in_netns(from, move || {
            let Ok(mut s) = TcpStream::connect_timeout(&to, wait) else {
                return false;
            };
            s.set_read_timeout(Some(wait)).unwrap();
            let mut buf = [0u8; 2];
            s.read_exact(&mut buf).is_ok() && &buf == b"ok"
        })
    }

    /// Whether a UDP datagram from `from` to `to` gets an answer; `open`:
    /// whether that is expected (see [`wait`]).
    fn udp(&self, from: &str, to: SocketAddr, open: bool) -> bool {
        let wait = wait(open);
        in_netns(from, move || {
            let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                .parse()
                .unwrap();
            let s = UdpSocket::bind(any).unwrap();
            s.set_read_timeout(Some(wait)).unwrap();
            // A datagram dropped on output fails right here (EPERM).
            if s.send_to(b"hi", to).is_err() {
                return false;
            }
            let mut buf = [0u8; 2];
            matches!(s.recv_from(&mut buf), Ok((2, _))) && &buf == b"ok"
        })
    }

    fn apply(&self, r: &Ruleset) -> sbx_oci::Result<()> {
        let r = r.clone();
        in_netns(&self.sbx, move || nft::apply(&r))
    }

    fn counter(&self, name: &'static str) -> u64 {
        in_netns(&self.sbx, move || {
            let all = nft::counters(sbx_oci::netpolicy::compile::TABLE).unwrap();
            all.iter().find(|(n, _)| n == name).unwrap().1.packets
        })
    }
}

/// The ruleset of `allow` (names become pin sets), with DNS redirected to
/// a gatekeeper when `gatekeeper`.
fn policy(allow: &[&str], gatekeeper: bool, expose: &[(Proto, Ports)]) -> Ruleset {
    let entries: Vec<Entry> = allow.iter().map(|s| s.parse().unwrap()).collect();
    compile(&Policy {
        allow: addresses(&entries),
        name_ports: name_classes(&entries).unwrap(),
        gatekeeper,
        expose: expose.to_vec(),
        ..Policy::default()
    })
    .unwrap()
}

fn sa(a: IpAddr, p: u16) -> SocketAddr {
    SocketAddr::new(a, p)
}

#[test]
fn listed_destinations_connect_and_all_else_is_dropped_ipv4_and_ipv6() {
    let mut net = pair();
    let (h2, h3, g2, g3) = (net.v4(2), net.v4(3), net.v6(2), net.v6(3));
    net.serve(&[h2, h3, g2, g3], &[8080, 8081]);
    let sbx = net.sbx.clone();
    // The topology works before any policy: what is blocked later is the
    // policy's doing.
    for a in [h2, h3, g2, g3] {
        assert!(
            net.tcp(&sbx, sa(a, 8081), true),
            "tcp {a} reachable without a policy"
        );
        assert!(
            net.udp(&sbx, sa(a, 8081), true),
            "udp {a} reachable without a policy"
        );
    }

    let r = policy(
        &[
            &format!("{h2}:8080"),
            &format!("udp://{h3}:8081"),
            &format!("[{g2}]:8080"),
            &format!("udp://[{g3}]:8081"),
        ],
        false,
        &[],
    );
    net.apply(&r).unwrap();

    let cases = [
        ("tcp", h2, 8080, true),
        ("tcp", h2, 8081, false), // another port on an allowed host
        ("tcp", h3, 8080, false), // another host
        ("udp", h2, 8080, false), // UDP to a TCP entry
        ("udp", h3, 8081, true),
        ("tcp", h3, 8081, false), // TCP to a UDP entry
        ("tcp", g2, 8080, true),
        ("tcp", g2, 8081, false),
        ("tcp", g3, 8080, false),
        ("udp", g2, 8080, false),
        ("udp", g3, 8081, true),
        ("tcp", g3, 8081, false),
    ];
    let dropped_before = net.counter("out_dropped");
    let allowed_before = net.counter("out_allowed");
    for (proto, a, p, want) in cases {
        let got = if proto == "tcp" {
            net.tcp(&sbx, sa(a, p), want)
        } else {
            net.udp(&sbx, sa(a, p), want)
        };
        assert_eq!(
            got,
            want,
            "{proto} {a} port {p}: expected {}",
            if want { "allowed" } else { "blocked" }
        );
    }
    assert!(
        net.counter("out_allowed") >= allowed_before + 4,
        "allowed packets are counted"
    );
    assert!(
        net.counter("out_dropped") >= dropped_before + 8,
        "dropped packets are counted"
    );
    assert!(
        net.counter("in_established") >= 4,
        "the answers came in as established"
    );

    // The dropped attempts are recorded by destination.
    let (d4, d6) = in_netns(&sbx, || {
        (
            nft::dropped("sbx_oci", "dropped4").unwrap(),
            nft::dropped("sbx_oci", "dropped6").unwrap(),
        )
    });
    // Every blocked case above, by (address, protocol, port).
    let all: Vec<_> = d4.iter().chain(&d6).collect();
    for (proto, a, p, allowed) in cases {
        let number = if proto == "tcp" { 6 } else { 17 };
        let hit = all
            .iter()
            .find(|d| d.addr == a && d.proto == number && d.port == p);
        match (allowed, hit) {
            (false, Some(d)) => assert!(d.packets >= 1 && d.bytes > 0, "{d:?}"),
            (false, None) => panic!("{proto} {a}:{p} not recorded in {all:?}"),
            (true, Some(d)) => panic!("allowed traffic recorded: {d:?}"),
            (true, None) => {}
        }
    }
}

#[test]
fn port_ranges_networks_and_dns() {
    let mut net = pair();
    let (h2, h3, g2, g3) = (net.v4(2), net.v4(3), net.v6(2), net.v6(3));
    net.serve(&[h2, h3, g2, g3], &[53, 9000, 9002, 9003]);
    let sbx = net.sbx.clone();
    let n = net.n;
    // Even an entry that covers port 53 and 853 lets no DNS out: DNS is
    // the gatekeeper's (redirected to the namespace's loopback, where no
    // one listens here) and DNS over TLS is never let out.
    let r = policy(
        &[
            &format!("10.200.{n}.0/29:9000-9002"),
            &format!("[fd00:200:{n:x}::/64]:9000-9002"),
            &format!("10.200.{n}.0/29:53"),
            &format!("udp://10.200.{n}.0/29:53"),
            &format!("10.200.{n}.0/29:853"),
        ],
        true,
        &[],
    );
    net.apply(&r).unwrap();
    for a in [h2, h3, g2, g3] {
        assert!(net.tcp(&sbx, sa(a, 9000), true), "{a}:9000 in the range");
        assert!(net.tcp(&sbx, sa(a, 9002), true), "{a}:9002 in the range");
        assert!(
            !net.tcp(&sbx, sa(a, 9003), false),
            "{a}:9003 past the range"
        );
    }
    for a in [h2, h3, g2, g3] {
        assert!(!net.udp(&sbx, sa(a, 53), false), "DNS over UDP to {a} left");
        assert!(!net.tcp(&sbx, sa(a, 53), false), "DNS over TCP to {a} left");
    }
    assert!(!net.tcp(&sbx, sa(h2, 853), false), "DNS over TLS left");
    // Redirected: accepted towards the loopback, refused there.
    assert!(net.counter("out_dns") >= 8);
}

#[test]
fn nothing_new_comes_in_unless_exposed() {
    let mut net = pair();
    let sbx = net.sbx.clone();
    let host = net.peer.clone();
    let (s1, s6) = (net.v4(1), net.v6(1));
    for a in [s1, s6] {
        net.tcp_server(&sbx, sa(a, 7000));
        net.tcp_server(&sbx, sa(a, 7001));
    }
    net.warm_up(&host, &[sa(s1, 7000), sa(s6, 7000)]);
    net.apply(&policy(&[], false, &[(Proto::Tcp, Ports::one(7000))]))
        .unwrap();
    for a in [s1, s6] {
        assert!(net.tcp(&host, sa(a, 7000), true), "exposed {a}:7000");
        assert!(!net.tcp(&host, sa(a, 7001), false), "not exposed {a}:7001");
    }
    assert!(net.counter("in_exposed") >= 2);
    assert!(net.counter("in_dropped") >= 2);
}

#[test]
fn a_ruleset_the_kernel_rejects_installs_nothing() {
    let net = pair();
    let good = policy(&["10.0.0.1:443"], false, &[]);
    // The last rule of the last chain refers to a counter that does not
    // exist: the kernel refuses it after accepting everything before it.
    let mut bad = policy(&["10.9.9.9:443"], false, &[]);
    bad.chains.last_mut().unwrap().rules.push(Rule {
        matches: vec![],
        statements: vec![Statement::Counter("no_such_counter"), Statement::Accept],
    });

    let err = net.apply(&bad).unwrap_err().to_string();
    assert!(
        err.contains("add rule 6 of chain input (nothing was installed)"),
        "{err}"
    );
    assert!(net.listed().is_none(), "no table after a failed apply");

    // A failed replacement leaves the previous table as it was (its
    // counters aside: the namespace's own IPv6 neighbour discovery may
    // count a packet meanwhile).
    net.apply(&good).unwrap();
    let before = net.listed().unwrap();
    assert!(net.apply(&bad).is_err());
    assert_eq!(
        without_counts(net.listed().unwrap()),
        without_counts(before.clone())
    );
    assert!(!before.contains("10.9.9.9"));

    let sbx = net.sbx.clone();
    assert!(in_netns(&sbx, || nft::delete("sbx_oci").unwrap()));
    assert!(
        !in_netns(&sbx, || nft::delete("sbx_oci").unwrap()),
        "already gone"
    );
    assert!(net.listed().is_none());
}

/// An `nft list` without its counters' values.
fn without_counts(listing: String) -> String {
    listing
        .lines()
        .filter(|l| !l.trim_start().starts_with("packets "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The netlink applier and `nft -f` of the rendered text install the same
/// table, as `nft list` shows it: the text in the golden files is what the
/// kernel gets.
#[test]
fn netlink_installs_what_nft_f_installs() {
    let net = pair();
    let other = pair();
    let r = policy(
        &[
            "10.0.0.1:443",
            "10.2.0.0/16",
            "udp://10.3.0.0/24:5000-5100",
            "[2001:db8::1]:443",
            "udp://2001:db8:1::/48",
            "10.0.0.0/8:80",
            "10.1.2.3:80-90",
            "pypi.org:443",
            "*.pythonhosted.org:443",
            "udp://**.ntp.test:123",
            "api.test:8000-8100",
        ],
        true,
        &[(Proto::Tcp, Ports::one(8080))],
    );
    net.apply(&r).unwrap();
    let rr = r.clone();
    in_netns(&other.sbx, move || nft::apply_with_nft(&rr)).unwrap();
    // Counter values differ: an interface coming up may send an MLD
    // report, which the policy drops and counts.
    let (a, b) = (
        without_counts(net.listed().unwrap()),
        without_counts(other.listed().unwrap()),
    );
    assert_eq!(a, b, "netlink:\n{a}\nnft -f:\n{b}");
    assert!(a.contains("10.1.2.3 . tcp . 81-90"), "{a}");
    assert!(a.contains("flags timeout"), "{a}");
    assert!(a.contains("redirect"), "{a}");
}
