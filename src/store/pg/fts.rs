//! Full-text search on PostgreSQL, done the way SQLite's FTS5 does it.
//!
//! SQLite indexes `email_search` with `unicode61 remove_diacritics 2` plus a
//! fold of a few letters unicode61 leaves alone (ł, đ, ø, ß and their
//! capitals). To make PostgreSQL find the same messages, the engine splits
//! and folds the text itself and hands PostgreSQL only the normalized words
//! (`document`, a `tsvector` in binary form with the positions and the weights),
//! and translates an FTS5 query into a `tsquery` literal over the same words
//! (`to_tsquery`). The four columns are told apart by weights: subject A,
//! from_addr B, to_addrs C, body D. `snippet` approximates FTS5's
//! `snippet()` in Rust.
//!
//! Nothing here talks to PostgreSQL: plain functions over strings.

use crate::store::BadQuery;
use std::borrow::Cow;
use std::collections::HashMap;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The longest normalized word indexed, in bytes: PostgreSQL refuses
/// lexemes of 2 KB and more.
const MAX_WORD: usize = 2000;

/// A token of a text as FTS5's unicode61 tokenizer cuts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word<'a> {
    /// Byte offset of the token in the text.
    pub start: usize,
    /// Byte offset just past the token.
    pub end: usize,
    /// The token as written (`&text[start..end]`).
    pub text: &'a str,
    /// The token without diacritics, folded and lowercased.
    pub norm: String,
}

/// The tokens of `text`: maximal runs of alphanumeric characters, combining
/// marks and private-use characters, each with its normalized form. Tokens
/// whose normal form is empty or longer than 2000 bytes are skipped.
pub fn words(text: &str) -> impl Iterator<Item = Word<'_>> {
    runs(text).filter_map(move |(start, end)| {
        let norm = normalize(&text[start..end]);
        let fits = !norm.is_empty() && norm.len() <= MAX_WORD;
        fits.then(|| Word {
            start,
            end,
            text: &text[start..end],
            norm,
        })
    })
}

/// Byte ranges of the runs of token characters in `text`.
fn runs(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let start = loop {
            let (i, c) = chars.next()?;
            if is_token_char(c) {
                break i;
            }
        };
        let mut end = text.len();
        while let Some(&(i, c)) = chars.peek() {
            if !is_token_char(c) {
                end = i;
                break;
            }
            chars.next();
        }
        Some((start, end))
    })
}

/// Whether `c` belongs to a token (unicode61: L*, N*, M*, Co).
fn is_token_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    c.is_alphanumeric() || is_combining_mark(c) || is_private_use(c)
}

/// Whether `c` is in a private-use area (general category Co).
fn is_private_use(c: char) -> bool {
    matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}')
}

/// A token without diacritics (NFD, marks dropped), with the extra folds,
/// lowercased.
fn normalize(token: &str) -> String {
    if token.is_ascii() {
        // Most words: nothing to decompose or fold.
        return token.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(token.len());
    for c in token.nfd().filter(|&c| !is_combining_mark(c)) {
        match fold(c) {
            Some(s) => out.extend(s.chars().flat_map(char::to_lowercase)),
            None => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// The letters unicode61 keeps but the SQLite index folds.
fn fold(c: char) -> Option<&'static str> {
    Some(match c {
        'ł' => "l",
        'Ł' => "L",
        'đ' => "d",
        'Đ' => "D",
        'ø' => "o",
        'Ø' => "O",
        'ß' => "ss",
        'ẞ' => "SS",
        _ => return None,
    })
}

/// PostgreSQL's largest word position: later words all get this one.
const MAX_POSITION: usize = 16383;
/// Positions PostgreSQL keeps of one word.
const MAX_POSITIONS: usize = 256;
/// The weight of each searched column: subject, from, to, body.
const WEIGHTS: [char; 4] = ['A', 'B', 'C', 'D'];

/// Each word of a message's `tsvector` and its (position, weight)s, in
/// PostgreSQL's order of words (bytewise).
type Lexemes<'a> = Vec<(Cow<'a, str>, Vec<(u16, char)>)>;

/// A token's normal form ([`normalize`]), borrowed when the token already
/// is (most words of most mail: ASCII in lower case).
fn normal(token: &str) -> Cow<'_, str> {
    if token
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Cow::Borrowed(token)
    } else {
        Cow::Owned(normalize(token))
    }
}

/// The words of a message's columns (subject, from, to, body) with their
/// positions and the column's weight (A, B, C, D), as [`words`] makes them:
/// built here rather than by PostgreSQL's parser, so the words are exactly
/// SQLite's whatever the database's locale. A column starts one position
/// after the previous one ends plus one, so no phrase runs over a column's
/// end. At most `cap` bytes of words are taken (a `tsvector` holds at most
/// 1 MB). (A hash of the words seen, the standard library's, which no text
/// can make slow; a word already in normal form is not copied.)
fn lexemes(columns: [Option<&str>; 4], cap: usize) -> Lexemes<'_> {
    let mut seen: HashMap<Cow<'_, str>, Vec<(u16, char)>> = HashMap::new();
    let (mut position, mut taken) = (0usize, 0usize);
    'columns: for (column, weight) in columns.iter().zip(WEIGHTS) {
        let text = column.unwrap_or("");
        for (start, end) in runs(text) {
            let norm = normal(&text[start..end]);
            if norm.is_empty() || norm.len() > MAX_WORD {
                continue;
            }
            taken += norm.len() + 1;
            if taken > cap {
                break 'columns;
            }
            position += 1;
            let at = position.min(MAX_POSITION) as u16;
            let positions = match seen.get_mut(norm.as_ref()) {
                Some(positions) => positions,
                None => seen.entry(norm).or_default(),
            };
            if positions.len() < MAX_POSITIONS && positions.last().map(|p| p.0) != Some(at) {
                positions.push((at, weight));
            }
        }
        position += 1;
    }
    let mut lexemes: Lexemes<'_> = seen.into_iter().collect();
    lexemes.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    lexemes
}

/// The `tsvector` of a message in PostgreSQL's binary form (what
/// `tsvectorrecv` reads: the count, then each word NUL-terminated with its
/// positions, the weight in their top two bits), cheaper for the server
/// than parsing the text form.
pub fn document(columns: [Option<&str>; 4], cap: usize) -> Vec<u8> {
    let lexemes = lexemes(columns, cap);
    // Its exact size: a batch holds a few hundred of these at once.
    let size = 4 + lexemes
        .iter()
        .map(|(word, positions)| word.len() + 3 + 2 * positions.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(lexemes.len() as u32).to_be_bytes());
    for (word, positions) in &lexemes {
        out.extend_from_slice(word.as_bytes());
        out.push(0);
        out.extend_from_slice(&(positions.len() as u16).to_be_bytes());
        for (at, weight) in positions {
            let w: u16 = match weight {
                'A' => 3,
                'B' => 2,
                'C' => 1,
                _ => 0,
            };
            out.extend_from_slice(&((w << 14) | at).to_be_bytes());
        }
    }
    out
}

/// The same `tsvector` in its text form (`'word':1A,5D ...`), for reading.
#[cfg(test)]
fn literal(columns: [Option<&str>; 4], cap: usize) -> String {
    lexemes(columns, cap)
        .iter()
        .map(|(word, positions)| {
            let at: Vec<String> = positions.iter().map(|(p, w)| format!("{p}{w}")).collect();
            format!(
                "'{}':{}",
                word.replace('\\', "\\\\").replace('\'', "''"),
                at.join(",")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A term of a query, for highlighting: a normalized word, or a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The normalized word.
    pub norm: String,
    /// Whether any word starting with `norm` matches.
    pub prefix: bool,
}

impl Term {
    /// Whether a token of normal form `norm` matches this term.
    fn matches(&self, norm: &str) -> bool {
        if self.prefix {
            norm.starts_with(&self.norm)
        } else {
            norm == self.norm
        }
    }
}

/// An FTS5 query translated for PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The `tsquery` literal (for `$1::tsquery`), or `None` when the query
    /// can match nothing (a phrase without words): then there are no hits.
    pub tsquery: Option<String>,
    /// The positive terms of the query, without repeats, for snippets.
    pub terms: Vec<Term>,
}

/// Translates an FTS5 query into a `tsquery` over the weighted columns
/// (subject A, from_addr B, to_addrs C, body D). The error is a reason in
/// the style of FTS5's messages. `NEAR` groups and `^` are refused.
pub fn to_tsquery(query: &str) -> Result<Query, BadQuery> {
    let tokens = lex(query)?;
    let mut parser = Parser { tokens, pos: 0 };
    let expr = parser.parse_or(ALL)?;
    if parser.pos < parser.tokens.len() {
        return Err(parser.syntax_error());
    }
    let mut terms = Vec::new();
    collect_terms(&expr, &mut terms);
    let tsquery = match expr {
        Expr::Nothing => None,
        e => Some(render(&e)),
    };
    Ok(Query { tsquery, terms })
}

/// The columns, in index order, with their weights.
const COLUMNS: [(&str, char); 4] = [
    ("subject", 'A'),
    ("from_addr", 'B'),
    ("to_addrs", 'C'),
    ("body", 'D'),
];

/// A set of columns, one bit per entry of `COLUMNS`.
type Cols = u8;

/// All the columns.
const ALL: Cols = 0b1111;

/// A token of the query language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A bareword.
    Bare,
    /// A `"string"`.
    Quoted,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Colon,
    Comma,
    Plus,
    Star,
    Minus,
    Caret,
    And,
    Or,
    Not,
}

/// A token of the query with its source text.
#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    kind: Kind,
    src: &'a str,
}

impl Tok<'_> {
    /// The text of a bareword or string (quotes removed, `""` → `"`).
    fn value(&self) -> String {
        match self.kind {
            Kind::Quoted => self.src[1..self.src.len() - 1].replace("\"\"", "\""),
            _ => self.src.to_string(),
        }
    }
}

/// Splits an FTS5 query into tokens.
fn lex(query: &str) -> Result<Vec<Tok<'_>>, BadQuery> {
    let mut tokens = Vec::new();
    let mut rest = query;
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\n', '\r']);
        let Some(c) = rest.chars().next() else {
            return Ok(tokens);
        };
        let len = match c {
            '"' => quoted_len(rest)?,
            c if is_bare(c) => rest.find(|c| !is_bare(c)).unwrap_or(rest.len()),
            c => c.len_utf8(),
        };
        let src = &rest[..len];
        tokens.push(Tok {
            kind: kind_of(src)?,
            src,
        });
        rest = &rest[len..];
    }
}

/// The length of the `"string"` at the start of `s`, quotes included.
fn quoted_len(s: &str) -> Result<usize, BadQuery> {
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            continue;
        }
        if chars.peek().map(|&(_, c)| c) != Some('"') {
            return Ok(i + 1);
        }
        chars.next();
    }
    Err(BadQuery("unterminated string".into()))
}

/// Whether `c` may be part of a bareword.
fn is_bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '\u{1A}' || !c.is_ascii()
}

/// The kind of the token `src`.
fn kind_of(src: &str) -> Result<Kind, BadQuery> {
    Ok(match src {
        "AND" => Kind::And,
        "OR" => Kind::Or,
        "NOT" => Kind::Not,
        "(" => Kind::LParen,
        ")" => Kind::RParen,
        "{" => Kind::LBrace,
        "}" => Kind::RBrace,
        ":" => Kind::Colon,
        "," => Kind::Comma,
        "+" => Kind::Plus,
        "*" => Kind::Star,
        "-" => Kind::Minus,
        "^" => Kind::Caret,
        s if s.starts_with('"') => Kind::Quoted,
        s if s.starts_with(is_bare) => Kind::Bare,
        s => return Err(BadQuery(format!("fts5: syntax error near \"{s}\""))),
    })
}

/// A word of a phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lexeme {
    norm: String,
    prefix: bool,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    /// Matches no row.
    Nothing,
    /// Words in sequence, in one of the columns `cols`.
    Phrase(Vec<Lexeme>, Cols),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    /// The left side without the right side.
    Not(Box<Expr>, Box<Expr>),
}

/// `l AND r`, with nothing absorbing.
fn and(l: Expr, r: Expr) -> Expr {
    match (l, r) {
        (Expr::Nothing, _) | (_, Expr::Nothing) => Expr::Nothing,
        (l, r) => Expr::And(Box::new(l), Box::new(r)),
    }
}

/// `l OR r`, without the side that matches nothing.
fn or(l: Expr, r: Expr) -> Expr {
    match (l, r) {
        (Expr::Nothing, e) | (e, Expr::Nothing) => e,
        (l, r) => Expr::Or(Box::new(l), Box::new(r)),
    }
}

/// `l NOT r`: nothing stays nothing, removing nothing keeps `l`.
fn not(l: Expr, r: Expr) -> Expr {
    match (l, r) {
        (Expr::Nothing, _) => Expr::Nothing,
        (l, Expr::Nothing) => l,
        (l, r) => Expr::Not(Box::new(l), Box::new(r)),
    }
}

/// A recursive-descent parser of the FTS5 query language.
///
/// `or := and (OR and)*`, `and := not (AND not)*`,
/// `not := primary (NOT primary)*`, `primary := ( or ) | colset : ( or ) |
/// cnear+` (adjacent phrases: implicit AND, tighter than any operator),
/// `cnear := [colset :] phrase`, `phrase := string [*] (+ string [*])*`.
struct Parser<'a> {
    tokens: Vec<Tok<'a>>,
    pos: usize,
}

impl<'a> Parser<'a> {
    /// The kind of the token `ahead` places after the current one.
    fn peek(&self, ahead: usize) -> Option<Kind> {
        self.tokens.get(self.pos + ahead).map(|t| t.kind)
    }

    /// Consumes the next token if it is of kind `kind`.
    fn eat(&mut self, kind: Kind) -> bool {
        let found = self.peek(0) == Some(kind);
        if found {
            self.pos += 1;
        }
        found
    }

    /// FTS5's message for an unexpected token (or end of query).
    fn syntax_error(&self) -> BadQuery {
        let near = self.tokens.get(self.pos).map_or("", |t| t.src);
        BadQuery(format!("fts5: syntax error near \"{near}\""))
    }

    /// Consumes a token of kind `kind` or fails.
    fn expect(&mut self, kind: Kind) -> Result<(), BadQuery> {
        if self.eat(kind) {
            Ok(())
        } else {
            Err(self.syntax_error())
        }
    }

    fn parse_or(&mut self, cols: Cols) -> Result<Expr, BadQuery> {
        let mut e = self.parse_and(cols)?;
        while self.eat(Kind::Or) {
            e = or(e, self.parse_and(cols)?);
        }
        Ok(e)
    }

    fn parse_and(&mut self, cols: Cols) -> Result<Expr, BadQuery> {
        let mut e = self.parse_not(cols)?;
        while self.eat(Kind::And) {
            e = and(e, self.parse_not(cols)?);
        }
        Ok(e)
    }

    fn parse_not(&mut self, cols: Cols) -> Result<Expr, BadQuery> {
        let mut e = self.parse_primary(cols)?;
        while self.eat(Kind::Not) {
            e = not(e, self.parse_primary(cols)?);
        }
        Ok(e)
    }

    /// A parenthesized group, filtered or not, or adjacent phrases.
    fn parse_primary(&mut self, cols: Cols) -> Result<Expr, BadQuery> {
        if self.eat(Kind::LParen) {
            return self.group(cols);
        }
        let start = self.pos;
        if let Some(spec) = self.colset() {
            if self.eat(Kind::LParen) {
                return self.group(cols & resolve(&spec)?);
            }
            self.pos = start;
        }
        let mut e = self.cnear(cols)?;
        while self.starts_cnear() {
            e = and(e, self.cnear(cols)?);
        }
        Ok(e)
    }

    /// The rest of a group after its `(`.
    fn group(&mut self, cols: Cols) -> Result<Expr, BadQuery> {
        let e = self.parse_or(cols)?;
        self.expect(Kind::RParen)?;
        Ok(e)
    }

    /// Whether a (column-filtered) phrase follows, for an implicit AND.
    fn starts_cnear(&mut self) -> bool {
        let start = self.pos;
        let filtered = self.colset().is_some();
        let next = self.peek(0);
        self.pos = start;
        match next {
            Some(Kind::Bare | Kind::Quoted | Kind::Caret) => true,
            Some(Kind::LParen) | None => false,
            _ => filtered,
        }
    }

    /// A phrase, maybe with a column filter.
    fn cnear(&mut self, cols: Cols) -> Result<Expr, BadQuery> {
        let cols = match self.colset() {
            Some(spec) => cols & resolve(&spec)?,
            None => cols,
        };
        match self.tokens.get(self.pos) {
            Some(t) if t.kind == Kind::Caret => Err(BadQuery(
                "fts5: ^ (initial token) is not supported on PostgreSQL".into(),
            )),
            Some(t) if t.src == "NEAR" && self.peek(1) == Some(Kind::LParen) => Err(BadQuery(
                "fts5: NEAR groups are not supported on PostgreSQL".into(),
            )),
            _ => self.phrase(cols),
        }
    }

    /// Strings joined by `+`, each maybe ending in a prefix `*`.
    fn phrase(&mut self, cols: Cols) -> Result<Expr, BadQuery> {
        let mut lexemes = Vec::new();
        loop {
            let tok = match self.tokens.get(self.pos) {
                Some(t) if matches!(t.kind, Kind::Bare | Kind::Quoted) => *t,
                _ => return Err(self.syntax_error()),
            };
            self.pos += 1;
            let value = tok.value();
            let mut part: Vec<Lexeme> = words(&value)
                .map(|w| Lexeme {
                    norm: w.norm,
                    prefix: false,
                })
                .collect();
            if self.eat(Kind::Star) {
                if let Some(last) = part.last_mut() {
                    last.prefix = true;
                }
            }
            lexemes.append(&mut part);
            if !self.eat(Kind::Plus) {
                break;
            }
        }
        if lexemes.is_empty() || cols == 0 {
            return Ok(Expr::Nothing);
        }
        Ok(Expr::Phrase(lexemes, cols))
    }

    /// A column filter followed by its `:`, consumed; `None` (nothing
    /// consumed) when none is there. Gives the names and whether negated.
    fn colset(&mut self) -> Option<(Vec<String>, bool)> {
        let start = self.pos;
        let negated = self.eat(Kind::Minus);
        let names = if self.eat(Kind::LBrace) {
            self.name_list()
        } else {
            self.name().map(|n| vec![n])
        };
        match names {
            Some(names) if self.eat(Kind::Colon) => Some((names, negated)),
            _ => {
                self.pos = start;
                None
            }
        }
    }

    /// The names of a `{…}` column list, after its `{`, and its `}`.
    fn name_list(&mut self) -> Option<Vec<String>> {
        let mut names = Vec::new();
        while let Some(n) = self.name() {
            names.push(n);
        }
        (self.eat(Kind::RBrace) && !names.is_empty()).then_some(names)
    }

    /// A bareword or string, consumed, as a column name.
    fn name(&mut self) -> Option<String> {
        let tok = self.tokens.get(self.pos)?;
        if !matches!(tok.kind, Kind::Bare | Kind::Quoted) {
            return None;
        }
        self.pos += 1;
        Some(tok.value())
    }
}

/// The set of columns a column filter names.
fn resolve((names, negated): &(Vec<String>, bool)) -> Result<Cols, BadQuery> {
    let mut cols = 0;
    for name in names {
        let i = COLUMNS
            .iter()
            .position(|(c, _)| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| BadQuery(format!("no such column: {name}")))?;
        cols |= 1 << i;
    }
    Ok(if *negated { ALL & !cols } else { cols })
}

/// Gathers the words of the phrases that must match (not those after a
/// NOT), without repeats.
fn collect_terms(e: &Expr, terms: &mut Vec<Term>) {
    match e {
        Expr::Nothing => {}
        Expr::Phrase(lexemes, _) => {
            for l in lexemes {
                let term = Term {
                    norm: l.norm.clone(),
                    prefix: l.prefix,
                };
                if !terms.contains(&term) {
                    terms.push(term);
                }
            }
        }
        Expr::And(l, r) | Expr::Or(l, r) => {
            collect_terms(l, terms);
            collect_terms(r, terms);
        }
        Expr::Not(l, _) => collect_terms(l, terms),
    }
}

/// The tsquery of an expression, without outer parentheses.
fn render(e: &Expr) -> String {
    match e {
        Expr::Nothing => String::new(),
        Expr::Phrase(lexemes, cols) => {
            let parts: Vec<String> = lexemes.iter().map(|l| lexeme(l, *cols)).collect();
            parts.join(" <-> ")
        }
        Expr::And(l, r) => format!("{} & {}", operand(l), operand(r)),
        Expr::Or(l, r) => format!("{} | {}", operand(l), operand(r)),
        Expr::Not(l, r) => format!("{} & !{}", operand(l), operand(r)),
    }
}

/// The tsquery of an operand: parenthesized unless a single word.
fn operand(e: &Expr) -> String {
    match e {
        Expr::Phrase(lexemes, _) if lexemes.len() == 1 => render(e),
        _ => format!("({})", render(e)),
    }
}

/// A quoted tsquery lexeme with its prefix mark and weights.
fn lexeme(l: &Lexeme, cols: Cols) -> String {
    let quoted = l.norm.replace('\\', "\\\\").replace('\'', "''");
    let weights: String = COLUMNS
        .iter()
        .enumerate()
        .filter(|(i, _)| cols & (1 << i) != 0 && cols != ALL)
        .map(|(_, (_, w))| *w)
        .collect();
    let star = if l.prefix { "*" } else { "" };
    if star.is_empty() && weights.is_empty() {
        format!("'{quoted}'")
    } else {
        format!("'{quoted}':{star}{weights}")
    }
}

/// An excerpt of the best-matching column with the matching words wrapped
/// in `marks`, like FTS5's `snippet(…, open, close, '…', tokens)`: the
/// column (subject, from_addr, to_addrs, body) with the most matching
/// words, a window of at most `tokens` words around the most matches, `…`
/// where the text is cut. Without a match, the start of the body (or of the
/// first non-empty column).
pub fn snippet(
    columns: [Option<&str>; 4],
    terms: &[Term],
    marks: (&str, &str),
    tokens: usize,
) -> String {
    let texts = columns.map(Option::unwrap_or_default);
    let matched: Vec<Vec<bool>> = texts
        .iter()
        .map(|t| {
            words(t)
                .map(|w| terms.iter().any(|m| m.matches(&w.norm)))
                .collect()
        })
        .collect();
    let counts: Vec<usize> = matched
        .iter()
        .map(|m| m.iter().filter(|&&b| b).count())
        .collect();
    let best = (0..texts.len()).fold(0, |b, i| if counts[i] > counts[b] { i } else { b });
    let col = if counts[best] > 0 {
        best
    } else if !texts[3].is_empty() {
        3
    } else {
        texts.iter().position(|t| !t.is_empty()).unwrap_or(3)
    };
    excerpt(texts[col], &matched[col], marks, tokens)
}

/// The window of `text` chosen for the matches `hits` (one per word),
/// highlighted, with ellipses where cut.
fn excerpt(text: &str, hits: &[bool], marks: (&str, &str), tokens: usize) -> String {
    let spans: Vec<(usize, usize)> = words(text).map(|w| (w.start, w.end)).collect();
    let tokens = tokens.max(1);
    let first = window_start(hits, tokens);
    let last = (first + tokens).min(spans.len());
    let mut out = String::new();
    let mut at = match first {
        0 => 0,
        i => {
            out.push('…');
            spans[i].0
        }
    };
    for (&(start, end), &hit) in spans[first..last].iter().zip(&hits[first..last]) {
        out.push_str(&text[at..start]);
        if hit {
            out.push_str(marks.0);
            out.push_str(&text[start..end]);
            out.push_str(marks.1);
        } else {
            out.push_str(&text[start..end]);
        }
        at = end;
    }
    if last == spans.len() {
        out.push_str(&text[at..]);
    } else {
        out.push('…');
    }
    out
}

/// The first word of the window of `tokens` words holding the most hits
/// (the earliest of equals), moved back so its hits sit in its middle as
/// FTS5 does, and kept within the text.
fn window_start(hits: &[bool], tokens: usize) -> usize {
    let mut best = (0, 0, 0);
    for (i, _) in hits.iter().enumerate().filter(|(_, &h)| h) {
        let end = (i + tokens).min(hits.len());
        let count = hits[i..end].iter().filter(|&&h| h).count();
        if count > best.0 {
            let last = (i..end).rev().find(|&j| hits[j]).unwrap_or(i);
            best = (count, i, last);
        }
    }
    let (_, first, last) = best;
    let start = first.saturating_sub((tokens - (last - first)) / 2);
    start.min(hits.len().saturating_sub(tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norms(text: &str) -> Vec<String> {
        words(text).map(|w| w.norm).collect()
    }

    fn tsq(query: &str) -> Option<String> {
        match to_tsquery(query) {
            Ok(q) => q.tsquery,
            Err(e) => panic!("{query}: {e}"),
        }
    }

    fn term(norm: &str, prefix: bool) -> Term {
        Term {
            norm: norm.to_string(),
            prefix,
        }
    }

    #[test]
    fn fts_folds_diacritics_and_letters() {
        assert_eq!(norms("Zażółć gęślą jaźń"), ["zazolc", "gesla", "jazn"]);
        assert_eq!(
            norms("Łódź straße STRASSE Øre Đakovo ẞ"),
            ["lodz", "strasse", "strasse", "ore", "dakovo", "ss"]
        );
        assert_eq!(norms("Crème Brûlée naïve"), ["creme", "brulee", "naive"]);
        assert_eq!(
            norms("Москва Ελληνικά 東京"),
            ["москва", "ελληνικα", "東京"]
        );
    }

    #[test]
    fn fts_splits_like_unicode61() {
        assert_eq!(norms("jan@example.com"), ["jan", "example", "com"]);
        assert_eq!(
            norms("Re: [x-y] a_b 3.14 abc123"),
            ["re", "x", "y", "a", "b", "3", "14", "abc123"]
        );
        assert_eq!(norms("e\u{301}t\u{E000}e"), ["et\u{E000}e"]);
        let w: Vec<_> = words("  Zażółć, x").collect();
        assert_eq!((w[0].start, w[0].end, w[0].text), (2, 12, "Zażółć"));
        assert_eq!((w[1].start, w[1].end), (14, 15));
    }

    #[test]
    fn fts_skips_long_words() {
        let long = "a".repeat(2001);
        assert_eq!(norms(&format!("x {long} y")), ["x", "y"]);
        assert_eq!(norms(&"b".repeat(2000)).len(), 1);
    }

    #[test]
    fn fts_document_positions_weights_and_cap() {
        let d = literal(
            [
                Some("Zażółć gęślą"),
                Some("jan@firma.pl"),
                None,
                Some("Gęślą x"),
            ],
            1000,
        );
        assert_eq!(
            d,
            "'firma':5B 'gesla':2A,9D 'jan':4B 'pl':6B 'x':10D 'zazolc':1A"
        );
        // A column ends a position apart from the next: no phrase across.
        assert_eq!(
            literal([Some("a"), Some("b"), None, None], 100),
            "'a':1A 'b':3B"
        );
        // Words past the cap are left out, whole.
        assert_eq!(
            literal([Some("abc def"), None, None, Some("ghi")], 8),
            "'abc':1A 'def':2A"
        );
        assert_eq!(literal([None, None, None, None], 8), "");
        // Positions stop at PostgreSQL's largest, and 256 of one word.
        let many = "w ".repeat(20_000);
        let d = literal([None, None, None, Some(&many)], 1 << 20);
        assert_eq!(d.matches(',').count(), 255);
        let distinct: String = (0..17_000).map(|i| format!("w{i} ")).collect();
        let d = literal([None, None, None, Some(&distinct)], 1 << 20);
        assert!(d.contains("'w16999':16383D"), "clamped");
        assert!(!d.contains(":16384"));
        // The binary form: count, word, NUL, positions with their weights.
        let bin = document([Some("b a"), None, None, Some("a")], 100);
        assert_eq!(
            bin,
            [0, 0, 0, 2, b'a', 0, 0, 2, 0xC0, 2, 0x00, 6, b'b', 0, 0, 1, 0xC0, 1]
        );
    }

    /// [`lexemes`] as first written: every word's normal form copied,
    /// in a sorted map.
    fn lexemes_by_map(columns: [Option<&str>; 4], cap: usize) -> Vec<(String, Vec<(u16, char)>)> {
        let mut map = std::collections::BTreeMap::<String, Vec<(u16, char)>>::new();
        let (mut position, mut taken) = (0usize, 0usize);
        'columns: for (column, weight) in columns.iter().zip(WEIGHTS) {
            for w in words(column.unwrap_or("")) {
                taken += w.norm.len() + 1;
                if taken > cap {
                    break 'columns;
                }
                position += 1;
                let at = position.min(MAX_POSITION) as u16;
                let seen = map.entry(w.norm).or_default();
                if seen.len() < MAX_POSITIONS && seen.last().map(|p| p.0) != Some(at) {
                    seen.push((at, weight));
                }
            }
            position += 1;
        }
        map.into_iter().collect()
    }

    #[test]
    fn fts_lexemes_equal_a_sorted_map_of_every_word() {
        let mut body = String::new();
        for i in 0..20_000 {
            body.push_str(
                [
                    "Zażółć",
                    "gęślą",
                    "JAŹŃ",
                    "faktura",
                    "Faktura",
                    "FV/2026/11",
                    "ß",
                    "x1",
                    "ǅ",
                    "ÆØÅ",
                ][i % 10],
            );
            body.push_str(if i % 7 == 0 { ",\r\n" } else { " " });
            if i % 1000 == 0 {
                body.push_str(&"w".repeat(2001));
                body.push(' ');
            }
        }
        let columns = [
            Some("Re: Faktura FV/11"),
            Some("Paweł <p@example.com>"),
            None,
            Some(&body[..]),
        ];
        for cap in [10, 1000, 60_000, 1 << 20] {
            let fast: Vec<(String, Vec<(u16, char)>)> = lexemes(columns, cap)
                .into_iter()
                .map(|(w, p)| (w.into_owned(), p))
                .collect();
            assert_eq!(fast, lexemes_by_map(columns, cap), "cap {cap}");
        }
    }

    #[test]
    fn fts_query_phrases() {
        for (query, want) in [
            ("hello", "'hello'"),
            ("Zażółć", "'zazolc'"),
            ("\"hello world\"", "'hello' <-> 'world'"),
            ("\"jan@example.com\"", "'jan' <-> 'example' <-> 'com'"),
            ("\"say \"\"hi\"\"\"", "'say' <-> 'hi'"),
            ("a + b + c", "'a' <-> 'b' <-> 'c'"),
            ("fak*", "'fak':*"),
            ("\"new yo\" *", "'new' <-> 'yo':*"),
            ("a* + b", "'a':* <-> 'b'"),
            ("a b", "'a' & 'b'"),
            ("a b c", "('a' & 'b') & 'c'"),
            ("\"a b\" c", "('a' <-> 'b') & 'c'"),
            ("a AND b", "'a' & 'b'"),
            ("a OR b", "'a' | 'b'"),
            ("a NOT b", "'a' & !'b'"),
            ("a NOT \"b c\"", "'a' & !('b' <-> 'c')"),
            ("NEAR", "'near'"),
            ("and or", "'and' & 'or'"),
        ] {
            assert_eq!(tsq(query).as_deref(), Some(want), "{query}");
        }
    }

    #[test]
    fn fts_query_precedence() {
        for (query, want) in [
            ("a OR b c", "'a' | ('b' & 'c')"),
            // Implicit AND groups adjacent phrases first (FTS5 §3.7).
            ("a b NOT c", "('a' & 'b') & !'c'"),
            ("a NOT b c", "'a' & !('b' & 'c')"),
            // Explicit operators: NOT, then AND, then OR.
            ("a AND b NOT c", "'a' & ('b' & !'c')"),
            ("a NOT b AND c", "('a' & !'b') & 'c'"),
            ("a OR b AND c", "'a' | ('b' & 'c')"),
            ("a AND b OR c", "('a' & 'b') | 'c'"),
            ("a OR b NOT c", "'a' | ('b' & !'c')"),
            ("a NOT b NOT c", "('a' & !'b') & !'c'"),
            ("(a OR b) AND c", "('a' | 'b') & 'c'"),
            ("a NOT (b OR c)", "'a' & !('b' | 'c')"),
            ("((a))", "'a'"),
        ] {
            assert_eq!(tsq(query).as_deref(), Some(want), "{query}");
        }
    }

    #[test]
    fn fts_query_columns() {
        for (query, want) in [
            ("subject:word", "'word':A"),
            ("SUBJECT:word", "'word':A"),
            ("body:fak*", "'fak':*D"),
            ("subject:\"a b\"", "'a':A <-> 'b':A"),
            ("subject:a + b*", "'a':A <-> 'b':*A"),
            ("subject:(a OR b)", "'a':A | 'b':A"),
            ("{subject body}:x", "'x':AD"),
            ("{body subject}:x*", "'x':*AD"),
            ("-subject:x", "'x':BCD"),
            ("-{subject body}:x", "'x':BC"),
            (
                "to_addrs:\"jan@example.com\"",
                "'jan':C <-> 'example':C <-> 'com':C",
            ),
            ("from_addr:a b", "'a':B & 'b'"),
            ("subject:a body:b", "'a':A & 'b':D"),
            ("{subject body}:(a body:b)", "'a':AD & 'b':D"),
            ("-body:(a NOT subject:b)", "'a':ABC & !'b':A"),
            ("{subject subject}:x", "'x':A"),
            ("\"body\":x", "'x':D"),
        ] {
            assert_eq!(tsq(query).as_deref(), Some(want), "{query}");
        }
    }

    #[test]
    fn fts_query_errors() {
        for (query, want) in [
            ("", "fts5: syntax error near \"\""),
            ("   ", "fts5: syntax error near \"\""),
            ("NOT a", "fts5: syntax error near \"NOT\""),
            ("a AND", "fts5: syntax error near \"\""),
            ("a OR OR b", "fts5: syntax error near \"OR\""),
            ("(a", "fts5: syntax error near \"\""),
            ("a)", "fts5: syntax error near \")\""),
            ("()", "fts5: syntax error near \")\""),
            ("\"abc", "unterminated string"),
            ("*", "fts5: syntax error near \"*\""),
            ("a + ", "fts5: syntax error near \"\""),
            ("a . b", "fts5: syntax error near \".\""),
            ("jan@example.com", "fts5: syntax error near \"@\""),
            ("(a OR b) c", "fts5: syntax error near \"c\""),
            ("a (b)", "fts5: syntax error near \"(\""),
            ("a subject:(b)", "fts5: syntax error near \"subject\""),
            ("subject:", "fts5: syntax error near \"\""),
            ("-x", "fts5: syntax error near \"-\""),
            ("{}:x", "fts5: syntax error near \"{\""),
            ("nosuch:x", "no such column: nosuch"),
            ("{subject nosuch}:x", "no such column: nosuch"),
            (
                "NEAR(a b)",
                "fts5: NEAR groups are not supported on PostgreSQL",
            ),
            (
                "^a",
                "fts5: ^ (initial token) is not supported on PostgreSQL",
            ),
            (
                "subject:^a",
                "fts5: ^ (initial token) is not supported on PostgreSQL",
            ),
        ] {
            assert_eq!(
                to_tsquery(query),
                Err(BadQuery(want.to_string())),
                "{query}"
            );
        }
    }

    #[test]
    fn fts_query_nothing() {
        for (query, want) in [
            ("\"!!!\"", None),
            ("___", None),
            ("a \"!!!\"", None),
            ("a AND \"!!!\"", None),
            ("a OR \"!!!\"", Some("'a'")),
            ("\"!!!\" OR a", Some("'a'")),
            ("a NOT \"!!!\"", Some("'a'")),
            ("\"!!!\" NOT a", None),
            ("(a \"!!!\") OR b NOT c", Some("'b' & !'c'")),
            ("subject:(body:x)", None),
            ("subject:(body:x OR y)", Some("'y':A")),
            ("\"!!!\"*", None),
        ] {
            assert_eq!(tsq(query).as_deref(), want, "{query}");
        }
    }

    #[test]
    fn fts_query_terms() {
        let q = to_tsquery("Zażółć OR fak* NOT spam a + zazolc AND subject:(x y*)");
        let terms = q.map(|q| q.terms);
        assert_eq!(
            terms,
            Ok(vec![
                term("zazolc", false),
                term("fak", true),
                term("x", false),
                term("y", true),
            ])
        );
    }

    #[test]
    fn fts_lexemes_are_escaped() {
        let l = Lexeme {
            norm: "o'b\\".to_string(),
            prefix: true,
        };
        assert_eq!(lexeme(&l, 0b0001), "'o''b\\\\':*A");
    }

    #[test]
    fn fts_snippet_marks_original_text() {
        let terms = [term("zazolc", false)];
        let cols = [None, None, None, Some("Zażółć gęślą jaźń")];
        assert_eq!(snippet(cols, &terms, ("[", "]"), 16), "[Zażółć] gęślą jaźń");
        let cols = [Some("Re: Łódź!"), None, None, Some("nothing")];
        let terms = [term("lo", true)];
        assert_eq!(
            snippet(cols, &terms, ("<b>", "</b>"), 16),
            "Re: <b>Łódź</b>!"
        );
    }

    #[test]
    fn fts_snippet_picks_column_with_most_matches() {
        let terms = [term("a", false)];
        let cols = [Some("a x"), Some("a a"), Some("a a"), Some("b")];
        assert_eq!(snippet(cols, &terms, ("[", "]"), 16), "[a] [a]");
        let cols = [Some("x"), None, None, Some("y")];
        assert_eq!(snippet(cols, &terms, ("[", "]"), 16), "y");
    }

    #[test]
    fn fts_snippet_cuts_with_ellipses() {
        let body = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 hit w11 w12 w13 w14 w15 w16 w17 w18 w19.";
        let terms = [term("hit", false)];
        let cols = [None, None, None, Some(body)];
        assert_eq!(
            snippet(cols, &terms, ("[", "]"), 6),
            "…w7 w8 w9 [hit] w11 w12…"
        );
        assert_eq!(
            snippet(cols, &terms, ("[", "]"), 30),
            body.replace("hit", "[hit]")
        );
        let tail = [None, None, None, Some("a b c d e hit f.")];
        assert_eq!(snippet(tail, &terms, ("[", "]"), 4), "…d e [hit] f.");
        let none = [None, None, None, Some("  one, two three four")];
        assert_eq!(snippet(none, &terms, ("[", "]"), 2), "  one, two…");
        assert_eq!(snippet([None; 4], &terms, ("[", "]"), 2), "");
    }

    #[test]
    fn fts_snippet_prefers_most_matches() {
        let body = "hit a b c d e f g h i j k hit hit l m n";
        let terms = [term("hit", false)];
        let cols = [None, None, None, Some(body)];
        assert_eq!(snippet(cols, &terms, ("[", "]"), 4), "…k [hit] [hit] l…");
    }
}
