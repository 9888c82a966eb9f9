//! Processes by pid: liveness from `/proc`, signals through `/usr/bin/kill`
//! (the crate denies `unsafe`, so no `libc::kill`), waiting, and running a
//! helper command with its output in the panic message.
//!
//! Only ever signals pids this support code started (or their process group
//! when the daemon leads its own group); never looks processes up by name.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `(state, ppid, pgrp)` of a process from `/proc/PID/stat`, None if gone.
fn stat(pid: u32) -> Option<(char, u32, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// True while `pid` exists and is not a zombie. Daemons here are reparented
/// to PID 1, which reaps lazily on some machines: a zombie counts as gone.
pub fn alive(pid: u32) -> bool {
    matches!(stat(pid), Some((s, _, _)) if s != 'Z' && s != 'X')
}

/// Live direct children of `pid` (Dovecot's and Postfix's masters fork all
/// their processes themselves, so this is the whole server).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| matches!(stat(p), Some((s, ppid, _)) if ppid == pid && s != 'Z'))
        .collect();
    out.sort_unstable();
    out
}

/// `master` and its live children, the whole of a Dovecot or Postfix;
/// empty when `master` is None or gone.
pub fn with_children(master: Option<u32>) -> Vec<u32> {
    match master {
        Some(m) if alive(m) => {
            let mut v = vec![m];
            v.extend(children(m));
            v
        }
        _ => Vec::new(),
    }
}

/// Process group of `pid`.
pub fn process_group(pid: u32) -> Option<u32> {
    stat(pid).map(|(_, _, pgrp)| pgrp)
}

/// Sends `signal` (e.g. "TERM", "KILL") to `pid`. Errors (already gone) are ignored.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("/usr/bin/kill")
        .args(["-s", signal, "--", &pid.to_string()])
        .output();
}

/// Sends `signal` to the process group led by `leader`, but only if `leader`
/// really leads its own group (a daemon that called setsid), so this can
/// never hit the test process's own group.
pub fn signal_group(leader: u32, signal: &str) {
    if leader > 1 && process_group(leader) == Some(leader) {
        let _ = Command::new("/usr/bin/kill")
            .args(["-s", signal, "--", &format!("-{leader}")])
            .output();
    } else {
        self::signal(leader, signal);
    }
}

/// Waits until none of `pids` is alive; false on timeout.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stops a daemon tree: `signal` to the master, wait up to `grace` for it
/// and its children to go, then SIGKILL to the group and whatever is left.
pub fn stop_tree(master: u32, signal_name: &str, grace: Duration) {
    let mut pids = children(master);
    pids.push(master);
    if signal_name == "KILL" {
        signal_group(master, "KILL");
    } else {
        signal(master, signal_name);
    }
    if wait_gone(&pids, grace) {
        return;
    }
    signal_group(master, "KILL");
    for &p in &pids {
        if alive(p) {
            signal(p, "KILL");
        }
    }
    if !wait_gone(&pids, Duration::from_secs(5)) {
        eprintln!("support: processes {pids:?} still alive after SIGKILL");
    }
}

/// Runs `cmd` to completion; panics with its stdout/stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs a command that daemonizes (`dovecot`, `postfix start`) and waits
/// for it to exit, returning (success, stdout+stderr). Its output goes to
/// `log` rather than to pipes: the daemon inherits the descriptors and
/// keeps them open, so reading pipes to EOF (`Command::output`) would hang
/// for the daemon's whole life.
pub fn run_daemonizing(cmd: &mut Command, log: &std::path::Path) -> Result<(bool, String), String> {
    let out = std::fs::File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e} (run tests/install-deps.sh)"))?;
    let text = std::fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Ok((status.success(), format!("{status}: {text}")))
}

/// uid of a system user, from /etc/passwd.
pub fn user_id(name: &str) -> u32 {
    lookup("/etc/passwd", name)
}

/// gid of a system group, from /etc/group.
pub fn group_id(name: &str) -> u32 {
    lookup("/etc/group", name)
}

fn lookup(file: &str, name: &str) -> u32 {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {file}: {e}"));
    text.lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("{name} not found in {file} (run tests/install-deps.sh)"))
}

/// This process's identity as "PID STARTTIME" (start time in clock ticks
/// since boot, /proc/PID/stat field 22), which stays unique even when the
/// kernel reuses the pid.
fn identity(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    // Fields after the command: state is field 3, starttime field 22. A
    // zombie (killed, not yet reaped) has no identity: it is dead.
    let state = rest.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Marks `dir` (a server's temp dir) as owned by this test process.
pub fn write_owner(dir: &std::path::Path) {
    let me = identity(std::process::id()).unwrap_or_default();
    let _ = std::fs::write(dir.join("owner"), me);
}

/// Kills servers left behind by test processes that died without running
/// `Drop` (killed by a timeout, SIGKILL, Ctrl-C): every `bp-dovecot-*` /
/// `bp-postfix-*` / `bp-postgres-*` temp dir whose `owner` file names a process that no longer
/// exists gets its master (from the dir's own pid file) and that master's
/// process group killed, and is removed. Dirs without an owner file, or
/// whose owner lives, are left alone. Runs once per test process.
pub fn reap_orphans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(reap_orphans_now);
}

/// [`reap_orphans`] without the once-per-process guard.
pub fn reap_orphans_now() {
    {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid_file = if name.starts_with("bp-dovecot-") {
                "run/master.pid"
            } else if name.starts_with("bp-postfix-") {
                "queue/pid/master.pid"
            } else if name.starts_with("bp-postgres-") {
                "data/postmaster.pid"
            } else {
                continue;
            };
            let dir = e.path();
            let Ok(owner) = std::fs::read_to_string(dir.join("owner")) else {
                continue;
            };
            let owner_pid: Option<u32> =
                owner.split_whitespace().next().and_then(|p| p.parse().ok());
            let Some(owner_pid) = owner_pid else { continue };
            if identity(owner_pid).as_deref() == Some(owner.trim()) {
                continue; // its test process is still running
            }
            let master = std::fs::read_to_string(dir.join(pid_file))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(m) = master {
                // Only if that pid still runs the server of this very dir:
                // Dovecot's command line names its config, Postfix's master
                // works in its queue directory.
                let cmdline = std::fs::read(format!("/proc/{m}/cmdline")).unwrap_or_default();
                let cwd = std::fs::read_link(format!("/proc/{m}/cwd")).unwrap_or_default();
                let ours =
                    String::from_utf8_lossy(&cmdline).contains(&name) || cwd.starts_with(&dir);
                if alive(m) && ours {
                    stop_tree(m, "KILL", Duration::from_secs(5));
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
