//! Three `baton worker` processes, each on a host of its own (a network and a UTS namespace: its
//! own link, address and hostname, reaching the database and the model server only through relays
//! on that link), one PostgreSQL database and one git remote (`file://`); a `baton serve --slots 0`
//! front end takes the tasks in over the API and runs none. Thirty scripted tasks all end
//! verified, each exactly once; one worker is killed with SIGKILL mid-task and its tasks are taken
//! over once their leases expire; another is frozen (SIGSTOP) past its lease and, woken, has its
//! late writes refused by the fence. No tool call that finished ran twice.
//!
//! Needs root (namespaces and links) and `BATON_TEST_POSTGRES` (`scripts/test` starts a cluster).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use baton_core::{Event, Status, StopReason, TaskId};
use baton_store::{SqlStore, Store};
use baton_testkit::model::{Script, ScriptedServer};
use common::served::{Served, serve_with_env};
use serde_json::json;

const TASKS: usize = 30;
const STEPS: usize = 4;
/// Short, so that a dead or frozen worker's tasks move on within seconds.
const LEASE_SECS: &str = "3";

/// Each task: STEPS shell steps (each sleeps, so that kills land mid-step), then finish; any
/// worker's request for any task gets its next step.
fn script() -> Script {
    let command = |n, k| format!("sleep 0.6; echo {k} >> progress; echo ran-{n}-{k}");
    common::stepping(TASKS, STEPS, |n| format!("stepping task {n}."), command)
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// Forwards every connection to `listen` on to `target`, for as long as the test runs.
async fn relay(listen: SocketAddr, target: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    let bound = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    bound
}

/// A host of its own: a process holding a network and a UTS namespace, linked to this one by a
/// veth pair on 10.231.N.0/24 (this side .1, the host .2), named `worker-N`.
struct Host {
    holder: Child,
    name: String,
    gateway: Ipv4Addr,
}

impl Host {
    fn new(n: u8) -> Host {
        let holder = Command::new("unshare").args(["--net", "--uts", "sleep", "infinity"]).spawn().unwrap();
        let pid = holder.id().to_string();
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{pid}/ns/net")).ok().is_none_or(|ns| ns == ours) {
            assert!(Instant::now() < deadline, "the host's namespaces never came");
            std::thread::sleep(Duration::from_millis(10));
        }
        let name = format!("worker-{n}");
        // Unique among concurrent runs, and within the 15 characters a link name may have.
        let tag = std::process::id() % 100_000;
        let (outside, inside) = (format!("bwo{tag}{n}"), format!("bwi{tag}{n}"));
        let gateway = Ipv4Addr::new(10, 231, n, 1);
        run("ip", &["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
        run("ip", &["link", "set", &inside, "netns", &pid]);
        run("ip", &["addr", "add", &format!("{gateway}/24"), "dev", &outside]);
        run("ip", &["link", "set", &outside, "up"]);
        let within = |args: &[&str]| {
            let mut all = vec!["-t", pid.as_str(), "-n", "-u", "--"];
            all.extend_from_slice(args);
            run("nsenter", &all);
        };
        within(&["ip", "addr", "add", &format!("10.231.{n}.2/24"), "dev", &inside]);
        within(&["ip", "link", "set", &inside, "up"]);
        within(&["ip", "link", "set", "lo", "up"]);
        within(&["hostname", &name]);
        Host { holder, name, gateway }
    }

    /// `baton worker` on this host, its output in `home/worker.log`.
    fn worker(&self, home: &Path, store: &str, model: SocketAddr) -> Child {
        std::fs::create_dir_all(home).unwrap();
        std::fs::write(home.join("config.toml"), "").unwrap();
        let baton = Command::cargo_bin("baton").unwrap();
        let log = std::fs::File::create(home.join("worker.log")).unwrap();
        let pid = self.holder.id().to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "-n", "-u", "--"])
            .arg(baton.get_program())
            .args(["worker", "--slots", "2", "--lease-secs", LEASE_SECS])
            .env("BATON_HOME", home)
            .env("BATON_CONFIG", home.join("config.toml"))
            .env("BATON_STORE", store)
            .env("OPENAI_COMPATIBLE_BASE_URL", format!("http://{model}/v1"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // The namespace, and with it both ends of the link, goes with its last process.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A worker process, stopped for good when dropped (continued first, should it be frozen).
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Unmounts, when dropped, whatever is still mounted beneath its directory: the task disks of the
/// killed worker, which no restart takes up here.
struct UnmountBeneath(std::path::PathBuf);

impl Drop for UnmountBeneath {
    fn drop(&mut self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut beneath: Vec<&str> = mounts
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|at| Path::new(at).starts_with(&self.0))
            .collect();
        beneath.sort_by_key(|at| std::cmp::Reverse(at.len()));
        for at in beneath {
            let _ = Command::new("umount").args(["--lazy", at]).status();
        }
    }
}

fn signal(child: &Child, signal: &str) {
    run("kill", &[signal, &child.id().to_string()]);
}

fn now() -> baton_core::Timestamp {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    baton_core::Timestamp(millis as i64)
}

/// Records, until the test ends, every host seen holding each task's lease.
fn watch_holders(store: SqlStore) -> std::sync::Arc<std::sync::Mutex<BTreeMap<TaskId, BTreeSet<String>>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<TaskId, BTreeSet<String>>::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            if let Ok(live) = store.live_leases(now()).await {
                let mut record = record.lock().unwrap();
                for lease in live {
                    let host = lease.holder.split(':').next().unwrap_or_default().to_owned();
                    record.entry(lease.task).or_default().insert(host);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    seen
}

/// The live leases held on `host`, once there is one on a task past its first step.
async fn mid_task_on(store: &SqlStore, host: &str) -> Vec<baton_store::Lease> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let held: Vec<_> = store
            .live_leases(now())
            .await
            .unwrap()
            .into_iter()
            .filter(|lease| lease.holder.starts_with(&format!("{host}:")))
            .collect();
        for lease in &held {
            let events = store.events(&lease.task, 0).await.unwrap();
            if events.iter().filter(|r| matches!(r.event, Event::ToolCallFinished { .. })).count() >= 1 {
                return held;
            }
        }
        assert!(Instant::now() < deadline, "{host} never ran a task past its first step");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_hosts_of_their_own_run_thirty_tasks_once_through_a_kill_and_a_freeze() {
    let root = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&root.stdout).trim(), "0", "needs root: network namespaces and links");
    let database = baton_testkit::postgres::database().await;
    let migrated = common::served::baton(Path::new("/nonexistent")).args(["--store", &database, "migrate"]).output();
    assert!(migrated.unwrap().status.success());
    let store = SqlStore::connect(&database).await.unwrap();
    let cluster: SocketAddr = {
        let url = url::Url::parse(&database).unwrap();
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap()).parse().unwrap()
    };

    let model = ScriptedServer::start(script()).await.unwrap();
    let model_addr: SocketAddr = model.url().trim_start_matches("http://").parse().unwrap();
    let fixture = common::calc_repo();
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let _unmount = UnmountBeneath(scratch.path().to_owned());
    let remote = scratch.path().join("remote.git");
    run("git", &["clone", "--quiet", "--bare", &fixture.path().display().to_string(), &remote.display().to_string()]);

    // The front end, on this host: the API, no slots.
    let front = scratch.path().join("front");
    std::fs::create_dir_all(&front).unwrap();
    std::fs::write(front.join("config.toml"), "").unwrap();
    let made = common::served::baton(&front)
        .args(["--store", &database, "token", "create", "--name", "test-admin", "--scope", "admin"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", common::describe(&made));
    std::fs::write(front.join("test-admin-secret"), String::from_utf8(made.stdout).unwrap().trim()).unwrap();
    let served: Served = serve_with_env(&front, &model, &["--slots", "0"], &[("BATON_STORE", database.as_str())]);

    let mut hosts = Vec::new();
    let mut workers = Vec::new();
    for n in 1..=3u8 {
        let host = Host::new(n);
        let to_database = relay(SocketAddr::new(host.gateway.into(), 0), cluster).await;
        let to_model = relay(SocketAddr::new(host.gateway.into(), 0), model_addr).await;
        let mut url = url::Url::parse(&database).unwrap();
        url.set_host(Some(&to_database.ip().to_string())).unwrap();
        url.set_port(Some(to_database.port())).unwrap();
        workers.push(Worker(host.worker(&scratch.path().join(&host.name), url.as_str(), to_model)));
        hosts.push(host);
    }

    let holders = watch_holders(SqlStore::connect(&database).await.unwrap());
    let repo_url = format!("file://{}", remote.display());
    let mut ids = Vec::new();
    for n in 0..TASKS {
        let body =
            json!({"request": format!("stepping task {n}."), "repo": repo_url, "checks": ["true"], "review": false});
        ids.push(TaskId::parse(&served.create(&body).await).unwrap());
    }

    // worker-1 dies mid-task: its tasks wait for their leases to expire, then others take them.
    let killed = mid_task_on(&store, "worker-1").await;
    signal(&workers[0].0, "-KILL");
    // worker-2 freezes mid-task, past its lease, until each of its tasks is someone else's.
    let frozen = mid_task_on(&store, "worker-2").await;
    signal(&workers[1].0, "-STOP");
    let deadline = Instant::now() + Duration::from_secs(180);
    for lease in &frozen {
        loop {
            let now = store.lease(&lease.task).await.unwrap().unwrap();
            if now.epoch > lease.epoch && !now.holder.starts_with("worker-2:") {
                break;
            }
            assert!(Instant::now() < deadline, "task {} was never taken from the frozen worker", lease.task);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    signal(&workers[1].0, "-CONT");

    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = store.list(Some(Status::Done)).await.unwrap().len();
        if done == TASKS {
            break;
        }
        for status in [Status::Paused, Status::Failed, Status::Cancelled, Status::Waiting] {
            let stopped = store.list(Some(status)).await.unwrap();
            assert!(stopped.is_empty(), "a task is {status}: {stopped:?}");
        }
        assert!(Instant::now() < deadline, "only {done} of {TASKS} ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for id in &ids {
        let journal = store.events(id, 0).await.unwrap();
        let finished: Vec<_> = journal.iter().filter(|r| matches!(r.event, Event::Finished { .. })).collect();
        assert_eq!(finished.len(), 1, "task {id} finished once");
        assert!(matches!(finished[0].event, Event::Finished { reason: StopReason::Verified, .. }), "task {id}");
        // No step whose call finished was run again: each command's calls finished once at most.
        let commands: BTreeMap<&str, &str> = journal
            .iter()
            .filter_map(|r| match &r.event {
                Event::ToolCallStarted { call_id, arguments, name, .. } if name == "shell" => {
                    Some((call_id.as_str(), arguments.as_str()))
                }
                _ => None,
            })
            .collect();
        let mut finished_commands = BTreeSet::new();
        for recorded in &journal {
            if let Event::ToolCallFinished { call_id, .. } = &recorded.event
                && let Some(command) = commands.get(call_id.as_str())
            {
                assert!(finished_commands.insert(*command), "task {id} ran {command} twice");
            }
        }
        assert_eq!(finished_commands.len(), STEPS, "task {id} finished each of its steps: {finished_commands:?}");
    }
    // The killed worker's tasks and the frozen one's went on under a later epoch, elsewhere.
    for lease in killed.iter().chain(&frozen) {
        let last = store.lease(&lease.task).await.unwrap().unwrap();
        assert!(last.epoch > lease.epoch, "task {} was taken over: {last:?}", lease.task);
    }
    // The frozen worker, woken, wrote nothing more for them: the fence refused it.
    let log = std::fs::read_to_string(scratch.path().join("worker-2/worker.log")).unwrap();
    for lease in &frozen {
        let refused = format!("task {}: the lease of epoch {} is no longer held", lease.task, lease.epoch);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut log = log.clone();
        while !log.contains(&refused) {
            assert!(Instant::now() < deadline, "worker-2 never had a write refused for {}:\n{log}", lease.task);
            tokio::time::sleep(Duration::from_millis(100)).await;
            log = std::fs::read_to_string(scratch.path().join("worker-2/worker.log")).unwrap();
        }
    }
    // Every task's branch is on the one remote, pushed at its checkpoints.
    let branches =
        Command::new("git").args(["-C", &remote.display().to_string(), "branch", "--list", "baton/*"]).output();
    let branches = String::from_utf8(branches.unwrap().stdout).unwrap();
    if branches.lines().count() != TASKS {
        // What each task's pushes said, to tell a refused push from one never made.
        let mut pushes = String::new();
        for id in &ids {
            for recorded in store.events(id, 0).await.unwrap() {
                if let Event::Pushed { commit, error, .. } = recorded.event {
                    pushes.push_str(&format!("{id}: pushed {commit}: {error:?}\n"));
                }
            }
        }
        panic!("{} of {TASKS} branches on the remote:\n{branches}\n{pushes}", branches.lines().count());
    }
    // Each worker ran tasks (the killed one before its death), and the taken-over ones had two.
    let holders = holders.lock().unwrap().clone();
    let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
    for hosts in holders.values() {
        for host in hosts {
            *per_host.entry(host.as_str()).or_default() += 1;
        }
    }
    println!("tasks each host held: {per_host:?}");
    assert_eq!(per_host.keys().copied().collect::<Vec<_>>(), ["worker-1", "worker-2", "worker-3"], "{per_host:?}");
    for lease in killed.iter().chain(&frozen) {
        assert!(holders[&lease.task].len() >= 2, "task {} moved to another host: {holders:?}", lease.task);
    }
    drop(workers);
    drop(hosts);
}
