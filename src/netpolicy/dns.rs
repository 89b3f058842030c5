//! Resolving an allowlist's names through the resolvers the policy lists
//! (the same ones the sandbox will be allowed to ask), not the host's: a
//! name must mean to the rules what it will mean to the sandbox. A and AAAA
//! questions over UDP (simple-dns builds and parses the packets), each
//! resolver tried in turn with a short timeout; the first resolver that
//! answers (even "no such name") is believed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use simple_dns::rdata::RData;
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, RCODE, TYPE};

use crate::{Error, Result};

/// How long one resolver has to answer both questions.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The addresses of `name` (A and AAAA), from the first of `resolvers`
/// that answers.
pub fn lookup(name: &str, resolvers: &[IpAddr]) -> Result<Vec<IpAddr>> {
    let qname = Name::new(name.trim_end_matches('.'))
        .map_err(|e| Error::NetworkPolicy(format!("{name:?} is not a DNS name: {e}")))?;
    let mut failures = Vec::new();
    for r in resolvers {
        match ask(&qname, SocketAddr::new(*r, 53)) {
            Ok(mut addrs) => {
                addrs.sort();
                addrs.dedup();
                return Ok(addrs);
            }
            Err(why) => failures.push(format!("{r}: {why}")),
        }
    }
    Err(Error::NetworkPolicy(format!(
        "cannot resolve {name:?} through the policy's resolvers ({})",
        if failures.is_empty() {
            "none listed".to_owned()
        } else {
            failures.join("; ")
        }
    )))
}

/// Sends the A and AAAA questions to `server`, collects both answers.
fn ask(name: &Name, server: SocketAddr) -> std::result::Result<Vec<IpAddr>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.connect(server).map_err(|e| e.to_string())?;
    let base = query_id();
    let mut pending = Vec::new();
    for (i, ty) in [TYPE::A, TYPE::AAAA].into_iter().enumerate() {
        let id = base.wrapping_add(i as u16);
        let mut q = Packet::new_query(id);
        q.set_flags(PacketFlag::RECURSION_DESIRED);
        q.questions.push(Question::new(
            name.clone(),
            QTYPE::TYPE(ty),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        let bytes = q.build_bytes_vec().map_err(|e| e.to_string())?;
        sock.send(&bytes).map_err(|e| e.to_string())?;
        pending.push(id);
    }
    let deadline = Instant::now() + TIMEOUT;
    let mut addrs = Vec::new();
    let mut buf = [0u8; 4096];
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no answer (timed out)".into());
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => return Err(e.to_string()),
        };
        let Ok(p) = Packet::parse(&buf[..n]) else {
            continue; // not a DNS answer: not ours
        };
        let Some(pos) = pending.iter().position(|id| *id == p.id()) else {
            continue;
        };
        pending.remove(pos);
        match p.rcode() {
            RCODE::NoError | RCODE::NameError => {}
            other => return Err(format!("the resolver answered {other:?}")),
        }
        for rr in &p.answers {
            match &rr.rdata {
                RData::A(a) => addrs.push(IpAddr::V4(Ipv4Addr::from(a.address))),
                RData::AAAA(a) => addrs.push(IpAddr::V6(Ipv6Addr::from(a.address))),
                _ => {}
            }
        }
    }
    Ok(addrs)
}

/// A query id that another process's queries are unlikely to share.
fn query_id() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (t ^ std::process::id().rotate_left(16)) as u16
}
