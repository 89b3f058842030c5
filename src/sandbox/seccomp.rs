//! The default seccomp profile of a sandbox: everything is allowed except
//! the system calls a sandboxed program never needs and that widen the
//! kernel's attack surface or leave the sandbox (mounts, module loading,
//! kexec, bpf, keyrings, ptrace, new user namespaces, io_uring, ...).
//! Denied calls fail with EPERM, so programs see an ordinary refusal.

use serde_json::{Value, json};

/// Denied outright (EPERM).
pub const DENIED: &[&str] = &[
    // mounts and the new mount API
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    // namespaces
    "unshare",
    "setns",
    // kernel code and the kernel's state
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "get_kernel_syms",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "lookup_dcookie",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    // the clock
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_adjtime",
    // bpf, perf, keyrings
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    // other processes' memory
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    // handles that bypass path checks (the "shocker" escape), userfaultfd, io_uring
    "open_by_handle_at",
    "name_to_handle_at",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// Only the native architecture: a system call made through another ABI
/// (32-bit x86 or x32 on x86_64) does not match the filter's architecture
/// and libseccomp kills the thread, so no denied call slips through a
/// compat entry point. (Each extra architecture also costs a third more
/// filter to compile on every start.)
fn architectures() -> Value {
    if cfg!(target_arch = "aarch64") {
        json!(["SCMP_ARCH_AARCH64"])
    } else {
        json!(["SCMP_ARCH_X86_64"])
    }
}

/// The profile, as the `linux.seccomp` object of an OCI config.
pub fn profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": [
            { "names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM },
            // A new user namespace through clone(2)...
            { "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
              "args": [{ "index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER,
                         "op": "SCMP_CMP_MASKED_EQ" }] },
            // ...and through clone3(2), whose flags seccomp cannot see: ENOSYS
            // makes the C library fall back to clone(2).
            { "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS },
        ],
    })
}
