//! Allowlist entries as users write them (pure).
//!
//! ```text
//! [tcp:// | udp://] DEST [:PORT | :PORT-PORT]
//! DEST = IPv4 | IPv4/LEN                             (no port: every port)
//!      | HOST | *.DOMAIN | **.DOMAIN                 (names need a port)
//!      | [IPv6] | [IPv6/LEN]                          (brackets when a port follows)
//!      | IPv6 | IPv6/LEN                              (bare: no port)
//! ```
//!
//! No protocol means TCP; no port means every port of that protocol. Names
//! and wildcards ([`super::names`]) stay names: the sandbox's DNS
//! gatekeeper pins the addresses it answers with.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::names::NamePattern;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number (`meta l4proto`).
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// An inclusive port range; one port is `first == last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ports {
    pub first: u16,
    pub last: u16,
}

impl Ports {
    pub const ALL: Ports = Ports {
        first: 0,
        last: u16::MAX,
    };

    pub fn one(port: u16) -> Ports {
        Ports {
            first: port,
            last: port,
        }
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A network: an address and a prefix length, host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// A network, or None when the prefix is too long or host bits are set.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let c = Cidr { addr, prefix };
        (prefix <= max && c.first() == addr).then_some(c)
    }

    pub fn host(addr: IpAddr) -> Cidr {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    fn host_mask(&self) -> u128 {
        let bits = if self.is_ipv4() { 32 } else { 128 };
        let host_bits = bits - u32::from(self.prefix);
        if host_bits == 0 {
            0
        } else {
            u128::MAX >> (128 - host_bits)
        }
    }

    /// The lowest address of the network.
    pub fn first(&self) -> IpAddr {
        map(self.addr, |a| a & !self.host_mask())
    }

    /// The highest address of the network.
    pub fn last(&self) -> IpAddr {
        map(self.addr, |a| a | self.host_mask())
    }
}

fn map(addr: IpAddr, f: impl Fn(u128) -> u128) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(f(u32::from(a).into()) as u32)),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(f(u128::from(a)))),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Cidr::host(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dest {
    Net(Cidr),
    /// A DNS name or wildcard, canonical ([`NamePattern`]'s spelling).
    Host(String),
}

/// One allowlist entry, parsed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    pub proto: Proto,
    pub dest: Dest,
    /// `None`: every port.
    pub ports: Option<Ports>,
}

impl fmt::Display for Entry {
    /// The canonical spelling, which parses back to the same entry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.proto == Proto::Udp {
            f.write_str("udp://")?;
        }
        match (&self.dest, self.ports) {
            (Dest::Host(h), Some(p)) => write!(f, "{h}:{p}"),
            (Dest::Host(h), None) => write!(f, "{h}"),
            (Dest::Net(c), None) => write!(f, "{c}"),
            (Dest::Net(c), Some(p)) if c.is_ipv4() => write!(f, "{c}:{p}"),
            (Dest::Net(c), Some(p)) => write!(f, "[{c}]:{p}"),
        }
    }
}

impl FromStr for Entry {
    type Err = Error;

    fn from_str(s: &str) -> Result<Entry> {
        parse(s).map_err(|reason| Error::NetworkEntry {
            entry: s.to_owned(),
            reason,
        })
    }
}

fn parse(s: &str) -> Result<Entry, String> {
    if s.is_empty() {
        return Err("empty entry".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("contains {c:?}"));
    }
    let (proto, rest) = match s.split_once("://") {
        Some(("tcp", rest)) => (Proto::Tcp, rest),
        Some(("udp", rest)) => (Proto::Udp, rest),
        Some((other, _)) => {
            return Err(format!(
                "unknown protocol {other:?}: use tcp:// (the default) or udp://"
            ));
        }
        None => (Proto::Tcp, s),
    };
    if rest.is_empty() {
        return Err("no destination after the protocol".into());
    }

    // Bracketed IPv6, with or without a port.
    if let Some(inner) = rest.strip_prefix('[') {
        let (net, after) = inner.split_once(']').ok_or("'[' without a closing ']'")?;
        let dest = net_v6(net)?;
        let ports = match after {
            "" => None,
            _ => Some(ports(after.strip_prefix(':').ok_or_else(|| {
                format!("expected ':PORT' after ']', found {after:?}")
            })?)?),
        };
        return Ok(Entry { proto, dest, ports });
    }
    if rest.contains(']') {
        return Err("']' without an opening '['".into());
    }

    // Two colons or more: a bare IPv6 address or network, no port.
    if rest.matches(':').count() > 1 {
        return match net_v6(rest) {
            Ok(dest) => Ok(Entry {
                proto,
                dest,
                ports: None,
            }),
            Err(e) => Err(format!(
                "{e} (an IPv6 address with a port is written in brackets: [2001:db8::1]:443)"
            )),
        };
    }

    let (dest, ports) = match rest.split_once(':') {
        Some((d, p)) => (d, Some(ports(p)?)),
        None => (rest, None),
    };
    if dest.is_empty() {
        return Err("no address or host before ':'".into());
    }
    let dest = if let Some((addr, len)) = dest.split_once('/') {
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address (a CIDR needs one)"))?;
        Dest::Net(cidr(IpAddr::V4(addr), len, 32)?)
    } else if let Ok(addr) = dest.parse::<Ipv4Addr>() {
        Dest::Net(Cidr::host(IpAddr::V4(addr)))
    } else {
        numeric(dest)?;
        let pattern = NamePattern::parse(dest)?;
        if ports.is_none() {
            return Err(format!(
                "host name {dest:?} needs a port ({dest}:443); only addresses and networks may \
                 allow every port"
            ));
        }
        Dest::Host(pattern.to_string())
    };
    Ok(Entry { proto, dest, ports })
}

fn net_v6(s: &str) -> Result<Dest, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: Ipv6Addr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
    let ip = IpAddr::V6(ip);
    Ok(Dest::Net(match len {
        Some(len) => cidr(ip, len, 128)?,
        None => Cidr::host(ip),
    }))
}

fn cidr(addr: IpAddr, len: &str, max: u8) -> Result<Cidr, String> {
    let prefix: u8 = len
        .parse()
        .ok()
        .filter(|p| *p <= max && len.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("prefix length {len:?} is not a number from 0 to {max}"))?;
    Cidr::new(addr, prefix).ok_or_else(|| {
        let net = Cidr { addr, prefix };
        format!(
            "{addr}/{prefix} has host bits set; the network is {}/{prefix}",
            net.first()
        )
    })
}

pub(crate) fn ports(s: &str) -> Result<Ports, String> {
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(format!("port {p:?} is not a number from 1 to 65535")),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (first, last) = (port(a)?, port(b)?);
            if first > last {
                return Err(format!(
                    "port range {s:?} is reversed (write {last}-{first})"
                ));
            }
            Ok(Ports { first, last })
        }
        None if s.is_empty() => Err("no port after ':'".into()),
        None => Ok(Ports::one(port(s)?)),
    }
}

/// An all-numeric dotted name is a bad IPv4 address, not a host name.
fn numeric(s: &str) -> Result<(), String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("{s:?} is not an IPv4 address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Entry {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn net(s: &str, prefix: u8) -> Dest {
        Dest::Net(Cidr::new(s.parse().unwrap(), prefix).unwrap())
    }

    #[test]
    fn every_form() {
        let tcp = Proto::Tcp;
        let udp = Proto::Udp;
        let p = |a, b| Some(Ports { first: a, last: b });
        let cases: &[(&str, Proto, Dest, Option<Ports>)] = &[
            ("10.0.0.1", tcp, net("10.0.0.1", 32), None),
            ("10.0.0.1:443", tcp, net("10.0.0.1", 32), p(443, 443)),
            ("10.0.0.0/8", tcp, net("10.0.0.0", 8), None),
            ("10.0.0.0/8:80", tcp, net("10.0.0.0", 8), p(80, 80)),
            ("0.0.0.0/0:53", tcp, net("0.0.0.0", 0), p(53, 53)),
            (
                "10.1.2.3:8000-8080",
                tcp,
                net("10.1.2.3", 32),
                p(8000, 8080),
            ),
            ("udp://10.0.0.1:53", udp, net("10.0.0.1", 32), p(53, 53)),
            (
                "tcp://10.0.0.1:1-65535",
                tcp,
                net("10.0.0.1", 32),
                p(1, 65535),
            ),
            ("udp://10.0.0.0/24", udp, net("10.0.0.0", 24), None),
            (
                "pypi.org:443",
                tcp,
                Dest::Host("pypi.org".into()),
                p(443, 443),
            ),
            (
                "udp://NTP.Example.org.:123",
                udp,
                Dest::Host("ntp.example.org".into()),
                p(123, 123),
            ),
            (
                "*.PythonHosted.org:443",
                tcp,
                Dest::Host("*.pythonhosted.org".into()),
                p(443, 443),
            ),
            (
                "udp://**.ntp.example:123-124",
                udp,
                Dest::Host("**.ntp.example".into()),
                p(123, 124),
            ),
            (
                "localhost:8080",
                tcp,
                Dest::Host("localhost".into()),
                p(8080, 8080),
            ),
            (
                "[2001:db8::1]:443",
                tcp,
                net("2001:db8::1", 128),
                p(443, 443),
            ),
            (
                "[2001:db8::/32]:443",
                tcp,
                net("2001:db8::", 32),
                p(443, 443),
            ),
            (
                "udp://[fd00::1]:5000-5010",
                udp,
                net("fd00::1", 128),
                p(5000, 5010),
            ),
            ("[2001:db8::1]", tcp, net("2001:db8::1", 128), None),
            ("2001:db8::1", tcp, net("2001:db8::1", 128), None),
            ("2001:db8::/32", tcp, net("2001:db8::", 32), None),
            ("udp://::/0", udp, net("::", 0), None),
            ("::ffff:10.0.0.1", tcp, net("::ffff:10.0.0.1", 128), None),
        ];
        for (s, proto, dest, ports) in cases {
            let e = ok(s);
            assert_eq!((e.proto, &e.dest, e.ports), (*proto, dest, *ports), "{s}");
            // The canonical spelling parses back to the same entry.
            assert_eq!(ok(&e.to_string()), e, "{s} -> {e}");
        }
        assert_eq!(ok("tcp://10.0.0.1:80").to_string(), "10.0.0.1:80");
        assert_eq!(ok("2001:db8::1").to_string(), "2001:db8::1");
        assert_eq!(
            ok("udp://[2001:db8::/32]:53").to_string(),
            "udp://[2001:db8::/32]:53"
        );
    }

    #[test]
    fn every_error_quotes_the_entry_and_says_what_is_wrong() {
        let cases = [
            ("", "empty entry"),
            ("10.0.0.1 :80", "contains ' '"),
            ("http://10.0.0.1", "unknown protocol \"http\""),
            ("udp://", "no destination"),
            ("10.0.0.1:", "no port after ':'"),
            ("10.0.0.1:0", "port \"0\" is not a number from 1 to 65535"),
            ("10.0.0.1:65536", "port \"65536\""),
            ("10.0.0.1:+80", "port \"+80\""),
            ("10.0.0.1:http", "port \"http\""),
            ("10.0.0.1:90-80", "reversed (write 80-90)"),
            ("10.0.0.1:80-", "port \"\""),
            ("10.0.0.1:-80", "port \"\""),
            (":80", "no address or host"),
            (
                "10.0.0.0/33",
                "prefix length \"33\" is not a number from 0 to 32",
            ),
            ("10.0.0.0/", "prefix length \"\""),
            ("10.0.0.0/+8", "prefix length \"+8\""),
            ("10.0.0.1/8", "host bits set; the network is 10.0.0.0/8"),
            ("example.com/8:80", "\"example.com\" is not an IPv4 address"),
            ("10.0.0.256", "\"10.0.0.256\" is not an IPv4 address"),
            ("010.0.0.1:80", "\"010.0.0.1\" is not an IPv4 address"),
            ("1.2.3:80", "not an IPv4 address"),
            ("pypi.org", "needs a port"),
            ("-bad.org:80", "label \"-bad\""),
            ("a..b:80", "label \"\""),
            ("under_score.org:80", "label \"under_score\""),
            ("*.com:443", "wildcard over the top-level domain \"com\""),
            ("**.co.uk:443", "public suffix \"co.uk\""),
            ("a.*.b.com:443", "only as the first label"),
            ("*.example.com", "needs a port"),
            ("[2001:db8::1", "without a closing ']'"),
            ("2001:db8::1]:80", "']' without an opening '['"),
            ("[2001:db8::1]443", "expected ':PORT' after ']'"),
            ("[10.0.0.1]:80", "\"10.0.0.1\" is not an IPv6 address"),
            (
                "[2001:db8::1/129]",
                "prefix length \"129\" is not a number from 0 to 128",
            ),
            (
                "[2001:db8::1/32]:443",
                "host bits set; the network is 2001:db8::/32",
            ),
            (
                "2001:db8::1:443:x",
                "not an IPv6 address (an IPv6 address with a port is written in brackets",
            ),
            ("[]:80", "\"\" is not an IPv6 address"),
        ];
        for (entry, want) in cases {
            let err = entry.parse::<Entry>().map(|e| e.to_string()).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("network.allow entry {entry:?}: ")),
                "{entry:?}: {msg}"
            );
            assert!(msg.contains(want), "{entry:?}: want {want:?} in {msg:?}");
        }
    }

    #[test]
    fn cidr_bounds() {
        let c = Cidr::new("10.1.0.0".parse().unwrap(), 16).unwrap();
        assert_eq!(c.first().to_string(), "10.1.0.0");
        assert_eq!(c.last().to_string(), "10.1.255.255");
        let all = Cidr::new("0.0.0.0".parse().unwrap(), 0).unwrap();
        assert_eq!(all.last().to_string(), "255.255.255.255");
        let v6 = Cidr::new("2001:db8::".parse().unwrap(), 32).unwrap();
        assert_eq!(
            v6.last().to_string(),
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        let h = Cidr::host("2001:db8::1".parse().unwrap());
        assert_eq!((h.first(), h.last()), (h.addr(), h.addr()));
        assert!(Cidr::new("10.0.0.1".parse().unwrap(), 8).is_none());
        assert!(Cidr::new("10.0.0.0".parse().unwrap(), 33).is_none());
    }
}
