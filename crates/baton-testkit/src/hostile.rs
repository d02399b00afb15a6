//! What a hostile agent tries against the kernel from inside a sandbox, and how to read the result:
//! shared by the sandbox's own tests and the tests that attack it through `baton run`.

/// A Python script that attempts each call and prints `name errno` (0 when it succeeded). Run it
/// inside the sandbox; nothing it attempts writes anything (the files are only opened).
pub const KERNEL_ATTEMPTS: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def attempt(name, number, *args):
    result = libc.syscall(number, *[ctypes.c_long(a) for a in args])
    if result == 0 and name == "clone-newuser":
        os._exit(0)  # the child of a clone that worked
    print(name, 0 if result >= 0 else ctypes.get_errno(), flush=True)
SIGCHLD, CLONE_NEWUSER, CLONE_NEWNET = 17, 0x10000000, 0x40000000
attempt("clone-newuser", 56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
attempt("clone-newnet", 56, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0)
params = ctypes.create_string_buffer(120)
attempt("io_uring_setup", 425, 4, ctypes.addressof(params))
attempt("x32-getpid", 0x40000000 | 39)
attempt("personality-no-aslr", 135, 0x0040000)
attempt("clone3", 435, 0, 0)
attempt("kcmp", 312, os.getpid(), 1, 0, 0, 0)
attempt("pidfd_getfd", 438, 0, 0, 0)
attempt("tiocsti", 16, 0, 0x5412, ctypes.addressof(ctypes.create_string_buffer(b"x")))
for path in ["/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger", "/proc/sys/vm/drop_caches"]:
    try:
        os.close(os.open(path, os.O_WRONLY))
        print(path, 0)
    except OSError as e:
        print(path, e.errno)
"#;

const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const EACCES: i32 = 13;
const EROFS: i32 = 30;
const ENOSYS: i32 = 38;

/// What each attempt must get: seccomp's EPERM, ENOSYS for `clone3` (so libc falls back to a
/// `clone` the filter can judge), and a refusal to open the kernel's knobs for writing (ENOENT for
/// a trigger this kernel does not have).
const EXPECTED: &[(&str, &[i32])] = &[
    ("clone-newuser", &[EPERM]),
    ("clone-newnet", &[EPERM]),
    ("io_uring_setup", &[EPERM]),
    ("x32-getpid", &[EPERM]),
    ("personality-no-aslr", &[EPERM]),
    ("clone3", &[ENOSYS]),
    ("kcmp", &[EPERM]),
    ("pidfd_getfd", &[EPERM]),
    ("tiocsti", &[EPERM]),
    ("/proc/sys/kernel/core_pattern", &[EACCES, EROFS]),
    ("/proc/sysrq-trigger", &[EACCES, EROFS, ENOENT]),
    ("/proc/sys/vm/drop_caches", &[EACCES, EROFS]),
];

/// The attempts in `output` (of [`KERNEL_ATTEMPTS`]) that were not refused as they must be, or did
/// not report at all: empty when the sandbox held.
pub fn unrefused(output: &str) -> Vec<String> {
    EXPECTED
        .iter()
        .filter_map(|(name, allowed)| {
            let reported = output.lines().find_map(|line| line.strip_prefix(&format!("{name} ")));
            match reported.and_then(|code| code.trim().parse::<i32>().ok()) {
                Some(code) if allowed.contains(&code) => None,
                Some(code) => Some(format!("{name}: errno {code}, expected one of {allowed:?}")),
                None => Some(format!("{name}: no result in {output:?}")),
            }
        })
        .collect()
}
