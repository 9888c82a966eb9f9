//! Proves the test harness in `tests/support/` works: real Dovecot and
//! Postfix start, the IMAP tool round-trips bytes, TLS verifies against the
//! test CA (and not against another), scripted SMTP answers as told, parallel
//! instances do not clash, and nothing outlives its handle. The OAuth
//! provider refreshes, rotates, revokes, runs the device flow and fails as
//! told; Dovecot takes XOAUTH2/OAUTHBEARER logins checked against it, over
//! IMAP and through Postfix's submission port.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::dovecot::CAPS_WITHOUT_CONDSTORE;
use support::{
    process, CertChoice, Dovecot, DovecotOptions, OAuthServer, Postfix, ScriptedSmtp,
    ScriptedSmtpOptions, SilentServer, SmtpRules, SmtpTls, TempHome, TestCa, PYTHON,
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
    let oauth = OAuthServer::start();
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
    let oauth_pid = oauth.pid();
    assert!(dovecot_pids.len() >= 4, "{dovecot_pids:?}");
    assert!(postfix_pids.len() >= 3, "{postfix_pids:?}");
    let dirs = [dovecot.dir().to_path_buf(), postfix.dir().to_path_buf()];
    let t = Instant::now();
    drop(postfix);
    drop(dovecot);
    drop(smtp);
    drop(oauth);
    eprintln!("drop of dovecot+postfix+smtp+oauth took {:?}", t.elapsed());
    for p in dovecot_pids
        .iter()
        .chain(&postfix_pids)
        .chain([&smtp_pid, &oauth_pid])
    {
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

// ---- OAuth 2.0: the provider, Dovecot's oauth2 passdb, Postfix's SASL ----

const XOAUTH2_CHALLENGE: &str = r#"{"status":"401","schemes":"bearer","scope":"mail"}"#;
const OAUTHBEARER_CHALLENGE: &str = r#"{"status":"invalid_token"}"#;

/// A Dovecot taking OAuth logins checked by `oauth`.
fn oauth_dovecot(oauth: &OAuthServer) -> Dovecot {
    Dovecot::start_with(DovecotOptions {
        oauth2: Some(oauth.introspection_url()),
        ..Default::default()
    })
}

/// On a fresh connection to the plain IMAP port, sends `command` (tag `a`),
/// answers each `+` continuation with the next of `answers` (or stops
/// there when none is left), and returns the continuations' texts (after
/// `+ `) and the tagged reply.
fn imap_authenticate(port: u16, command: &str, answers: &[&str]) -> (Vec<String>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let greeting = read_line(&mut s);
    assert!(greeting.starts_with("* OK"), "{greeting}");
    s.write_all(format!("a {command}\r\n").as_bytes())
        .expect("write");
    let mut continuations = Vec::new();
    let mut answers = answers.iter();
    loop {
        let line = read_line(&mut s);
        assert!(
            !line.is_empty(),
            "connection closed after {continuations:?}"
        );
        if let Some(c) = line.strip_prefix('+') {
            continuations.push(c.trim().to_string());
            match answers.next() {
                Some(a) => s.write_all(format!("{a}\r\n").as_bytes()).expect("write"),
                None => return (continuations, String::new()),
            }
        } else if line.starts_with("a ") {
            return (continuations, line.trim_end().to_string());
        }
    }
}

/// The base64 text of a challenge, decoded.
fn decoded(b64: &str) -> String {
    support::text(&support::unbase64(b64).unwrap_or_else(|| panic!("not base64: {b64}")))
}

/// Reads one SMTP/LMTP reply (all its lines): (code, lines).
fn smtp_reply<S: Read>(s: &mut S) -> (u16, Vec<String>) {
    let mut lines = Vec::new();
    loop {
        let line = read_line(s);
        assert!(line.len() >= 4, "short SMTP reply {line:?} after {lines:?}");
        let last = line.as_bytes()[3] == b' ';
        lines.push(line.trim_end_matches(['\r', '\n']).to_string());
        if last {
            let code = lines[0][..3].parse().expect("reply code");
            return (code, lines);
        }
    }
}

fn smtp_cmd<S: Read + Write>(s: &mut S, line: &str) -> (u16, Vec<String>) {
    s.write_all(format!("{line}\r\n").as_bytes())
        .expect("write");
    smtp_reply(s)
}

/// Connects to Postfix's submission port, STARTTLS (trusting `ca`), EHLO;
/// returns the TLS stream and the EHLO reply lines.
fn submission(port: u16, ca: &TestCa) -> (native_tls::TlsStream<TcpStream>, Vec<String>) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(smtp_reply(&mut tcp).0, 220);
    assert_eq!(smtp_cmd(&mut tcp, "EHLO client.test").0, 250);
    assert_eq!(smtp_cmd(&mut tcp, "STARTTLS").0, 220);
    let cert = native_tls::Certificate::from_pem(&ca.ca_pem()).expect("CA pem");
    let connector = native_tls::TlsConnector::builder()
        .disable_built_in_roots(true)
        .add_root_certificate(cert)
        .build()
        .expect("connector");
    let mut tls = connector
        .connect("localhost", tcp)
        .expect("STARTTLS handshake");
    let (code, ehlo) = smtp_cmd(&mut tls, "EHLO client.test");
    assert_eq!(code, 250, "{ehlo:?}");
    (tls, ehlo)
}

#[test]
fn oauth_imap_logins_against_dovecot() {
    let t = Instant::now();
    let oauth = OAuthServer::start();
    eprintln!("oauth server started in {:?}", t.elapsed());
    let dovecot = oauth_dovecot(&oauth);
    let port = dovecot.imap_port();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let greeting = read_line(&mut s);
    for cap in ["AUTH=XOAUTH2", "AUTH=OAUTHBEARER", "SASL-IR", "AUTH=PLAIN"] {
        assert!(greeting.contains(cap), "{cap} missing: {greeting}");
    }
    drop(s);

    // A fresh token (2,200 bytes by default) in the initial response.
    let tokens = oauth.issue("alice");
    assert_eq!(tokens.access_token.len(), 2200);
    let at = &tokens.access_token;
    let (cont, tagged) = imap_authenticate(
        port,
        &format!("AUTHENTICATE XOAUTH2 {}", support::xoauth2("alice", at)),
        &[],
    );
    assert!(
        cont.is_empty() && tagged.starts_with("a OK"),
        "{cont:?} {tagged}"
    );
    let ob = support::oauthbearer("alice", at, "127.0.0.1", port);
    let (cont, tagged) = imap_authenticate(port, &format!("AUTHENTICATE OAUTHBEARER {ob}"), &[]);
    assert!(
        cont.is_empty() && tagged.starts_with("a OK"),
        "{cont:?} {tagged}"
    );
    // The address works as the user too (auth_username_format = %n).
    let (_, tagged) = imap_authenticate(
        port,
        &format!(
            "AUTHENTICATE XOAUTH2 {}",
            support::xoauth2("alice@example.com", at)
        ),
        &[],
    );
    assert!(tagged.starts_with("a OK"), "{tagged}");
    // Without SASL-IR: an empty `+ ` first.
    let (cont, tagged) = imap_authenticate(
        port,
        "AUTHENTICATE XOAUTH2",
        &[&support::xoauth2("alice", at)],
    );
    assert_eq!(cont, vec![String::new()]);
    assert!(tagged.starts_with("a OK"), "{tagged}");

    // Another user's name with alice's token: refused after the challenge.
    let (cont, tagged) = imap_authenticate(
        port,
        &format!("AUTHENTICATE XOAUTH2 {}", support::xoauth2("bob", at)),
        &[""],
    );
    assert_eq!(cont.len(), 1, "{cont:?}");
    assert_eq!(decoded(&cont[0]), XOAUTH2_CHALLENGE);
    assert!(
        tagged.starts_with("a NO [AUTHENTICATIONFAILED]"),
        "{tagged}"
    );

    // Revoked early: the challenge comes at once, the NO only after the answer.
    oauth.revoke_access(at);
    assert!(!oauth.access_token_active(at));
    let t = Instant::now();
    let (cont, tagged) = imap_authenticate(
        port,
        &format!("AUTHENTICATE XOAUTH2 {}", support::xoauth2("alice", at)),
        &[""],
    );
    eprintln!("refused XOAUTH2 login took {:?}", t.elapsed());
    assert_eq!(
        cont,
        vec!["eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=".to_string()]
    );
    assert_eq!(tagged, "a NO [AUTHENTICATIONFAILED] Authentication failed.");
    let (cont, tagged) =
        imap_authenticate(port, &format!("AUTHENTICATE OAUTHBEARER {ob}"), &["AQ=="]);
    assert_eq!(cont.len(), 1, "{cont:?}");
    assert_eq!(decoded(&cont[0]), OAUTHBEARER_CHALLENGE);
    assert_eq!(tagged, "a NO [AUTHENTICATIONFAILED] Authentication failed.");

    // Expired (not revoked): refused the same way.
    let fresh = oauth.issue("alice");
    oauth.set_expires_in(&fresh.access_token, -1);
    let (cont, tagged) = imap_authenticate(
        port,
        &format!(
            "AUTHENTICATE XOAUTH2 {}",
            support::xoauth2("alice", &fresh.access_token)
        ),
        &[""],
    );
    assert_eq!(cont.len(), 1);
    assert!(tagged.starts_with("a NO"), "{tagged}");

    // Counting: 4 granted + 3 refused for alice, 1 refused for bob; one
    // introspection per attempt (bob's was of alice's token).
    // (imap-login writes `Login:` lines, the auth process the others: wait
    // for all of them.)
    let counted = support::wait_until(Duration::from_secs(5), || {
        dovecot.auth_attempts("alice") == 7
            && dovecot.auth_attempts("bob") == 1
            && dovecot.imap_logins("alice") == 4
    });
    assert!(
        counted,
        "alice {} bob {}\n{}",
        dovecot.auth_attempts("alice"),
        dovecot.auth_attempts("bob"),
        dovecot.log_contents()
    );
    assert_eq!(
        dovecot.auth_failures("alice"),
        3,
        "{}",
        dovecot.log_contents()
    );
    assert_eq!(dovecot.auth_failures("bob"), 1);
    assert_eq!(dovecot.imap_logins("alice"), 4);
    assert_eq!(dovecot.imap_logins("bob"), 0);
    assert_eq!(oauth.introspections_for("alice"), 8);
    assert_eq!(oauth.introspections(), 8);
    let log = dovecot.log_contents();
    assert!(!log.contains(at.as_str()), "token in Dovecot's log");
    assert!(
        log.contains("oauth2 failed: Introspection failed: Provided token is not valid"),
        "{log}"
    );
    assert!(
        log.contains("Username 'bob' did not match 'alice'"),
        "{log}"
    );

    // Tokens up to ~6 KB fit Dovecot's 8 KB limit on a SASL response.
    let long = oauth.issue_with(
        "alice",
        support::IssueOptions {
            length: Some(6000),
            ..Default::default()
        },
    );
    let (_, tagged) = imap_authenticate(
        port,
        &format!(
            "AUTHENTICATE XOAUTH2 {}",
            support::xoauth2("alice", &long.access_token)
        ),
        &[],
    );
    assert!(tagged.starts_with("a OK"), "{tagged}");
}

#[test]
fn oauth_dovecot_keeps_passwords_and_lmtp() {
    let oauth = OAuthServer::start();
    let dovecot = oauth_dovecot(&oauth);
    // Password login (imaplib LOGIN) and a refused one, counted.
    let imap = dovecot.imap("carol");
    imap.append("INBOX", &message("pw", "by password"), "");
    let (_, tagged) = imap_authenticate(dovecot.imap_port(), "LOGIN carol wrong-password", &[]);
    assert!(tagged.starts_with("a NO"), "{tagged}");
    assert!(support::wait_until(Duration::from_secs(5), || dovecot
        .auth_attempts("carol")
        == 2));
    assert_eq!(
        dovecot.auth_failures("carol"),
        1,
        "{}",
        dovecot.log_contents()
    );
    assert!(dovecot
        .log_contents()
        .contains("passwd-file(carol,127.0.0.1,"));
    // A user added later (doveadm lookup goes through the `none` mechanism).
    dovecot.add_user("erin", "erin-pw");
    assert_eq!(
        dovecot.imap("erin").append("INBOX", &message("e", "e"), ""),
        1
    );

    // LMTP delivery.
    let mut s = TcpStream::connect(("127.0.0.1", dovecot.lmtp_port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(smtp_reply(&mut s).0, 220);
    assert_eq!(smtp_cmd(&mut s, "LHLO client.test").0, 250);
    assert_eq!(smtp_cmd(&mut s, "MAIL FROM:<x@example.com>").0, 250);
    let (code, lines) = smtp_cmd(&mut s, "RCPT TO:<carol@example.com>");
    assert_eq!(code, 250, "{lines:?}\n{}", dovecot.log_contents());
    assert_eq!(smtp_cmd(&mut s, "DATA").0, 354);
    let (code, lines) = smtp_cmd(
        &mut s,
        "Subject: via lmtp\r\nMessage-ID: <lmtp@test>\r\n\r\ndelivered\r\n.",
    );
    assert_eq!(code, 250, "{lines:?}");
    assert_eq!(imap.uids("INBOX").len(), 2);
    assert_eq!(oauth.introspections(), 0, "no token involved");
}

#[test]
fn oauth_smtp_via_postfix_submission() {
    let oauth = OAuthServer::start();
    let dovecot = oauth_dovecot(&oauth);
    let postfix = Postfix::start(&dovecot);
    let ca = dovecot.ca();
    let tokens = oauth.issue("alice");
    let ir = support::xoauth2("alice", &tokens.access_token);
    assert!(ir.len() > 2048, "{}", ir.len());

    // The long token after an empty 334: accepted, and the mail goes through.
    let (mut s, ehlo) = submission(postfix.submission_port(), ca);
    let auth = ehlo
        .iter()
        .find(|l| l[4..].starts_with("AUTH "))
        .expect("AUTH");
    assert!(
        auth.ends_with("AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER"),
        "{ehlo:?}"
    );
    assert_eq!(
        smtp_cmd(&mut s, "AUTH XOAUTH2"),
        (334, vec!["334 ".to_string()])
    );
    let (code, lines) = smtp_cmd(&mut s, &ir);
    assert_eq!(code, 235, "{lines:?}\n{}", postfix.log_contents());
    assert_eq!(smtp_cmd(&mut s, "MAIL FROM:<alice@example.com>").0, 250);
    assert_eq!(smtp_cmd(&mut s, "RCPT TO:<bob@example.com>").0, 250);
    assert_eq!(smtp_cmd(&mut s, "DATA").0, 354);
    let (code, lines) = smtp_cmd(
        &mut s,
        "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: by token\r\n\r\nhi\r\n.",
    );
    assert_eq!(code, 250, "{lines:?}");
    drop(s);
    let bob = dovecot.imap("bob");
    assert!(
        support::wait_until(Duration::from_secs(10), || bob.uids("INBOX").len() == 1),
        "not delivered:\n{}",
        postfix.log_contents()
    );

    // The same response on the AUTH line: Postfix's 2048-byte line limit.
    let (mut s, _) = submission(postfix.submission_port(), ca);
    let (code, lines) = smtp_cmd(&mut s, &format!("AUTH XOAUTH2 {ir}"));
    assert_eq!(code, 535, "{lines:?}");
    eprintln!("AUTH line of {} bytes: {lines:?}", ir.len() + 13);
    assert!(
        lines[0].contains("Invalid base64 data in initial response"),
        "{lines:?}"
    );
    drop(s);

    // OAUTHBEARER with the initial response on the line (short enough).
    let short = oauth.issue_with(
        "alice",
        support::IssueOptions {
            length: Some(1000),
            ..Default::default()
        },
    );
    let port = postfix.submission_port();
    let (mut s, _) = submission(port, ca);
    let ob = support::oauthbearer("alice", &short.access_token, "127.0.0.1", port);
    assert_eq!(smtp_cmd(&mut s, &format!("AUTH OAUTHBEARER {ob}")).0, 235);
    drop(s);

    // A refused token: a 334 challenge, then 535 after the empty answer.
    oauth.revoke_access(&short.access_token);
    let (mut s, _) = submission(port, ca);
    let (code, lines) = smtp_cmd(
        &mut s,
        &format!(
            "AUTH XOAUTH2 {}",
            support::xoauth2("alice", &short.access_token)
        ),
    );
    assert_eq!(code, 334, "{lines:?}");
    assert_eq!(decoded(&lines[0][4..]), XOAUTH2_CHALLENGE);
    let t = Instant::now();
    let (code, lines) = smtp_cmd(&mut s, "");
    eprintln!("535 came {:?} after the answer: {lines:?}", t.elapsed());
    assert_eq!(code, 535, "{lines:?}");
    let (code, lines) = smtp_cmd(&mut s, &format!("AUTH OAUTHBEARER {ob}"));
    assert_eq!(code, 334, "{lines:?}");
    assert_eq!(decoded(&lines[0][4..]), OAUTHBEARER_CHALLENGE);
    assert_eq!(smtp_cmd(&mut s, "AQ==").0, 535);
    drop(s);

    // Postfix's SASL goes through Dovecot's auth: 2 granted, 2 refused.
    assert!(
        support::wait_until(Duration::from_secs(5), || dovecot.auth_attempts("alice")
            == 4),
        "{}",
        dovecot.log_contents()
    );
    assert_eq!(dovecot.auth_failures("alice"), 2);
    assert_eq!(dovecot.imap_logins("alice"), 0);
    assert_eq!(oauth.introspections_for("alice"), 4);
    let log = postfix.log_contents();
    assert!(
        log.contains(
            "SASL XOAUTH2 authentication failed: (reason unavailable), sasl_username=alice"
        ),
        "{log}"
    );
}

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A refresh request to `oauth`'s token endpoint with its default client.
fn refresh(oauth: &OAuthServer, refresh_token: &str) -> support::HttpReply {
    support::post_form(
        &oauth.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", oauth.client_id()),
            (
                "scope",
                "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
            ),
        ],
        oauth.ca(),
        HTTP_TIMEOUT,
    )
    .expect("token endpoint answers")
}

#[test]
fn oauth_refresh_rotates_and_refuses() {
    let oauth = OAuthServer::start();
    let first = oauth.issue("alice");
    assert_eq!(
        oauth.valid_refresh_tokens("alice"),
        vec![first.refresh_token.clone()]
    );

    let r = refresh(&oauth, &first.refresh_token);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let rotated = v["refresh_token"].as_str().expect("rotated refresh token");
    assert_ne!(rotated, first.refresh_token);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(
        v["scope"],
        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    );
    let access = v["access_token"].as_str().expect("access_token");
    assert_eq!(access.len(), 2200);
    assert!(oauth.access_token_active(access));
    assert_eq!(
        oauth.valid_refresh_tokens("alice"),
        vec![rotated.to_string()]
    );

    // The old refresh token is dead now; the new one works once.
    let r = refresh(&oauth, &first.refresh_token);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant", "{}", r.text());
    let r = refresh(&oauth, rotated);
    assert_eq!(r.status, 200, "{}", r.text());
    let newest = r.json()["refresh_token"].as_str().expect("rt").to_string();

    // Without rotation (Google): no refresh_token, the same one keeps working.
    oauth.set_rotation(false);
    for _ in 0..2 {
        let r = refresh(&oauth, &newest);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.json().get("refresh_token").is_none(), "{}", r.text());
    }
    oauth.revoke_refresh(&newest);
    assert_eq!(refresh(&oauth, &newest).json()["error"], "invalid_grant");
    let r = refresh(&oauth, "never-issued");
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("invalid_grant"))
    );

    // Client authentication.
    let other = oauth.issue("bob");
    let post = |fields: &[(&str, &str)]| {
        support::post_form(&oauth.token_url(), fields, None, HTTP_TIMEOUT).expect("answer")
    };
    let r = post(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &other.refresh_token),
        ("client_id", "someone-else"),
    ]);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("invalid_client"))
    );
    oauth.add_client("confidential", Some("s3cret"));
    let conf = oauth.issue_with(
        "bob",
        support::IssueOptions {
            client_id: Some("confidential".into()),
            ..Default::default()
        },
    );
    let with_secret = |secret: &str| {
        post(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &conf.refresh_token),
            ("client_id", "confidential"),
            ("client_secret", secret),
        ])
    };
    assert_eq!(with_secret("wrong").status, 401);
    assert_eq!(with_secret("s3cret").status, 200);
    // A refresh token is bound to its client.
    let r = post(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &conf.refresh_token),
        ("client_id", support::DEFAULT_CLIENT_ID),
    ]);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = post(&[("grant_type", "password"), ("client_id", oauth.client_id())]);
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    // Both of bob's (rotation is off: the confidential client's still lives).
    assert_eq!(oauth.revoke_user("bob"), 2);

    // Introspection (what Dovecot asks), with and without its credentials.
    let intro = |url: &str, token: &str| {
        support::post_form(url, &[("token", token)], None, HTTP_TIMEOUT).expect("answer")
    };
    let r = intro(&oauth.introspection_url(), access);
    let v = r.json();
    assert_eq!(
        (v["active"].clone(), v["username"].clone()),
        (json!(true), json!("alice"))
    );
    assert!(v["exp"].as_i64().expect("exp") > 0);
    oauth.revoke_access(access);
    assert_eq!(
        intro(&oauth.introspection_url(), access).json(),
        json!({"active": false})
    );
    assert_eq!(
        intro(&oauth.introspection_url(), "junk").json(),
        json!({"active": false})
    );
    let anonymous = format!("http://127.0.0.1:{}/introspect", oauth.control_port());
    assert_eq!(intro(&anonymous, access).status, 401);
    let provider_port = format!(
        "http://{}:{}@127.0.0.1:{}/introspect",
        support::oauth::INTROSPECTION_USER,
        support::oauth::INTROSPECTION_PASSWORD,
        oauth.port()
    );
    assert_eq!(intro(&provider_port, access).json()["active"], false);

    // Counters and the request log (secrets kept verbatim).
    assert_eq!(oauth.refresh_requests(), 11);
    assert_eq!(oauth.token_requests_by("refresh_token", "confidential"), 2);
    assert_eq!(oauth.token_requests("password"), 1);
    assert_eq!(oauth.introspections(), 5);
    let reqs = oauth.requests();
    assert_eq!(reqs.len(), 17);
    let r0 = &reqs[0];
    assert_eq!((r0.method.as_str(), r0.path.as_str()), ("POST", "/token"));
    assert_eq!(r0.form["refresh_token"], first.refresh_token);
    assert_eq!(r0.accept.as_deref(), Some("application/json"));
    assert_eq!(r0.status, Some(200));
    assert!(reqs
        .iter()
        .any(|r| r.port == "control" && r.authorization.is_some()));
    let all = oauth.all_tokens();
    assert!(all.contains(&first.refresh_token) && all.contains(&access.to_string()));
    oauth.reset_stats();
    assert_eq!((oauth.refresh_requests(), oauth.requests().len()), (0, 0));
}

#[test]
fn oauth_device_flow_follows_its_script() {
    let oauth = OAuthServer::start();
    let start = |client: &str| {
        support::post_form(
            &oauth.device_url(),
            &[
                ("client_id", client),
                ("scope", "https://mail.test/ offline_access"),
            ],
            None,
            HTTP_TIMEOUT,
        )
        .expect("device endpoint answers")
    };
    let poll = |code: &str| {
        support::post_form(
            &oauth.token_url(),
            &[
                ("grant_type", support::DEVICE_GRANT),
                ("device_code", code),
                ("client_id", oauth.client_id()),
            ],
            None,
            HTTP_TIMEOUT,
        )
        .expect("token endpoint answers")
    };
    oauth.script_device(&["authorization_pending", "slow_down", "ok"], "carol");
    let r = start(oauth.client_id());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let code = v["device_code"].as_str().expect("device_code").to_string();
    let user_code = v["user_code"].as_str().expect("user_code");
    assert_eq!(v["verification_uri"], oauth.verification_url().as_str());
    assert_eq!(
        v["verification_uri_complete"],
        format!("{}?code={user_code}", oauth.verification_url()).as_str()
    );
    assert_eq!(
        (v["interval"].clone(), v["expires_in"].clone()),
        (json!(1), json!(900))
    );
    let answers: Vec<(u16, Value)> = (0..4)
        .map(|_| {
            let r = poll(&code);
            (r.status, r.json())
        })
        .collect();
    assert_eq!(answers[0].1["error"], "authorization_pending");
    assert_eq!(answers[1].1["error"], "slow_down");
    assert_eq!(answers[2].0, 200, "{:?}", answers[2]);
    let tokens = &answers[2].1;
    assert_eq!(tokens["scope"], "https://mail.test/ offline_access");
    assert!(tokens["refresh_token"].is_string() && tokens["access_token"].is_string());
    assert_eq!(
        oauth.valid_refresh_tokens("carol"),
        vec![tokens["refresh_token"].as_str().expect("rt").to_string()]
    );
    assert_eq!(
        (answers[3].0, answers[3].1["error"].clone()),
        (400, json!("invalid_grant"))
    );
    assert_eq!(oauth.device_codes(), vec![code.clone()]);
    let polls = oauth.device_polls(&code);
    assert_eq!(polls.len(), 4);
    assert!(polls.windows(2).all(|w| w[0] <= w[1]), "{polls:?}");
    assert_eq!(oauth.token_requests(support::DEVICE_GRANT), 4);

    // Refusals repeat; a code past its lifetime is expired whatever the script.
    for (script, expect) in [
        ("access_denied", "access_denied"),
        ("expired_token", "expired_token"),
    ] {
        oauth.script_device(&[script], "carol");
        let code = start(oauth.client_id()).json()["device_code"]
            .as_str()
            .expect("code")
            .to_string();
        for _ in 0..2 {
            let r = poll(&code);
            assert_eq!((r.status, r.json()["error"].clone()), (400, json!(expect)));
        }
    }
    oauth.script_device(&["ok"], "carol");
    oauth.set_device_expires_in(-1);
    oauth.set_device_interval(7);
    let v = start(oauth.client_id()).json();
    assert_eq!(v["interval"], 7);
    let r = poll(v["device_code"].as_str().expect("code"));
    assert_eq!(r.json()["error"], "expired_token");
    // A script can change for a code already handed out.
    oauth.set_device_expires_in(900);
    let code = start(oauth.client_id()).json()["device_code"]
        .as_str()
        .expect("code")
        .to_string();
    oauth.script_device_code(&code, &["slow_down", "ok"]);
    assert_eq!(poll(&code).json()["error"], "slow_down");
    assert_eq!(poll(&code).status, 200);
    assert_eq!(start("unknown-client").status, 401);
    assert_eq!(oauth.device_requests(), 6);
}

#[test]
fn oauth_failure_modes_answer_as_set() {
    use support::{Endpoint, Failure};
    let oauth = OAuthServer::start();
    let mut rt = oauth.issue("alice").refresh_token;
    let check_normal = |rt: &mut String| {
        let r = refresh(&oauth, rt);
        assert_eq!(r.status, 200, "{}", r.text());
        *rt = r.json()["refresh_token"].as_str().expect("rt").to_string();
    };

    oauth.fail_times(
        Endpoint::Token,
        Failure::Status(500, "Internal Server Error".into()),
        2,
    );
    for _ in 0..2 {
        let r = refresh(&oauth, &rt);
        assert_eq!(
            (r.status, r.text().as_str()),
            (500, "Internal Server Error")
        );
    }
    check_normal(&mut rt); // the refresh token survived the failures

    oauth.fail_times(
        Endpoint::Token,
        Failure::JsonStatus(400, json!({"error": "unauthorized_client"})),
        1,
    );
    let r = refresh(&oauth, &rt);
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("unauthorized_client"))
    );

    oauth.fail_times(Endpoint::Token, Failure::Html, 1);
    let r = refresh(&oauth, &rt);
    assert_eq!(r.status, 200);
    assert!(
        r.head.to_lowercase().contains("content-type: text/html"),
        "{}",
        r.head
    );
    assert!(r.text().starts_with("<!DOCTYPE html>"));

    oauth.fail_times(Endpoint::Token, Failure::Huge(10_000_000), 1);
    let t = Instant::now();
    let r = refresh(&oauth, &rt);
    eprintln!("10 MB answer read in {:?}", t.elapsed());
    assert_eq!((r.status, r.body.len()), (200, 10_000_000));
    assert!(r.text().starts_with("{\"padding\":\"xxx"));

    oauth.fail_times(Endpoint::Token, Failure::NoAccessToken, 1);
    let v = refresh(&oauth, &rt).json();
    assert!(
        v.get("access_token").is_none() && v["token_type"] == "Bearer",
        "{v}"
    );

    oauth.fail_times(Endpoint::Token, Failure::Close, 1);
    let err = support::post_form(
        &oauth.token_url(),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        None,
        HTTP_TIMEOUT,
    )
    .expect_err("closed without an answer");
    assert!(err.contains("closed without an answer"), "{err}");
    check_normal(&mut rt);

    // A stall: the client gives up first; a patient one gets the answer.
    oauth.fail_times(
        Endpoint::Token,
        Failure::Delay(Duration::from_millis(1500)),
        2,
    );
    let t = Instant::now();
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
        ("client_id", support::DEFAULT_CLIENT_ID),
    ];
    let err = support::post_form(
        &oauth.token_url(),
        &fields,
        None,
        Duration::from_millis(300),
    )
    .expect_err("stalled");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(err.contains("read"), "{err}");
    // That stalled request still refreshes once its delay is over (and
    // rotates rt away); wait for it, then take the newest token.
    let mut valid = Vec::new();
    let rotated = support::wait_until(Duration::from_secs(10), || {
        valid = oauth.valid_refresh_tokens("alice");
        valid.len() == 1 && valid[0] != rt
    });
    assert!(rotated, "the stalled refresh never completed: {valid:?}");
    rt = valid[0].clone();
    let t = Instant::now();
    let r = refresh(&oauth, &rt);
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.status, 200);
    rt = r.json()["refresh_token"].as_str().expect("rt").to_string();

    // Nonsense expires_in: a real refresh (rotated), lying about the expiry.
    for value in [json!(-5), json!("soon"), json!(1e15)] {
        oauth.fail_times(Endpoint::Token, Failure::ExpiresIn(value.clone()), 1);
        let v = refresh(&oauth, &rt).json();
        assert_eq!(v["expires_in"], value);
        assert!(v["access_token"].is_string());
        rt = v["refresh_token"].as_str().expect("rt").to_string();
    }

    // Until cleared, and on the other endpoints too.
    oauth.fail(Endpoint::Token, Failure::Status(503, "busy".into()));
    assert_eq!(refresh(&oauth, &rt).status, 503);
    assert_eq!(refresh(&oauth, &rt).status, 503);
    oauth.clear_failure(Endpoint::Token);
    check_normal(&mut rt);
    oauth.fail_times(
        Endpoint::DeviceCode,
        Failure::Status(502, "bad gateway".into()),
        1,
    );
    let r = support::post_form(
        &oauth.device_url(),
        &[("client_id", oauth.client_id())],
        None,
        HTTP_TIMEOUT,
    )
    .expect("answer");
    assert_eq!(r.status, 502);
    oauth.fail_times(Endpoint::Introspect, Failure::Status(500, "down".into()), 1);
    let r = support::post_form(
        &oauth.introspection_url(),
        &[("token", "x")],
        None,
        HTTP_TIMEOUT,
    )
    .expect("answer");
    assert_eq!(r.status, 500);
    // Every request was counted, failed or not.
    assert_eq!(oauth.refresh_requests(), 17);
}

#[test]
fn oauth_https_verifies_with_its_ca_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&dir.path().join("ca"));
    let untrusted = TestCa::untrusted(&dir.path().join("untrusted"));
    let oauth = OAuthServer::start_https(&ca);
    assert!(oauth.token_url().starts_with("https://127.0.0.1:"));
    assert_eq!(oauth.ca_file(), Some(ca.ca_file()));
    let rt = oauth.issue("alice").refresh_token;
    let r = refresh(&oauth, &rt);
    assert_eq!(r.status, 200, "{}", r.text());
    let fields = [("grant_type", "refresh_token"), ("refresh_token", "x")];
    let err = support::post_form(&oauth.token_url(), &fields, Some(&untrusted), HTTP_TIMEOUT)
        .expect_err("must not verify");
    assert!(err.contains("TLS"), "{err}");
    let err = support::post_form(&oauth.token_url(), &fields, None, HTTP_TIMEOUT)
        .expect_err("no CA trusted");
    assert!(err.contains("TLS"), "{err}");

    let bad = OAuthServer::start_https(&untrusted);
    let err = support::post_form(&bad.token_url(), &fields, Some(&ca), HTTP_TIMEOUT)
        .expect_err("must not verify");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The control port stays plain HTTP: admin calls and Dovecot's URL work.
    assert!(bad.introspection_url().starts_with("http://"));
    bad.issue("bob");

    // An independent client agrees (Python's urllib with the CA file).
    let script = format!(
        r#"
import ssl, urllib.request, urllib.error
def post(url, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    try:
        urllib.request.urlopen(url, data=b"grant_type=refresh_token&refresh_token=x", context=ctx)
    except urllib.error.HTTPError as e:
        return str(e.code)
    except urllib.error.URLError as e:
        return "verify failed" if isinstance(e.reason, ssl.SSLCertVerificationError) else repr(e)
    return "200"
print(post({good:?}, {ca:?}), post({good:?}, {unt:?}), post({bad:?}, {ca:?}))
"#,
        good = oauth.token_url(),
        bad = bad.token_url(),
        ca = ca.ca_file().display().to_string(),
        unt = untrusted.ca_file().display().to_string(),
    );
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .output()
        .expect("python");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "401 verify failed verify failed",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
