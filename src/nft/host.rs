//! The host table of standalone sandboxes ([`crate::netpolicy::host`]) in
//! the calling thread's network namespace: created in the transaction
//! that adds the first sandbox's elements, deleted in the one that removes
//! the last one's, so nothing is left on the host while no sandbox runs.
//!
//! Every change reads the four sets, computes the element changes
//! ([`plan`]) and sends them in one transaction. Changes are serialized
//! among processes and threads by an exclusive `flock` of [`HOST_LOCK`]:
//! without it, a detach that found the sets empty could delete the table
//! right after another process added its sandbox. The kernel releases the
//! lock when its holder dies. Reading ([`host_elements`]) takes no lock.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt as _;

use super::*;
use crate::netpolicy::compile::{IFNAMSIZ, ifname_text};
use crate::netpolicy::host::{
    HOST_TABLE, HostElement, HostPlan, HostState, LINKS4, LINKS6, NAT4, NAT6, check_addr,
    check_link, check_owner, host_ruleset, plan, reconcile,
};

/// The lock file of the host table: one per host (whatever `--root`), as
/// the table is; created 0600 if missing, never removed.
pub const HOST_LOCK: &str = "/run/sbx-oci-hostnet.lock";

/// Adds sandbox `owner`'s addresses on its host-side link `link` (named
/// `sbx-…`) to the host table, creating the table if there is none. The
/// link ends with exactly these elements, so attaching again is harmless
/// and replaces what the link had. One transaction.
pub fn host_attach(
    link: &str,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    owner: &str,
) -> Result<()> {
    host_attach_on(&Netlink::open()?, link, v4, v6, owner)
}

/// [`host_attach`] on `nl`, for a caller that closes it later (see
/// [`Netlink::close_later`]): closing after creating the table waits for
/// the kernel.
pub fn host_attach_on(
    nl: &Netlink,
    link: &str,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    owner: &str,
) -> Result<()> {
    check_link(link)?;
    check_owner(owner)?;
    let attach: Vec<HostElement> = [v4.map(IpAddr::from), v6.map(IpAddr::from)]
        .into_iter()
        .flatten()
        .map(|addr| HostElement {
            link: link.to_owned(),
            addr,
            owner: owner.to_owned(),
        })
        .collect();
    if attach.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "attach {link} to the host table: no address given"
        )));
    }
    for e in &attach {
        check_addr(e.addr)?;
    }
    let op = format!("attach {link} to table inet {HOST_TABLE}");
    let _lock = lock().map_err(|e| within(&op, e))?;
    let sock = &nl.0;
    match read_state(sock) {
        Ok(None) => create(sock, &plan(&HostState::default(), link, &attach)),
        Ok(Some(state)) => change(sock, &plan(&state, link, &attach)),
        Err(e) => Err(e),
    }
    .map_err(|e| within(&op, e))
}

/// Removes every element of `link` from the host table, and the table
/// once nothing is left in it. Returns how many addresses `link` had;
/// no table, or nothing for `link`, is `Ok(0)`.
pub fn host_detach(link: &str) -> Result<usize> {
    let d = host_detach_on(&Netlink::open()?, link)?;
    if d.table_empty {
        host_sweep()?;
    }
    Ok(d.removed)
}

/// What [`host_detach_on`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detached {
    /// How many addresses the link had.
    pub removed: usize,
    /// The table is there with nothing in it: [`host_sweep`] removes it.
    pub table_empty: bool,
}

/// Removes every element of `link`, on `nl`, for a caller that closes it
/// later (see [`Netlink::close_later`]: closing after a deletion waits ~15
/// ms). The table stays, even empty: deleting it unregisters its chains
/// from the kernel's hooks, which waits for RCU grace periods (~40 ms
/// measured), so the caller leaves that to [`host_sweep`] off its path.
pub fn host_detach_on(nl: &Netlink, link: &str) -> Result<Detached> {
    check_link(link)?;
    let op = format!("detach {link} from table inet {HOST_TABLE}");
    let _lock = lock().map_err(|e| within(&op, e))?;
    let sock = &nl.0;
    (|| {
        let Some(state) = read_state(sock)? else {
            return Ok(Detached {
                removed: 0,
                table_empty: false,
            });
        };
        let removed = state.links.iter().filter(|e| e.link == link).count();
        let mut p = plan(&state, link, &[]);
        let table_empty = p.delete_table;
        if table_empty {
            // Everything there is this link's (or stray): empty the sets.
            p = HostPlan {
                del_links: state.links.clone(),
                del_nat: state.nat.clone(),
                ..HostPlan::default()
            };
        }
        change(sock, &p)?;
        Ok(Detached {
            removed,
            table_empty,
        })
    })()
    .map_err(|e| within(&op, e))
}

/// Deletes the host table if it has no sandbox in it (decided under the
/// lock, so a sandbox attached meanwhile keeps it). Returns whether it did.
pub fn host_sweep() -> Result<bool> {
    let op = format!("sweep table inet {HOST_TABLE}");
    locked(&op, |sock| match read_state(sock)? {
        Some(state) if state.links.is_empty() => {
            change(
                sock,
                &HostPlan {
                    delete_table: true,
                    ..HostPlan::default()
                },
            )?;
            Ok(true)
        }
        _ => Ok(false),
    })
}

/// Every sandbox address in the host table (`links4`, `links6`); none
/// without a table.
pub fn host_elements() -> Result<Vec<HostElement>> {
    let op = format!("list table inet {HOST_TABLE}");
    // Under the writers' lock: a set dump that a concurrent change resumes
    // may list an element twice (nf_tables does not mark set element dumps
    // interrupted), and the four sets are read one after another.
    let state = locked(&op, read_state)?;
    Ok(state.map(|s| s.links).unwrap_or_default())
}

/// Removes the elements of links that no longer exist in this network
/// namespace (a garbage collector's sweep), deciding under the lock, so
/// it cannot remove a sandbox attached meanwhile. Returns what it removed.
pub fn host_collect() -> Result<Vec<HostElement>> {
    let op = format!("collect table inet {HOST_TABLE}");
    locked(&op, |sock| {
        let Some(state) = read_state(sock)? else {
            return Ok(vec![]);
        };
        let (mut keep, mut gone) = (vec![], vec![]);
        for e in state.links.iter().cloned() {
            if link_exists(&e.link)? {
                keep.push(e);
            } else {
                gone.push(e);
            }
        }
        change(sock, &reconcile(&state, keep))?;
        Ok(gone)
    })
}

/// Whether the calling thread's network namespace has an interface
/// `link`. Only "no such device" says no: any other failure is an error,
/// not a reason to remove a sandbox.
fn link_exists(link: &str) -> Result<bool> {
    let name = std::ffi::CString::new(link)
        .map_err(|_| Error::InvalidArgument(format!("interface name {link:?}")))?;
    // SAFETY: a valid C string; the call only reads it.
    if unsafe { libc::if_nametoindex(name.as_ptr()) } != 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENODEV) {
        return Ok(false);
    }
    Err(os(format!("look up interface {link}"), e))
}

/// `f` with a socket, under the lock; errors say `op`.
fn locked<T>(op: &str, f: impl FnOnce(&Socket) -> Result<T>) -> Result<T> {
    // Opened first, so closed last: closing waits for the kernel to free
    // the transaction (an RCU grace period), which others need not wait for.
    let sock = Socket::open().map_err(|e| within(op, e))?;
    let _lock = lock().map_err(|e| within(op, e))?;
    f(&sock).map_err(|e| within(op, e))
}

/// Says which operation an error belongs to.
fn within(op: &str, e: Error) -> Error {
    match e {
        Error::Nftables { op: inner, source } => Error::Nftables {
            op: format!("{op}: {inner}"),
            source,
        },
        e => e,
    }
}

fn lock() -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(HOST_LOCK)
        .map_err(|e| os(format!("open {HOST_LOCK}"), e))?;
    loop {
        // SAFETY: a valid fd, owned by `f`.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(f);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(os(format!("lock {HOST_LOCK}"), e));
        }
    }
}

/// The four sets; `None` when there is no table.
fn read_state(sock: &Socket) -> Result<Option<HostState>> {
    let mut state = HostState::default();
    for set in [LINKS4, LINKS6, NAT4, NAT6] {
        let elements = match set_contents(sock, set) {
            Err(e) if set == LINKS4 && is_enoent(&e) => return Ok(None),
            r => r?,
        };
        for (key, comment) in elements {
            let owner = comment.unwrap_or_default();
            let bad = || {
                os(
                    format!("read set {set} of table inet {HOST_TABLE}"),
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("a key of {} bytes", key.len()),
                    ),
                )
            };
            if set == LINKS4 || set == LINKS6 {
                let (name, addr) = key.split_at_checked(IFNAMSIZ).ok_or_else(bad)?;
                state.links.push(HostElement {
                    link: ifname_text(name),
                    addr: addr_of(addr).ok_or_else(bad)?,
                    owner,
                });
            } else {
                state.nat.push((addr_of(&key).ok_or_else(bad)?, owner));
            }
        }
    }
    Ok(Some(state))
}

/// A set's elements: key and comment.
fn set_contents(sock: &Socket, set: &str) -> Result<Vec<(Vec<u8>, Option<String>)>> {
    set_dump(sock, HOST_TABLE, set, |key, el| {
        let comment = find(el, NFTA_SET_ELEM_USERDATA).and_then(udata_comment);
        Some((key.to_vec(), comment))
    })
}

/// Creates the table with the elements of `p` (against an empty state),
/// in one transaction. EXCL: a table that exists without the sets is an
/// error, not something to add rules to.
fn create(sock: &Socket, p: &HostPlan) -> Result<()> {
    let r = host_ruleset();
    let mut b = Batch::new();
    b.msg(
        format!("create table inet {HOST_TABLE}"),
        NFT_MSG_NEWTABLE,
        CREATE | NLM_F_EXCL,
        |b| b.str(NFTA_TABLE_NAME, HOST_TABLE),
    );
    objects(&mut b, &r);
    element_changes(&mut b, p, |set| Some(set_id(&r, set)));
    let (buf, what) = b.finish();
    transact(sock, &buf, &what)
}

/// Sends `p` to an existing table.
fn change(sock: &Socket, p: &HostPlan) -> Result<()> {
    if p.delete_table {
        delete_with(sock, HOST_TABLE)?;
        return Ok(());
    }
    if p.is_empty() {
        return Ok(());
    }
    let mut b = Batch::new();
    element_changes(&mut b, p, |_| None);
    let (buf, what) = b.finish();
    transact(sock, &buf, &what)
}

/// The element messages of `p`: deletions, then additions.
fn element_changes(b: &mut Batch, p: &HostPlan, set_id: impl Fn(&str) -> Option<u32>) {
    let link_key = |e: &HostElement| {
        let mut k = Field::IfName.encode(ifname_value(&e.link));
        k.extend(addr_bytes(e.addr));
        k
    };
    // A deletion names the key only.
    let elem = |key, owner: &str, op| Elem {
        key,
        key_end: None,
        comment: matches!(op, ElemOp::Add).then(|| owner.to_owned()),
        timeout_ms: None,
    };
    let links = |els: &[HostElement], v4: bool, op| -> Vec<Elem> {
        els.iter()
            .filter(|e| e.addr.is_ipv4() == v4)
            .map(|e| elem(link_key(e), &e.owner, op))
            .collect()
    };
    let nat = |els: &[(IpAddr, String)], v4: bool, op| -> Vec<Elem> {
        els.iter()
            .filter(|(a, _)| a.is_ipv4() == v4)
            .map(|(a, owner)| elem(addr_bytes(*a), owner, op))
            .collect()
    };
    for (op, l, n) in [
        (ElemOp::Delete, &p.del_links, &p.del_nat),
        (ElemOp::Add, &p.add_links, &p.add_nat),
    ] {
        for (set, elements) in [
            (LINKS4, links(l, true, op)),
            (LINKS6, links(l, false, op)),
            (NAT4, nat(n, true, op)),
            (NAT6, nat(n, false, op)),
        ] {
            set_elements(b, op, HOST_TABLE, set, set_id(set), &elements);
        }
    }
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}
