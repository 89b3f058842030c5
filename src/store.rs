//! The state directory (`--root`, default /run/sbx-oci).
//!
//! Layout: `<root>/<id>/` belongs to sbx-oci and is created with one atomic
//! `mkdir`, which is what makes two concurrent `create`s of one id safe: exactly
//! one gets the directory, the other "already exists". libcontainer keeps its
//! own state below it, in `<root>/<id>/<id>/` (state.json, config, notify socket).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;

use crate::{Error, Result};

pub const DEFAULT_ROOT: &str = "/run/sbx-oci";

#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Our directory for `id`; libcontainer's `root_path` for it.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// libcontainer's state directory for `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir(id).join(id)
    }

    /// Claims `id` atomically. The claim is released (the directory removed)
    /// when dropped, unless [`Claim::keep`] is called.
    pub fn claim(&self, id: &str) -> Result<Claim> {
        validate_id(id)?;
        let mut builder = fs::DirBuilder::new();
        builder.mode(0o700);
        if let Err(err) = builder.recursive(true).create(&self.root) {
            return Err(Error::io(
                format!("cannot create state root {}", self.root.display()),
                err,
            ));
        }
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => Ok(Claim { dir: Some(dir) }),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists(id.to_owned()))
            }
            Err(err) => Err(Error::io(format!("cannot create {}", dir.display()), err)),
        }
    }

    /// Loads a container, with its status refreshed from the live process.
    pub fn load(&self, id: &str) -> Result<Container> {
        validate_id(id)?;
        let dir = self.container_dir(id);
        if !dir.join("state.json").exists() {
            return Err(Error::NotFound(id.to_owned()));
        }
        Container::load(dir).map_err(|e| Error::container("load", id, e))
    }

    /// Whether anything (even a half-created container) is stored under `id`.
    pub fn exists(&self, id: &str) -> bool {
        self.dir(id).exists()
    }

    /// Removes our directory for `id`; a missing directory is not an error.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        // Idmapped mounts a killed runtime left on the host (see `idmap`).
        crate::idmap::detach_all(&dir);
        // An exec ending meanwhile (its command killed by this delete) may
        // still write a file there (its budget): try again.
        let mut tries = 0;
        loop {
            match fs::remove_dir_all(&dir) {
                Ok(()) => return Ok(()),
                Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
                Err(err) if err.kind() == ErrorKind::DirectoryNotEmpty && tries < 10 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(err) => {
                    return Err(Error::io(format!("cannot remove {}", dir.display()), err));
                }
            }
        }
    }

    /// Ids of the stored containers, sorted. A missing root means none.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => {
                return Err(Error::io(
                    format!("cannot read state root {}", self.root.display()),
                    err,
                ));
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| validate_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// A claimed id: the directory goes away on drop unless kept.
pub struct Claim {
    dir: Option<PathBuf>,
}

impl Claim {
    pub fn keep(mut self) {
        self.dir = None;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            crate::idmap::detach_all(&dir);
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// runc's rule for ids, ([A-Za-z0-9_+.-]), minus names that are not file names.
pub fn validate_id(id: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(Error::InvalidId {
            id: id.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if id.is_empty() {
        return invalid("it is empty");
    }
    if id == "." || id == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if id.len() > 1024 {
        return invalid("it is longer than 1024 characters");
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
    {
        return invalid(&format!(
            "character {c:?} is not allowed (use letters, digits, '_', '+', '-' and '.')"
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all (a temporary file beside
/// it, renamed over it): a runtime killed or a disk full meanwhile leaves
/// the old file or none, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "web-1", "x.y_z+1", "A9"] {
            validate_id(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("..", "'..'"),
            (".", "'.'"),
            ("a/b", "'/'"),
            ("../x", "'/'"),
            ("a b", "' '"),
        ] {
            let msg = validate_id(bad).unwrap_err().to_string();
            assert!(msg.contains(why), "{bad:?}: {msg}");
        }
    }
}
