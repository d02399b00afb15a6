//! The system calls a sandboxed process may not make. A deny-list with argument filters, after
//! the arguments below; everything not named is allowed.
//!
//! Why not an allow-list: the sandbox runs whatever a repository's build needs (compilers,
//! package managers, language runtimes, test servers), and each new runtime reaches for calls an
//! allow-list would have to learn (Docker's default profile allows about 350). What matters is
//! that every way out or around is closed, and the user namespace already takes away what root
//! could do to the host; this filter removes the kernel surface that namespace still exposes:
//!
//! - calls that act on the kernel or other processes (mounts, modules, tracing, keys, BPF,
//!   `perf_event_open`, `kcmp`, `pidfd_getfd`, `process_vm_*`, reboot, clocks, swap);
//! - new namespaces: `unshare`, `setns`, and `clone` with a namespace flag (a new user namespace
//!   would give back the capabilities this sandbox dropped, and with them nf_tables and other
//!   code that is usually what a local exploit attacks); `clone3` answers ENOSYS, since its flags
//!   are behind a pointer no filter can read (libc then falls back to `clone`);
//! - io_uring, whose operations bypass every filter here;
//! - `personality` except the flags ordinary programs set;
//! - setuid and setgid bits: `chmod` and friends, and file creation, with either bit are refused,
//!   so no file the agent makes carries a privilege out to the host; `openat2` (whose mode is
//!   behind a pointer) answers ENOSYS, so callers fall back to `openat`;
//! - `TIOCSTI` and `TIOCLINUX`, which push keystrokes into a terminal;
//! - on x86-64, every call of the x32 ABI (`nr | 0x40000000`), which would otherwise skip every
//!   rule keyed by the native numbers.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch, sock_filter,
};

/// Denied whatever their arguments.
const DENIED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_init_module,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_quotactl,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_keyctl,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_perf_event_open,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_bpf,
    libc::SYS_userfaultfd,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// Answered "not implemented", so that libc and runtimes fall back to a call this filter can judge.
const NOT_IMPLEMENTED: &[i64] = &[libc::SYS_clone3, libc::SYS_openat2];

const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

/// `personality` values ordinary programs use (Docker's list): query, Linux, and Linux with the
/// 32-bit address or uname quirks.
const PERSONALITIES: &[u64] = &[0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// Calls that take a file mode, and the index of that argument.
const MODE_ARGUMENTS: &[(i64, u8)] = &[
    (libc::SYS_chmod, 1),
    (libc::SYS_fchmod, 1),
    (libc::SYS_fchmodat, 2),
    (libc::SYS_fchmodat2, 2),
    (libc::SYS_open, 2),
    (libc::SYS_openat, 3),
    (libc::SYS_creat, 1),
    (libc::SYS_mknod, 1),
    (libc::SYS_mknodat, 2),
];

const TERMINAL_INJECTION: &[u64] = &[libc::TIOCSTI, libc::TIOCLINUX];

/// A rule that matches when every `(argument, width, operator, value)` does.
fn rule(conditions: &[(u8, SeccompCmpArgLen, SeccompCmpOp, u64)]) -> Result<SeccompRule, String> {
    let conditions = conditions
        .iter()
        .map(|(index, width, operator, value)| SeccompCondition::new(*index, width.clone(), operator.clone(), *value))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("seccomp condition: {e}"))?;
    SeccompRule::new(conditions).map_err(|e| format!("seccomp rule: {e}"))
}

/// A rule that matches when `argument & flag` is `flag`.
fn has_flag(index: u8, flag: u64) -> Result<SeccompRule, String> {
    rule(&[(index, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)])
}

fn rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|number| (*number, vec![])).collect();
    // On x86-64 the flags are clone's first argument.
    rules.insert(libc::SYS_clone, NAMESPACE_FLAGS.iter().map(|flag| has_flag(0, *flag)).collect::<Result<_, _>>()?);
    let unusual: Vec<_> =
        PERSONALITIES.iter().map(|value| (0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, *value)).collect();
    rules.insert(libc::SYS_personality, vec![rule(&unusual)?]);
    for (number, index) in MODE_ARGUMENTS {
        let bits = [libc::S_ISUID as u64, libc::S_ISGID as u64].iter().map(|bit| has_flag(*index, *bit));
        rules.insert(*number, bits.collect::<Result<_, _>>()?);
    }
    let ioctls = TERMINAL_INJECTION
        .iter()
        .map(|request| rule(&[(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *request)]))
        .collect::<Result<_, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctls);
    Ok(rules)
}

fn errno(code: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | code as u32
}

/// Instructions run before seccompiler's program: on this architecture, an x32 call is refused
/// and the [`NOT_IMPLEMENTED`] calls answer ENOSYS; anything else (another architecture too) goes
/// on to the program, whose first check kills a process of the wrong architecture.
#[cfg(target_arch = "x86_64")]
fn prefix(program_len: usize) -> Vec<sock_filter> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const JA: u16 = 0x05;
    const RET_K: u16 = 0x06;
    const ARCH_OFFSET: u32 = 4;
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let jump = |code, k, jt: usize, jf: usize| sock_filter { code, jt: jt as u8, jf: jf as u8, k };
    let stmt = |code, k| sock_filter { code, jt: 0, jf: 0, k };
    let n = NOT_IMPLEMENTED.len();
    // Layout: [ld arch, jeq, ld nr, jge x32, jeq × n, ja program, ret ENOSYS, ret EPERM].
    let mut out = vec![
        stmt(LD_W_ABS, ARCH_OFFSET),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 0, n + 5),
        stmt(LD_W_ABS, 0),
        jump(JGE_K, X32_SYSCALL_BIT, n + 2, 0),
    ];
    for (i, number) in NOT_IMPLEMENTED.iter().enumerate() {
        out.push(jump(JEQ_K, *number as u32, n - i, 0));
    }
    out.push(stmt(JA, 2));
    out.push(stmt(RET_K, errno(libc::ENOSYS)));
    out.push(stmt(RET_K, errno(libc::EPERM)));
    debug_assert!(out.len() + program_len < 4096);
    out
}

#[cfg(not(target_arch = "x86_64"))]
fn prefix(_program_len: usize) -> Vec<sock_filter> {
    Vec::new()
}

/// The whole filter.
pub(crate) fn program() -> Result<BpfProgram, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("seccomp: {e}"))?;
    let filter = SeccompFilter::new(rules()?, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .map_err(|e| format!("seccomp filter: {e}"))?;
    let program: BpfProgram = filter.try_into().map_err(|e| format!("seccomp program: {e}"))?;
    let mut whole = prefix(program.len());
    whole.extend(program);
    Ok(whole)
}

/// Installs the filter on the calling process; it is inherited by everything it starts.
pub(crate) fn install() -> Result<(), String> {
    seccompiler::apply_filter(&program()?).map_err(|e| format!("installing seccomp: {e}"))
}
