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

/// One directory or regular file of a mirrored /etc tree as it was when
/// copied, with its fingerprint. Links are not listed: a link cannot change
/// in place, and adding, removing or replacing one changes its directory's
/// times.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TreeItem {
    pub path: PathBuf,
    pub stamp: u64,
}

/// What mirroring the trees of a plan saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeListing {
    /// Every directory and regular file copied, in walk order.
    pub items: Vec<TreeItem>,
    /// One of them changed too recently for its times to tell a further
    /// change (see `RACY_SECS`): the copy may not be reused.
    pub racy: bool,
}

impl TreeListing {
    fn add(&mut self, path: &Path, m: &std::fs::Metadata, now: i64) {
        self.items.push(TreeItem {
            path: path.to_owned(),
            stamp: stamp_of(m),
        });
        self.racy |= m.ctime() >= now - RACY_SECS;
    }
}

/// Whether every item of a listing is still as it was: then a tree copied
/// with that listing is the host's tree as it is now. Costs a stat per item
/// (a handful), where reading the trees' directories again costs ~150 µs.
pub fn tree_unchanged(items: &[TreeItem]) -> bool {
    items
        .iter()
        .all(|i| std::fs::metadata(&i.path).is_ok_and(|m| stamp_of(&m) == i.stamp))
}

/// Creates the rootfs skeleton of `plan` in `rootfs` (an empty directory):
/// the host's /etc files and trees copied, then links and mount points.
/// Returns what the trees' copies were made from.
pub fn materialize(plan: &RootfsPlan, rootfs: &Path) -> Result<TreeListing> {
    let io = |what: &Path, e| Error::io(format!("cannot create {}", what.display()), e);
    let inside = |source: &Path| rootfs.join(source.strip_prefix("/").unwrap_or(source));
    for source in &plan.copies {
        let path = inside(source);
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
    let mut listing = TreeListing::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    for source in &plan.trees {
        let path = inside(source);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        // The top is followed if it is a link, as a bind would.
        let top = std::fs::metadata(source);
        top.and_then(|m| mirror(source, &m, &path, &mut listing, now))
            .map_err(|e| {
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
    Ok(listing)
}

/// Copies the directory `src` (whose metadata is `m`) to `dst`: links as
/// links, regular files and directories with their mode and owner (no
/// set-user or set-group-ID bits), nothing else (sockets, fifos and devices
/// have no place in /etc). The directory is listed before its entries are
/// read and a file before it is copied, so a change meanwhile shows at the
/// next check.
fn mirror(
    src: &Path,
    m: &std::fs::Metadata,
    dst: &Path,
    listing: &mut TreeListing,
    now: i64,
) -> std::io::Result<()> {
    listing.add(src, m, now);
    std::fs::create_dir(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let meta = entry.metadata()?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            own(&to, &meta)?;
        } else if kind.is_dir() {
            mirror(&from, &meta, &to, listing, now)?;
        } else if kind.is_file() {
            listing.add(&from, &meta, now);
            copy_host(&from, &to)?;
        }
    }
    own(dst, m)?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o1777))
}

/// Copies the file `src` (following links, as a bind would) to `dst`,
/// with its mode and owner, without set-user or set-group-ID bits.
fn copy_host(src: &Path, dst: &Path) -> std::io::Result<()> {
    let m = std::fs::metadata(src)?;
    std::fs::copy(src, dst)?;
    own(dst, &m)?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o1777))
}

/// Gives `path` (not followed) the owner in `m`. Not root (`sandbox bundle`
/// by a user): the files are the user's.
fn own(path: &Path, m: &std::fs::Metadata) -> std::io::Result<()> {
    match std::os::unix::fs::lchown(path, Some(m.uid()), Some(m.gid())) {
        Err(e)
            if nix::unistd::geteuid().is_root()
                || e.kind() != std::io::ErrorKind::PermissionDenied =>
        {
            Err(e)
        }
        _ => Ok(()),
    }
}
