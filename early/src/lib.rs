//! The protective re-execution (see `sbx_oci::selfexe`), done before the C
//! library and Rust start up when it can be.
//!
//! create, run and exec execute the binary twice: once as called, once
//! through a read-only overlay view of it. The first execution only builds
//! that view, yet it paid the whole start-up of a 7 MB static-pie program:
//! self-relocation (a copy-on-write fault for each of ~80 pages of
//! `.data.rel.ro`), glibc's initialisation, Rust's runtime, argument parsing:
//! about a millisecond here. The binary's ELF entry point is therefore
//! [`sbx_oci_entry`] (`build.rs` sets it): on the common path (a command that
//! needs protection, overlayfs, a binary not already protected) it builds
//! the same view with raw system calls and executes it at once; in every
//! other case, and on any failure, it goes on to glibc's `_start` as if it
//! were not there, and `selfexe::ensure_protected` does the work (with its
//! fallbacks and its errors). So this file can only make the protected path
//! faster, never weaker: a process it executes is one `ensure_protected`
//! would have executed.
//!
//! Every execution that goes on to glibc (the second one of create, run and
//! exec; every other command) first has the image's writable segments made
//! present in one system call each (`populate_writable`): the start-up
//! writes nearly all their pages, and a page fault costs more than the copy.
//!
//! Code here runs before the image is relocated and before glibc exists:
//! nothing may read a pointer stored in the image (no statics holding
//! references, no tables of strings, no panics, no formatting), call the C
//! library (memcpy and friends are resolved at start-up), touch TLS, or call
//! a function through the GOT. Hence a crate of its own: `no_std`,
//! `no_builtins`, and built optimised without debug assertions in every
//! profile (Cargo.toml), so that core's small helpers are inlined, not
//! called through the GOT as a debug build's shared generics would be.
//! Volatile accesses keep the byte loops loops.

#![no_std]
// No memcpy or memset calls made up from loops: those are resolved by the C
// library at its start-up, after this code.
#![no_builtins]
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use core::arch::{asm, global_asm};

// The kernel enters with the stack pointer at argc (16-byte aligned) and
// every other register zero. `early` returns only when it did not execute
// anything; the stack is then given back exactly as it was, %rdx (the ABI's
// exit-function pointer) zero, to glibc's own entry.
global_asm!(
    ".globl sbx_oci_entry",
    ".type sbx_oci_entry,@function",
    "sbx_oci_entry:",
    "xor ebp, ebp",
    "mov r12, rsp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {early}",
    "mov rsp, r12",
    "xor edx, edx",
    "jmp _start",
    early = sym sbx_oci_early,
);

/// `selfexe::HOST_EXE_ENV` and `selfexe::EMPTY_LAYER` (a test there checks
/// that they agree); the layer with its NUL, for the system call.
pub const HOST_EXE_ENV: &[u8] = b"_SBX_OCI_HOST_EXE";
pub const EMPTY_LAYER_C: &[u8] = b"/run/sbx-oci-empty-layer\0";
const PATH_MAX: usize = 4096;
/// Environments larger than this (callers give the runtime a few dozen
/// variables) take selfexe's way. The array is on the stack of `reexec`,
/// and every page of a frame is a page fault: 32 KB of it cost 8.
const MAX_ENV: usize = 512;

const SYS_CLOSE: usize = 3;
const SYS_STAT: usize = 4;
const SYS_FCNTL: usize = 72;
const SYS_READLINK: usize = 89;
const SYS_FSTATFS: usize = 138;
const SYS_OPENAT: usize = 257;
const SYS_EXECVEAT: usize = 322;
const SYS_FSOPEN: usize = 430;
const SYS_FSCONFIG: usize = 431;
const SYS_FSMOUNT: usize = 432;
const SYS_MADVISE: usize = 28;

const AT_NULL: usize = 0;
const AT_PHDR: usize = 3;
const AT_PHNUM: usize = 5;
const PT_LOAD: u32 = 1;
const PT_PHDR: u32 = 6;
const PF_W: u32 = 2;
/// `size_of::<Elf64_Phdr>()`: type and flags (4 bytes each), then offset,
/// vaddr, paddr, filesz, memsz and align (8 bytes each).
const PHDR_SIZE: usize = 56;
const PAGE: usize = 4096;
const MADV_POPULATE_WRITE: usize = 23;

const AT_FDCWD: isize = -100;
const AT_EMPTY_PATH: usize = 0x1000;
const O_RDONLY: usize = 0;
const O_CLOEXEC: usize = 0o2000000;
const O_PATH: usize = 0o10000000;
const F_GET_SEALS: usize = 1034;
const F_SEAL_WRITE: isize = 0x8;
const ST_RDONLY: u64 = 1;
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const FSOPEN_CLOEXEC: usize = 1;
const FSCONFIG_SET_STRING: usize = 1;
const FSCONFIG_CMD_CREATE: usize = 6;
const FSMOUNT_CLOEXEC: usize = 1;
// Read-only, nosuid, nodev, as selfexe's view.
const MOUNT_ATTRS: usize = 0x1 | 0x2 | 0x4;

/// A raw system call (the C library is not there yet). Returns the kernel's
/// value: negative errno on failure.
///
/// # Safety
/// The arguments must be valid for system call `n`.
#[inline(always)]
unsafe fn sys(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for `n`; the kernel
    // clobbers rcx and r11 only.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A C string built up with volatile writes in a caller's buffer (never
/// moved or zeroed: either would be a memcpy or memset call).
struct Buf {
    ptr: *mut u8,
    cap: usize,
    len: usize,
}

impl Buf {
    fn new<const N: usize>(space: &mut core::mem::MaybeUninit<[u8; N]>) -> Buf {
        Buf {
            ptr: space.as_mut_ptr() as *mut u8,
            cap: N,
            len: 0,
        }
    }

    /// Appends `n` bytes from `src`; false when they do not fit (with the
    /// NUL).
    fn push(&mut self, src: *const u8, n: usize) -> bool {
        if n >= self.cap - self.len {
            return false;
        }
        let mut i = 0;
        while i < n {
            // SAFETY: src has n bytes (caller); there is room (checked).
            unsafe {
                self.ptr
                    .add(self.len + i)
                    .write_volatile(src.add(i).read_volatile())
            };
            i += 1;
        }
        self.len += n;
        true
    }

    fn push_lit(&mut self, lit: &[u8]) -> bool {
        self.push(lit.as_ptr(), lit.len())
    }

    /// Byte `i` (< len).
    fn at(&self, i: usize) -> u8 {
        // SAFETY: bytes below len were written.
        unsafe { self.ptr.add(i).read_volatile() }
    }

    /// The bytes as a C string.
    fn c_str(&mut self) -> *const u8 {
        // SAFETY: push keeps one byte free for the NUL.
        unsafe { self.ptr.add(self.len).write_volatile(0) };
        self.ptr
    }
}

/// Whether C string `s` is `lit` (`prefix`: starts with it).
///
/// # Safety
/// `s` must be NUL-terminated.
unsafe fn c_eq(s: *const u8, lit: &[u8], prefix: bool) -> bool {
    let mut i = 0;
    while i < lit.len() {
        // SAFETY: a NUL in s differs from lit's byte (lit has none) and stops.
        if unsafe { s.add(i).read_volatile() } != lit[i] {
            return false;
        }
        i += 1;
    }
    // SAFETY: s has at least lit.len() + 1 bytes (its NUL is after them).
    prefix || unsafe { s.add(i).read_volatile() } == 0
}

/// Whether argv names a command that puts a process into a container:
/// create, run or exec, plain or under `sandbox`. Global options before it
/// are skipped; anything unexpected answers no (ensure_protected decides).
///
/// # Safety
/// `argv` must be the kernel's NULL-terminated argument vector.
unsafe fn needs_protection(argv: *const *const u8) -> bool {
    let is_command = |a| {
        // SAFETY: a C string from argv.
        unsafe { c_eq(a, b"create", false) || c_eq(a, b"run", false) || c_eq(a, b"exec", false) }
    };
    let mut i = 1;
    let mut sandbox = false;
    loop {
        // SAFETY: argv is NULL-terminated; we stop at the NULL.
        let a = unsafe { *argv.add(i) };
        if a.is_null() {
            return false;
        }
        i += 1;
        // SAFETY: every argument is a C string; argv[i] exists since argv[i-1]
        // was not the NULL.
        unsafe {
            if c_eq(a, b"--root", false)
                || c_eq(a, b"--log", false)
                || c_eq(a, b"--log-format", false)
                || c_eq(a, b"--rootless", false)
                || c_eq(a, b"--criu", false)
            {
                if (*argv.add(i)).is_null() {
                    return false;
                }
                i += 1;
            } else if c_eq(a, b"-", true) {
                let flag = c_eq(a, b"--debug", false) || c_eq(a, b"--systemd-cgroup", false);
                if !(flag || (c_eq(a, b"--", true) && has_equals(a))) {
                    return false;
                }
            } else if sandbox {
                return is_command(a);
            } else if c_eq(a, b"sandbox", false) {
                sandbox = true;
            } else {
                return is_command(a);
            }
        }
    }
}

/// Whether C string `s` holds a '='.
///
/// # Safety
/// `s` must be NUL-terminated.
unsafe fn has_equals(s: *const u8) -> bool {
    let mut i = 0;
    loop {
        // SAFETY: stops at the NUL.
        match unsafe { s.add(i).read_volatile() } {
            0 => return false,
            b'=' => return true,
            _ => i += 1,
        }
    }
}

/// The entry's work; returns when it executed nothing, with the image's
/// writable pages made present for the start-up that follows.
#[unsafe(no_mangle)]
extern "C" fn sbx_oci_early(sp: *const usize) {
    // SAFETY: sp is the initial stack the kernel built.
    unsafe {
        protect_or_return(sp);
        populate_writable(sp);
    }
}

/// Executes the protected view when this execution needs one.
///
/// # Safety
/// `sp` is the initial stack the kernel built: argc, argv[argc], NULL,
/// envp..., NULL, auxv.
unsafe fn protect_or_return(sp: *const usize) {
    // SAFETY: the layout above.
    unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const u8;
        let envp = argv.add(argc + 1);
        if argc == 0 || !needs_protection(argv) {
            return;
        }
        let mut n_env = 0;
        loop {
            let e = *envp.add(n_env);
            if e.is_null() {
                break;
            }
            // Already executed by us (or set by hand): selfexe handles it.
            if c_eq(e, HOST_EXE_ENV, true) && *e.add(HOST_EXE_ENV.len()) == b'=' {
                return;
            }
            n_env += 1;
        }
        if n_env + 2 > MAX_ENV {
            return;
        }
        reexec(argv, envp, n_env);
    }
}

/// The start-up writes nearly every page of the image's writable segments:
/// glibc's self-relocation fills `.data.rel.ro` (~80 pages, each a
/// copy-on-write of the file's page), then `.data` and `.bss`. One
/// `MADV_POPULATE_WRITE` per segment makes them present at once instead of
/// a page fault each (a trap costs more than the copy in a VM). Kernels
/// before 5.14 refuse the advice and the faults happen as before.
///
/// Returns how many segments the kernel populated.
///
/// # Safety
/// `sp` is the initial stack the kernel built (its auxiliary vector names
/// the program headers of this image, mapped by the kernel).
unsafe fn populate_writable(sp: *const usize) -> usize {
    // SAFETY: argc, argv and envp (each NULL-terminated) precede the
    // auxiliary vector's (type, value) pairs, which end with AT_NULL; the
    // headers it points to are mapped.
    unsafe {
        let mut p = sp.add(1 + *sp + 1);
        while *p != 0 {
            p = p.add(1);
        }
        p = p.add(1);
        let (mut phdr, mut phnum) = (0usize, 0usize);
        while *p != AT_NULL {
            match *p {
                AT_PHDR => phdr = *p.add(1),
                AT_PHNUM => phnum = *p.add(1),
                _ => {}
            }
            p = p.add(2);
        }
        if phdr == 0 {
            return 0;
        }
        // The load bias: where the headers were mapped against where
        // PT_PHDR says they are.
        let header = |i: usize| (phdr + i * PHDR_SIZE) as *const u32;
        let mut bias = None;
        let mut i = 0;
        while i < phnum {
            let h = header(i);
            if h.read_volatile() == PT_PHDR {
                bias = Some(phdr.wrapping_sub((h as *const usize).add(2).read_volatile()));
            }
            i += 1;
        }
        let Some(bias) = bias else {
            return 0;
        };
        let mut populated = 0;
        i = 0;
        while i < phnum {
            let h = header(i);
            i += 1;
            if h.read_volatile() != PT_LOAD || h.add(1).read_volatile() & PF_W == 0 {
                continue;
            }
            let vaddr = (h as *const usize).add(2).read_volatile();
            let memsz = (h as *const usize).add(5).read_volatile();
            let start = bias.wrapping_add(vaddr) & !(PAGE - 1);
            let end = (bias.wrapping_add(vaddr).wrapping_add(memsz) + PAGE - 1) & !(PAGE - 1);
            let advice = [start, end.wrapping_sub(start), MADV_POPULATE_WRITE, 0, 0, 0];
            if sys(SYS_MADVISE, advice) == 0 {
                populated += 1;
            }
        }
        populated
    }
}

/// Builds selfexe's read-only overlay view of the binary and executes it;
/// returns on any failure (descriptors are close-on-exec, closed here).
///
/// # Safety
/// `argv` and `envp` are the kernel's vectors, `envp` with `n_env` entries.
// Not inlined: its ~17 KB frame (probed page by page) would be touched by
// every execution that has nothing to do here, the second one included.
#[inline(never)]
unsafe fn reexec(argv: *const *const u8, envp: *const *const u8, n_env: usize) {
    use core::mem::MaybeUninit;
    // SAFETY: system calls on valid C strings and buffers the kernel fills;
    // every descriptor is close-on-exec and closed on failure.
    unsafe {
        let exe = sys(
            SYS_OPENAT,
            [
                AT_FDCWD as usize,
                c(b"/proc/self/exe\0"),
                O_RDONLY | O_CLOEXEC,
                0,
                0,
                0,
            ],
        );
        if exe < 0 {
            return;
        }
        // Installed read-only, or a sealed copy: nothing to do here.
        let mut statfs = MaybeUninit::<[u64; 15]>::uninit();
        let ro = sys(
            SYS_FSTATFS,
            [exe as usize, statfs.as_mut_ptr() as usize, 0, 0, 0, 0],
        ) == 0
            && (statfs.as_ptr() as *const u64).add(10).read_volatile() & ST_RDONLY != 0;
        let sealed = sys(SYS_FCNTL, [exe as usize, F_GET_SEALS, 0, 0, 0, 0]);
        sys(SYS_CLOSE, [exe as usize, 0, 0, 0, 0, 0]);
        if ro || (sealed > 0 && sealed & F_SEAL_WRITE != 0) {
            return;
        }
        let mut path_space = MaybeUninit::<[u8; PATH_MAX]>::uninit();
        let mut path = Buf::new(&mut path_space);
        let n = sys(
            SYS_READLINK,
            [
                c(b"/proc/self/exe\0"),
                path.ptr as usize,
                PATH_MAX - 1,
                0,
                0,
                0,
            ],
        );
        // A full buffer may be a cut path: selfexe's to handle.
        if n <= 1 || n as usize >= PATH_MAX - 1 {
            return;
        }
        path.len = n as usize;
        if path.at(0) != b'/' {
            return;
        }
        // The directory and the name; characters overlayfs options cannot
        // hold are selfexe's to refuse.
        let mut slash = 0;
        let mut i = 0;
        while i < path.len {
            match path.at(i) {
                b'/' => slash = i,
                b':' | b',' | b'\\' => return,
                _ => {}
            }
            i += 1;
        }
        if slash == 0 || slash + 1 >= path.len {
            return;
        }
        // The second layer: the attached empty directory where an earlier
        // create found that the kernel needs one, else a detached tmpfs.
        let mut lower_space = MaybeUninit::<[u8; PATH_MAX + 64]>::uninit();
        let mut lower = Buf::new(&mut lower_space);
        lower.push(path.ptr, slash);
        lower.push_lit(b":");
        let mut stat = MaybeUninit::<[u64; 18]>::uninit();
        let attached = sys(
            SYS_STAT,
            [c(EMPTY_LAYER_C), stat.as_mut_ptr() as usize, 0, 0, 0, 0],
        ) == 0
            && ((stat.as_ptr() as *const u64).add(3).read_volatile() as u32) & S_IFMT == S_IFDIR;
        let mut tmpfs = -1;
        if attached {
            lower.push(EMPTY_LAYER_C.as_ptr(), EMPTY_LAYER_C.len() - 1);
        } else {
            tmpfs = detached(b"tmpfs\0", core::ptr::null());
            if tmpfs < 0 {
                return;
            }
            lower.push_lit(b"/proc/self/fd/");
            push_decimal(&mut lower, tmpfs as usize);
        }
        let overlay = detached(b"overlay\0", lower.c_str());
        close(tmpfs);
        if overlay < 0 {
            return;
        }
        path.c_str();
        let name = path.ptr.add(slash + 1);
        let file = sys(
            SYS_OPENAT,
            [overlay as usize, name as usize, O_PATH | O_CLOEXEC, 0, 0, 0],
        );
        close(overlay);
        if file < 0 {
            return;
        }
        // The environment plus the binary's host path, as selfexe passes it.
        let mut host_space = MaybeUninit::<[u8; PATH_MAX + 32]>::uninit();
        let mut host = Buf::new(&mut host_space);
        host.push_lit(HOST_EXE_ENV);
        host.push_lit(b"=");
        host.push(path.ptr, path.len);
        let mut env_space = MaybeUninit::<[*const u8; MAX_ENV]>::uninit();
        let env = env_space.as_mut_ptr() as *mut *const u8;
        let mut i = 0;
        while i < n_env {
            env.add(i).write_volatile(*envp.add(i));
            i += 1;
        }
        env.add(n_env).write_volatile(host.c_str());
        env.add(n_env + 1).write_volatile(core::ptr::null());
        sys(
            SYS_EXECVEAT,
            [
                file as usize,
                c(b"\0"),
                argv as usize,
                env as usize,
                AT_EMPTY_PATH,
                0,
            ],
        );
        close(file);
    }
}

/// The address of a NUL-terminated literal, as a system call argument.
fn c(lit: &[u8]) -> usize {
    lit.as_ptr() as usize
}

fn close(fd: isize) {
    if fd >= 0 {
        // SAFETY: a descriptor this code opened and no longer uses.
        unsafe { sys(SYS_CLOSE, [fd as usize, 0, 0, 0, 0, 0]) };
    }
}

/// A detached mount (read-only, nosuid, nodev) of a new `fstype`, with
/// `lowerdir` set when given; negative on failure.
///
/// # Safety
/// `fstype` and `lowerdir` (unless null) are C strings.
unsafe fn detached(fstype: &[u8], lowerdir: *const u8) -> isize {
    // SAFETY: valid C strings; the context fd is closed before returning.
    unsafe {
        let fs = sys(
            SYS_FSOPEN,
            [fstype.as_ptr() as usize, FSOPEN_CLOEXEC, 0, 0, 0, 0],
        );
        if fs < 0 {
            return fs;
        }
        let mut ok = lowerdir.is_null()
            || sys(
                SYS_FSCONFIG,
                [
                    fs as usize,
                    FSCONFIG_SET_STRING,
                    c"lowerdir".as_ptr() as usize,
                    lowerdir as usize,
                    0,
                    0,
                ],
            ) == 0;
        ok = ok && sys(SYS_FSCONFIG, [fs as usize, FSCONFIG_CMD_CREATE, 0, 0, 0, 0]) == 0;
        let mnt = if ok {
            sys(
                SYS_FSMOUNT,
                [fs as usize, FSMOUNT_CLOEXEC, MOUNT_ATTRS, 0, 0, 0],
            )
        } else {
            -1
        };
        sys(SYS_CLOSE, [fs as usize, 0, 0, 0, 0, 0]);
        mnt
    }
}

fn push_decimal(buf: &mut Buf, mut n: usize) {
    // The digits from the last (constant divisors: no division check, which
    // would need core's panic code, not linked into this crate's object).
    let mut space = core::mem::MaybeUninit::<[u8; 20]>::uninit();
    let digits = space.as_mut_ptr() as *mut u8;
    let mut k = 0;
    loop {
        // SAFETY: at most 20 digits in a usize.
        unsafe { digits.add(k).write_volatile(b'0' + (n % 10) as u8) };
        k += 1;
        n /= 10;
        if n == 0 || k == 20 {
            break;
        }
    }
    while k > 0 {
        k -= 1;
        // SAFETY: digit k was written above.
        buf.push(unsafe { digits.add(k) }, 1);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::ffi::CString;
    use std::vec::Vec;

    fn protects(line: &str) -> bool {
        let args: Vec<CString> = line.split(' ').map(|a| CString::new(a).unwrap()).collect();
        let mut argv: Vec<*const u8> = args.iter().map(|a| a.as_ptr() as *const u8).collect();
        argv.push(core::ptr::null());
        // SAFETY: a NULL-terminated vector of C strings.
        unsafe { super::needs_protection(argv.as_ptr()) }
    }

    #[test]
    fn the_commands_that_enter_a_container_are_told_from_their_arguments() {
        for yes in [
            "sbx-oci create --bundle b c1",
            "sbx-oci run c1",
            "sbx-oci exec c1 sh",
            "sbx-oci --root /r --log /l --log-format json create c1",
            "sbx-oci --root=/r --debug --systemd-cgroup run c1",
            "sbx-oci --rootless false --criu x exec c1 true",
            "sbx-oci sandbox run -- true",
            "sbx-oci --root /r sandbox create box",
            "sbx-oci sandbox exec box -- true",
        ] {
            assert!(protects(yes), "{yes}");
        }
        for no in [
            "sbx-oci",
            "sbx-oci state c1",
            "sbx-oci delete --force c1",
            "sbx-oci --root",
            "sbx-oci --root run",
            "sbx-oci sandbox list",
            "sbx-oci sandbox rm box",
            "sbx-oci sandbox",
            "sbx-oci --version",
            "sbx-oci -x run c1",
            "sbx-oci --unknown run c1",
            "sbx-oci runx c1",
            "sbx-oci spec",
        ] {
            assert!(!protects(no), "{no}");
        }
    }

    /// The test binary's own program headers, found as the entry finds
    /// them: through an initial stack (no arguments, no environment) whose
    /// auxiliary vector is the kernel's for this process.
    #[test]
    fn the_writable_segments_are_found_from_the_auxiliary_vector_and_populated() {
        let auxv = std::fs::read("/proc/self/auxv").unwrap();
        let mut stack: Vec<usize> = std::vec![0, 0, 0];
        stack.extend(
            auxv.chunks_exact(8)
                .map(|w| usize::from_ne_bytes(w.try_into().unwrap())),
        );
        // SAFETY: argc 0, argv's NULL, envp's NULL, then the auxiliary
        // vector (AT_NULL-terminated) describing this mapped image.
        let populated = unsafe { super::populate_writable(stack.as_ptr()) };
        // A PIE has one writable segment at least (its data and RELRO); a
        // wrong load bias would point madvise at unmapped addresses
        // (ENOMEM). Kernels before 5.14 have no MADV_POPULATE_WRITE.
        let (major, minor) = kernel();
        if (major, minor) >= (5, 14) {
            assert!(populated >= 1, "no writable segment populated");
        }
        // Nothing to find without the headers' address.
        let bare = [0usize, 0, 0, 0, 0];
        // SAFETY: an initial stack with an empty auxiliary vector.
        assert_eq!(unsafe { super::populate_writable(bare.as_ptr()) }, 0);
    }

    fn kernel() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next().unwrap().parse().unwrap();
        let minor = parts.next().unwrap().parse().unwrap();
        (major, minor)
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0usize, 7, 10, 99, 100, 1234567] {
            let mut space = core::mem::MaybeUninit::<[u8; 32]>::uninit();
            let mut buf = super::Buf::new(&mut space);
            super::push_decimal(&mut buf, n);
            // SAFETY: c_str terminates what push_decimal wrote.
            let s = unsafe { std::ffi::CStr::from_ptr(buf.c_str() as *const _) };
            assert_eq!(s.to_str().unwrap(), std::format!("{n}"));
        }
    }
}
