//! Proves the fault proxy (`tests/support/proxy.rs`) does what the fault
//! tests rely on: exact byte counts, a real RST, a stall that keeps the
//! socket open, garbage, a trickle, a clean FIN, rules per connection that
//! change while it runs, and transparency (also in front of Dovecot).
//!
//! The upstream here is a small line server in a thread: it greets with
//! `* OK hello`, answers `BIG` with 10,000 bytes of `x` and a line end, and
//! any other line `L` with `reply L`.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use support::proxy::{Conns, Dir, Fault, Rule, When};
use support::{wait_until, Dovecot, FaultProxy};

const GREETING: &[u8] = b"* OK hello\r\n";

/// A line server on 127.0.0.1 (see the module doc); runs until the test ends.
fn line_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                if conn.write_all(GREETING).is_err() {
                    return;
                }
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while let Ok(1) = conn.read(&mut b) {
                    line.push(b[0]);
                    if !line.ends_with(b"\r\n") {
                        continue;
                    }
                    let reply = if line == b"BIG\r\n" {
                        let mut r = vec![b'x'; 10_000];
                        r.extend_from_slice(b"\r\n");
                        r
                    } else {
                        [b"reply ".as_slice(), &line].concat()
                    };
                    if conn.write_all(&reply).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

fn connect(proxy: &FaultProxy) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", proxy.port())).expect("connect to proxy");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

/// Reads until `n` bytes, EOF, an error or a read timeout; returns the
/// bytes and how it ended (None: got all `n`).
fn read_n(s: &mut TcpStream, n: usize) -> (Vec<u8>, Option<std::io::Error>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n {
        match s.read(&mut buf[..(n - out.len()).min(4096)]) {
            Ok(0) => {
                return (
                    out,
                    Some(std::io::Error::new(ErrorKind::UnexpectedEof, "eof")),
                )
            }
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[test]
fn without_rules_it_is_transparent_and_counts_bytes() {
    let proxy = FaultProxy::start(line_server());
    let mut s = connect(&proxy);
    assert_eq!(read_n(&mut s, GREETING.len()).0, GREETING);
    s.write_all(b"a1 NOOP\r\n").expect("write");
    assert_eq!(read_n(&mut s, 15).0, b"reply a1 NOOP\r\n");
    s.write_all(b"BIG\r\n").expect("write");
    let (big, end) = read_n(&mut s, 10_002);
    assert!(end.is_none(), "{end:?}");
    assert!(big.ends_with(b"x\r\n"));
    drop(s);
    assert!(wait_until(Duration::from_secs(2), || proxy.connections()
        [0]
    .closed));
    let c = &proxy.connections()[0];
    assert_eq!((c.n, c.to_server, c.to_client), (1, 14, 12 + 15 + 10_002));
    assert_eq!(c.fired, None);
}

#[test]
fn reset_after_exact_bytes_gives_the_client_a_rst() {
    let proxy = FaultProxy::with_rules(
        line_server(),
        vec![Rule::all(When::Bytes(Dir::ToClient, 500), Fault::Reset)],
    );
    let mut s = connect(&proxy);
    read_n(&mut s, GREETING.len());
    s.write_all(b"BIG\r\n").expect("write");
    let (got, end) = read_n(&mut s, 10_002);
    assert_eq!(got.len(), 500 - GREETING.len(), "exactly 500 bytes in all");
    let end = end.expect("the connection broke");
    assert_eq!(end.kind(), ErrorKind::ConnectionReset, "{end}");
    assert_eq!(proxy.connections()[0].fired.as_deref(), Some("reset"));
}

#[test]
fn close_after_a_command_gives_the_client_a_clean_eof() {
    let proxy = FaultProxy::with_rules(
        line_server(),
        vec![Rule::all(When::after_command("BIG", 100), Fault::Close)],
    );
    let mut s = connect(&proxy);
    read_n(&mut s, GREETING.len());
    s.write_all(b"a1 NOOP\r\n").expect("write");
    assert_eq!(read_n(&mut s, 15).0, b"reply a1 NOOP\r\n");
    // the needle split across two writes is still seen
    s.write_all(b"B").expect("write");
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"IG\r\n").expect("write");
    let (got, end) = read_n(&mut s, 10_002);
    assert_eq!(got.len(), 100);
    let end = end.expect("closed");
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end}");
    let c = &proxy.connections()[0];
    assert_eq!(c.fired.as_deref(), Some("close"));
    assert_eq!(c.to_client, (GREETING.len() + 15 + 100) as u64);
}

#[test]
fn stall_keeps_the_socket_open_and_forwards_nothing() {
    let proxy = FaultProxy::with_rules(
        line_server(),
        vec![Rule::all(When::command("a2 "), Fault::Stall)],
    );
    let mut s = connect(&proxy);
    read_n(&mut s, GREETING.len());
    s.write_all(b"a1 NOOP\r\n").expect("write");
    assert_eq!(read_n(&mut s, 15).0, b"reply a1 NOOP\r\n");
    s.write_all(b"a2 NOOP\r\n").expect("write");
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let t0 = Instant::now();
    let (got, end) = read_n(&mut s, 1);
    assert!(got.is_empty());
    let end = end.expect("no answer");
    assert!(
        matches!(end.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "a stall is a timeout, not a close: {end}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(600));
    // still open: writing works, and nothing comes back
    s.write_all(b"a3 NOOP\r\n").expect("write after the stall");
    assert!(read_n(&mut s, 1).0.is_empty());
    assert_eq!(proxy.connections()[0].fired.as_deref(), Some("stall"));
    drop(s);
    assert!(
        wait_until(Duration::from_secs(2), || proxy.connections()[0].closed),
        "the client's close ends the stalled connection"
    );
}

#[test]
fn garbage_reaches_the_client_before_the_answer() {
    let junk = b"\x00\xff junk \x01\r\n".to_vec();
    let proxy = FaultProxy::with_rules(
        line_server(),
        vec![Rule::all(
            When::command("a1 "),
            Fault::Garbage(junk.clone()),
        )],
    );
    let mut s = connect(&proxy);
    read_n(&mut s, GREETING.len());
    s.write_all(b"a1 NOOP\r\n").expect("write");
    let (got, end) = read_n(&mut s, junk.len() + 15);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(got, [junk.as_slice(), b"reply a1 NOOP\r\n"].concat());
}

#[test]
fn trickle_sends_one_byte_per_interval() {
    let proxy = FaultProxy::with_rules(
        line_server(),
        vec![Rule::all(
            When::Bytes(Dir::ToClient, 5),
            Fault::Trickle {
                every: Duration::from_millis(50),
            },
        )],
    );
    let mut s = connect(&proxy);
    let t0 = Instant::now();
    let (got, end) = read_n(&mut s, GREETING.len());
    assert!(end.is_none(), "{end:?}");
    assert_eq!(got, GREETING);
    let took = t0.elapsed();
    // 5 bytes at once, then 7 at 50 ms each
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn reset_at_accept_sends_nothing() {
    let proxy = FaultProxy::with_rules(line_server(), vec![Rule::all(When::Accept, Fault::Reset)]);
    let mut s = connect(&proxy);
    let (got, end) = read_n(&mut s, 1);
    assert!(got.is_empty());
    assert_eq!(
        end.expect("broken").kind(),
        ErrorKind::ConnectionReset,
        "a reset, not a greeting"
    );
}

#[test]
fn rules_pick_connections_by_number_and_change_while_running() {
    let proxy = FaultProxy::with_rules(
        line_server(),
        vec![Rule::nth(1, When::Accept, Fault::Close)],
    );
    let mut first = connect(&proxy);
    assert!(read_n(&mut first, 1).0.is_empty(), "1st: closed at once");
    let mut second = connect(&proxy);
    assert_eq!(
        read_n(&mut second, GREETING.len()).0,
        GREETING,
        "2nd passes"
    );
    proxy.set_rules(vec![Rule {
        conns: Conns::From(3),
        when: When::Accept,
        fault: Fault::Reset,
    }]);
    let mut third = connect(&proxy);
    assert_eq!(
        read_n(&mut third, 1).1.expect("reset").kind(),
        ErrorKind::ConnectionReset
    );
    // the second connection, accepted before the change, still passes
    second.write_all(b"a1 X\r\n").expect("write");
    assert_eq!(read_n(&mut second, 12).0, b"reply a1 X\r\n");
    proxy.clear_rules();
    let mut fourth = connect(&proxy);
    assert_eq!(read_n(&mut fourth, GREETING.len()).0, GREETING);
    let fired: Vec<Option<String>> = proxy.connections().into_iter().map(|c| c.fired).collect();
    assert_eq!(
        fired,
        vec![Some("close".into()), None, Some("reset".into()), None]
    );
    assert_eq!(proxy.accepted(), 4);
}

#[test]
fn a_server_that_closes_or_is_down_is_passed_on() {
    // Dovecot answers LOGOUT with BYE and closes: the client sees EOF.
    let dovecot = Dovecot::start();
    let proxy = FaultProxy::start(dovecot.imap_port());
    let mut s = connect(&proxy);
    let mut greeting = [0u8; 4];
    s.read_exact(&mut greeting).expect("greeting");
    assert_eq!(&greeting, b"* OK");
    s.write_all(b"a1 LOGOUT\r\n").expect("write");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("read to EOF");
    assert!(
        String::from_utf8_lossy(&rest).contains("a1 OK"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    // the server gone: a connection through the proxy is reset at once
    dovecot.kill();
    let mut s = connect(&proxy);
    let (got, end) = read_n(&mut s, 1);
    assert!(got.is_empty());
    assert_eq!(end.expect("broken").kind(), ErrorKind::ConnectionReset);
}

#[test]
fn throttle_makes_a_slow_link() {
    let proxy = FaultProxy::with_rules(
        line_server(),
        vec![Rule::all(
            When::command("BIG"),
            Fault::Throttle {
                bytes_per_sec: 20_000,
            },
        )],
    );
    let mut s = connect(&proxy);
    read_n(&mut s, GREETING.len());
    s.write_all(b"BIG\r\n").expect("write");
    let t0 = Instant::now();
    let (got, end) = read_n(&mut s, 10_002);
    assert!(end.is_none(), "{end:?}");
    assert_eq!(got.len(), 10_002);
    let took = t0.elapsed();
    // 10 kB at 20 kB/s
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}
