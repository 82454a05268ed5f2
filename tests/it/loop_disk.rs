//! A real disk to break: an ext4 file system on a loop device over an image file, mounted for
//! a test, that the test can slow down (a cgroup v1 blkio write throttle, the test process
//! moved into it) or make fail (the image made immutable: the loop device's writes to it fail,
//! so the file system sees EIO). Needs root, `losetup`, `mkfs.ext4`, `chattr` on the image's
//! file system; the constructors say what is missing so a test can skip visibly. Dropping it
//! undoes each step that was done.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopDisk {
    image: PathBuf,
    loop_dev: Option<String>,
    mount: Option<PathBuf>,
    cgroup: Option<PathBuf>,
    immutable: bool,
}

const BLKIO: &str = "/sys/fs/cgroup/blkio";

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl LoopDisk {
    /// A 128 MiB ext4 (with or without its journal) on a loop device over `image`, mounted at
    /// `mount`.
    pub fn mount(image: &Path, mount: &Path, journal: bool) -> Result<Self, String> {
        let mut disk = LoopDisk {
            image: image.to_path_buf(),
            loop_dev: None,
            mount: None,
            cgroup: None,
            immutable: false,
        };
        std::fs::File::create(image)
            .and_then(|f| f.set_len(128 << 20))
            .map_err(|e| format!("disk image: {e}"))?;
        let dev = run("losetup", &["-f", "--show", &image.to_string_lossy()])?;
        disk.loop_dev = Some(dev.clone());
        let features = if journal {
            "has_journal"
        } else {
            "^has_journal"
        };
        run("mkfs.ext4", &["-q", "-O", features, &dev])?;
        std::fs::create_dir_all(mount).map_err(|e| e.to_string())?;
        run("mount", &[&dev, &mount.to_string_lossy()])?;
        disk.mount = Some(mount.to_path_buf());
        Ok(disk)
    }

    /// Throttles the device's writes to `bps` bytes per second for this process. cgroup v1
    /// throttles only the writes a process submits itself (fsync, direct I/O), not the
    /// kernel's write-back of the page cache.
    pub fn throttle_writes(&mut self, bps: u64) -> Result<(), String> {
        if !Path::new(BLKIO).join("cgroup.procs").exists() {
            return Err(format!("no cgroup v1 blkio controller at {BLKIO}"));
        }
        let dev = self.loop_dev.as_deref().ok_or("no loop device")?;
        let name = Path::new(dev).file_name().unwrap().to_string_lossy();
        let dev_number = std::fs::read_to_string(format!("/sys/block/{name}/dev"))
            .map_err(|e| format!("{dev}'s device number: {e}"))?;
        let cgroup = Path::new(BLKIO).join(format!("weir-loop-disk-{}", std::process::id()));
        std::fs::create_dir_all(&cgroup).map_err(|e| format!("{}: {e}", cgroup.display()))?;
        self.cgroup = Some(cgroup.clone());
        let write = |file: &str, value: String| {
            std::fs::write(cgroup.join(file), &value)
                .map_err(|e| format!("writing {value:?} to {file}: {e}"))
        };
        write(
            "blkio.throttle.write_bps_device",
            format!("{} {bps}", dev_number.trim()),
        )?;
        write("cgroup.procs", std::process::id().to_string())
    }

    /// From now on every write reaching the device fails (EIO for the file system; what is
    /// in the page cache stays readable).
    pub fn fail_writes(&mut self) -> Result<(), String> {
        run("chattr", &["+i", &self.image.to_string_lossy()])?;
        self.immutable = true;
        Ok(())
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        if let Some(cgroup) = &self.cgroup {
            let root = Path::new(BLKIO).join("cgroup.procs");
            let _ = std::fs::write(root, std::process::id().to_string());
            let _ = std::fs::remove_dir(cgroup);
        }
        if let Some(mount) = &self.mount {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
        if let Some(dev) = &self.loop_dev {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
        if self.immutable {
            let _ = Command::new("chattr").arg("-i").arg(&self.image).status();
        }
    }
}
