//! Golden tests of the translation SandboxSpec → OCI config (pure: no
//! container runs). Each example spec in bundles/specs/ is translated
//! against a fixed host layout and compared with tests/golden/<name>.json.
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the files; review
//! the diff before committing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sbx_oci::sandbox::host::{ETC_ENTRIES, HostLayout, Kind};
use sbx_oci::sandbox::validate::validate;
use sbx_oci::sandbox::{SandboxSpec, translate};
use serde_json::{Value, json};

/// A merged-/usr Debian host, as this project's machines are.
fn host() -> HostLayout {
    let mut kinds = BTreeMap::new();
    kinds.insert(PathBuf::from("/usr"), Kind::Dir);
    for (link, target) in [
        ("/bin", "usr/bin"),
        ("/sbin", "usr/sbin"),
        ("/lib", "usr/lib"),
        ("/lib64", "usr/lib64"),
    ] {
        kinds.insert(PathBuf::from(link), Kind::Symlink(PathBuf::from(target)));
    }
    for entry in ETC_ENTRIES {
        let is_dir = ["/etc/ssl/certs", "/etc/alternatives"].contains(entry);
        kinds.insert(
            PathBuf::from(entry),
            if is_dir { Kind::Dir } else { Kind::File },
        );
    }
    for dir in ["/tmp/sbx-example/src", "/tmp/sbx-example/out"] {
        kinds.insert(PathBuf::from(dir), Kind::Dir);
    }
    let env = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("TERM", "xterm"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    HostLayout {
        kinds,
        env,
        exe: PathBuf::from("/usr/local/bin/sbx-oci"),
        resolvers: vec!["192.0.2.1".parse().unwrap()],
        etc_stamp: 0x5eed,
    }
}

/// Compares `got` with tests/golden/`file` (rewritten first under
/// UPDATE_GOLDEN=1).
fn check_golden(file: &str, got: &str) {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, got).unwrap();
    }
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|_| panic!("no {}: run with UPDATE_GOLDEN=1", golden.display()));
    assert_eq!(got, want, "{file} differs from {}", golden.display());
}

fn translated(spec: &SandboxSpec) -> Value {
    let resolved = spec.resolve();
    validate(&resolved).unwrap();
    let bundle = Path::new("/run/sbx-oci/golden");
    let t = translate(&resolved, "golden", &host(), bundle).unwrap();
    // Through oci_spec's `Spec`: the config must be one libcontainer accepts
    // (and the golden files show it as the `Spec` serializes it).
    let spec: oci_spec::runtime::Spec = serde_json::from_value(t.config)
        .unwrap_or_else(|e| panic!("the translation is not a valid OCI config: {e}"));
    let mut out = json!({ "config": spec, "rootfs_plan": t.plan });
    if let Some(net) = t.network {
        out["network"] = json!(net);
    }
    out
}

#[test]
fn example_specs_match_their_golden_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("bundles/specs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let spec: SandboxSpec =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let got = serde_json::to_string_pretty(&translated(&spec)).unwrap() + "\n";
        check_golden(&format!("{name}.json"), &got);
        checked += 1;
    }
    assert!(checked >= 3, "the example specs are there");
}

/// The hardening every sandbox gets, whatever its spec says.
#[test]
fn hardened_by_default() {
    for profile in ["minimal", "standard", "full"] {
        let spec: SandboxSpec = serde_json::from_str(&format!(
            r#"{{"profile": "{profile}", "command": ["true"]}}"#
        ))
        .unwrap();
        let c = &translated(&spec)["config"];
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for want in ["pid", "mount", "ipc", "uts", "cgroup", "network"] {
            assert!(ns.contains(&want), "{profile}: {want} namespace");
        }
        assert_eq!(c["process"]["noNewPrivileges"], true);
        assert_eq!(c["root"]["readonly"], true);
        let denied = c["linux"]["seccomp"]["syscalls"][0]["names"]
            .as_array()
            .unwrap();
        for call in [
            "mount",
            "unshare",
            "bpf",
            "kexec_load",
            "init_module",
            "ptrace",
            "keyctl",
        ] {
            assert!(
                denied.iter().any(|n| n == call),
                "{profile}: seccomp denies {call}"
            );
        }
        assert!(
            c["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "/proc/kcore")
        );
        assert!(
            c["linux"]["readonlyPaths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "/proc/sys")
        );
        let mem = &c["linux"]["resources"]["memory"];
        assert_eq!(
            mem["limit"], mem["swap"],
            "{profile}: no swap beyond the memory limit"
        );
        let caps = c["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap();
        if profile == "full" {
            assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        } else {
            assert!(caps.is_empty(), "{profile}: no capabilities");
            assert_ne!(c["process"]["user"]["uid"], 0, "{profile}: not root");
        }
        // The host is bound, never copied, and read-only.
        let usr = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/usr")
            .unwrap();
        assert_eq!(usr["type"], "bind");
        assert!(
            usr["options"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == "rro")
        );
    }
}

/// Golden tests of the network policy compilation: policy → ruleset,
/// rendered as nft text, compared with tests/golden/netpolicy-<name>.nft.
#[test]
fn netpolicy_rulesets_match_their_golden_files() {
    use sbx_oci::netpolicy::{Entry, Policy, Ports, Proto, addresses, compile, name_classes};

    let policy = |allow: &[&str], gatekeeper: bool, expose: &[(Proto, Ports)]| {
        let entries: Vec<Entry> = allow.iter().map(|s| s.parse().unwrap()).collect();
        Policy {
            allow: addresses(&entries),
            name_ports: name_classes(&entries).unwrap(),
            gatekeeper,
            expose: expose.to_vec(),
            ..Policy::default()
        }
    };
    let cases = [
        ("empty", Policy::default()),
        (
            "typical",
            policy(
                &[
                    "pypi.org:443",
                    "*.pythonhosted.org:443",
                    "**.github.com:443",
                    "udp://ntp.sbx.test:123",
                    "api.sbx.test:8000-8100",
                    "169.254.169.254:80",
                    "10.200.1.2:80",
                    "10.200.2.0/24",
                    "10.200.3.4:8000-8080",
                    "udp://10.200.4.5:123",
                    "[fd00:200:1::2]:443",
                    "fd00:200:2::/64",
                    "udp://[fd00:200:3::/48]:5000-5100",
                ],
                true,
                &[
                    (Proto::Tcp, Ports::one(8080)),
                    (
                        Proto::Udp,
                        Ports {
                            first: 6000,
                            last: 6010,
                        },
                    ),
                ],
            ),
        ),
        (
            "overlapping",
            policy(
                &[
                    "10.0.0.0/8:443",
                    "10.1.2.3:443",
                    "10.1.2.3:400-500",
                    "10.1.2.3:443",
                    "0.0.0.0/0:22",
                    "0.0.0.0/0:80",
                    "[::/0]:80",
                ],
                false,
                &[],
            ),
        ),
        (
            "learn",
            Policy {
                learn: true,
                ..policy(&["pypi.org:443", "10.200.1.2:80"], true, &[])
            },
        ),
    ];
    for (name, p) in cases {
        let got = compile(&p).unwrap().to_string();
        check_golden(&format!("netpolicy-{name}.nft"), &got);
    }
}

/// The host's table of standalone sandboxes, rendered as nft text,
/// compared with tests/golden/hostnet.nft.
#[test]
fn host_ruleset_matches_its_golden_file() {
    check_golden(
        "hostnet.nft",
        &sbx_oci::netpolicy::host_ruleset().to_string(),
    );
}

/// Every golden .nft file is a ruleset nft and the kernel accept:
/// `nft -c -f` (the kernel validates the transaction, then aborts it), in
/// a network namespace of its own. Needs root and nft; skipped without.
#[test]
fn golden_nft_files_pass_nft_check() {
    if !nix::unistd::geteuid().is_root()
        || std::process::Command::new("nft")
            .arg("-v")
            .output()
            .is_err()
    {
        eprintln!("skipped: `nft -c` needs root and nft(8)");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "nft") {
            continue;
        }
        let out = std::process::Command::new("unshare")
            .args(["--net", "nft", "-c", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nft -c -f {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 4, "the golden .nft files are there");
}
