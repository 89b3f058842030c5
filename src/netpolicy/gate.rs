//! The DNS gatekeeper's decisions (pure: bytes in, decisions and bytes
//! out; the sockets, pinning and audit are `network::gatekeeper`'s).
//!
//! [`query`] decides what a sandbox's query gets: a local answer
//! (NXDOMAIN for an unlisted name, REFUSED for the record types that carry
//! no address, an empty answer where addresses would bypass pinning), or a
//! question to send upstream. [`answer`] turns the upstream's answer into
//! the reply the client gets and the addresses to pin first: the CNAME
//! chain from the question's name is followed, only the chain's records of
//! the asked type are kept (glue and other owners are dropped: nothing
//! reaches the client that is not pinned), blocked addresses are removed,
//! and TTLs are cut to the longest pin. Every packet is parsed by hickory;
//! nothing here panics on hostile input (a fuzz target checks).

use std::fmt;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::compile::is_blocked;
use super::names::NameSet;

/// The UDP payload we ask upstream for and offer to EDNS clients (the DNS
/// flag day's value: no fragmentation).
pub const PAYLOAD: u16 = 1232;
/// CNAME links followed.
const CHAIN_MAX: usize = 16;
/// Addresses kept from one answer.
pub const ADDRESSES_MAX: usize = 64;

/// How the gatekeeper treats answers (seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateConfig {
    pub ttl_min: u32,
    pub ttl_max: u32,
    pub grace: u32,
    /// The sandbox can reach IPv6 addresses: AAAA questions are asked.
    pub ipv6: bool,
    /// Audit: unlisted names are asked too (and recorded).
    pub learn: bool,
}

impl Default for GateConfig {
    fn default() -> GateConfig {
        GateConfig {
            ttl_min: 30,
            ttl_max: 3600,
            grace: 10,
            ipv6: true,
            learn: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// No allowlist entry matches the name.
    Unlisted,
    /// Not a query we answer (not a standard query, several questions,
    /// not class IN, unparsable).
    Malformed,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DenyReason::Unlisted => "unlisted name",
            DenyReason::Malformed => "malformed query",
        })
    }
}

/// A query answered locally instead of upstream, for the audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// Lowercase, no trailing dot; empty when the query did not parse.
    pub name: String,
    /// `A`, `AAAA`, `TXT`, ... or `TYPE65280` for unknown types.
    pub qtype: String,
    pub reason: DenyReason,
}

#[derive(Debug)]
pub enum Decision {
    /// Send `reply` now (nothing when it is empty: not even a header came).
    Reply {
        reply: Vec<u8>,
        denied: Option<Denied>,
    },
    /// Send `query` upstream and give what comes back to [`answer`].
    /// `matched`: the indexes in the [`NameSet`] of the entries the name
    /// matches (none for an unlisted name asked in learn mode, which is
    /// `would_deny`).
    Forward {
        query: Vec<u8>,
        pending: Pending,
        matched: Vec<usize>,
        would_deny: Option<Denied>,
    },
}

/// A query sent upstream, waiting for its answer.
#[derive(Clone, Debug)]
pub struct Pending {
    id: u16,
    rd: bool,
    question: Query,
    name: String,
    qtype: RecordType,
    edns: bool,
    /// The largest reply the client takes (UDP: 512 without EDNS).
    max_size: usize,
    upstream_id: u16,
}

impl Pending {
    /// The question's name: lowercase, no trailing dot.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The question's type, as [`Denied::qtype`].
    pub fn qtype(&self) -> String {
        type_text(self.qtype)
    }
}

/// An address to pin before the answer is released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub addr: IpAddr,
    /// The record's TTL as received.
    pub ttl: u32,
    /// How long the pin lives: the TTL clamped to [ttl_min, ttl_max], plus
    /// the grace (seconds).
    pub timeout: u32,
}

#[derive(Debug)]
pub enum Answered {
    /// Pin `pins`, then send `reply`; if pinning fails, send
    /// [`servfail`] instead.
    Release {
        reply: Vec<u8>,
        pins: Vec<Pin>,
        /// The names followed from the question (itself first).
        cname_chain: Vec<String>,
        /// Addresses the answer held that are never let through.
        blocked: Vec<IpAddr>,
    },
    /// Truncated over UDP: ask again over TCP.
    RetryTcp,
    /// Not the answer to this query: keep waiting.
    Ignore,
}

/// What a sandbox's query gets.
pub fn query<T>(
    packet: &[u8],
    names: &NameSet<T>,
    cfg: &GateConfig,
    transport: Transport,
) -> Decision {
    let malformed = |name: String, qtype: String| {
        Some(Denied {
            name,
            qtype,
            reason: DenyReason::Malformed,
        })
    };
    let Ok(msg) = Message::from_vec(packet) else {
        return Decision::Reply {
            reply: header_reply(packet, ResponseCode::FormErr),
            denied: malformed(String::new(), String::new()),
        };
    };
    if msg.metadata.message_type != MessageType::Query {
        // An answer sent to a server: answering could loop.
        return Decision::Reply {
            reply: Vec::new(),
            denied: malformed(String::new(), String::new()),
        };
    }
    if msg.metadata.op_code != OpCode::Query {
        return Decision::Reply {
            reply: header_reply(packet, ResponseCode::NotImp),
            denied: malformed(String::new(), String::new()),
        };
    }
    if msg.queries.len() != 1 {
        return Decision::Reply {
            reply: header_reply(packet, ResponseCode::FormErr),
            denied: malformed(String::new(), String::new()),
        };
    }
    let question = msg.queries[0].clone();
    let name = lower(&question.name);
    let qtype = question.query_type;
    let max_size = match (transport, &msg.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => 512,
        (Transport::Udp, Some(e)) => usize::from(e.max_payload().clamp(512, PAYLOAD)),
    };
    let pending = Pending {
        id: msg.metadata.id,
        rd: msg.metadata.recursion_desired,
        question: question.clone(),
        name: name.clone(),
        qtype,
        edns: msg.edns.is_some(),
        max_size,
        upstream_id: 0,
    };
    if question.query_class != DNSClass::IN {
        return Decision::Reply {
            reply: pending.reply(ResponseCode::Refused, Vec::new(), Vec::new()),
            denied: malformed(name, type_text(qtype)),
        };
    }
    // hickory writes a label's dot or odd byte escaped ("a\\.pypi.org" is
    // two labels): no allowlist name has one, and splitting such a name at
    // its dots would make it look like a name it is not.
    let matched = if name.contains('\\') {
        Vec::new()
    } else {
        names.lookup(&name)
    };
    let would_deny = matched.is_empty().then(|| Denied {
        name: name.clone(),
        qtype: type_text(qtype),
        reason: DenyReason::Unlisted,
    });
    if would_deny.is_some() && !cfg.learn {
        let rcode = if refused_unlisted(qtype) {
            ResponseCode::Refused
        } else {
            ResponseCode::NXDomain
        };
        return Decision::Reply {
            reply: pending.reply(rcode, Vec::new(), Vec::new()),
            denied: would_deny,
        };
    }
    // Listed (or learning): an empty answer where the records would carry
    // addresses past the pins, or addresses the sandbox cannot reach.
    let nodata = matches!(
        qtype,
        RecordType::HTTPS | RecordType::SVCB | RecordType::ANY
    ) || (qtype == RecordType::AAAA && !cfg.ipv6);
    if nodata {
        return Decision::Reply {
            reply: pending.reply(ResponseCode::NoError, Vec::new(), Vec::new()),
            denied: would_deny,
        };
    }
    let mut up = Message::query();
    up.metadata.recursion_desired = true;
    up.add_query(question);
    let mut edns = Edns::new();
    edns.set_max_payload(PAYLOAD);
    up.set_edns(edns);
    let Ok(bytes) = up.to_vec() else {
        return Decision::Reply {
            reply: pending.reply(ResponseCode::ServFail, Vec::new(), Vec::new()),
            denied: would_deny,
        };
    };
    Decision::Forward {
        query: bytes,
        pending: Pending {
            upstream_id: up.metadata.id,
            ..pending
        },
        matched,
        would_deny,
    }
}

/// The upstream's answer to `pending`, made into the client's reply.
pub fn answer(pending: &Pending, upstream: &[u8], cfg: &GateConfig) -> Answered {
    let Ok(msg) = Message::from_vec(upstream) else {
        return Answered::Ignore;
    };
    let same_question = msg.queries.len() == 1
        && msg.queries[0].query_type == pending.qtype
        && lower(&msg.queries[0].name) == pending.name;
    if msg.metadata.message_type != MessageType::Response
        || msg.metadata.id != pending.upstream_id
        || !same_question
    {
        return Answered::Ignore;
    }
    if msg.metadata.truncation {
        return Answered::RetryTcp;
    }
    let release = |reply| Answered::Release {
        reply,
        pins: Vec::new(),
        cname_chain: vec![pending.name.clone()],
        blocked: Vec::new(),
    };
    let soa = |m: &Message| -> Vec<Record> {
        m.authorities
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .take(1)
            .map(|r| clamp_ttl(r.clone(), cfg))
            .collect()
    };
    match msg.metadata.response_code {
        ResponseCode::NoError => {}
        // No AAAA there (dnsmasq with only IPv4 addresses says so).
        ResponseCode::Refused if pending.qtype == RecordType::AAAA => {
            return release(pending.reply(ResponseCode::NoError, Vec::new(), Vec::new()));
        }
        rcode => return release(pending.reply(rcode, Vec::new(), soa(&msg))),
    }

    // The chain of names from the question's, through CNAMEs.
    let mut chain = vec![pending.name.clone()];
    let mut kept: Vec<Record> = Vec::new();
    while chain.len() <= CHAIN_MAX {
        let current = chain.last().cloned().unwrap_or_default();
        let next = msg.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if lower(&r.name) == current => Some((r, lower(&target.0))),
            _ => None,
        });
        let Some((record, target)) = next else {
            break;
        };
        kept.push(clamp_ttl(record.clone(), cfg));
        if chain.contains(&target) {
            break; // a loop: what was followed is kept
        }
        chain.push(target);
    }
    let mut pins: Vec<Pin> = Vec::new();
    let mut blocked = Vec::new();
    for r in &msg.answers {
        if r.record_type() != pending.qtype || !chain.contains(&lower(&r.name)) {
            continue;
        }
        let addr = match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        };
        if let Some(addr) = addr {
            if is_blocked(addr) {
                if !blocked.contains(&addr) {
                    blocked.push(addr);
                }
                continue;
            }
            if let Some(p) = pins.iter_mut().find(|p| p.addr == addr) {
                p.ttl = p.ttl.max(r.ttl);
                p.timeout = pin_timeout(p.ttl, cfg);
            } else if pins.len() < ADDRESSES_MAX {
                pins.push(Pin {
                    addr,
                    ttl: r.ttl,
                    timeout: pin_timeout(r.ttl, cfg),
                });
            } else {
                continue;
            }
        }
        kept.push(clamp_ttl(r.clone(), cfg));
    }
    let authorities = if kept.iter().any(|r| r.record_type() == pending.qtype) {
        Vec::new()
    } else {
        soa(&msg)
    };
    Answered::Release {
        reply: pending.reply(ResponseCode::NoError, kept, authorities),
        pins,
        cname_chain: chain,
        blocked,
    }
}

/// SERVFAIL for `pending`: no upstream answered, or pinning failed.
pub fn servfail(pending: &Pending) -> Vec<u8> {
    pending.reply(ResponseCode::ServFail, Vec::new(), Vec::new())
}

/// REFUSED for `packet` (over a limit), echoing its question when it has
/// one; `None` when it is not even a header.
pub fn refused(packet: &[u8]) -> Option<Vec<u8>> {
    if let Ok(msg) = Message::from_vec(packet)
        && msg.metadata.message_type == MessageType::Query
        && msg.queries.len() == 1
    {
        let mut m = Message::response(msg.metadata.id, msg.metadata.op_code);
        m.metadata.recursion_desired = msg.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.metadata.response_code = ResponseCode::Refused;
        m.add_query(msg.queries[0].clone());
        if let Ok(b) = m.to_vec() {
            return Some(b);
        }
    }
    let reply = header_reply(packet, ResponseCode::Refused);
    (!reply.is_empty()).then_some(reply)
}

impl Pending {
    /// The client's reply: its id and question, `answers` and
    /// `authorities`; truncated (no records, TC set) when it would not fit.
    fn reply(
        &self,
        rcode: ResponseCode,
        answers: Vec<Record>,
        authorities: Vec<Record>,
    ) -> Vec<u8> {
        let mut m = Message::response(self.id, OpCode::Query);
        m.metadata.recursion_desired = self.rd;
        m.metadata.recursion_available = true;
        m.metadata.response_code = rcode;
        m.add_query(self.question.clone());
        m.answers = answers;
        m.authorities = authorities;
        if self.edns {
            let mut e = Edns::new();
            e.set_max_payload(PAYLOAD);
            m.set_edns(e);
        }
        match m.to_vec() {
            Ok(b) if b.len() <= self.max_size => b,
            Ok(_) => {
                m.answers.clear();
                m.authorities.clear();
                m.metadata.truncation = true;
                m.to_vec()
                    .unwrap_or_else(|_| self.header(ResponseCode::ServFail))
            }
            Err(_) => self.header(ResponseCode::ServFail),
        }
    }

    fn header(&self, rcode: ResponseCode) -> Vec<u8> {
        let mut h = [0u8; 12];
        h[..2].copy_from_slice(&self.id.to_be_bytes());
        h[2] = 0x80 | u8::from(self.rd);
        h[3] = 0x80 | (u16::from(rcode) & 0xf) as u8;
        h.to_vec()
    }
}

/// A bare reply header for a packet we could not (or would not) parse:
/// its id, opcode and RD bit, QR and RA set, no sections. Empty when the
/// packet is shorter than a header.
fn header_reply(packet: &[u8], rcode: ResponseCode) -> Vec<u8> {
    if packet.len() < 12 {
        return Vec::new();
    }
    let mut h = [0u8; 12];
    h[..2].copy_from_slice(&packet[..2]);
    h[2] = 0x80 | (packet[2] & 0x79); // QR, the opcode and RD
    h[3] = 0x80 | (u16::from(rcode) & 0xf) as u8;
    h.to_vec()
}

/// Types whose records carry no address but data (or hints that bypass
/// pinning): refused outright for unlisted names.
fn refused_unlisted(t: RecordType) -> bool {
    matches!(
        t,
        RecordType::HTTPS | RecordType::SVCB | RecordType::ANY | RecordType::TXT | RecordType::PTR
    )
}

fn pin_timeout(ttl: u32, cfg: &GateConfig) -> u32 {
    ttl.clamp(cfg.ttl_min, cfg.ttl_max.max(cfg.ttl_min))
        .saturating_add(cfg.grace)
}

fn clamp_ttl(mut r: Record, cfg: &GateConfig) -> Record {
    r.ttl = r.ttl.min(cfg.ttl_max);
    r
}

/// A name as the allowlist compares it: lowercase ASCII, no trailing dot.
fn lower(n: &Name) -> String {
    let s = n.to_ascii().to_ascii_lowercase();
    s.strip_suffix('.').map(str::to_owned).unwrap_or(s)
}

fn type_text(t: RecordType) -> String {
    match t {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netpolicy::names::NamePattern;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, TXT};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn names(pats: &[&str]) -> NameSet<usize> {
        NameSet::new(
            pats.iter()
                .enumerate()
                .map(|(i, p)| (NamePattern::parse(p).unwrap(), i))
                .collect(),
        )
    }

    fn ask(name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn parse(b: &[u8]) -> Message {
        Message::from_vec(b).unwrap()
    }

    fn reply_of(d: Decision) -> (Message, Option<Denied>) {
        match d {
            Decision::Reply { reply, denied } => (parse(&reply), denied),
            Decision::Forward { .. } => panic!("forwarded"),
        }
    }

    fn forward_of(d: Decision) -> (Vec<u8>, Pending, Vec<usize>, Option<Denied>) {
        match d {
            Decision::Forward {
                query,
                pending,
                matched,
                would_deny,
            } => (query, pending, matched, would_deny),
            Decision::Reply { reply, .. } => panic!("answered locally: {:?}", parse(&reply)),
        }
    }

    /// The upstream's answer to `query`, with `answers`.
    fn upstream(query: &[u8], rcode: ResponseCode, answers: Vec<Record>) -> Vec<u8> {
        let q = parse(query);
        let mut m = Message::response(q.metadata.id, OpCode::Query);
        m.metadata.response_code = rcode;
        m.add_query(q.queries[0].clone());
        m.answers = answers;
        m.to_vec().unwrap()
    }

    fn a(name: &str, ttl: u32, addr: [u8; 4]) -> Record {
        Record::from_rdata(
            Name::from_ascii(name).unwrap(),
            ttl,
            RData::A(A(Ipv4Addr::from(addr))),
        )
    }

    fn cname(name: &str, ttl: u32, target: &str) -> Record {
        Record::from_rdata(
            Name::from_ascii(name).unwrap(),
            ttl,
            RData::CNAME(CNAME(Name::from_ascii(target).unwrap())),
        )
    }

    #[test]
    fn unlisted_names_are_answered_here() {
        let set = names(&["pypi.org", "*.x.test"]);
        let cfg = GateConfig::default();
        for (name, t, rcode) in [
            ("evil.example", RecordType::A, ResponseCode::NXDomain),
            (
                "secret.evil.example",
                RecordType::AAAA,
                ResponseCode::NXDomain,
            ),
            ("x.test", RecordType::A, ResponseCode::NXDomain),
            ("a.b.x.test", RecordType::A, ResponseCode::NXDomain),
            ("evil.example", RecordType::TXT, ResponseCode::Refused),
            ("evil.example", RecordType::HTTPS, ResponseCode::Refused),
            ("evil.example", RecordType::SVCB, ResponseCode::Refused),
            ("evil.example", RecordType::ANY, ResponseCode::Refused),
            (
                "1.0.0.10.in-addr.arpa",
                RecordType::PTR,
                ResponseCode::Refused,
            ),
        ] {
            let (m, denied) = reply_of(query(&ask(name, t, None), &set, &cfg, Transport::Udp));
            assert_eq!(m.metadata.response_code, rcode, "{name} {t}");
            assert_eq!(m.metadata.id, 0x1234);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
            assert_eq!(lower(&m.queries[0].name), name);
            let d = denied.unwrap();
            assert_eq!((d.name.as_str(), d.reason), (name, DenyReason::Unlisted));
            assert_eq!(d.qtype, t.to_string());
        }
    }

    #[test]
    fn a_label_with_a_dot_is_not_the_name_it_spells() {
        let set = names(&["*.pypi.org", "a.pypi.org"]);
        let cfg = GateConfig::default();
        let mut m = Message::new(9, MessageType::Query, OpCode::Query);
        let tricky = Name::from_labels(vec![&b"a.pypi"[..], &b"org"[..]]).unwrap();
        m.add_query(Query::query(tricky, RecordType::A));
        let (reply, denied) = reply_of(query(&m.to_vec().unwrap(), &set, &cfg, Transport::Udp));
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(denied.unwrap().reason, DenyReason::Unlisted);
    }

    #[test]
    fn listed_names_go_upstream_with_a_fresh_id_and_edns() {
        let set = names(&["pypi.org", "*.x.test", "**.d.test"]);
        let cfg = GateConfig::default();
        for (name, matched) in [
            ("PyPI.org.", vec![0]),
            ("a.x.test", vec![1]),
            ("a.b.d.test", vec![2]),
        ] {
            let (q, pending, m, would) = forward_of(query(
                &ask(name, RecordType::A, None),
                &set,
                &cfg,
                Transport::Udp,
            ));
            assert_eq!(m, matched, "{name}");
            assert!(would.is_none());
            let up = parse(&q);
            assert_eq!(up.metadata.id, pending.upstream_id);
            assert!(up.metadata.recursion_desired);
            assert_eq!(up.edns.as_ref().unwrap().max_payload(), PAYLOAD);
            assert_eq!(up.queries[0].query_type, RecordType::A);
            assert_eq!(
                pending.name(),
                name.to_ascii_lowercase().trim_end_matches('.')
            );
        }
    }

    #[test]
    fn listed_types_that_would_bypass_pins_get_an_empty_answer() {
        let set = names(&["pypi.org"]);
        let no_v6 = GateConfig {
            ipv6: false,
            ..GateConfig::default()
        };
        for (t, cfg) in [
            (RecordType::HTTPS, GateConfig::default()),
            (RecordType::SVCB, GateConfig::default()),
            (RecordType::ANY, GateConfig::default()),
            (RecordType::AAAA, no_v6),
        ] {
            let (m, denied) =
                reply_of(query(&ask("pypi.org", t, None), &set, &cfg, Transport::Udp));
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{t}");
            assert!(m.answers.is_empty() && denied.is_none(), "{t}");
        }
        // TXT for a listed name is the name owner's to answer.
        forward_of(query(
            &ask("pypi.org", RecordType::TXT, None),
            &set,
            &GateConfig::default(),
            Transport::Udp,
        ));
    }

    #[test]
    fn learning_asks_for_unlisted_names_and_says_so() {
        let cfg = GateConfig {
            learn: true,
            ..GateConfig::default()
        };
        let (_, _, matched, would) = forward_of(query(
            &ask("evil.example", RecordType::A, None),
            &names(&["pypi.org"]),
            &cfg,
            Transport::Udp,
        ));
        assert!(matched.is_empty());
        assert_eq!(would.unwrap().reason, DenyReason::Unlisted);
    }

    #[test]
    fn malformed_queries_get_formerr_or_nothing() {
        let set = names(&["pypi.org"]);
        let cfg = GateConfig::default();
        let short = query(&[1, 2, 3], &set, &cfg, Transport::Udp);
        assert!(matches!(short, Decision::Reply { ref reply, .. } if reply.is_empty()));
        let mut bad = ask("pypi.org", RecordType::A, None);
        bad.truncate(14);
        let (m, d) = reply_of(query(&bad, &set, &cfg, Transport::Udp));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(d.unwrap().reason, DenyReason::Malformed);
        // A response sent to us is not answered.
        let resp = upstream(
            &ask("pypi.org", RecordType::A, None),
            ResponseCode::NoError,
            vec![],
        );
        assert!(matches!(
            query(&resp, &set, &cfg, Transport::Udp),
            Decision::Reply { ref reply, .. } if reply.is_empty()
        ));
        // Two questions.
        let mut two = Message::new(7, MessageType::Query, OpCode::Query);
        two.add_query(Query::query(
            Name::from_ascii("pypi.org").unwrap(),
            RecordType::A,
        ));
        two.add_query(Query::query(
            Name::from_ascii("pypi.org").unwrap(),
            RecordType::AAAA,
        ));
        let (m, _) = reply_of(query(&two.to_vec().unwrap(), &set, &cfg, Transport::Udp));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert!(refused(&[0; 3]).is_none());
        let r = parse(&refused(&ask("pypi.org", RecordType::A, None)).unwrap());
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn answers_follow_the_cname_chain_and_keep_only_its_records() {
        let set = names(&["pypi.org"]);
        let cfg = GateConfig::default();
        let (q, pending, _, _) = forward_of(query(
            &ask("pypi.org", RecordType::A, Some(4096)),
            &set,
            &cfg,
            Transport::Udp,
        ));
        let up = upstream(
            &q,
            ResponseCode::NoError,
            vec![
                cname("pypi.org", 300, "dualstack.pypi.map.fastly.net"),
                cname("dualstack.pypi.map.fastly.net", 60, "edge.fastly.net"),
                a("edge.fastly.net", 20, [151, 101, 0, 223]),
                a("edge.fastly.net", 7200, [151, 101, 64, 223]),
                a("elsewhere.example", 60, [10, 9, 9, 9]), // not on the chain
                a("edge.fastly.net", 60, [169, 254, 169, 254]), // blocked
            ],
        );
        let Answered::Release {
            reply,
            pins,
            cname_chain,
            blocked,
        } = answer(&pending, &up, &cfg)
        else {
            panic!("not released");
        };
        assert_eq!(
            cname_chain,
            [
                "pypi.org",
                "dualstack.pypi.map.fastly.net",
                "edge.fastly.net"
            ]
        );
        assert_eq!(blocked, ["169.254.169.254".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            pins,
            [
                Pin {
                    addr: "151.101.0.223".parse().unwrap(),
                    ttl: 20,
                    timeout: 40 // min 30 + grace 10
                },
                Pin {
                    addr: "151.101.64.223".parse().unwrap(),
                    ttl: 7200,
                    timeout: 3610 // max 3600 + grace 10
                },
            ]
        );
        let m = parse(&reply);
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.answers.len(), 4, "{m:?}");
        assert!(m.answers.iter().all(|r| r.ttl <= 3600));
        assert!(
            !m.answers
                .iter()
                .any(|r| lower(&r.name) == "elsewhere.example")
        );
        assert_eq!(m.edns.as_ref().unwrap().max_payload(), PAYLOAD);
    }

    #[test]
    fn cname_loops_end() {
        let set = names(&["a.test"]);
        let cfg = GateConfig::default();
        let (q, pending, _, _) = forward_of(query(
            &ask("a.test", RecordType::A, None),
            &set,
            &cfg,
            Transport::Udp,
        ));
        let up = upstream(
            &q,
            ResponseCode::NoError,
            vec![cname("a.test", 60, "b.test"), cname("b.test", 60, "a.test")],
        );
        let Answered::Release {
            pins, cname_chain, ..
        } = answer(&pending, &up, &cfg)
        else {
            panic!("not released");
        };
        assert!(pins.is_empty());
        assert_eq!(cname_chain, ["a.test", "b.test"]);
    }

    #[test]
    fn other_answers_are_ignored_truncated_ones_retried_errors_passed_on() {
        let set = names(&["pypi.org"]);
        let cfg = GateConfig::default();
        let (q, pending, _, _) = forward_of(query(
            &ask("pypi.org", RecordType::A, None),
            &set,
            &cfg,
            Transport::Udp,
        ));
        // Another id.
        let mut other = parse(&upstream(&q, ResponseCode::NoError, vec![]));
        other.metadata.id = other.metadata.id.wrapping_add(1);
        assert!(matches!(
            answer(&pending, &other.to_vec().unwrap(), &cfg),
            Answered::Ignore
        ));
        // Another question.
        let other_q = upstream(
            &ask("evil.example", RecordType::A, None),
            ResponseCode::NoError,
            vec![],
        );
        let mut m = parse(&other_q);
        m.metadata.id = pending.upstream_id;
        assert!(matches!(
            answer(&pending, &m.to_vec().unwrap(), &cfg),
            Answered::Ignore
        ));
        assert!(matches!(answer(&pending, b"junk", &cfg), Answered::Ignore));
        // Truncated.
        let mut tc = parse(&upstream(&q, ResponseCode::NoError, vec![]));
        tc.metadata.truncation = true;
        assert!(matches!(
            answer(&pending, &tc.to_vec().unwrap(), &cfg),
            Answered::RetryTcp
        ));
        // NXDOMAIN with its SOA.
        let mut nx = parse(&upstream(&q, ResponseCode::NXDomain, vec![]));
        nx.authorities.push(Record::from_rdata(
            Name::from_ascii("pypi.org").unwrap(),
            900,
            RData::SOA(SOA::new(
                Name::from_ascii("ns.pypi.org").unwrap(),
                Name::from_ascii("admin.pypi.org").unwrap(),
                1,
                2,
                3,
                4,
                5,
            )),
        ));
        nx.additionals.push(a("glue.example", 60, [10, 1, 1, 1]));
        let Answered::Release { reply, pins, .. } = answer(&pending, &nx.to_vec().unwrap(), &cfg)
        else {
            panic!()
        };
        let m = parse(&reply);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1);
        assert!(m.additionals.is_empty() && pins.is_empty());
        assert!(parse(&servfail(&pending)).metadata.response_code == ResponseCode::ServFail);
    }

    #[test]
    fn aaaa_refused_upstream_is_no_aaaa() {
        let set = names(&["v4only.test"]);
        let cfg = GateConfig::default();
        let (q, pending, _, _) = forward_of(query(
            &ask("v4only.test", RecordType::AAAA, None),
            &set,
            &cfg,
            Transport::Udp,
        ));
        let Answered::Release { reply, .. } =
            answer(&pending, &upstream(&q, ResponseCode::Refused, vec![]), &cfg)
        else {
            panic!()
        };
        assert_eq!(parse(&reply).metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn big_answers_are_truncated_for_small_udp_clients_not_over_tcp() {
        let set = names(&["big.test"]);
        let cfg = GateConfig::default();
        let many: Vec<Record> = (0..60)
            .map(|i| a("big.test", 60, [10, 0, 0, i as u8 + 1]))
            .collect();
        for (transport, edns, truncated) in [
            (Transport::Udp, None, true),
            (Transport::Udp, Some(4096), false),
            (Transport::Tcp, None, false),
        ] {
            let (q, pending, _, _) = forward_of(query(
                &ask("big.test", RecordType::A, edns),
                &set,
                &cfg,
                transport,
            ));
            let Answered::Release { reply, pins, .. } = answer(
                &pending,
                &upstream(&q, ResponseCode::NoError, many.clone()),
                &cfg,
            ) else {
                panic!()
            };
            let m = parse(&reply);
            assert_eq!(m.metadata.truncation, truncated, "{transport:?} {edns:?}");
            assert_eq!(m.answers.is_empty(), truncated);
            assert_eq!(pins.len(), 60);
        }
        // AAAA and TXT records of the chain are kept for their types.
        let (q, pending, _, _) = forward_of(query(
            &ask("big.test", RecordType::TXT, None),
            &set,
            &cfg,
            Transport::Udp,
        ));
        let txt = Record::from_rdata(
            Name::from_ascii("big.test").unwrap(),
            60,
            RData::TXT(TXT::new(vec!["hello".into()])),
        );
        let v6 = Record::from_rdata(
            Name::from_ascii("big.test").unwrap(),
            60,
            RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
        );
        let Answered::Release { reply, pins, .. } = answer(
            &pending,
            &upstream(&q, ResponseCode::NoError, vec![txt, v6]),
            &cfg,
        ) else {
            panic!()
        };
        assert!(pins.is_empty());
        assert_eq!(parse(&reply).answers.len(), 1);
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let set = names(&["pypi.org", "**.x.test"]);
        let cfg = GateConfig::default();
        let (q, pending, _, _) = forward_of(query(
            &ask("pypi.org", RecordType::A, None),
            &set,
            &cfg,
            Transport::Udp,
        ));
        let good = upstream(
            &q,
            ResponseCode::NoError,
            vec![
                cname("pypi.org", 60, "a.x.test"),
                a("a.x.test", 60, [10, 0, 0, 1]),
            ],
        );
        let seeds = [
            ask("a.b.x.test", RecordType::AAAA, Some(1232)),
            good.clone(),
            q,
        ];
        // xorshift: deterministic.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for i in 0..6000 {
            let mut p = seeds[i % seeds.len()].clone();
            match next() % 4 {
                0 => {
                    let n = (next() as usize) % (p.len() + 1);
                    p.truncate(n);
                }
                1 => {
                    for _ in 0..1 + next() % 4 {
                        let at = (next() as usize) % p.len().max(1);
                        if let Some(b) = p.get_mut(at) {
                            *b ^= 1 << (next() % 8);
                        }
                    }
                }
                2 => p = (0..next() % 600).map(|_| next() as u8).collect(),
                _ => {
                    let at = (next() as usize) % p.len().max(1);
                    p.splice(at..at, (0..next() % 40).map(|_| next() as u8));
                }
            }
            let _ = query(&p, &set, &cfg, Transport::Udp);
            let _ = answer(&pending, &p, &cfg);
            let _ = refused(&p);
        }
    }
}
