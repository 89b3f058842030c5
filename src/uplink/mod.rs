//! A standalone sandbox's way out of its network namespace: a veth pair,
//! an address of its own from each pool, routes, and NAT on the host for
//! those addresses only.
//!
//! ```text
//!  host                                   sandbox netns
//!  sbx-<id>  169.254.1.1/32, fe80::1  <->  eth0  10.199.x.y/32, fd5b:...:n/128
//!  route 10.199.x.y/32 dev sbx-<id>        default via 169.254.1.1 / fe80::1
//!  inet sbx_oci_host: forward, anti-spoof, masquerade (nft::host_*)
//! ```
//!
//! Allocation needs no lease file: the host route to the sandbox's address
//! is added with NLM_F_EXCL, so the kernel refuses a second sandbox the
//! same address, and the route disappears with the link. The link goes
//! with the sandbox's namespace (the kernel deletes a veth pair when either
//! end's namespace dies), so after a crash the only leftovers are host
//! table elements, which [`gc`] removes; [`detach`] is what `delete` does.

pub mod plan;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

use serde::Serialize;

use plan::{ALIAS_PREFIX, GATEWAY4, GATEWAY6, PEER};
pub use plan::{Pool, Pools, link_name};

use crate::rtnl::Rtnl;
use crate::{Error, Result, nft};

/// How many addresses of a pool are tried before it counts as full.
const TRIES: u64 = 65_536;

/// What [`attach`] gave a sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Uplink {
    pub link: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
}

/// How long a new sandbox waits for the link of an ended one of the same
/// name to go.
const LINK_GONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

fn uplink_err(op: impl Into<String>, source: std::io::Error) -> Error {
    Error::Uplink {
        op: op.into(),
        source,
    }
}

/// Gives the sandbox `id`, whose network namespace is `netns`, its way
/// out. On any error, everything made so far is taken down again.
///
/// The host table is changed on `nl`, which the caller closes when it
/// suits it (see `nft::Netlink::close_later`).
pub fn attach(id: &str, netns: &File, pools: &Pools, nl: &nft::Netlink) -> Result<Uplink> {
    let link = link_name(id);
    enable_forwarding(pools.ipv6.is_some())?;
    let mut rt = Rtnl::open()?;
    let alias = format!("{ALIAS_PREFIX}{}", owner(id));
    let mut added = rt.add_veth(&link, &alias, PEER, netns.as_fd());
    // A sandbox of the same name that just ended leaves its link until the
    // kernel has torn its namespace down (in the background, milliseconds
    // later): a name reused at once waits for that.
    let deadline = std::time::Instant::now() + LINK_GONE_WITHIN;
    let exists = |r: &Result<()>| matches!(r, Err(Error::Uplink { source, .. }) if source.raw_os_error() == Some(libc::EEXIST));
    while exists(&added) && std::time::Instant::now() < deadline {
        if rt.index(&link)?.is_some() {
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        added = rt.add_veth(&link, &alias, PEER, netns.as_fd());
        if exists(&added) && rt.index(&link)?.is_none() {
            break; // the namespace's own interface: no use waiting
        }
    }
    match added {
        Err(Error::Uplink { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {
            let op = if rt.index(&link)?.is_some() {
                format!(
                    "the host already has a link {link}: a running sandbox named {id:?} (ids \
                     must be unique on the host, across --root directories), or another \
                     program's link of that name"
                )
            } else {
                format!("the sandbox's network namespace already has an interface {PEER}")
            };
            return Err(uplink_err(op, source));
        }
        r => r?,
    }
    let made = attach_made(&mut rt, id, &link, netns, pools, nl);
    if made.is_err() {
        let _ = rt.delete_link(&link);
        let _ = nft::host_detach(&link);
    }
    made
}

fn attach_made(
    rt: &mut Rtnl,
    id: &str,
    link: &str,
    netns: &File,
    pools: &Pools,
    nl: &nft::Netlink,
) -> Result<Uplink> {
    let index = rt.index(link)?.ok_or_else(|| {
        uplink_err(
            format!("find {link} after creating it"),
            std::io::Error::from_raw_os_error(libc::ENODEV),
        )
    })?;
    rt.up(index, link)?;
    rt.add_address(index, GATEWAY4.into(), 32, link)?;
    let ipv4 = match claim(rt, index, link, &pools.ipv4, id)? {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("an IPv4 pool"),
    };
    let ipv6 = match &pools.ipv6 {
        None => None,
        Some(pool) => {
            rt.add_address(index, GATEWAY6.into(), 64, link)?;
            match claim(rt, index, link, pool, id)? {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => unreachable!("an IPv6 pool"),
            }
        }
    };
    nft::host_attach_on(nl, link, Some(ipv4), ipv6, owner(id))?;
    let up = Uplink {
        link: link.to_owned(),
        ipv4,
        ipv6,
    };
    inside(netns, &up)?;
    Ok(up)
}

/// The id as the link's alias and the table's comments carry it: ids are
/// ASCII and at most 1024 bytes, comments at most 128.
fn owner(id: &str) -> &str {
    &id[..id.len().min(crate::netpolicy::host::OWNER_MAX)]
}

/// Takes the first free address of `pool` for link `index`: the first
/// whose host route can be added exclusively.
fn claim(rt: &mut Rtnl, index: u32, link: &str, pool: &Pool, id: &str) -> Result<IpAddr> {
    let bits = if pool.is_ipv4() { 32 } else { 128 };
    for addr in pool.candidates(id, TRIES) {
        match rt.add_route(addr, bits, index, None, true, link) {
            Ok(()) => return Ok(addr),
            Err(Error::Uplink { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Err(uplink_err(
        format!(
            "no free address in the pool {pool}: every address tried is in use (give the \
             sandboxes a larger pool)"
        ),
        std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
    ))
}

/// The sandbox's side, from a thread inside its namespace: loopback and
/// eth0 up, its addresses, and default routes through the host's end.
fn inside(netns: &File, up: &Uplink) -> Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| uplink_err("enter the sandbox's network namespace", e.into()))?;
            let mut rt = Rtnl::open()?;
            let find = |rt: &mut Rtnl, name: &str| {
                rt.index(name)?.ok_or_else(|| {
                    uplink_err(
                        format!("find {name} in the sandbox"),
                        std::io::Error::from_raw_os_error(libc::ENODEV),
                    )
                })
            };
            let lo = find(&mut rt, "lo")?;
            rt.up(lo, "the sandbox's loopback")?;
            let eth = find(&mut rt, PEER)?;
            rt.add_address(eth, up.ipv4.into(), 32, PEER)?;
            if let Some(v6) = up.ipv6 {
                rt.add_address(eth, v6.into(), 128, PEER)?;
            }
            rt.up(eth, PEER)?;
            rt.add_route(GATEWAY4.into(), 32, eth, None, false, PEER)?;
            rt.add_route(
                Ipv4Addr::UNSPECIFIED.into(),
                0,
                eth,
                Some(GATEWAY4.into()),
                false,
                PEER,
            )?;
            if up.ipv6.is_some() {
                rt.add_route(
                    Ipv6Addr::UNSPECIFIED.into(),
                    0,
                    eth,
                    Some(GATEWAY6.into()),
                    false,
                    PEER,
                )?;
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(uplink_err(
                "configure the sandbox's side",
                std::io::Error::other("the thread panicked"),
            ))
        })
    })
}

/// Takes down what [`attach`] made for sandbox `id` once its processes are
/// gone: its host table elements. Idempotent.
///
/// The link, its routes (and so the address claims) and addresses go with
/// the sandbox's namespace, which the kernel tears down when its last
/// process has exited. Deleting the link here would make the caller wait
/// for the kernel to unregister it (40-45 ms measured) for work the
/// namespace's teardown does anyway, off everyone's path.
///
/// The table itself stays when this was its last sandbox
/// ([`nft::Detached::table_empty`]): the caller runs [`sweep_later`].
pub fn detach(id: &str) -> Result<nft::Detached> {
    let nl = nft::Netlink::open()?;
    let d = nft::host_detach_on(&nl, &link_name(id))?;
    // Only a socket that changed something waits on close (`delete --force`
    // of an id that never had a network changes nothing).
    if d.removed > 0 || d.table_empty {
        nl.close_later();
    }
    Ok(d)
}

/// [`detach`], then [`sweep_later`] if the table is left empty.
pub fn detach_and_sweep(id: &str) -> Result<()> {
    if detach(id)?.table_empty {
        sweep_later();
    }
    Ok(())
}

/// Starts `sbx-oci hook sweep` (not waited for), which deletes the host
/// table if no sandbox is in it by then: that deletion waits ~40 ms for the
/// kernel, which nobody needs to wait for. In a process that is not the
/// runtime (the API's caller), which has no sbx-oci to start, the sweep is
/// done here. Best effort: `gc` also sweeps.
pub fn sweep_later() {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = crate::selfexe::host_path() else {
        if let Err(e) = nft::host_sweep() {
            tracing::warn!("cannot sweep the host table: {e}");
        }
        return;
    };
    let spawned = std::process::Command::new(exe)
        .args(["hook", "sweep"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        tracing::warn!("cannot start the host table sweep: {e}");
    }
}

/// What [`gc`] removed.
#[derive(Debug, Default, Serialize)]
pub struct Collected {
    /// Host table entries whose link was gone: (link, address, owner).
    pub nat: Vec<(String, IpAddr, String)>,
}

/// Removes host table entries of sandboxes whose link no longer exists
/// (their namespace died without a `delete`), under the table's lock, so a
/// sandbox attached again under the same name meanwhile is left alone.
pub fn gc() -> Result<Collected> {
    let nat = nft::host_collect()?
        .into_iter()
        .map(|e| (e.link, e.addr, e.owner))
        .collect();
    nft::host_sweep()?;
    Ok(Collected { nat })
}

/// Turns on IPv4 (and, with an IPv6 pool, IPv6) forwarding if it is off.
/// Before IPv6 forwarding, interfaces that accept router advertisements
/// only while not forwarding (accept_ra = 1) are moved to 2, so the host
/// keeps the addresses and routes it learns from them.
fn enable_forwarding(ipv6: bool) -> Result<()> {
    let sysctl = |path: &str, value: &str| -> Result<()> {
        let cur =
            std::fs::read_to_string(path).map_err(|e| uplink_err(format!("read {path}"), e))?;
        if cur.trim() != value {
            std::fs::write(path, value).map_err(|e| uplink_err(format!("write {path}"), e))?;
        }
        Ok(())
    };
    sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
    if ipv6 {
        const ALL: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
        let on = std::fs::read_to_string(ALL).map_err(|e| uplink_err(format!("read {ALL}"), e))?;
        if on.trim() != "1" {
            if let Ok(dir) = std::fs::read_dir("/proc/sys/net/ipv6/conf") {
                for d in dir.flatten() {
                    let ra = d.path().join("accept_ra");
                    if std::fs::read_to_string(&ra).is_ok_and(|v| v.trim() == "1") {
                        let _ = std::fs::write(&ra, "2");
                    }
                }
            }
            sysctl(ALL, "1")?;
        }
    }
    Ok(())
}
