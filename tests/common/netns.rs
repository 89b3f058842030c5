//! Test hosts in network namespaces: two namespaces joined by a veth pair on
//! private addresses (10.<subnet>.N.0/29, fd00:<subnet>:N::/64) with small
//! TCP/UDP servers, removed on drop even when a test fails. Only these
//! addresses are ever contacted, and every server stops by itself.

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// No server outlives its test by more than this. A safety net only (drop
/// stops the servers): long enough for a whole test under TCG beside the
/// rest of the suite.
const SERVER_LIFETIME: Duration = Duration::from_secs(300);

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip(8)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves the calling thread into the named namespace (setns of a network
/// namespace changes only the calling thread).
pub fn enter(ns: &str) {
    let fd = File::open(format!("/run/netns/{ns}")).unwrap();
    nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

/// Runs `f` on a new thread inside the named namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .unwrap()
}

/// Host `h` of test network `n` on `subnet`: 10.subnet.n.h.
fn v4(subnet: u8, n: usize, h: u8) -> IpAddr {
    format!("10.{subnet}.{n}.{h}").parse().unwrap()
}

/// Host `h` of test network `n` on `subnet`: fd00:subnet:n::h.
fn v6(subnet: u8, n: usize, h: u8) -> IpAddr {
    format!("fd00:{subnet}:{n:x}::{h}").parse().unwrap()
}

/// `sbx` (where a policy goes) and `peer` (the test host).
pub struct Pair {
    pub sbx: String,
    pub peer: String,
    pub n: usize,
    subnet: u8,
    servers: Servers,
}

impl Pair {
    /// Hosts `sbx_hosts` in `sbx` and `peer_hosts` in `peer`, on subnet
    /// 10.`subnet`.N.0/29 and fd00:`subnet`:N::/64 (N unique per pair).
    pub fn new(tag: &str, subnet: u8, sbx_hosts: &[u8], peer_hosts: &[u8]) -> Pair {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests create network namespaces: run them as root"
        );
        let pid = std::process::id();
        let n = (pid as usize * 7 + SEQ.fetch_add(1, Ordering::SeqCst)) % 250 + 1;
        let name = format!("{tag}{pid}-{n}");
        let pair = Pair {
            sbx: format!("{name}-s"),
            peer: format!("{name}-p"),
            n,
            subnet,
            servers: Servers::default(),
        };
        // From here on, drop removes whatever was made.
        ip(&["netns", "add", &pair.sbx]);
        ip(&["netns", "add", &pair.peer]);
        let (va, vb) = (
            format!("{tag}{n}a{}", pid % 1000),
            format!("{tag}{n}b{}", pid % 1000),
        );
        ip(&[
            "link", "add", &va, "netns", &pair.sbx, "type", "veth", "peer", "name", &vb, "netns",
            &pair.peer,
        ]);
        for (ns, dev, hosts) in [(&pair.sbx, &va, sbx_hosts), (&pair.peer, &vb, peer_hosts)] {
            for h in hosts {
                let (v4, v6) = (pair.v4(*h), pair.v6(*h));
                ip(&["-n", ns, "addr", "add", &format!("{v4}/29"), "dev", dev]);
                ip(&[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    dev,
                    "nodad",
                ]);
            }
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        pair
    }

    pub fn v4(&self, h: u8) -> IpAddr {
        v4(self.subnet, self.n, h)
    }

    pub fn v6(&self, h: u8) -> IpAddr {
        v6(self.subnet, self.n, h)
    }

    /// A TCP server answering "ok" to each connection, in namespace `ns`.
    pub fn tcp_server(&mut self, ns: &str, addr: SocketAddr) {
        self.servers.tcp(ns, addr);
    }

    /// A UDP server answering "ok" to each datagram, in namespace `ns`.
    pub fn udp_server(&mut self, ns: &str, addr: SocketAddr) {
        self.servers.udp(ns, addr);
    }

    /// Connects once with a long timeout: on a new veth the first IPv6 SYN
    /// is answered only after a retransmission (1 s), with or without a
    /// policy; after this, neighbours are known.
    pub fn warm_up(&self, from: &str, to: &[SocketAddr]) {
        for a in to {
            let a = *a;
            in_netns(from, move || {
                TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok()
            });
        }
    }

    /// `nft list table inet sbx_oci` in `sbx`, or None without a table.
    pub fn listed(&self) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.sbx, "nft", "list", "table", "inet", "sbx_oci",
            ])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.servers.stop();
        // Deleting a namespace deletes its end of the veth pair, which
        // deletes the pair, and its nftables table.
        for ns in [&self.sbx, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Small servers on threads inside namespaces; they stop when dropped, or
/// after SERVER_LIFETIME.
#[derive(Default)]
pub struct Servers {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Servers {
    /// A TCP server answering "ok" to each connection, in namespace `ns`.
    pub fn tcp(&mut self, ns: &str, addr: SocketAddr) {
        self.serve_with(ns, move |stop| {
            let l = TcpListener::bind(addr).unwrap();
            l.set_nonblocking(true).unwrap();
            Box::new(move || {
                while !stop() {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            let _ = s.write_all(b"ok");
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        });
    }

    /// A TCP server that keeps each connection and echoes what it reads,
    /// in namespace `ns` (for connections that must outlive something).
    pub fn echo(&mut self, ns: &str, addr: SocketAddr) {
        self.serve_with(ns, move |stop| {
            let l = TcpListener::bind(addr).unwrap();
            l.set_nonblocking(true).unwrap();
            Box::new(move || {
                while !stop() {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            std::thread::spawn(move || {
                                let _ = s.set_nonblocking(false);
                                let _ = // An idle echo connection holds its namespace (and
                                // so a veth pair) alive: a minute at most.
                                s.set_read_timeout(Some(Duration::from_secs(60)));
                                let mut buf = [0u8; 256];
                                while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
                                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        });
    }

    /// A UDP server answering "ok" to each datagram, in namespace `ns`.
    pub fn udp(&mut self, ns: &str, addr: SocketAddr) {
        self.serve_with(ns, move |stop| {
            let s = UdpSocket::bind(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            Box::new(move || {
                let mut buf = [0u8; 64];
                while !stop() {
                    if let Ok((_, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(b"ok", from);
                    }
                }
            })
        });
    }

    /// Runs a server on a thread in `ns`: `bind` sets it up (before this
    /// returns) and gives the loop, which runs until the pair is dropped or
    /// SERVER_LIFETIME has passed.
    fn serve_with(
        &mut self,
        ns: &str,
        bind: impl FnOnce(Box<dyn Fn() -> bool + Send>) -> Box<dyn FnOnce() + Send> + Send + 'static,
    ) {
        let stop = self.stop.clone();
        let end = Instant::now() + SERVER_LIFETIME;
        let ns = ns.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        self.handles.push(std::thread::spawn(move || {
            enter(&ns);
            let run = bind(Box::new(move || {
                stop.load(Ordering::SeqCst) || Instant::now() > end
            }));
            tx.send(()).unwrap();
            run();
        }));
        rx.recv().unwrap();
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.handles.drain(..) {
            let _ = s.join();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test host reachable from the host's own namespace: namespace `ns`
/// joined to the host by a veth pair, the host's end 10.`subnet`.N.1/29 and
/// fd00:`subnet`:N::1/64, the test host's addresses `.H` / `::H`. The test
/// host has no route to anything else: a sandbox reaches it only through
/// the host's NAT. Removed on drop.
pub struct Upstream {
    pub ns: String,
    pub n: usize,
    subnet: u8,
    pub servers: Servers,
    dns: Option<std::process::Child>,
}

impl Upstream {
    pub fn new(tag: &str, subnet: u8, hosts: &[u8]) -> Upstream {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests create network namespaces: run them as root"
        );
        let pid = std::process::id();
        let n = (pid as usize * 7 + SEQ.fetch_add(1, Ordering::SeqCst)) % 250 + 1;
        let up = Upstream {
            ns: format!("{tag}{pid}-{n}-up"),
            n,
            subnet,
            servers: Servers::default(),
            dns: None,
        };
        ip(&["netns", "add", &up.ns]);
        // Not "sbx-...": that prefix is the sandboxes' own links.
        let (host_end, far_end) = (format!("ut{n}h{}", pid % 10000), format!("ut{n}p"));
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &far_end, "netns", &up.ns,
        ]);
        ip(&["addr", "add", &format!("{}/29", up.v4(1)), "dev", &host_end]);
        ip(&[
            "addr",
            "add",
            &format!("{}/64", up.v6(1)),
            "dev",
            &host_end,
            "nodad",
        ]);
        ip(&["link", "set", &host_end, "up"]);
        for h in hosts {
            ip(&[
                "-n",
                &up.ns,
                "addr",
                "add",
                &format!("{}/29", up.v4(*h)),
                "dev",
                &far_end,
            ]);
            ip(&[
                "-n",
                &up.ns,
                "addr",
                "add",
                &format!("{}/64", up.v6(*h)),
                "dev",
                &far_end,
                "nodad",
            ]);
        }
        ip(&["-n", &up.ns, "link", "set", &far_end, "up"]);
        ip(&["-n", &up.ns, "link", "set", "lo", "up"]);
        up
    }

    pub fn v4(&self, h: u8) -> IpAddr {
        v4(self.subnet, self.n, h)
    }

    pub fn v6(&self, h: u8) -> IpAddr {
        v6(self.subnet, self.n, h)
    }

    pub fn tcp(&mut self, addr: SocketAddr) {
        let ns = self.ns.clone();
        self.servers.tcp(&ns, addr);
    }

    pub fn udp(&mut self, addr: SocketAddr) {
        let ns = self.ns.clone();
        self.servers.udp(&ns, addr);
    }

    /// A DNS server (dnsmasq, no upstream) on `listen`, port 53, answering
    /// only for `records` (name, address).
    pub fn dns(&mut self, listen: IpAddr, records: &[(&str, IpAddr)]) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "timeout", "60", "dnsmasq"])
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--user=root",
                "--log-facility=/dev/null",
            ])
            .arg(format!("--listen-address={listen}"));
        for (name, addr) in records {
            cmd.arg(format!("--address=/{name}/{addr}"));
        }
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        self.dns = Some(child);
        // Ready when it answers.
        let deadline = Instant::now() + Duration::from_secs(5);
        let target = SocketAddr::new(listen, 53);
        while Instant::now() < deadline {
            let ns = self.ns.clone();
            let up = in_netns(&ns, move || {
                TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
            });
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("dnsmasq did not start on {listen}");
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.servers.stop();
        if let Some(mut c) = self.dns.take() {
            // timeout(1) passes TERM on to dnsmasq; KILL would orphan it.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
        // The namespace takes its end of the pair, and so the pair, along.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A DNS server on a test host whose records a test changes while a
/// sandbox runs, and whose query log it reads: dnsmasq answering from a
/// hosts file (reread on SIGHUP) with a fixed TTL, never forwarding.
/// Stopped on drop.
pub struct DnsServer {
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl DnsServer {
    /// dnsmasq in namespace `ns`, on `listen` port 53, answering `records`
    /// (name, address) with TTL `ttl`; any other name is NXDOMAIN.
    pub fn start(ns: &str, listen: IpAddr, ttl: u32, records: &[(&str, IpAddr)]) -> DnsServer {
        let dir = std::env::temp_dir().join(format!(
            "sbx-oci-dns-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        write_hosts(&dir, records);
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "timeout", "120", "dnsmasq"])
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--conf-file=/dev/null",
                "--user=root",
                "--log-queries",
                "--cache-size=0",
            ])
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-facility={}", dir.join("log").display()))
            .arg(format!("--addn-hosts={}", dir.join("hosts").display()))
            .arg(format!("--local-ttl={ttl}"))
            .arg(format!("--listen-address={listen}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        let s = DnsServer { dir, child };
        let deadline = Instant::now() + Duration::from_secs(5);
        let target = SocketAddr::new(listen, 53);
        loop {
            let up = in_netns(ns, move || {
                TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
            });
            if up && s.pid().is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not start on {listen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Replaces the records; dnsmasq answers with them once this returns.
    pub fn set(&self, records: &[(&str, IpAddr)]) {
        write_hosts(&self.dir, records);
        let before = self.log().matches("read ").count();
        let pid = nix::unistd::Pid::from_raw(self.pid().expect("dnsmasq's pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        // It logs "read <file> - N names" when it has reread the file.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.log().matches("read ").count() <= before {
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not reread its hosts"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// The names it was asked for, in order ("query[A] NAME from ...").
    pub fn queried(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| {
                let rest = &l[l.find("query[")?..];
                let name = rest.split_whitespace().nth(1)?;
                Some(name.to_owned())
            })
            .collect()
    }
}

fn write_hosts(dir: &std::path::Path, records: &[(&str, IpAddr)]) {
    let text: String = records
        .iter()
        .map(|(name, addr)| format!("{addr} {name}\n"))
        .collect();
    std::fs::write(dir.join("hosts"), text).unwrap();
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One empty network namespace (loopback down), removed on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests create network namespaces: run them as root"
        );
        let name = format!(
            "{tag}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        Netns { name }
    }

    /// Runs `f` on a new thread inside the namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.name, f)
    }

    /// A command run inside the namespace: its stdout, or None when it
    /// failed.
    pub fn exec(&self, cmd: &[&str]) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
