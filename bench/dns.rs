//! The DNS gatekeeper against asking the resolver directly, in one run:
//!
//! - per query: a listed name asked from inside a sandbox (redirected to
//!   its gatekeeper, which asks upstream and answers) against the same
//!   question asked from the host straight to the resolver; warm (the name's
//!   addresses pinned already) and first lookups (a pin transaction each);
//! - query to connection: a new listed name resolved and its address
//!   connected to, inside the sandbox, against the same from the host;
//! - sandbox start: `sandbox run -- true` with 100 names listed, with an
//!   allowlist of no names (a gatekeeper all the same) and with no network;
//! - the gatekeeper's peak RSS after all that.
//!
//! The resolver (dnsmasq) and the server are on a test host in a network
//! namespace this program makes (10.203.0.0/24) and removes; nothing else is
//! contacted. Root; needs dnsmasq and ip(8), and the release binary:
//!
//!     cargo build --release && cargo run --release --example dns_bench [-- QUERIES]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

const RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 203, 0, 3);
const PORT: u16 = 8443;

fn main() {
    let queries: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let bin = binary();
    let test_host = TestHost::new();
    let root = std::env::temp_dir().join(format!("sbx-dns-bench-{}", std::process::id()));
    let sbx = |args: &[&str]| -> std::process::Output {
        Command::new(&bin)
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("sbx-oci")
    };
    let resolver = RESOLVER.to_string();
    // The query rate and name limits would refuse a benchmark's load.
    std::fs::create_dir_all(&root).unwrap();
    let spec = root.join("spec.json");
    std::fs::write(
        &spec,
        format!(
            r#"{{"network": {{"mode": "allowlist", "allow": ["*.bench.test:{PORT}"],
                 "dns": ["{RESOLVER}"], "gatekeeper": {{"queries_per_s": 1000000, "max_names": 100000}}}}}}"#
        ),
    )
    .unwrap();
    // panic = "abort" in release: clean up from the hook.
    let (hook_bin, hook_root, hook_ns) = (bin.clone(), root.clone(), test_host.ns.clone());
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let _ = Command::new(&hook_bin)
            .arg("--root")
            .arg(&hook_root)
            .args(["delete", "--force", "dnsbench"])
            .status();
        let _ = std::fs::remove_dir_all(&hook_root);
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &hook_ns])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").arg(pid).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &hook_ns]).status();
    }));
    let no_dns = root.join("no-dns.json");
    std::fs::write(&no_dns, r#"{"network": {"mode": "allowlist", "dns": []}}"#).unwrap();
    let no_dns = no_dns.to_string_lossy().into_owned();
    let out = sbx(&[
        "sandbox",
        "create",
        "--spec",
        spec.to_str().unwrap(),
        "dnsbench",
    ]);
    assert!(
        out.status.success(),
        "sandbox create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: serde_json::Value =
        serde_json::from_slice(&sbx(&["state", "dnsbench"]).stdout).expect("state");
    let pid = state["pid"].as_i64().expect("pid");
    let netns = format!("/proc/{pid}/ns/net");
    let gatekeeper = gatekeeper_of(&root).expect("the sandbox's gatekeeper");

    println!("# DNS gatekeeper against the resolver asked directly ({queries} queries each)");
    // Warm: one name over and over (pinned after the first answer).
    let (mut inside, mut host) = (Vec::new(), Vec::new());
    for i in 0..queries {
        // Alternated, so that both see the same machine.
        let name = "warm.bench.test";
        if i % 2 == 0 {
            inside.push(in_ns(&netns, move || ask(name)));
            host.push(ask(name));
        } else {
            host.push(ask(name));
            inside.push(in_ns(&netns, move || ask(name)));
        }
    }
    report("listed name, warm (µs)", &mut inside, &mut host);

    // First lookups: a new name each time, so a pin transaction each.
    let (mut inside, mut host) = (Vec::new(), Vec::new());
    for i in 0..queries {
        let a = format!("n{i}.bench.test");
        let b = format!("h{i}.bench.test");
        inside.push(in_ns(&netns, move || ask(&a)));
        host.push(ask(&b));
    }
    report("listed name, first lookup (µs)", &mut inside, &mut host);

    // Query, then connect to the answer.
    let n = queries.min(300);
    let (mut inside, mut host) = (Vec::new(), Vec::new());
    for i in 0..n {
        let a = format!("c{i}.bench.test");
        let b = format!("d{i}.bench.test");
        inside.push(in_ns(&netns, move || resolve_and_connect(&a)));
        host.push(resolve_and_connect(&b));
    }
    report("query to connection allowed (µs)", &mut inside, &mut host);

    let rss = |key: &str| -> String {
        std::fs::read_to_string(format!("/proc/{gatekeeper}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(key))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
            .unwrap_or_else(|| "?".into())
    };
    println!(
        "gatekeeper memory: VmRSS {} kB (anonymous {} kB, the binary's pages {} kB), VmHWM (peak RSS) {} kB",
        rss("VmRSS:"),
        rss("RssAnon:"),
        rss("RssFile:"),
        rss("VmHWM:")
    );
    let _ = sbx(&["delete", "--force", "dnsbench"]);

    // Sandbox start: 100 names; an allowlist without names (a gatekeeper
    // all the same); an allowlist without a resolver (no gatekeeper); no
    // network. Each follows each other equally often (a rotation).
    let runs = 60;
    let names: Vec<String> = (0..100)
        .flat_map(|i| ["--allow".to_owned(), format!("s{i}.bench.test:443")])
        .collect();
    let mut with_names: Vec<&str> = vec!["sandbox", "run", "--dns", &resolver];
    with_names.extend(names.iter().map(String::as_str));
    with_names.extend(["--", "true"]);
    let variants: [(&str, Vec<&str>); 4] = [
        ("100 names listed", with_names),
        (
            "no names (allowlist + gatekeeper)",
            vec![
                "sandbox",
                "run",
                "--network",
                "allowlist",
                "--dns",
                &resolver,
                "--",
                "true",
            ],
        ),
        (
            "allowlist, no resolver (no gatekeeper)",
            vec![
                "sandbox",
                "run",
                "--network",
                "allowlist",
                "--spec",
                &no_dns,
                "--",
                "true",
            ],
        ),
        ("network none", vec!["sandbox", "run", "--", "true"]),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for r in 0..runs {
        for k in 0..variants.len() {
            let i = (r + k) % variants.len();
            let args = &variants[i].1;
            times[i].push(timed(|| assert!(sbx(args).status.success(), "{args:?}")));
        }
    }
    println!("# sandbox run -- true, {runs} runs each, rotated (ms)");
    let medians: Vec<f64> = times.iter_mut().map(|t| median(t) / 1000.0).collect();
    for ((name, _), (m, t)) in variants.iter().zip(medians.iter().zip(times.iter_mut())) {
        println!(
            "{name}: median {m:.2} (p10 {:.2}, p90 {:.2})",
            percentile(t, 0.1) / 1000.0,
            percentile(t, 0.9) / 1000.0
        );
    }
    println!(
        "added by 100 names: {:.2} ms; by the gatekeeper: {:.2} ms; by the allowlist and way out: {:.2} ms",
        medians[0] - medians[1],
        medians[1] - medians[2],
        medians[2] - medians[3]
    );
    let _ = std::fs::remove_dir_all(&root);
    drop(test_host);
}

fn binary() -> PathBuf {
    let here = std::env::current_exe().unwrap();
    // target/<tuple>/release/examples/dns_bench → target/<tuple>/release/sbx-oci
    let bin = here.parent().unwrap().parent().unwrap().join("sbx-oci");
    assert!(
        bin.exists(),
        "build the release binary first: {}",
        bin.display()
    );
    bin
}

/// The gatekeeper whose policy lies under `root`.
fn gatekeeper_of(root: &Path) -> Option<i32> {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (comm.trim_end() == "sbx-oci-dns" && String::from_utf8_lossy(&cmdline).contains(&root))
            .then_some(pid)
    })
}

fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = File::open(ns).expect("the sandbox's namespace");
    std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// One A question to the resolver (redirected inside a sandbox): the
/// round trip in µs, and the first address.
fn lookup(name: &str) -> (f64, Ipv4Addr) {
    try_lookup(name, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("no address for {name}: {e}"))
}

fn try_lookup(name: &str, timeout: Duration) -> Result<(f64, Ipv4Addr), String> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    sock.connect((RESOLVER, 53)).map_err(|e| e.to_string())?;
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let bytes = q.to_vec().unwrap();
    let t = Instant::now();
    sock.send(&bytes).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).map_err(|e| e.to_string())?;
    let took = t.elapsed().as_secs_f64() * 1e6;
    let answer = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    let addr = answer
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .ok_or_else(|| format!("{answer:?}"))?;
    Ok((took, addr))
}

fn ask(name: &str) -> f64 {
    lookup(name).0
}

fn resolve_and_connect(name: &str) -> f64 {
    let t = Instant::now();
    let (_, addr) = lookup(name);
    TcpStream::connect_timeout(
        &SocketAddr::new(IpAddr::V4(addr), PORT),
        Duration::from_secs(3),
    )
    .expect("connect to the answer");
    t.elapsed().as_secs_f64() * 1e6
}

fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e6
}

fn median(v: &mut [f64]) -> f64 {
    percentile(v, 0.5)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, inside: &mut [f64], host: &mut [f64]) {
    let (mi, mh) = (median(inside), median(host));
    println!(
        "{what}: gatekeeper median {mi:.0} (p10 {:.0}, p90 {:.0}); direct median {mh:.0} (p10 {:.0}, p90 {:.0}); added {:.0} µs, ratio {:.2}",
        percentile(inside, 0.1),
        percentile(inside, 0.9),
        percentile(host, 0.1),
        percentile(host, 0.9),
        mi - mh,
        mi / mh
    );
}

/// The resolver and a TCP server on a test host: a namespace joined to
/// the host by a veth pair; removed on drop.
struct TestHost {
    ns: String,
    dns: Child,
}

impl TestHost {
    fn new() -> TestHost {
        let pid = std::process::id();
        let ns = format!("dnsb{pid}");
        let (host_end, far_end) = (format!("dnsb{pid}h"), format!("dnsb{pid}p"));
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &far_end, "netns", &ns,
        ]);
        ip(&["addr", "add", "10.203.0.1/24", "dev", &host_end]);
        ip(&["link", "set", &host_end, "up"]);
        for a in [RESOLVER, SERVER] {
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{a}/24"),
                "dev",
                &far_end,
            ]);
        }
        ip(&["-n", &ns, "link", "set", &far_end, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let dns = Command::new("ip")
            .args(["netns", "exec", &ns, "timeout", "600", "dnsmasq"])
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--user=root",
                "--log-facility=/dev/null",
                "--local-ttl=300",
                "--cache-size=0",
            ])
            .arg(format!("--listen-address={RESOLVER}"))
            .arg(format!("--address=/bench.test/{SERVER}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        // A server that accepts and closes, for ten minutes at most.
        let f = File::open(format!("/run/netns/{ns}")).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let l = TcpListener::bind((SERVER, PORT)).unwrap();
            let end = Instant::now() + Duration::from_secs(600);
            for s in l.incoming() {
                drop(s);
                if Instant::now() > end {
                    break;
                }
            }
        });
        let t = TestHost { ns, dns };
        // Ready when it answers.
        let deadline = Instant::now() + Duration::from_secs(5);
        while try_lookup("ready.bench.test", Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.dns.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.dns.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {args:?}");
}
