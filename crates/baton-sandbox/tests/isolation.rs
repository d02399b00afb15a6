//! Hostile commands in a real sandbox: each fails safely, is reported, and the next command runs.
//! Needs root (the sandbox is built with namespaces, mounts and cgroups).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_sandbox::{LocalSandbox, RunOutcome, RunRequest, Sandbox, SandboxConfig, Stopped};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        // Not under /tmp, which every sandbox replaces anyway: the data directory must be hidden by
        // its own protection.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        std::fs::create_dir_all(dir.path().join("data/tasks")).unwrap();
        std::fs::create_dir_all(dir.path().join("worktree")).unwrap();
        std::fs::write(dir.path().join("worktree/README"), "hello from the worktree\n").unwrap();
        std::fs::write(dir.path().join("data/secret"), "planted secret\n").unwrap();
        Fixture { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn sandbox(&self, task: &str, configure: impl FnOnce(&mut SandboxConfig)) -> LocalSandbox {
        let mut config = SandboxConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_baton-sandbox-init")), &self.data());
        configure(&mut config);
        let worktree = self.dir.path().join(format!("worktree-{task}"));
        if !worktree.exists() {
            std::fs::create_dir_all(&worktree).unwrap();
            std::fs::copy(self.dir.path().join("worktree/README"), worktree.join("README")).unwrap();
        }
        LocalSandbox::new(config, &self.data().join("tasks").join(task), &worktree, vec![]).unwrap()
    }
}

fn sh(sandbox: &dyn Sandbox, command: &str) -> RunOutcome {
    sandbox.run(&RunRequest::shell(command, Duration::from_secs(20))).unwrap()
}

fn text(outcome: &RunOutcome) -> String {
    outcome.output.text()
}

#[test]
fn a_command_runs_in_the_workspace_and_reports_its_exit() {
    let f = Fixture::new();
    let sandbox = f.sandbox("a", |_| {});
    let outcome = sh(&sandbox, "pwd; cat README; echo err >&2; exit 3");
    assert_eq!(outcome.exit_code, 3, "{}", text(&outcome));
    assert_eq!(text(&outcome), "/workspace\nhello from the worktree\nerr\n");
    assert_eq!(std::fs::read_to_string(&outcome.output_file).unwrap(), text(&outcome));
    assert_eq!(outcome.stopped, None);
    let outcome = sh(&sandbox, "echo $$; hostname; id -u");
    // The shell is the second process of its own pid namespace, on a host named `sandbox`, as root
    // (of its own user namespace).
    assert_eq!(text(&outcome), "2\nsandbox\n0\n");
    // Its own loopback works, for the servers a task's tests start.
    let local = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 8765)); s.listen(); socket.create_connection(('127.0.0.1', 8765)); print('loopback ok')";
    assert_eq!(text(&sh(&sandbox, &format!("python3 -c \"{local}\""))), "loopback ok\n");
}

#[test]
fn the_host_is_read_only_and_the_task_keeps_a_home_of_its_own() {
    let f = Fixture::new();
    let first = f.sandbox("one", |_| {});
    for path in ["/usr/local/bin/baton-probe", "/etc/baton-probe", "/var/baton-probe"] {
        let outcome = sh(&first, &format!("echo x > {path}"));
        assert!(text(&outcome).contains("Read-only file system"), "{path}: {}", text(&outcome));
        assert!(!Path::new(path).exists(), "the write reached the host");
    }
    let install = "mkdir -p ~/.local/bin && printf '#!/bin/sh\\necho installed\\n' > ~/.local/bin/probe && chmod +x ~/.local/bin/probe";
    let outcome = sh(&first, install);
    assert_eq!(outcome.exit_code, 0, "{}", text(&outcome));

    // The same task's next sandbox still has it; another task's never had it.
    let again = f.sandbox("one", |_| {});
    assert_eq!(text(&sh(&again, "~/.local/bin/probe")), "installed\n");
    let other = f.sandbox("two", |_| {});
    let outcome = sh(&other, "~/.local/bin/probe");
    assert_eq!(outcome.exit_code, 127, "{}", text(&outcome));
}

#[test]
fn an_environment_snapshot_is_a_read_only_layer_beneath_each_tasks_own() {
    let f = Fixture::new();
    // A build writes the snapshot's files into its home, and a cache into a directory kept apart.
    let cache = f.dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let mount = baton_sandbox::Mount { source: cache.clone(), target: PathBuf::from("/root/.cache/pip") };
    let build = f.sandbox("build", |_| {}).with_mounts(vec![mount]);
    let install = "mkdir -p ~/.local/bin ~/.cache/pip && printf '#!/bin/sh\\necho from the snapshot\\n' > ~/.local/bin/tool && chmod +x ~/.local/bin/tool && echo cached > ~/.cache/pip/wheel";
    let outcome = sh(&build, install);
    assert_eq!(outcome.exit_code, 0, "{}", text(&outcome));
    assert_eq!(std::fs::read_to_string(cache.join("wheel")).unwrap(), "cached\n");
    let snapshot = f.data().join("tasks/build/layer");
    assert!(!snapshot.join("hidden/root/.cache/pip/wheel").exists(), "the cache landed in the snapshot");

    // Two tasks over it: each sees its files, and what one changes is its own.
    let one = f.sandbox("over-one", |_| {}).with_lower(Some(snapshot.clone()));
    let two = f.sandbox("over-two", |_| {}).with_lower(Some(snapshot.clone()));
    assert_eq!(text(&sh(&one, "~/.local/bin/tool")), "from the snapshot\n");
    let outcome = sh(&one, "rm ~/.local/bin/tool && echo mine > ~/notes && ls -A ~/.local/bin; cat ~/notes");
    assert_eq!(text(&outcome), "mine\n");
    assert_eq!(text(&sh(&one, "test -e ~/.local/bin/tool || echo gone; cat ~/notes")), "gone\nmine\n");
    assert_eq!(text(&sh(&two, "~/.local/bin/tool; test -e ~/notes || echo none")), "from the snapshot\nnone\n");
    assert!(snapshot.join("hidden/root/.local/bin/tool").is_file(), "a task changed the snapshot");
    assert!(f.data().join("tasks/over-one/layer/hidden/root/notes").is_file());
    // The layers' staging place is gone, and the cache was the build's only.
    let outcome = sh(&one, "ls -A / | grep -c stage; test -e ~/.cache/pip/wheel || echo no cache");
    assert_eq!(text(&outcome), "0\nno cache\n");
}

#[test]
fn root_inside_is_an_unprivileged_id_outside_and_files_belong_to_the_user() {
    let f = Fixture::new();
    let sandbox = f.sandbox("ids", |_| {});
    let outcome = sh(&sandbox, "id -u; cat /proc/self/uid_map; touch made-inside; ls -ln made-inside README");
    let shown = text(&outcome);
    let mut lines = shown.lines();
    assert_eq!(lines.next(), Some("0"), "{shown}");
    let map: Vec<u64> = lines.next().unwrap().split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(map[0], 0, "{shown}");
    assert_ne!(map[1], 0, "root inside is root outside: {shown}");
    let me = rustix::process::geteuid().as_raw();
    if me != 0 {
        assert_eq!((map[1], map[2]), (u64::from(me), 1), "{shown}");
    }
    // Inside, the worktree is root's; on the host, what root inside made is the invoking user's.
    assert!(shown.lines().skip(2).all(|l| l.contains(" 0 0 ")), "{shown}");
    let made = f.dir.path().join("worktree-ids/made-inside");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&made).unwrap()), me);
}

#[test]
fn no_file_made_inside_carries_setuid_or_setgid_bits_to_the_host() {
    let f = Fixture::new();
    let sandbox = f.sandbox("suid", |_| {});
    let attempts = [
        "cp /bin/true t1 && chmod u+s t1",
        "cp /bin/true t2 && chmod g+s t2",
        "install -m 4755 /bin/true t3",
        "python3 -c 'import os; os.close(os.open(\"t4\", os.O_CREAT | os.O_WRONLY, 0o6755))'",
        "mkdir d && chmod 2775 d",
    ];
    for attempt in attempts {
        let outcome = sh(&sandbox, attempt);
        assert_ne!(outcome.exit_code, 0, "`{attempt}` worked: {}", text(&outcome));
    }
    for entry in std::fs::read_dir(f.dir.path().join("worktree-suid")).unwrap() {
        let mode = std::os::unix::fs::PermissionsExt::mode(&entry.as_ref().unwrap().metadata().unwrap().permissions());
        assert_eq!(mode & 0o6000, 0, "{:?} has mode {mode:o}", entry.unwrap().path());
    }
}

#[test]
fn the_kernel_and_the_terminal_are_out_of_reach() {
    let f = Fixture::new();
    let sandbox = f.sandbox("kernel", |_| {});
    std::fs::write(f.dir.path().join("worktree-kernel/attempts.py"), baton_testkit::hostile::KERNEL_ATTEMPTS).unwrap();
    let outcome = sh(&sandbox, "python3 attempts.py");
    let refusals = baton_testkit::hostile::unrefused(&text(&outcome));
    assert!(refusals.is_empty(), "{refusals:?}");
    // No terminal: no /dev/tty, and the sandbox is a session without a controlling one.
    let outcome = sh(&sandbox, "ls /dev; echo tty_nr=$(cut -d' ' -f7 /proc/self/stat)");
    let shown = text(&outcome);
    assert!(!shown.lines().any(|l| l == "tty"), "{shown}");
    assert!(shown.contains("tty_nr=0\n"), "{shown}");
    // What the host kernel tells about itself reads as empty (where this kernel has it at all).
    for file in ["kcore", "keys", "timer_list", "sched_debug"] {
        if Path::new("/proc").join(file).exists() {
            assert_eq!(text(&sh(&sandbox, &format!("wc -c < /proc/{file}"))), "0\n", "/proc/{file} is not masked");
        }
    }
}

#[test]
fn a_cpu_hog_is_held_at_its_share() {
    let f = Fixture::new();
    let sandbox = f.sandbox("cpu", |config| config.limits.cpu_millis = Some(100));
    let hog = sandbox
        .run(&RunRequest::shell("timeout 1 sh -c 'while :; do :; done'; true", Duration::from_secs(20)))
        .unwrap();
    match hog.cpu_throttled {
        Some(throttled) => assert!(throttled > Duration::ZERO, "a tenth of a core was never enforced"),
        // An ordinary user without a delegated cgroup has no cpu share to enforce; root always has.
        None => assert!(!rustix::process::geteuid().is_root(), "root ran without a cpu cgroup"),
    }
}

#[test]
fn baton_data_and_host_homes_are_invisible() {
    let f = Fixture::new();
    let secret = f.data().join("secret");
    let sandbox = f.sandbox("a", |_| {});
    let outcome = sh(&sandbox, &format!("cat {}", secret.display()));
    assert_ne!(outcome.exit_code, 0);
    assert!(text(&outcome).contains("No such file or directory"), "{}", text(&outcome));
    // Through a symlink in the worktree: it resolves inside the sandbox, where the file is not.
    std::os::unix::fs::symlink(&secret, f.dir.path().join("worktree-a/link")).unwrap();
    let outcome = sh(&sandbox, "cat link");
    assert!(text(&outcome).contains("No such file or directory"), "{}", text(&outcome));
    // The host's home is a directory of the task's own, showing at most the host's Rust toolchain
    // (read-only), never the rest of the host's home.
    let outcome = sh(&sandbox, "ls -A /root; ls -A /root/.cargo 2>/dev/null; echo --; ls -A /home | wc -l");
    let shown = text(&outcome);
    let (root, home) = shown.split_once("--\n").unwrap();
    assert!(root.lines().all(|entry| [".cargo", ".rustup", "bin"].contains(&entry)), "{root}");
    assert_eq!(home, "0\n");
}

#[test]
fn no_network_not_even_the_host_loopback() {
    let f = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let sandbox = f.sandbox("a", |_| {});
    let outcome = sh(&sandbox, &format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"));
    assert_ne!(outcome.exit_code, 0, "{}", text(&outcome));
    assert!(!text(&outcome).contains("connected"));
    assert!(listener.accept().is_err(), "the sandbox reached the host's loopback");
}

#[test]
fn other_processes_mounts_devices_and_new_namespaces_are_out_of_reach() {
    let f = Fixture::new();
    let sandbox = f.sandbox("a", |_| {});
    let me = std::process::id();
    let outcome = sh(&sandbox, &format!("kill -9 {me} 2>&1; ls /proc | grep -c '^[0-9]'"));
    assert!(text(&outcome).contains("No such process"), "{}", text(&outcome));
    let processes: u32 = text(&outcome).lines().last().unwrap().trim().parse().unwrap();
    assert!(processes <= 5, "the sandbox sees {processes} processes");
    // Mounting, tracing and new namespaces are refused.
    for command in ["mount -t tmpfs none /mnt", "unshare -m true", "mknod /tmp/sda b 8 0"] {
        let outcome = sh(&sandbox, command);
        assert_ne!(outcome.exit_code, 0, "`{command}` worked: {}", text(&outcome));
    }
}

#[test]
fn git_metadata_is_read_only() {
    let f = Fixture::new();
    let gitdir = f.dir.path().join("repo.git");
    std::fs::create_dir_all(gitdir.join("hooks")).unwrap();
    let worktree = f.dir.path().join("worktree-g");
    std::fs::create_dir_all(&worktree).unwrap();
    std::fs::write(worktree.join(".git"), format!("gitdir: {}\n", gitdir.display())).unwrap();
    let config = SandboxConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_baton-sandbox-init")), &f.data());
    let sandbox = LocalSandbox::new(config, &f.data().join("tasks/g"), &worktree, vec![gitdir.clone()]).unwrap();
    let hook = gitdir.join("hooks/pre-commit");
    let outcome =
        sh(&sandbox, &format!("echo evil > {}; echo 'gitdir: /tmp' > .git; ls {}", hook.display(), gitdir.display()));
    assert!(text(&outcome).matches("Read-only file system").count() == 2, "{}", text(&outcome));
    assert!(!hook.exists());
    assert!(std::fs::read_to_string(worktree.join(".git")).unwrap().contains("repo.git"));
}

#[test]
fn runaway_commands_are_stopped_with_a_reason() {
    let f = Fixture::new();
    let sandbox = f.sandbox("a", |config| {
        config.limits.processes = Some(64);
        config.limits.memory_bytes = Some(256 << 20);
        config.max_output_bytes = 8 << 20;
    });

    let forever = sandbox.run(&RunRequest::shell("echo started; sleep infinity", Duration::from_millis(500))).unwrap();
    assert_eq!(forever.stopped, Some(Stopped::Timeout));
    assert_eq!(text(&forever), "started\n");

    let flood = sh(&sandbox, "yes baton | head -c 1073741824");
    assert_eq!(flood.stopped, Some(Stopped::OutputLimit));
    let spooled = std::fs::metadata(&flood.output_file).unwrap().len();
    assert!((8 << 20..=(8 << 20) + (64 << 10)).contains(&spooled), "the spool holds {spooled} bytes");
    assert!(flood.output.total_bytes > 8 << 20 && flood.output.total_bytes < 1 << 30, "{}", flood.output.total_bytes);
    assert!(text(&flood).contains("bytes omitted"));

    let bomb = sh(&sandbox, "bomb() { bomb | bomb & }; bomb; sleep 1; echo survived");
    assert!(
        text(&bomb).contains("Resource temporarily unavailable") || text(&bomb).contains("retry"),
        "{}",
        text(&bomb)
    );

    // Memory-backed files count too: /tmp holds at most half the memory limit.
    let filled = sh(&sandbox, "head -c 300M /dev/zero > /tmp/fill; echo exit=$?; du -m /tmp/fill | cut -f1");
    assert!(text(&filled).contains("No space left on device"), "{}", text(&filled));

    let hog = sh(&sandbox, "python3 -c 'x = bytearray(1 << 30); print(len(x))'");
    assert_ne!(hog.exit_code, 0, "{}", text(&hog));
    assert!(text(&hog).contains("MemoryError") || hog.out_of_memory, "{} / oom {}", text(&hog), hog.out_of_memory);

    // None of it got in the way of the next command.
    assert_eq!(text(&sh(&sandbox, "echo still fine")), "still fine\n");
    assert!(no_process_with(&format!("{}", f.dir.path().display())), "a sandboxed process outlived its run");
}

/// True if no process on the host has `needle` in its command line.
fn no_process_with(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().filter_map(Result::ok).all(|entry| {
        let mut cmdline = String::new();
        let _ = std::fs::File::open(entry.path().join("cmdline")).and_then(|mut f| f.read_to_string(&mut cmdline));
        !cmdline.contains(needle) || entry.file_name() == std::process::id().to_string().as_str()
    })
}

#[test]
fn the_allow_list_lets_listed_hosts_through_the_proxy_and_records_the_rest() {
    let f = Fixture::new();
    // The "registry" is a server on the host's loopback; the proxy is told its address.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = upstream.local_addr().unwrap();
    let served = std::thread::spawn(move || {
        let (mut connection, _) = upstream.accept().unwrap();
        let mut request = vec![0; 4096];
        let read = connection.read(&mut request).unwrap();
        std::io::Write::write_all(
            &mut connection,
            b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\nsimple index\r\n",
        )
        .unwrap();
        String::from_utf8_lossy(&request[..read]).into_owned()
    });
    let sandbox = f.sandbox("net", |config| {
        config.network = Some(baton_sandbox::EgressPolicy {
            allow: vec!["registry.test".into(), "localhost".into()],
            resolve: vec![("registry.test".into(), address)],
        });
    });
    let port = address.port();
    let request = |line: &str| {
        format!("exec 3<>/dev/tcp/127.0.0.1/3128 && printf '{line}\\r\\nHost: x\\r\\n\\r\\n' >&3 && cat <&3")
    };

    let allowed = sh(&sandbox, &request(&format!("GET http://registry.test:{port}/simple/ HTTP/1.1")));
    assert!(text(&allowed).ends_with("simple index\r\n"), "{}", text(&allowed));
    let upstream_saw = served.join().unwrap();
    assert!(
        upstream_saw.starts_with("GET /simple/ HTTP/1.1\r\n") && upstream_saw.contains("Connection: close"),
        "{upstream_saw}"
    );
    // The Host the allow-list judged, not the client's own (domain fronting).
    assert!(upstream_saw.contains(&format!("Host: registry.test:{port}\r\n")), "{upstream_saw}");
    assert!(!upstream_saw.contains("Host: x"), "{upstream_saw}");
    // An allowed name that DNS points at the host's loopback does not reach it.
    let rebound = sh(&sandbox, &request(&format!("GET http://localhost:{port}/ HTTP/1.1")));
    assert!(text(&rebound).contains("which is not a public address"), "{}", text(&rebound));

    let denied = sh(&sandbox, &request("CONNECT evil.test:443 HTTP/1.1"));
    assert!(text(&denied).starts_with("HTTP/1.1 403 Forbidden"), "{}", text(&denied));
    let denied = sh(&sandbox, &request("GET http://evil.test/steal HTTP/1.1"));
    assert!(text(&denied).contains("evil.test:80 is not on this task's network allow-list"), "{}", text(&denied));
    let refused: Vec<(String, u16)> =
        sandbox.take_refused_connections().into_iter().map(|r| (r.host, r.port)).collect();
    assert_eq!(refused, [("evil.test".to_owned(), 443), ("evil.test".to_owned(), 80)]);
    assert!(sandbox.take_refused_connections().is_empty(), "a refusal is reported once");

    // The proxy variables are set for the command's tools.
    assert_eq!(text(&sh(&sandbox, "echo $https_proxy")), "http://127.0.0.1:3128\n");
}

#[test]
fn the_host_rust_toolchain_is_usable_but_not_the_cargo_credentials() {
    let f = Fixture::new();
    let sandbox = f.sandbox("rust", |_| {});
    let home = std::env::var("HOME").unwrap();
    let worktree = f.dir.path().join("worktree-rust");
    std::fs::create_dir_all(worktree.join("src")).unwrap();
    std::fs::write(
        worktree.join("Cargo.toml"),
        "[package]\nname = \"calc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        worktree.join("src/lib.rs"),
        "pub fn add(a: i32, b: i32) -> i32 { a + b }\n#[test]\nfn adds() { assert_eq!(add(2, 3), 5); }\n",
    )
    .unwrap();
    let outcome = sandbox
        .run(&RunRequest::shell("cargo test --offline --lib 2>&1 | tail -n 3", Duration::from_secs(300)))
        .unwrap();
    assert!(text(&outcome).contains("test result: ok. 1 passed"), "{}", text(&outcome));
    let credentials = sh(&sandbox, &format!("ls {home}/.cargo; ls {home}/.cargo/bin | grep -c cargo"));
    assert!(!text(&credentials).contains("credentials"), "{}", text(&credentials));
}

#[test]
fn a_homes_toolchains_are_shown_and_its_cargo_credentials_are_not() {
    let f = Fixture::new();
    // A home of its own, with a rustup toolchain, a cargo proxy and registry credentials beside it.
    let home = f.dir.path().join("home-of-a-user");
    std::fs::create_dir_all(home.join(".rustup/toolchains/stable/bin")).unwrap();
    std::fs::create_dir_all(home.join(".cargo/bin")).unwrap();
    std::fs::write(home.join(".rustup/toolchains/stable/bin/rustc"), "not a real rustc\n").unwrap();
    let proxy = home.join(".cargo/bin/cargo-proxy");
    std::fs::write(&proxy, "#!/bin/sh\necho the proxy ran\n").unwrap();
    std::fs::set_permissions(&proxy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(home.join(".cargo/credentials.toml"), "[registry]\ntoken = \"planted-token\"\n").unwrap();
    std::fs::write(home.join("notes"), "private notes\n").unwrap();
    let init = PathBuf::from(env!("CARGO_BIN_EXE_baton-sandbox-init"));
    let config = SandboxConfig::for_home(init, &f.data(), Some(home.clone()));
    let worktree = f.dir.path().join("worktree-home");
    std::fs::create_dir_all(&worktree).unwrap();
    let sandbox = LocalSandbox::new(config, &f.data().join("tasks/home"), &worktree, vec![]).unwrap();
    let home = home.display();
    let seen = sh(&sandbox, &format!("cargo-proxy; cat {home}/.rustup/toolchains/stable/bin/rustc"));
    assert_eq!(text(&seen), "the proxy ran\nnot a real rustc\n");
    let hidden = sh(&sandbox, &format!("cat {home}/.cargo/credentials.toml {home}/notes 2>&1; ls -A {home}/.cargo"));
    assert!(!text(&hidden).contains("planted-token") && !text(&hidden).contains("private notes"), "{}", text(&hidden));
    assert_eq!(text(&hidden).lines().last(), Some("bin"), "{}", text(&hidden));
}

/// Processes whose command line is exactly `argv`.
fn running(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|arg| arg.bytes().chain([0])).collect();
    let entries = std::fs::read_dir("/proc").unwrap().filter_map(Result::ok);
    let pids = entries.filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()));
    pids.filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| cmdline == wanted)).collect()
}

#[test]
fn a_command_run_to_its_end_dies_with_the_process_that_started_it() {
    let f = Fixture::new();
    let layer = f.dir.path().join("layer-orphan");
    std::fs::create_dir_all(&layer).unwrap();
    let marker = format!("299.{}", std::process::id());
    let spec = baton_sandbox::InitSpec {
        layer,
        workspace: f.dir.path().join("worktree"),
        workspace_read_only: false,
        read_only: vec![],
        writable: vec![],
        hidden: vec![f.data()],
        lower: None,
        mounts: vec![],
        cgroups: vec![],
        limits: baton_sandbox::Limits::default(),
        argv: vec!["sleep".into(), marker.clone()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/workspace".into(),
        proxy_socket: None,
    };
    // The starter stands for baton: it starts the sandbox, waits for it, and is killed outright.
    let init = env!("CARGO_BIN_EXE_baton-sandbox-init");
    let mut starter = std::process::Command::new("sh")
        .args(["-c", "\"$0\" & wait", init])
        .env(baton_sandbox::SPEC_VARIABLE, serde_json::to_string(&spec).unwrap())
        .spawn()
        .unwrap();
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        for _ in 0..600 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what}");
    };
    wait_for("the sandboxed command never started", &|| !running(&["sleep", &marker]).is_empty());
    starter.kill().unwrap();
    starter.wait().unwrap();
    wait_for("the sandboxed command outlived the process that started it", &|| running(&["sleep", &marker]).is_empty());
}
