//! A resolved policy → one nftables `inet` table, as data (pure).
//!
//! The table holds two base chains whose policy is drop. The allowlist
//! lives in sets keyed by `address . protocol . port` with intervals
//! (the kernel's pipapo set type), so the rule count is fixed and a lookup
//! costs the same for 1 or 10,000 entries. Every verdict goes through a
//! named counter, and dropped TCP/UDP attempts are recorded, with a counter
//! each, in bounded dynamic sets: that is what `stats` reads back.
//!
//! [`Ruleset`]'s `Display` is nft's own syntax, for review (golden files)
//! and for `nft -f` as a reference applier; [`crate::nft`] sends the same
//! model over netlink. The model also describes the host's table of
//! standalone sandboxes ([`super::host`]).

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::entry::{Cidr, Dest, Entry, Ports, Proto};
use crate::{Error, Result};

/// The table's name; one per network namespace.
pub const TABLE: &str = "sbx_oci";

/// How many distinct dropped destinations are recorded per family; past
/// that, drops are still counted in `out_dropped`.
pub const DROPPED_MAX: u32 = 4096;

/// A recorded drop is forgotten after a day without another.
pub const DROPPED_TIMEOUT_S: u32 = 86400;

/// One allowed destination, names resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Allow {
    pub proto: Proto,
    pub net: Cidr,
    pub ports: Ports,
}

/// What [`compile`] needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Addresses and networks, allowed as written.
    pub allow: Vec<Allow>,
    /// The (protocol, ports) of the name entries, one pin set pair per
    /// class ([`pin_sets`]): the gatekeeper fills them with the addresses
    /// of the names it answers for, each with a timeout.
    pub name_ports: Vec<(Proto, Ports)>,
    /// DNS (UDP and TCP 53, to any address) is redirected to the
    /// gatekeeper, which listens on the namespace's loopback; otherwise
    /// DNS is dropped like DoT (853).
    pub gatekeeper: bool,
    /// Audit: what would be dropped is recorded and let through.
    pub learn: bool,
    /// Inbound ports open to new connections.
    pub expose: Vec<(Proto, Ports)>,
}

/// Most distinct (protocol, ports) classes among name entries: each is a
/// pair of sets and a pair of rules.
pub const MAX_NAME_CLASSES: usize = 16;

const PIN4: [&str; MAX_NAME_CLASSES] = [
    "pin4_0", "pin4_1", "pin4_2", "pin4_3", "pin4_4", "pin4_5", "pin4_6", "pin4_7", "pin4_8",
    "pin4_9", "pin4_10", "pin4_11", "pin4_12", "pin4_13", "pin4_14", "pin4_15",
];
const PIN6: [&str; MAX_NAME_CLASSES] = [
    "pin6_0", "pin6_1", "pin6_2", "pin6_3", "pin6_4", "pin6_5", "pin6_6", "pin6_7", "pin6_8",
    "pin6_9", "pin6_10", "pin6_11", "pin6_12", "pin6_13", "pin6_14", "pin6_15",
];

/// The IPv4 and IPv6 pin sets of name class `class`.
pub fn pin_sets(class: usize) -> (&'static str, &'static str) {
    (PIN4[class], PIN6[class])
}

/// Where the gatekeeper listens in the sandbox's namespace: DNS to any
/// address is redirected here (nft's `redirect` sends locally made packets
/// to the loopback address of their family).
pub const GATEKEEPER_V4: Ipv4Addr = Ipv4Addr::LOCALHOST;
pub const GATEKEEPER_V6: Ipv6Addr = Ipv6Addr::LOCALHOST;

/// Never reached through a name, and through an address entry only when
/// the entry lies inside: link-local IPv4 (cloud metadata services at
/// 169.254.169.254), IPv6 link-local, and AWS's IPv6 metadata address.
pub const BLOCKED: [(IpAddr, u8); 3] = [
    (IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16),
    (IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
    (
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
        128,
    ),
];

/// Whether `addr` is in one of the [`BLOCKED`] networks.
pub fn is_blocked(addr: IpAddr) -> bool {
    BLOCKED.iter().any(|(net, len)| {
        Cidr::new(*net, *len)
            .is_some_and(|c| c.is_ipv4() == addr.is_ipv4() && c.first() <= addr && addr <= c.last())
    })
}

/// The distinct (protocol, ports) of `entries`' names, in first-seen order:
/// the pin set classes of [`Policy::name_ports`].
pub fn name_classes(entries: &[Entry]) -> Result<Vec<(Proto, Ports)>> {
    let mut out: Vec<(Proto, Ports)> = Vec::new();
    for e in entries {
        if let Dest::Host(_) = e.dest {
            let class = (e.proto, e.ports.unwrap_or(Ports::ALL));
            if !out.contains(&class) {
                out.push(class);
            }
        }
    }
    if out.len() > MAX_NAME_CLASSES {
        return Err(Error::NetworkPolicy(format!(
            "names are listed with {} different protocol and port combinations; at most \
             {MAX_NAME_CLASSES} are supported (list names with the same ports)",
            out.len()
        )));
    }
    Ok(out)
}

/// The address and network entries as [`Allow`]s; names are the
/// gatekeeper's ([`name_classes`]).
pub fn addresses(entries: &[Entry]) -> Vec<Allow> {
    entries
        .iter()
        .filter_map(|e| match e.dest {
            Dest::Net(net) => Some(Allow {
                proto: e.proto,
                net,
                ports: e.ports.unwrap_or(Ports::ALL),
            }),
            Dest::Host(_) => None,
        })
        .collect()
}

/// The type of one field of a set key, as nft names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Ipv4Addr,
    Ipv6Addr,
    InetProto,
    InetService,
    /// An interface name: IFNAMSIZ bytes, zero-padded (see [`ifname_value`]).
    IfName,
}

/// Bytes in an interface name, its terminating zero included.
pub const IFNAMSIZ: usize = 16;

/// An interface name as the value of a [`Field::IfName`]: its 16 bytes,
/// zero-padded, read big-endian (so [`Field::encode`] gives the bytes back).
/// Longer names are cut, as no interface has one.
pub fn ifname_value(name: &str) -> u128 {
    let mut b = [0u8; IFNAMSIZ];
    let n = name.len().min(IFNAMSIZ - 1);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// The name in an interface-name value or key field (up to the first zero).
pub fn ifname_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl Field {
    /// Bytes of the value (a key field is padded to 4 in registers).
    pub fn size(self) -> usize {
        match self {
            Field::Ipv4Addr => 4,
            Field::Ipv6Addr => 16,
            Field::InetProto => 1,
            Field::InetService => 2,
            Field::IfName => IFNAMSIZ,
        }
    }

    /// nft's datatype number, which `nft list` uses to print elements.
    pub fn type_id(self) -> u32 {
        match self {
            Field::Ipv4Addr => 7,
            Field::Ipv6Addr => 8,
            Field::InetProto => 12,
            Field::InetService => 13,
            Field::IfName => 41,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::Ipv4Addr => "ipv4_addr",
            Field::Ipv6Addr => "ipv6_addr",
            Field::InetProto => "inet_proto",
            Field::InetService => "inet_service",
            Field::IfName => "ifname",
        }
    }

    /// `value` in network byte order, `len()` bytes.
    pub fn encode(self, value: u128) -> Vec<u8> {
        value.to_be_bytes()[16 - self.size()..].to_vec()
    }
}

/// One element: per field, an inclusive range (first == last for a value).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Element(pub Vec<(u128, u128)>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub name: &'static str,
    pub fields: Vec<Field>,
    /// Elements are ranges (only sets of two fields or more here: the
    /// kernel's pipapo type).
    pub interval: bool,
    /// Filled by the packet path (`update`), at most this many elements.
    pub dynamic: Option<u32>,
    /// Elements carry a timeout, after which the kernel removes them.
    pub timeout: bool,
    /// The timeout of elements added without one (seconds), such as those
    /// the packet path adds; `update` starts it over.
    pub default_timeout_s: Option<u32>,
    /// A counter per element.
    pub counter: bool,
    pub elements: Vec<Element>,
}

/// What a rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Ip4Saddr,
    Ip4Daddr,
    Ip6Saddr,
    Ip6Daddr,
    L4Proto,
    Dport,
    /// The name of the interface the packet came in on.
    IifName,
}

impl Key {
    pub fn field(self) -> Field {
        match self {
            Key::Ip4Saddr | Key::Ip4Daddr => Field::Ipv4Addr,
            Key::Ip6Saddr | Key::Ip6Daddr => Field::Ipv6Addr,
            Key::L4Proto => Field::InetProto,
            Key::Dport => Field::InetService,
            Key::IifName => Field::IfName,
        }
    }

    fn nft(self) -> &'static str {
        match self {
            Key::Ip4Saddr => "ip saddr",
            Key::Ip4Daddr => "ip daddr",
            Key::Ip6Saddr => "ip6 saddr",
            Key::Ip6Daddr => "ip6 daddr",
            Key::L4Proto => "meta l4proto",
            Key::Dport => "th dport",
            Key::IifName => "iifname",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Input,
    Output,
    Forward,
    Postrouting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
}

/// A base chain's priority, by nft's standard names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// 0
    Filter,
    /// 100: source NAT, after filtering.
    Srcnat,
    /// -100: destination NAT, before filtering.
    Dstnat,
}

impl Priority {
    pub fn value(self) -> i32 {
        match self {
            Priority::Filter => 0,
            Priority::Srcnat => 100,
            Priority::Dstnat => -100,
        }
    }
}

/// A chain's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
}

/// An interface name to compare with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfName {
    /// The whole name.
    Exact(&'static str),
    /// Names that start with this (nft's `"prefix*"`): only these bytes
    /// are compared.
    Prefix(&'static str),
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfName::Exact(n) => write!(f, "{n:?}"),
            IfName::Prefix(p) => write!(f, "\"{p}*\""),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// `iifname NAME`: the interface the packet came in on.
    IifName(IfName),
    /// `oifname NAME`: the interface the packet goes out on.
    OifName(IfName),
    /// `ct state established,related`.
    EstablishedRelated,
    /// `icmpv6 type FIRST-LAST`.
    Icmpv6Types(u8, u8),
    /// `KEY . KEY ... @set`.
    InSet(Vec<Key>, &'static str),
    /// `meta l4proto PROTO`.
    L4Proto(Proto),
    /// `th dport PORTS`.
    Dport(Ports),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    /// `counter name "NAME"`.
    Counter(&'static str),
    /// `update @set { KEY . KEY ... }`.
    Update(&'static str, Vec<Key>),
    /// `masquerade`: source NAT to the outgoing interface's address.
    Masquerade,
    /// `redirect`: destination NAT to the loopback address (locally made
    /// packets), same port.
    Redirect,
    Accept,
    Drop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub statements: Vec<Statement>,
}

/// A base chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: &'static str,
    pub kind: ChainType,
    pub hook: Hook,
    pub priority: Priority,
    pub policy: Verdict,
    pub rules: Vec<Rule>,
}

/// One `inet` table: named counters, sets, chains — applied as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub table: String,
    pub counters: Vec<&'static str>,
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
}

impl Ruleset {
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }
}

/// Every named counter, in the order `stats` reports them.
pub const COUNTERS: &[&str] = &[
    "out_loopback",
    "out_established",
    "out_icmpv6_nd",
    "out_dns",
    "out_allowed",
    "out_named",
    "out_dropped",
    "in_loopback",
    "in_established",
    "in_icmpv6_nd",
    "in_exposed",
    "in_dropped",
];

const V4: [Key; 3] = [Key::Ip4Daddr, Key::L4Proto, Key::Dport];
const V6: [Key; 3] = [Key::Ip6Daddr, Key::L4Proto, Key::Dport];
/// Router solicitation/advertisement, neighbour solicitation/advertisement:
/// IPv6 cannot reach even an allowed neighbour without them.
const ND: (u8, u8) = (133, 136);
const DNS_PORT: u16 = 53;
const DOT_PORT: u16 = 853;

pub fn compile(policy: &Policy) -> Result<Ruleset> {
    if policy.name_ports.len() > MAX_NAME_CLASSES {
        return Err(Error::NetworkPolicy(format!(
            "at most {MAX_NAME_CLASSES} protocol and port combinations for names"
        )));
    }
    let mut dns4 = BTreeSet::new();
    let mut dns6 = BTreeSet::new();
    if policy.gatekeeper {
        for proto in [Proto::Udp, Proto::Tcp] {
            for (addr, set) in [
                (IpAddr::V4(GATEKEEPER_V4), &mut dns4),
                (IpAddr::V6(GATEKEEPER_V6), &mut dns6),
            ] {
                set.insert(Element(vec![
                    point(u128_of(addr)),
                    point(proto.number().into()),
                    point(DNS_PORT.into()),
                ]));
            }
        }
    }
    let (allow4, allow6) = disjoint_allow(&policy.allow);

    let l3 = |name, addr, interval, elements: Vec<Element>| Set {
        name,
        fields: vec![addr, Field::InetProto, Field::InetService],
        interval,
        dynamic: None,
        timeout: false,
        default_timeout_s: None,
        counter: false,
        elements,
    };
    // A day's timeout, which each dropped packet starts over: an element's
    // expiration tells when its destination was last refused.
    let dropped = |name, addr| Set {
        dynamic: Some(DROPPED_MAX),
        timeout: true,
        default_timeout_s: Some(DROPPED_TIMEOUT_S),
        counter: true,
        ..l3(name, addr, false, vec![])
    };
    let proto_ports = |name, elements| Set {
        name,
        fields: vec![Field::InetProto, Field::InetService],
        interval: false,
        dynamic: None,
        timeout: false,
        default_timeout_s: None,
        counter: false,
        elements,
    };
    let dns_ports = |ports: &[u16]| -> Vec<Element> {
        let mut v = Vec::new();
        for proto in [Proto::Tcp, Proto::Udp] {
            for p in ports {
                v.push(Element(vec![
                    point(proto.number().into()),
                    point((*p).into()),
                ]));
            }
        }
        v
    };
    let mut sets = vec![
        l3("dns4", Field::Ipv4Addr, false, dns4.into_iter().collect()),
        l3("dns6", Field::Ipv6Addr, false, dns6.into_iter().collect()),
        // DNS that did not go to the gatekeeper, and DNS over TLS: never
        // out, whatever the allowlist says (a resolver answers any name).
        proto_ports("dns_out", dns_ports(&[DNS_PORT, DOT_PORT])),
        l3("allow4", Field::Ipv4Addr, true, allow4),
        l3("allow6", Field::Ipv6Addr, true, allow6),
    ];
    for class in 0..policy.name_ports.len() {
        let (p4, p6) = pin_sets(class);
        for (name, field) in [(p4, Field::Ipv4Addr), (p6, Field::Ipv6Addr)] {
            sets.push(Set {
                name,
                fields: vec![field],
                interval: false,
                dynamic: None,
                timeout: true,
                default_timeout_s: None,
                counter: false,
                elements: vec![],
            });
        }
    }
    sets.extend([
        Set {
            name: "tcp_udp",
            fields: vec![Field::InetProto],
            interval: false,
            dynamic: None,
            timeout: false,
            default_timeout_s: None,
            counter: false,
            elements: [Proto::Tcp, Proto::Udp]
                .iter()
                .map(|p| Element(vec![point(p.number().into())]))
                .collect(),
        },
        dropped("dropped4", Field::Ipv4Addr),
        dropped("dropped6", Field::Ipv6Addr),
        Set {
            interval: true,
            ..proto_ports("exposed", disjoint_expose(&policy.expose))
        },
    ]);

    use Statement::{Accept, Counter, Drop, Update};
    // Learning, nothing is dropped: "out_dropped" counts what would be.
    let drop = if policy.learn { Accept } else { Drop };
    let rule = |matches, statements| Rule {
        matches,
        statements,
    };
    let mut output = vec![
        rule(
            vec![Match::OifName(IfName::Exact("lo"))],
            vec![Counter("out_loopback"), Accept],
        ),
        rule(
            vec![Match::EstablishedRelated],
            vec![Counter("out_established"), Accept],
        ),
        rule(
            vec![Match::Icmpv6Types(ND.0, ND.1)],
            vec![Counter("out_icmpv6_nd"), Accept],
        ),
        // Redirected to the gatekeeper: the filter sees the new address
        // but the interface of the original route.
        rule(
            vec![Match::InSet(V4.to_vec(), "dns4")],
            vec![Counter("out_dns"), Accept],
        ),
        rule(
            vec![Match::InSet(V6.to_vec(), "dns6")],
            vec![Counter("out_dns"), Accept],
        ),
        rule(
            vec![Match::InSet(vec![Key::L4Proto, Key::Dport], "dns_out")],
            vec![
                Update("dropped4", V4.to_vec()),
                Counter("out_dropped"),
                drop.clone(),
            ],
        ),
        rule(
            vec![Match::InSet(vec![Key::L4Proto, Key::Dport], "dns_out")],
            vec![
                Update("dropped6", V6.to_vec()),
                Counter("out_dropped"),
                drop.clone(),
            ],
        ),
        rule(
            vec![Match::InSet(V4.to_vec(), "allow4")],
            vec![Counter("out_allowed"), Accept],
        ),
        rule(
            vec![Match::InSet(V6.to_vec(), "allow6")],
            vec![Counter("out_allowed"), Accept],
        ),
    ];
    for (class, (proto, ports)) in policy.name_ports.iter().enumerate() {
        let (p4, p6) = pin_sets(class);
        for (key, set) in [(Key::Ip4Daddr, p4), (Key::Ip6Daddr, p6)] {
            output.push(rule(
                vec![
                    Match::InSet(vec![key], set),
                    Match::L4Proto(*proto),
                    Match::Dport(*ports),
                ],
                vec![Counter("out_named"), Accept],
            ));
        }
    }
    output.extend([
        rule(
            vec![Match::InSet(vec![Key::L4Proto], "tcp_udp")],
            vec![Update("dropped4", V4.to_vec())],
        ),
        rule(
            vec![Match::InSet(vec![Key::L4Proto], "tcp_udp")],
            vec![Update("dropped6", V6.to_vec())],
        ),
        rule(vec![], vec![Counter("out_dropped"), drop.clone()]),
    ]);
    let input = vec![
        rule(
            vec![Match::IifName(IfName::Exact("lo"))],
            vec![Counter("in_loopback"), Accept],
        ),
        rule(
            vec![Match::EstablishedRelated],
            vec![Counter("in_established"), Accept],
        ),
        rule(
            vec![Match::Icmpv6Types(ND.0, ND.1)],
            vec![Counter("in_icmpv6_nd"), Accept],
        ),
        rule(
            vec![Match::InSet(vec![Key::L4Proto, Key::Dport], "exposed")],
            vec![Counter("in_exposed"), Accept],
        ),
        rule(vec![], vec![Counter("in_dropped"), Drop]),
    ];
    let mut chains = vec![
        Chain {
            name: "output",
            kind: ChainType::Filter,
            hook: Hook::Output,
            priority: Priority::Filter,
            policy: if policy.learn {
                Verdict::Accept
            } else {
                Verdict::Drop
            },
            rules: output,
        },
        Chain {
            name: "input",
            kind: ChainType::Filter,
            hook: Hook::Input,
            priority: Priority::Filter,
            policy: Verdict::Drop,
            rules: input,
        },
    ];
    if policy.gatekeeper {
        sets.push(proto_ports("dns_redirect", dns_ports(&[DNS_PORT])));
        chains.push(Chain {
            name: "dns",
            kind: ChainType::Nat,
            hook: Hook::Output,
            priority: Priority::Dstnat,
            policy: Verdict::Accept,
            rules: vec![rule(
                vec![Match::InSet(vec![Key::L4Proto, Key::Dport], "dns_redirect")],
                vec![Statement::Redirect],
            )],
        });
    }
    Ok(Ruleset {
        table: TABLE.to_owned(),
        counters: COUNTERS.to_vec(),
        sets,
        chains,
    })
}

fn point(v: u128) -> (u128, u128) {
    (v, v)
}

fn u128_of(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

/// An (address range, port range) pair.
type Box2 = ((u128, u128), Ports);

/// The kernel refuses an interval element whose start or end falls inside
/// another one, so overlapping entries (a host inside an allowed network,
/// port ranges that cross, duplicates) are rewritten as disjoint boxes that
/// cover exactly the same (address, port) pairs. Entries that overlap
/// nothing — the usual case — are kept as they are.
fn disjoint_allow(allow: &[Allow]) -> (Vec<Element>, Vec<Element>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for family_v4 in [true, false] {
        for proto in [Proto::Tcp, Proto::Udp] {
            let boxes: Vec<Box2> = allow
                .iter()
                .filter(|a| a.proto == proto && a.net.is_ipv4() == family_v4)
                .flat_map(|a| {
                    unblocked(a.net)
                        .into_iter()
                        .map(move |range| (range, a.ports))
                })
                .collect();
            let out = if family_v4 { &mut v4 } else { &mut v6 };
            for (addrs, ports) in disjoint(boxes) {
                out.push(Element(vec![
                    addrs,
                    point(proto.number().into()),
                    (ports.first.into(), ports.last.into()),
                ]));
            }
        }
    }
    (v4, v6)
}

/// The address ranges of `net` outside the [`BLOCKED`] networks, unless it
/// lies inside one: a network that merely covers a metadata address (such
/// as 0.0.0.0/0) does not open it; an entry within it does.
fn unblocked(net: Cidr) -> Vec<(u128, u128)> {
    let mut ranges = vec![(u128_of(net.first()), u128_of(net.last()))];
    for (addr, len) in BLOCKED {
        let Some(b) = Cidr::new(addr, len).filter(|b| b.is_ipv4() == net.is_ipv4()) else {
            continue;
        };
        let (b0, b1) = (u128_of(b.first()), u128_of(b.last()));
        let (n0, n1) = (u128_of(net.first()), u128_of(net.last()));
        if b0 <= n0 && n1 <= b1 {
            return vec![(n0, n1)];
        }
        ranges = ranges
            .into_iter()
            .flat_map(|(a0, a1)| {
                if a1 < b0 || b1 < a0 {
                    return vec![(a0, a1)];
                }
                let mut out = Vec::new();
                if a0 < b0 {
                    out.push((a0, b0 - 1));
                }
                if b1 < a1 {
                    out.push((b1 + 1, a1));
                }
                out
            })
            .collect();
    }
    ranges
}

fn overlap(a: &Box2, b: &Box2) -> bool {
    a.0.0 <= b.0.1 && b.0.0 <= a.0.1 && a.1.first <= b.1.last && b.1.first <= a.1.last
}

/// Groups overlapping boxes (a sweep over addresses, then union-find) and
/// replaces each group of two or more by its exact disjoint [`cover`].
/// Sorted by address, then port.
fn disjoint(mut boxes: Vec<Box2>) -> Vec<Box2> {
    boxes.sort_unstable();
    let mut parent: Vec<usize> = (0..boxes.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut active: Vec<usize> = Vec::new();
    for i in 0..boxes.len() {
        active.retain(|&j| boxes[j].0.1 >= boxes[i].0.0);
        for &j in &active {
            if overlap(&boxes[i], &boxes[j]) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a] = b;
            }
        }
        active.push(i);
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<Box2>> = Default::default();
    for (i, b) in boxes.iter().enumerate() {
        groups.entry(root(&mut parent, i)).or_default().push(*b);
    }
    let mut out: Vec<Box2> = Vec::with_capacity(boxes.len());
    for group in groups.into_values() {
        if group.len() == 1 {
            out.extend(group);
        } else {
            for (ports, addrs) in cover(&group) {
                out.extend(addrs.into_iter().map(|a| (a, ports)));
            }
        }
    }
    out.sort_unstable();
    out
}

/// (port range, disjoint address ranges) pieces covering `boxes` exactly:
/// the ports are cut where any box's range starts or ends, the address
/// ranges over each piece merged, and neighbouring pieces with the same
/// addresses joined again.
fn cover(boxes: &[Box2]) -> Vec<(Ports, Vec<(u128, u128)>)> {
    let mut cuts: Vec<u32> = boxes
        .iter()
        .flat_map(|(_, p)| [u32::from(p.first), u32::from(p.last) + 1])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces: Vec<(Ports, Vec<(u128, u128)>)> = Vec::new();
    for w in cuts.windows(2) {
        let (first, last) = (w[0] as u16, (w[1] - 1) as u16);
        let mut addrs: Vec<(u128, u128)> = boxes
            .iter()
            .filter(|(_, p)| p.first <= first && last <= p.last)
            .map(|(a, _)| *a)
            .collect();
        if addrs.is_empty() {
            continue;
        }
        addrs.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(addrs.len());
        for (a, b) in addrs {
            match merged.last_mut() {
                Some(m) if a <= m.1.saturating_add(1) => m.1 = m.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        match pieces.last_mut() {
            Some((p, prev)) if u32::from(p.last) + 1 == u32::from(first) && *prev == merged => {
                p.last = last
            }
            _ => pieces.push((Ports { first, last }, merged)),
        }
    }
    pieces
}

fn disjoint_expose(expose: &[(Proto, Ports)]) -> Vec<Element> {
    let mut out = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        let boxes: Vec<Box2> = expose
            .iter()
            .filter(|(p, _)| *p == proto)
            .map(|(_, ports)| ((0, 0), *ports))
            .collect();
        for (_, ports) in disjoint(boxes) {
            out.push(Element(vec![
                point(proto.number().into()),
                (ports.first.into(), ports.last.into()),
            ]));
        }
    }
    out
}

// ---- nft syntax ----

impl fmt::Display for Ruleset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table inet {} {{", self.table)?;
        for c in &self.counters {
            writeln!(f, "\tcounter {c} {{\n\t}}\n")?;
        }
        for s in &self.sets {
            writeln!(f, "\tset {} {{", s.name)?;
            let types: Vec<&str> = s.fields.iter().map(|t| t.name()).collect();
            writeln!(f, "\t\ttype {}", types.join(" . "))?;
            if let Some(size) = s.dynamic {
                writeln!(f, "\t\tsize {size}")?;
            }
            let mut flags = Vec::new();
            if s.interval {
                flags.push("interval");
            }
            if s.dynamic.is_some() {
                flags.push("dynamic");
            }
            if s.timeout {
                flags.push("timeout");
            }
            if !flags.is_empty() {
                writeln!(f, "\t\tflags {}", flags.join(","))?;
            }
            if let Some(t) = s.default_timeout_s {
                writeln!(f, "\t\ttimeout {t}s")?;
            }
            if s.counter {
                writeln!(f, "\t\tcounter")?;
            }
            if !s.elements.is_empty() {
                let els: Vec<String> = s
                    .elements
                    .iter()
                    .map(|e| element_text(&s.fields, e))
                    .collect();
                writeln!(f, "\t\telements = {{ {} }}", els.join(",\n\t\t\t     "))?;
            }
            writeln!(f, "\t}}\n")?;
        }
        for (i, c) in self.chains.iter().enumerate() {
            let kind = match c.kind {
                ChainType::Filter => "filter",
                ChainType::Nat => "nat",
            };
            let hook = match c.hook {
                Hook::Input => "input",
                Hook::Output => "output",
                Hook::Forward => "forward",
                Hook::Postrouting => "postrouting",
            };
            let priority = match c.priority {
                Priority::Filter => "filter",
                Priority::Srcnat => "srcnat",
                Priority::Dstnat => "-100",
            };
            let policy = match c.policy {
                Verdict::Accept => "accept",
                Verdict::Drop => "drop",
            };
            writeln!(f, "\tchain {} {{", c.name)?;
            writeln!(
                f,
                "\t\ttype {kind} hook {hook} priority {priority}; policy {policy};"
            )?;
            for r in &c.rules {
                writeln!(f, "\t\t{}", rule_text(r))?;
            }
            writeln!(f, "\t}}")?;
            if i + 1 < self.chains.len() {
                writeln!(f)?;
            }
        }
        writeln!(f, "}}")
    }
}

fn rule_text(r: &Rule) -> String {
    let keys = |k: &[Key]| k.iter().map(|k| k.nft()).collect::<Vec<_>>().join(" . ");
    let mut words = Vec::new();
    for m in &r.matches {
        words.push(match m {
            Match::IifName(name) => format!("iifname {name}"),
            Match::OifName(name) => format!("oifname {name}"),
            Match::EstablishedRelated => "ct state established,related".into(),
            Match::Icmpv6Types(a, b) => format!("icmpv6 type {a}-{b}"),
            Match::InSet(k, set) => format!("{} @{set}", keys(k)),
            Match::L4Proto(p) => format!("meta l4proto {}", p.name()),
            Match::Dport(p) => format!("th dport {p}"),
        });
    }
    for s in &r.statements {
        words.push(match s {
            Statement::Counter(name) => format!("counter name {name:?}"),
            Statement::Update(set, k) => format!("update @{set} {{ {} }}", keys(k)),
            Statement::Masquerade => "masquerade".into(),
            Statement::Redirect => "redirect".into(),
            Statement::Accept => "accept".into(),
            Statement::Drop => "drop".into(),
        });
    }
    words.join(" ")
}

fn element_text(fields: &[Field], e: &Element) -> String {
    let mut parts = Vec::new();
    for (field, &(a, b)) in fields.iter().zip(&e.0) {
        let mut s = String::new();
        match field {
            Field::Ipv4Addr | Field::Ipv6Addr => {
                let ip = |v: u128| -> IpAddr {
                    if *field == Field::Ipv4Addr {
                        Ipv4Addr::from(v as u32).into()
                    } else {
                        Ipv6Addr::from(v).into()
                    }
                };
                let bits = 8 * field.size() as u32;
                let span = b - a;
                // A CIDR when the range is one: size a power of two, aligned.
                if a == b {
                    write!(s, "{}", ip(a)).unwrap();
                } else if span.checked_add(1).is_none_or(|n| n.is_power_of_two()) && a & span == 0 {
                    let host_bits = 128 - span.leading_zeros();
                    write!(s, "{}/{}", ip(a), bits - host_bits).unwrap();
                } else {
                    write!(s, "{}-{}", ip(a), ip(b)).unwrap();
                }
            }
            Field::InetProto => match a as u8 {
                6 => s.push_str("tcp"),
                17 => s.push_str("udp"),
                n => write!(s, "{n}").unwrap(),
            },
            Field::InetService => write!(
                s,
                "{}",
                Ports {
                    first: a as u16,
                    last: b as u16
                }
            )
            .unwrap(),
            Field::IfName => write!(s, "{:?}", ifname_text(&a.to_be_bytes())).unwrap(),
        }
        parts.push(s);
    }
    parts.join(" . ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(s: &str) -> Allow {
        let e: Entry = s.parse().unwrap();
        addresses(&[e])[0]
    }

    fn elements(r: &Ruleset, set: &str) -> Vec<String> {
        let s = r.set(set).unwrap();
        s.elements
            .iter()
            .map(|e| element_text(&s.fields, e))
            .collect()
    }

    fn policy(allow_: &[&str]) -> Policy {
        Policy {
            allow: allow_.iter().map(|s| allow(s)).collect(),
            ..Policy::default()
        }
    }

    #[test]
    fn names_become_pin_set_classes_by_protocol_and_ports() {
        let entries: Vec<Entry> = [
            "pypi.org:443",
            "udp://10.0.0.1:53",
            "*.pythonhosted.org:443",
            "udp://ntp.test:123",
            "api.test:8000-8100",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(addresses(&entries), vec![allow("udp://10.0.0.1:53")]);
        let classes = name_classes(&entries).unwrap();
        assert_eq!(
            classes,
            vec![
                (Proto::Tcp, Ports::one(443)),
                (Proto::Udp, Ports::one(123)),
                (
                    Proto::Tcp,
                    Ports {
                        first: 8000,
                        last: 8100
                    }
                ),
            ]
        );
        let r = compile(&Policy {
            name_ports: classes,
            gatekeeper: true,
            ..Policy::default()
        })
        .unwrap();
        let text = r.to_string();
        assert!(
            text.contains("ip daddr @pin4_2 meta l4proto tcp th dport 8000-8100"),
            "{text}"
        );
        assert!(r.set("pin6_1").unwrap().timeout, "{text}");
        let many: Vec<Entry> = (0..=MAX_NAME_CLASSES)
            .map(|i| format!("h{i}.test:{}", 1000 + i).parse().unwrap())
            .collect();
        let err = name_classes(&many).unwrap_err().to_string();
        assert!(err.contains("at most 16 are supported"), "{err}");
    }

    #[test]
    fn metadata_addresses_open_only_to_entries_inside_them() {
        let r = compile(&policy(&[
            "0.0.0.0/0:80",
            "[::/0]:80",
            "169.254.169.254:8080",
        ]))
        .unwrap();
        assert_eq!(
            elements(&r, "allow4"),
            [
                "0.0.0.0-169.253.255.255 . tcp . 80",
                "169.254.169.254 . tcp . 8080",
                "169.255.0.0-255.255.255.255 . tcp . 80",
            ]
        );
        let v6 = elements(&r, "allow6").join(" ");
        assert!(
            !v6.contains("fd00:ec2::254 ") && !v6.contains("fe80::/10"),
            "{v6}"
        );
        assert!(is_blocked("169.254.169.254".parse().unwrap()));
        assert!(is_blocked("fd00:ec2::254".parse().unwrap()));
        assert!(is_blocked("fe80::1".parse().unwrap()));
        assert!(!is_blocked("169.255.0.1".parse().unwrap()));
    }

    #[test]
    fn entries_land_in_the_family_sets() {
        let r = compile(&policy(&[
            "10.0.0.1:443",
            "10.2.0.0/16",
            "udp://10.0.0.9:5000-5010",
            "[2001:db8::1]:443",
            "2001:db8:1::/48",
        ]))
        .unwrap();
        assert_eq!(
            elements(&r, "allow4"),
            [
                "10.0.0.1 . tcp . 443",
                "10.2.0.0/16 . tcp . 0-65535",
                "10.0.0.9 . udp . 5000-5010"
            ]
        );
        assert_eq!(
            elements(&r, "allow6"),
            ["2001:db8::1 . tcp . 443", "2001:db8:1::/48 . tcp . 0-65535"]
        );
    }

    #[test]
    fn overlaps_become_disjoint_covering_the_same_pairs() {
        let r = compile(&policy(&[
            "10.0.0.0/8:80",
            "10.1.2.3:80",    // inside the network: absorbed
            "10.1.2.3:80-90", // crosses: cut at 81
            "10.0.0.1:443",
            "10.0.0.2:443",        // no overlap: kept
            "10.0.0.1:443",        // duplicate
            "10.0.0.0/30:440-442", // adjacent ports, other addresses: kept
            "udp://10.1.2.3:80",   // other protocol: separate
        ]))
        .unwrap();
        assert_eq!(
            elements(&r, "allow4"),
            [
                "10.0.0.0/30 . tcp . 440-442",
                "10.0.0.0/8 . tcp . 80",
                "10.0.0.1 . tcp . 443",
                "10.0.0.2 . tcp . 443",
                "10.1.2.3 . tcp . 81-90",
                "10.1.2.3 . udp . 80",
            ]
        );
    }

    #[test]
    fn the_cover_is_exact() {
        // Brute force over a small space: (address, port) is covered by the
        // elements exactly when some box contains it.
        let boxes = [
            ((2, 9), Ports { first: 3, last: 7 }),
            ((5, 5), Ports { first: 1, last: 9 }),
            ((0, 3), Ports { first: 7, last: 8 }),
            ((9, 12), Ports { first: 5, last: 5 }),
        ];
        let pieces = disjoint(boxes.to_vec());
        let inside = |((a, b), p): &Box2, addr: u128, port: u16| {
            *a <= addr && addr <= *b && p.first <= port && port <= p.last
        };
        for addr in 0u128..14 {
            for port in 0u16..11 {
                let want = boxes.iter().any(|b| inside(b, addr, port));
                let hits = pieces.iter().filter(|b| inside(b, addr, port)).count();
                assert_eq!(hits, usize::from(want), "({addr}, {port})");
            }
        }
        let far = ((100, 100), Ports::one(1));
        assert_eq!(
            disjoint(vec![far, boxes[0]]),
            vec![boxes[0], far],
            "kept as is"
        );
    }

    #[test]
    fn dns_goes_to_the_gatekeeper_on_loopback_or_nowhere() {
        let r = compile(&Policy {
            gatekeeper: true,
            ..Policy::default()
        })
        .unwrap();
        assert_eq!(
            elements(&r, "dns4"),
            ["127.0.0.1 . tcp . 53", "127.0.0.1 . udp . 53"]
        );
        assert_eq!(elements(&r, "dns6"), ["::1 . tcp . 53", "::1 . udp . 53"]);
        let text = r.to_string();
        assert!(
            text.contains("type nat hook output priority -100; policy accept;"),
            "{text}"
        );
        assert!(
            text.contains("meta l4proto . th dport @dns_redirect redirect"),
            "{text}"
        );
        let none = compile(&Policy::default()).unwrap();
        assert!(none.set("dns4").unwrap().elements.is_empty());
        assert!(none.chains.iter().all(|c| c.kind == ChainType::Filter));
        assert_eq!(
            elements(&none, "dns_out"),
            ["tcp . 53", "tcp . 853", "udp . 53", "udp . 853"]
        );
    }

    #[test]
    fn the_rule_count_does_not_grow_with_the_list() {
        let small = compile(&policy(&["10.0.0.1:80"])).unwrap();
        let entries: Vec<String> = (0..1000)
            .map(|i| format!("10.{}.{}.1:{}", i / 256, i % 256, 1000 + i))
            .collect();
        let refs: Vec<&str> = entries.iter().map(|s| s.as_str()).collect();
        let big = compile(&policy(&refs)).unwrap();
        let rules = |r: &Ruleset| r.chains.iter().map(|c| c.rules.len()).sum::<usize>();
        assert_eq!(rules(&small), rules(&big));
        assert_eq!(big.set("allow4").unwrap().elements.len(), 1000);
    }

    #[test]
    fn every_verdict_is_counted() {
        let r = compile(&Policy::default()).unwrap();
        for c in &r.chains {
            for rule in &c.rules {
                let verdict = rule
                    .statements
                    .iter()
                    .any(|s| matches!(s, Statement::Accept | Statement::Drop));
                let counted = rule
                    .statements
                    .iter()
                    .any(|s| matches!(s, Statement::Counter(_)));
                assert_eq!(verdict, counted, "{}", rule_text(rule));
            }
            assert!(matches!(
                c.rules.last().unwrap().statements[..],
                [Statement::Counter(_), Statement::Drop]
            ));
        }
    }
}
