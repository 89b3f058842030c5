//! The network hook for real (root): containers created through the binary
//! with `org.sbx-oci.network.*` annotations, in a network namespace the test
//! made (as podman or containerd would) and named by `path` in the config.
//! That namespace is joined by a veth pair to a peer namespace, a test host
//! with TCP servers on two ports on private addresses (10.201.N.0/29,
//! fd00:201:N::/64); only those are ever contacted, and drop removes both
//! namespaces (with the veth pair and the table), also when a test fails.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Env;
use common::netns::Pair as Net;
use serde_json::{Value, json};

const ALLOWED: u16 = 8001;
const OTHER: u16 = 8002;

/// `sbx` (.1, ::1), where the container runs, and `peer` (.2, ::2), with
/// TCP servers answering "ok" on ports ALLOWED and OTHER.
fn pair() -> Net {
    let mut net = Net::new("nh", 201, &[1], &[2]);
    let peer = net.peer.clone();
    for a in [net.v4(2), net.v6(2)] {
        for p in [ALLOWED, OTHER] {
            net.tcp_server(&peer, SocketAddr::new(a, p));
        }
    }
    let sbx = net.sbx.clone();
    net.warm_up(
        &sbx,
        &[
            SocketAddr::new(net.v4(2), ALLOWED),
            SocketAddr::new(net.v6(2), ALLOWED),
        ],
    );
    net
}

/// The table in `sbx`, as nft lists it ("" when there is none).
fn table_of(net: &Net) -> String {
    net.listed().unwrap_or_default()
}

/// Sets the network namespace's path and the annotations.
fn annotate(config: &mut Value, netns: Option<&str>, annotations: Value) {
    let list = config["linux"]["namespaces"].as_array_mut().unwrap();
    for ns in list.iter_mut() {
        if ns["type"] == "network"
            && let Some(path) = netns
        {
            ns["path"] = Value::from(path);
        }
    }
    if netns.is_none() {
        list.retain(|ns| ns["type"] != "network");
    }
    config["annotations"] = annotations;
}

/// Busybox `nc` from inside the container: "open" when the server's "ok"
/// comes back within the probe's time limit. Probes expected to be open
/// wait 10 s, twice (under TCG, beside other tests, a first answer can take
/// seconds, and one such probe once read "closed" early; a pass costs
/// nothing, a drop fails both); probes of the port a policy drops wait
/// `$OTHER_W` (1 s unless the step expects it open), since a drop always
/// takes the whole limit.
const PROBE: &str = r#"
try() { for _ in 1 $([ "$4" -ge 10 ] && echo 2); do if echo | timeout $(($4 + 2)) nc -w "$4" "$1" "$2" 2>/dev/null | grep -q ok; then echo "$3 open"; return; fi; done; echo "$3 closed"; }
try "$V4" 8001 v4-allowed 10
try "$V4" 8002 v4-other "${OTHER_W:-1}"
try "$V6" 8001 v6-allowed 10
try "$V6" 8002 v6-other "${OTHER_W:-1}"
grep CapEff /proc/self/status
if ip link set lo down 2>/dev/null; then echo netadmin yes; else echo netadmin no; fi
"#;

#[test]
fn an_annotated_allowlist_is_enforced_in_the_clients_namespace() {
    let net = pair();
    let mut env = Env::new("nethook-allow");
    let id = env.id("c");
    let netns = format!("/run/netns/{}", net.sbx);
    let (v4, v6) = (net.v4(2), net.v6(2));
    let bundle = env.bundle_with(&id, &["sh", "-c", PROBE], |c| {
        annotate(
            c,
            Some(&netns),
            json!({
                "org.sbx-oci.network.allow": format!("{v4}:{ALLOWED}, [{v6}]:{ALLOWED}"),
                "org.sbx-oci.network.dns": "",
            }),
        );
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .extend([json!(format!("V4={v4}")), json!(format!("V6={v6}"))]);
    });
    let b = bundle.to_str().unwrap();
    // Created, not started: the rules are in before the process runs.
    env.ok(&["create", "--bundle", b, &id]);
    let table = table_of(&net);
    assert!(table.contains("table inet sbx_oci"), "no table: {table}");
    assert!(
        env.root.join(&id).join("@network.json").is_file(),
        "policy file"
    );
    env.ok(&["start", &id]);
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);
    env.assert_gone(&id);
    // The namespace is the client's and outlives the container; the policy
    // does not.
    assert_eq!(table_of(&net), "", "delete removes the policy's table");
    // Now through `run`, reading what the container's process sees.
    let id2 = env.id("r");
    let bundle2 = env.bundle_with(&id2, &["sh", "-c", PROBE], |c| {
        annotate(
            c,
            Some(&netns),
            json!({
                "org.sbx-oci.network.mode": "allowlist",
                "org.sbx-oci.network.allow": format!("{v4}:{ALLOWED},[{v6}]:{ALLOWED}"),
                "org.sbx-oci.network.dns": "",
            }),
        );
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .extend([json!(format!("V4={v4}")), json!(format!("V6={v6}"))]);
    });
    let out = env.ok(&["run", "--bundle", bundle2.to_str().unwrap(), &id2]);
    for line in [
        "v4-allowed open",
        "v4-other closed",
        "v6-allowed open",
        "v6-other closed",
        "netadmin no",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    // No CAP_NET_ADMIN (bit 12) in the container's effective set.
    let caps = out
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(caps & (1 << 12), 0, "CapEff {caps:x}");
    env.assert_gone(&id2);
    assert_eq!(table_of(&net), "", "run's delete removes the table too");
    // Without the annotations the same namespace is open.
    let id3 = env.id("open");
    let bundle3 = env.bundle_with(&id3, &["sh", "-c", PROBE], |c| {
        annotate(c, Some(&netns), json!({}));
        c["process"]["env"].as_array_mut().unwrap().extend([
            json!(format!("V4={v4}")),
            json!(format!("V6={v6}")),
            json!("OTHER_W=10"),
        ]);
    });
    let out = env.ok(&["run", "--bundle", bundle3.to_str().unwrap(), &id3]);
    assert!(
        out.contains("v4-other open") && out.contains("v6-other open"),
        "{out}"
    );
    assert_eq!(table_of(&net), "");
}

#[test]
fn a_malformed_entry_fails_create_quoting_it_and_leaves_nothing() {
    let mut env = Env::new("nethook-bad");
    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["true"], |c| {
        annotate(
            c,
            Some("/proc/self/ns/net"),
            json!({"org.sbx-oci.network.allow": "10.201.1.2:80,10.201.1.300:80"}),
        );
    });
    let b = bundle.to_str().unwrap();
    env.fails(&["create", "--bundle", b, &id], "\"10.201.1.300:80\"");
    env.assert_gone(&id);
    env.fails(&["run", "--bundle", b, &id], "\"10.201.1.300:80\"");
    env.assert_gone(&id);
}

#[test]
fn the_hosts_namespace_is_never_filtered() {
    let mut env = Env::new("nethook-host");
    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["true"], |c| {
        annotate(
            c,
            None,
            json!({"org.sbx-oci.network.allow": "10.201.1.2:80", "org.sbx-oci.network.dns": ""}),
        );
    });
    env.fails(
        &["create", "--bundle", bundle.to_str().unwrap(), &id],
        "never filters the host",
    );
    env.assert_gone(&id);
}

#[test]
fn a_name_without_a_resolver_fails_create_and_leaves_nothing() {
    // Names are the DNS gatekeeper's, and it needs an upstream to ask.
    let net = pair();
    let mut env = Env::new("nethook-fail");
    let id = env.id("c");
    let netns = format!("/run/netns/{}", net.sbx);
    let bundle = env.bundle_with(&id, &["true"], |c| {
        annotate(
            c,
            Some(&netns),
            json!({
                "org.sbx-oci.network.allow": "nowhere.sbx-oci.test:80",
                "org.sbx-oci.network.dns": "",
            }),
        );
    });
    env.fails(
        &["create", "--bundle", bundle.to_str().unwrap(), &id],
        "nowhere.sbx-oci.test:80 is a name, but the policy lists no DNS resolver",
    );
    env.assert_gone(&id);
    assert_eq!(table_of(&net), "", "nothing installed");
}

/// The issue's "seeing what was blocked": `events --stats` reports the
/// policy's counters and the destination of every dropped attempt.
#[test]
fn events_report_allowed_and_dropped_traffic() {
    let net = pair();
    let mut env = Env::new("nethook-stats");
    let id = env.id("c");
    let netns = format!("/run/netns/{}", net.sbx);
    let v4 = net.v4(2);
    let bundle = env.bundle_with(
        &id,
        &[
            "sh",
            "-c",
            "echo | timeout 3 nc -w 1 $V4 8002; echo | timeout 12 nc -w 10 $V4 8001; sleep 60",
        ],
        |c| {
            annotate(
                c,
                Some(&netns),
                json!({ "org.sbx-oci.network.allow": format!("{v4}:{ALLOWED}"),
                        "org.sbx-oci.network.dns": "" }),
            );
            c["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!(format!("V4={v4}")));
        },
    );
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let network = loop {
        let event: Value = serde_json::from_str(&env.ok(&["events", "--stats", &id])).unwrap();
        let network = event["data"]["network"].clone();
        let allowed = network["counters"]["out_allowed"]["packets"]
            .as_u64()
            .unwrap_or(0);
        let dropped = network["dropped"].as_array().map(|d| d.len()).unwrap_or(0);
        if allowed > 0 && dropped > 0 {
            break network;
        }
        assert!(Instant::now() < deadline, "no traffic counted: {network}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let dropped = network["dropped"].as_array().unwrap();
    assert!(
        dropped.iter().any(|d| d["address"] == v4.to_string()
            && d["port"] == OTHER
            && d["protocol"] == "tcp"
            && d["packets"].as_u64().unwrap() >= 1),
        "{network}"
    );
    assert!(
        network["counters"]["out_dropped"]["packets"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(!dropped.iter().any(|d| d["port"] == ALLOWED), "{network}");
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// Our hook installs the policy, then a later hook of the config fails:
/// create fails as a whole, and the table it had installed in the client's
/// namespace is taken out again (runtime.md, Lifecycle step 4: a failing
/// createRuntime hook stops the container).
#[test]
fn a_create_failing_after_the_policy_is_installed_removes_it() {
    let net = pair();
    let mut env = Env::new("nethook-late");
    let id = env.id("c");
    let netns = format!("/run/netns/{}", net.sbx);
    let v4 = net.v4(2);
    let bundle = env.bundle_with(&id, &["true"], |c| {
        annotate(
            c,
            Some(&netns),
            json!({ "org.sbx-oci.network.allow": format!("{v4}:{ALLOWED}"),
                    "org.sbx-oci.network.dns": "" }),
        );
        c["hooks"] = json!({ "createRuntime": [{ "path": "/bin/false", "args": ["false"] }] });
    });
    let out = env.sbx(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    assert!(!out.status.success(), "create succeeded");
    env.assert_gone(&id);
    assert_eq!(table_of(&net), "", "the installed policy was removed");
}

/// A pod, as containerd's CRI plugin makes it: the sandbox (pause) container
/// and an app container join one namespace the client made, each created
/// with the pod's annotations, here with a resolver, so the sandbox's hook
/// starts the namespace's DNS gatekeeper (listening on port 53 there; no
/// name is looked up). The app container must start (its hook finds the
/// same policy in force and leaves it, rather than failing on port 53), and
/// once it exits and is deleted the policy must stay (it is the pod's;
/// removing it would leave the sandbox and any other container of the pod
/// unfiltered). Deleting the last one removes it.
#[test]
fn containers_sharing_a_namespace_share_its_policy() {
    let net = pair();
    let mut env = Env::new("nethook-pod");
    let netns = format!("/run/netns/{}", net.sbx);
    let v4 = net.v4(2);
    let annotations = json!({ "org.sbx-oci.network.allow": format!("{v4}:{ALLOWED}"),
                              "org.sbx-oci.network.dns": v4.to_string() });
    let pause = env.id("pause");
    let bundle = env.bundle_with(&pause, &["sleep", "60"], |c| {
        annotate(c, Some(&netns), annotations.clone());
    });
    env.ok(&["create", "--bundle", bundle.to_str().unwrap(), &pause]);
    env.ok(&["start", &pause]);
    assert!(table_of(&net).contains("table inet sbx_oci"), "no table");
    let app = env.id("app");
    // `try PORT WAIT TRIES`. The allowed port gets a second try: under TCG
    // its probe once read "closed" after less than its 10 s (CI, not
    // reproduced since), while a policy that drops it fails both. What a
    // failed try saw is printed, for the assertion's message.
    let probe = format!(
        "try() {{ n=0; while [ $n -lt $3 ]; do n=$((n + 1)); \
         r=$(echo | timeout $(($2 + 2)) nc -w $2 {v4} $1 2>&1); s=$?; \
         case \"$r\" in *ok*) echo \"$1 open\"; return;; esac; \
         echo \"$1 try $n: $r (status $s)\"; done; echo \"$1 closed\"; }}; \
         try {ALLOWED} 10 2; try {OTHER} 1 1"
    );
    let bundle = env.bundle_with(&app, &["sh", "-c", &probe], |c| {
        annotate(c, Some(&netns), annotations.clone());
    });
    let out = env.ok(&["run", "--bundle", bundle.to_str().unwrap(), &app]);
    assert!(out.contains(&format!("{ALLOWED} open")), "{out}");
    assert!(out.contains(&format!("{OTHER} closed")), "{out}");
    env.assert_gone(&app);
    // The app container is gone; the sandbox still runs in the namespace.
    let table = table_of(&net);
    assert!(
        table.contains("table inet sbx_oci") && table.contains(&v4.to_string()),
        "the pod's policy went with one container: {table:?}"
    );
    env.ok(&["delete", "--force", &pause]);
    env.assert_gone(&pause);
    assert_eq!(table_of(&net), "", "the last container's delete removes it");
}
