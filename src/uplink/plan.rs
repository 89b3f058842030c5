//! What a sandbox's way out is called and which addresses it may take
//! (pure): the host-side link's name, derived from the sandbox id, and the
//! order in which the pool's addresses are tried.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::fnv::fnv1a;
use crate::netpolicy::Cidr;

/// Every host-side link of a sandbox starts with this; the host table
/// matches it as a prefix.
pub use crate::netpolicy::host::LINK_PREFIX;
/// The sandbox's side of the pair.
pub const PEER: &str = "eth0";
/// The sandbox's next hop, IPv4: a link-local address every host-side link
/// carries, so no pool address is spent on the host's end.
pub const GATEWAY4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The sandbox's next hop, IPv6.
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// The link's alias (`ip link` shows it) is this followed by the id.
pub const ALIAS_PREFIX: &str = "sbx-oci ";

/// Link names are at most 15 bytes (IFNAMSIZ less the NUL).
const NAME_ROOM: usize = 15 - LINK_PREFIX.len();

/// The host-side link of sandbox `id`: `sbx-<id>` when the id fits and is
/// a valid link name, otherwise `sbx-` and 11 hex digits of a hash of it.
/// Deterministic, so `delete` and `gc` find it without any state.
pub fn link_name(id: &str) -> String {
    let plain = id.len() <= NAME_ROOM
        && !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
        && id != "."
        && id != "..";
    if plain {
        format!("{LINK_PREFIX}{id}")
    } else {
        let h = fnv1a(id.as_bytes());
        format!("{LINK_PREFIX}{:011x}", h >> (64 - 44))
    }
}

/// A pool of sandbox addresses: one network, IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool(Cidr);

impl Pool {
    pub fn cidr(&self) -> Cidr {
        self.0
    }

    pub fn is_ipv4(&self) -> bool {
        self.0.is_ipv4()
    }

    /// The addresses sandbox `id` tries, in order: starting at a point
    /// derived from the id (so concurrent sandboxes rarely contend for the
    /// same one), wrapping around, never the network's first address nor,
    /// for IPv4, its broadcast address; at most `limit` of them.
    pub fn candidates(&self, id: &str, limit: u64) -> impl Iterator<Item = IpAddr> + use<> {
        let bits: u32 = if self.is_ipv4() { 32 } else { 128 };
        let host_bits = bits - u32::from(self.0.prefix());
        // Usable hosts: 1 ..= size-2 (IPv4) or 1 ..= size-1 (IPv6).
        let size: u128 = if host_bits >= 127 {
            u128::MAX
        } else {
            1u128 << host_bits
        };
        let usable = if self.is_ipv4() {
            size.saturating_sub(2)
        } else {
            size - 1
        };
        let base = match self.0.addr() {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let start = if usable == 0 {
            0
        } else {
            u128::from(fnv1a(id.as_bytes())) % usable
        };
        let v4 = self.is_ipv4();
        let n = usable.min(u128::from(limit));
        (0..n).map(move |i| {
            let a = base + 1 + (start + i) % usable;
            if v4 {
                IpAddr::V4(Ipv4Addr::from(a as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(a))
            }
        })
    }
}

impl FromStr for Pool {
    type Err = String;

    fn from_str(s: &str) -> Result<Pool, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a network (write ADDRESS/PREFIX)"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
        let prefix: u8 = len
            .parse()
            .map_err(|_| format!("{s:?}: {len:?} is not a prefix length"))?;
        // At least 2 usable addresses; /31 and /127 leave too few.
        let max = if addr.is_ipv4() { 30 } else { 126 };
        if prefix > max {
            return Err(format!("{s:?} is too small for a pool (at most /{max})"));
        }
        let cidr = Cidr::new(addr, prefix).ok_or_else(|| {
            format!(
                "{s:?} has host bits set (the network is {})",
                mask(addr, prefix)
            )
        })?;
        Ok(Pool(cidr))
    }
}

fn mask(addr: IpAddr, prefix: u8) -> String {
    match addr {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            format!("{}/{prefix}", Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            format!("{}/{prefix}", Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.addr(), self.0.prefix())
    }
}

impl Serialize for Pool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pool, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The pools a sandbox's addresses come from. IPv6 is optional: without it
/// the sandbox has IPv4 only (and its IPv6 is simply unreachable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pools {
    #[serde(default = "default_v4")]
    pub ipv4: Pool,
    #[serde(default = "default_v6")]
    pub ipv6: Option<Pool>,
}

/// 10.199.0.0/16: private, and clear of the ranges Docker (172.17/16),
/// podman (10.88/16) and Kubernetes' usual pod networks start with.
pub const DEFAULT_POOL4: &str = "10.199.0.0/16";
/// A unique local /64 (RFC 4193) of our own.
pub const DEFAULT_POOL6: &str = "fd5b:c0c1:a7c4::/64";

fn default_v4() -> Pool {
    DEFAULT_POOL4.parse().expect("the default IPv4 pool")
}

fn default_v6() -> Option<Pool> {
    Some(DEFAULT_POOL6.parse().expect("the default IPv6 pool"))
}

impl Default for Pools {
    fn default() -> Self {
        Pools {
            ipv4: default_v4(),
            ipv6: default_v6(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names() {
        assert_eq!(link_name("py1"), "sbx-py1");
        assert_eq!(link_name("abcdefghijk"), "sbx-abcdefghijk");
        let long = link_name("abcdefghijkl");
        assert_eq!(long.len(), 15);
        assert!(long.starts_with("sbx-"));
        assert_ne!(long, link_name("abcdefghijkm"));
        // Not valid in a link name: hashed.
        assert_ne!(link_name("a:b"), "sbx-a:b");
        assert_eq!(link_name("a:b").len(), 15);
        assert_eq!(link_name(".."), link_name(".."));
        assert_ne!(link_name(".."), "sbx-..");
    }

    #[test]
    fn candidates_stay_inside_the_pool_and_cover_it() {
        let p: Pool = "10.9.0.0/29".parse().unwrap();
        let c: Vec<IpAddr> = p.candidates("x", 100).collect();
        assert_eq!(c.len(), 6);
        let mut sorted = c.clone();
        sorted.sort();
        let want: Vec<IpAddr> = (1..=6)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, 9, 0, i)))
            .collect();
        assert_eq!(sorted, want);
        // Different ids start at different places (here, for these two).
        assert_ne!(p.candidates("a", 1).next(), p.candidates("b", 1).next());
        let p6: Pool = "fd00::/120".parse().unwrap();
        let c6: Vec<IpAddr> = p6.candidates("x", 1000).collect();
        assert_eq!(c6.len(), 255);
        assert!(!c6.contains(&"fd00::".parse::<IpAddr>().unwrap()));
        assert!(c6.contains(&"fd00::ff".parse::<IpAddr>().unwrap()));
        let big: Pool = "fd00::/64".parse().unwrap();
        assert_eq!(big.candidates("x", 10).count(), 10);
    }

    #[test]
    fn pool_errors_say_what_is_wrong() {
        for (s, needle) in [
            ("10.0.0.0", "ADDRESS/PREFIX"),
            ("10.0.0.1/24", "10.0.0.0/24"),
            ("10.0.0.0/31", "too small"),
            ("x/8", "not an IP"),
            ("10.0.0.0/x", "prefix"),
            ("fd00::1/64", "fd00::/64"),
        ] {
            let e = s.parse::<Pool>().unwrap_err();
            assert!(e.contains(needle), "{s}: {e}");
        }
        let pools: Pools = serde_json::from_str("{}").unwrap();
        assert_eq!(pools, Pools::default());
        let pools: Pools = serde_json::from_str(r#"{"ipv6": null}"#).unwrap();
        assert_eq!(pools.ipv6, None);
    }
}
