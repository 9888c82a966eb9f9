//! `engine account ...`: add, set, authorize, list, show, remove, and test
//! an account. Secrets come from stdin or the environment, never from argv
//! (visible in `ps`), and are never printed.

use super::args::{AccountArgs, AccountCmd, AuthArg, ProviderArg};
use crate::auth::{self, oauth, Tokens};
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::layout::Layout;
use crate::logging::chain;
use crate::store::{Account, AccountChange, AuthKind, Location, NewAccount, OAuthColumns, Store};
use serde_json::json;
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

/// `engine account ...`
pub fn command(layout: &Layout, cmd: AccountCmd, now: i64) -> Result<i32> {
    match cmd {
        AccountCmd::Add(a) => add(layout, *a, now),
        AccountCmd::Set { acntid, args } => set(layout, acntid, *args),
        AccountCmd::Authorize { acntid } => authorize(layout, acntid),
        AccountCmd::List { json: as_json } => {
            let store = Store::open(&super::location(layout)?)?;
            let accounts = store.accounts()?;
            if as_json {
                let v: Vec<_> = accounts.iter().map(|a| account_json(a, now)).collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for a in &accounts {
                    println!(
                        "{:>5}  {:<32} imap {}:{} ({}, {}){}{}",
                        a.acntid,
                        a.email,
                        a.imap_host.as_deref().unwrap_or("-"),
                        a.imap_port.map_or("default".into(), |p| p.to_string()),
                        a.imap_security,
                        a.imap_auth.as_str(),
                        if a.active { "" } else { "  inactive" },
                        auth::hold(a, now)
                            .or(a.last_error.clone())
                            .map(|e| format!("  error: {e}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(exit::OK)
        }
        AccountCmd::Show {
            acntid,
            json: as_json,
        } => {
            let store = Store::open(&super::location(layout)?)?;
            let a = store
                .account(acntid)?
                .ok_or_else(|| Error::Input(format!("no account {acntid}")))?;
            let v = account_json(&a, now);
            if as_json {
                println!("{v}");
            } else if let Some(map) = v.as_object() {
                for (k, val) in map {
                    println!(
                        "{k}: {}",
                        val.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| val.to_string())
                    );
                }
            }
            Ok(exit::OK)
        }
        AccountCmd::Remove { acntid } => {
            let mut store = Store::open(&super::location(layout)?)?;
            if !store.remove_account(acntid)? {
                return Err(Error::Input(format!("no account {acntid}")));
            }
            Ok(exit::OK)
        }
        AccountCmd::Test { acntid } => {
            let config = layout.read_config()?;
            let at = super::location(layout)?;
            let store = Store::open(&at)?;
            let a = store
                .account(acntid)?
                .ok_or_else(|| Error::Input(format!("no account {acntid}")))?;
            test(&a, &config, &at)
        }
    }
}

/// What `account show`, `list --json` and `status` say of an account:
/// never a password, a token or a client secret, only whether one is held.
pub fn account_json(a: &Account, now: i64) -> serde_json::Value {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|p| !p.is_empty());
    json!({
        "acntid": a.acntid,
        "usrid": a.usrid,
        "email": a.email,
        "imap_host": a.imap_host,
        "imap_port": a.imap_port,
        "imap_security": a.imap_security,
        "imap_login": a.imap_login(),
        "imap_auth": a.imap_auth.as_str(),
        "imap_password_set": set(&a.imap_password),
        "smtp_host": a.smtp_host,
        "smtp_port": a.smtp_port,
        "smtp_security": a.smtp_security,
        "smtp_login": a.smtp_login(),
        "smtp_auth": a.smtp_auth.as_str(),
        "smtp_password_set": set(&a.smtp_password),
        "oauth_provider": a.oauth.provider,
        "oauth_client_id": a.oauth.client_id,
        "oauth_token_url": a.oauth.token_url,
        "oauth_device_url": a.oauth.device_url,
        "oauth_scope": a.oauth.scope,
        "oauth_client_secret_set": set(&a.oauth.client_secret),
        "oauth_token_held": set(&a.oauth.refresh_token),
        "oauth_expires_at": a.oauth.expires_at,
        "oauth_needs_consent": a.oauth.needs_consent,
        "login_failures": a.login_failures,
        "login_retry_at": a.login_retry_at,
        "waits": auth::hold(a, now),
        "active": a.active,
        "last_error": a.last_error,
        "last_error_at": a.last_error_at,
    })
}

/// The value of environment variable `var` (set and not empty).
fn env_secret(var: &str) -> Result<String> {
    let value = std::env::var(var)
        .map_err(|_| Error::Input(format!("environment variable {var} is not set")))?;
    if value.is_empty() {
        return Err(Error::Input(format!("environment variable {var} is empty")));
    }
    Ok(value)
}

/// Up to two lines of stdin (none when it is empty).
fn stdin_lines(prompt: &str) -> Result<Vec<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("{prompt}");
    }
    let mut lines = Vec::new();
    for line in stdin.lock().lines().take(2) {
        let line = line.map_err(|e| Error::Input(format!("cannot read stdin: {e}")))?;
        lines.push(line.trim_end_matches('\r').to_string());
    }
    Ok(lines)
}

/// The IMAP and SMTP passwords: from `env` when named, else stdin (first
/// line IMAP, second SMTP; one line means both).
fn read_passwords(env: Option<&str>) -> Result<(String, String)> {
    if let Some(var) = env {
        let value = env_secret(var)?;
        return Ok((value.clone(), value));
    }
    let lines =
        stdin_lines("password: IMAP on the first line, SMTP on the second (empty: the same)")?;
    let imap = lines.first().cloned().unwrap_or_default();
    if imap.is_empty() {
        return Err(Error::Input(
            "no password on stdin (first line IMAP, second SMTP), and no --password-env".into(),
        ));
    }
    let smtp = lines
        .get(1)
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| imap.clone());
    Ok((imap, smtp))
}

/// The OAuth 2.0 refresh token and client secret (each may be absent):
/// from the named variables, else stdin (first line the refresh token,
/// second the client secret; either may be empty).
fn read_oauth_secrets(a: &AccountArgs, stdin: bool) -> Result<(Option<String>, Option<String>)> {
    let from_stdin = stdin && (a.refresh_token_env.is_none() || a.client_secret_env.is_none());
    let lines = if from_stdin {
        stdin_lines(
            "OAuth 2.0: the refresh token on the first line (empty: `engine account authorize` \
             later), the client secret on the second (empty: a public client)",
        )?
    } else {
        Vec::new()
    };
    let pick = |env: &Option<String>, line: usize| -> Result<Option<String>> {
        match env {
            Some(var) => env_secret(var).map(Some),
            None => Ok(lines.get(line).cloned().filter(|s| !s.is_empty())),
        }
    };
    Ok((
        pick(&a.refresh_token_env, 0)?,
        pick(&a.client_secret_env, 1)?,
    ))
}

fn kind(arg: AuthArg) -> AuthKind {
    match arg {
        AuthArg::Password => AuthKind::Password,
        AuthArg::Oauth2 => AuthKind::OAuth2,
    }
}

fn provider_name(p: ProviderArg) -> &'static str {
    match p {
        ProviderArg::Microsoft => "microsoft",
        ProviderArg::Google => "google",
    }
}

/// Refuses what is no address.
fn check_email(email: &str) -> Result<()> {
    if !email.contains('@') || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Input(format!("--email '{email}' is not an address")));
    }
    Ok(())
}

/// The preset `--oauth-provider` names (with `--oauth-tenant`).
fn preset_of(a: &AccountArgs) -> Option<oauth::Preset> {
    let tenant = a.oauth_tenant.as_deref().unwrap_or("common");
    a.oauth_provider
        .and_then(|p| oauth::preset(provider_name(p), tenant))
}

/// `engine account add`: prints the new `acntid`.
fn add(layout: &Layout, a: AccountArgs, now: i64) -> Result<i32> {
    let email = a
        .email
        .clone()
        .ok_or_else(|| Error::Usage("account add needs --email".into()))?;
    check_email(&email)?;
    let new = new_account(&a, email.clone())?;
    let mut store = Store::open(&super::location(layout)?)?;
    let twins: Vec<String> = store
        .accounts()?
        .iter()
        .filter(|b| b.email.eq_ignore_ascii_case(&email))
        .map(|b| b.acntid.to_string())
        .collect();
    let acntid = store.add_account(&new, now)?;
    println!("{acntid}");
    if !twins.is_empty() {
        // Added all the same (two accounts may share an address on
        // purpose), but both would receive the same mail.
        eprintln!(
            "engine: note: account {} has the same address ({email}); \
             both will receive its mail (`engine account remove ID` removes one)",
            twins.join(", ")
        );
    }
    Ok(exit::OK)
}

/// The row `account add` stores: the options, the preset's servers and
/// URLs where the options say nothing, the secrets from stdin or the
/// environment.
fn new_account(a: &AccountArgs, email: String) -> Result<NewAccount> {
    let preset = preset_of(a);
    let default_auth = if preset.is_some() {
        AuthArg::Oauth2
    } else {
        AuthArg::Password
    };
    let imap_auth = kind(a.imap_auth.unwrap_or(default_auth));
    let smtp_auth = kind(a.smtp_auth.or(a.imap_auth).unwrap_or(default_auth));
    let imap_host = a
        .imap_host
        .clone()
        .or_else(|| preset.as_ref().map(|p| p.imap.0.to_string()))
        .ok_or_else(|| {
            Error::Usage("account add needs --imap-host (or an --oauth-provider preset)".into())
        })?;
    if imap_host.trim().is_empty() {
        return Err(Error::Input("--imap-host is empty".into()));
    }
    let passwords = imap_auth == AuthKind::Password || smtp_auth == AuthKind::Password;
    let oauth2 = imap_auth == AuthKind::OAuth2 || smtp_auth == AuthKind::OAuth2;
    let (imap_password, smtp_password) = if passwords {
        if oauth2 && a.password_env.is_none() {
            return Err(Error::Input(
                "an account with both a password and OAuth 2.0 takes the password from \
                 --password-env (stdin carries the OAuth 2.0 secrets)"
                    .into(),
            ));
        }
        let (i, s) = read_passwords(a.password_env.as_deref())?;
        (Some(i), Some(s))
    } else {
        (None, None)
    };
    let oauth = if oauth2 {
        oauth_columns(a, preset.as_ref())?
    } else {
        OAuthColumns::default()
    };
    // The preset's server only where no host is given (a host given means
    // its port and security as given, or their usual defaults).
    let imap_preset = preset
        .as_ref()
        .filter(|_| a.imap_host.is_none())
        .map(|p| p.imap);
    let smtp_preset = preset
        .as_ref()
        .filter(|_| a.smtp_host.is_none())
        .map(|p| p.smtp);
    let security = |given: &Option<String>, preset: Option<&str>, default: &str| {
        given
            .clone()
            .or(preset.map(str::to_string))
            .unwrap_or_else(|| default.into())
    };
    Ok(NewAccount {
        usrid: a.usrid,
        email,
        imap_host,
        imap_port: a.imap_port.or(imap_preset.map(|p| p.1)),
        imap_security: security(&a.imap_security, imap_preset.map(|p| p.2), "tls"),
        imap_login: a.imap_login.clone(),
        imap_password,
        imap_auth: Some(imap_auth),
        smtp_host: a.smtp_host.clone().or(smtp_preset.map(|p| p.0.to_string())),
        smtp_port: a.smtp_port.or(smtp_preset.map(|p| p.1)),
        smtp_security: security(&a.smtp_security, smtp_preset.map(|p| p.2), "starttls"),
        smtp_login: a.smtp_login.clone(),
        smtp_password,
        smtp_auth: Some(smtp_auth),
        oauth,
    })
}

/// The OAuth 2.0 columns of a new account: the options, else the preset;
/// the secrets from the environment or stdin.
fn oauth_columns(a: &AccountArgs, preset: Option<&oauth::Preset>) -> Result<OAuthColumns> {
    let client_id = a
        .oauth_client_id
        .clone()
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| Error::Input("an OAuth 2.0 account needs --oauth-client-id".into()))?;
    let token_url = a
        .oauth_token_url
        .clone()
        .or_else(|| preset.map(|p| p.token_url.clone()))
        .ok_or_else(|| {
            Error::Input("an OAuth 2.0 account needs --oauth-provider or --oauth-token-url".into())
        })?;
    check_url("--oauth-token-url", &token_url)?;
    let device_url = a
        .oauth_device_url
        .clone()
        .or_else(|| preset.and_then(|p| p.device_url.clone()));
    if let Some(url) = &device_url {
        check_url("--oauth-device-url", url)?;
    }
    let (refresh_token, client_secret) = read_oauth_secrets(a, true)?;
    Ok(OAuthColumns {
        provider: a.oauth_provider.map(|p| provider_name(p).to_string()),
        token_url: Some(token_url),
        device_url,
        client_id: Some(client_id),
        client_secret,
        scope: a
            .oauth_scope
            .clone()
            .or_else(|| preset.map(|p| p.scope.to_string())),
        refresh_token,
        ..OAuthColumns::default()
    })
}

/// A token or device URL the engine will send secrets to: https (http only
/// to loopback).
fn check_url(option: &str, url: &str) -> Result<()> {
    auth::http::Url::parse(url)
        .map(|_| ())
        .map_err(|e| Error::Input(format!("{option}: {e}")))
}

/// `engine account set`: only what is given changes.
fn set(layout: &Layout, acntid: i64, a: AccountArgs) -> Result<i32> {
    let mut store = Store::open(&super::location(layout)?)?;
    let old = store
        .account(acntid)?
        .ok_or_else(|| Error::Input(format!("no account {acntid}")))?;
    if let Some(email) = &a.email {
        check_email(email)?;
    }
    for (option, url) in [
        ("--oauth-token-url", &a.oauth_token_url),
        ("--oauth-device-url", &a.oauth_device_url),
    ] {
        if let Some(url) = url.as_deref().filter(|u| !u.is_empty()) {
            check_url(option, url)?;
        }
    }
    let mut change = settings_change(&a);
    secrets_change(&a, &old, &mut change)?;
    if change.texts.is_empty() && change.numbers.is_empty() {
        return Err(Error::Usage(
            "account set: nothing to change (give an option, or secrets on stdin)".into(),
        ));
    }
    store.update_account(acntid, &change)?;
    Ok(exit::OK)
}

/// The settings `account set` was given (an empty text clears a column).
fn settings_change(a: &AccountArgs) -> AccountChange {
    let preset = preset_of(a);
    let mut change = AccountChange::default();
    let mut text = |column: &'static str, value: Option<String>| {
        if let Some(v) = value {
            change
                .texts
                .push((column, Some(v).filter(|v| !v.is_empty())));
        }
    };
    let auth = |k: Option<AuthArg>| k.map(|k| kind(k).as_str().to_string());
    text("email", a.email.clone());
    text("imap_host", a.imap_host.clone());
    text("imap_security", a.imap_security.clone());
    text("imap_login", a.imap_login.clone());
    text("imap_auth", auth(a.imap_auth));
    text("smtp_host", a.smtp_host.clone());
    text("smtp_security", a.smtp_security.clone());
    text("smtp_login", a.smtp_login.clone());
    text("smtp_auth", auth(a.smtp_auth));
    text(
        "oauth_provider",
        a.oauth_provider.map(|p| provider_name(p).to_string()),
    );
    let p = preset.as_ref();
    text(
        "oauth_token_url",
        a.oauth_token_url.clone().or(p.map(|p| p.token_url.clone())),
    );
    text(
        "oauth_device_url",
        a.oauth_device_url
            .clone()
            .or(p.and_then(|p| p.device_url.clone())),
    );
    text("oauth_client_id", a.oauth_client_id.clone());
    text(
        "oauth_scope",
        a.oauth_scope.clone().or(p.map(|p| p.scope.to_string())),
    );
    if let Some(usrid) = a.usrid {
        change.numbers.push(("usrid", Some(usrid)));
    }
    for (column, port) in [("imap_port", a.imap_port), ("smtp_port", a.smtp_port)] {
        if let Some(p) = port {
            change.numbers.push((column, Some(i64::from(p))));
        }
    }
    change
}

/// The secrets `account set` was given: from the environment, or from
/// stdin when it is not a terminal (passwords, or for an OAuth 2.0 account
/// the refresh token and the client secret).
fn secrets_change(a: &AccountArgs, old: &Account, change: &mut AccountChange) -> Result<()> {
    let imap_auth = a.imap_auth.map(kind).unwrap_or(old.imap_auth);
    let smtp_auth = a.smtp_auth.map(kind).unwrap_or(old.smtp_auth);
    let oauth2 = imap_auth == AuthKind::OAuth2 || smtp_auth == AuthKind::OAuth2;
    let piped = !std::io::stdin().is_terminal();
    let mut text = |column: &'static str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            change.texts.push((column, Some(v)));
        }
    };
    if let Some(var) = &a.password_env {
        let pw = env_secret(var)?;
        text("imap_password", Some(pw.clone()));
        text("smtp_password", Some(pw));
    } else if piped && !oauth2 {
        let lines = stdin_lines("")?;
        if let Some(imap) = lines.first().filter(|l| !l.is_empty()) {
            let smtp = lines.get(1).filter(|l| !l.is_empty()).unwrap_or(imap);
            text("imap_password", Some(imap.clone()));
            text("smtp_password", Some(smtp.clone()));
        }
    }
    if oauth2 {
        let (refresh, secret) = read_oauth_secrets(a, piped && a.password_env.is_none())?;
        text("oauth_refresh_token", refresh);
        text("oauth_client_secret", secret);
    }
    Ok(())
}

/// `engine account authorize`: the device authorization of RFC 8628.
fn authorize(layout: &Layout, acntid: i64) -> Result<i32> {
    let config = layout.read_config()?;
    let mut store = Store::open(&super::location(layout)?)?;
    let account = store
        .account(acntid)?
        .ok_or_else(|| Error::Input(format!("no account {acntid}")))?;
    if !account.uses_oauth() {
        return Err(Error::Input(format!(
            "account {acntid} logs in with passwords, not OAuth 2.0 (`engine account set {acntid} --imap-auth oauth2 ...`)"
        )));
    }
    let client = auth::client_of(&account).map_err(|e| Error::Input(e.to_string()))?;
    if client.device_url.is_none() {
        return Err(Error::Input(format!(
            "{} offers no device sign-in for mail (Google's device flow does not grant the \
             mail scope): sign the user in with the web application and store the refresh \
             token in oauth_refresh_token, or give it with `engine account set {acntid}` \
             on stdin",
            oauth::provider_name(client.provider.as_deref(), &client.token_url)
        )));
    }
    let tls =
        crate::net::Tls::new(config.tls_ca_file.as_deref()).map_err(|source| Error::CaFile {
            config: layout.config.clone(),
            source,
        })?;
    let timeout = Duration::from_secs(config.io_timeout);
    let code = oauth::start_device(&client, &tls, timeout)
        .map_err(|e| Error::other("device sign-in could not start", e))?;
    println!("To sign in, open {}", code.verification_uri);
    println!("and enter the code {}", code.user_code);
    if let Some(complete) = &code.verification_uri_complete {
        println!("(or open {complete})");
    }
    let _ = std::io::stdout().flush();
    let give_up = Instant::now() + Duration::from_secs(code.expires_in);
    let mut interval = code.interval;
    loop {
        std::thread::sleep(Duration::from_secs(interval));
        if Instant::now() >= give_up {
            return Err(Error::Input(
                "the code expired before the sign-in was done; run `engine account authorize` again".into(),
            ));
        }
        let answer = oauth::poll_device(&client, &code.device_code, &tls, timeout)
            .map_err(|e| Error::other("device sign-in", e))?;
        match answer {
            oauth::Answer::Pending => {}
            oauth::Answer::SlowDown => interval += 5,
            oauth::Answer::Granted(grant) => {
                let Some(refresh) = grant.refresh_token.as_deref() else {
                    return Err(Error::Input(
                        "the provider gave no refresh token (is offline_access in the scope?)"
                            .into(),
                    ));
                };
                let expires_at = chrono::Utc::now().timestamp() + grant.expires_in;
                store.save_consented_tokens(acntid, refresh, &grant.access_token, expires_at)?;
                println!("account {acntid} is signed in");
                return Ok(exit::OK);
            }
            oauth::Answer::Refused { code, why } => {
                return Err(Error::Input(format!(
                    "the provider refused the sign-in ({code}{})",
                    why.map(|w| format!(": {w}")).unwrap_or_default()
                )))
            }
            oauth::Answer::Failed(why) | oauth::Answer::Rotated { why, .. } => {
                return Err(Error::Input(format!("sign-in stopped: {why}")))
            }
        }
    }
}

/// `engine account test`: logs in to IMAP and SMTP and reports the
/// capabilities (exit 1 when either fails).
fn test(a: &Account, config: &Config, at: &Location) -> Result<i32> {
    let timeout = Duration::from_secs(config.io_timeout);
    let tls = crate::net::Tls::new(config.tls_ca_file.as_deref())
        .map_err(|e| Error::other("cannot set up TLS", e))?;
    let clock = || chrono::Utc::now().timestamp();
    let tokens = Tokens::new(at, &tls, timeout, &clock);
    let mut ok = true;
    match crate::imap::login(a, &tokens, &tls, timeout) {
        Ok((client, _)) => {
            println!(
                "imap: ok ({}), capabilities: {}",
                client.peer(),
                client.caps().sorted().join(" ")
            );
            client.logout();
        }
        Err(e) => {
            ok = false;
            println!("imap: FAILED: {}", chain(&e));
        }
    }
    if a.smtp_host.as_deref().is_some_and(|h| !h.trim().is_empty()) {
        match crate::outbox::smtp::connect(a, &tokens, &tls, timeout) {
            Ok(s) => {
                println!("smtp: ok ({}), {}", s.peer(), s.describe());
                s.quit();
            }
            Err(e) => {
                ok = false;
                println!("smtp: FAILED: {}", chain(&e));
            }
        }
    } else {
        println!("smtp: no smtp_host configured");
    }
    Ok(if ok { exit::OK } else { exit::FAILURE })
}
