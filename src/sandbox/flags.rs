//! Command-line flags over a spec file: lists (--ro, --rw, --bind, --env,
//! --allow) add to the file's, single values replace them. Pure.

use std::path::PathBuf;

use super::model::{BindMount, NetworkMode, SandboxSpec, User};
use crate::cli::SpecFlags;
use crate::units::{parse_bytes, parse_duration, parse_user};
use crate::{Error, Result};

pub fn apply(mut spec: SandboxSpec, f: &SpecFlags) -> Result<SandboxSpec> {
    if let Some(p) = f.profile {
        spec.profile = Some(p);
    }
    spec.allowed_paths_ro.extend(f.ro.iter().cloned());
    spec.allowed_paths_rw.extend(f.rw.iter().cloned());
    for b in &f.bind {
        spec.bind_mounts.push(parse_bind(b)?);
    }
    if let Some(w) = &f.workdir {
        spec.workdir = Some(w.clone());
    }
    for kv in &f.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Error::InvalidArgument(format!("--env {kv:?}: expected K=V")))?;
        spec.env.insert(k.to_owned(), v.to_owned());
    }
    if let Some(u) = &f.user {
        let (uid, gid) = parse_user(u)?;
        spec.user = Some(User { uid, gid });
    }
    if let Some(m) = &f.memory {
        let bytes = parse_bytes("--memory", m)?;
        spec.limits.memory_bytes = Some(u64::try_from(bytes).map_err(|_| {
            Error::InvalidArgument("--memory -1: a sandbox always has a memory limit".into())
        })?);
    }
    if let Some(c) = f.cpus {
        spec.limits.cpus = Some(c);
    }
    if let Some(p) = f.pids {
        spec.limits.pids = Some(p);
    }
    if let Some(t) = &f.timeout {
        spec.limits.wall_time_ms = Some(if t == "0" {
            0
        } else {
            parse_duration("--timeout", t)?.as_millis() as u64
        });
    }
    if f.budget {
        spec.limits.budget = Some(true);
    }
    if f.network.is_some() || !f.allow.is_empty() || !f.dns.is_empty() || f.learn {
        let mut net = spec.network.take().unwrap_or_default();
        match f.network {
            Some(mode) => net.mode = mode,
            // Entries ask for an allowlist; they mean nothing without one.
            None if (!f.allow.is_empty() || f.learn) && net.mode == NetworkMode::None => {
                net.mode = NetworkMode::Allowlist
            }
            None => {}
        }
        net.allow.extend(f.allow.iter().cloned());
        net.learn |= f.learn;
        if !f.dns.is_empty() {
            net.dns
                .get_or_insert_with(Vec::new)
                .extend(f.dns.iter().cloned());
        }
        spec.network = Some(net);
    }
    Ok(spec)
}

fn parse_bind(text: &str) -> Result<BindMount> {
    let bad = || Error::InvalidArgument(format!("--bind {text:?}: expected SRC:DST or SRC:DST:ro"));
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, readonly) = match parts.as_slice() {
        [s, t] => (s, t, false),
        [s, t, "ro"] => (s, t, true),
        [s, t, "rw"] => (s, t, false),
        _ => return Err(bad()),
    };
    if source.is_empty() || target.is_empty() {
        return Err(bad());
    }
    Ok(BindMount {
        source: PathBuf::from(source),
        target: PathBuf::from(target),
        readonly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::model::{NetworkMode, Profile};

    #[test]
    fn flags_add_to_lists_and_replace_values() {
        let file: SandboxSpec = serde_json::from_str(
            r#"{"profile": "minimal", "allowed_paths_ro": ["/srv"], "env": {"A": "1"},
                "limits": {"memory_bytes": 100000000, "pids": 10}}"#,
        )
        .unwrap();
        let flags = SpecFlags {
            profile: Some(Profile::Full),
            ro: vec!["/opt".into()],
            bind: vec!["/data:/in:ro".into(), "/out:/out".into()],
            env: vec!["B=2".into(), "A=3".into()],
            memory: Some("512M".into()),
            timeout: Some("1500ms".into()),
            user: Some("1000:100".into()),
            network: Some(NetworkMode::Allowlist),
            allow: vec!["10.0.0.1:443".into()],
            ..Default::default()
        };
        let s = apply(file, &flags).unwrap();
        assert_eq!(s.profile, Some(Profile::Full));
        assert_eq!(
            s.allowed_paths_ro,
            vec![PathBuf::from("/srv"), PathBuf::from("/opt")]
        );
        assert_eq!(s.bind_mounts[0].target, PathBuf::from("/in"));
        assert!(s.bind_mounts[0].readonly && !s.bind_mounts[1].readonly);
        assert_eq!(s.env["A"], "3");
        assert_eq!(s.env["B"], "2");
        assert_eq!(s.limits.memory_bytes, Some(512 << 20));
        assert_eq!(
            s.limits.pids,
            Some(10),
            "not given on the command line: kept"
        );
        assert_eq!(s.limits.wall_time_ms, Some(1500));
        assert_eq!(
            s.user,
            Some(User {
                uid: 1000,
                gid: 100
            })
        );
        let net = s.network.unwrap();
        assert_eq!(net.mode, NetworkMode::Allowlist);
        assert_eq!(net.allow, vec!["10.0.0.1:443".to_owned()]);
    }

    #[test]
    fn malformed_flags() {
        for (flags, needle) in [
            (
                SpecFlags {
                    bind: vec!["/a".into()],
                    ..Default::default()
                },
                "--bind \"/a\"",
            ),
            (
                SpecFlags {
                    bind: vec!["/a:/b:rx".into()],
                    ..Default::default()
                },
                "SRC:DST:ro",
            ),
            (
                SpecFlags {
                    env: vec!["NOVALUE".into()],
                    ..Default::default()
                },
                "--env",
            ),
            (
                SpecFlags {
                    user: Some("bob".into()),
                    ..Default::default()
                },
                "--user",
            ),
            (
                SpecFlags {
                    memory: Some("lots".into()),
                    ..Default::default()
                },
                "--memory",
            ),
            (
                SpecFlags {
                    timeout: Some("soon".into()),
                    ..Default::default()
                },
                "--timeout",
            ),
        ] {
            let err = apply(SandboxSpec::default(), &flags)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
