//! config-linux.md, "Rootfs Mount Propagation": "`rootfsPropagation`
//! (string, OPTIONAL) sets the rootfs's mount propagation. Its value is
//! either `shared`, `slave`, `private` or `unbindable`." Checked through the
//! real binary from both sides: a host directory, a shared mount (its own
//! peer group), is bind-mounted into the container at /mnt; the host then
//! mounts a tmpfs under it, the container another, and each side's
//! /proc/<pid>/mountinfo says what arrived and with which propagation
//! (optional fields `shared:N`, `master:N`, `unbindable`).

mod common;

use std::path::{Path, PathBuf};

use common::Env;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use serde_json::json;

/// A mount point in a mountinfo table and its optional fields.
struct Mount {
    point: String,
    fields: Vec<String>,
}

fn mountinfo(pid: &str) -> Vec<Mount> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            let end = w.iter().position(|f| *f == "-").unwrap();
            Mount {
                point: w[4].to_owned(),
                fields: w[6..end].iter().map(|f| f.to_string()).collect(),
            }
        })
        .collect()
}

fn fields_of(pid: &str, point: &str) -> Option<Vec<String>> {
    mountinfo(pid)
        .into_iter()
        .rfind(|m| m.point == point)
        .map(|m| m.fields)
}

/// A host directory made a shared mount of its own; on drop everything
/// mounted there (by the host or propagated back from a container) goes.
struct SharedDir(PathBuf);

impl SharedDir {
    fn new(path: PathBuf) -> SharedDir {
        std::fs::create_dir_all(&path).unwrap();
        mount(
            Some(&path),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let dir = SharedDir(path);
        // Private first: where the host's / is shared, the bind is a peer of
        // it until then; shared again, it is a peer group of its own.
        for flag in [MsFlags::MS_PRIVATE, MsFlags::MS_SHARED] {
            mount(None::<&str>, &dir.0, None::<&str>, flag, None::<&str>).unwrap();
        }
        dir
    }

    /// The peer group it belongs to on the host (N of `shared:N`).
    fn peer_group(&self) -> String {
        let fields = fields_of("self", self.0.to_str().unwrap()).unwrap();
        let shared = fields.iter().find_map(|f| f.strip_prefix("shared:"));
        shared.expect("the host side is shared").to_owned()
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        // Lazily, with whatever is mounted below it.
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn tmpfs(source: &str, target: &Path) {
    std::fs::create_dir_all(target).unwrap();
    mount(
        Some(source),
        target,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
}

/// What one container saw and did, for one rootfsPropagation value.
struct Seen {
    /// Optional fields of the container's / and /mnt.
    root: Vec<String>,
    mnt: Vec<String>,
    /// The host's mount under the shared dir appeared in the container.
    host_to_container: bool,
    /// The container's mount under /mnt appeared on the host.
    container_to_host: bool,
    /// A bind mount of / inside the container succeeded.
    root_bindable: bool,
}

fn observe(propagation: &str) -> (Seen, String) {
    let mut env = Env::new(&format!("prop-{propagation}"));
    let shared = SharedDir::new(env.dir.join("shared"));
    let group = shared.peer_group();
    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["sleep", "60"], |c| {
        c["linux"]["rootfsPropagation"] = json!(propagation);
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/mnt", "type": "bind",
                         "source": shared.0.to_str().unwrap(), "options": ["rbind"]}));
        // To mount from inside the container.
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"));
        }
    });
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    let pid = env.pid(&id).to_string();

    tmpfs("sbx-from-host", &shared.0.join("from-host"));
    std::fs::create_dir_all(shared.0.join("from-container")).unwrap();
    env.ok(&[
        "exec",
        &id,
        "mount",
        "-t",
        "tmpfs",
        "sbx-from-ctr",
        "/mnt/from-container",
    ]);
    let root_bindable = env
        .sbx(&[
            "exec",
            &id,
            "sh",
            "-c",
            "mkdir /tmp/b && mount --bind / /tmp/b",
        ])
        .status
        .success();
    let host_point = shared.0.join("from-container");
    let seen = Seen {
        root: fields_of(&pid, "/").unwrap(),
        mnt: fields_of(&pid, "/mnt").unwrap(),
        host_to_container: fields_of(&pid, "/mnt/from-host").is_some(),
        container_to_host: fields_of("self", host_point.to_str().unwrap()).is_some(),
        root_bindable,
    };
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
    drop(shared);
    (seen, group)
}

/// "shared: the rootfs mount belongs to a new peer group ... Note this does
/// not mean that it's shared with the host." The container's / is in a
/// peer group no host mount is in; the bind mount of the host's shared
/// directory stays in the host's peer group, so mounts propagate both ways.
#[test]
fn shared_rootfs_is_a_new_peer_group() {
    let (seen, group) = observe("shared");
    let root_group = seen
        .root
        .iter()
        .find_map(|f| f.strip_prefix("shared:"))
        .unwrap_or_else(|| panic!("/ is not shared: {:?}", seen.root));
    assert_ne!(root_group, group);
    let host_groups: Vec<String> = mountinfo("self")
        .into_iter()
        .flat_map(|m| m.fields)
        .collect();
    assert!(
        !host_groups.contains(&format!("shared:{root_group}")),
        "/'s peer group {root_group} is also the host's"
    );
    assert_eq!(seen.mnt, [format!("shared:{group}")]);
    assert!(
        seen.host_to_container,
        "host mount did not reach the container"
    );
    assert!(
        seen.container_to_host,
        "container mount did not reach the host"
    );
}

/// "slave: the rootfs mount receives propagation events from the host (e.g.
/// if something is mounted on the host it will also appear in the
/// container) but not the other way around."
#[test]
fn slave_rootfs_receives_but_does_not_send() {
    let (seen, group) = observe("slave");
    assert_eq!(seen.mnt, [format!("master:{group}")]);
    assert!(
        seen.host_to_container,
        "host mount did not reach the container"
    );
    assert!(!seen.container_to_host, "container mount reached the host");
    assert!(
        !seen.root.iter().any(|f| f.starts_with("shared:")),
        "/ is shared: {:?}",
        seen.root
    );
}

/// "private: the rootfs mount doesn't receive mount propagation events from
/// the host and further mounts ... will be isolated from the host".
#[test]
fn private_rootfs_neither_receives_nor_sends() {
    let (seen, _) = observe("private");
    assert_eq!(seen.root, Vec::<String>::new(), "/ has propagation");
    assert_eq!(seen.mnt, Vec::<String>::new(), "/mnt has propagation");
    assert!(!seen.host_to_container, "host mount reached the container");
    assert!(!seen.container_to_host, "container mount reached the host");
    assert!(seen.root_bindable);
}

/// "unbindable: the rootfs mount is a private mount that cannot be
/// bind-mounted." (Mounts below it are slaves of the host, as with runc.)
#[test]
fn unbindable_rootfs_cannot_be_bind_mounted() {
    let (seen, group) = observe("unbindable");
    assert_eq!(seen.root, ["unbindable"]);
    assert!(!seen.root_bindable, "mount --bind / succeeded");
    assert_eq!(seen.mnt, [format!("master:{group}")]);
    assert!(!seen.container_to_host, "container mount reached the host");
}
