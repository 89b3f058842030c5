//! What the sandbox layer needs to know about the host, gathered in one
//! place (the only effects before the bundle is written), and the writing
//! of a rootfs plan.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::model::{NetworkMode, Resolved, RootfsSource};
use super::translate::RootfsPlan;
use crate::fnv::Fnv1a;
use crate::{Error, Result};

/// The host's system directories a "host" rootfs exposes, in mount order.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32",
];

/// The curated, read-only part of the host's /etc.
/// (What programs read at run time: users and groups, name resolution, the
/// dynamic linker's cache, the time zone, TLS certificates and OpenSSL's
/// configuration (not /etc/ssl/private), Debian's alternatives links,
/// service and protocol names.)
pub const ETC_ENTRIES: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/alternatives",
    "/etc/protocols",
    "/etc/services",
];

/// A file changed this recently (seconds) may change again without its
/// times showing it (they move in coarse ticks), as git's "racy" entries.
const RACY_SECS: i64 = 2;

/// What a path on the host is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    /// A symbolic link and its target (for /bin -> usr/bin on merged-/usr hosts).
    Symlink(PathBuf),
}

/// The host facts the translation depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostLayout {
    /// Every path the translation may bind or mirror, with its kind; a path
    /// that does not exist is absent.
    pub kinds: BTreeMap<PathBuf, Kind>,
    /// LANG, LC_*, PATH and TERM of the caller.
    pub env: BTreeMap<String, String>,
    /// This binary, at its host path: a networked sandbox's hooks run it.
    pub exe: PathBuf,
    /// The host's resolvers (its /etc/resolv.conf), read only for a
    /// networked sandbox that names none.
    pub resolvers: Vec<std::net::IpAddr>,
    /// A fingerprint of the /etc files as they are now (see `stamp_of`).
    pub etc_stamp: u64,
}

impl HostLayout {
    pub fn kind(&self, p: &Path) -> Option<&Kind> {
        self.kinds.get(p)
    }
}

fn kind_of(p: &Path) -> Option<Kind> {
    let meta = std::fs::symlink_metadata(p).ok()?;
    if meta.file_type().is_symlink() {
        return std::fs::read_link(p).ok().map(Kind::Symlink);
    }
    Some(if meta.is_dir() { Kind::Dir } else { Kind::File })
}

/// Looks at the host for `r`, and checks that the paths it names exist.
pub fn inspect(r: &Resolved) -> Result<HostLayout> {
    let mut layout = HostLayout::default();
    let mut add = |p: &Path| {
        if let Some(k) = kind_of(p) {
            layout.kinds.insert(p.to_owned(), k);
        }
    };
    if r.rootfs == RootfsSource::Host {
        SYSTEM_DIRS.iter().for_each(|p| add(Path::new(p)));
        // /etc entries are copied (files) or bound (directories) following
        // links (resolv.conf and localtime often are links), as a bind
        // would: what counts is what they lead to.
        let mut stamp = Fnv1a::default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut racy = false;
        for entry in ETC_ENTRIES {
            if let Ok(m) = std::fs::metadata(entry) {
                let kind = if m.is_dir() { Kind::Dir } else { Kind::File };
                layout.kinds.insert(PathBuf::from(entry), kind);
                if !m.is_dir() {
                    stamp.write_u64(stamp_of(&m));
                    racy |= m.ctime() >= now.as_secs() as i64 - RACY_SECS;
                }
            }
        }
        if racy {
            // Changed within the times' granularity: a further edit of the
            // same size could leave every time as it is. A skeleton for this
            // sandbox only; the next one, later, gets the shared one.
            stamp.write_u128(now.as_nanos());
        }
        layout.etc_stamp = stamp.finish();
    }
    let user_paths = r
        .allowed_paths_ro
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("allowed_paths_ro[{i}]"), p))
        .chain(
            r.allowed_paths_rw
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("allowed_paths_rw[{i}]"), p)),
        )
        .chain(
            r.bind_mounts
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("bind_mounts[{i}].source"), &b.source)),
        );
    for (field, p) in user_paths {
        // Binds follow links: what matters is what the path leads to.
        match std::fs::metadata(p) {
            Ok(m) => {
                let kind = if m.is_dir() { Kind::Dir } else { Kind::File };
                layout.kinds.insert(p.clone(), kind);
            }
            Err(e) => {
                return Err(Error::spec(
                    field,
                    format!(
                        "{} cannot be used: {e}; create it or remove it from the spec",
                        p.display()
                    ),
                ));
            }
        }
    }
    if r.network.mode != NetworkMode::None {
        layout.exe = crate::selfexe::host_path()?;
        if r.network.dns.is_none() {
            layout.resolvers = crate::netpolicy::file::host_resolvers();
        }
    }
    if let RootfsSource::Path(p) = &r.rootfs
        && !p.is_dir()
    {
        return Err(Error::spec(
            "rootfs",
            format!(
                "{} is not a directory; give \"host\" or the path of a rootfs directory",
                p.display()
            ),
        ));
    }
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        && r.open_files > hard
        && !crate::caps::has_effective(crate::caps::CAP_SYS_RESOURCE)
    {
        return Err(Error::spec(
            "limits.open_files",
            format!(
                "{} is above this host's limit of {hard} open files for the runtime \
                 (raising it needs CAP_SYS_RESOURCE); give at most {hard}",
                r.open_files
            ),
        ));
    }
    for (k, v) in std::env::vars() {
        if k == "PATH" || k == "TERM" || k == "LANG" || k.starts_with("LC_") {
            layout.env.insert(k, v);
        }
    }
    Ok(layout)
}

/// A fingerprint of a file from its metadata: device, inode, size, mode,
/// owner and the modification and change times (nanoseconds; the change
/// time cannot be set back), so an edit in place or a replacement shows.
fn stamp_of(m: &std::fs::Metadata) -> u64 {
    let mut h = Fnv1a::default();
    for n in [
        m.dev(),
        m.ino(),
        m.size(),
        u64::from(m.mode()),
        u64::from(m.uid()),
        u64::from(m.gid()),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
        m.ctime() as u64,
        m.ctime_nsec() as u64,
    ] {
        h.write_u64(n);
    }
    h.finish()
}

/// Creates the rootfs skeleton of `plan` in `rootfs` (an empty directory):
/// the host's /etc files copied, then links and mount points.
pub fn materialize(plan: &RootfsPlan, rootfs: &Path) -> Result<()> {
    let io = |what: &Path, e| Error::io(format!("cannot create {}", what.display()), e);
    for source in &plan.copies {
        let path = rootfs.join(source.strip_prefix("/").unwrap_or(source));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        copy_host(source, &path).map_err(|e| {
            Error::io(
                format!("cannot copy {} into {}", source.display(), path.display()),
                e,
            )
        })?;
    }
    for (link, target) in &plan.symlinks {
        let path = rootfs.join(link);
        std::os::unix::fs::symlink(target, &path).map_err(|e| io(&path, e))?;
    }
    for dir in &plan.dirs {
        let path = rootfs.join(dir);
        std::fs::create_dir_all(&path).map_err(|e| io(&path, e))?;
    }
    for file in &plan.files {
        let path = rootfs.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        // A copied file is already a mount point.
        if !path.is_file() {
            std::fs::File::create(&path).map_err(|e| io(&path, e))?;
        }
    }
    Ok(())
}

/// Copies the file `src` (following links, as a bind would) to `dst`,
/// with its mode and owner, without set-user or set-group-ID bits.
fn copy_host(src: &Path, dst: &Path) -> std::io::Result<()> {
    let m = std::fs::metadata(src)?;
    std::fs::copy(src, dst)?;
    // Not root (`sandbox bundle` by a user): the files are the user's.
    if let Err(e) = std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))
        && (nix::unistd::geteuid().is_root() || e.kind() != std::io::ErrorKind::PermissionDenied)
    {
        return Err(e);
    }
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o1777))
}
