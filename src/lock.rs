//! The pidfile lock: at most one run at a time (SPEC §4).
//!
//! `pid/engine.pid` is locked with a non-blocking exclusive `flock`. The kernel
//! drops the lock with the process, so a file left by a killed run never
//! blocks. Only `run` takes the lock; `status` asks the kernel (through
//! `/proc/locks`) whether it is held, without ever taking it, so a status
//! query can never make a cron run think another one is live.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The lock of a live run; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// What trying the lock found.
#[derive(Debug)]
pub enum Acquire {
    /// We hold the lock now.
    Acquired(RunLock),
    /// Another run holds it; its pid as it wrote it, when readable.
    Held { pid: Option<u32> },
}

/// Takes the lock at `path` and writes `pid` and `since` into it.
pub fn acquire(path: &Path, pid: u32, since: i64) -> std::io::Result<Acquire> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let (pid, _) = read_owner(&mut file);
            return Ok(Acquire::Held { pid });
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(format!("{pid}\n{since}\n").as_bytes())?;
    file.flush()?;
    crate::layout::restrict_file(path);
    Ok(Acquire::Acquired(RunLock { _file: file }))
}

/// Whether a run is live, and the pid and start time it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// A process holds the lock.
    pub live: bool,
    /// The pid the live run wrote.
    pub pid: Option<u32>,
    /// When the live run started (Unix seconds).
    pub since: Option<i64>,
}

/// Tests the lock without taking it.
pub fn probe(path: &Path) -> Liveness {
    let idle = Liveness {
        live: false,
        pid: None,
        since: None,
    };
    let Ok(mut file) = File::open(path) else {
        return idle;
    };
    let live = match (file.metadata(), std::fs::read_to_string("/proc/locks")) {
        (Ok(meta), Ok(locks)) => flock_held(&locks, FileId::of(&meta)),
        // Without /proc, fall back to a shared lock attempt (fails while a run holds it).
        _ => match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(_) => true,
        },
    };
    if !live {
        return idle;
    }
    let (pid, since) = read_owner(&mut file);
    Liveness { live, pid, since }
}

/// A file as `/proc/locks` names it: device (major, minor) and inode. An
/// inode number alone is unique only on its own file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    major: u32,
    minor: u32,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            major: libc::major(meta.dev()),
            minor: libc::minor(meta.dev()),
            ino: meta.ino(),
        }
    }

    /// Parses the kernel's `MAJOR:MINOR:INODE` (major and minor in hex,
    /// the inode in decimal: `fd:01:5678`).
    fn parse(field: &str) -> Option<FileId> {
        let mut parts = field.split(':');
        let major = u32::from_str_radix(parts.next()?, 16).ok()?;
        let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
        let ino = parts.next()?.parse().ok()?;
        parts
            .next()
            .is_none()
            .then_some(FileId { major, minor, ino })
    }
}

/// Whether `/proc/locks` text shows an exclusive FLOCK on file `id`.
fn flock_held(locks: &str, id: FileId) -> bool {
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"FLOCK")
            && fields.get(3) == Some(&"WRITE")
            && fields.get(5).and_then(|f| FileId::parse(f)) == Some(id)
    })
}

fn read_owner(file: &mut File) -> (Option<u32>, Option<i64>) {
    let mut text = String::new();
    if file.seek(SeekFrom::Start(0)).is_err() || file.read_to_string(&mut text).is_err() {
        return (None, None);
    }
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse().ok());
    let since = lines.next().and_then(|l| l.trim().parse().ok());
    (pid, since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_sees_the_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("engine.pid");
        let first = acquire(&path, 4242, 1_700_000_000).expect("acquire");
        assert!(matches!(first, Acquire::Acquired(_)));
        match acquire(&path, 1, 2).expect("acquire") {
            Acquire::Held { pid } => assert_eq!(pid, Some(4242)),
            Acquire::Acquired(_) => panic!("lock taken twice"),
        }
        let live = probe(&path);
        assert_eq!(
            live,
            Liveness {
                live: true,
                pid: Some(4242),
                since: Some(1_700_000_000)
            }
        );
        drop(first);
        assert!(!probe(&path).live);
        assert!(matches!(
            acquire(&path, 7, 8).expect("acquire"),
            Acquire::Acquired(_)
        ));
    }

    #[test]
    fn stale_file_never_blocks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("engine.pid");
        std::fs::write(&path, "99999\n1\n").expect("write");
        assert!(!probe(&path).live);
        assert!(matches!(
            acquire(&path, 5, 6).expect("acquire"),
            Acquire::Acquired(_)
        ));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "5\n6\n");
    }

    #[test]
    fn proc_locks_parsing() {
        let id = |major, minor, ino| FileId { major, minor, ino };
        let text = "1: POSIX  ADVISORY  WRITE 10 fd:01:77 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 11 fd:01:88 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 12 00:2f:99 0 EOF\n\
                    4: FLOCK  ADVISORY  WRITE 13 103:02:4242 0 EOF\n";
        let cases: &[(&str, FileId, bool)] = &[
            ("posix_lock_is_not_ours", id(0xfd, 1, 77), false),
            ("shared_lock_is_not_a_run", id(0xfd, 1, 88), false),
            ("exclusive_flock", id(0, 0x2f, 99), true),
            ("other_inode", id(0, 0x2f, 9), false),
            ("same_inode_on_another_device", id(0xfd, 1, 99), false),
            ("same_inode_other_minor", id(0, 0x30, 99), false),
            ("major_in_hex", id(0x103, 2, 4242), true),
        ];
        for (name, file, want) in cases {
            assert_eq!(flock_held(text, *file), *want, "{name}");
        }
        assert_eq!(FileId::parse("fd:01:5678"), Some(id(0xfd, 1, 5678)));
        assert_eq!(FileId::parse("fd:01"), None);
        assert_eq!(FileId::parse("fd:01:56:78"), None);
        assert_eq!(FileId::parse("zz:01:5"), None);
    }

    #[test]
    fn this_file_is_found_by_device_and_inode() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("engine.pid");
        let _held = acquire(&path, 1, 2).expect("acquire");
        let meta = std::fs::metadata(&path).expect("meta");
        let locks = std::fs::read_to_string("/proc/locks").expect("/proc/locks");
        assert!(flock_held(&locks, FileId::of(&meta)));
        let elsewhere = FileId {
            major: FileId::of(&meta).major.wrapping_add(1),
            ..FileId::of(&meta)
        };
        assert!(
            !flock_held(&locks, elsewhere),
            "the same inode on another device is another file"
        );
    }
}
