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
        (Ok(meta), Ok(locks)) => flock_held(&locks, meta.ino()),
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

/// Whether `/proc/locks` text shows an exclusive FLOCK on inode `ino`.
fn flock_held(locks: &str, ino: u64) -> bool {
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"FLOCK")
            && fields.get(3) == Some(&"WRITE")
            && fields
                .get(5)
                .and_then(|dev_ino| dev_ino.rsplit(':').next())
                .and_then(|n| n.parse::<u64>().ok())
                == Some(ino)
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
        let text = "1: POSIX  ADVISORY  WRITE 10 fd:01:77 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 11 fd:01:88 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 12 00:2f:99 0 EOF\n";
        assert!(!flock_held(text, 77), "posix lock is not ours");
        assert!(!flock_held(text, 88), "shared lock is not a run");
        assert!(flock_held(text, 99));
        assert!(!flock_held(text, 9));
    }
}
