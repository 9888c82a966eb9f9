//! Crash points for the crash tests: `BACKPROC_FAILPOINTS=name=N[,name=N...]`
//! makes the process kill itself with SIGKILL the N-th time it reaches the
//! point `name` — at moments an outside `kill -9` cannot hit reliably
//! (between a server's acceptance and the commit that records it, in the
//! middle of a transaction). Without the variable, `hit` is one atomic load.
//!
//! Points: `fetched` (a batch is fetched, not yet handed to the writer),
//! `mid-commit` (a batch's rows are written, the transaction not committed),
//! `committed` (a batch is committed), `smtp-accepted` (the server accepted a
//! message, the outcome not yet recorded), `sent-recorded`, `appended` (the
//! Sent copy is stored, not yet recorded), `token-received` (the token
//! endpoint answered, nothing stored yet), `token-stored` (the new tokens
//! are committed, not yet used).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

static POINTS: OnceLock<Option<Mutex<HashMap<String, (u64, AtomicU64)>>>> = OnceLock::new();

fn points() -> &'static Option<Mutex<HashMap<String, (u64, AtomicU64)>>> {
    POINTS.get_or_init(|| {
        let spec = std::env::var("BACKPROC_FAILPOINTS").ok()?;
        let map = parse(&spec);
        (!map.is_empty()).then(|| {
            Mutex::new(
                map.into_iter()
                    .map(|(k, n)| (k, (n, AtomicU64::new(0))))
                    .collect(),
            )
        })
    })
}

/// `a=3,b=1` → {a: 3, b: 1}; malformed parts are ignored.
fn parse(spec: &str) -> HashMap<String, u64> {
    spec.split(',')
        .filter_map(|part| {
            let (name, n) = part.split_once('=')?;
            let n: u64 = n.trim().parse().ok()?;
            (n > 0).then(|| (name.trim().to_string(), n))
        })
        .collect()
}

/// Reaches the point `name`: dies with SIGKILL when this is the configured hit.
pub fn hit(name: &str) {
    let Some(points) = points() else {
        return;
    };
    let points = points.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, count)) = points.get(name) {
        if count.fetch_add(1, Ordering::SeqCst) + 1 == *at {
            kill_self();
        }
    }
}

#[allow(unsafe_code)]
fn kill_self() {
    // SAFETY: raise() only sends a signal to this process; SIGKILL cannot be
    // caught, so nothing runs after it.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parsing() {
        let m = parse("fetched=3, mid-commit=1,bad,zero=0,x=y");
        assert_eq!(m.get("fetched"), Some(&3));
        assert_eq!(m.get("mid-commit"), Some(&1));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn unset_points_do_nothing() {
        hit("fetched");
        hit("anything");
    }
}
