//! The DNS gatekeeper of one sandbox: a forwarder that every DNS query of
//! the sandbox is redirected to (nft `redirect` of UDP/TCP 53 to its
//! loopback), which answers unlisted names itself (NXDOMAIN, or REFUSED for
//! record types that carry no address), asks the upstream resolvers for
//! listed ones, pins the answer's addresses into the sandbox's nft sets and
//! releases the answer only once the kernel has acknowledged them.
//!
//! One process per sandbox, forked by the prestart hook (no exec: it runs
//! the code already mapped). The hook opens everything in the sandbox's
//! network namespace first — the listening sockets on 127.0.0.1:53 and
//! [::1]:53, a netfilter socket — and a pidfd of the container's init; the
//! process itself stays in the host's namespace, so its upstream sockets
//! are outside the sandbox's filter. It exits when the init does (the
//! pidfd), so nothing outlives the container even if every sbx-oci process
//! is killed; `gc` kills any whose state directory is gone. If it dies, the
//! sandbox's DNS fails closed: the redirect leads nowhere, and pins expire.
//!
//! The decisions are [`crate::netpolicy::gate`]'s (pure); this is the
//! event loop (tokio, one thread), the upstream traffic, pinning, the
//! limits (distinct names, pinned addresses, queries per second) and the
//! audit file `stats` reads ([`audit_file`]).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::netpolicy::compile::{TABLE, name_classes, pin_sets};
use crate::netpolicy::entry::Dest;
use crate::netpolicy::file::{Gatekeeper, PolicyFile};
use crate::netpolicy::gate::{self, Answered, Decision, GateConfig, Transport};
use crate::netpolicy::names::{NamePattern, NameSet};
use crate::nft::{self, Netlink};
use crate::{Error, Result, rtnl::Rtnl};

/// The gatekeeper's command name (/proc/PID/comm); its command line is the
/// hook's, which names the policy file.
pub const COMM: &str = "sbx-oci-dns";

/// How long one upstream resolver has to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries being answered at once; past it, new UDP queries are dropped
/// (the client retries) and TCP connections wait.
const IN_FLIGHT_MAX: usize = 256;
const TCP_CONNECTIONS_MAX: usize = 32;
/// Distinct denied (name, type) records kept; past it, only counted.
const AUDIT_RECORDS_MAX: usize = 1000;
/// The audit file is rewritten at most this often.
const AUDIT_EVERY: Duration = Duration::from_millis(200);

/// Where the gatekeeper of the policy at `policy` records what it did:
/// `network.json` → `network.dns.json`.
pub fn audit_file(policy: &Path) -> PathBuf {
    let stem = policy
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    policy.with_file_name(format!("{stem}.dns.json"))
}

fn pid_file(policy: &Path) -> PathBuf {
    audit_file(policy).with_extension("pid")
}

/// Waits, at most `timeout`, for the gatekeepers of the container whose
/// state directory is `state_dir` to exit (they do once its init has):
/// their audit files are then final.
pub fn wait_gone(state_dir: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for policy in super::policy_files(state_dir) {
        let Some(pid) = std::fs::read_to_string(pid_file(&policy))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() != COMM {
            continue; // gone already
        }
        let Ok(fd) = pidfd_open(pid) else {
            continue;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = crate::signal::pidfd_wait(fd.as_fd(), left);
    }
}

/// Starts the gatekeeper of the container whose init is `pid` and whose
/// network namespace is `ns`; returns once it is listening (queries sent
/// from then on are queued by the kernel until it reads them).
pub fn start(ns: &File, pid: i32, file: &PolicyFile, policy: &Path) -> Result<()> {
    let pidfd = pidfd_open(pid)?;
    let (opened, nl) = std::thread::scope(|s| {
        s.spawn(|| open_inside(ns))
            .join()
            .unwrap_or_else(|_| Err(Error::NetworkPolicy("the thread panicked".into())))
    })?;
    let gate = Gate::new(file, opened.ipv6, nl, audit_file(policy))?;
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("cannot start the DNS gatekeeper (pipe)", e.into()))?;
    // SAFETY: this process has one thread (the one above was joined), so
    // the child may allocate and start its own runtime.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(ready_r);
            let code = child(opened, pidfd, gate, ready_w);
            // SAFETY: leaves without running the hook's exit handlers.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(ready_w);
            // Who to wait for before reading its final audit.
            let _ = std::fs::write(pid_file(policy), child.to_string());
            // Serving, or a clear error now rather than a sandbox whose
            // DNS silently fails.
            let mut fds = [nix::poll::PollFd::new(
                ready_r.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16));
            let mut byte = [0u8; 1];
            match nix::unistd::read(ready_r.as_raw_fd(), &mut byte) {
                Ok(1) => Ok(()),
                _ => {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    Err(Error::NetworkPolicy(
                        "the DNS gatekeeper did not start (see the host's limits on processes \
                         and memory)"
                            .into(),
                    ))
                }
            }
        }
        Err(e) => Err(Error::io(
            "cannot start the DNS gatekeeper (fork)",
            e.into(),
        )),
    }
}

fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    crate::signal::pidfd_open(nix::unistd::Pid::from_raw(pid)).map_err(|e| {
        Error::io(
            format!("cannot watch the container's init (pidfd_open of {pid})"),
            e,
        )
    })
}

/// What the hook opens in the sandbox's namespace.
struct Opened {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
    /// The namespace has a route to the IPv6 internet: AAAA answers are
    /// useful to its programs.
    ipv6: bool,
}

/// From a thread inside the sandbox's namespace: loopback up, the
/// listening sockets, the netfilter socket pins go through.
fn open_inside(ns: &File) -> Result<(Opened, Netlink)> {
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::io(
            "cannot enter the sandbox's network namespace for its DNS gatekeeper",
            e.into(),
        )
    })?;
    let mut rt = Rtnl::open()?;
    if let Some(lo) = rt.index("lo")? {
        rt.up(lo, "the sandbox's loopback")?;
    }
    let listen = |a: IpAddr| SocketAddr::new(a, 53);
    let what = |a: IpAddr| format!("cannot listen on {} in the sandbox", listen(a));
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut udp = vec![UdpSocket::bind(listen(v4)).map_err(|e| Error::io(what(v4), e))?];
    let mut tcp = vec![TcpListener::bind(listen(v4)).map_err(|e| Error::io(what(v4), e))?];
    // IPv6 may be off in the namespace; then v6 DNS is dropped (no route
    // to a v6 resolver is needed for v4 clients).
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    if let (Ok(u), Ok(t)) = (UdpSocket::bind(listen(v6)), TcpListener::bind(listen(v6))) {
        udp.push(u);
        tcp.push(t);
    }
    for s in &udp {
        s.set_nonblocking(true)
            .map_err(|e| Error::io("cannot set up the gatekeeper's socket", e))?;
    }
    for s in &tcp {
        s.set_nonblocking(true)
            .map_err(|e| Error::io("cannot set up the gatekeeper's socket", e))?;
    }
    // A UDP connect only looks the route up: nothing is sent.
    let ipv6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 53)))
        .is_ok();
    Ok((Opened { udp, tcp, ipv6 }, Netlink::open()?))
}

/// The child: detaches from the hook's session and descriptors, then
/// serves until the init exits.
fn child(opened: Opened, pidfd: OwnedFd, gate: Gate, ready: OwnedFd) -> i32 {
    let _ = nix::unistd::setsid();
    let name = std::ffi::CString::new(COMM).unwrap_or_default();
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    let mut keep: Vec<RawFd> = vec![pidfd.as_raw_fd(), gate.nl.as_raw_fd(), ready.as_raw_fd()];
    keep.extend(opened.udp.iter().map(|s| s.as_raw_fd()));
    keep.extend(opened.tcp.iter().map(|s| s.as_raw_fd()));
    crate::daemon::detach_fds(&keep);
    forget_inherited_pages();
    if drop_privileges().is_err() {
        return 1;
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    else {
        return 1;
    };
    let local = tokio::task::LocalSet::new();
    let _ = nix::unistd::write(&ready, b"1");
    drop(ready);
    local.block_on(&rt, serve(opened, pidfd, gate))
}

/// The binary's pages the hook touched (argument parsing, JSON, the rules)
/// are the child's too after the fork, and count in its RSS: let them go
/// from this process (they stay in the page cache), so that only what the
/// gatekeeper itself runs is faulted back in.
fn forget_inherited_pages() {
    // The hook's heap, freed before the fork, goes back too.
    // SAFETY: malloc_trim only returns free memory of this process.
    unsafe { libc::malloc_trim(0) };
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let exe = exe.to_string_lossy().into_owned();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        // Code only: never written, so the kernel faults it in again from
        // the page cache. (Read-only data may hold relocations applied at
        // start-up, which the file does not have.)
        if !perms.starts_with("r-x") || !line.ends_with(&exe) {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        // SAFETY: drops clean, file-backed pages of this process's own
        // mapping; their contents come back from the file on the next touch.
        unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED) };
    }
}

/// It parses what a hostile sandbox sends: it keeps only CAP_NET_ADMIN
/// (pins go through netlink, which checks it on every message), in every
/// set including the bounding one, and can never gain more (no_new_privs).
fn drop_privileges() -> std::result::Result<(), caps::errors::CapsError> {
    use caps::{CapSet, Capability};
    let keep: caps::CapsHashSet = [Capability::CAP_NET_ADMIN].into_iter().collect();
    for cap in caps::all() {
        // A capability this kernel does not know is in no set anyway.
        if cap != Capability::CAP_NET_ADMIN {
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    // SAFETY: sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    Ok(())
}

/// One sandbox's gatekeeper state (one thread: `Rc` and cells).
struct Gate {
    names: NameSet<usize>,
    cfg: GateConfig,
    limits: Gatekeeper,
    upstreams: Vec<SocketAddr>,
    audit_path: PathBuf,
    /// A netfilter socket in the sandbox's namespace, for pins.
    nl: Netlink,
    /// (name class, address) → when the kernel's element expires.
    pins: RefCell<HashMap<(usize, IpAddr), Instant>>,
    names_seen: RefCell<HashSet<String>>,
    bucket: RefCell<Bucket>,
    audit: RefCell<Audit>,
    dirty: Cell<bool>,
    in_flight: Cell<usize>,
    tcp_clients: Cell<usize>,
}

impl Gate {
    fn new(file: &PolicyFile, ipv6: bool, nl: Netlink, audit_path: PathBuf) -> Result<Gate> {
        let entries = file.entries()?;
        let classes = name_classes(&entries)?;
        let mut patterns = Vec::new();
        for e in &entries {
            if let Dest::Host(name) = &e.dest {
                let class = classes
                    .iter()
                    .position(|c| *c == (e.proto, e.ports.unwrap_or(crate::netpolicy::Ports::ALL)))
                    .unwrap_or(0);
                let pattern = NamePattern::parse(name).map_err(|reason| Error::NetworkEntry {
                    entry: e.to_string(),
                    reason,
                })?;
                patterns.push((pattern, class));
            }
        }
        let g = &file.gatekeeper;
        Ok(Gate {
            names: NameSet::new(patterns),
            cfg: GateConfig {
                ttl_min: g.ttl_min_s,
                ttl_max: g.ttl_max_s,
                grace: g.grace_s,
                ipv6,
                learn: file.learn,
            },
            limits: g.clone(),
            upstreams: file.dns.iter().map(|a| SocketAddr::new(*a, 53)).collect(),
            audit_path,
            nl,
            pins: RefCell::default(),
            names_seen: RefCell::default(),
            bucket: RefCell::new(Bucket::new(g.queries_per_s)),
            audit: RefCell::new(Audit {
                learn: file.learn,
                ..Audit::default()
            }),
            dirty: Cell::new(true),
            in_flight: Cell::new(0),
            tcp_clients: Cell::new(0),
        })
    }
}

async fn serve(opened: Opened, pidfd: OwnedFd, gate: Gate) -> i32 {
    let gate = Rc::new(gate);
    for s in opened.udp {
        let Ok(sock) = tokio::net::UdpSocket::from_std(s) else {
            return 1;
        };
        tokio::task::spawn_local(udp_loop(gate.clone(), Rc::new(sock)));
    }
    for s in opened.tcp {
        let Ok(l) = tokio::net::TcpListener::from_std(s) else {
            return 1;
        };
        tokio::task::spawn_local(tcp_loop(gate.clone(), l));
    }
    tokio::task::spawn_local(audit_loop(gate.clone()));
    // The init's exit ends the gatekeeper.
    // SAFETY: the AsyncFd owns the pidfd, which stays open until it drops.
    if let Ok(fd) = unsafe { tokio::io::unix::AsyncFd::register(pidfd) } {
        let _ = fd.readable().await;
    }
    gate.write_audit();
    0
}

async fn udp_loop(gate: Rc<Gate>, sock: Rc<tokio::net::UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        if gate.in_flight.get() >= IN_FLIGHT_MAX {
            continue; // the client retries
        }
        let packet = buf[..n].to_vec();
        let (gate, sock) = (gate.clone(), sock.clone());
        gate.in_flight.set(gate.in_flight.get() + 1);
        tokio::task::spawn_local(async move {
            if let Some(reply) = gate.handle(&packet, Transport::Udp).await {
                let _ = sock.send_to(&reply, from).await;
            }
            gate.in_flight.set(gate.in_flight.get() - 1);
        });
    }
}

async fn tcp_loop(gate: Rc<Gate>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        if gate.tcp_clients.get() >= TCP_CONNECTIONS_MAX {
            continue; // dropped: closed at once
        }
        gate.tcp_clients.set(gate.tcp_clients.get() + 1);
        let gate = gate.clone();
        tokio::task::spawn_local(async move {
            let _ = tcp_client(&gate, stream).await;
            gate.tcp_clients.set(gate.tcp_clients.get() - 1);
        });
    }
}

/// Length-prefixed messages, one after the other, until the client closes
/// or idles.
async fn tcp_client(gate: &Gate, mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut packet = vec![0u8; u16::from_be_bytes(len) as usize];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let Some(reply) = gate.handle(&packet, Transport::Tcp).await else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut out = n.to_be_bytes().to_vec();
        out.extend(reply);
        stream.write_all(&out).await?;
    }
}

async fn audit_loop(gate: Rc<Gate>) {
    loop {
        tokio::time::sleep(AUDIT_EVERY).await;
        if gate.dirty.replace(false) {
            gate.write_audit();
        }
    }
}

impl Gate {
    /// The reply to one query, if any.
    async fn handle(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        self.audit.borrow_mut().queries += 1;
        self.dirty.set(true);
        if !self.bucket.borrow_mut().take() {
            self.audit.borrow_mut().rate_limited += 1;
            return gate::refused(packet);
        }
        match gate::query(packet, &self.names, &self.cfg, transport) {
            Decision::Reply { reply, denied } => {
                if let Some(d) = denied {
                    self.deny(&d.name, &d.qtype, &d.reason.to_string());
                }
                (!reply.is_empty()).then_some(reply)
            }
            Decision::Forward {
                query,
                pending,
                matched,
                would_deny,
            } => {
                let name = pending.name().to_owned();
                if let Some(d) = would_deny {
                    self.deny(
                        &d.name,
                        &d.qtype,
                        &format!("{} (learn: let through)", d.reason),
                    );
                }
                {
                    let mut seen = self.names_seen.borrow_mut();
                    if !seen.contains(&name) {
                        if seen.len() >= self.limits.max_names as usize {
                            drop(seen);
                            self.deny(&name, &pending.qtype(), "too many names (max_names)");
                            return gate::refused(packet);
                        }
                        seen.insert(name.clone());
                    }
                }
                self.audit.borrow_mut().forwarded += 1;
                let answered = self.ask_upstream(&query, &pending).await;
                let Some(Answered::Release {
                    reply,
                    pins,
                    blocked,
                    ..
                }) = answered
                else {
                    self.audit.borrow_mut().failed += 1;
                    return Some(gate::servfail(&pending));
                };
                for a in &blocked {
                    let why = format!("answer held {a}, a link-local or metadata address");
                    self.deny(&name, &pending.qtype(), &why);
                }
                let mut classes: Vec<usize> = matched
                    .iter()
                    .filter_map(|i| self.names.value(*i).copied())
                    .collect();
                classes.sort_unstable();
                classes.dedup();
                if !pins.is_empty() && !classes.is_empty() {
                    let addrs: Vec<(IpAddr, u32)> =
                        pins.iter().map(|p| (p.addr, p.timeout)).collect();
                    if let Err(why) = self.pin(&classes, &addrs) {
                        self.deny(&name, &pending.qtype(), &why);
                        return Some(gate::servfail(&pending));
                    }
                }
                self.answered(&name, pins.iter().map(|p| p.addr).collect());
                Some(reply)
            }
        }
    }

    /// Asks each upstream resolver in turn (UDP, then TCP when the answer
    /// was truncated); `None` when none answered.
    async fn ask_upstream(&self, query: &[u8], pending: &gate::Pending) -> Option<Answered> {
        for server in &self.upstreams {
            let got = tokio::time::timeout(
                UPSTREAM_TIMEOUT,
                ask_udp(*server, query, pending, &self.cfg),
            )
            .await;
            match got {
                Ok(Some(Answered::RetryTcp)) => {
                    let tcp = tokio::time::timeout(
                        UPSTREAM_TIMEOUT,
                        ask_tcp(*server, query, pending, &self.cfg),
                    )
                    .await;
                    if let Ok(Some(a)) = tcp {
                        return Some(a);
                    }
                }
                Ok(Some(a)) => return Some(a),
                _ => {}
            }
        }
        None
    }

    /// Pins `addrs` (address, seconds) in the sets of `classes`, in one
    /// transaction; the error says why not.
    fn pin(&self, classes: &[usize], addrs: &[(IpAddr, u32)]) -> std::result::Result<(), String> {
        let now = Instant::now();
        let mut pins = self.pins.borrow_mut();
        pins.retain(|_, until| *until > now);
        // Each pin with the class whose set it goes in.
        let mut batch: Vec<(usize, nft::Pin)> = Vec::new();
        let mut added = 0;
        for class in classes {
            let (p4, p6) = pin_sets(*class);
            for (addr, secs) in addrs {
                let until = now + Duration::from_secs(u64::from(*secs));
                let known = pins.get(&(*class, *addr)).copied();
                // Pinned for the answer's whole TTL already (the grace is
                // a margin, not a promise): no transaction.
                let grace = Duration::from_secs(u64::from(self.cfg.grace));
                if known.is_some_and(|k| k + grace >= until) {
                    continue;
                }
                if known.is_none() {
                    added += 1;
                }
                batch.push((
                    *class,
                    nft::Pin {
                        set: if addr.is_ipv4() { p4 } else { p6 },
                        addr: *addr,
                        timeout_ms: u64::from(*secs) * 1000,
                        // Well before its expiry the element is surely
                        // there; close to it, the kernel may have removed it.
                        replace: known.is_some_and(|k| k > now + Duration::from_secs(1)),
                    },
                ));
            }
        }
        if pins.len() + added > self.limits.max_addresses as usize {
            return Err("too many pinned addresses (max_addresses)".into());
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut elements: Vec<nft::Pin> = batch.iter().map(|(_, p)| p.clone()).collect();
        let mut result = self.nl.pin(TABLE, &elements);
        if result.is_err() && elements.iter().any(|p| p.replace) {
            // An element expired between our look and the kernel's.
            elements.iter_mut().for_each(|p| p.replace = false);
            result = self.nl.pin(TABLE, &elements);
        }
        result.map_err(|e| format!("pinning failed: {e}"))?;
        for (class, p) in &batch {
            pins.insert((*class, p.addr), now + Duration::from_millis(p.timeout_ms));
        }
        let mut audit = self.audit.borrow_mut();
        audit.pinned = pins.len();
        Ok(())
    }

    fn deny(&self, name: &str, qtype: &str, reason: &str) {
        let now = now_text();
        let mut audit = self.audit.borrow_mut();
        audit.denied_total += 1;
        let key = (name.to_owned(), qtype.to_owned(), reason.to_owned());
        let full = audit.denied.len() >= AUDIT_RECORDS_MAX;
        match audit.denied.get_mut(&key) {
            Some(r) => {
                r.count += 1;
                r.last = now;
            }
            None if !full => {
                audit.denied.insert(
                    key,
                    Record {
                        count: 1,
                        first: now.clone(),
                        last: now,
                    },
                );
            }
            None => {}
        }
        self.dirty.set(true);
    }

    fn answered(&self, name: &str, addrs: Vec<IpAddr>) {
        let now = now_text();
        let mut audit = self.audit.borrow_mut();
        let full = audit.answered.len() >= AUDIT_RECORDS_MAX;
        match audit.answered.get_mut(name) {
            Some(a) => {
                a.count += 1;
                a.last = now;
                for addr in addrs {
                    if !a.addresses.contains(&addr) && a.addresses.len() < 64 {
                        a.addresses.push(addr);
                    }
                }
            }
            None if !full => {
                audit.answered.insert(
                    name.to_owned(),
                    AnsweredName {
                        addresses: addrs,
                        count: 1,
                        last: now,
                    },
                );
            }
            None => {}
        }
        self.dirty.set(true);
    }

    /// Replaces the audit file (a temporary file renamed over it). The
    /// state directory may be gone already: then nothing is written.
    fn write_audit(&self) {
        let Ok(json) = serde_json::to_vec(&self.audit.borrow().to_file()) else {
            return;
        };
        let tmp = self.audit_path.with_extension("tmp");
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, &self.audit_path);
        }
    }
}

async fn ask_udp(
    server: SocketAddr,
    query: &[u8],
    pending: &gate::Pending,
    cfg: &GateConfig,
) -> Option<Answered> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
    sock.connect(server).await.ok()?;
    sock.send(query).await.ok()?;
    // We offer EDNS for gate::PAYLOAD bytes; a larger answer comes over TCP.
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await.ok()?;
        match gate::answer(pending, &buf[..n], cfg) {
            Answered::Ignore => continue,
            a => return Some(a),
        }
    }
}

async fn ask_tcp(
    server: SocketAddr,
    query: &[u8],
    pending: &gate::Pending,
    cfg: &GateConfig,
) -> Option<Answered> {
    let mut s = tokio::net::TcpStream::connect(server).await.ok()?;
    let mut out = u16::try_from(query.len()).ok()?.to_be_bytes().to_vec();
    out.extend_from_slice(query);
    s.write_all(&out).await.ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    match gate::answer(pending, &buf, cfg) {
        Answered::Ignore | Answered::RetryTcp => None,
        a => Some(a),
    }
}

/// A token bucket: `rate` per second, bursts of as many.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        Bucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Default)]
struct Audit {
    learn: bool,
    queries: u64,
    forwarded: u64,
    failed: u64,
    rate_limited: u64,
    denied_total: u64,
    pinned: usize,
    /// (name, type, reason) → when and how often.
    denied: BTreeMap<(String, String, String), Record>,
    answered: BTreeMap<String, AnsweredName>,
}

struct Record {
    count: u64,
    first: String,
    last: String,
}

struct AnsweredName {
    addresses: Vec<IpAddr>,
    count: u64,
    last: String,
}

/// The audit as `stats` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AuditFile {
    /// Audit mode: the denials below were let through.
    pub learn: bool,
    pub queries: u64,
    /// Sent upstream (listed names; in learn mode, every name).
    pub forwarded: u64,
    /// Answered SERVFAIL: no upstream answered, or pinning failed.
    pub failed: u64,
    /// Refused for going over `queries_per_s`.
    pub rate_limited: u64,
    /// Every denial, including those past the records kept.
    pub denied_total: u64,
    /// Addresses pinned at the last change.
    pub pinned: usize,
    pub denied: Vec<DeniedQuery>,
    pub answered: Vec<AnsweredQuery>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DeniedQuery {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    pub reason: String,
    pub count: u64,
    pub first: String,
    pub last: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AnsweredQuery {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub count: u64,
    pub last: String,
}

impl Audit {
    fn to_file(&self) -> AuditFile {
        AuditFile {
            learn: self.learn,
            queries: self.queries,
            forwarded: self.forwarded,
            failed: self.failed,
            rate_limited: self.rate_limited,
            denied_total: self.denied_total,
            pinned: self.pinned,
            denied: self
                .denied
                .iter()
                .map(|((name, qtype, reason), r)| DeniedQuery {
                    name: name.clone(),
                    qtype: qtype.clone(),
                    reason: reason.clone(),
                    count: r.count,
                    first: r.first.clone(),
                    last: r.last.clone(),
                })
                .collect(),
            answered: self
                .answered
                .iter()
                .map(|(name, a)| AnsweredQuery {
                    name: name.clone(),
                    addresses: a.addresses.clone(),
                    count: a.count,
                    last: a.last.clone(),
                })
                .collect(),
        }
    }
}

/// Reads the audit file of the policy at `policy`, if its gatekeeper wrote
/// one.
pub fn read_audit(policy: &Path) -> Option<AuditFile> {
    let bytes = std::fs::read(audit_file(policy)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Gatekeepers whose policy file is gone (their container was deleted
/// while they lived on: they should have exited with its init): killed.
/// Returns their pids.
pub fn gc() -> Vec<i32> {
    let mut killed = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return killed;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() != COMM {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let policy = args
            .iter()
            .position(|a| *a == b"--policy")
            .and_then(|i| args.get(i + 1))
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()));
        if policy.is_some_and(|p| !p.exists()) {
            // Watched through a pidfd, so that its exit (and its namespace's
            // end) is waited for without mistaking a reused pid.
            let fd = pidfd_open(pid).ok();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            if let Some(fd) = fd {
                let _ = crate::signal::pidfd_wait(fd.as_fd(), Duration::from_secs(1));
            }
            killed.push(pid);
        }
    }
    killed
}
