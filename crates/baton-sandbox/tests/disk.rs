//! A task's disk: mounted by one holder at a time, its files kept between attachments, its size a
//! hard limit. Needs root (loop devices); an ordinary user's tasks have no disk.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use baton_sandbox::{LocalSandbox, RunRequest, Sandbox, SandboxConfig, SandboxError, TaskDisk};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn a_disk_is_mounted_by_one_holder_at_a_time_and_keeps_its_files() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (image, machine) = (dir.path().join("disks/t.img"), dir.path().join("machines/t"));
    if !is_root() {
        let refused = TaskDisk::attach(&image, &machine, Some(32 << 20)).unwrap();
        assert!(refused.is_none(), "only root has disks");
        return;
    }
    let disk = TaskDisk::attach(&image, &machine, Some(32 << 20)).unwrap().expect("root gets a disk");
    std::fs::write(machine.join("kept"), "on the disk").unwrap();
    // A second mount of the same image would be a second superblock over it: refused.
    let second = TaskDisk::attach(&image, &machine, None).unwrap_err();
    assert!(matches!(&second, SandboxError::Disk(m) if m.contains("in use")), "{second}");
    drop(disk);
    assert!(!machine.join("kept").exists(), "the disk is unmounted when dropped");

    let again = TaskDisk::attach(&image, &machine, Some(1 << 30)).unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(machine.join("kept")).unwrap(), "on the disk");
    let size = rustix::fs::statvfs(&machine).unwrap();
    assert!(size.f_blocks * size.f_frsize < 32 << 20, "an existing disk keeps its size");
    drop(again);
}

#[test]
fn the_sandbox_writes_its_worktree_and_home_on_the_disk_within_its_size() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let machine = dir.path().join("machines/t");
    let _disk = TaskDisk::attach(&dir.path().join("disks/t.img"), &machine, Some(48 << 20)).unwrap().unwrap();
    std::fs::create_dir_all(machine.join("worktree")).unwrap();
    let config = SandboxConfig::new(env!("CARGO_BIN_EXE_baton-sandbox-init").into(), &dir.path().join("data"));
    let sandbox = LocalSandbox::new(config, &dir.path().join("data/t"), &machine.join("worktree"), vec![])
        .unwrap()
        .with_layer(machine.join("layer"));
    let command = "head -c 30M /dev/zero > /workspace/a; echo a=$?; head -c 30M /dev/zero > /root/b; echo b=$?; \
                   rm /workspace/a; head -c 30M /dev/zero > /root/c; echo c=$?";
    let outcome = sandbox.run(&RunRequest::shell(command, Duration::from_secs(20))).unwrap();
    let text = outcome.output.text();
    assert!(text.contains("a=0") && text.contains("b=1") && text.contains("No space left"), "{text}");
    assert!(text.contains("c=0"), "space freed in the worktree is the home's again: {text}");
    assert!(machine.join("layer/hidden/root/c").is_file());
}
