//! A parser for the server responses the engine reads, one complete response
//! (line plus its literals) at a time.
//!
//! It tokenizes generically (atoms, numbers, quoted strings, literals, NIL,
//! parenthesized lists, `BODY[...]<n>` section atoms) and then recognizes the
//! responses of interest; anything else is `Untagged::Other` and ignored by
//! callers. It never panics: malformed input is a `ParseError`. Literal bytes
//! are borrowed from the input, never copied or interpreted.

use std::borrow::Cow;
use std::ops::RangeInclusive;

/// Why a response could not be parsed (with the offset where it went wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct ParseError {
    pub at: usize,
    pub what: &'static str,
}

type Res<T> = Result<T, ParseError>;

/// A status response's parts: status, response code, text.
type StatusParts<'a> = (Status, Option<&'a [u8]>, &'a [u8]);

/// A value of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// An atom or number (flags like `\Seen`, section atoms like `BODY[]`).
    Atom(&'a [u8]),
    /// A quoted string (unescaped) or a literal.
    Str(Cow<'a, [u8]>),
    Nil,
    List(Vec<Value<'a>>),
}

impl<'a> Value<'a> {
    /// The value as a number, when it is one.
    pub fn number(&self) -> Option<u64> {
        match self {
            Value::Atom(a) => parse_u64(a),
            _ => None,
        }
    }
    /// The value as bytes (atom or string).
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Atom(a) => Some(a),
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Status of a tagged or untagged status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    PreAuth,
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// The completion of a command.
    Tagged {
        tag: &'a [u8],
        status: Status,
        code: Option<&'a [u8]>,
        text: &'a [u8],
    },
    /// `+ ...`: the server waits for a literal.
    Continue,
    Untagged(Untagged<'a>),
}

/// The untagged responses the engine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untagged<'a> {
    Status {
        status: Status,
        code: Option<&'a [u8]>,
        text: &'a [u8],
    },
    Capability(Vec<&'a [u8]>),
    List {
        attributes: Vec<&'a [u8]>,
        delimiter: Option<Cow<'a, [u8]>>,
        name: Cow<'a, [u8]>,
    },
    MailboxStatus {
        name: Cow<'a, [u8]>,
        items: Vec<(&'a [u8], u64)>,
    },
    Search(Vec<u32>),
    Exists(u32),
    Expunge(u32),
    Fetch {
        seq: u32,
        items: Vec<(&'a [u8], Value<'a>)>,
    },
    Vanished {
        earlier: bool,
        uids: Vec<RangeInclusive<u32>>,
    },
    Other(&'a [u8]),
}

/// Parses one complete response (ending in CRLF, literals included).
pub fn parse(input: &[u8]) -> Res<Response<'_>> {
    let mut p = Parser {
        i: input,
        pos: 0,
        depth: 0,
    };
    let resp = p.response()?;
    Ok(resp)
}

/// The number in a response code like `UIDVALIDITY 3857529045`.
pub fn code_number(code: &[u8], name: &str) -> Option<u64> {
    let mut words = code.split(|b| *b == b' ');
    let first = words.next()?;
    if !first.eq_ignore_ascii_case(name.as_bytes()) {
        return None;
    }
    parse_u64(words.next()?)
}

/// Parses a decimal number of at most 20 digits.
pub fn parse_u64(a: &[u8]) -> Option<u64> {
    if a.is_empty() || a.len() > 20 || !a.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(a).ok()?.parse().ok()
}

/// Deepest nesting of parenthesized lists accepted. Lists recurse, and a
/// worker's stack is small: a server sending a long run of '(' must get a
/// parse error, not overflow the stack (which aborts the whole process).
/// Real responses nest a few levels (BODYSTRUCTURE of nested multiparts a
/// few dozen at most).
const MAX_DEPTH: usize = 200;

struct Parser<'a> {
    i: &'a [u8],
    pos: usize,
    /// Lists open around the current position.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, what: &'static str) -> Res<T> {
        Err(ParseError { at: self.pos, what })
    }

    fn peek(&self) -> Option<u8> {
        self.i.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Res<()> {
        if self.eat(b) {
            Ok(())
        } else {
            self.err(what)
        }
    }

    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// The rest of the line, without CRLF.
    fn rest_of_line(&mut self) -> &'a [u8] {
        let start = self.pos;
        let end = self.i[start..]
            .iter()
            .position(|b| *b == b'\r' || *b == b'\n')
            .map_or(self.i.len(), |p| start + p);
        self.pos = end;
        &self.i[start..end]
    }

    fn word(&mut self) -> &'a [u8] {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b == b' ' || b == b'\r' || b == b'\n' || b == b'(' || b == b')' {
                break;
            }
            self.pos += 1;
        }
        &self.i[start..self.pos]
    }

    fn response(&mut self) -> Res<Response<'a>> {
        if self.eat(b'+') {
            return Ok(Response::Continue);
        }
        if self.eat(b'*') {
            self.expect(b' ', "space after '*'")?;
            return Ok(Response::Untagged(self.untagged()?));
        }
        let tag = self.word();
        if tag.is_empty() {
            return self.err("response without tag");
        }
        self.expect(b' ', "space after tag")?;
        let (status, code, text) = self.status_rest()?;
        Ok(Response::Tagged {
            tag,
            status,
            code,
            text,
        })
    }

    fn status_word(w: &[u8]) -> Option<Status> {
        Some(match w.to_ascii_uppercase().as_slice() {
            b"OK" => Status::Ok,
            b"NO" => Status::No,
            b"BAD" => Status::Bad,
            b"BYE" => Status::Bye,
            b"PREAUTH" => Status::PreAuth,
            _ => return None,
        })
    }

    fn status_rest(&mut self) -> Res<StatusParts<'a>> {
        let w = self.word();
        let Some(status) = Self::status_word(w) else {
            return self.err("expected OK, NO, BAD, BYE or PREAUTH");
        };
        self.spaces();
        let mut code = None;
        if self.eat(b'[') {
            let start = self.pos;
            let Some(len) = self.i[start..].iter().position(|b| *b == b']') else {
                return self.err("unterminated response code");
            };
            code = Some(&self.i[start..start + len]);
            self.pos = start + len + 1;
            self.spaces();
        }
        let text = self.rest_of_line();
        Ok((status, code, text))
    }

    fn untagged(&mut self) -> Res<Untagged<'a>> {
        let w = self.word();
        if let Some(n) = parse_u64(w) {
            let n = u32::try_from(n).or_else(|_| self.err("message number too large"))?;
            self.expect(b' ', "space after number")?;
            let kind = self.word().to_ascii_uppercase();
            return match kind.as_slice() {
                b"EXISTS" => Ok(Untagged::Exists(n)),
                b"EXPUNGE" => Ok(Untagged::Expunge(n)),
                b"FETCH" => {
                    self.spaces();
                    let items = self.fetch_items()?;
                    Ok(Untagged::Fetch { seq: n, items })
                }
                _ => Ok(Untagged::Other(self.rest_of_line())),
            };
        }
        let upper = w.to_ascii_uppercase();
        if let Some(status) = Self::status_word(&upper) {
            self.pos -= w.len();
            let (_, code, text) = self.status_rest()?;
            return Ok(Untagged::Status { status, code, text });
        }
        match upper.as_slice() {
            b"CAPABILITY" => {
                let rest = self.rest_of_line();
                Ok(Untagged::Capability(
                    rest.split(|b| *b == b' ')
                        .filter(|s| !s.is_empty())
                        .collect(),
                ))
            }
            b"LIST" | b"LSUB" => self.list(),
            b"STATUS" => self.mailbox_status(),
            b"SEARCH" => {
                let rest = self.rest_of_line();
                let mut uids = Vec::new();
                for word in rest.split(|b| *b == b' ').filter(|s| !s.is_empty()) {
                    match parse_u64(word).and_then(|n| u32::try_from(n).ok()) {
                        Some(n) => uids.push(n),
                        None => {
                            // "(MODSEQ n)" at the end of a CONDSTORE search
                            if word.starts_with(b"(") {
                                break;
                            }
                            return self.err("bad number in SEARCH");
                        }
                    }
                }
                Ok(Untagged::Search(uids))
            }
            b"VANISHED" => {
                self.spaces();
                let mut earlier = false;
                if self.peek() == Some(b'(') {
                    let start = self.pos;
                    let Some(len) = self.i[start..].iter().position(|b| *b == b')') else {
                        return self.err("unterminated VANISHED tag");
                    };
                    earlier = self.i[start..start + len]
                        .to_ascii_uppercase()
                        .windows(7)
                        .any(|w| w == b"EARLIER");
                    self.pos = start + len + 1;
                    self.spaces();
                }
                let set = self.word();
                match parse_uid_set(set) {
                    Some(uids) => Ok(Untagged::Vanished { earlier, uids }),
                    None => self.err("bad UID set in VANISHED"),
                }
            }
            _ => Ok(Untagged::Other(self.rest_of_line())),
        }
    }

    fn list(&mut self) -> Res<Untagged<'a>> {
        self.spaces();
        let attributes = match self.value()? {
            Value::List(items) => items
                .into_iter()
                .filter_map(|v| match v {
                    Value::Atom(a) => Some(a),
                    _ => None,
                })
                .collect(),
            _ => return self.err("LIST without attribute list"),
        };
        self.spaces();
        let delimiter = match self.value()? {
            Value::Nil => None,
            Value::Str(s) => Some(s),
            Value::Atom(a) => Some(Cow::Borrowed(a)),
            Value::List(_) => return self.err("bad LIST delimiter"),
        };
        self.spaces();
        let name = self.astring()?;
        // RFC 5258 extended data ("CHILDINFO" ...) may follow: ignored.
        Ok(Untagged::List {
            attributes,
            delimiter,
            name,
        })
    }

    fn mailbox_status(&mut self) -> Res<Untagged<'a>> {
        self.spaces();
        let name = self.astring()?;
        self.spaces();
        let Value::List(values) = self.value()? else {
            return self.err("STATUS without item list");
        };
        let mut items = Vec::new();
        let mut it = values.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let (Value::Atom(k), Some(n)) = (k, v.number()) {
                items.push((k, n));
            }
        }
        Ok(Untagged::MailboxStatus { name, items })
    }

    fn astring(&mut self) -> Res<Cow<'a, [u8]>> {
        match self.value()? {
            Value::Atom(a) => Ok(Cow::Borrowed(a)),
            Value::Str(s) => Ok(s),
            Value::Nil => Ok(Cow::Borrowed(b"NIL")),
            Value::List(_) => self.err("expected a string"),
        }
    }

    fn fetch_items(&mut self) -> Res<Vec<(&'a [u8], Value<'a>)>> {
        self.expect(b'(', "FETCH without '('")?;
        let mut items = Vec::new();
        loop {
            self.spaces();
            if self.eat(b')') {
                return Ok(items);
            }
            let key = self.atom()?;
            if key.is_empty() {
                return self.err("empty FETCH item name");
            }
            self.spaces();
            let value = self.value()?;
            items.push((key, value));
        }
    }

    /// An atom, where `[...]` may hold spaces and parentheses (`BODY[HEADER.FIELDS (A B)]`)
    /// and `<n>` may follow it.
    fn atom(&mut self) -> Res<&'a [u8]> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b'[' => {
                    let Some(len) = self.i[self.pos..].iter().position(|c| *c == b']') else {
                        return self.err("unterminated '['");
                    };
                    self.pos += len + 1;
                }
                b' ' | b'(' | b')' | b'{' | b'"' | b'\r' | b'\n' => break,
                _ => self.pos += 1,
            }
        }
        Ok(&self.i[start..self.pos])
    }

    fn value(&mut self) -> Res<Value<'a>> {
        match self.peek() {
            None => self.err("unexpected end of response"),
            Some(b'(') => {
                if self.depth >= MAX_DEPTH {
                    return self.err("lists nested too deeply");
                }
                self.pos += 1;
                self.depth += 1;
                let mut items = Vec::new();
                loop {
                    self.spaces();
                    if self.eat(b')') {
                        self.depth -= 1;
                        return Ok(Value::List(items));
                    }
                    if matches!(self.peek(), None | Some(b'\r') | Some(b'\n')) {
                        return self.err("unterminated list");
                    }
                    items.push(self.value()?);
                }
            }
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            Some(b'~') if self.i.get(self.pos + 1) == Some(&b'{') => {
                self.pos += 1;
                self.literal()
            }
            Some(_) => {
                let a = self.atom()?;
                if a.is_empty() {
                    return self.err("expected a value");
                }
                if a.eq_ignore_ascii_case(b"NIL") {
                    Ok(Value::Nil)
                } else {
                    Ok(Value::Atom(a))
                }
            }
        }
    }

    fn quoted(&mut self) -> Res<Value<'a>> {
        self.expect(b'"', "expected '\"'")?;
        let start = self.pos;
        let mut owned: Option<Vec<u8>> = None;
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return self.err("unterminated quoted string"),
                Some(b'"') => {
                    let raw = &self.i[start..self.pos];
                    self.pos += 1;
                    return Ok(Value::Str(match owned {
                        Some(v) => Cow::Owned(v),
                        None => Cow::Borrowed(raw),
                    }));
                }
                Some(b'\\') => {
                    let buf = owned.get_or_insert_with(|| self.i[start..self.pos].to_vec());
                    match self.i.get(self.pos + 1) {
                        Some(c) => {
                            buf.push(*c);
                            self.pos += 2;
                        }
                        None => return self.err("unterminated escape"),
                    }
                }
                Some(c) => {
                    if let Some(buf) = owned.as_mut() {
                        buf.push(c);
                    }
                    self.pos += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> Res<Value<'a>> {
        self.expect(b'{', "expected '{'")?;
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let Some(len) = parse_u64(&self.i[start..self.pos]) else {
            return self.err("bad literal length");
        };
        self.eat(b'+');
        self.expect(b'}', "expected '}'")?;
        self.eat(b'\r');
        self.expect(b'\n', "expected line end after literal length")?;
        let begin = self.pos;
        let Some(end) = usize::try_from(len).ok().and_then(|l| begin.checked_add(l)) else {
            return self.err("literal too long");
        };
        if end > self.i.len() {
            return self.err("literal longer than the response");
        }
        self.pos = end;
        Ok(Value::Str(Cow::Borrowed(&self.i[begin..end])))
    }
}

/// Parses a UID set like `1:3,7,9:*` (`*` is not allowed here).
pub fn parse_uid_set(s: &[u8]) -> Option<Vec<RangeInclusive<u32>>> {
    let mut out = Vec::new();
    for part in s.split(|b| *b == b',') {
        let mut ends = part.split(|b| *b == b':');
        let a = u32::try_from(parse_u64(ends.next()?)?).ok()?;
        let b = match ends.next() {
            Some(b) => u32::try_from(parse_u64(b)?).ok()?,
            None => a,
        };
        if ends.next().is_some() {
            return None;
        }
        out.push(a.min(b)..=a.max(b));
    }
    Some(out)
}

/// The length announced by a line ending in `{N}\r\n` (or `{N+}`), if any.
pub fn literal_announced(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let line = line.strip_suffix(b"+").unwrap_or(line);
    let open = line.iter().rposition(|b| *b == b'{')?;
    parse_u64(&line[open + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untagged(s: &[u8]) -> Untagged<'_> {
        match parse(s) {
            Ok(Response::Untagged(u)) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tagged_with_code() {
        let r =
            parse(b"a7 OK [READ-ONLY] Examine completed (0.001 + 0.000 secs).\r\n").expect("parse");
        assert_eq!(
            r,
            Response::Tagged {
                tag: b"a7",
                status: Status::Ok,
                code: Some(b"READ-ONLY"),
                text: b"Examine completed (0.001 + 0.000 secs)."
            }
        );
        let r = parse(b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n").expect("parse");
        assert!(matches!(
            r,
            Response::Tagged {
                status: Status::No,
                ..
            }
        ));
    }

    #[test]
    fn untagged_status_codes() {
        let u = untagged(b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n");
        let Untagged::Status {
            code: Some(code), ..
        } = u
        else {
            panic!("{u:?}")
        };
        assert_eq!(code_number(code, "UIDVALIDITY"), Some(3857529045));
        assert_eq!(code_number(b"HIGHESTMODSEQ 12", "HIGHESTMODSEQ"), Some(12));
        assert_eq!(code_number(b"UIDNEXT x", "UIDNEXT"), None);
        assert!(matches!(
            untagged(b"* BYE server shutting down\r\n"),
            Untagged::Status {
                status: Status::Bye,
                ..
            }
        ));
        assert_eq!(untagged(b"* 23 EXISTS\r\n"), Untagged::Exists(23));
    }

    #[test]
    fn list_names_quoted_literal_and_escaped() {
        let u = untagged(b"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n");
        assert_eq!(
            u,
            Untagged::List {
                attributes: vec![b"\\HasNoChildren".as_slice(), b"\\Sent".as_slice()],
                delimiter: Some(Cow::Borrowed(b"/".as_slice())),
                name: Cow::Borrowed(b"Sent Items".as_slice()),
            }
        );
        let u = untagged(b"* LIST () \"/\" \"a\\\"b\\\\c\"\r\n");
        let Untagged::List { name, .. } = u else {
            panic!()
        };
        assert_eq!(name.as_ref(), b"a\"b\\c");
        let u = untagged(b"* LIST () NIL {5}\r\nx y*z\r\n");
        let Untagged::List {
            name, delimiter, ..
        } = u
        else {
            panic!()
        };
        assert_eq!(name.as_ref(), b"x y*z");
        assert_eq!(delimiter, None);
        let u = untagged(b"* LIST (\\Noselect) \"/\" INBOX\r\n");
        let Untagged::List { name, .. } = u else {
            panic!()
        };
        assert_eq!(name.as_ref(), b"INBOX");
    }

    #[test]
    fn mailbox_status() {
        let u = untagged(b"* STATUS \"Za&AXwA8wFCAQc-\" (MESSAGES 3 UIDNEXT 44 UIDVALIDITY 9 HIGHESTMODSEQ 120)\r\n");
        let Untagged::MailboxStatus { name, items } = u else {
            panic!()
        };
        assert_eq!(name.as_ref(), b"Za&AXwA8wFCAQc-");
        assert_eq!(
            items,
            vec![
                (b"MESSAGES".as_slice(), 3),
                (b"UIDNEXT".as_slice(), 44),
                (b"UIDVALIDITY".as_slice(), 9),
                (b"HIGHESTMODSEQ".as_slice(), 120)
            ]
        );
    }

    #[test]
    fn fetch_with_body_literal_holding_anything() {
        let body = b"From: a\r\n\r\n) \"{3}\r\n\0\xff";
        let mut resp = format!(
            "* 12 FETCH (UID 501 RFC822.SIZE {} FLAGS (\\Seen $Label1) INTERNALDATE \" 7-Jul-2026 02:44:25 -0700\" MODSEQ (77) BODY[] {{{}}}\r\n",
            body.len(),
            body.len()
        )
        .into_bytes();
        resp.extend_from_slice(body);
        resp.extend_from_slice(b")\r\n");
        let Untagged::Fetch { seq, items } = untagged(&resp) else {
            panic!()
        };
        assert_eq!(seq, 12);
        let get = |k: &[u8]| {
            items
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(b"UID").and_then(|v| v.number()), Some(501));
        assert_eq!(
            get(b"BODY[]").and_then(|v| v.bytes().map(<[u8]>::to_vec)),
            Some(body.to_vec())
        );
        assert_eq!(
            get(b"FLAGS"),
            Some(Value::List(vec![
                Value::Atom(b"\\Seen"),
                Value::Atom(b"$Label1")
            ]))
        );
        assert_eq!(get(b"MODSEQ"), Some(Value::List(vec![Value::Atom(b"77")])));
    }

    #[test]
    fn fetch_header_fields_section_and_nil() {
        let u = untagged(b"* 1 FETCH (UID 9 BODY[HEADER.FIELDS (MESSAGE-ID)] {4}\r\nab\r\n BODY[TEXT]<0> NIL)\r\n");
        let Untagged::Fetch { items, .. } = u else {
            panic!()
        };
        assert_eq!(items[1].0, b"BODY[HEADER.FIELDS (MESSAGE-ID)]");
        assert_eq!(items[2], (b"BODY[TEXT]<0>".as_slice(), Value::Nil));
    }

    #[test]
    fn search_and_vanished() {
        assert_eq!(
            untagged(b"* SEARCH 1 5 9\r\n"),
            Untagged::Search(vec![1, 5, 9])
        );
        assert_eq!(untagged(b"* SEARCH\r\n"), Untagged::Search(vec![]));
        assert_eq!(
            untagged(b"* SEARCH 2 3 (MODSEQ 9)\r\n"),
            Untagged::Search(vec![2, 3])
        );
        assert_eq!(
            untagged(b"* VANISHED (EARLIER) 300:310,405\r\n"),
            Untagged::Vanished {
                earlier: true,
                uids: vec![300..=310, 405..=405]
            }
        );
        assert_eq!(
            untagged(b"* VANISHED 7\r\n"),
            Untagged::Vanished {
                earlier: false,
                uids: vec![7..=7]
            }
        );
    }

    #[test]
    fn malformed_never_panics() {
        let cases: &[&[u8]] = &[
            b"",
            b"*",
            b"* ",
            b"* 1 FETCH",
            b"* 1 FETCH (UID",
            b"* 1 FETCH (BODY[] {99}\r\nshort)\r\n",
            b"* 1 FETCH (BODY[ {1}\r\n",
            b"* LIST (\\X \"/\"",
            b"* STATUS x (MESSAGES",
            b"* 99999999999999999999999 EXISTS\r\n",
            b"* 1 FETCH (UID 1 BODY[] {18446744073709551615}\r\n)\r\n",
            b"tag",
            b"tag MAYBE\r\n",
            b"* VANISHED 1:x\r\n",
            b"* 1 FETCH (\"x\" 1)\r\n",
            b"* OK [unterminated\r\n",
        ];
        for c in cases {
            let _ = parse(c);
        }
        // every prefix of a valid response
        let full = b"* 3 FETCH (UID 5 FLAGS (\\Seen) BODY[] {3}\r\nabc)\r\n";
        for n in 0..full.len() {
            let _ = parse(&full[..n]);
        }
    }

    #[test]
    fn literal_announcement() {
        assert_eq!(literal_announced(b"* 1 FETCH (BODY[] {120}\r\n"), Some(120));
        assert_eq!(literal_announced(b"a OK {3+}\r\n"), Some(3));
        assert_eq!(literal_announced(b"* OK done\r\n"), None);
        assert_eq!(literal_announced(b"* OK {x}\r\n"), None);
    }
}
