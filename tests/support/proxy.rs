//! [`FaultProxy`]: a TCP proxy on 127.0.0.1 between the engine and a real
//! server (Dovecot, Postfix, aiosmtpd) that breaks connections on cue.
//!
//! Each accepted connection gets the first [`Rule`] that matches its number
//! (1-based, in accept order) at the moment it is accepted; the rules can be
//! replaced while the proxy runs ([`FaultProxy::set_rules`]), so a test can
//! make the first connection stall and let later ones through. A rule says
//! when ([`When`]: at accept, after N bytes one way, or after a command seen
//! in the client's stream) and what ([`Fault`]): a reset (RST), a stall (the
//! sockets stay open, nothing more is forwarded), garbage towards the
//! client, a trickle (one byte per interval towards the client), a throttle
//! (a slow link), or a clean close (FIN). Byte counts are exact: with `When::Bytes(dir, n)` exactly `n`
//! bytes pass that way before the fault.
//!
//! Without a fault the proxy is transparent: a server's EOF becomes a FIN to
//! the client, a server's reset a reset. Threads only (two per connection,
//! polling their sockets every 20 ms for the connection's state), no async
//! runtime, loopback only. Per-connection statistics ([`ConnStats`]) say
//! how many bytes went each way and which fault fired, for assertions.
//!
//! The reset sets `SO_LINGER` to 0 before the last close, so the kernel
//! sends RST instead of FIN. std has no stable setter for it and the crate
//! takes no new dependency for tests: it is one `libc::setsockopt` call,
//! the only `unsafe` in the test support code.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often a pump thread looks at its connection's state while its
/// socket has nothing to read.
const POLL: Duration = Duration::from_millis(20);

/// A direction of the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client (the engine) to server.
    ToServer,
    /// Server to client (the engine).
    ToClient,
}

/// When a rule's fault fires on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// As soon as the connection is accepted: not even the greeting passes.
    Accept,
    /// Once exactly `n` bytes (counted from the start of the connection)
    /// have passed in that direction.
    Bytes(Dir, u64),
    /// Once the client's stream contains `needle` (e.g. `"UID FETCH"`,
    /// `"DATA\r\n"`): the chunk holding it still goes to the server, then
    /// `then` more bytes of the server's answer pass to the client (0: none).
    Command { needle: String, then: u64 },
}

impl When {
    /// Right after the client sent `needle`, before any of the answer.
    pub fn command(needle: &str) -> When {
        When::Command {
            needle: needle.to_string(),
            then: 0,
        }
    }

    /// After the client sent `needle` and `then` bytes of the answer passed
    /// to the client (mid-response).
    pub fn after_command(needle: &str, then: u64) -> When {
        When::Command {
            needle: needle.to_string(),
            then,
        }
    }
}

/// What happens when a rule fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Both sockets closed with SO_LINGER 0: the client gets a RST
    /// ("connection reset by peer").
    Reset,
    /// Nothing more is forwarded either way; the sockets stay open until the
    /// client closes its end (or the proxy is dropped).
    Stall,
    /// These bytes go to the client, then forwarding goes on as before.
    Garbage(Vec<u8>),
    /// From now on the server's bytes reach the client one at a time, one
    /// per `every` (the client's own bytes still pass at full speed).
    Trickle { every: Duration },
    /// From now on the server's bytes reach the client at about this rate
    /// (a slow link: a sync that takes long enough to be interrupted).
    Throttle { bytes_per_sec: u64 },
    /// A clean close: FIN to the client (and to the server).
    Close,
}

impl Fault {
    fn name(&self) -> String {
        match self {
            Fault::Reset => "reset".into(),
            Fault::Stall => "stall".into(),
            Fault::Garbage(b) => format!("garbage ({} bytes)", b.len()),
            Fault::Trickle { every } => format!("trickle (1 byte per {every:?})"),
            Fault::Throttle { bytes_per_sec } => format!("throttle ({bytes_per_sec} B/s)"),
            Fault::Close => "close".into(),
        }
    }
}

/// Which connections a rule applies to, by their 1-based accept number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conns {
    All,
    /// Only the n-th connection.
    Nth(usize),
    /// The n-th and every later one.
    From(usize),
}

impl Conns {
    fn matches(self, n: usize) -> bool {
        match self {
            Conns::All => true,
            Conns::Nth(k) => n == k,
            Conns::From(k) => n >= k,
        }
    }
}

/// One fault for the connections it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub conns: Conns,
    pub when: When,
    pub fault: Fault,
}

impl Rule {
    /// `fault` at `when` on every connection.
    pub fn all(when: When, fault: Fault) -> Rule {
        Rule {
            conns: Conns::All,
            when,
            fault,
        }
    }

    /// `fault` at `when` on the `n`-th connection only (1-based).
    pub fn nth(n: usize, when: When, fault: Fault) -> Rule {
        Rule {
            conns: Conns::Nth(n),
            when,
            fault,
        }
    }
}

/// What happened on one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// 1-based, in accept order.
    pub n: usize,
    /// Bytes forwarded client → server.
    pub to_server: u64,
    /// Bytes forwarded server → client (garbage included).
    pub to_client: u64,
    /// The fault that fired (`reset`, `stall`, `garbage (N bytes)`,
    /// `trickle (...)`, `close`), if one did.
    pub fired: Option<String>,
    /// When it fired, measured from the accept.
    pub fired_after: Option<Duration>,
    /// Both sockets are closed.
    pub closed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Pass,
    /// One byte per interval.
    Trickle(Duration),
    /// Bytes per second.
    Throttle(u64),
    /// Nothing forwarded; the client is drained until it closes.
    Stalled,
    /// FIN sent to the client; drained until it closes.
    Closing,
    /// Both pumps stop; the last one out closes the sockets.
    Done,
}

struct State {
    mode: Mode,
    fired: bool,
    /// `When::Command` seen: fire once `to_client` reaches this.
    armed: Option<u64>,
    /// The tail of the client's stream, for needles split across reads.
    window: Vec<u8>,
}

struct Conn {
    client: TcpStream,
    server: TcpStream,
    rule: Option<Rule>,
    accepted: Instant,
    state: Mutex<State>,
    /// Writes to the client come from both pumps (garbage, forwarding).
    client_write: Mutex<()>,
    stats: Arc<Mutex<ConnStats>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fault-injecting TCP proxy on 127.0.0.1 in front of `127.0.0.1:upstream`.
/// `Drop` stops it and closes every connection.
pub struct FaultProxy {
    port: u16,
    upstream: u16,
    rules: Arc<Mutex<Vec<Rule>>>,
    conns: Arc<Mutex<Vec<Arc<Mutex<ConnStats>>>>>,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A transparent proxy (no rules yet) to 127.0.0.1:`upstream`, on a free
    /// port of its own (bound to port 0: no race).
    pub fn start(upstream: u16) -> FaultProxy {
        Self::with_rules(upstream, Vec::new())
    }

    /// A proxy with `rules` from the first connection on.
    pub fn with_rules(upstream: u16, rules: Vec<Rule>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault proxy");
        let port = listener.local_addr().expect("local addr").port();
        let rules = Arc::new(Mutex::new(rules));
        let conns: Arc<Mutex<Vec<Arc<Mutex<ConnStats>>>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>> =
            Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (rules, conns, stop, accepted, threads) = (
                rules.clone(),
                conns.clone(),
                stop.clone(),
                accepted.clone(),
                threads.clone(),
            );
            std::thread::Builder::new()
                .name("proxy-accept".into())
                .spawn(move || {
                    for client in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(client) = client else { continue };
                        let n = accepted.fetch_add(1, Ordering::SeqCst) + 1;
                        let rule = lock(&rules).iter().find(|r| r.conns.matches(n)).cloned();
                        let stats = Arc::new(Mutex::new(ConnStats {
                            n,
                            ..ConnStats::default()
                        }));
                        lock(&conns).push(stats.clone());
                        let stop = stop.clone();
                        let handle = std::thread::Builder::new()
                            .name(format!("proxy-conn{n}"))
                            .spawn(move || serve(client, upstream, rule, stats, stop))
                            .expect("spawn proxy connection thread");
                        let mut threads = lock(&threads);
                        threads.retain(|t| !t.is_finished());
                        threads.push(handle);
                    }
                })
                .expect("spawn proxy accept thread")
        };
        FaultProxy {
            port,
            upstream,
            rules,
            conns,
            stop,
            accepted,
            threads,
            acceptor: Some(acceptor),
        }
    }

    /// The port to give the engine instead of the server's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's port.
    pub fn upstream(&self) -> u16 {
        self.upstream
    }

    /// Replaces the rules; connections accepted from now on use them.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *lock(&self.rules) = rules;
    }

    /// No more faults for new connections (the proxy becomes transparent).
    pub fn clear_rules(&self) {
        self.set_rules(Vec::new());
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Statistics of every connection so far, in accept order.
    pub fn connections(&self) -> Vec<ConnStats> {
        lock(&self.conns).iter().map(|s| lock(s).clone()).collect()
    }

    /// How many connections a fault fired on.
    pub fn fired(&self) -> usize {
        self.connections()
            .iter()
            .filter(|c| c.fired.is_some())
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
    }
}

/// One connection: connect upstream, then two pumps until both are done.
fn serve(
    client: TcpStream,
    upstream: u16,
    rule: Option<Rule>,
    stats: Arc<Mutex<ConnStats>>,
    stop: Arc<AtomicBool>,
) {
    let accepted = Instant::now();
    let server = match TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], upstream)),
        Duration::from_secs(5),
    ) {
        Ok(s) => s,
        Err(_) => {
            // The server is down: the client sees its connection reset,
            // as close to "connection refused" as an accepted socket gets.
            let _ = set_linger_zero(&client);
            lock(&stats).closed = true;
            return;
        }
    };
    for s in [&client, &server] {
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(POLL));
        // A peer that stops reading for this long ends the connection
        // (and cannot keep `Drop` waiting for a blocked write).
        let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
    }
    let conn = Arc::new(Conn {
        client,
        server,
        rule,
        accepted,
        state: Mutex::new(State {
            mode: Mode::Pass,
            fired: false,
            armed: None,
            window: Vec::new(),
        }),
        client_write: Mutex::new(()),
        stats: stats.clone(),
    });
    if matches!(conn.rule.as_ref().map(|r| &r.when), Some(When::Accept)) {
        conn.fire(&[]);
    }
    let other = {
        let (conn, stop) = (conn.clone(), stop.clone());
        std::thread::spawn(move || conn.pump(Dir::ToClient, &stop))
    };
    conn.pump(Dir::ToServer, &stop);
    let _ = other.join();
    drop(conn); // the sockets close here (RST after a reset)
    lock(&stats).closed = true;
}

impl Conn {
    fn mode(&self) -> Mode {
        lock(&self.state).mode
    }

    fn set_mode(&self, mode: Mode) {
        lock(&self.state).mode = mode;
    }

    fn write_client(&self, data: &[u8]) -> bool {
        let _w = lock(&self.client_write);
        (&self.client).write_all(data).is_ok()
    }

    /// Moves bytes one way until the connection is done.
    fn pump(&self, dir: Dir, stop: &AtomicBool) {
        let src = match dir {
            Dir::ToServer => &self.client,
            Dir::ToClient => &self.server,
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if stop.load(Ordering::SeqCst) {
                self.set_mode(Mode::Done);
            }
            let mode = self.mode();
            match mode {
                Mode::Done => return,
                Mode::Stalled | Mode::Closing if dir == Dir::ToClient => {
                    std::thread::sleep(POLL);
                    continue;
                }
                _ => {}
            }
            let n = match (&*src).read(&mut buf) {
                Ok(0) => {
                    self.eof(dir);
                    continue;
                }
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    if dir == Dir::ToClient {
                        // The server reset us: pass the reset on.
                        let _ = set_linger_zero(&self.client);
                    }
                    self.set_mode(Mode::Done);
                    continue;
                }
            };
            if matches!(mode, Mode::Stalled | Mode::Closing) {
                continue; // the client's bytes go nowhere
            }
            self.forward(dir, &buf[..n]);
        }
    }

    /// One side closed its sending half.
    fn eof(&self, dir: Dir) {
        match dir {
            // The client is gone: so is the connection.
            Dir::ToServer => self.set_mode(Mode::Done),
            // The server closed: FIN to the client, then wait for its close.
            Dir::ToClient => {
                let _ = self.client.shutdown(Shutdown::Write);
                let mut st = lock(&self.state);
                if st.mode != Mode::Done {
                    st.mode = Mode::Closing;
                }
            }
        }
    }

    /// Forwards `data` read from `dir`'s source, firing the rule at its
    /// exact byte.
    fn forward(&self, dir: Dir, data: &[u8]) {
        let (split, armed_now) = {
            let mut st = lock(&self.state);
            let stats = lock(&self.stats);
            let done = match dir {
                Dir::ToServer => stats.to_server,
                Dir::ToClient => stats.to_client,
            };
            let mut split = None;
            let mut armed_now = false;
            if !st.fired {
                match self.rule.as_ref().map(|r| &r.when) {
                    Some(When::Bytes(d, n)) if *d == dir && done + data.len() as u64 >= *n => {
                        split = Some(n.saturating_sub(done) as usize);
                    }
                    Some(When::Command { needle, then })
                        if dir == Dir::ToServer && st.armed.is_none() =>
                    {
                        let needle = needle.as_bytes();
                        st.window.extend_from_slice(data);
                        if find(&st.window, needle) {
                            st.armed = Some(stats.to_client + then);
                            armed_now = *then == 0;
                        } else {
                            let keep = needle.len().saturating_sub(1);
                            let cut = st.window.len().saturating_sub(keep);
                            st.window.drain(..cut);
                        }
                    }
                    _ => {}
                }
                if let (Some(limit), Dir::ToClient) = (st.armed, dir) {
                    if done + data.len() as u64 >= limit {
                        split = Some(limit.saturating_sub(done) as usize);
                    }
                }
            }
            (split, armed_now)
        };
        match split {
            Some(at) => {
                let at = at.min(data.len());
                self.send(dir, &data[..at]);
                self.fire_with(dir, &data[at..]);
            }
            // Garbage right after a command goes to the client before the
            // command goes on to the server: the answer cannot overtake it.
            None if armed_now
                && matches!(
                    self.rule.as_ref().map(|r| &r.fault),
                    Some(Fault::Garbage(_))
                ) =>
            {
                self.fire_with(dir, data);
            }
            None => {
                self.send(dir, data);
                if armed_now {
                    self.fire_with(dir, &[]);
                }
            }
        }
    }

    /// Sends bytes on, at the pace of the current mode; counts them.
    fn send(&self, dir: Dir, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let ok = match (dir, self.mode()) {
            (_, Mode::Done | Mode::Stalled | Mode::Closing) => return,
            (Dir::ToServer, _) => (&self.server).write_all(data).is_ok(),
            (Dir::ToClient, Mode::Trickle(every)) => {
                for b in data {
                    if self.mode() == Mode::Done || !self.write_client(std::slice::from_ref(b)) {
                        return;
                    }
                    lock(&self.stats).to_client += 1;
                    std::thread::sleep(every);
                }
                return;
            }
            (Dir::ToClient, Mode::Throttle(rate)) => {
                let rate = rate.max(1);
                for piece in data.chunks((rate / 50).max(1) as usize) {
                    if self.mode() == Mode::Done || !self.write_client(piece) {
                        return;
                    }
                    lock(&self.stats).to_client += piece.len() as u64;
                    std::thread::sleep(Duration::from_micros(
                        piece.len() as u64 * 1_000_000 / rate,
                    ));
                }
                return;
            }
            (Dir::ToClient, _) => self.write_client(data),
        };
        if !ok {
            if dir == Dir::ToServer {
                let _ = set_linger_zero(&self.client);
            }
            self.set_mode(Mode::Done);
            return;
        }
        let mut stats = lock(&self.stats);
        match dir {
            Dir::ToServer => stats.to_server += data.len() as u64,
            Dir::ToClient => stats.to_client += data.len() as u64,
        }
    }

    /// The rule fires with no bytes pending.
    fn fire(&self, rest: &[u8]) {
        self.fire_with(Dir::ToClient, rest)
    }

    /// The rule fires; `rest` are the bytes of `dir` read past the trigger.
    fn fire_with(&self, dir: Dir, rest: &[u8]) {
        let Some(rule) = self.rule.as_ref() else {
            return;
        };
        {
            let mut st = lock(&self.state);
            if st.fired {
                return;
            }
            st.fired = true;
        }
        {
            let mut stats = lock(&self.stats);
            stats.fired = Some(rule.fault.name());
            stats.fired_after = Some(self.accepted.elapsed());
        }
        match &rule.fault {
            Fault::Reset => {
                let _ = set_linger_zero(&self.client);
                let _ = set_linger_zero(&self.server);
                self.set_mode(Mode::Done);
            }
            Fault::Stall => self.set_mode(Mode::Stalled),
            Fault::Close => {
                let _ = self.client.shutdown(Shutdown::Write);
                let _ = self.server.shutdown(Shutdown::Both);
                self.set_mode(Mode::Closing);
            }
            Fault::Garbage(bytes) => {
                if self.write_client(bytes) {
                    lock(&self.stats).to_client += bytes.len() as u64;
                }
                self.send(dir, rest);
            }
            Fault::Trickle { every } => {
                self.set_mode(Mode::Trickle(*every));
                self.send(dir, rest);
            }
            Fault::Throttle { bytes_per_sec } => {
                self.set_mode(Mode::Throttle(*bytes_per_sec));
                self.send(dir, rest);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// SO_LINGER {on, 0}: the last close of the socket sends RST, not FIN.
#[allow(unsafe_code)]
fn set_linger_zero(s: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads exactly `size_of::<linger>()` bytes from a
    // live local value; the descriptor belongs to `s`, which outlives the call.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast::<libc::c_void>(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
