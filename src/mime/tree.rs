//! The parts of a message and their IMAP section numbers (RFC 3501
//! `BODY[section]`): `1` is the body of a message that is not multipart,
//! `2` the second part of a multipart one, `2.1` the first part inside
//! that. A part's bytes are its body exactly as the server returns it for
//! `BODY[section]`: from the end of its header to the line break before
//! the next boundary line (that line break belongs to the boundary).
//!
//! The boundaries are found as an IMAP server finds them, so the numbers are
//! the server's (checked against Dovecot's `BODYSTRUCTURE` and `BINARY[]`
//! in the tests): a boundary line starts with `--` and the boundary at the
//! start of a line (anything may follow it: Dovecot is that lenient), the
//! innermost open multipart's boundary is tried first, and a boundary of
//! an enclosing multipart ends every multipart inside it, closed or not.
//! An attached `message/rfc822` is followed inside too (its multiparts'
//! boundaries are in play until it ends) but its parts are not listed: it
//! is one part. A multipart whose boundary never comes has no parts (its
//! preamble is all there is), like one without a boundary parameter.
//!
//! One pass over the lines, with a stack of the open multiparts: no
//! recursion, so any nesting is safe. Limits, so hostile input costs
//! little: a multipart nested deeper than [`MAX_DEPTH`] is read as one
//! opaque part, and after [`MAX_PARTS`] parts the rest of the message
//! belongs to the part then open.

use super::header::Fields;
use crate::message::header_end;
use std::ops::Range;

/// Multiparts nested deeper than this are one opaque part (Python's `email`
/// and Dovecot both give up somewhere; 500 levels are still read whole).
pub const MAX_DEPTH: usize = 1000;

/// Parts of a message (its attached messages' parts included) beyond which
/// no boundary is looked for.
pub const MAX_PARTS: usize = 10_000;

/// A part of the message itself (not one inside an attached message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The IMAP section: `[2, 1]` is `2.1`. Empty for the message itself
    /// when it is multipart (it has no number of its own).
    pub section: Vec<u32>,
    /// The body's bytes (still transfer-encoded) in the raw message.
    pub body: Range<usize>,
    pub fields: Fields,
    /// The type this part has, defaults applied (`text/plain`, or
    /// `message/rfc822` inside a `multipart/digest`).
    pub content_type: String,
    /// How the part was read.
    pub shape: Shape,
}

/// How a part was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A leaf: its body is its content.
    Leaf,
    /// A multipart read as one: nested deeper than [`MAX_DEPTH`].
    Opaque,
    /// A multipart and its parts (indexes into the part list, in order).
    /// Empty when no boundary line came (or it had no boundary at all).
    Multipart(Vec<usize>),
}

impl Part {
    /// The section as IMAP writes it: `2.1` (`1` for a message's only body).
    pub fn section_text(&self) -> String {
        let parts: Vec<String> = self.section.iter().map(u32::to_string).collect();
        parts.join(".")
    }
}

/// An open multipart while the lines are read.
struct Frame {
    boundary: Vec<u8>,
    /// Its index in the part list; None inside an attached message.
    part: Option<usize>,
    section: Vec<u32>,
    depth: usize,
    children: u32,
    digest: bool,
}

/// The parts of `raw`, the message itself first, each multipart before its
/// parts (document order).
pub fn parts(raw: &[u8]) -> Vec<Part> {
    Walker {
        raw,
        parts: Vec::new(),
        stack: Vec::new(),
        open_leaf: None,
        seen: 0,
    }
    .walk()
}

struct Walker<'a> {
    raw: &'a [u8],
    parts: Vec<Part>,
    stack: Vec<Frame>,
    /// The listed leaf whose body is open: (index, how many frames enclose it).
    open_leaf: Option<(usize, usize)>,
    /// Parts seen, those of attached messages included.
    seen: usize,
}

/// Where a part's header ended.
enum HeaderEnd {
    /// At an empty line; the body starts here.
    Body(usize),
    /// At a boundary line (which starts here): the body is empty.
    Boundary(usize),
}

impl Walker<'_> {
    fn walk(mut self) -> Vec<Part> {
        let raw = self.raw;
        let (header_stop, body_start) = header_end(raw);
        let fields = Fields::parse(&raw[..header_stop]);
        self.start_part(fields, Vec::new(), body_start, 0, false, true);
        let mut pos = body_start;
        // Only boundaries of the message's own multiparts can end a listed
        // part: inside an attached message at the top there is nothing to find.
        while pos < raw.len()
            && self.stack.first().is_some_and(|f| f.part.is_some())
            && self.seen <= MAX_PARTS
        {
            match self.boundary_at(pos) {
                Some(level) => pos = self.delimiter(level, pos, line_end(raw, pos)),
                // Only a line starting with "--" can be a boundary: straight
                // to the next one (a base64 body is skipped at memchr speed).
                None => match memchr::memmem::find(&raw[pos..], b"\n--") {
                    Some(k) => pos += k + 1,
                    None => break,
                },
            }
        }
        self.finish(raw.len());
        self.parts
    }

    /// The innermost open multipart whose boundary line starts at `pos`.
    fn boundary_at(&self, pos: usize) -> Option<usize> {
        let line = self.raw[pos..].strip_prefix(b"--")?;
        self.stack
            .iter()
            .rposition(|f| !f.boundary.is_empty() && line.starts_with(&f.boundary))
    }

    /// A boundary line of the multipart at stack `level` starts at `pos`.
    /// Returns where reading goes on.
    fn delimiter(&mut self, level: usize, pos: usize, line_end: usize) -> usize {
        let end = content_end(self.raw, pos);
        if let Some((leaf, depth)) = self.open_leaf {
            if level < depth {
                self.parts[leaf].body.end = end.max(self.parts[leaf].body.start);
                self.open_leaf = None;
            }
        }
        while self.stack.len() > level + 1 {
            self.close_top(end);
        }
        let after = &self.raw[pos + 2 + self.stack[level].boundary.len()..];
        if after.starts_with(b"--") {
            // The close delimiter: what follows is the epilogue.
            self.close_top(end);
            return line_end;
        }
        let frame = &mut self.stack[level];
        frame.children = frame.children.saturating_add(1);
        let mut section = frame.section.clone();
        section.push(frame.children);
        let (listed, digest) = (frame.part.is_some(), frame.digest);
        let child_depth = frame.depth + 1;
        self.child(line_end, section, child_depth, digest, listed)
    }

    /// Reads the part whose header starts at `start`; returns where reading goes on.
    fn child(
        &mut self,
        start: usize,
        section: Vec<u32>,
        depth: usize,
        digest: bool,
        listed: bool,
    ) -> usize {
        match self.header(start) {
            HeaderEnd::Body(body) => {
                let fields = Fields::parse(&self.raw[start..body]);
                self.start_part(fields, section, body, depth, digest, listed);
                body
            }
            HeaderEnd::Boundary(at) => {
                let fields = Fields::parse(&self.raw[start..at]);
                self.start_part(fields, section, at, depth, digest, listed);
                at
            }
        }
    }

    /// Where the header that starts at `start` ends: at the first empty
    /// line, or at a boundary line of an open multipart.
    fn header(&self, start: usize) -> HeaderEnd {
        let raw = self.raw;
        let mut pos = start;
        while pos < raw.len() {
            if raw[pos..].starts_with(b"\r\n") {
                return HeaderEnd::Body(pos + 2);
            }
            if raw[pos] == b'\n' {
                return HeaderEnd::Body(pos + 1);
            }
            if self.boundary_at(pos).is_some() {
                return HeaderEnd::Boundary(pos);
            }
            pos = line_end(raw, pos);
        }
        HeaderEnd::Body(raw.len())
    }

    /// A part begins: its body starts at `body`. Lists it when `listed`;
    /// opens a frame for a multipart; follows an attached message inside.
    fn start_part(
        &mut self,
        fields: Fields,
        section: Vec<u32>,
        body: usize,
        depth: usize,
        digest: bool,
        listed: bool,
    ) {
        self.seen += 1;
        let content_type = fields.content_type.clone().unwrap_or_else(|| {
            if digest {
                "message/rfc822"
            } else {
                "text/plain"
            }
            .to_string()
        });
        let shape = shape_of(&content_type, depth);
        let boundary = fields.boundary.clone().filter(|b| !b.is_empty());
        let follow = follows(&content_type, &fields, depth);
        let index = listed.then(|| {
            let parent = self.stack.iter().rev().find_map(|f| f.part);
            let index = self.parts.len();
            self.parts.push(Part {
                section: section.clone(),
                body: body..self.raw.len(),
                fields,
                content_type: content_type.clone(),
                shape: shape.clone(),
            });
            if let Some(parent) = parent {
                if let Shape::Multipart(children) = &mut self.parts[parent].shape {
                    children.push(index);
                }
            }
            index
        });
        match (&shape, boundary) {
            (Shape::Multipart(_), Some(boundary)) => self.stack.push(Frame {
                boundary,
                part: index,
                section,
                depth,
                children: 0,
                digest: content_type == "multipart/digest",
            }),
            _ => {
                // A leaf, or a multipart that has nothing to split it: its
                // body runs to the next boundary of an enclosing multipart.
                if let Some(index) = index {
                    self.open_leaf = Some((index, self.stack.len()));
                }
                if follow {
                    self.follow_message(body, depth + 1);
                }
            }
        }
    }

    /// Reads into the attached message whose header starts at `at`, so that
    /// its multiparts' boundaries are in play until it ends (its parts are
    /// not listed). A message inside a message is followed in a loop.
    fn follow_message(&mut self, mut at: usize, mut depth: usize) {
        while let HeaderEnd::Body(body) = self.header(at) {
            self.seen += 1;
            let fields = Fields::parse(&self.raw[at..body]);
            let content_type = fields.content_type.clone().unwrap_or_default();
            match (shape_of(&content_type, depth), &fields.boundary) {
                (Shape::Multipart(_), Some(boundary)) if !boundary.is_empty() => {
                    self.stack.push(Frame {
                        boundary: boundary.clone(),
                        part: None,
                        section: Vec::new(),
                        depth,
                        children: 0,
                        digest: content_type == "multipart/digest",
                    });
                    return;
                }
                _ if follows(&content_type, &fields, depth) => {
                    (at, depth) = (body, depth + 1);
                }
                _ => return,
            }
        }
    }

    /// Pops the innermost open multipart, its body ending at `end`.
    fn close_top(&mut self, end: usize) {
        if let Some(frame) = self.stack.pop() {
            if let Some(i) = frame.part {
                self.parts[i].body.end = end.max(self.parts[i].body.start);
            }
        }
    }

    /// The end of the message: whatever is open ends there.
    fn finish(&mut self, end: usize) {
        if let Some((leaf, _)) = self.open_leaf.take() {
            self.parts[leaf].body.end = end.max(self.parts[leaf].body.start);
        }
        while !self.stack.is_empty() {
            self.close_top(end);
        }
    }
}

/// How a part of `content_type` at `depth` is read.
fn shape_of(content_type: &str, depth: usize) -> Shape {
    if !content_type.starts_with("multipart/") {
        Shape::Leaf
    } else if depth >= MAX_DEPTH {
        Shape::Opaque
    } else {
        Shape::Multipart(Vec::new())
    }
}

/// Whether an attached message is read into: `message/rfc822` as it is
/// (an encoded one is opaque until decoded), and not too deep.
fn follows(content_type: &str, fields: &Fields, depth: usize) -> bool {
    content_type == "message/rfc822"
        && fields.encoding == super::decode::Encoding::Identity
        && !fields.encoding_unknown
        && depth < MAX_DEPTH
}

/// Where the line starting at `pos` ends (after its line feed).
fn line_end(raw: &[u8], pos: usize) -> usize {
    memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |p| pos + p + 1)
}

/// The end of the content before a boundary line starting at `pos`: the
/// line break before it belongs to the boundary.
fn content_end(raw: &[u8], pos: usize) -> usize {
    if pos >= 2 && &raw[pos - 2..pos] == b"\r\n" {
        pos - 2
    } else if pos >= 1 && raw[pos - 1] == b'\n' {
        pos - 1
    } else {
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (section, content type, body) of every listed part, multiparts' bodies as `*`.
    fn shape(raw: &[u8]) -> Vec<(String, String, String)> {
        parts(raw)
            .iter()
            .map(|p| {
                let body = match p.shape {
                    Shape::Multipart(_) => "*".to_string(),
                    _ => String::from_utf8_lossy(&raw[p.body.clone()]).into_owned(),
                };
                (p.section_text(), p.content_type.clone(), body)
            })
            .collect()
    }

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    fn row(section: &str, ctype: &str, body: &str) -> (String, String, String) {
        (section.to_string(), ctype.to_string(), body.to_string())
    }

    #[test]
    fn single_part_is_section_one() {
        let raw = crlf("Subject: x\nContent-Type: application/pdf\n\n%PDF\n");
        assert_eq!(shape(&raw), vec![row("", "application/pdf", "%PDF\r\n")]);
        // The message itself has no number; its body is `1` (see mime::section_of).
    }

    #[test]
    fn sections_table() {
        type Case = (&'static str, &'static str, Vec<(String, String, String)>);
        let cases: Vec<Case> = vec![
            (
                "mixed_with_nested_alternative",
                "Content-Type: multipart/mixed; boundary=out\n\npreamble\n--out\n\
                 Content-Type: multipart/alternative; boundary=in\n\n--in\n\
                 Content-Type: text/plain\n\nplain\n--in\nContent-Type: text/html\n\n<b>x</b>\n\
                 --in--\n--out\nContent-Type: image/png\n\npng\n--out--\nepilogue\n",
                vec![
                    row("", "multipart/mixed", "*"),
                    row("1", "multipart/alternative", "*"),
                    row("1.1", "text/plain", "plain"),
                    row("1.2", "text/html", "<b>x</b>"),
                    row("2", "image/png", "png"),
                ],
            ),
            (
                "inner_close_missing_outer_boundary_ends_it",
                "Content-Type: multipart/mixed; boundary=out\n\n--out\n\
                 Content-Type: multipart/alternative; boundary=in\n\n--in\n\nplain\n\
                 --out\nContent-Type: image/png\n\npng\n--out--\n",
                vec![
                    row("", "multipart/mixed", "*"),
                    row("1", "multipart/alternative", "*"),
                    row("1.1", "text/plain", "plain"),
                    row("2", "image/png", "png"),
                ],
            ),
            (
                "boundary_only_at_line_start_prefix_matches",
                "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nsee x--b inline\n\
                 --b junk after\nContent-Type: image/png\n\nimg\n--bc\nContent-Type: image/gif\n\ngif\n--b--\n",
                vec![
                    row("", "multipart/mixed", "*"),
                    row("1", "text/plain", "see x--b inline"),
                    row("2", "image/png", "img"),
                    row("3", "image/gif", "gif"),
                ],
            ),
            (
                "no_close_delimiter_runs_to_the_end",
                "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: image/png\n\npng\n",
                vec![row("", "multipart/mixed", "*"), row("1", "image/png", "png\r\n")],
            ),
            (
                "boundary_never_comes",
                "Content-Type: multipart/mixed; boundary=zz\n\nhello\n--yy\n\nx\n",
                vec![row("", "multipart/mixed", "*")],
            ),
            (
                "no_boundary_parameter",
                "Content-Type: multipart/mixed\n\nhello\n",
                vec![row("", "multipart/mixed", "*")],
            ),
            (
                "header_ended_by_boundary_and_empty_bodies",
                "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: image/png\n--b\n\n--b\n\
                 hello no header\n--b--\n",
                vec![
                    row("", "multipart/mixed", "*"),
                    row("1", "image/png", ""),
                    row("2", "text/plain", ""),
                    row("3", "text/plain", ""),
                ],
            ),
            (
                "attached_message_is_one_part_its_boundaries_count",
                "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nbody\n--b\n\
                 Content-Type: message/rfc822\n\nSubject: in\nContent-Type: multipart/mixed; boundary=bi\n\n\
                 --bi\n\ninner\n--bi--\n--b\nContent-Type: image/png\n\npng\n--b--\n",
                vec![
                    row("", "multipart/mixed", "*"),
                    row("1", "text/plain", "body"),
                    row(
                        "2",
                        "message/rfc822",
                        "Subject: in\r\nContent-Type: multipart/mixed; boundary=bi\r\n\r\n--bi\r\n\r\ninner\r\n--bi--",
                    ),
                    row("3", "image/png", "png"),
                ],
            ),
            (
                "digest_parts_default_to_messages",
                "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: a\n\nA\n--d\n\
                 Content-Type: text/plain\n\nnote\n--d--\n",
                vec![
                    row("", "multipart/digest", "*"),
                    row("1", "message/rfc822", "Subject: a\r\n\r\nA"),
                    row("2", "text/plain", "note"),
                ],
            ),
            (
                "lf_only",
                "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n",
                vec![row("", "multipart/mixed", "*"), row("1", "text/plain", "x")],
            ),
            (
                "empty_multipart",
                "Content-Type: multipart/mixed; boundary=b\n\n--b--\n",
                vec![row("", "multipart/mixed", "*")],
            ),
        ];
        for (case, text, want) in cases {
            let raw = if case == "lf_only" {
                text.as_bytes().to_vec()
            } else {
                crlf(text)
            };
            assert_eq!(shape(&raw), want, "{case}");
        }
    }

    #[test]
    fn deep_nesting_is_read_without_recursion() {
        let n = 500;
        let mut raw = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n".to_vec();
        for i in 1..n {
            raw.extend(
                format!(
                    "--b{}\r\nContent-Type: multipart/mixed; boundary=b{i}\r\n\r\n",
                    i - 1
                )
                .bytes(),
            );
        }
        raw.extend(
            format!(
                "--b{}\r\nContent-Type: application/pdf\r\n\r\nPDF\r\n",
                n - 1
            )
            .bytes(),
        );
        for i in (0..n).rev() {
            raw.extend(format!("--b{i}--\r\n").bytes());
        }
        let all = parts(&raw);
        let pdf = all.last().expect("parts");
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!(pdf.section, vec![1; n]);
        assert_eq!(&raw[pdf.body.clone()], b"PDF");

        // Deeper than MAX_DEPTH: the innermost multiparts are one opaque
        // part. (Boundaries end in `x`: `b100` would be a prefix of `b1000`.)
        let n = MAX_DEPTH + 5;
        let mut raw = b"Content-Type: multipart/mixed; boundary=b0x\r\n\r\n".to_vec();
        for i in 1..n {
            raw.extend(
                format!(
                    "--b{}x\r\nContent-Type: multipart/mixed; boundary=b{i}x\r\n\r\n",
                    i - 1
                )
                .bytes(),
            );
        }
        let all = parts(&raw);
        let last = all.last().expect("parts");
        assert_eq!(last.shape, Shape::Opaque);
        assert_eq!(last.section.len(), MAX_DEPTH);
    }

    #[test]
    fn too_many_parts_stop_the_boundaries() {
        let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..MAX_PARTS + 50 {
            raw.extend_from_slice(b"--b\r\n\r\nx\r\n");
        }
        let all = parts(&raw);
        assert!(all.len() <= MAX_PARTS + 1, "{}", all.len());
        assert_eq!(all.last().map(|p| p.body.end), Some(raw.len()));
    }

    #[test]
    fn any_prefix_of_a_message_parses() {
        let raw = crlf(
            "Content-Type: multipart/mixed; boundary=out\n\n--out\n\
             Content-Type: message/rfc822\n\nContent-Type: multipart/alternative; boundary=in\n\n--in\n\
             \nplain\n--in--\n--out\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\naGk=\n--out--\n",
        );
        for end in 0..=raw.len() {
            for p in parts(&raw[..end]) {
                assert!(
                    p.body.start <= p.body.end && p.body.end <= end,
                    "{end}: {p:?}"
                );
            }
        }
    }
}
