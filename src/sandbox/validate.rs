//! Checks a resolved spec before anything is created. Pure: host paths are
//! checked for existence in [`super::host`].

use std::path::{Component, Path};

use std::net::IpAddr;

use super::model::{Network, NetworkMode, Resolved, RootfsSource};
use crate::netpolicy::Entry;
use crate::uplink::{Pool, Pools};
use crate::{Error, Result};

const MIB: u64 = 1 << 20;
const TIB: u64 = 1 << 40;

/// Directories the sandbox gets from the runtime itself.
const RESERVED: &[&str] = &["/proc", "/sys", "/dev"];

pub fn validate(r: &Resolved) -> Result<()> {
    if let RootfsSource::Path(p) = &r.rootfs {
        absolute("rootfs", p)?;
    }
    absolute("workdir", &r.workdir)?;
    not_reserved("workdir", &r.workdir)?;
    if r.workdir == Path::new("/tmp") {
        return Err(Error::spec(
            "workdir",
            "/tmp is the sandbox's tmpfs; choose another directory such as /workspace",
        ));
    }
    for (i, p) in r.allowed_paths_ro.iter().enumerate() {
        let field = format!("allowed_paths_ro[{i}]");
        absolute(&field, p)?;
        not_root(&field, p)?;
        not_reserved(&field, p)?;
    }
    for (i, p) in r.allowed_paths_rw.iter().enumerate() {
        let field = format!("allowed_paths_rw[{i}]");
        absolute(&field, p)?;
        not_root(&field, p)?;
        not_reserved(&field, p)?;
        if let Some((j, ro)) = r
            .allowed_paths_ro
            .iter()
            .enumerate()
            .find(|(_, ro)| p.starts_with(ro))
        {
            return Err(Error::spec(
                field,
                format!(
                    "{} is inside allowed_paths_ro[{j}] {}: a writable path cannot be nested in a \
                     read-only one; list the writable path alone or drop the read-only parent",
                    p.display(),
                    ro.display()
                ),
            ));
        }
    }
    let mut targets: Vec<&Path> = Vec::new();
    for (i, b) in r.bind_mounts.iter().enumerate() {
        absolute(&format!("bind_mounts[{i}].source"), &b.source)?;
        let field = format!("bind_mounts[{i}].target");
        absolute(&field, &b.target)?;
        not_root(&field, &b.target)?;
        not_reserved(&field, &b.target)?;
        targets.push(&b.target);
    }
    targets.extend(r.allowed_paths_ro.iter().map(|p| p.as_path()));
    targets.extend(r.allowed_paths_rw.iter().map(|p| p.as_path()));
    targets.sort();
    if let Some(w) = targets.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::spec(
            "bind_mounts",
            format!("{} is mounted twice; give each path once", w[0].display()),
        ));
    }
    for (key, value) in &r.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(Error::spec(
                format!("env[{key:?}]"),
                "a variable name must be non-empty and contain no '=' or NUL",
            ));
        }
        if value.contains('\0') {
            return Err(Error::spec(
                format!("env[{key:?}]"),
                "the value contains NUL",
            ));
        }
    }
    range(
        "limits.memory_bytes",
        r.memory_bytes,
        8 * MIB,
        TIB,
        "bytes (at least 8 MiB)",
    )?;
    if !(r.cpus >= 0.01 && r.cpus <= 1024.0) {
        return Err(Error::spec(
            "limits.cpus",
            format!(
                "{} is out of range: give a number of cores from 0.01 to 1024, e.g. 0.5",
                r.cpus
            ),
        ));
    }
    range("limits.pids", r.pids, 1, 4_194_304, "processes")?;
    if let Some(ms) = r.wall_time_ms {
        range(
            "limits.wall_time_ms",
            ms,
            1,
            30 * 24 * 3600 * 1000,
            "milliseconds (0 for no limit)",
        )?;
    }
    if r.budget && r.wall_time_ms.is_none() {
        return Err(Error::spec(
            "limits.budget",
            "a budget needs limits.wall_time_ms (the time all execs may use together)",
        ));
    }
    range(
        "limits.open_files",
        r.open_files,
        16,
        1 << 20,
        "file descriptors",
    )?;
    range(
        "limits.tmp_bytes",
        r.tmp_bytes,
        MIB,
        TIB,
        "bytes (at least 1 MiB)",
    )?;

    network(&r.network)
}

/// The network part: every entry, resolver and pool parses, and each only
/// where its mode gives it a meaning.
fn network(n: &Network) -> Result<()> {
    let has_dns = n.dns.as_ref().is_some_and(|d| !d.is_empty());
    match n.mode {
        NetworkMode::None => {
            let extra = if !n.allow.is_empty() {
                Some("network.allow")
            } else if !n.expose.is_empty() {
                Some("network.expose")
            } else if has_dns {
                Some("network.dns")
            } else if n.ipv4_pool.is_some() {
                Some("network.ipv4_pool")
            } else if n.ipv6_pool.is_some() {
                Some("network.ipv6_pool")
            } else if n.learn {
                Some("network.learn")
            } else if n.gatekeeper.is_some() {
                Some("network.gatekeeper")
            } else {
                None
            };
            if let Some(field) = extra {
                return Err(Error::spec(
                    field,
                    "means nothing with \"mode\": \"none\" (the sandbox has only loopback); \
                     set \"mode\": \"allowlist\"",
                ));
            }
            return Ok(());
        }
        NetworkMode::Full if !n.allow.is_empty() => {
            return Err(Error::spec(
                "network.allow",
                "\"mode\": \"full\" lets everything out; entries need \"mode\": \"allowlist\"",
            ));
        }
        NetworkMode::Full if n.learn || n.gatekeeper.is_some() => {
            return Err(Error::spec(
                if n.learn {
                    "network.learn"
                } else {
                    "network.gatekeeper"
                },
                "\"mode\": \"full\" has no allowlist to audit or gatekeeper to tune; use \
                 \"mode\": \"allowlist\"",
            ));
        }
        _ => {}
    }
    let mut entries = Vec::new();
    for (i, entry) in n.allow.iter().enumerate() {
        entries.push(entry.parse::<Entry>().map_err(|e| match e {
            Error::NetworkEntry { entry, reason } => Error::spec(
                format!("network.allow[{i}]"),
                format!("{entry:?}: {reason}"),
            ),
            e => e,
        })?);
    }
    crate::netpolicy::name_classes(&entries).map_err(|e| {
        Error::spec(
            "network.allow",
            e.to_string().trim_start_matches("network policy: "),
        )
    })?;
    if let Some(g) = &n.gatekeeper {
        g.check()
            .map_err(|r| Error::spec("network.gatekeeper", r))?;
    }
    if n.dns.as_ref().is_some_and(|d| d.is_empty())
        && let Some((i, e)) = entries
            .iter()
            .enumerate()
            .find(|(_, e)| matches!(e.dest, crate::netpolicy::Dest::Host(_)))
    {
        return Err(Error::spec(
            format!("network.allow[{i}]"),
            format!(
                "{e} is a name, but \"dns\" is [] (no resolver to ask for it); list a \
                 resolver or give addresses"
            ),
        ));
    }
    for (i, port) in n.expose.iter().enumerate() {
        crate::netpolicy::file::parse_expose(port).map_err(|e| {
            Error::spec(
                format!("network.expose[{i}]"),
                e.to_string()
                    .trim_start_matches("network policy: ")
                    .to_owned(),
            )
        })?;
    }
    for (i, r) in n.dns.iter().flatten().enumerate() {
        let field = format!("network.dns[{i}]");
        let ip: IpAddr = r
            .parse()
            .map_err(|_| Error::spec(&field, format!("{r:?} is not an IP address")))?;
        // An allowlist's gatekeeper asks from the host's namespace; in
        // `full` mode the sandbox asks from its own, whose loopback is its.
        if ip.is_unspecified() || (ip.is_loopback() && n.mode == NetworkMode::Full) {
            return Err(Error::spec(
                &field,
                format!(
                    "{ip} cannot be reached from a sandbox (its loopback is its own); name a \
                     resolver on the network"
                ),
            ));
        }
    }
    pools(n).map(|_| ())
}

/// The address pools a spec names (defaults for those it omits).
pub fn pools(n: &Network) -> Result<Pools> {
    let mut pools = Pools::default();
    if let Some(p) = &n.ipv4_pool {
        let pool: Pool = p.parse().map_err(|e| Error::spec("network.ipv4_pool", e))?;
        if !pool.is_ipv4() {
            return Err(Error::spec(
                "network.ipv4_pool",
                format!("{p:?} is not IPv4"),
            ));
        }
        pools.ipv4 = pool;
    }
    match n.ipv6_pool.as_deref() {
        None => {}
        Some("none") => pools.ipv6 = None,
        Some(p) => {
            let pool: Pool = p.parse().map_err(|e| Error::spec("network.ipv6_pool", e))?;
            if pool.is_ipv4() {
                return Err(Error::spec(
                    "network.ipv6_pool",
                    format!("{p:?} is not IPv6 (or write \"none\")"),
                ));
            }
            pools.ipv6 = Some(pool);
        }
    }
    Ok(pools)
}

fn absolute(field: &str, p: &Path) -> Result<()> {
    if !p.is_absolute() {
        return Err(Error::spec(
            field,
            format!(
                "{:?} is a relative path; give an absolute path",
                p.display().to_string()
            ),
        ));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(Error::spec(
            field,
            format!("{} contains '..'; give the path without it", p.display()),
        ));
    }
    Ok(())
}

fn not_root(field: &str, p: &Path) -> Result<()> {
    if p == Path::new("/") {
        return Err(Error::spec(
            field,
            "\"/\" would expose the whole host; list the directories the sandbox needs",
        ));
    }
    Ok(())
}

fn not_reserved(field: &str, p: &Path) -> Result<()> {
    if let Some(r) = RESERVED.iter().find(|r| p.starts_with(r)) {
        return Err(Error::spec(
            field,
            format!(
                "{} is under {r}, which the sandbox gets from the runtime",
                p.display()
            ),
        ));
    }
    Ok(())
}

fn range(field: &str, value: u64, min: u64, max: u64, unit: &str) -> Result<()> {
    if value < min || value > max {
        return Err(Error::spec(
            field,
            format!("{value} is out of range: give {min} to {max} {unit}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::model::{BindMount, SandboxSpec};

    fn check(json: &str) -> std::result::Result<(), String> {
        let spec: SandboxSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        validate(&spec.resolve()).map_err(|e| e.to_string())
    }

    #[test]
    fn profiles_alone_are_valid() {
        for p in ["minimal", "standard", "full"] {
            check(&format!(r#"{{"profile": "{p}"}}"#)).unwrap();
        }
        check("{}").unwrap();
    }

    #[test]
    fn each_bad_field_is_named_with_its_fix() {
        for (json, needle) in [
            (
                r#"{"allowed_paths_ro": ["data"]}"#,
                "allowed_paths_ro[0]: \"data\" is a relative path",
            ),
            (
                r#"{"allowed_paths_rw": ["/a/../etc"]}"#,
                "allowed_paths_rw[0]: /a/../etc contains '..'",
            ),
            (
                r#"{"allowed_paths_ro": ["/"]}"#,
                "would expose the whole host",
            ),
            (r#"{"allowed_paths_ro": ["/proc/1"]}"#, "is under /proc"),
            (
                r#"{"allowed_paths_ro": ["/srv"], "allowed_paths_rw": ["/srv/out"]}"#,
                "allowed_paths_rw[0]: /srv/out is inside allowed_paths_ro[0] /srv",
            ),
            (
                r#"{"workdir": "work"}"#,
                "workdir: \"work\" is a relative path",
            ),
            (
                r#"{"workdir": "/tmp"}"#,
                "workdir: /tmp is the sandbox's tmpfs",
            ),
            (
                r#"{"rootfs": "images/x"}"#,
                "rootfs: \"images/x\" is a relative path",
            ),
            (
                r#"{"bind_mounts": [{"source": "/a", "target": "b"}]}"#,
                "bind_mounts[0].target",
            ),
            (
                r#"{"bind_mounts": [{"source": "/a", "target": "/x"}], "allowed_paths_ro": ["/x"]}"#,
                "/x is mounted twice",
            ),
            (r#"{"env": {"A=B": "c"}}"#, "env[\"A=B\"]"),
            (
                r#"{"limits": {"memory_bytes": 1024}}"#,
                "limits.memory_bytes: 1024 is out of range",
            ),
            (
                r#"{"limits": {"cpus": 0}}"#,
                "limits.cpus: 0 is out of range",
            ),
            (
                r#"{"limits": {"pids": 0}}"#,
                "limits.pids: 0 is out of range",
            ),
            (r#"{"limits": {"open_files": 3}}"#, "limits.open_files"),
            (r#"{"limits": {"tmp_bytes": 10}}"#, "limits.tmp_bytes"),
            (
                r#"{"network": {"allow": ["1.2.3.4:443"]}}"#,
                "network.allow: means nothing with \"mode\": \"none\"",
            ),
            (
                r#"{"network": {"mode": "full", "allow": ["1.2.3.4:443"]}}"#,
                "network.allow: \"mode\": \"full\" lets everything out",
            ),
            (
                r#"{"network": {"mode": "allowlist", "allow": ["10.0.0.1:80", "10.0.0.300:80"]}}"#,
                "network.allow[1]: \"10.0.0.300:80\"",
            ),
            (
                r#"{"network": {"mode": "full", "dns": ["127.0.0.53"]}}"#,
                "network.dns[0]: 127.0.0.53 cannot be reached",
            ),
            (
                r#"{"network": {"mode": "allowlist", "dns": ["resolver"]}}"#,
                "network.dns[0]: \"resolver\" is not an IP address",
            ),
            (
                r#"{"network": {"mode": "full", "ipv4_pool": "10.0.0.0/31"}}"#,
                "network.ipv4_pool: \"10.0.0.0/31\" is too small",
            ),
            (
                r#"{"network": {"mode": "full", "ipv4_pool": "fd00::/64"}}"#,
                "network.ipv4_pool: \"fd00::/64\" is not IPv4",
            ),
            (
                r#"{"network": {"mode": "full", "ipv6_pool": "10.0.0.0/8"}}"#,
                "network.ipv6_pool: \"10.0.0.0/8\" is not IPv6",
            ),
            (r#"{"colour": "blue"}"#, "unknown field `colour`"),
            (r#"{"limits": {"memory": 5}}"#, "unknown field `memory`"),
            (r#"{"profile": "huge"}"#, "unknown variant `huge`"),
        ] {
            let err = check(json).expect_err(json);
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn read_only_inside_writable_is_fine() {
        let mut r = SandboxSpec::default().resolve();
        r.allowed_paths_rw = vec!["/srv".into()];
        r.allowed_paths_ro = vec!["/srv/config".into()];
        r.bind_mounts = vec![BindMount {
            source: "/opt/data".into(),
            target: "/data".into(),
            readonly: true,
        }];
        validate(&r).unwrap();
    }
}
