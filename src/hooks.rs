//! poststart and poststop hooks, run by sbx-oci instead of libcontainer.
//!
//! The runtime spec (runtime.md, Lifecycle, steps 9 and 12): "If any poststart
//! hook fails, the runtime MUST log a warning, but the remaining hooks and
//! lifecycle continue as if the hook had succeeded", and the same for
//! poststop. libcontainer 0.7 instead stops at the first failing hook and
//! fails `start` (the container is left running) or `delete` (after removing
//! the cgroup, before removing the state: a container that can never be
//! deleted). So, when a container has such hooks, they are taken out of
//! libcontainer's stored config (youki_config.json, a few hundred bytes in
//! the state directory, read only by start and delete) just before the call
//! and run here afterwards, one at a time, a failure being a warning.
//!
//! Containers without hooks pay one read of that small file per start and
//! delete, which libcontainer does anyway.

use std::path::Path;
use std::time::{Duration, Instant};

/// The argument that selects `ops::hook` (`run-hook`), which the rewritten
/// hooks call.
pub const SUBCOMMAND: &str = "run-hook";

use libcontainer::config::YoukiConfig;
use libcontainer::container::Container;
use nix::unistd::Pid;
use oci_spec::runtime::Hook;

use crate::{Error, Result};

#[derive(Clone, Copy, Debug)]
pub enum Stage {
    Poststart,
    Poststop,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Poststart => "poststart",
            Stage::Poststop => "poststop",
        }
    }
}

/// Hooks taken out of libcontainer's config, to run after its call.
#[must_use = "taken hooks must be run (or put back)"]
pub struct Taken {
    stage: Stage,
    hooks: Vec<Hook>,
    config: YoukiConfig,
    kept: std::path::PathBuf,
}

/// Where taken hooks are kept until they have run: beside libcontainer's
/// directory, in ours, which outlives libcontainer's delete. A runtime
/// killed between taking and running them leaves them there, and the next
/// `delete --force` runs them (a sandbox's network teardown among them).
fn kept_path(state_dir: &Path, stage: Stage) -> std::path::PathBuf {
    let ours = state_dir.parent().unwrap_or(state_dir);
    ours.join(format!("{}-hooks.json", stage.name()))
}

/// Takes the `stage` hooks out of the config stored in `state_dir` (the
/// container's libcontainer root), with any an interrupted runtime took
/// before. `None` when there are none (or no config yet: a half-created
/// container, for which libcontainer runs none either).
pub fn take(state_dir: &Path, stage: Stage) -> Result<Option<Taken>> {
    let Ok(mut config) = YoukiConfig::load(state_dir) else {
        return Ok(None);
    };
    let kept = kept_path(state_dir, stage);
    let earlier: Option<Vec<Hook>> = std::fs::read(&kept)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let list = config.hooks.as_mut().and_then(|hooks| match stage {
        Stage::Poststart => hooks.poststart_mut().take(),
        Stage::Poststop => hooks.poststop_mut().take(),
    });
    // Kept hooks are the whole list (the config was saved without them
    // after they were kept, or not at all).
    let Some(list) = earlier.or(list).filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let json = serde_json::to_vec(&list).map_err(|e| {
        Error::io(
            format!("cannot keep the {} hooks", stage.name()),
            std::io::Error::other(e),
        )
    })?;
    crate::store::write_atomic(&kept, &json)
        .map_err(|e| Error::io(format!("cannot write {}", kept.display()), e))?;
    save(&config, state_dir)?;
    // Keep the original to put back if libcontainer's call fails.
    let mut original = config;
    let hooks = original.hooks.get_or_insert_with(Default::default);
    match stage {
        Stage::Poststart => hooks.set_poststart(Some(list.clone())),
        Stage::Poststop => hooks.set_poststop(Some(list.clone())),
    };
    Ok(Some(Taken {
        stage,
        hooks: list,
        config: original,
        kept,
    }))
}

/// Saves libcontainer's config by rename, not as `YoukiConfig::save` does
/// (truncate, then write): a runtime killed in between would leave it empty,
/// and every later kill, pause or `delete --force` fails to parse it.
pub fn save(config: &YoukiConfig, state_dir: &Path) -> Result<()> {
    let err = |e| Error::io(format!("cannot update hooks in {}", state_dir.display()), e);
    let json = serde_json::to_vec(config).map_err(|e| err(std::io::Error::other(e)))?;
    crate::store::write_atomic(&state_dir.join(CONFIG_FILE), &json).map_err(err)
}

/// The file `YoukiConfig::load` reads in a container's state directory.
const CONFIG_FILE: &str = "youki_config.json";

impl Taken {
    /// Puts the hooks back (libcontainer's call failed; a retry runs them).
    pub fn restore(self, state_dir: &Path) {
        if save(&self.config, state_dir).is_ok() {
            let _ = std::fs::remove_file(&self.kept);
        }
    }

    /// Runs every hook in order with the container's current state on stdin;
    /// a failing hook is a warning (on stderr and in the log), not an error.
    pub fn run(self, container: &Container) {
        let cwd = container.root.exists().then_some(container.root.as_path());
        for (i, hook) in self.hooks.iter().enumerate() {
            let one = vec![hook.clone()];
            // Our own network teardown (a sandbox's poststop) runs here,
            // without a process: what it would do, done the same way.
            let result = match crate::network::own_down_hook(hook) {
                Some(policy) => {
                    crate::network::down(&policy, container.id()).map_err(|e| e.to_string())
                }
                None => libcontainer::hooks::run_hooks(
                    Some(&one),
                    Some(&container.state),
                    cwd,
                    None,
                    None,
                )
                .map_err(|e| e.to_string()),
            };
            if let Err(err) = result {
                let msg = format!(
                    "warning: {} hook {} ({}) of container {:?} failed: {err}; continuing",
                    self.stage.name(),
                    i,
                    hook.path().display(),
                    container.id()
                );
                tracing::warn!("{msg}");
                eprintln!("sbx-oci: {msg}");
            }
        }
        let _ = std::fs::remove_file(&self.kept);
    }
}

/// Waits (up to 1 s) until `pid`, a container's init process, has executed
/// the user's program or exited. libcontainer's `start` returns once the init
/// process is told to go, before it calls execve; the spec wants poststart
/// hooks "called after the user-specified process is executed".
pub fn wait_exec(pid: Pid) {
    // libcontainer names its init process "youki:[2:INIT]" until execve.
    const BEFORE_EXEC: &str = "(youki:[2:INIT]) ";
    let path = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut pause = Duration::from_micros(20);
    loop {
        // "<pid> (<comm>) <state> ..."; a zombie has exited.
        let waiting = std::fs::read_to_string(&path).is_ok_and(|stat| {
            stat.split_once(' ')
                .and_then(|(_, rest)| rest.strip_prefix(BEFORE_EXEC))
                .is_some_and(|state| !state.starts_with('Z'))
        });
        if !waiting || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_micros(500));
    }
}

/// Whether a config.json (its bytes, unparsed) may have hooks that
/// [`wrap_for_state`] rewrites: a substring test, so that a config without
/// them costs nothing more on `create`.
pub fn may_need_wrap(config: &[u8]) -> bool {
    let has = |needle: &[u8]| config.windows(needle.len()).any(|w| w == needle);
    has(b"\"prestart\"") || has(b"\"createRuntime\"")
}

fn is_network_hook(hook: &serde_json::Value) -> bool {
    let args = hook.get("args").and_then(serde_json::Value::as_array);
    args.is_some_and(|a| a.len() > 2 && a[1] == "hook" && a[2] == "network")
}

/// Rewrites every prestart and createRuntime hook of `spec` to run through
/// `sbx-oci hook` (see `ops::hook`), which gives it the state the spec wants:
/// status "created" and `bundle` as the bundle. Returns whether any was.
pub fn wrap_for_state(spec: &mut serde_json::Value, bundle: &Path) -> bool {
    use serde_json::Value;
    let mut wrapped = false;
    for stage in ["prestart", "createRuntime"] {
        let Some(list) = spec
            .pointer_mut(&format!("/hooks/{stage}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for hook in list {
            let Some(path) = hook.get("path").and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            // Our own network hook reads only the pid and id: no rewrite,
            // and no extra process.
            if is_network_hook(hook) {
                continue;
            }
            let mut args = vec![
                Value::from("sbx-oci"),
                Value::from(SUBCOMMAND),
                Value::from("--bundle"),
                Value::from(bundle.to_string_lossy().into_owned()),
                Value::from(path.clone()),
            ];
            match hook.get("args").and_then(Value::as_array) {
                Some(orig) if !orig.is_empty() => args.extend(orig.iter().cloned()),
                _ => args.push(Value::from(path)),
            }
            hook["path"] = Value::from("/proc/self/exe");
            hook["args"] = Value::Array(args);
            wrapped = true;
        }
    }
    wrapped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_config_is_what_libcontainer_loads() {
        let dir = std::env::temp_dir().join(format!("sbx-oci-hooks-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = oci_spec::runtime::Spec::default();
        let config = YoukiConfig::from_spec(&spec, "c").unwrap();
        save(&config, &dir).unwrap();
        let loaded = YoukiConfig::load(&dir);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(loaded.unwrap(), config);
        assert_eq!(left, [CONFIG_FILE], "only the config, no temporary file");
    }
}
