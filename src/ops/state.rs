//! `state`: the OCI state of a container as JSON.

use std::collections::HashMap;
use std::path::PathBuf;

use libcontainer::container::Container;
use serde::Serialize;

use super::{Context, status_word};
use crate::{Result, cli};

/// The OCI state, plus runc's extra fields (rootfs, created, owner).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: &'static str,
    pub bundle: PathBuf,
    pub created: String,
    pub owner: String,
    pub annotations: HashMap<String, String>,
}

impl State {
    pub fn of(c: &Container) -> State {
        State::with_owners(c, &mut Owners::default())
    }

    /// The state, the owner's name looked up through `owners`.
    pub fn with_owners(c: &Container, owners: &mut Owners) -> State {
        let status = c.status();
        let stopped = status == libcontainer::container::ContainerStatus::Stopped;
        State {
            oci_version: c.state.oci_version.clone(),
            id: c.id().to_owned(),
            // The OCI state has a pid only while the process exists.
            pid: if stopped {
                0
            } else {
                c.pid().map(|p| p.as_raw()).unwrap_or(0)
            },
            status: status_word(status),
            bundle: c.bundle().clone(),
            created: c
                .created()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                .unwrap_or_default(),
            owner: owners.name(c.state.creator),
            annotations: c.state.annotations.clone().unwrap_or_default(),
        }
    }
}

/// User names by uid, each looked up once: a lookup reads /etc/passwd (six
/// system calls), which `list` did for every container.
#[derive(Default)]
pub struct Owners(HashMap<u32, String>);

impl Owners {
    /// The name of user `uid` ("" for none, or a user without a name, as
    /// libcontainer's `Container::creator` gives it).
    fn name(&mut self, uid: Option<u32>) -> String {
        let Some(uid) = uid else {
            return String::new();
        };
        self.0
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_default()
            })
            .clone()
    }
}

pub fn state(ctx: &Context, args: &cli::Id) -> Result<State> {
    let container = ctx.store.load(&args.container_id)?;
    Ok(State::of(&container))
}
