//! The progress line of `engine run` on a terminal (SPEC §2).

use crate::pool::Progress;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Progress of `engine run` on stderr when it is a terminal: folders done of total,
/// messages received, current folder. Silent otherwise (cron).
pub struct Terminal {
    tty: bool,
    total: AtomicUsize,
    done: AtomicUsize,
    messages: AtomicUsize,
    current: Mutex<(String, Instant)>,
}

impl Terminal {
    pub fn new(tty: bool) -> Terminal {
        Terminal {
            tty,
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            messages: AtomicUsize::new(0),
            current: Mutex::new((String::new(), Instant::now())),
        }
    }

    fn add(&self, n: usize) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    fn show(&self, force: bool) {
        if !self.tty {
            return;
        }
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if !force && cur.1.elapsed() < Duration::from_millis(200) {
            return;
        }
        cur.1 = Instant::now();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K{}/{} folders, {} messages received  {}",
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            self.messages.load(Ordering::Relaxed),
            cur.0
        );
        let _ = err.flush();
    }

    /// Ends the progress line.
    pub fn done(&self) {
        if self.tty {
            self.show(true);
            eprintln!();
        }
    }
}

impl Progress for Terminal {
    fn started(&self, name: &str) {
        if self.tty {
            self.current.lock().unwrap_or_else(|p| p.into_inner()).0 = name.to_string();
            self.show(false);
        }
    }
    fn finished(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.show(false);
    }
    fn messages(&self, n: usize) {
        self.messages.fetch_add(n, Ordering::Relaxed);
        self.show(false);
    }
    fn add_total(&self, n: usize) {
        self.add(n);
    }
}
