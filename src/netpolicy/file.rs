//! The policy file `sbx-oci hook network --policy FILE` reads, and the OCI
//! annotations `create` builds it from.
//!
//! ```json
//! {"allow": ["10.0.0.0/8:443", "udp://[2001:db8::1]:53", "pypi.org:443"],
//!  "dns": ["192.0.2.53"],
//!  "expose": ["8080", "udp://5000-5010"]}
//! ```
//!
//! `allow` holds allowlist entries as users write them ([`Entry`]); names
//! and wildcards are the DNS gatekeeper's: it asks `dns`, the upstream
//! resolvers, from the host's network namespace, and pins the addresses of
//! the names it answers for. `expose` lists the inbound ports open to new
//! connections (`[tcp://|udp://]PORT` or `PORT-PORT`); `gatekeeper` its
//! limits, and `learn` turns the policy into an audit that drops nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::compile::{Policy, addresses, name_classes};
use super::entry::{Dest, Entry, Ports, Proto, ports};
use crate::uplink::Pools;
use crate::{Error, Result};

/// Every annotation sbx-oci reads starts with this.
pub const PREFIX: &str = "org.sbx-oci.network.";
/// `none`, `allowlist` or `full`.
pub const MODE: &str = "org.sbx-oci.network.mode";
/// Allowlist entries, separated by commas or spaces.
pub const ALLOW: &str = "org.sbx-oci.network.allow";
/// Comma-separated resolver addresses.
pub const DNS: &str = "org.sbx-oci.network.dns";
/// `true`: audit only; nothing is dropped, what would be is recorded.
pub const LEARN: &str = "org.sbx-oci.network.learn";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// `allowlist` (the default: rules installed) or `full` (none).
    #[serde(default, skip_serializing_if = "Mode::is_allowlist")]
    pub mode: Mode,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub expose: Vec<String>,
    /// A way out for a namespace the runtime made: a veth pair with
    /// addresses from these pools, and NAT (see `uplink`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<Pools>,
    /// Audit mode: nothing is dropped, and every query and connection that
    /// would have been is recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub learn: bool,
    #[serde(default, skip_serializing_if = "Gatekeeper::is_default")]
    pub gatekeeper: Gatekeeper,
}

/// The DNS gatekeeper's limits (seconds and counts).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Gatekeeper {
    /// A pinned address lives at least this long (clients and runtimes
    /// cache answers past their TTL)...
    pub ttl_min_s: u32,
    /// ... and at most this long; answers' TTLs are cut to it.
    pub ttl_max_s: u32,
    /// Added to every pin's lifetime, for the client's connect after the
    /// answer.
    pub grace_s: u32,
    /// Distinct names answered; past it, new names are refused.
    pub max_names: u32,
    /// Addresses pinned at once; past it, answers are refused.
    pub max_addresses: u32,
    /// Queries per second (a burst of as many is allowed); past it, queries
    /// are refused.
    pub queries_per_s: u32,
}

impl Default for Gatekeeper {
    fn default() -> Gatekeeper {
        Gatekeeper {
            ttl_min_s: 30,
            ttl_max_s: 3600,
            grace_s: 10,
            max_names: 1000,
            max_addresses: 4096,
            queries_per_s: 200,
        }
    }
}

impl Gatekeeper {
    pub fn is_default(&self) -> bool {
        *self == Gatekeeper::default()
    }

    /// What is wrong with these limits, if anything.
    pub fn check(&self) -> std::result::Result<(), String> {
        let bad = |what: &str| Err(what.to_owned());
        if self.ttl_min_s > self.ttl_max_s {
            return bad("ttl_min_s is above ttl_max_s");
        }
        if self.ttl_max_s == 0 {
            return bad("ttl_max_s must be at least 1");
        }
        if self.ttl_max_s > 7 * 86400 {
            return bad("ttl_max_s is more than a week");
        }
        if self.max_names == 0 || self.max_addresses == 0 || self.queries_per_s == 0 {
            return bad("max_names, max_addresses and queries_per_s must be at least 1");
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only loopback.
    None,
    /// Default deny, then the listed destinations.
    #[default]
    Allowlist,
    /// Nothing filtered.
    Full,
}

impl Mode {
    pub fn is_allowlist(&self) -> bool {
        *self == Mode::Allowlist
    }
}

impl PolicyFile {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<PolicyFile> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("cannot read policy {}", path.display()), e))?;
        let file: PolicyFile = serde_json::from_slice(&bytes).map_err(|e| {
            Error::NetworkPolicy(format!("{} is not a policy file: {e}", path.display()))
        })?;
        file.check()?;
        Ok(file)
    }

    /// Parses every entry, port and resolver: the first bad one is the
    /// error, quoted.
    pub fn check(&self) -> Result<()> {
        let entries = self.entries()?;
        name_classes(&entries)?;
        self.exposed()?;
        self.gatekeeper
            .check()
            .map_err(|r| Error::NetworkPolicy(format!("gatekeeper: {r}")))?;
        for r in &self.dns {
            // With an allowlist the gatekeeper asks the resolvers from the
            // host's namespace, where the host's loopback is; otherwise the
            // sandbox asks them itself, from its own.
            if r.is_unspecified() || (r.is_loopback() && self.mode != Mode::Allowlist) {
                return Err(Error::NetworkPolicy(format!(
                    "DNS resolver {r} cannot be reached from a sandbox (its loopback is its \
                     own); name a resolver on the network"
                )));
            }
        }
        if self.mode == Mode::Allowlist
            && self.dns.is_empty()
            && let Some(e) = entries.iter().find(|e| matches!(e.dest, Dest::Host(_)))
        {
            return Err(Error::NetworkPolicy(format!(
                "{e} is a name, but the policy lists no DNS resolver to ask for it; list one \
                 (dns) or give addresses"
            )));
        }
        Ok(())
    }

    pub fn entries(&self) -> Result<Vec<Entry>> {
        self.allow.iter().map(|e| e.parse()).collect()
    }

    pub fn exposed(&self) -> Result<Vec<(Proto, Ports)>> {
        self.expose.iter().map(|s| parse_expose(s)).collect()
    }

    /// The policy to compile. The gatekeeper runs when there is a resolver
    /// to ask; without one, DNS is simply dropped.
    pub fn policy(&self) -> Result<Policy> {
        let entries = self.entries()?;
        Ok(Policy {
            allow: addresses(&entries),
            name_ports: name_classes(&entries)?,
            gatekeeper: self.has_gatekeeper(),
            learn: self.learn,
            expose: self.exposed()?,
        })
    }

    /// Whether the hook starts a DNS gatekeeper for this policy.
    pub fn has_gatekeeper(&self) -> bool {
        self.mode == Mode::Allowlist && !self.dns.is_empty()
    }
}

pub fn parse_expose(s: &str) -> Result<(Proto, Ports)> {
    let (proto, rest) = match s.split_once("://") {
        None => (Proto::Tcp, s),
        Some(("tcp", rest)) => (Proto::Tcp, rest),
        Some(("udp", rest)) => (Proto::Udp, rest),
        Some(_) => {
            return Err(Error::NetworkPolicy(format!(
                "exposed port {s:?}: unknown protocol (use tcp:// or udp://)"
            )));
        }
    };
    let p = ports(rest).map_err(|r| Error::NetworkPolicy(format!("exposed port {s:?}: {r}")))?;
    Ok((proto, p))
}

/// The host's resolvers, from /etc/resolv.conf.
pub fn host_resolvers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next())
                .flatten()
                .and_then(|a| a.split('%').next()?.parse().ok())
        })
        .collect()
}

/// The mode and policy that a config's annotations ask for; `None` when
/// they name none. Every entry is checked here, so a bad one is refused
/// before anything is created. `allow` or `dns` without a mode means
/// allowlist; without `dns`, the host's resolv.conf nameservers are used
/// (the gatekeeper asks them from the host's namespace, so a loopback stub
/// resolver works; `""` for none).
pub fn from_annotations(ann: &BTreeMap<String, String>) -> Result<Option<(Mode, PolicyFile)>> {
    let ours: Vec<(&String, &String)> = ann.iter().filter(|(k, _)| k.starts_with(PREFIX)).collect();
    if ours.is_empty() {
        return Ok(None);
    }
    if let Some((k, _)) = ours
        .iter()
        .find(|(k, _)| ![MODE, ALLOW, DNS, LEARN].contains(&k.as_str()))
    {
        return Err(Error::NetworkPolicy(format!(
            "unknown annotation {k:?} (known: {MODE}, {ALLOW}, {DNS}, {LEARN})"
        )));
    }
    let learn = match ann.get(LEARN).map(|v| v.trim()) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Error::NetworkPolicy(format!(
                "{LEARN}={other:?}: use true or false"
            )));
        }
    };
    // Commas or spaces: podman's --annotation splits its value at commas
    // unless the whole KEY=VALUE is quoted, so "a b" is easier to write.
    let list = |key: &str| -> Option<Vec<String>> {
        ann.get(key).map(|v| {
            v.split([',', ' ', '\t', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
    };
    let allow = list(ALLOW);
    let dns = list(DNS);
    let mode = match ann.get(MODE).map(|m| m.trim()) {
        Some("none") => Mode::None,
        Some("allowlist") => Mode::Allowlist,
        Some("full") => Mode::Full,
        Some(other) => {
            return Err(Error::NetworkPolicy(format!(
                "{MODE}={other:?}: use none, allowlist or full"
            )));
        }
        None => Mode::Allowlist,
    };
    if mode != Mode::Allowlist && (allow.is_some() || dns.is_some()) {
        return Err(Error::NetworkPolicy(format!(
            "{ALLOW} and {DNS} need {MODE}=allowlist"
        )));
    }
    let dns = match dns {
        None if mode == Mode::Allowlist => host_resolvers(),
        None => Vec::new(),
        Some(list) => list
            .iter()
            .map(|r| {
                r.parse()
                    .map_err(|_| Error::NetworkPolicy(format!("{DNS}: {r:?} is not an IP address")))
            })
            .collect::<Result<_>>()?,
    };
    if learn && mode != Mode::Allowlist {
        return Err(Error::NetworkPolicy(format!(
            "{LEARN} needs {MODE}=allowlist"
        )));
    }
    let file = PolicyFile {
        mode,
        allow: allow.unwrap_or_default(),
        dns,
        learn,
        ..PolicyFile::default()
    };
    file.check().map_err(|e| match e {
        Error::NetworkPolicy(m) if ann.get(DNS).is_none() && m.contains("DNS resolver") => {
            Error::NetworkPolicy(format!(
                "{m} (it is the host's, from /etc/resolv.conf: set {DNS})"
            ))
        }
        Error::NetworkEntry { entry, reason } => {
            Error::NetworkPolicy(format!("{ALLOW}: entry {entry:?}: {reason}"))
        }
        e => e,
    })?;
    Ok(Some((mode, file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotations() {
        assert_eq!(from_annotations(&ann(&[("x", "y")])).unwrap(), None);
        let (mode, file) = from_annotations(&ann(&[
            (ALLOW, "10.0.0.1:80, [fd00::1]:443 udp://10.0.0.0/8:53"),
            (DNS, "10.0.0.53"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(mode, Mode::Allowlist);
        assert_eq!(file.allow.len(), 3);
        assert_eq!(file.dns, vec!["10.0.0.53".parse::<IpAddr>().unwrap()]);
        let (mode, file) = from_annotations(&ann(&[(MODE, "none")])).unwrap().unwrap();
        let none = PolicyFile {
            mode: Mode::None,
            ..PolicyFile::default()
        };
        assert_eq!((mode, file), (Mode::None, none));
        let (_, file) = from_annotations(&ann(&[(MODE, "allowlist"), (DNS, "")]))
            .unwrap()
            .unwrap();
        assert!(file.dns.is_empty());
    }

    #[test]
    fn annotation_errors_quote_the_culprit() {
        for (kv, needle) in [
            (
                vec![(ALLOW, "10.0.0.1:80,10.0.0.300:80")],
                "\"10.0.0.300:80\"",
            ),
            (vec![(DNS, "resolver")], "\"resolver\""),
            (vec![(DNS, "0.0.0.0")], "0.0.0.0"),
            (vec![(LEARN, "yes")], "use true or false"),
            (vec![(MODE, "full"), (LEARN, "true")], "allowlist"),
            (
                vec![(ALLOW, "pypi.org:443"), (DNS, "")],
                "pypi.org:443 is a name, but the policy lists no DNS resolver",
            ),
            (vec![(MODE, "open")], "\"open\""),
            (vec![(MODE, "full"), (ALLOW, "10.0.0.1")], "allowlist"),
            (
                vec!["org.sbx-oci.network.alow"]
                    .into_iter()
                    .map(|k| (k, "x"))
                    .collect(),
                "alow",
            ),
        ] {
            let msg = from_annotations(&ann(&kv)).unwrap_err().to_string();
            assert!(msg.contains(needle), "{kv:?}: {msg}");
        }
    }

    #[test]
    fn expose_and_file_round_trip() {
        let file = PolicyFile {
            allow: vec!["10.1.2.3:80".into()],
            expose: vec!["8080".into(), "udp://5000-5010".into()],
            ..PolicyFile::default()
        };
        assert_eq!(
            file.exposed().unwrap(),
            vec![
                (Proto::Tcp, Ports::one(8080)),
                (
                    Proto::Udp,
                    Ports {
                        first: 5000,
                        last: 5010
                    }
                )
            ]
        );
        let text = serde_json::to_string(&file).unwrap();
        assert_eq!(serde_json::from_str::<PolicyFile>(&text).unwrap(), file);
        let bad = PolicyFile {
            expose: vec!["sctp://1".into()],
            ..file
        };
        assert!(bad.check().unwrap_err().to_string().contains("sctp://1"));
    }
}
