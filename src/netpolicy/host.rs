//! The host's side of standalone sandboxes' networking, as data (pure).
//!
//! Each such sandbox reaches the host through a veth pair whose host end is
//! named `sbx-…` ([`LINK_PREFIX`]) and owns one IPv4 /32 and one IPv6 /128.
//! ONE table in the host's network namespace, shared by every sandbox,
//! forwards their traffic, keeps them away from each other and from the
//! host itself, and masquerades their sources. The rules never change; a
//! sandbox is its elements in four sets:
//!
//! - `links4`/`links6` (`ifname . address`): what may come in on a link.
//!   A packet from a sandbox link whose source is not that link's address
//!   is forged, and dropped.
//! - `nat4`/`nat6` (address): the sources to masquerade.
//!
//! Every element carries its sandbox id as its comment. [`plan`] computes
//! the element changes of an attach or a detach from the sets' contents;
//! [`crate::nft`] reads the sets and sends the changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::compile::{
    Chain, ChainType, Field, Hook, IfName, Key, Match, Priority, Rule, Ruleset, Set, Statement,
    Verdict,
};
use crate::{Error, Result};

/// The host table's name (family inet).
pub const HOST_TABLE: &str = "sbx_oci_host";

/// Every sandbox link's host-side name starts with this.
pub const LINK_PREFIX: &str = "sbx-";

pub const LINKS4: &str = "links4";
pub const LINKS6: &str = "links6";
pub const NAT4: &str = "nat4";
pub const NAT6: &str = "nat6";

/// The drops, counted by reason (`nft::counters(HOST_TABLE)`).
pub const HOST_COUNTERS: &[&str] = &[
    "between_sandboxes",
    "forged_source",
    "new_inbound",
    "to_host",
];

/// nft's limit on a comment (NFTNL_UDATA_COMMENT_MAXLEN).
pub const OWNER_MAX: usize = 128;

/// One sandbox address on a link, as the host table holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostElement {
    /// The host end of the sandbox's veth pair.
    pub link: String,
    pub addr: IpAddr,
    /// The sandbox id (the element's comment).
    pub owner: String,
}

/// The host table, without elements.
pub fn host_ruleset() -> Ruleset {
    use Statement::{Accept, Counter, Drop, Masquerade};
    let sbx = IfName::Prefix(LINK_PREFIX);
    let rule = |matches, statements| Rule {
        matches,
        statements,
    };
    let set = |name, fields| Set {
        name,
        fields,
        interval: false,
        dynamic: None,
        timeout: false,
        default_timeout_s: None,
        counter: false,
        elements: vec![],
    };
    let chain = |name, kind, hook, priority, rules| Chain {
        name,
        kind,
        hook,
        priority,
        policy: Verdict::Accept,
        rules,
    };
    let forward = vec![
        rule(
            vec![Match::IifName(sbx), Match::OifName(sbx)],
            vec![Counter("between_sandboxes"), Drop],
        ),
        rule(
            vec![Match::InSet(vec![Key::IifName, Key::Ip4Saddr], LINKS4)],
            vec![Accept],
        ),
        rule(
            vec![Match::InSet(vec![Key::IifName, Key::Ip6Saddr], LINKS6)],
            vec![Accept],
        ),
        rule(
            vec![Match::IifName(sbx)],
            vec![Counter("forged_source"), Drop],
        ),
        rule(
            vec![Match::OifName(sbx), Match::EstablishedRelated],
            vec![Accept],
        ),
        rule(
            vec![Match::OifName(sbx)],
            vec![Counter("new_inbound"), Drop],
        ),
    ];
    let input = vec![
        rule(
            vec![Match::IifName(sbx), Match::EstablishedRelated],
            vec![Accept],
        ),
        // Neighbour discovery with the host's end of the link: the
        // sandbox's IPv6 default route goes through it.
        rule(
            vec![Match::IifName(sbx), Match::Icmpv6Types(133, 136)],
            vec![Accept],
        ),
        rule(vec![Match::IifName(sbx)], vec![Counter("to_host"), Drop]),
    ];
    let postrouting = vec![
        rule(
            vec![Match::InSet(vec![Key::Ip4Saddr], NAT4)],
            vec![Masquerade],
        ),
        rule(
            vec![Match::InSet(vec![Key::Ip6Saddr], NAT6)],
            vec![Masquerade],
        ),
    ];
    Ruleset {
        table: HOST_TABLE.to_owned(),
        counters: HOST_COUNTERS.to_vec(),
        sets: vec![
            set(LINKS4, vec![Field::IfName, Field::Ipv4Addr]),
            set(LINKS6, vec![Field::IfName, Field::Ipv6Addr]),
            set(NAT4, vec![Field::Ipv4Addr]),
            set(NAT6, vec![Field::Ipv6Addr]),
        ],
        chains: vec![
            chain(
                "forward",
                ChainType::Filter,
                Hook::Forward,
                Priority::Filter,
                forward,
            ),
            chain(
                "input",
                ChainType::Filter,
                Hook::Input,
                Priority::Filter,
                input,
            ),
            chain(
                "postrouting",
                ChainType::Nat,
                Hook::Postrouting,
                Priority::Srcnat,
                postrouting,
            ),
        ],
    }
}

/// A sandbox link's name: [`LINK_PREFIX`], then what the kernel accepts in
/// an interface name (at most 15 bytes in all, no '/', ':' or space).
pub fn check_link(link: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "sandbox link name {link:?}: {why}"
        )))
    };
    if !link.starts_with(LINK_PREFIX) || link.len() == LINK_PREFIX.len() {
        return bad(&format!("must be {LINK_PREFIX:?} followed by a name"));
    }
    if link.len() >= super::compile::IFNAMSIZ {
        return bad("longer than 15 bytes");
    }
    if link
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return bad("contains '/', ':', a space or a zero byte");
    }
    Ok(())
}

/// A sandbox id as an element comment: printable, no quote (nft prints
/// comments in quotes), at most [`OWNER_MAX`] bytes.
pub fn check_owner(owner: &str) -> Result<()> {
    if owner.is_empty()
        || owner.len() > OWNER_MAX
        || owner.chars().any(|c| c.is_control() || c == '"')
    {
        return Err(Error::InvalidArgument(format!(
            "sandbox id {owner:?} as a host table comment: 1 to {OWNER_MAX} bytes, no quote or \
             control character"
        )));
    }
    Ok(())
}

/// A sandbox's own address: one a packet can come from.
pub fn check_addr(addr: IpAddr) -> Result<()> {
    if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
        return Err(Error::InvalidArgument(format!(
            "{addr} as a sandbox address: unspecified, loopback or multicast"
        )));
    }
    Ok(())
}

/// The contents of the host table's sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    /// `links4` and `links6`.
    pub links: Vec<HostElement>,
    /// `nat4` and `nat6`: address and comment.
    pub nat: Vec<(IpAddr, String)>,
}

/// Element changes that take a [`HostState`] to the wanted one. Deletions
/// go first in the transaction: an element whose comment changes is
/// deleted and added again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPlan {
    pub del_links: Vec<HostElement>,
    pub del_nat: Vec<(IpAddr, String)>,
    pub add_links: Vec<HostElement>,
    pub add_nat: Vec<(IpAddr, String)>,
    /// Nothing is left: delete the table rather than its elements.
    pub delete_table: bool,
}

impl HostPlan {
    pub fn is_empty(&self) -> bool {
        !self.delete_table
            && self.del_links.is_empty()
            && self.del_nat.is_empty()
            && self.add_links.is_empty()
            && self.add_nat.is_empty()
    }
}

/// The changes that leave `link` with exactly the elements `attach` (none:
/// a detach) and every other link as it is.
pub fn plan(state: &HostState, link: &str, attach: &[HostElement]) -> HostPlan {
    let wanted = state
        .links
        .iter()
        .filter(|e| e.link != link)
        .chain(attach)
        .cloned()
        .collect();
    reconcile(state, wanted)
}

/// The changes that leave the link sets holding `wanted`. The masquerade
/// sets are derived from them, so an entry without a link (left by hand,
/// or by an older version) goes too, and an address still on another link
/// stays. Nothing wanted: the table goes.
pub fn reconcile(state: &HostState, wanted: Vec<HostElement>) -> HostPlan {
    let wanted: BTreeSet<HostElement> = wanted.into_iter().collect();
    if wanted.is_empty() {
        return HostPlan {
            delete_table: true,
            ..HostPlan::default()
        };
    }
    let now: BTreeSet<HostElement> = state.links.iter().cloned().collect();
    let mut nat_wanted: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for e in &wanted {
        nat_wanted.entry(e.addr).or_insert(&e.owner);
    }
    let nat_wanted: BTreeSet<(IpAddr, String)> = nat_wanted
        .into_iter()
        .map(|(a, o)| (a, o.to_owned()))
        .collect();
    let nat_now: BTreeSet<(IpAddr, String)> = state.nat.iter().cloned().collect();
    HostPlan {
        del_links: now.difference(&wanted).cloned().collect(),
        del_nat: nat_now.difference(&nat_wanted).cloned().collect(),
        add_links: wanted.difference(&now).cloned().collect(),
        add_nat: nat_wanted.difference(&nat_now).cloned().collect(),
        delete_table: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(link: &str, addr: &str, owner: &str) -> HostElement {
        HostElement {
            link: link.into(),
            addr: addr.parse().unwrap(),
            owner: owner.into(),
        }
    }

    fn nat(addr: &str, owner: &str) -> (IpAddr, String) {
        (addr.parse().unwrap(), owner.into())
    }

    fn state(links: &[HostElement]) -> HostState {
        HostState {
            links: links.to_vec(),
            nat: links.iter().map(|e| (e.addr, e.owner.clone())).collect(),
        }
    }

    #[test]
    fn attach_adds_the_link_and_its_masquerade() {
        let new = [el("sbx-a", "10.0.0.2", "a"), el("sbx-a", "fd00::2", "a")];
        let p = plan(&HostState::default(), "sbx-a", &new);
        assert_eq!(p.add_links, new);
        assert_eq!(p.add_nat, [nat("10.0.0.2", "a"), nat("fd00::2", "a")]);
        assert!(p.del_links.is_empty() && p.del_nat.is_empty() && !p.delete_table);
        // Again: nothing to do.
        assert!(plan(&state(&new), "sbx-a", &new).is_empty());
    }

    #[test]
    fn attach_replaces_what_the_link_had() {
        let old = [el("sbx-a", "10.0.0.2", "old"), el("sbx-b", "10.0.0.3", "b")];
        let new = [el("sbx-a", "10.0.0.2", "new")];
        let p = plan(&state(&old), "sbx-a", &new);
        assert_eq!(p.del_links, [old[0].clone()]);
        assert_eq!(p.add_links, new);
        assert_eq!(p.del_nat, [nat("10.0.0.2", "old")]);
        assert_eq!(p.add_nat, [nat("10.0.0.2", "new")]);
    }

    #[test]
    fn detach_keeps_others_and_deletes_the_table_last() {
        let s = state(&[
            el("sbx-a", "10.0.0.2", "a"),
            el("sbx-a", "fd00::2", "a"),
            el("sbx-b", "10.0.0.3", "b"),
        ]);
        let p = plan(&s, "sbx-a", &[]);
        assert_eq!(p.del_links, s.links[..2]);
        assert_eq!(p.del_nat, [nat("10.0.0.2", "a"), nat("fd00::2", "a")]);
        assert!(p.add_links.is_empty() && p.add_nat.is_empty() && !p.delete_table);

        let p = plan(&state(&s.links[2..]), "sbx-b", &[]);
        assert!(p.delete_table);
        // An empty table goes too; an unknown link changes nothing.
        assert!(plan(&HostState::default(), "sbx-x", &[]).delete_table);
        assert!(plan(&s, "sbx-x", &[]).is_empty());
    }

    #[test]
    fn masquerade_follows_the_links() {
        // The same address on two links (a reused address whose old link
        // lingers): it is masqueraded until neither has it.
        let s = state(&[el("sbx-a", "10.0.0.2", "a"), el("sbx-b", "10.0.0.2", "a")]);
        let p = plan(&s, "sbx-a", &[]);
        assert_eq!(p.del_links, [s.links[0].clone()]);
        assert!(p.del_nat.is_empty());
        // An entry without a link goes with the next change.
        let mut s = state(&[el("sbx-b", "10.0.0.3", "b")]);
        s.nat.push(nat("10.0.0.9", "gone"));
        let p = plan(&s, "sbx-c", &[el("sbx-c", "10.0.0.4", "c")]);
        assert_eq!(p.del_nat, [nat("10.0.0.9", "gone")]);
        assert_eq!(p.add_nat, [nat("10.0.0.4", "c")]);
    }

    #[test]
    fn names_are_checked() {
        for ok in ["sbx-a", "sbx-0123456789a"] {
            check_link(ok).unwrap();
        }
        for bad in ["eth0", "sbx-", "sbx-0123456789ab", "sbx-a/b", "sbx-a b"] {
            assert!(check_link(bad).is_err(), "{bad}");
        }
        check_owner("my-sandbox_1.2").unwrap();
        check_addr("10.0.0.2".parse().unwrap()).unwrap();
        for bad in ["0.0.0.0", "127.0.0.1", "::", "::1", "ff02::1", "224.0.0.1"] {
            assert!(check_addr(bad.parse().unwrap()).is_err(), "{bad}");
        }
        for bad in ["", "a\"b", "a\nb", &"x".repeat(OWNER_MAX + 1)] {
            assert!(check_owner(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_drops_are_counted_and_every_rule_names_a_sandbox_link() {
        let r = host_ruleset();
        for c in &r.chains {
            for rule in &c.rules {
                let drop = rule.statements.contains(&Statement::Drop);
                let counted = rule
                    .statements
                    .iter()
                    .any(|s| matches!(s, Statement::Counter(_)));
                assert_eq!(drop, counted);
                // Only sandbox traffic is touched: a prefix match or a
                // lookup in the sandbox sets.
                assert!(rule.matches.iter().any(|m| matches!(
                    m,
                    Match::IifName(IfName::Prefix(LINK_PREFIX))
                        | Match::OifName(IfName::Prefix(LINK_PREFIX))
                        | Match::InSet(..)
                )));
            }
        }
    }
}
