//! Proves the test harness in `tests/support/` works: real Dovecot and
//! Postfix start, the IMAP tool round-trips bytes, TLS verifies against the
//! test CA (and not against another), scripted SMTP answers as told, parallel
//! instances do not clash, and nothing outlives its handle.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::dovecot::CAPS_WITHOUT_CONDSTORE;
use support::{
    process, CertChoice, Dovecot, DovecotOptions, Postfix, ScriptedSmtp, ScriptedSmtpOptions,
    SilentServer, SmtpRules, SmtpTls, TempHome, TestCa, PYTHON,
};

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@test>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Reads one IMAP response line (up to CRLF) from a stream.
fn read_line<R: Read>(r: &mut R) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n") {
        match r.read(&mut b) {
            Ok(1) => out.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn dovecot_starts_and_greets() {
    let t = Instant::now();
    let dovecot = Dovecot::start();
    eprintln!("dovecot started in {:?}", t.elapsed());
    let mut s = TcpStream::connect(("127.0.0.1", dovecot.imap_port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let greeting = read_line(&mut s);
    assert!(greeting.starts_with("* OK"), "{greeting}");
    assert!(greeting.contains("STARTTLS"), "{greeting}");
    // Post-login capabilities include CONDSTORE/QRESYNC by default.
    s.write_all(b"a LOGIN alice alice-secret\r\n")
        .expect("write");
    let reply = read_line(&mut s);
    assert!(reply.starts_with("a OK"), "{reply}");
    assert!(
        reply.contains("CONDSTORE") && reply.contains("QRESYNC"),
        "{reply}"
    );
    assert!(dovecot.log_contents().contains("starting up"));
    assert!(dovecot.config_path().exists());
}

#[test]
fn capabilities_override_hides_condstore() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        capabilities_override: Some(CAPS_WITHOUT_CONDSTORE.to_string()),
        ..Default::default()
    });
    let mut s = TcpStream::connect(("127.0.0.1", dovecot.imap_port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    read_line(&mut s);
    s.write_all(b"a LOGIN bob bob-secret\r\nb CAPABILITY\r\n")
        .expect("write");
    let login = read_line(&mut s);
    assert!(login.starts_with("a OK"), "{login}");
    assert!(
        !login.contains("CONDSTORE") && !login.contains("QRESYNC"),
        "{login}"
    );
    let caps = read_line(&mut s);
    assert!(caps.starts_with("* CAPABILITY"), "{caps}");
    assert!(
        !caps.contains("CONDSTORE") && caps.contains("UIDPLUS"),
        "{caps}"
    );
    // The tool still works against it (it only needs LITERAL+/MULTIAPPEND).
    let imap = dovecot.imap("bob");
    assert_eq!(
        imap.append_many("INBOX", &[message("a", "1"), message("b", "2")]),
        vec![1, 2]
    );
}

#[test]
fn append_and_fetch_back_byte_exact() {
    let dovecot = Dovecot::start();
    let imap = dovecot.imap("alice");
    let raw = message("exact", "line one\r\nline two");
    let uid = imap.append("INBOX", &raw, "\\Flagged");
    assert_eq!(uid, 1);
    let all = imap.fetch_raw_all("INBOX");
    assert_eq!(all.len(), 1);
    let (fuid, body, flags) = &all[0];
    assert_eq!(*fuid, uid);
    assert_eq!(body, &raw, "a clean CRLF message comes back byte for byte");
    assert!(flags.contains("\\Flagged"), "{flags}");
    assert_eq!(
        imap.seen_count("INBOX"),
        0,
        "fetch_raw_all must not set \\Seen"
    );

    // What TEST-SERVERS.md says Dovecot changes: bare LF -> CRLF, NUL ->
    // 0x80, trailing lone CR dropped; a lone CR inside a line is kept.
    let odd = b"Subject: odd\nX: a\rb\r\n\r\nnul\0here\n\r".to_vec();
    let uid2 = imap.append("INBOX", &odd, "");
    let all = imap.fetch_raw_all("INBOX");
    let body2 = &all.iter().find(|m| m.0 == uid2).expect("uid2").1;
    assert_eq!(body2, b"Subject: odd\r\nX: a\rb\r\n\r\nnul\x80here\r\n");

    imap.set_flags("INBOX", uid, "+FLAGS", "\\Seen $Label1");
    let flags = imap.flags("INBOX");
    assert!(
        flags[0].1.contains("\\Seen") && flags[0].1.contains("$Label1"),
        "{flags:?}"
    );
    assert_eq!(imap.seen_count("INBOX"), 1);
    imap.expunge("INBOX", &[uid]);
    assert_eq!(imap.uids("INBOX"), vec![uid2]);
    let st = imap.status("INBOX");
    assert_eq!((st.messages, st.uidnext), (1, 3));
    assert!(st.highestmodseq.is_some());
}

#[test]
fn non_ascii_folder_is_created_and_listed() {
    let dovecot = Dovecot::start();
    let imap = dovecot.imap("carol");
    let wire = imap.create_folder("Faktury/Zażółć");
    assert_eq!(wire, "Faktury/Za&AXwA8wFCAQc-");
    imap.create_folder("Tom & Jerry");
    let wires = imap.list_folders();
    assert!(
        wires.contains(&"Faktury/Za&AXwA8wFCAQc-".to_string()),
        "{wires:?}"
    );
    assert!(wires.contains(&"Tom &- Jerry".to_string()), "{wires:?}");
    assert!(wires.contains(&"INBOX".to_string()), "{wires:?}");
    let list = imap.list();
    let f = list
        .iter()
        .find(|f| f.name == "Faktury/Zażółć")
        .expect("decoded name");
    assert_eq!(f.delim.as_deref(), Some("/"));
    let uid = imap.append("Faktury/Zażółć", &message("pl", "zażółć"), "\\Seen");
    assert_eq!(imap.uids("Faktury/Zażółć"), vec![uid]);
    assert!(imap.uidvalidity("Faktury/Zażółć") > 0);
    imap.rename_folder("Tom & Jerry", "Tom i Jerry ąę");
    assert!(imap
        .list_folders()
        .contains(&"Tom i Jerry &AQUBGQ-".to_string()));
    imap.delete_folder("Tom i Jerry ąę");
    let wires = imap.list_folders();
    assert!(!wires.iter().any(|w| w.starts_with("Tom")), "{wires:?}");
}

#[test]
fn uidvalidity_can_be_changed() {
    let dovecot = Dovecot::start();
    let imap = dovecot.imap("dave");
    imap.append("INBOX", &message("v", "v"), "");
    let before = imap.uidvalidity("INBOX");
    dovecot.set_uidvalidity("dave", "INBOX", before + 1000);
    assert_eq!(imap.uidvalidity("INBOX"), before + 1000);
}

#[test]
fn append_many_is_fast() {
    let dovecot = Dovecot::start();
    let imap = dovecot.imap("alice");
    let msgs: Vec<Vec<u8>> = (0..2000)
        .map(|i| message(&format!("bulk{i}"), &"x".repeat(200 + i % 500)))
        .collect();
    let t = Instant::now();
    let uids = imap.append_many("INBOX", &msgs);
    let took = t.elapsed();
    eprintln!("append_many: 2000 messages in {took:?}");
    assert_eq!(uids, (1..=2000).collect::<Vec<u32>>());
    assert!(
        took < Duration::from_secs(10),
        "append_many too slow: {took:?}"
    );
    let t = Instant::now();
    let all = imap.fetch_raw_all("INBOX");
    eprintln!("fetch_raw_all: 2000 messages in {:?}", t.elapsed());
    assert_eq!(all.len(), 2000);
    assert_eq!(all[1234].1, msgs[1234]);
}

#[test]
fn append_many_loads_20000_messages() {
    let dovecot = Dovecot::start();
    let imap = dovecot.imap("dave");
    let msgs: Vec<Vec<u8>> = (0..20_000)
        .map(|i| message(&format!("m{i}"), &format!("body {i}")))
        .collect();
    let t = Instant::now();
    let uids = imap.append_many_with_flags("INBOX", &msgs, "\\Seen");
    let took = t.elapsed();
    eprintln!("append_many: 20000 messages in {took:?}");
    assert_eq!(uids.len(), 20_000);
    assert!(took < Duration::from_secs(30), "too slow: {took:?}");
    assert_eq!(imap.status("INBOX").messages, 20_000);
    assert_eq!(imap.seen_count("INBOX"), 20_000);
}

#[test]
fn corpus_round_trips_through_dovecot() {
    let corpus = support::corpus();
    assert!(corpus.len() >= 100, "corpus has {} files", corpus.len());
    let dovecot = Dovecot::start();
    let imap = dovecot.imap("bob");
    let msgs: Vec<&Vec<u8>> = corpus.iter().map(|(_, b)| b).collect();
    let uids = imap.append_many("INBOX", &msgs);
    assert_eq!(uids.len(), corpus.len());
    let fetched = imap.fetch_raw_all("INBOX");
    assert_eq!(fetched.len(), corpus.len());
    let exact = corpus
        .iter()
        .zip(&fetched)
        .filter(|((_, raw), (_, body, _))| raw == body)
        .count();
    eprintln!(
        "corpus: {exact} of {} returned unchanged by Dovecot",
        corpus.len()
    );
    assert!(exact > 0);
}

fn tls_connect(port: u16, ca: &TestCa, host: &str) -> Result<String, String> {
    let cert = native_tls::Certificate::from_pem(&ca.ca_pem()).map_err(|e| e.to_string())?;
    let connector = native_tls::TlsConnector::builder()
        .disable_built_in_roots(true)
        .add_root_certificate(cert)
        .build()
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = connector.connect(host, tcp).map_err(|e| e.to_string())?;
    Ok(read_line(&mut tls))
}

#[test]
fn imaps_verifies_with_test_ca_only() {
    let dovecot = Dovecot::start();
    let greeting = tls_connect(dovecot.imaps_port(), dovecot.ca(), "localhost").expect("TLS");
    assert!(greeting.starts_with("* OK"), "{greeting}");
    // The cert has an IP SAN too.
    tls_connect(dovecot.imaps_port(), dovecot.ca(), "127.0.0.1").expect("TLS by IP");

    let dir = tempfile::tempdir().expect("tempdir");
    let other = TestCa::untrusted(dir.path());
    let err = tls_connect(dovecot.imaps_port(), &other, "localhost").expect_err("must fail");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let bad = Dovecot::start_with(DovecotOptions {
        cert: CertChoice::Untrusted,
        ..Default::default()
    });
    let err = tls_connect(bad.imaps_port(), bad.ca(), "localhost").expect_err("must fail");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    tls_connect(bad.imaps_port(), bad.served_ca(), "localhost").expect("served CA works");
}

#[test]
fn starttls_on_plain_port() {
    let dovecot = Dovecot::start();
    let script = format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
m = imaplib.IMAP4("127.0.0.1", {port})
m.starttls(ssl_context=ctx)
m.login("alice", "alice-secret")
print("ok")
"#,
        ca = dovecot.ca_file().display().to_string(),
        port = dovecot.imap_port()
    );
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn added_user_can_log_in() {
    let dovecot = Dovecot::start();
    dovecot.add_user("erin", "erin-pw");
    let imap = dovecot.imap("erin");
    assert_eq!(imap.append("INBOX", &message("e", "e"), ""), 1);
}

#[test]
fn postfix_submission_delivers_to_dovecot() {
    let dovecot = Dovecot::start();
    let t = Instant::now();
    let postfix = Postfix::start(&dovecot);
    eprintln!("postfix started in {:?}", t.elapsed());
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
msg = b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: via postfix\r\nMessage-ID: <pf1@test>\r\n\r\nhello bob\r\n"
s = smtplib.SMTP("127.0.0.1", {sub})
s.starttls(context=ctx)
s.login("alice", "alice-secret")
s.sendmail("alice@example.com", ["bob@example.com"], msg)
s.quit()
# smtps: implicit TLS, AUTH LOGIN this time
s = smtplib.SMTP_SSL("127.0.0.1", {smtps}, context=ctx)
s.ehlo()
s.login("carol", "carol-secret", initial_response_ok=False)
s.sendmail("carol@example.com", ["bob@example.com"], msg.replace(b"pf1", b"pf2"))
s.quit()
# submission refuses mail without AUTH even after STARTTLS
s = smtplib.SMTP("127.0.0.1", {sub})
s.starttls(context=ctx)
try:
    s.sendmail("x@example.com", ["bob@example.com"], msg)
    raise SystemExit("unauthenticated submission was accepted")
except smtplib.SMTPException:
    pass
print("ok")
"#,
        ca = dovecot.ca_file().display().to_string(),
        sub = postfix.submission_port(),
        smtps = postfix.smtps_port()
    );
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        postfix.log_contents()
    );
    let imap = dovecot.imap("bob");
    let t = Instant::now();
    let arrived = support::wait_until(Duration::from_secs(10), || imap.uids("INBOX").len() == 2);
    assert!(arrived, "not delivered:\n{}", postfix.log_contents());
    eprintln!("delivered within {:?}", t.elapsed());
    let all = imap.fetch_raw_all("INBOX");
    let text = String::from_utf8_lossy(&all[0].1);
    assert!(
        text.contains("Subject: via postfix") && text.contains("hello bob"),
        "{text}"
    );
}

#[test]
fn scripted_smtp_rejects_and_records() {
    let server = ScriptedSmtp::with_rules(
        SmtpRules::default()
            .rcpt("nobody@x.test", "550 5.1.1 no such user")
            .rcpt("later@x.test", "451 4.3.0 try again later"),
    );
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
refused = s.sendmail("a@x.test", ["ok@x.test", "nobody@x.test", "later@x.test", "ok2@x.test"],
                     b"Subject: s\r\n\r\n.leading dot\r\nlong " + b"y" * 3000 + b"\r\n")
print(sorted(refused))
s.quit()
"#,
        port = server.port()
    );
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "['later@x.test', 'nobody@x.test']"
    );
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, "a@x.test");
    assert_eq!(got[0].rcpt_to, vec!["ok@x.test", "ok2@x.test"]);
    assert!(got[0]
        .data
        .starts_with(b"Subject: s\r\n\r\n.leading dot\r\n"));
    assert!(got[0].data.ends_with(b"yyy\r\n"));
    assert_eq!(
        server.rcpt_attempts(),
        vec!["ok@x.test", "nobody@x.test", "later@x.test", "ok2@x.test"]
    );

    // Rules change while it runs: now DATA fails temporarily.
    server.set_rules(&SmtpRules::default().data("452 4.3.1 insufficient storage"));
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
try:
    s.sendmail("a@x.test", ["ok@x.test"], b"Subject: t\r\n\r\nx\r\n")
except smtplib.SMTPDataError as e:
    print(e.smtp_code)
"#,
        port = server.port()
    );
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .output()
        .expect("python");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "452");
    assert_eq!(server.received().len(), 1);
}

#[test]
fn scripted_smtp_starttls_and_auth() {
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(ca_dir.path());
    let server = ScriptedSmtp::start(ScriptedSmtpOptions {
        tls: SmtpTls::RequireStartTls,
        ca: Some(ca.clone()),
        auth: Some(("sender".into(), "pw".into())),
        auth_required: true,
        ..Default::default()
    });
    assert_eq!(server.ca_file(), Some(ca.ca_file()));
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
s = smtplib.SMTP("127.0.0.1", {port})
s.starttls(context=ctx)
try:
    s.login("sender", "wrong")
    raise SystemExit("bad password accepted")
except smtplib.SMTPAuthenticationError:
    pass
s.login("sender", "pw")
s.sendmail("a@x.test", ["b@x.test"], b"Subject: tls\r\n\r\nx\r\n")
s.quit()
"#,
        ca = ca.ca_file().display().to_string(),
        port = server.port()
    );
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls && got[0].authenticated);
}

#[test]
fn silent_server_never_answers() {
    let silent = SilentServer::start();
    let mut s = TcpStream::connect(("127.0.0.1", silent.port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    let err = s.read(&mut buf).expect_err("no greeting expected");
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert!(support::wait_until(Duration::from_secs(2), || silent
        .accepted()
        == 1));
}

#[test]
fn parallel_dovecots_do_not_clash() {
    let handles: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let d = Dovecot::start();
                let imap = d.imap("alice");
                imap.append("INBOX", &message(&format!("p{i}"), "x"), "");
                (
                    d.imap_port(),
                    d.dir().to_path_buf(),
                    imap.fetch_raw_all("INBOX"),
                    d,
                )
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let mut ports: Vec<u16> = results.iter().map(|r| r.0).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.2.len(), 1, "each instance has only its own message");
        assert!(String::from_utf8_lossy(&r.2[0].1).contains(&format!("Subject: p{i}")));
    }
}

#[test]
fn dovecot_restart_keeps_mail_and_ports() {
    let dovecot = Dovecot::start();
    let imap = dovecot.imap("alice");
    let uid = imap.append("INBOX", &message("r", "r"), "");
    let port = dovecot.imap_port();
    let old = dovecot.master_pid().expect("running");
    let t = Instant::now();
    dovecot.restart();
    eprintln!("dovecot restart took {:?}", t.elapsed());
    assert!(!process::alive(old));
    assert_ne!(dovecot.master_pid(), Some(old));
    assert_eq!(dovecot.imap_port(), port);
    assert_eq!(imap.uids("INBOX"), vec![uid]);
}

#[test]
fn processes_are_gone_after_drop() {
    let dovecot = Dovecot::start();
    let postfix = Postfix::start(&dovecot);
    let smtp = ScriptedSmtp::accept_all();
    // Make Dovecot fork imap/auth processes and keep one session open.
    let imap = dovecot.imap("alice");
    imap.append("INBOX", &message("d", "d"), "");
    let mut held = TcpStream::connect(("127.0.0.1", dovecot.imap_port())).expect("connect");
    held.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    read_line(&mut held);
    held.write_all(b"a LOGIN alice alice-secret\r\nb SELECT INBOX\r\n")
        .expect("write");
    read_line(&mut held);

    let dovecot_pids = dovecot.pids();
    let postfix_pids = postfix.pids();
    let smtp_pid = smtp.pid();
    assert!(dovecot_pids.len() >= 4, "{dovecot_pids:?}");
    assert!(postfix_pids.len() >= 3, "{postfix_pids:?}");
    let dirs = [dovecot.dir().to_path_buf(), postfix.dir().to_path_buf()];
    let t = Instant::now();
    drop(postfix);
    drop(dovecot);
    drop(smtp);
    eprintln!("drop of dovecot+postfix+smtp took {:?}", t.elapsed());
    for p in dovecot_pids.iter().chain(&postfix_pids).chain([&smtp_pid]) {
        assert!(!process::alive(*p), "pid {p} still alive after drop");
    }
    for d in dirs {
        assert!(!d.exists(), "{} not removed", d.display());
    }
}

#[test]
fn temp_home_builds_engine_command() {
    let home = TempHome::new();
    home.write_config("<?php\ndefine('BG_MAX_THREADS', 2);\n");
    assert!(std::fs::read_to_string(home.config_path())
        .expect("config")
        .contains("BG_MAX_THREADS"));
    assert!(home.db_path().ends_with("data/engine.sqlite"));
    assert_eq!(home.log("l-info.log"), "");
    let cmd = home.engine();
    let args: Vec<_> = cmd.get_args().collect();
    assert_eq!(
        args,
        [std::ffi::OsStr::new("--home"), home.path().as_os_str()]
    );
    assert!(cmd.get_program().to_string_lossy().ends_with("engine"));
}

#[test]
fn free_port_and_wait_port() {
    let ports = support::free_ports(5);
    let mut sorted = ports.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 5);
    let p = support::free_port();
    assert!(!support::wait_port(p, Duration::from_millis(100)));
    let l = std::net::TcpListener::bind(("127.0.0.1", p)).expect("bind");
    assert!(support::wait_port(p, Duration::from_secs(1)));
    drop(l);
}

#[test]
fn orphaned_servers_are_reaped() {
    let dovecot = Dovecot::start();
    let postfix = Postfix::start(&dovecot);
    let pids: Vec<u32> = dovecot.pids().into_iter().chain(postfix.pids()).collect();
    let dirs = [dovecot.dir().to_path_buf(), postfix.dir().to_path_buf()];
    // Pretend their test process died without Drop: an owner that is gone.
    for d in &dirs {
        std::fs::write(d.join("owner"), "999999999 1").expect("write owner");
    }
    process::reap_orphans_now();
    assert!(
        process::wait_gone(&pids, Duration::from_secs(5)),
        "{pids:?}"
    );
    for d in &dirs {
        assert!(!d.exists(), "{} not removed", d.display());
    }
    // Another live test's servers are never touched: this one's own owner lives.
    let live = Dovecot::start();
    process::reap_orphans_now();
    assert!(process::alive(live.master_pid().expect("running")));
    // Forget the reaped ones without signalling reused pids.
    std::mem::forget(postfix);
    std::mem::forget(dovecot);
}
