//! A sandbox's seccomp filter, compiled once rather than in every init.
//!
//! libcontainer compiles `linux.seccomp` with libseccomp inside each
//! container's init: a freshly forked process, where libseccomp's ~60 rule
//! insertions and its code generation run on cold memory, ~0.3 ms on every
//! start. Every sandbox has the same profile, so sbx-oci has libseccomp
//! compile it once, keeps the program under the state root
//! (`@seccomp/<key>.bpf`, keyed by the profile, libseccomp's version and the
//! architecture), and hands the ready program to the init in the annotation
//! [`ANNOTATION`] in place of `linux.seccomp`.
//!
//! [`Filtered`], the executor of every process sbx-oci starts in a
//! container, installs that program where libcontainer would have installed
//! `linux.seccomp`: libcontainer calls `Executor::validate` right after its
//! own seccomp step (after no_new_privs, the capabilities and the working
//! directory; before the container is reported created). The compilation
//! makes libseccomp's calls in libcontainer's order, so the program decides
//! as the one libcontainer would load does; it is laid out as a binary tree,
//! which is faster (tests/sandbox.rs runs both, read back from the kernel,
//! on every system call number).
//!
//! A profile this cannot compile the same way (a notify action, filter
//! flags) is an error: sandboxes' profiles have neither.

use std::collections::HashSet;
use std::fs::File;
use std::hash::Hasher;
use std::io::{Read, Seek, Write};
use std::os::fd::FromRawFd;
use std::path::Path;

use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    ScmpVersion,
};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator, Spec};
use serde_json::Value;

use crate::fnv::{Fnv1a, fnv1a};

/// The compiled program, hex-encoded (sock_filter instructions in the
/// kernel's layout, as libseccomp exports them).
pub const ANNOTATION: &str = "org.sbx-oci.seccomp.bpf";

/// Under the state root.
pub const CACHE_DIR: &str = "@seccomp";

/// The kernel's limit on a filter's length (BPF_MAXINSNS), in bytes.
const MAX_PROGRAM: usize = 4096 * 8;

/// Replaces `linux.seccomp` of `config` by [`ANNOTATION`] holding its
/// compiled program, from the cache under `root` or compiled and cached.
/// A failure is the caller's error, not a fallback: libcontainer 0.7 gives
/// `exec`'d processes no `linux.seccomp` (its tenant spec drops it), so for a
/// sandbox the annotation is the only filter they get.
pub fn precompile(root: &Path, config: &mut Value) -> Result<(), String> {
    let Some(profile) = config.pointer("/linux/seccomp") else {
        return Ok(());
    };
    if profile
        .get("flags")
        .is_some_and(|f| f.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Err("a sandbox's profile has no filter flags".into());
    }
    let program = program(root, profile)?;
    if let Some(linux) = config.get_mut("linux").and_then(Value::as_object_mut) {
        linux.remove("seccomp");
    }
    if !config["annotations"].is_object() {
        config["annotations"] = Value::Object(Default::default());
    }
    config["annotations"][ANNOTATION] = Value::String(hex::encode(program));
    Ok(())
}

/// A compiled filter and the flags to install it with.
#[derive(Clone, Debug)]
pub struct Program {
    pub bpf: Vec<u8>,
    pub flags: u32,
}

/// The filter an `exec`'d process of the container whose config is
/// `config` must get: its `linux.seccomp`, compiled (through the cache under
/// `root`). libcontainer 0.7 installs `linux.seccomp` in a container's init
/// but builds an exec'd process's spec without it, so without this the
/// process would run unfiltered. None when the config has no profile (or
/// carries its program in [`ANNOTATION`], which the executor installs).
pub fn for_exec(root: &Path, config: &Value) -> Result<Option<Program>, String> {
    let Some(profile) = config.pointer("/linux/seccomp") else {
        return Ok(None);
    };
    let parsed: LinuxSeccomp =
        serde_json::from_value(profile.clone()).map_err(|e| e.to_string())?;
    let notify = parsed.default_action() == LinuxSeccompAction::ScmpActNotify
        || parsed
            .syscalls()
            .iter()
            .flatten()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify);
    if notify {
        return Err(
            "its seccomp profile uses SCMP_ACT_NOTIFY, which needs a listener \
                    sbx-oci cannot give an exec'd process"
                .into(),
        );
    }
    Ok(Some(Program {
        bpf: program(root, profile)?,
        flags: flags(&parsed),
    }))
}

/// The seccomp(2) flags of a profile, as libseccomp would load it with them
/// (wait-killable-recv only matters to a listener, which is refused above).
pub fn flags(profile: &LinuxSeccomp) -> u32 {
    use oci_spec::runtime::LinuxSeccompFilterFlag as F;
    profile.flags().iter().flatten().fold(0, |bits, f| {
        bits | match f {
            F::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC as u32,
            F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG as u32,
            F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32,
            F::SeccompFilterFlagWaitKillableRecv => 0,
        }
    })
}

/// Bumped when what `compile` writes changes, so old cache files are not used.
const FORMAT: &str = "sbx-oci-bpf-2";

/// The program of `profile`: read from the cache, or compiled into it. A
/// cache file is the program followed by its FNV-1a checksum (8 bytes,
/// little-endian), so a torn or damaged file is compiled again.
fn program(root: &Path, profile: &Value) -> Result<Vec<u8>, String> {
    let text = serde_json::to_vec(profile).map_err(|e| e.to_string())?;
    let version = ScmpVersion::current().map_err(|e| e.to_string())?;
    let mut key = Fnv1a::default();
    key.write(&text);
    key.write(format!("{FORMAT}/{version:?}/{:?}", ScmpArch::native()).as_bytes());
    let dir = root.join(CACHE_DIR);
    let path = dir.join(format!("{:016x}.bpf", key.finish()));
    if let Some(program) = read_program(&path) {
        return Ok(program);
    }
    let profile: LinuxSeccomp =
        serde_json::from_value(profile.clone()).map_err(|e| e.to_string())?;
    // Compiled into memory (a full disk under the state root must not fail
    // the sandbox), checked, then cached: written aside with its checksum
    // appended and renamed, so that a cached program is always whole.
    let program = {
        // SAFETY: the name is a NUL-terminated string; flags are valid.
        let fd = unsafe { libc::memfd_create(c"sbx-oci-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: fd was just created and is owned by nobody else.
        let mut memfd = unsafe { File::from_raw_fd(fd) };
        compile(&profile, &memfd)?;
        let mut p = Vec::new();
        memfd
            .seek(std::io::SeekFrom::Start(0))
            .and_then(|_| memfd.read_to_end(&mut p))
            .map_err(|e| format!("reading the compiled program: {e}"))?;
        if !is_program(&p) {
            return Err(format!("libseccomp exported {} bytes", p.len()));
        }
        p
    };
    let tmp = dir.join(format!(".{:016x}.{}", key.finish(), std::process::id()));
    let stored = std::fs::create_dir_all(&dir)
        .and_then(|_| File::create(&tmp))
        .and_then(|mut f| {
            f.write_all(&program)?;
            f.write_all(&fnv1a(&program).to_le_bytes())?;
            f.sync_all()
        })
        .and_then(|_| std::fs::rename(&tmp, &path));
    if stored.is_err() {
        // Not cached this time; the program is good all the same.
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(program)
}

/// Removes what compilations that crashed left in the cache under `root`
/// (files written aside, older than `grace`). Returns their names.
pub fn prune(root: &Path, grace: std::time::Duration) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join(CACHE_DIR)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= grace)
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn is_program(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len().is_multiple_of(8) && bytes.len() <= MAX_PROGRAM
}

fn read_program(path: &Path) -> Option<Vec<u8>> {
    let mut file = Vec::with_capacity(1024);
    File::open(path).ok()?.read_to_end(&mut file).ok()?;
    let split = file.len().checked_sub(8)?;
    let (program, sum) = file.split_at(split);
    (is_program(program) && sum == fnv1a(program).to_le_bytes()).then(|| program.to_vec())
}

/// Compiles `profile` with libseccomp into `out`, making the calls
/// libcontainer makes for it (same rules, same order, same attributes),
/// but for the program's layout (a binary tree: same decisions).
/// Its flags are not part of the program: see [`flags`].
pub fn compile(profile: &LinuxSeccomp, out: &File) -> Result<(), String> {
    let err = |e: libseccomp::error::SeccompError| e.to_string();
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(err)?;
    for a in profile.architectures().iter().flatten() {
        ctx.add_arch(arch(*a)).map_err(err)?;
    }
    // no_new_privs is the runtime's business (process.noNewPrivileges).
    ctx.set_ctl_nnp(false).map_err(err)?;
    // The system calls as a binary tree rather than a chain: same decisions,
    // a few comparisons per call instead of one per rule, for every call
    // the container makes and for the kernel's check at load time, which
    // runs the program for every system call number (its constant-action
    // cache): −0.14 to −0.26 ms per sandbox start (docs/performance.md).
    ctx.set_ctl_optimize(2).map_err(err)?;
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        for name in rule.names() {
            // A name this libseccomp does not know is a call this kernel
            // does not have: nothing to deny (libcontainer skips it too).
            let Ok(call) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let Some(args) = rule.args() else {
                ctx.add_rule(act, call).map_err(err)?;
                continue;
            };
            let cmps: Vec<ScmpArgCompare> = args
                .iter()
                .map(|a| {
                    ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value())
                })
                .collect();
            let mut seen = HashSet::new();
            if args.iter().all(|a| seen.insert(a.index())) {
                ctx.add_rule_conditional(act, call, &cmps).map_err(err)?;
            } else {
                // One comparison per argument and rule: split, as runc does.
                for c in &cmps {
                    ctx.add_rule_conditional(act, call, std::slice::from_ref(c))
                        .map_err(err)?;
                }
            }
        }
    }
    ctx.export_bpf(out).map_err(err)
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
    let errno = errno.map_or(libc::EPERM, |e| e as i32);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(u16::try_from(errno).map_err(|e| e.to_string())?)
        }
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        // A listener needs the init to pass a descriptor: libcontainer's job.
        LinuxSeccompAction::ScmpActNotify => return Err("notify is left to libcontainer".into()),
    })
}

fn op(o: LinuxSeccompOperator, mask: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(mask.unwrap_or(0)),
    }
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// The program of annotation value `hex` (a sandbox's profile has no flags).
fn from_annotation(hex: &str) -> Result<Program, String> {
    let bpf = hex::decode(hex).map_err(|e| format!("annotation {ANNOTATION} is not hex: {e}"))?;
    if !is_program(&bpf) {
        return Err(format!("annotation {ANNOTATION} is not a BPF program"));
    }
    Ok(Program { bpf, flags: 0 })
}

/// Installs `program` in this thread.
fn install(program: &Program) -> Result<(), String> {
    let bytes = &program.bpf;
    let filter: Vec<libc::sock_filter> = bytes
        .chunks_exact(8)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `filter`, alive for the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            program.flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot install the container's seccomp filter: {} \
             (it needs process.noNewPrivileges)",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The executor of processes sbx-oci starts in containers: `E`, after the
/// config's precompiled filter (a sandbox's, in [`ANNOTATION`]) and the
/// filter given for an exec'd process (see [`for_exec`]) are installed.
#[derive(Clone)]
pub struct Filtered<E> {
    inner: E,
    program: Option<Program>,
}

impl<E> Filtered<E> {
    pub fn new(inner: E) -> Self {
        Filtered {
            inner,
            program: None,
        }
    }

    pub fn with_program(mut self, program: Option<Program>) -> Self {
        self.program = program;
        self
    }
}

impl<E: Executor + Clone + 'static> Executor for Filtered<E> {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        self.inner.exec(spec)
    }

    /// libcontainer calls this right where it installs `linux.seccomp`.
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let failed = ExecutorValidationError::ArgValidationError;
        if let Some(hex) = spec.annotations().as_ref().and_then(|a| a.get(ANNOTATION)) {
            install(&from_annotation(hex).map_err(failed)?).map_err(failed)?;
        }
        if let Some(program) = &self.program {
            install(program).map_err(failed)?;
        }
        self.inner.validate(spec)
    }

    fn setup_envs(
        &self,
        envs: std::collections::HashMap<String, String>,
    ) -> Result<(), libcontainer::workload::ExecutorSetEnvsError> {
        self.inner.setup_envs(envs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(extra: Value) -> Value {
        let mut p = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_ERRNO" }],
        });
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    }

    #[test]
    fn exec_refuses_a_listener_and_keeps_flags() {
        let root = std::env::temp_dir().join(format!("sbx-seccomp-unit-{}", std::process::id()));
        let notify = serde_json::json!({ "linux": { "seccomp": profile(serde_json::json!({
            "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }] })) } });
        let err = for_exec(&root, &notify).unwrap_err();
        assert!(err.contains("SCMP_ACT_NOTIFY"), "{err}");

        let flagged = serde_json::json!({ "linux": { "seccomp": profile(serde_json::json!({
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"] })) } });
        let p = for_exec(&root, &flagged).unwrap().unwrap();
        assert_eq!(
            p.flags,
            (libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW) as u32
        );
        assert!(is_program(&p.bpf));
        assert!(
            for_exec(&root, &serde_json::json!({ "linux": {} }))
                .unwrap()
                .is_none()
        );

        // A sandbox's profile has no flags: refused rather than dropped.
        let mut config = flagged.clone();
        assert!(precompile(&root, &mut config).is_err());
        let mut config =
            serde_json::json!({ "linux": { "seccomp": profile(serde_json::json!({})) } });
        precompile(&root, &mut config).unwrap();
        assert!(config["linux"]["seccomp"].is_null());
        assert!(config["annotations"][ANNOTATION].is_string());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
