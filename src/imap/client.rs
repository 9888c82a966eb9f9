//! The connection: transport (plain, TLS, STARTTLS), the command/response
//! loop, and the commands the engine uses.

use super::parse::{self, code_number, Response, Status, Untagged, Value};
use super::Error;
use crate::net::{self, Security};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bytes per second a response must average once the I/O timeout has
/// passed: a server that trickles a byte now and then to dodge the
/// per-read timeout is cut off.
const MIN_RATE: u64 = 1024;
/// What the slow-response guard says when it cuts a response off.
const TOO_SLOW: &str = "the server sends too slowly";
/// Longest line (without literals) accepted from a server.
const MAX_LINE: u64 = 64 << 20;
/// Largest literal accepted (a message of 2 GiB).
const MAX_LITERAL: u64 = 2 << 30;
/// A FETCH literal this large (a big message) is handed over in the buffer
/// it was read into instead of being copied out of it.
const LARGE_LITERAL: usize = 1 << 20;

enum Stream {
    Plain(TcpStream),
    Tls(Box<native_tls::TlsStream<TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(b),
            Stream::Tls(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(b),
            Stream::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// The stream with the slow-response guard.
struct Guarded {
    stream: Stream,
    started: Instant,
    bytes: u64,
    timeout: Duration,
}

impl Guarded {
    fn arm(&mut self) {
        self.started = Instant::now();
        self.bytes = 0;
    }
}

impl Read for Guarded {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let budget = self.timeout + Duration::from_secs(self.bytes / MIN_RATE);
        if self.started.elapsed() > budget {
            return Err(io::Error::new(io::ErrorKind::TimedOut, TOO_SLOW));
        }
        let n = self.stream.read(b)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

impl Write for Guarded {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.stream.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// The server's capabilities, upper-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities(HashSet<String>);

impl Capabilities {
    fn from_words<'a>(words: impl IntoIterator<Item = &'a [u8]>) -> Capabilities {
        Capabilities(
            words
                .into_iter()
                .map(|w| String::from_utf8_lossy(w).to_ascii_uppercase())
                .collect(),
        )
    }
    /// Whether the server offers `name` (case-insensitive).
    pub fn has(&self, name: &str) -> bool {
        self.0.contains(&name.to_ascii_uppercase())
    }
    /// All of them, sorted.
    pub fn sorted(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.iter().cloned().collect();
        v.sort();
        v
    }
}

/// The completion of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub status: Status,
    pub code: Option<String>,
    pub text: String,
}

impl Done {
    fn of(status: Status, code: Option<&[u8]>, text: &[u8]) -> Done {
        Done {
            status,
            code: code.map(|c| String::from_utf8_lossy(c).into_owned()),
            text: String::from_utf8_lossy(text).into_owned(),
        }
    }
}

/// A piece of a command.
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    /// Sent as is (command names, atoms, UID sets).
    Raw(&'a str),
    /// A string argument: quoted when it can be, else a literal.
    Str(&'a [u8]),
    /// Always a literal (APPEND's message).
    Literal(&'a [u8]),
}

/// What STATUS, LIST-STATUS or EXAMINE says of a mailbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxStatus {
    pub messages: Option<u32>,
    pub uidnext: Option<u32>,
    pub uidvalidity: Option<u32>,
    pub highestmodseq: Option<u64>,
}

/// One folder of LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The wire name, as the server sent it.
    pub name: Vec<u8>,
    pub delimiter: Option<String>,
    /// Name attributes, lower-cased (`\noselect`, `\sent`).
    pub attributes: Vec<String>,
    pub status: Option<MailboxStatus>,
}

/// One message of a FETCH response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched<'a> {
    pub seq: u32,
    pub uid: Option<u32>,
    pub size: Option<u32>,
    pub flags: Option<Vec<&'a [u8]>>,
    pub internal_date: Option<Cow<'a, [u8]>>,
    pub modseq: Option<u64>,
    /// `BODY[]`; `Some(None)` when the server sent NIL.
    pub body: Option<Option<Cow<'a, [u8]>>>,
    /// `BODY[HEADER]` or `BODY[HEADER.FIELDS (...)]`.
    pub header: Option<Option<Cow<'a, [u8]>>>,
}

impl<'a> Fetched<'a> {
    fn from_items(seq: u32, items: Vec<(&'a [u8], Value<'a>)>) -> Fetched<'a> {
        let mut f = Fetched {
            seq,
            ..Fetched::default()
        };
        for (key, value) in items {
            let upper = key.to_ascii_uppercase();
            let str_of = |v: Value<'a>| match v {
                Value::Str(s) => Some(s),
                Value::Atom(a) => Some(Cow::Borrowed(a)),
                _ => None,
            };
            match upper.as_slice() {
                b"UID" => f.uid = value.number().and_then(|n| u32::try_from(n).ok()),
                b"RFC822.SIZE" => f.size = value.number().and_then(|n| u32::try_from(n).ok()),
                b"FLAGS" => {
                    if let Value::List(items) = value {
                        f.flags = Some(
                            items
                                .into_iter()
                                .filter_map(|v| match v {
                                    Value::Atom(a) => Some(a),
                                    _ => None,
                                })
                                .collect(),
                        );
                    }
                }
                b"INTERNALDATE" => f.internal_date = str_of(value),
                b"MODSEQ" => {
                    if let Value::List(items) = value {
                        f.modseq = items.first().and_then(Value::number);
                    }
                }
                b"BODY[]" | b"BODY[]<0>" | b"RFC822" => f.body = Some(str_of(value)),
                k if k.starts_with(b"BODY[HEADER") || k == b"RFC822.HEADER" => {
                    f.header = Some(str_of(value))
                }
                _ => {}
            }
        }
        f
    }
}

/// A logged-out or failed session is dropped; there is nothing to clean up.
pub struct Client {
    io: BufReader<Guarded>,
    peer: String,
    next_tag: u32,
    caps: Capabilities,
    buf: Vec<u8>,
    timeout: Duration,
    bye: Option<String>,
    /// The command in progress, for error messages.
    doing: &'static str,
}

fn tls_error(peer: &str, e: native_tls::HandshakeError<TcpStream>, timeout: Duration) -> Error {
    match e {
        native_tls::HandshakeError::WouldBlock(_) => Error::Timeout(format!(
            "{peer}: TLS handshake: no answer for {} s",
            timeout.as_secs()
        )),
        native_tls::HandshakeError::Failure(e) => {
            Error::Tls(format!("{peer}: TLS handshake failed: {e}"))
        }
    }
}

impl Client {
    /// Connects, sets up TLS as `security` demands, and reads the greeting.
    /// STARTTLS that the server does not offer is an error, never a downgrade.
    pub fn connect(
        host: &str,
        port: u16,
        security: Security,
        tls: &net::Tls,
        timeout: Duration,
    ) -> Result<Client, Error> {
        let connector = || tls.connector().map_err(|e| Error::Tls(e.to_string()));
        let peer = format!("{host}:{port}");
        let tcp = net::connect(host, port, timeout).map_err(|e| {
            if net::is_timeout(&e) {
                Error::Connect(format!(
                    "cannot connect to {peer}: no answer within {} s",
                    timeout.as_secs()
                ))
            } else {
                Error::Connect(format!("cannot connect to {peer}: {e}"))
            }
        })?;
        match security {
            Security::Tls => {
                let stream = connector()?
                    .connect(host, tcp)
                    .map_err(|e| tls_error(&peer, e, timeout))?;
                let mut c = Client::new(Stream::Tls(Box::new(stream)), peer, timeout);
                c.greeting()?;
                Ok(c)
            }
            Security::Plain => {
                let mut c = Client::new(Stream::Plain(tcp), peer, timeout);
                c.greeting()?;
                Ok(c)
            }
            Security::StartTls => {
                let mut c = Client::new(Stream::Plain(tcp), peer.clone(), timeout);
                c.greeting()?;
                if c.caps.0.is_empty() {
                    c.capability()?;
                }
                if !c.caps.has("STARTTLS") {
                    return Err(Error::Tls(format!(
                        "{peer}: the server does not offer STARTTLS; refusing to log in without TLS"
                    )));
                }
                c.run_ok("STARTTLS", &[Part::Raw("STARTTLS")], &mut |_| Ok(()))?;
                if !c.io.buffer().is_empty() {
                    return Err(Error::Tls(format!(
                        "{peer}: the server sent data before the TLS handshake (possible injection); refusing"
                    )));
                }
                let Stream::Plain(tcp) = c.io.into_inner().stream else {
                    return Err(Error::Protocol(format!("{peer}: STARTTLS on a TLS stream")));
                };
                let stream = connector()?
                    .connect(host, tcp)
                    .map_err(|e| tls_error(&peer, e, timeout))?;
                let mut c = Client::new(Stream::Tls(Box::new(stream)), peer, timeout);
                // Capabilities learnt before TLS must not be trusted.
                c.capability()?;
                Ok(c)
            }
        }
    }

    fn new(stream: Stream, peer: String, timeout: Duration) -> Client {
        Client {
            io: BufReader::with_capacity(
                256 * 1024,
                Guarded {
                    stream,
                    started: Instant::now(),
                    bytes: 0,
                    timeout,
                },
            ),
            peer,
            next_tag: 1,
            caps: Capabilities::default(),
            buf: Vec::with_capacity(64 * 1024),
            timeout,
            bye: None,
            doing: "the greeting",
        }
    }

    /// `host:port`, for messages.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The capabilities as last announced.
    pub fn caps(&self) -> &Capabilities {
        &self.caps
    }

    fn greeting(&mut self) -> Result<(), Error> {
        self.doing = "the greeting";
        self.read_response()?;
        match parse::parse(&self.buf) {
            Ok(Response::Untagged(Untagged::Status { status, code, text })) => match status {
                Status::Ok | Status::PreAuth => {
                    if let Some(code) = code.map(<[u8]>::to_vec) {
                        self.learn_caps_code(&code);
                    }
                    Ok(())
                }
                _ => Err(Error::Unavailable(format!(
                    "{}: the server refused the connection: {}",
                    self.peer,
                    printable(text)
                ))),
            },
            _ => Err(Error::Protocol(format!(
                "{}: not an IMAP server (greeting: {})",
                self.peer,
                printable(&self.buf)
            ))),
        }
    }

    fn learn_caps_code(&mut self, code: &[u8]) {
        let mut words = code.split(|b| *b == b' ');
        if words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(b"CAPABILITY"))
        {
            self.caps = Capabilities::from_words(words.filter(|w| !w.is_empty()));
        }
    }

    /// Asks for the capabilities.
    pub fn capability(&mut self) -> Result<(), Error> {
        let mut caps = None;
        self.run_ok("CAPABILITY", &[Part::Raw("CAPABILITY")], &mut |u| {
            if let Untagged::Capability(words) = u {
                caps = Some(Capabilities::from_words(words));
            }
            Ok(())
        })?;
        if let Some(c) = caps {
            self.caps = c;
        }
        Ok(())
    }

    /// Logs in. The password goes only to the socket.
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), Error> {
        if self.caps.has("LOGINDISABLED") {
            return Err(Error::Auth(format!(
                "{}: the server does not allow LOGIN on this connection (LOGINDISABLED)",
                self.peer
            )));
        }
        let done = self
            .run(
                "LOGIN",
                &[
                    Part::Raw("LOGIN"),
                    Part::Str(user.as_bytes()),
                    Part::Str(password.as_bytes()),
                ],
                &mut |_| Ok(()),
            )
            .map_err(|e| self.at_login(e))?;
        if done.status != Status::Ok {
            // A careless server may quote the command back ("bad login:
            // alice secret"): the reply goes to logs and last_error.
            let mut text = done.text.clone();
            if !password.is_empty() {
                let quoted = password.replace('\\', "\\\\").replace('"', "\\\"");
                text = text.replace(&quoted, "***").replace(password, "***");
            }
            return Err(self.refused(user, &done, &text));
        }
        self.logged_in(&done)
    }

    /// After a good login: the capabilities as the server now has them.
    fn logged_in(&mut self, done: &Done) -> Result<(), Error> {
        match &done.code {
            Some(code) if code.to_ascii_uppercase().starts_with("CAPABILITY ") => {
                self.learn_caps_code(code.as_bytes())
            }
            _ => self.capability()?,
        }
        Ok(())
    }

    /// A NO to a login: a limit on connections (`UNAVAILABLE`, `LIMIT`,
    /// `INUSE`), or a refusal.
    fn refused(&self, user: &str, done: &Done, text: &str) -> Error {
        let code = done.code.as_deref().unwrap_or("").to_ascii_uppercase();
        let said = format!("{}: login as {user} refused: {text}", self.peer);
        if ["UNAVAILABLE", "LIMIT", "INUSE"]
            .iter()
            .any(|c| code.split(' ').next() == Some(c))
        {
            Error::Unavailable(format!("{said} [{code}]"))
        } else {
            Error::LoginRefused(said)
        }
    }

    /// `AUTHENTICATE` with a bearer token (SASL-IR when the server offers
    /// it). A refusal's challenge is answered at once with `abort`, so the
    /// final NO comes without waiting. Nothing here is logged: the
    /// response carries the token.
    pub fn authenticate(
        &mut self,
        user: &str,
        mechanism: crate::auth::sasl::Mechanism,
        response: &str,
    ) -> Result<(), Error> {
        self.doing = "AUTHENTICATE";
        let tag = self.tag();
        let name = mechanism.name();
        if self.caps.has("SASL-IR") {
            self.write_all(format!("{tag} AUTHENTICATE {name} {response}\r\n").as_bytes())?;
        } else {
            self.write_all(format!("{tag} AUTHENTICATE {name}\r\n").as_bytes())?;
            self.read_sasl_response(&tag)?;
            self.write_all(format!("{response}\r\n").as_bytes())?;
        }
        let mut challenge: Option<String> = None;
        loop {
            match self.read_sasl_response(&tag) {
                Ok(Some(done)) if done.status == Status::Ok => return self.logged_in(&done),
                Ok(Some(done)) => {
                    let mut text = done.text.clone();
                    if let Some(c) = &challenge {
                        text.push_str(&format!(" ({c})"));
                    }
                    return Err(self.refused(user, &done, &text));
                }
                Ok(None) if challenge.is_none() => {
                    // The refusal's challenge: answer it, then the NO comes.
                    let said = String::from_utf8_lossy(self.buf.get(2..).unwrap_or(&[]));
                    challenge = Some(
                        crate::auth::sasl::challenge_text(&said)
                            .unwrap_or_else(|| "no reason given".into()),
                    );
                    self.write_all(format!("{}\r\n", mechanism.abort()).as_bytes())?;
                }
                Ok(None) => {
                    return Err(Error::Protocol(format!(
                        "{}: a second challenge during AUTHENTICATE",
                        self.peer
                    )))
                }
                Err(e) => return Err(self.at_login(e)),
            }
        }
    }

    /// Reads responses up to a continuation (None) or the tagged
    /// completion of `tag`.
    fn read_sasl_response(&mut self, tag: &str) -> Result<Option<Done>, Error> {
        loop {
            self.read_response()?;
            match parse::parse(&self.buf) {
                Ok(Response::Continue) => return Ok(None),
                Ok(Response::Tagged {
                    tag: t,
                    status,
                    code,
                    text,
                }) if t == tag.as_bytes() => return Ok(Some(Done::of(status, code, text))),
                Ok(Response::Untagged(Untagged::Status {
                    status: Status::Bye,
                    text,
                    ..
                })) => self.bye = Some(String::from_utf8_lossy(text).into_owned()),
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::Protocol(format!(
                        "{}: cannot understand the server's reply to AUTHENTICATE ({e})",
                        self.peer
                    )))
                }
            }
        }
    }

    /// A connection that breaks during a login after the server said BYE:
    /// the server limits connections.
    fn at_login(&self, e: Error) -> Error {
        match (&e, &self.bye) {
            (Error::Io(m), Some(_)) => Error::Unavailable(m.clone()),
            _ => e,
        }
    }

    /// `ENABLE ext`; whether the server enabled it.
    pub fn enable(&mut self, ext: &'static str) -> Result<bool, Error> {
        if !self.caps.has("ENABLE") || !self.caps.has(ext) {
            return Ok(false);
        }
        let mut enabled = false;
        let cmd = format!("ENABLE {ext}");
        self.run_ok("ENABLE", &[Part::Raw(&cmd)], &mut |u| {
            if let Untagged::Other(rest) = u {
                enabled |= rest
                    .split(|b| *b == b' ')
                    .any(|w| w.eq_ignore_ascii_case(ext.as_bytes()));
            }
            Ok(())
        })?;
        Ok(enabled)
    }

    /// All folders, with their status in the same round trip when the server
    /// offers LIST-STATUS (RFC 5819).
    pub fn list(&mut self) -> Result<Vec<ListEntry>, Error> {
        let with_status = self.caps.has("LIST-STATUS");
        let special = self.caps.has("SPECIAL-USE") && self.caps.has("LIST-EXTENDED");
        let modseq = self.caps.has("CONDSTORE");
        let mut returns = Vec::new();
        if special {
            returns.push("SPECIAL-USE".to_string());
        }
        if with_status {
            returns.push(format!(
                "STATUS (MESSAGES UIDNEXT UIDVALIDITY{})",
                if modseq { " HIGHESTMODSEQ" } else { "" }
            ));
        }
        let cmd = if returns.is_empty() {
            "LIST \"\" \"*\"".to_string()
        } else {
            format!("LIST \"\" \"*\" RETURN ({})", returns.join(" "))
        };
        let mut entries: Vec<ListEntry> = Vec::new();
        let mut statuses: HashMap<Vec<u8>, MailboxStatus> = HashMap::new();
        self.run_ok("LIST", &[Part::Raw(&cmd)], &mut |u| {
            match u {
                Untagged::List {
                    attributes,
                    delimiter,
                    name,
                } => entries.push(ListEntry {
                    name: name.into_owned(),
                    delimiter: delimiter.map(|d| String::from_utf8_lossy(&d).into_owned()),
                    attributes: attributes
                        .iter()
                        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
                        .collect(),
                    status: None,
                }),
                Untagged::MailboxStatus { name, items } => {
                    statuses.insert(name.into_owned(), status_from(&items));
                }
                _ => {}
            }
            Ok(())
        })?;
        for e in &mut entries {
            e.status = statuses.remove(&e.name);
        }
        Ok(entries)
    }

    /// STATUS of several folders, pipelined (one round trip for all).
    pub fn status_many(
        &mut self,
        names: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, MailboxStatus>, Error> {
        let items = if self.caps.has("CONDSTORE") {
            "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
        } else {
            "(MESSAGES UIDNEXT UIDVALIDITY)"
        };
        let mut out = HashMap::new();
        for chunk in names.chunks(100) {
            let cmds: Vec<Vec<Part<'_>>> = chunk
                .iter()
                .map(|n| vec![Part::Raw("STATUS"), Part::Str(n), Part::Raw(items)])
                .collect();
            self.pipeline("STATUS", &cmds, &mut |u| {
                if let Untagged::MailboxStatus { name, items } = u {
                    out.insert(name.into_owned(), status_from(&items));
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// EXAMINE (read-only select).
    pub fn examine(&mut self, name: &[u8]) -> Result<MailboxStatus, Error> {
        let mut st = MailboxStatus::default();
        let condstore = self.caps.has("CONDSTORE");
        let mut parts = vec![Part::Raw("EXAMINE"), Part::Str(name)];
        if condstore {
            parts.push(Part::Raw("(CONDSTORE)"));
        }
        let done = self.run("EXAMINE", &parts, &mut |u| {
            match u {
                Untagged::Exists(n) => st.messages = Some(n),
                Untagged::Status {
                    code: Some(code), ..
                } => {
                    if let Some(v) = code_number(code, "UIDVALIDITY") {
                        st.uidvalidity = u32::try_from(v).ok();
                    } else if let Some(v) = code_number(code, "UIDNEXT") {
                        st.uidnext = u32::try_from(v).ok();
                    } else if let Some(v) = code_number(code, "HIGHESTMODSEQ") {
                        st.highestmodseq = Some(v);
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        if done.status != Status::Ok {
            return Err(Error::Refused(format!(
                "{}: cannot open folder '{}': {}",
                self.peer,
                String::from_utf8_lossy(name),
                done.text
            )));
        }
        Ok(st)
    }

    /// `UID FETCH set items [modifiers]`; each message goes to `on_fetch`,
    /// VANISHED (QRESYNC) ranges to `on_vanished`.
    pub fn uid_fetch(
        &mut self,
        set: &str,
        items: &str,
        modifiers: Option<&str>,
        on_fetch: &mut dyn FnMut(Fetched<'_>) -> Result<(), Error>,
        on_vanished: &mut dyn FnMut(&[std::ops::RangeInclusive<u32>]),
    ) -> Result<(), Error> {
        if set.is_empty() {
            return Ok(());
        }
        let cmd = match modifiers {
            Some(m) => format!("UID FETCH {set} {items} ({m})"),
            None => format!("UID FETCH {set} {items}"),
        };
        self.run_ok("UID FETCH", &[Part::Raw(&cmd)], &mut |u| {
            match u {
                Untagged::Fetch { seq, items } => on_fetch(Fetched::from_items(seq, items))?,
                Untagged::Vanished { uids, .. } => on_vanished(&uids),
                _ => {}
            }
            Ok(())
        })
        .map(|_| ())
    }

    /// `UID SEARCH criteria`: the UIDs found.
    pub fn uid_search(&mut self, criteria: &str) -> Result<Vec<u32>, Error> {
        let mut out = Vec::new();
        let cmd = format!("UID SEARCH {criteria}");
        self.run_ok("UID SEARCH", &[Part::Raw(&cmd)], &mut |u| {
            if let Untagged::Search(uids) = u {
                out.extend(uids);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// `UID SEARCH HEADER name value`: UIDs of messages whose header field
    /// `name` contains `value`.
    pub fn uid_search_header(&mut self, name: &str, value: &str) -> Result<Vec<u32>, Error> {
        let mut out = Vec::new();
        self.run_ok(
            "UID SEARCH",
            &[
                Part::Raw("UID SEARCH HEADER"),
                Part::Str(name.as_bytes()),
                Part::Str(value.as_bytes()),
            ],
            &mut |u| {
                if let Untagged::Search(uids) = u {
                    out.extend(uids);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// APPENDs a message; returns APPENDUID's (uidvalidity, uid) when the
    /// server tells (UIDPLUS).
    pub fn append(
        &mut self,
        mailbox: &[u8],
        flags: &str,
        raw: &[u8],
    ) -> Result<Option<(u32, u32)>, Error> {
        let flags = format!("({flags})");
        let done = self.run_ok(
            "APPEND",
            &[
                Part::Raw("APPEND"),
                Part::Str(mailbox),
                Part::Raw(&flags),
                Part::Literal(raw),
            ],
            &mut |_| Ok(()),
        )?;
        Ok(done.code.as_deref().and_then(|c| {
            let mut w = c.split(' ');
            if !w.next()?.eq_ignore_ascii_case("APPENDUID") {
                return None;
            }
            let v = w.next()?.parse().ok()?;
            let uid = w.next()?.parse().ok()?;
            Some((v, uid))
        }))
    }

    /// LOGOUT, ignoring errors: the session ends either way.
    pub fn logout(mut self) {
        let _ = self.run("LOGOUT", &[Part::Raw("LOGOUT")], &mut |_| Ok(()));
    }

    /// Runs a command; NO and BAD are errors (`Refused`).
    pub fn run_ok(
        &mut self,
        name: &'static str,
        parts: &[Part<'_>],
        on: &mut dyn FnMut(Untagged<'_>) -> Result<(), Error>,
    ) -> Result<Done, Error> {
        let done = self.run(name, parts, on)?;
        match done.status {
            Status::Ok => Ok(done),
            _ => Err(Error::Refused(format!(
                "{}: {name} failed: {}",
                self.peer, done.text
            ))),
        }
    }

    /// Runs one command, passing each untagged response to `on`.
    pub fn run(
        &mut self,
        name: &'static str,
        parts: &[Part<'_>],
        on: &mut dyn FnMut(Untagged<'_>) -> Result<(), Error>,
    ) -> Result<Done, Error> {
        self.doing = name;
        let tag = self.tag();
        if let Some(done) = self.send(&tag, parts, on)? {
            return Ok(done);
        }
        loop {
            if let Some((t, done)) = self.read_one(on)? {
                if t == tag {
                    return Ok(done);
                }
            }
        }
    }

    /// Sends several commands at once and waits for all their completions.
    /// Commands must not need synchronizing literals.
    pub fn pipeline(
        &mut self,
        name: &'static str,
        cmds: &[Vec<Part<'_>>],
        on: &mut dyn FnMut(Untagged<'_>) -> Result<(), Error>,
    ) -> Result<Vec<Done>, Error> {
        self.doing = name;
        let mut wire = Vec::new();
        let mut tags = Vec::new();
        for parts in cmds {
            let tag = self.tag();
            match encode(&tag, parts, true) {
                Some(bytes) => wire.extend_from_slice(&bytes),
                None => {
                    // A synchronizing literal is needed: no pipelining.
                    let done = self.run(name, parts, on)?;
                    tags.push((tag, Some(done)));
                    continue;
                }
            }
            tags.push((tag, None));
        }
        self.write_all(&wire)?;
        let mut pending = tags.iter().filter(|(_, d)| d.is_none()).count();
        while pending > 0 {
            if let Some((t, done)) = self.read_one(on)? {
                if let Some(slot) = tags.iter_mut().find(|(tag, d)| *tag == t && d.is_none()) {
                    slot.1 = Some(done);
                    pending -= 1;
                }
            }
        }
        Ok(tags.into_iter().filter_map(|(_, d)| d).collect())
    }

    fn tag(&mut self) -> String {
        let t = format!("a{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    /// Writes a command; with synchronizing literals, waits for each `+`.
    /// Returns the completion when the server refused a literal.
    fn send(
        &mut self,
        tag: &str,
        parts: &[Part<'_>],
        on: &mut dyn FnMut(Untagged<'_>) -> Result<(), Error>,
    ) -> Result<Option<Done>, Error> {
        let literal_plus = self.caps.has("LITERAL+");
        if let Some(bytes) = encode(tag, parts, literal_plus) {
            self.write_all(&bytes)?;
            return Ok(None);
        }
        // Synchronizing literals: send up to each one, wait for "+".
        let mut line = tag.as_bytes().to_vec();
        for part in parts {
            line.push(b' ');
            match part {
                Part::Raw(s) => line.extend_from_slice(s.as_bytes()),
                Part::Str(s) if quotable(s) => quote_into(&mut line, s),
                Part::Str(data) | Part::Literal(data) => {
                    line.extend_from_slice(format!("{{{}}}\r\n", data.len()).as_bytes());
                    self.write_all(&line)?;
                    line.clear();
                    loop {
                        self.read_response()?;
                        match parse::parse(&self.buf) {
                            Ok(Response::Continue) => break,
                            Ok(Response::Tagged {
                                tag: t,
                                status,
                                code,
                                text,
                            }) if t == tag.as_bytes() => {
                                return Ok(Some(Done::of(status, code, text)))
                            }
                            Ok(Response::Untagged(u)) => on(u)?,
                            _ => {
                                return Err(Error::Protocol(format!(
                                    "{}: unexpected reply while sending {}: {}",
                                    self.peer,
                                    self.doing,
                                    printable(&self.buf)
                                )))
                            }
                        }
                    }
                    self.write_all(data)?;
                }
            }
        }
        line.extend_from_slice(b"\r\n");
        self.write_all(&line)?;
        Ok(None)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let io = self.io.get_mut();
        io.write_all(bytes)
            .and_then(|_| io.flush())
            .map_err(|e| self.io_error(e))
    }

    /// Reads and dispatches one response; returns (tag, completion) for a tagged one.
    fn read_one(
        &mut self,
        on: &mut dyn FnMut(Untagged<'_>) -> Result<(), Error>,
    ) -> Result<Option<(String, Done)>, Error> {
        self.read_response()?;
        if self.buf.len() >= LARGE_LITERAL {
            match take_large_literal(std::mem::take(&mut self.buf)) {
                Ok((rest, k, literal)) => {
                    self.buf = rest;
                    return match parse::parse(&self.buf) {
                        Ok(Response::Untagged(Untagged::Fetch { seq, mut items }))
                            if k < items.len() =>
                        {
                            items[k].1 = Value::Str(Cow::Owned(literal));
                            on(Untagged::Fetch { seq, items })?;
                            Ok(None)
                        }
                        _ => Err(Error::Protocol(format!(
                            "{}: cannot understand the server's reply to {}: {}",
                            self.peer,
                            self.doing,
                            printable(&self.buf)
                        ))),
                    };
                }
                Err(buf) => self.buf = buf,
            }
        }
        match parse::parse(&self.buf) {
            Ok(Response::Tagged {
                tag,
                status,
                code,
                text,
            }) => Ok(Some((
                String::from_utf8_lossy(tag).into_owned(),
                Done::of(status, code, text),
            ))),
            Ok(Response::Untagged(Untagged::Status {
                status: Status::Bye,
                text,
                ..
            })) => {
                self.bye = Some(String::from_utf8_lossy(text).into_owned());
                Ok(None)
            }
            Ok(Response::Untagged(u)) => {
                on(u)?;
                Ok(None)
            }
            Ok(Response::Continue) => Err(Error::Protocol(format!(
                "{}: unexpected continuation request during {}",
                self.peer, self.doing
            ))),
            Err(e) => {
                let is_fetch = self.buf.len() > 2
                    && self.buf.starts_with(b"* ")
                    && self.buf[..self.buf.len().min(40)]
                        .to_ascii_uppercase()
                        .windows(7)
                        .any(|w| w == b" FETCH ");
                if self.buf.starts_with(b"* ") && !is_fetch {
                    // An untagged response we do not need and cannot parse.
                    log::debug!(
                        "{}: ignored an unparsable response ({e}): {}",
                        self.peer,
                        printable(&self.buf)
                    );
                    Ok(None)
                } else {
                    Err(Error::Protocol(format!(
                        "{}: cannot understand the server's reply to {} ({e}): {}",
                        self.peer,
                        self.doing,
                        printable(&self.buf)
                    )))
                }
            }
        }
    }

    /// Reads one whole response (a line and the literals it announces) into `buf`.
    fn read_response(&mut self) -> Result<(), Error> {
        if self.buf.capacity() > 4 << 20 {
            // Do not keep a large message's worth of buffer for the session.
            self.buf = Vec::with_capacity(64 * 1024);
        }
        self.buf.clear();
        self.io.get_mut().arm();
        loop {
            let start = self.buf.len();
            let n = (&mut self.io)
                .take(MAX_LINE)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| self.io_error(e))?;
            if n == 0 || !self.buf.ends_with(b"\n") {
                if n as u64 >= MAX_LINE {
                    return Err(Error::Protocol(format!(
                        "{}: a response line longer than {} MiB",
                        self.peer,
                        MAX_LINE >> 20
                    )));
                }
                return Err(self.closed());
            }
            let Some(len) = parse::literal_announced(&self.buf[start..]) else {
                return Ok(());
            };
            if len > MAX_LITERAL {
                return Err(Error::Protocol(format!(
                    "{}: the server announced a literal of {len} bytes",
                    self.peer
                )));
            }
            // With room for the rest of the line: a full buffer would double.
            self.buf
                .reserve(len.saturating_add(1024).min(64 << 20) as usize);
            let got = (&mut self.io)
                .take(len)
                .read_to_end(&mut self.buf)
                .map_err(|e| self.io_error(e))?;
            if (got as u64) < len {
                return Err(self.closed());
            }
        }
    }

    fn closed(&self) -> Error {
        match &self.bye {
            Some(text) => Error::Io(format!(
                "{}: the server closed the connection during {}: {text}",
                self.peer, self.doing
            )),
            None => Error::Io(format!(
                "{}: the server closed the connection during {}",
                self.peer, self.doing
            )),
        }
    }

    fn io_error(&self, e: io::Error) -> Error {
        // Said plainly: "no answer" for a trickling server would be wrong,
        // and EAGAIN's "Resource temporarily unavailable" means nothing to
        // an administrator.
        if e.kind() == io::ErrorKind::TimedOut && e.to_string() == TOO_SLOW {
            Error::Timeout(format!(
                "{}: {TOO_SLOW} during {} (less than {MIN_RATE} bytes a second after {} s; timed out)",
                self.peer,
                self.doing,
                self.timeout.as_secs()
            ))
        } else if net::is_timeout(&e) {
            Error::Timeout(format!(
                "{}: no answer for {} s during {} (timed out)",
                self.peer,
                self.timeout.as_secs(),
                self.doing
            ))
        } else {
            Error::Io(format!(
                "{}: connection lost during {}: {e}",
                self.peer, self.doing
            ))
        }
    }
}

fn status_from(items: &[(&[u8], u64)]) -> MailboxStatus {
    let mut st = MailboxStatus::default();
    for (k, v) in items {
        match k.to_ascii_uppercase().as_slice() {
            b"MESSAGES" => st.messages = u32::try_from(*v).ok(),
            b"UIDNEXT" => st.uidnext = u32::try_from(*v).ok(),
            b"UIDVALIDITY" => st.uidvalidity = u32::try_from(*v).ok(),
            b"HIGHESTMODSEQ" => st.highestmodseq = Some(*v),
            _ => {}
        }
    }
    st
}

/// Whether `s` can travel as a quoted string.
fn quotable(s: &[u8]) -> bool {
    s.len() < 1024
        && s.iter()
            .all(|b| (0x01..0x80).contains(b) && *b != b'\r' && *b != b'\n')
}

fn quote_into(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for b in s {
        if *b == b'"' || *b == b'\\' {
            out.push(b'\\');
        }
        out.push(*b);
    }
    out.push(b'"');
}

/// The whole command in one piece, when no synchronizing literal is needed.
fn encode(tag: &str, parts: &[Part<'_>], literal_plus: bool) -> Option<Vec<u8>> {
    let mut out = tag.as_bytes().to_vec();
    for part in parts {
        out.push(b' ');
        match part {
            Part::Raw(s) => out.extend_from_slice(s.as_bytes()),
            Part::Str(s) if quotable(s) => quote_into(&mut out, s),
            Part::Str(data) | Part::Literal(data) => {
                if !literal_plus {
                    return None;
                }
                out.extend_from_slice(format!("{{{}+}}\r\n", data.len()).as_bytes());
                out.extend_from_slice(data);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

/// For a FETCH response carrying a literal of at least `LARGE_LITERAL`
/// bytes (a whole message): the response with that literal emptied (`{0}`
/// in its place), the index of its item, and the literal itself, moved to
/// the front of the buffer it was read into, so a large message is handed
/// to its owner instead of copied (which would hold it twice in memory).
/// Any other response is given back unchanged.
fn take_large_literal(buf: Vec<u8>) -> Result<(Vec<u8>, usize, Vec<u8>), Vec<u8>> {
    let found = match parse::parse(&buf) {
        Ok(Response::Untagged(Untagged::Fetch { items, .. })) => items
            .iter()
            .enumerate()
            .filter_map(|(k, (_, v))| match v {
                Value::Str(Cow::Borrowed(s)) if s.len() >= LARGE_LITERAL => {
                    let start = (s.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
                    Some((k, start, start.checked_add(s.len())?))
                }
                _ => None,
            })
            .max_by_key(|&(_, start, end)| end - start),
        _ => None,
    };
    let Some((k, start, end)) = found else {
        return Err(buf);
    };
    // The literal's announcement `{N}\r\n` (or `{N+}`) right before it; a
    // long quoted string has none and stays where it is.
    let head = &buf[..start.min(buf.len())];
    let Some(brace) = head.iter().rposition(|&c| c == b'{') else {
        return Err(buf);
    };
    let announced = &head[brace + 1..];
    let digits = announced
        .strip_suffix(b"}\r\n")
        .map(|d| d.strip_suffix(b"+").unwrap_or(d));
    let matches = digits
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse::<usize>().ok())
        == Some(end - start);
    if !matches || end > buf.len() {
        return Err(buf);
    }
    let mut rest = Vec::with_capacity(brace + 5 + (buf.len() - end));
    rest.extend_from_slice(&buf[..brace]);
    rest.extend_from_slice(b"{0}\r\n");
    rest.extend_from_slice(&buf[end..]);
    let mut literal = buf;
    literal.truncate(end);
    literal.drain(..start);
    Ok((rest, k, literal))
}

/// A server reply made safe to show: printable ASCII, at most 200 characters.
pub(crate) fn printable(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .take(200)
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '.'
            }
        })
        .collect();
    let mut s = s.trim_end_matches('.').to_string();
    if b.len() > 200 {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_literals() {
        assert_eq!(
            encode(
                "a1",
                &[
                    Part::Raw("LOGIN"),
                    Part::Str(b"u\"s\\er"),
                    Part::Str(b"p w")
                ],
                false
            ),
            Some(b"a1 LOGIN \"u\\\"s\\\\er\" \"p w\"\r\n".to_vec())
        );
        assert_eq!(encode("a2", &[Part::Str("zażółć".as_bytes())], false), None);
        assert_eq!(
            encode("a2", &[Part::Raw("X"), Part::Str(b"a\r\nb")], true),
            Some(b"a2 X {4+}\r\na\r\nb\r\n".to_vec())
        );
    }

    #[test]
    fn fetched_items() {
        let items = vec![
            (b"UID".as_slice(), Value::Atom(b"7")),
            (b"RFC822.SIZE".as_slice(), Value::Atom(b"3")),
            (
                b"FLAGS".as_slice(),
                Value::List(vec![Value::Atom(b"\\Seen")]),
            ),
            (b"BODY[HEADER]".as_slice(), Value::Str(Cow::Borrowed(b"h"))),
            (b"BODY[]".as_slice(), Value::Nil),
        ];
        let f = Fetched::from_items(1, items);
        assert_eq!(f.uid, Some(7));
        assert_eq!(f.size, Some(3));
        assert_eq!(f.flags, Some(vec![b"\\Seen".as_slice()]));
        assert_eq!(f.header, Some(Some(Cow::Borrowed(b"h".as_slice()))));
        assert_eq!(f.body, Some(None));
    }

    fn fetch_with(body: &[u8], literal: bool) -> Vec<u8> {
        let mut r = b"* 3 FETCH (UID 7 BODY[] ".to_vec();
        if literal {
            r.extend_from_slice(format!("{{{}}}\r\n", body.len()).as_bytes());
            r.extend_from_slice(body);
        } else {
            r.push(b'"');
            r.extend_from_slice(body);
            r.push(b'"');
        }
        r.extend_from_slice(b" FLAGS (\\Seen $Label1))\r\n");
        r
    }

    #[test]
    fn a_large_literal_is_moved_out_of_the_response_whole() {
        // Braces, CRLF and a fake announcement inside the message itself.
        let mut body = b"Subject: {5}\r\n\r\n}\r\n{".to_vec();
        body.extend((0..LARGE_LITERAL).map(|i| (i % 251) as u8));
        let resp = fetch_with(&body, true);
        let (rest, k, literal) = take_large_literal(resp).expect("taken");
        assert!(literal == body, "the literal, byte for byte");
        assert_eq!(rest, fetch_with(b"", true));
        let Ok(Response::Untagged(Untagged::Fetch { seq, items })) = parse::parse(&rest) else {
            panic!("the rest parses");
        };
        assert_eq!(seq, 3);
        assert_eq!(items[k].0, b"BODY[]".as_slice());
        let mut items = items;
        items[k].1 = Value::Str(Cow::Owned(literal));
        let f = Fetched::from_items(seq, items);
        assert_eq!(f.uid, Some(7));
        assert_eq!(f.flags, Some(vec![b"\\Seen".as_slice(), b"$Label1"]));
        assert!(matches!(f.body, Some(Some(Cow::Owned(ref b))) if *b == body));
    }

    #[test]
    fn other_responses_are_given_back_unchanged() {
        let small = fetch_with(b"Subject: hi\r\n\r\nbody", true);
        assert_eq!(take_large_literal(small.clone()), Err(small));
        // A long quoted string is no literal: it stays where it is.
        let quoted = fetch_with(&vec![b'a'; LARGE_LITERAL + 1], false);
        assert_eq!(take_large_literal(quoted.clone()), Err(quoted));
        let mut status = b"* OK ".to_vec();
        status.extend(std::iter::repeat_n(b'x', LARGE_LITERAL));
        status.extend_from_slice(b"\r\n");
        assert_eq!(take_large_literal(status.clone()), Err(status));
    }

    #[test]
    fn printable_strips_controls() {
        assert_eq!(printable(b"* OK hi\r\n"), "* OK hi");
        assert_eq!(printable(&[b'a'; 300]).len(), 203);
    }
}
