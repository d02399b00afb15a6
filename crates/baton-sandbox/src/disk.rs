//! A task's own disk: an ext4 filesystem in an image file of a fixed size, mounted over the task's
//! machine directory (its worktree and its home) while baton works on the task. Filling it is
//! "no space left on device" for the agent's command, never a full host disk under baton's store.
//!
//! Only root may set up loop devices and mount filesystems, so only root-mode baton has disks; an
//! ordinary user's tasks write to the host's filesystem directly (see README).
//!
//! One image is mounted at most once: a second superblock over the same image would corrupt it.
//! A process holds the image's lock while its disk is attached, and an image a loop device still
//! backs (a crashed baton's mount, a sandbox finishing after a lazy unmount) is mounted through
//! that same device, whose superblock the kernel shares.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{MountFlags, UnmountFlags};

use crate::SandboxError;

/// `linux/loop.h`.
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    size_limit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// A task's disk, mounted until dropped.
#[derive(Debug)]
pub struct TaskDisk {
    mountpoint: PathBuf,
    /// Held open for its lock: no other baton process mounts this image meanwhile.
    _image: File,
}

impl TaskDisk {
    /// Mounts the image at `mountpoint` if there is one; otherwise makes an image of `create` bytes
    /// (and its filesystem), where that is given and this process is root, and mounts it. `None`:
    /// the task has no disk, and its files are on the host's filesystem. An existing image keeps
    /// its size.
    pub fn attach(image: &Path, mountpoint: &Path, create: Option<u64>) -> Result<Option<TaskDisk>, SandboxError> {
        let root = rustix::process::geteuid().is_root();
        match (image.exists(), create) {
            (true, _) if !root => Err(SandboxError::Unsupported(format!(
                "the task's disk {} can only be mounted by root, as baton ran when it made it",
                image.display()
            ))),
            (true, _) => Self::mount_image(image, mountpoint, 0).map(Some),
            (false, Some(bytes)) if root => Self::mount_image(image, mountpoint, bytes).map(Some),
            (false, _) => Ok(None),
        }
    }

    fn mount_image(image: &Path, mountpoint: &Path, bytes: u64) -> Result<TaskDisk, SandboxError> {
        let prepare = |path: &Path| {
            let path = path.to_owned();
            move |source| SandboxError::Prepare { path, source }
        };
        if let Some(dir) = image.parent() {
            std::fs::create_dir_all(dir).map_err(prepare(dir))?;
        }
        std::fs::create_dir_all(mountpoint).map_err(prepare(mountpoint))?;
        if bytes > 0 {
            ensure_room(image, bytes)?;
            // Made aside and renamed into place: an image under its name is always a whole one.
            let new = image.with_extension("new");
            make_filesystem(&new, bytes)?;
            std::fs::rename(&new, image).map_err(prepare(image))?;
        }
        let file = OpenOptions::new().read(true).write(true).open(image).map_err(prepare(image))?;
        lock(&file)
            .map_err(|_| SandboxError::Disk(format!("{} is in use by another baton process", image.display())))?;
        let image = std::fs::canonicalize(image).map_err(prepare(image))?;
        mount(&image, mountpoint)?;
        Ok(TaskDisk { mountpoint: mountpoint.to_owned(), _image: file })
    }
}

impl Drop for TaskDisk {
    fn drop(&mut self) {
        // Lazily: a sandbox still ending keeps its copy until it is gone; the loop device then
        // frees itself (it was set up to clear on last close).
        let _ = rustix::mount::unmount(&self.mountpoint, UnmountFlags::DETACH);
    }
}

/// How long a lock held by someone else is waited for.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Takes the image's lock. A lock that a holder just released can still be held for a moment by a
/// process another thread is starting (a fork shares the descriptor until its exec closes it), so
/// a held lock is tried again for a while before the image counts as in use.
fn lock(file: &File) -> rustix::io::Result<()> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// Refuses to create a disk the host's filesystem has no room for: an image is sparse, and one
/// that outgrew the free space would fill the disk baton's store is on.
fn ensure_room(image: &Path, bytes: u64) -> Result<(), SandboxError> {
    let dir = image.parent().unwrap_or(Path::new("/"));
    let stat =
        rustix::fs::statvfs(dir).map_err(|e| SandboxError::Prepare { path: dir.to_owned(), source: e.into() })?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < bytes {
        return Err(SandboxError::Disk(format!(
            "{} MiB do not fit in the {} MiB free on {}; free some space or lower `[sandbox] disk_mib`",
            bytes >> 20,
            free >> 20,
            dir.display()
        )));
    }
    Ok(())
}

fn make_filesystem(image: &Path, bytes: u64) -> Result<(), SandboxError> {
    let failed = |detail: String| {
        let _ = std::fs::remove_file(image);
        SandboxError::Disk(format!("cannot make {}: {detail}", image.display()))
    };
    let file = File::create(image).map_err(|e| failed(e.to_string()))?;
    file.set_len(bytes).map_err(|e| failed(e.to_string()))?;
    drop(file);
    let program = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"].into_iter().find(|p| Path::new(p).exists());
    let program = program.unwrap_or("mkfs.ext4");
    let output = Command::new(program)
        .args(["-q", "-F", "-m", "0", "-L", "baton-task", "-E", "lazy_itable_init=1,lazy_journal_init=1"])
        .arg(image)
        .output();
    match output {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(failed(String::from_utf8_lossy(&output.stderr).trim().to_owned())),
        Err(e) => Err(failed(format!("{program}: {e} (install e2fsprogs)"))),
    }
}

/// Mounts the image through the loop device that already backs it, or a new one.
fn mount(image: &Path, mountpoint: &Path) -> Result<(), SandboxError> {
    let setup = |what: &str, e: std::io::Error| SandboxError::Disk(format!("{what} for {}: {e}", image.display()));
    for _ in 0..8 {
        // A device we configure clears itself at its last close: it stays open until mounted.
        let (device, ours) = match device_backing(image) {
            Some(device) => (device, None),
            None => {
                // Its own open file: the device keeps it as long as it lives, and the lock must go
                // with the process that holds it.
                let file = OpenOptions::new().read(true).write(true).open(image);
                let file = file.map_err(|e| setup("cannot open the image", e))?;
                let (path, open) = configure_loop(&file).map_err(|e| setup("cannot set up a loop device", e))?;
                (path, Some(open))
            }
        };
        if is_mounted_from(mountpoint, &device) {
            return Ok(());
        }
        let flags = MountFlags::NOSUID | MountFlags::NODEV;
        match rustix::mount::mount(&device, mountpoint, "ext4", flags, None) {
            // The device held on to the image while mounting: it is ours. A device found (not
            // configured) may have cleared itself and gone to another image in between.
            Ok(()) if ours.is_some() || device_backing(image).as_deref() == Some(device.as_path()) => return Ok(()),
            Ok(()) => {
                let _ = rustix::mount::unmount(mountpoint, UnmountFlags::DETACH);
            }
            Err(e) if ours.is_some() => return Err(setup("cannot mount the task's disk", e.into())),
            Err(_) => {}
        }
    }
    Err(SandboxError::Disk(format!("the loop device of {} kept changing while it was mounted", image.display())))
}

/// `/dev/loopN` whose backing file is `image`, if any.
fn device_backing(image: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir("/sys/block").ok()?;
    entries.filter_map(Result::ok).find_map(|entry| {
        let name = entry.file_name();
        let name = name.to_str()?;
        let backing = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
        (name.starts_with("loop") && Path::new(backing.trim_end()) == image).then(|| Path::new("/dev").join(name))
    })
}

/// Whether `mountpoint` is the root of a filesystem on `device`.
fn is_mounted_from(mountpoint: &Path, device: &Path) -> bool {
    match (std::fs::metadata(mountpoint), std::fs::metadata(device)) {
        (Ok(dir), Ok(device)) => dir.dev() == device.rdev() && dir.ino() == 2,
        _ => false,
    }
}

/// A free loop device, set up over `file` to clear itself when its last user closes it.
fn configure_loop(file: &File) -> std::io::Result<(PathBuf, File)> {
    let control = File::options().read(true).write(true).open("/dev/loop-control")?;
    for _ in 0..8 {
        let number = ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE, 0)?;
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let device = File::options().read(true).write(true).open(&path)?;
        // SAFETY: all-zero bytes are a valid `LoopConfig` (integers and byte arrays only).
        #[allow(unsafe_code)]
        let mut config: LoopConfig = unsafe { std::mem::zeroed() };
        config.fd = file.as_raw_fd() as u32;
        config.info.flags = LO_FLAGS_AUTOCLEAR;
        match ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &raw const config as usize) {
            Ok(_) => return Ok((path, device)),
            // Another process took the device between the two calls.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("every free loop device was taken by another process first"))
}

fn ioctl(fd: RawFd, request: libc::c_ulong, argument: usize) -> std::io::Result<i32> {
    // SAFETY: both requests take an integer or a pointer to a `LoopConfig` that outlives the call,
    // on a descriptor the caller keeps open.
    #[allow(unsafe_code)]
    let result = unsafe { libc::ioctl(fd, request, argument) };
    if result < 0 { Err(std::io::Error::last_os_error()) } else { Ok(result) }
}
