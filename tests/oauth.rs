//! OAuth 2.0 accounts and refused logins (SPEC §12), against real servers:
//! a Dovecot that validates bearer tokens through its `oauth2` passdb
//! against the test token server (which issues, refreshes, rotates and
//! revokes tokens and serves the device flow), a Postfix submission port
//! whose SASL goes to that Dovecot, and a scripted IMAP server for the
//! servers that limit connections.

mod support;

use serde_json::Value;
use std::process::Output;
use std::time::Duration;
use support::engine::*;
use support::oauth::{Endpoint, Failure};
use support::{
    text, wait_until, Dovecot, DovecotOptions, FakeFolder, FakeImap, FakeImapOptions, OAuthServer,
    OAuthServerOptions, Postfix, TempHome, TestCa,
};

/// BG_IO_TIMEOUT of these tests, in seconds.
const T: u64 = 2;

/// The servers of a test and the engine's home.
struct Env {
    oauth: OAuthServer,
    dovecot: Dovecot,
    postfix: Postfix,
    home: TempHome,
}

/// A Dovecot checking tokens at `oauth`, a Postfix in front of it, and a
/// home trusting both (and the token server's CA, when it has one).
fn env_with(oauth: OAuthServer, extra: &str) -> Env {
    let dovecot = Dovecot::start_with(DovecotOptions {
        oauth2: Some(oauth.introspection_url()),
        ..Default::default()
    });
    let postfix = Postfix::start(&dovecot);
    let home = TempHome::new();
    let mut pem = std::fs::read(dovecot.ca_file()).expect("dovecot CA");
    if let Some(ca) = oauth.ca_file() {
        pem.extend(std::fs::read(ca).expect("token server CA"));
    }
    let cas = home.path().join("cas.pem");
    std::fs::write(&cas, pem).expect("write CAs");
    home.write_config(&format!(
        "<?php\n{extra}\ndefine('BG_TLS_CA_FILE', '{}');\ndefine('BG_IO_TIMEOUT', {T});\n",
        cas.display()
    ));
    Env {
        oauth,
        dovecot,
        postfix,
        home,
    }
}

fn env() -> Env {
    env_with(OAuthServer::start(), "")
}

impl Env {
    /// `user@example.com` as an OAuth 2.0 account on both servers, its
    /// refresh token given on stdin.
    fn add_oauth(&self, user: &str, refresh_token: &str) -> i64 {
        let out = self.add_oauth_with(user, refresh_token, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().parse().expect("acntid")
    }

    fn add_oauth_with(&self, user: &str, refresh_token: &str, extra: &[&str]) -> Output {
        let (imaps, submission) = (
            self.dovecot.imaps_port().to_string(),
            self.postfix.submission_port().to_string(),
        );
        let email = format!("{user}@example.com");
        let token_url = self.oauth.token_url();
        let mut args = vec![
            "account",
            "add",
            "--email",
            &email,
            "--usrid",
            "7",
            "--imap-host",
            "localhost",
            "--imap-port",
            &imaps,
            "--imap-security",
            "tls",
            "--imap-auth",
            "oauth2",
            "--smtp-host",
            "localhost",
            "--smtp-port",
            &submission,
            "--smtp-security",
            "starttls",
            "--oauth-client-id",
            self.oauth.client_id(),
        ];
        if !extra.contains(&"--oauth-token-url") {
            args.extend(["--oauth-token-url", &token_url]);
        }
        args.extend_from_slice(extra);
        engine_with(
            &self.home,
            &args,
            &[],
            format!("{refresh_token}\n\n").as_bytes(),
        )
    }

    /// Sets the access token the web application would hold.
    fn set_access(&self, acntid: i64, token: &str, expires_at: i64) {
        db(&self.home)
            .execute(
                "UPDATE email_accounts SET oauth_access_token = ?, oauth_expires_at = ? WHERE acntid = ?",
                crate::params![token, expires_at, acntid],
            )
            .expect("set the access token");
    }

    fn column<T: support::db::FromVal>(&self, acntid: i64, column: &str) -> T {
        db(&self.home)
            .query_row(
                &format!("SELECT {column} FROM email_accounts WHERE acntid = ?"),
                [acntid],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("{column}: {e}"))
    }

    fn refresh_token(&self, acntid: i64) -> Option<String> {
        self.column(acntid, "oauth_refresh_token")
    }

    fn needs_consent(&self, acntid: i64) -> bool {
        self.column::<i64>(acntid, "oauth_needs_consent") != 0
    }

    /// A message from `user` to bob, queued.
    fn queue_to_bob(&self, acntid: i64, user: &str, id: &str) -> i64 {
        queue(
            &self.home,
            acntid,
            format!(
                "From: {user}@example.com\r\nTo: bob@example.com\r\nSubject: {id}\r\n\
                 Message-ID: <{id}@example.com>\r\n\r\nhello\r\n"
            )
            .as_bytes(),
        )
    }

    fn bob_received(&self, n: usize) -> bool {
        let bob = self.dovecot.imap("bob");
        wait_until(Duration::from_secs(10), || bob.uids("INBOX").len() >= n)
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn plan_json(home: &TempHome) -> Vec<Value> {
    let out = expect_code(home, &["plan", "--json"], &[], 0);
    let v: Value = serde_json::from_slice(&out.stdout).expect("plan --json");
    v.as_array().expect("array").clone()
}

fn outbox_row(home: &TempHome, emoid: i64) -> (String, i64) {
    db(home)
        .query_row(
            "SELECT state, attempts FROM email_outbox WHERE emoid = ?",
            [emoid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("outbox row")
}

// ---------------------------------------------------------------- tokens

#[test]
fn a_valid_token_syncs_and_sends_and_is_never_shown() {
    let e = env();
    let imap = e.dovecot.imap("alice");
    imap.append_many(
        "INBOX",
        &(0..3).map(|i| message(i, 2000)).collect::<Vec<_>>(),
    );
    let tokens = e.oauth.issue("alice");
    let alice = e.add_oauth("alice", &tokens.refresh_token);
    e.set_access(alice, &tokens.access_token, tokens.expires_at);
    let emoid = e.queue_to_bob(alice, "alice", "valid-token");

    let out = run(&e.home, &[], 0);
    assert_mirror(&e.home, &e.dovecot, "alice", alice, "INBOX");
    assert_eq!(outbox_row(&e.home, emoid).0, "sent");
    assert!(e.bob_received(1), "the message by token never arrived");
    assert_eq!(
        e.oauth.refresh_requests(),
        0,
        "a valid token needs no refresh"
    );
    assert!(e.dovecot.imap_logins("alice") >= 1);

    let mut secrets = e.oauth.all_tokens();
    secrets.push(tokens.refresh_token.clone());
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_secret_nowhere(&e.home, &secrets);
    let mut said = out.stdout.clone();
    said.extend_from_slice(&out.stderr);
    for s in &secrets {
        assert!(!text(&said).contains(s), "a token in the run's output");
    }
    // status and account show say how it logs in, never with what
    let show = expect_code(
        &e.home,
        &["account", "show", &alice.to_string(), "--json"],
        &[],
        0,
    );
    let v: Value = serde_json::from_slice(&show.stdout).expect("show --json");
    assert_eq!(v["imap_auth"], "oauth2");
    assert_eq!(v["oauth_token_held"], true);
    assert_eq!(v["oauth_needs_consent"], false);
    assert_eq!(v["oauth_expires_at"].as_i64(), Some(tokens.expires_at));
    let status = text(&expect_code(&e.home, &["status"], &[], 0).stdout);
    assert!(status.contains("token held"), "{status}");
}

#[test]
fn an_expired_token_is_refreshed_once_for_two_connections_and_the_outbox() {
    let e = env();
    let imap = e.dovecot.imap("alice");
    for f in ["Projekty", "Archiwum", "Faktury"] {
        imap.create_folder(f);
        imap.append_many(f, &(0..3).map(|i| message(i, 1000)).collect::<Vec<_>>());
    }
    imap.append_many(
        "INBOX",
        &(10..13).map(|i| message(i, 1000)).collect::<Vec<_>>(),
    );
    let tokens = e.oauth.issue("alice");
    let alice = e.add_oauth("alice", &tokens.refresh_token);
    // the web application's token has expired
    e.set_access(alice, &tokens.access_token, now() - 10);
    let emoid = e.queue_to_bob(alice, "alice", "refreshed");

    run(&e.home, &[], 0);
    assert_eq!(
        e.oauth.refresh_requests(),
        1,
        "one refresh for every connection and the outbox"
    );
    for f in ["INBOX", "Projekty", "Archiwum", "Faktury"] {
        assert_mirror(&e.home, &e.dovecot, "alice", alice, f);
    }
    assert_eq!(outbox_row(&e.home, emoid).0, "sent");
    assert!(e.bob_received(1));
    // rotated: the new refresh token is the one stored, the old one is refused
    let stored = e.refresh_token(alice).expect("stored");
    assert_ne!(stored, tokens.refresh_token);
    assert_eq!(e.oauth.valid_refresh_tokens("alice"), vec![stored.clone()]);
    let old = support::oauth::post_form(
        &e.oauth.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &tokens.refresh_token),
            ("client_id", e.oauth.client_id()),
        ],
        None,
        Duration::from_secs(5),
    )
    .expect("token endpoint");
    assert_eq!(old.json()["error"], "invalid_grant");
    assert!(e.column::<i64>(alice, "oauth_expires_at") > now() + 3000);
    // the next run uses the stored token: no refresh
    let requests = e.oauth.refresh_requests();
    run(&e.home, &["--force"], 0);
    assert_eq!(e.oauth.refresh_requests(), requests);
    assert!(!e.needs_consent(alice));
}

#[test]
fn a_kill_right_after_the_token_response_loses_at_most_that_run() {
    let e = env();
    e.dovecot.imap("alice").append_many(
        "INBOX",
        &(0..3).map(|i| message(i, 800)).collect::<Vec<_>>(),
    );
    let tokens = e.oauth.issue("alice");
    let alice = e.add_oauth("alice", &tokens.refresh_token);

    // Killed once the rotated token is stored: nothing is lost.
    let mut cmd = e.home.engine();
    cmd.arg("run").env("BACKPROC_FAILPOINTS", "token-stored=1");
    let out = output_with_stdin(&mut cmd, b"");
    assert_eq!(
        out.status.code(),
        None,
        "killed: {}\n{}",
        text(&out.stderr),
        e.home.log("l-debug.log")
    );
    let stored = e.refresh_token(alice).expect("stored");
    assert_ne!(
        stored, tokens.refresh_token,
        "the rotated token was stored before use"
    );
    assert_eq!(e.oauth.valid_refresh_tokens("alice"), vec![stored]);
    run(&e.home, &[], 0);
    assert_eq!(e.oauth.refresh_requests(), 1, "the stored token was used");
    assert_mirror(&e.home, &e.dovecot, "alice", alice, "INBOX");

    // Killed between the answer and the commit (a provider that keeps its
    // refresh tokens, as Google does): that run is lost, the next refreshes.
    e.oauth.set_rotation(false);
    e.set_access(alice, "expired", now() - 1);
    let mut cmd = e.home.engine();
    cmd.args(["run", "--force"])
        .env("BACKPROC_FAILPOINTS", "token-received=1");
    let out = output_with_stdin(&mut cmd, b"");
    assert_eq!(out.status.code(), None, "killed: {}", text(&out.stderr));
    run(&e.home, &["--force"], 0);
    assert_eq!(e.oauth.refresh_requests(), 3);
    assert!(!e.needs_consent(alice));
    integrity_ok(&e.home);
}

#[test]
fn a_token_revoked_early_is_refreshed_once_and_retried_once() {
    let e = env();
    e.dovecot.imap("alice").append_many(
        "INBOX",
        &(0..2).map(|i| message(i, 800)).collect::<Vec<_>>(),
    );
    let tokens = e.oauth.issue("alice");
    let alice = e.add_oauth("alice", &tokens.refresh_token);
    e.set_access(alice, &tokens.access_token, tokens.expires_at);
    e.oauth.revoke_access(&tokens.access_token);
    let emoid = e.queue_to_bob(alice, "alice", "after-revocation");

    run(&e.home, &[], 0);
    assert_eq!(e.oauth.refresh_requests(), 1, "refreshed once");
    assert_mirror(&e.home, &e.dovecot, "alice", alice, "INBOX");
    assert_eq!(outbox_row(&e.home, emoid).0, "sent");
    assert!(wait_until(Duration::from_secs(5), || e
        .dovecot
        .auth_failures("alice")
        >= 1));
    assert_eq!(
        e.column::<i64>(alice, "login_failures"),
        0,
        "a refused token that a refresh fixed is no refused login"
    );
}

#[test]
fn invalid_grant_needs_consent_until_the_refresh_token_changes() {
    let e = env();
    for user in ["alice", "bob"] {
        e.dovecot.imap(user).append_many(
            "INBOX",
            &(0..2).map(|i| message(i, 800)).collect::<Vec<_>>(),
        );
    }
    let tokens = e.oauth.issue("alice");
    let alice = e.add_oauth("alice", &tokens.refresh_token);
    let bob = add_account(&e.home, &e.dovecot, "bob");
    e.oauth.revoke_refresh(&tokens.refresh_token);
    let emoid = e.queue_to_bob(alice, "alice", "waits-for-consent");

    let (out, _) = run_within(&e.home, &["run"], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(e.needs_consent(alice));
    let err: String = e.column(alice, "last_error");
    assert!(
        err.contains("refused the refresh token (invalid_grant)")
            && err.contains(&format!("engine account authorize {alice}")),
        "{err}"
    );
    assert_mirror(&e.home, &e.dovecot, "bob", bob, "INBOX");

    // Skipped until the credentials change: no token request, no login,
    // the mail queued with no attempt counted, and plan says why.
    let requests = e.oauth.refresh_requests();
    run(&e.home, &["--force"], 0);
    assert_eq!(e.oauth.refresh_requests(), requests);
    assert_eq!(outbox_row(&e.home, emoid), ("queued".into(), 0));
    let tasks = plan_json(&e.home);
    let waiting: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["acntid"].as_i64() == Some(alice))
        .collect();
    assert!(!waiting.is_empty(), "{tasks:?}");
    for t in waiting {
        assert_eq!(t["deferred"], true, "{t}");
        assert!(
            t["reason"].as_str().is_some_and(|r| r.contains("consent")),
            "{t}"
        );
    }
    assert!(text(&expect_code(&e.home, &["status"], &[], 0).stdout).contains("needs consent"));

    // `account set` with a new refresh token: consent is back.
    let fresh = e.oauth.issue("alice");
    let out = engine_with(
        &e.home,
        &["account", "set", &alice.to_string()],
        &[],
        format!("{}\n", fresh.refresh_token).as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!e.needs_consent(alice));
    run(&e.home, &[], 0);
    assert_mirror(&e.home, &e.dovecot, "alice", alice, "INBOX");
    assert_eq!(outbox_row(&e.home, emoid).0, "sent");

    // The same through SQL, as the web application does it.
    let current = e.refresh_token(alice).expect("stored");
    e.oauth.revoke_refresh(&current);
    e.set_access(alice, "expired", now() - 1);
    run(&e.home, &["--force"], 75);
    assert!(e.needs_consent(alice));
    let again = e.oauth.issue("alice");
    db(&e.home)
        .execute(
            "UPDATE email_accounts SET oauth_refresh_token = ? WHERE acntid = ?",
            crate::params![again.refresh_token, alice],
        )
        .expect("the web application stores a new refresh token");
    assert!(!e.needs_consent(alice), "the trigger clears it");
    run(&e.home, &["--force"], 0);
}

#[test]
fn token_endpoint_failures_fail_the_job_and_never_ask_for_consent() {
    let e = env();
    e.oauth.set_rotation(false);
    e.dovecot
        .imap("alice")
        .append("INBOX", &message(1, 500), "");
    let tokens = e.oauth.issue("alice");
    let alice = e.add_oauth("alice", &tokens.refresh_token);
    let bound = Duration::from_secs(2 * T + 1) + Duration::from_millis(3000);
    let cases: Vec<(&str, Failure, &[&str])> = vec![
        (
            "server_error",
            Failure::Status(503, "busy".into()),
            &["HTTP 503"],
        ),
        ("closed", Failure::Close, &["closed the connection"]),
        (
            "slow",
            Failure::Delay(Duration::from_secs(3 * T)),
            &["timed out"],
        ),
        ("html", Failure::Html, &["HTML"]),
        (
            "ten_megabytes",
            Failure::Huge(10_000_000),
            &["larger than 64 KiB"],
        ),
        (
            "no_access_token",
            Failure::NoAccessToken,
            &["no access_token"],
        ),
        (
            "nonsense_expires_in",
            Failure::ExpiresIn(serde_json::json!(-5)),
            &["nonsense expires_in"],
        ),
    ];
    for (name, failure, words) in cases {
        e.oauth.fail(Endpoint::Token, failure);
        e.set_access(alice, "expired", now() - 1);
        let (out, took) = run_within(&e.home, &["run", "--force"], Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(75), "{name}: {}", text(&out.stderr));
        assert!(took < bound, "{name}: the run took {took:?}");
        let err: String = e.column(alice, "last_error");
        for w in words {
            assert!(err.contains(w), "{name}: '{w}' not in {err}");
        }
        assert!(!e.needs_consent(alice), "{name}: marked as needing consent");
        assert_eq!(
            e.refresh_token(alice).as_deref(),
            Some(tokens.refresh_token.as_str())
        );
        eprintln!("token endpoint {name}: failed in {took:?}: {err}");
    }
    // The token endpoint down altogether.
    e.oauth.clear_failure(Endpoint::Token);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    db(&e.home)
        .execute(
            "UPDATE email_accounts SET oauth_token_url = ? WHERE acntid = ?",
            crate::params![format!("http://127.0.0.1:{closed}/token"), alice],
        )
        .expect("point at nothing");
    let (out, _) = run_within(&e.home, &["run", "--force"], bound);
    assert_eq!(out.status.code(), Some(75));
    let err: String = e.column(alice, "last_error");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!e.needs_consent(alice));
    // Back up: the next run works.
    db(&e.home)
        .execute(
            "UPDATE email_accounts SET oauth_token_url = ? WHERE acntid = ?",
            crate::params![e.oauth.token_url(), alice],
        )
        .expect("point back");
    run(&e.home, &["--force"], 0);
    assert_mirror(&e.home, &e.dovecot, "alice", alice, "INBOX");
}

#[test]
fn a_rotated_refresh_token_in_an_unusable_answer_is_kept() {
    let e = env();
    let tokens = e.oauth.issue("alice");
    let alice = e.add_oauth("alice", &tokens.refresh_token);
    e.oauth.fail(
        Endpoint::Token,
        Failure::ExpiresIn(serde_json::json!("soon")),
    );
    run(&e.home, &[], 75);
    let stored = e.refresh_token(alice).expect("stored");
    assert_eq!(
        e.oauth.valid_refresh_tokens("alice"),
        vec![stored],
        "the provider rotated: the new refresh token must be the one kept"
    );
    e.oauth.clear_failure(Endpoint::Token);
    run(&e.home, &[], 0);
}

#[test]
fn plain_http_token_urls_are_refused_and_tls_is_verified() {
    let e = env();
    let refused = e.add_oauth_with(
        "carol",
        "",
        &["--oauth-token-url", "http://example.com/token"],
    );
    assert_eq!(refused.status.code(), Some(65), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("plain http"));
    // Written by the web application: refused at the run, not consent.
    let tokens = e.oauth.issue("alice");
    let alice = e.add_oauth("alice", &tokens.refresh_token);
    db(&e.home)
        .execute(
            "UPDATE email_accounts SET oauth_token_url = 'http://example.com/token' WHERE acntid = ?",
            [alice],
        )
        .expect("set");
    run(&e.home, &[], 75);
    let err: String = e.column(alice, "last_error");
    assert!(err.contains("plain http is refused"), "{err}");
    assert!(!e.needs_consent(alice));

    // HTTPS: a certificate from a CA nobody trusts is refused...
    let dir = tempfile::tempdir().expect("tempdir");
    let untrusted = OAuthServer::start_https(&TestCa::untrusted(&dir.path().join("ca")));
    let e = env_with(untrusted, "");
    let tokens = e.oauth.issue("alice");
    let alice = e.add_oauth("alice", &tokens.refresh_token);
    // (the home trusts the token server's CA: point it elsewhere)
    e.home.write_config(&format!(
        "<?php define('BG_TLS_CA_FILE', '{}'); define('BG_IO_TIMEOUT', {T});",
        e.dovecot.ca_file().display()
    ));
    run(&e.home, &[], 75);
    let err: String = e.column(alice, "last_error");
    assert!(err.contains("TLS"), "{err}");
    assert_eq!(e.oauth.refresh_requests(), 0, "no request without trust");
    assert!(!e.needs_consent(alice));

    // ...and one from a CA the install trusts is verified and used.
    let ca = TestCa::new(&dir.path().join("ca2"));
    let e = env_with(
        OAuthServer::start_with(OAuthServerOptions {
            https: true,
            ca: Some(ca),
            ..Default::default()
        }),
        "",
    );
    e.dovecot
        .imap("alice")
        .append("INBOX", &message(1, 500), "");
    let tokens = e.oauth.issue("alice");
    let alice = e.add_oauth("alice", &tokens.refresh_token);
    run(&e.home, &[], 0);
    assert_eq!(e.oauth.refresh_requests(), 1);
    assert_mirror(&e.home, &e.dovecot, "alice", alice, "INBOX");
}

// ---------------------------------------------------------------- device flow

#[test]
fn the_device_flow_prints_the_code_polls_and_stores_the_tokens() {
    let e = env();
    e.dovecot
        .imap("alice")
        .append("INBOX", &message(1, 500), "");
    let device_url = e.oauth.device_url();
    let out = e.add_oauth_with("alice", "", &["--oauth-device-url", &device_url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let alice: i64 = text(&out.stdout).trim().parse().expect("acntid");
    assert_eq!(e.refresh_token(alice), None, "an empty line: no token yet");

    e.oauth
        .script_device(&["authorization_pending", "slow_down", "ok"], "alice");
    let (out, took) = run_within(
        &e.home,
        &["account", "authorize", &alice.to_string()],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains(&e.oauth.verification_url()), "{said}");
    let code = e.oauth.device_codes().pop().expect("a device code");
    let polls = e.oauth.device_polls(&code);
    assert_eq!(polls.len(), 3, "{polls:?}");
    assert!(polls[1] - polls[0] >= 0.9, "the interval: {polls:?}");
    assert!(polls[2] - polls[1] >= 5.9, "slow_down adds 5 s: {polls:?}");
    eprintln!("device flow: signed in after {took:?}");
    let stored = e.refresh_token(alice).expect("the refresh token stored");
    assert_eq!(e.oauth.valid_refresh_tokens("alice"), vec![stored]);
    run(&e.home, &[], 0);
    assert_mirror(&e.home, &e.dovecot, "alice", alice, "INBOX");

    for (step, words) in [
        ("access_denied", "access_denied"),
        ("expired_token", "expired_token"),
    ] {
        e.oauth.script_device(&[step], "alice");
        let (out, _) = run_within(
            &e.home,
            &["account", "authorize", &alice.to_string()],
            Duration::from_secs(30),
        );
        assert_eq!(out.status.code(), Some(65), "{step}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(words),
            "{step}: {}",
            text(&out.stderr)
        );
    }
    // A provider without a device endpoint (Google's): what to do instead.
    let google = engine_with(
        &e.home,
        &[
            "account",
            "add",
            "--email",
            "dave@example.com",
            "--oauth-provider",
            "google",
            "--oauth-client-id",
            "x.apps.googleusercontent.com",
        ],
        &[],
        b"\n\n",
    );
    assert!(google.status.success(), "{}", text(&google.stderr));
    let dave = text(&google.stdout).trim().to_string();
    let out = engine(&e.home, &["account", "authorize", &dave]);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        text(&out.stderr).contains("web application"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------- refused logins

#[test]
fn a_refused_login_backs_off_until_its_time_or_a_new_password() {
    let e = env();
    e.dovecot.imap("bob").append("INBOX", &message(1, 500), "");
    let bob = add_account_with(&e.home, "tls", e.dovecot.imaps_port(), "bob", "wrong-pw");
    let t0 = now();
    run(&e.home, &["--no-outbox"], 75);
    assert!(wait_until(Duration::from_secs(5), || e
        .dovecot
        .auth_failures("bob")
        == 1));
    assert_eq!(e.column::<i64>(bob, "login_failures"), 1);
    let retry: i64 = e.column(bob, "login_retry_at");
    assert!((t0 + 900..=now() + 900).contains(&retry), "{retry}");
    let emoid = e.queue_to_bob(bob, "bob", "held-back");

    // Until then: no login attempt at all, the mail queued as it was.
    let attempts = e.dovecot.auth_attempts("bob");
    run(&e.home, &["--force"], 0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        e.dovecot.auth_attempts("bob"),
        attempts,
        "no login before login_retry_at"
    );
    assert_eq!(outbox_row(&e.home, emoid), ("queued".into(), 0));
    let tasks = plan_json(&e.home);
    assert!(
        tasks.iter().any(|t| t["acntid"].as_i64() == Some(bob)
            && t["deferred"] == true
            && t["reason"]
                .as_str()
                .is_some_and(|r| r.contains("login refused 1 time in a row; next attempt at"))),
        "{tasks:?}"
    );

    // Its time come: one more attempt, and the wait doubles.
    db(&e.home)
        .execute(
            "UPDATE email_accounts SET login_retry_at = ? WHERE acntid = ?",
            [now() - 1, bob],
        )
        .expect("time passes");
    run(&e.home, &["--force"], 75);
    assert_eq!(e.column::<i64>(bob, "login_failures"), 2);
    let retry: i64 = e.column(bob, "login_retry_at");
    assert!(retry >= now() + 1700, "doubled: {retry}");

    // A new password (an UPDATE, as the web application does): at once.
    db(&e.home)
        .execute(
            "UPDATE email_accounts SET imap_password = ?, smtp_password = ? WHERE acntid = ?",
            crate::params![e.dovecot.password("bob"), e.dovecot.password("bob"), bob],
        )
        .expect("fix the password");
    assert_eq!(
        e.column::<i64>(bob, "login_failures"),
        0,
        "the trigger resets it"
    );
    assert_eq!(e.column::<Option<i64>>(bob, "login_retry_at"), None);
    run(&e.home, &[], 0);
    assert_mirror(&e.home, &e.dovecot, "bob", bob, "INBOX");
}

#[test]
fn an_smtp_535_counts_as_a_refused_login() {
    let e = env();
    let carol = add_account_smtp(
        &e.home,
        "carol",
        Side {
            security: "tls",
            port: e.dovecot.imaps_port(),
            password: &e.dovecot.password("carol"),
        },
        Side {
            security: "starttls",
            port: e.postfix.submission_port(),
            password: "wrong-smtp-pw",
        },
    );
    let emoid = e.queue_to_bob(carol, "carol", "smtp-refused");
    run(&e.home, &["--no-sync"], 75);
    assert_eq!(e.column::<i64>(carol, "login_failures"), 1);
    assert!(e
        .column::<Option<i64>>(carol, "login_retry_at")
        .is_some_and(|t| t > now()));
    assert_eq!(
        outbox_row(&e.home, emoid),
        ("queued".into(), 0),
        "no attempt counted"
    );
    let err: String = e.column(carol, "last_error");
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("wrong-smtp-pw"));
}

#[test]
fn a_server_that_limits_connections_is_not_reconnected_and_the_others_sync() {
    for (name, reply) in [
        (
            "unavailable",
            &b"TAG NO [UNAVAILABLE] Too many connections\r\n"[..],
        ),
        ("bye", b"* BYE Too many connections, try later\r\n"),
    ] {
        let fake = FakeImap::start(FakeImapOptions {
            login_reply: Some(reply.to_vec()),
            folders: vec![FakeFolder::new(b"INBOX", &[message(1, 300)])],
            ..Default::default()
        });
        let dovecot = Dovecot::start();
        dovecot.imap("bob").append("INBOX", &message(2, 300), "");
        let home = TempHome::new();
        config(&home, &dovecot, &format!("define('BG_IO_TIMEOUT', {T});"));
        let alice = add_account_with(&home, "plain", fake.port(), "alice", "secret");
        let bob = add_account(&home, &dovecot, "bob");
        let (out, _) = run_within(&home, &["run"], Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let logins = fake
            .commands()
            .iter()
            .filter(|c| String::from_utf8_lossy(&c.bytes).contains(" LOGIN "))
            .count();
        assert_eq!(
            logins,
            1,
            "{name}: no reconnect in this run\n{}",
            home.log("l-debug.log")
        );
        assert_mirror(&home, &dovecot, "bob", bob, "INBOX");
        let err = account_error(&home, alice).unwrap_or_default();
        assert!(err.contains("Too many connections"), "{name}: {err}");
        let failures: i64 = db(&home)
            .query_row(
                "SELECT login_failures FROM email_accounts WHERE acntid = ?",
                [alice],
                |r| r.get(0),
            )
            .expect("failures");
        assert_eq!(failures, 0, "{name}: no back-off for a busy server");
    }
}
