//! A line-oriented reader for the YAML job definitions are written in: block mappings and
//! sequences, plain and quoted one-line scalars, one-line flow collections, literal block
//! scalars, comments.
//!
//! It exists for speed: it builds the [`Node`] tree straight from the bytes, with no token or
//! event queue, several times faster than the event parser. It returns `None` as soon as the
//! text uses anything outside that subset (anchors, aliases, tags, merge keys, multi-line plain,
//! quoted or flow scalars, explicit keys, tabs in indentation, several documents, anything
//! erroneous, …); the caller then loads the text with the event parser, which accepts all of
//! YAML and words every error. So this reader never reports an error, and for every text it
//! accepts it must build exactly the tree the event loader builds, marks included: the tests
//! below check that on every fixture job and on generated text.

use super::{MAX_DEPTH, Mark, Node, Value, implicit_value, map_insert};

/// Loads `text` if it is within the subset, else `None`.
pub(super) fn load(text: &str) -> Option<Node> {
    if !plain_bytes(text.as_bytes()) {
        return None;
    }
    let mut reader = Reader {
        text,
        b: text.as_bytes(),
        pos: 0,
        line: 1,
        depth: 0,
    };
    reader.document()
}

/// Whether the text is free of bytes whose handling differs between YAML versions or needs the
/// full parser: control characters (other than tab and newline), carriage returns, byte order
/// marks, C1 controls and non-characters.
fn plain_bytes(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' | b'\t' | 0x20..=0x7e => {}
            0x7f | 0..=0x1f => return false,
            // U+0080..U+009F (C1 controls, NEL among them).
            0xc2 if matches!(b.get(i + 1), Some(0x80..=0x9f)) => return false,
            // U+FEFF (byte order mark), U+FFFE, U+FFFF, and U+2028/U+2029 (line separators).
            0xef if matches!(
                (b.get(i + 1), b.get(i + 2)),
                (Some(0xbb), Some(0xbf)) | (Some(0xbf), Some(0xbe | 0xbf))
            ) =>
            {
                return false;
            }
            0xe2 if matches!(
                (b.get(i + 1), b.get(i + 2)),
                (Some(0x80), Some(0xa8 | 0xa9))
            ) =>
            {
                return false;
            }
            _ => {}
        }
        i += 1;
    }
    true
}

struct Reader<'a> {
    text: &'a str,
    b: &'a [u8],
    /// Start of the current line.
    pos: usize,
    /// Number of the current line, 1-based.
    line: u32,
    /// Open collections, bounded like the event loader's.
    depth: usize,
}

/// Bytes that may not start a plain scalar (or that this reader leaves to the full parser).
fn plain_start_refused(c: u8, next: Option<u8>) -> bool {
    match c {
        b'-' | b'?' | b':' => matches!(next, None | Some(b' ' | b'\n' | b'\t')) || c != b'-',
        b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\''
        | b'"' | b'%' | b'@' | b'`' | b' ' | b'\t' | b'\n' => true,
        _ => false,
    }
}

/// `<<` (merge) and `=` (value) are special plain scalars the event loader handles.
fn special_plain(s: &str) -> bool {
    s == "<<" || s == "="
}

impl<'a> Reader<'a> {
    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    /// The mark of byte `i` of the current line.
    fn mark(&self, i: usize) -> Mark {
        let prefix = self.b.get(self.pos..i).unwrap_or_default();
        let column = if prefix.is_ascii() {
            prefix.len()
        } else {
            self.text.get(self.pos..i).map_or(0, |s| s.chars().count())
        };
        Mark {
            line: self.line,
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth < MAX_DEPTH).then_some(())
    }

    /// Moves to the start of the line after the one containing `i`.
    fn next_line_after(&mut self, i: usize) {
        let end = self
            .b
            .get(i..)
            .and_then(|rest| rest.iter().position(|c| *c == b'\n'))
            .map_or(self.b.len(), |p| i + p + 1);
        self.pos = end;
        self.line = self.line.saturating_add(1);
    }

    /// Skips blank and comment lines; returns the indentation of the next content line, or
    /// `Some(None)` at the end of the text. `None`: leave this text to the full parser.
    fn next_content(&mut self) -> Option<Option<usize>> {
        let indent = self.skip_blank()?;
        if indent == Some(0) {
            let head = self.b.get(self.pos..self.pos + 3);
            if head == Some(b"---") || head == Some(b"...") {
                return None;
            }
        }
        Some(indent)
    }

    /// [`Self::next_content`] without the check for document markers.
    fn skip_blank(&mut self) -> Option<Option<usize>> {
        loop {
            let mut i = self.pos;
            while self.at(i) == Some(b' ') {
                i += 1;
            }
            match self.at(i) {
                None => {
                    self.pos = self.b.len();
                    return Some(None);
                }
                Some(b'\n') => {
                    self.pos = i + 1;
                    self.line = self.line.saturating_add(1);
                }
                Some(b'#') => self.next_line_after(i),
                Some(b'\t') => return None,
                Some(_) => return Some(Some(i - self.pos)),
            }
        }
    }

    fn document(&mut self) -> Option<Node> {
        // A leading `---` alone on its line (after comments and blank lines) starts the one
        // document.
        let mut i = self.pos;
        if self.skip_blank()?? == 0 && self.b.get(self.pos..self.pos + 3) == Some(b"---") {
            i = self.pos + 3;
        }
        if i > self.pos {
            self.end_of_line(i, true)?;
        }
        let indent = self.next_content()??;
        let node = self.block(indent, -1)?;
        match self.next_content()? {
            None => Some(node),
            Some(_) => None,
        }
    }

    /// Checks that only spaces and a comment follow byte `i` on its line, then moves to the
    /// next line. `spaced`: whether whitespace precedes `i` (a comment needs it).
    fn end_of_line(&mut self, mut i: usize, spaced: bool) -> Option<()> {
        let start = i;
        while self.at(i) == Some(b' ') {
            i += 1;
        }
        match self.at(i) {
            None | Some(b'\n') => {}
            Some(b'#') if spaced || i > start => {}
            Some(_) => return None,
        }
        self.next_line_after(i);
        Some(())
    }

    fn skip_spaces(&self, mut i: usize) -> Option<usize> {
        while self.at(i) == Some(b' ') {
            i += 1;
        }
        match self.at(i) {
            Some(b'\t') => None,
            _ => Some(i),
        }
    }

    /// Whether byte `i` is a `-` sequence entry indicator.
    fn is_dash(&self, i: usize) -> bool {
        self.at(i) == Some(b'-') && matches!(self.at(i + 1), None | Some(b' ' | b'\n'))
    }

    /// Whether the line ends (or a comment starts) at `i`, which follows whitespace.
    fn is_end(&self, i: usize) -> bool {
        matches!(self.at(i), None | Some(b'\n' | b'#'))
    }

    /// The block node whose first line is the current line, indented by `indent`.
    fn block(&mut self, indent: usize, parent: isize) -> Option<Node> {
        self.enter()?;
        let start = self.pos + indent;
        let node = if self.is_dash(start) {
            self.sequence(indent, false)?
        } else if self.key(start)?.is_some() {
            self.mapping(indent)?
        } else {
            self.inline(start, parent)?
        };
        self.depth -= 1;
        Some(node)
    }

    /// The key starting at byte `i` and the byte after its `:`, if the line holds `key:` there.
    fn key(&self, i: usize) -> Option<Option<(Node, usize)>> {
        let c = self.at(i)?;
        let (key, end) = match c {
            b'\'' | b'"' => {
                let (s, end) = self.quoted(i)?;
                (
                    Node {
                        value: Value::Str(s),
                        mark: self.mark(i),
                    },
                    end,
                )
            }
            _ if plain_start_refused(c, self.at(i + 1)) => return Some(None),
            _ => {
                let mut j = i;
                let mut end = i;
                loop {
                    match self.at(j) {
                        None | Some(b'\n') => return Some(None),
                        Some(b':') if matches!(self.at(j + 1), None | Some(b' ' | b'\n')) => {
                            break;
                        }
                        Some(b' ') if self.at(j + 1) == Some(b'#') => return Some(None),
                        Some(b'\t') => return None,
                        Some(b' ') => j += 1,
                        Some(_) => {
                            j += 1;
                            end = j;
                        }
                    }
                }
                let s = self.text.get(i..end)?;
                if special_plain(s) || end - i > 1024 {
                    return None;
                }
                (
                    Node {
                        value: implicit_value(s),
                        mark: self.mark(i),
                    },
                    end,
                )
            }
        };
        let colon = self.skip_spaces(end)?;
        if self.at(colon) == Some(b':') && matches!(self.at(colon + 1), None | Some(b' ' | b'\n')) {
            Some(Some((key, colon + 1)))
        } else if c == b'\'' || c == b'"' {
            Some(None)
        } else {
            None
        }
    }

    /// An empty value, marked where the event parser marks it: at the next token.
    fn null(&self, mark: Mark) -> Node {
        Node {
            value: Value::Null,
            mark,
        }
    }

    fn mapping(&mut self, indent: usize) -> Option<Node> {
        let mark = self.mark(self.pos + indent);
        let mut entries = Vec::new();
        let mut index = None;
        loop {
            let (key, after) = self.key(self.pos + indent)??;
            let v = self.skip_spaces(after)?;
            let value = if self.is_end(v) {
                // An empty value is marked at its `:`.
                let colon = self.null(self.mark(after - 1));
                self.next_line_after(v);
                match self.next_content()? {
                    Some(n) if n > indent => self.block(n, indent as isize)?,
                    Some(n) if n == indent && self.is_dash(self.pos + n) => {
                        self.enter()?;
                        let node = self.sequence(n, true)?;
                        self.depth -= 1;
                        node
                    }
                    _ => colon,
                }
            } else {
                self.inline(v, indent as isize)?
            };
            map_insert(&mut entries, &mut index, key, value).ok()?;
            match self.next_content()? {
                Some(n) if n == indent => {}
                Some(n) if n < indent => break,
                None => break,
                Some(_) => return None,
            }
        }
        Some(Node {
            value: Value::Map(entries),
            mark,
        })
    }

    /// A block sequence whose first `-` is at `indent` on the current line. `indentless`: it
    /// is a mapping value at the key's own indentation, which the event parser marks at its
    /// first item rather than at its first `-`.
    fn sequence(&mut self, indent: usize, indentless: bool) -> Option<Node> {
        let mut mark = self.mark(self.pos + indent);
        let mut items = Vec::new();
        loop {
            let v = self.skip_spaces(self.pos + indent + 1)?;
            let item = if self.is_end(v) {
                // An empty item is marked at the end of its line.
                let eol = self
                    .b
                    .get(v..)
                    .and_then(|rest| rest.iter().position(|c| *c == b'\n'))
                    .map_or(self.b.len(), |p| v + p);
                let dash = self.null(self.mark(eol));
                self.next_line_after(v);
                match self.next_content()? {
                    Some(n) if n > indent => self.block(n, indent as isize)?,
                    _ if indentless && items.is_empty() => return None,
                    _ => dash,
                }
            } else if self.is_dash(v) {
                return None;
            } else if self.key(v)?.is_some() {
                self.enter()?;
                let node = self.mapping(v - self.pos)?;
                self.depth -= 1;
                node
            } else {
                self.inline(v, indent as isize)?
            };
            if indentless && items.is_empty() {
                mark = item.mark;
            }
            items.push(item);
            match self.next_content()? {
                Some(n) if n == indent && self.is_dash(self.pos + n) => {}
                Some(n) if n <= indent => break,
                None => break,
                Some(_) => return None,
            }
        }
        Some(Node {
            value: Value::Seq(items),
            mark,
        })
    }

    /// A value starting at byte `i` of the current line, which it ends (block scalars go on
    /// over the following lines). `parent`: the indentation of the enclosing collection.
    fn inline(&mut self, i: usize, parent: isize) -> Option<Node> {
        let mark = self.mark(i);
        let c = self.at(i)?;
        let value = match c {
            b'|' | b'>' => return self.block_scalar(i, parent),
            b'\'' | b'"' => {
                let (s, end) = self.quoted(i)?;
                self.end_of_line(end, false)?;
                Value::Str(s)
            }
            b'[' | b'{' => {
                let (node, end) = self.flow(i)?;
                self.end_of_line(end, false)?;
                return Some(node);
            }
            _ if plain_start_refused(c, self.at(i + 1)) => return None,
            _ => {
                let mut j = i;
                let mut end = i;
                loop {
                    match self.at(j) {
                        None | Some(b'\n') => break,
                        Some(b':') if matches!(self.at(j + 1), None | Some(b' ' | b'\n')) => {
                            return None;
                        }
                        Some(b' ') if self.at(j + 1) == Some(b'#') => break,
                        Some(b'\t') => return None,
                        Some(b' ') => j += 1,
                        Some(_) => {
                            j += 1;
                            end = j;
                        }
                    }
                }
                let s = self.text.get(i..end)?;
                if special_plain(s) {
                    return None;
                }
                self.next_line_after(j);
                implicit_value(s)
            }
        };
        Some(Node { value, mark })
    }

    /// A quoted scalar on one line starting at byte `i`: its value and the byte after it.
    fn quoted(&self, i: usize) -> Option<(String, usize)> {
        let quote = self.at(i)?;
        let mut out = String::new();
        let mut start = i + 1;
        let mut j = start;
        loop {
            let c = self.at(j)?;
            match c {
                b'\n' => return None,
                b'\'' if quote == b'\'' => {
                    out.push_str(self.text.get(start..j)?);
                    if self.at(j + 1) == Some(b'\'') {
                        out.push('\'');
                        j += 2;
                        start = j;
                    } else {
                        return Some((out, j + 1));
                    }
                }
                b'"' if quote == b'"' => {
                    out.push_str(self.text.get(start..j)?);
                    return Some((out, j + 1));
                }
                b'\\' if quote == b'"' => {
                    out.push_str(self.text.get(start..j)?);
                    let (ch, len) = self.escape(j + 1)?;
                    out.push(ch);
                    j += 1 + len;
                    start = j;
                }
                _ => j += 1,
            }
        }
    }

    /// The character of the escape sequence whose letter is at byte `i`, and its length.
    fn escape(&self, i: usize) -> Option<(char, usize)> {
        let simple = match self.at(i)? {
            b'0' => '\0',
            b'a' => '\u{7}',
            b'b' => '\u{8}',
            b't' | b'\t' => '\t',
            b'n' => '\n',
            b'v' => '\u{b}',
            b'f' => '\u{c}',
            b'r' => '\r',
            b'e' => '\u{1b}',
            b' ' => ' ',
            b'"' => '"',
            b'/' => '/',
            b'\\' => '\\',
            b'N' => '\u{85}',
            b'_' => '\u{a0}',
            b'L' => '\u{2028}',
            b'P' => '\u{2029}',
            b'x' => return self.hex_escape(i, 2),
            b'u' => return self.hex_escape(i, 4),
            b'U' => return self.hex_escape(i, 8),
            _ => return None,
        };
        Some((simple, 1))
    }

    fn hex_escape(&self, i: usize, digits: usize) -> Option<(char, usize)> {
        let hex = self.text.get(i + 1..i + 1 + digits)?;
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let code = u32::from_str_radix(hex, 16).ok()?;
        Some((char::from_u32(code)?, 1 + digits))
    }

    /// A flow collection that ends on the current line, starting at byte `i`.
    fn flow(&mut self, i: usize) -> Option<(Node, usize)> {
        self.enter()?;
        let mark = self.mark(i);
        let close = if self.at(i)? == b'[' { b']' } else { b'}' };
        let mut j = self.skip_spaces(i + 1)?;
        let value = if close == b']' {
            let mut items = Vec::new();
            if self.at(j) != Some(b']') {
                loop {
                    let (item, end) = self.flow_item(j)?;
                    items.push(item);
                    let k = self.skip_spaces(end)?;
                    match self.at(k)? {
                        b',' => {
                            j = self.skip_spaces(k + 1)?;
                            if self.at(j) == Some(b']') {
                                return None;
                            }
                        }
                        b']' => {
                            j = k;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
            Value::Seq(items)
        } else {
            let mut entries = Vec::new();
            let mut index = None;
            if self.at(j) != Some(b'}') {
                loop {
                    let (key, end) = match self.at(j)? {
                        b'[' | b'{' => return None,
                        _ => self.flow_item(j)?,
                    };
                    let k = self.skip_spaces(end)?;
                    if self.at(k) != Some(b':') || self.at(k + 1) != Some(b' ') {
                        return None;
                    }
                    let v = self.skip_spaces(k + 1)?;
                    if matches!(self.at(v)?, b',' | b'}') {
                        return None;
                    }
                    let (value, end) = self.flow_item(v)?;
                    map_insert(&mut entries, &mut index, key, value).ok()?;
                    let k = self.skip_spaces(end)?;
                    match self.at(k)? {
                        b',' => {
                            j = self.skip_spaces(k + 1)?;
                            if self.at(j) == Some(b'}') {
                                return None;
                            }
                        }
                        b'}' => {
                            j = k;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
            Value::Map(entries)
        };
        self.depth -= 1;
        Some((Node { value, mark }, j + 1))
    }

    /// A node inside a flow collection, starting at byte `i`, and the byte after it.
    fn flow_item(&mut self, i: usize) -> Option<(Node, usize)> {
        let c = self.at(i)?;
        match c {
            b'[' | b'{' => self.flow(i),
            b'\'' | b'"' => {
                let (s, end) = self.quoted(i)?;
                Some((
                    Node {
                        value: Value::Str(s),
                        mark: self.mark(i),
                    },
                    end,
                ))
            }
            _ if plain_start_refused(c, self.at(i + 1)) => None,
            _ => {
                let mut j = i;
                let mut end = i;
                loop {
                    match self.at(j)? {
                        b',' | b']' | b'}' => break,
                        b'[' | b'{' | b'\n' | b'\t' => return None,
                        b':' if self.at(j + 1) == Some(b' ') => break,
                        b':' => return None,
                        b' ' if self.at(j + 1) == Some(b'#') => return None,
                        b' ' => j += 1,
                        _ => {
                            j += 1;
                            end = j;
                        }
                    }
                }
                let s = self.text.get(i..end)?;
                if special_plain(s) {
                    return None;
                }
                Some((
                    Node {
                        value: implicit_value(s),
                        mark: self.mark(i),
                    },
                    end,
                ))
            }
        }
    }

    /// A literal (`|`, `|-`) or simple folded (`>`, `>-`) block scalar whose header is at
    /// byte `h`. Keep chomping, indentation indicators, and folded text with blank or
    /// more-indented lines are left to the full parser.
    fn block_scalar(&mut self, h: usize, parent: isize) -> Option<Node> {
        // The event parser marks a block scalar at its first content line.
        let mut mark = self.mark(h);
        let literal = self.at(h)? == b'|';
        let mut i = h + 1;
        let strip = self.at(i) == Some(b'-');
        if strip {
            i += 1;
        }
        if !matches!(self.at(i), None | Some(b' ' | b'\n')) {
            return None;
        }
        self.end_of_line(i, false)?;
        let mut out = String::new();
        let mut indent: Option<usize> = None;
        let mut leading_spaces = 0usize;
        let mut blank_lines = 0usize;
        let mut lines = 0usize;
        loop {
            let start = self.pos;
            let mut j = start;
            while self.at(j) == Some(b' ') {
                j += 1;
            }
            let n = j - start;
            match self.at(j) {
                None if n == 0 => break,
                None => return None,
                Some(b'\n') => {
                    match indent {
                        Some(m) if n > m => return None,
                        Some(_) => {}
                        None => leading_spaces = leading_spaces.max(n),
                    }
                    blank_lines += 1;
                    self.pos = j + 1;
                    self.line = self.line.saturating_add(1);
                    continue;
                }
                Some(_) => {}
            }
            let m = match indent {
                Some(m) => m,
                None => {
                    if (n as isize) <= parent || n == 0 || leading_spaces > n {
                        return None;
                    }
                    indent = Some(n);
                    mark = self.mark(j);
                    n
                }
            };
            if n < m {
                break;
            }
            let end = j + self.b.get(j..)?.iter().position(|c| *c == b'\n')?;
            let body = self.text.get(start + m..end)?;
            if literal {
                for _ in 0..blank_lines {
                    out.push('\n');
                }
                out.push_str(body);
                out.push('\n');
            } else {
                if blank_lines > 0 || n > m || body.starts_with('\t') {
                    return None;
                }
                if lines > 0 {
                    out.push(' ');
                }
                out.push_str(body);
            }
            blank_lines = 0;
            lines += 1;
            self.pos = end + 1;
            self.line = self.line.saturating_add(1);
        }
        if lines == 0 {
            return None;
        }
        match (literal, strip) {
            (true, true) => {
                out.pop();
            }
            (false, false) => out.push('\n'),
            _ => {}
        }
        Some(Node {
            value: Value::Str(out),
            mark,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::load_events;
    use super::*;

    /// The fast reader either declines or builds exactly what the event loader builds.
    fn agrees(text: &str) -> Result<bool, String> {
        match load(text) {
            None => Ok(false),
            Some(fast) => match load_events(text) {
                Ok(full) if full == fast => Ok(true),
                Ok(full) => Err(format!("fast {fast:?}\nfull {full:?}")),
                Err(e) => Err(format!("fast accepted, full refused: {e}")),
            },
        }
    }

    fn check(text: &str, accepted: bool) {
        match agrees(text) {
            Ok(a) => assert_eq!(a, accepted, "accepted? {text:?}"),
            Err(e) => panic!("{text:?}\n{e}"),
        }
    }

    #[test]
    fn agrees_with_the_event_loader() {
        for text in [
            "a: 1\nb: two\n",
            "---\na: 1\n",
            "# c\n--- # c\na: 1\n",
            "a:\n  b: [1, 'x', \"y\\tz\", {c: d, e: [f]}]\n  c: {}\n  d: []\n",
            "a:\n- x\n- y: 1\n  z: 2\n-\n- - no\n",
            "a:\n- x\n- y: 1\n  z: 2\n-\nb: 1\n",
            "a:\nb:\n",
            "a:\n  - 1\n  -\n",
            "a: |\n  line 1\n\n  line 2\n   more\nb: >-\n  folded\n  text\n",
            "a: |-\n  x\n\n\nb: 1\n",
            "a: |\n\n  x\nb: >\n\n  y\n",
            "- |\n  x\n-\n- # c\n-  \n",
            "- a\n- 'it''s'\n- \"\\u00e9\\x41\"\n- -1\n- 0x1F\n- yes\n- ~\n- 2023-01-01\n",
            "a: b # comment\nc: 'd' # comment\ne: f#g\n",
            "name: 'héllo wörld'\nx: {k: 'é', v: 1}\n",
            "a: x: y\n",
            "a: &x 1\n",
            "a: *x\n",
            "a: !!str 1\n",
            "<<: {a: 1}\n",
            "a:\n  b\n  c\n",
            "a: b\n  c\n",
            "a: [1,\n 2]\n",
            "a: 'x\n  y'\n",
            "? a\n: b\n",
            "a: 1\n---\nb: 2\n",
            "a:\tb\n",
            "\ta: b\n",
            "a: 1\na: 2\n",
            "'a': 1\n\"b\" : 2\n",
            "a: {b: }\n",
            "a: [b, ]\n",
            "a: |+\n  x\n",
            "a: |2\n  x\n",
            "a: |\n x\n",
            "a: |\nb: 1\n",
            "a: >\n  x\n\n  y\n",
            "a: 1\r\nb: 2\r\n",
            "",
            "# only a comment\n",
            "plain scalar\n",
            "[1, 2]\n",
            "a: {x: [1, [2, [3]]]}\n",
            "a: -drive format=qcow2,file={rootfs}\n",
            "a: http://example.org:8080/x\n",
            "a: {url: http://x}\n",
            "a: 1\nb:\n  - c: 1\n    d:\n    - e\n  - f\n",
        ] {
            if let Err(e) = agrees(text) {
                panic!("{text:?}\n{e}");
            }
        }
        check("a: 1\nb: two\n", true);
        check("# c\n--- # c\na: 1\n", true);
        check("---\na: 1\n---\n", false);
        check("a: &x 1\n", false);
        check("a: |\n  line 1\n\n  line 2\n", true);
    }

    #[test]
    fn agrees_on_every_fixture_job() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jobs");
        let mut seen = 0;
        let mut accepted = 0;
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                seen += 1;
                match agrees(&text) {
                    Ok(true) => accepted += 1,
                    Ok(false) => {}
                    Err(e) => panic!("{}\n{e}", path.display()),
                }
            }
        }
        assert!(seen > 10, "fixtures not found");
        // Most real jobs are within the subset; if this drops, the fast path stopped helping.
        assert!(
            accepted * 2 > seen,
            "{accepted} of {seen} fixtures accepted"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn agrees_on_yamlish_text(text in "([a-c]{1,3}|[0-9]|-|: |:|, |\\[|\\]|\\{|\\}|'|\"|#| |\n|  |\\||>|~|\t|é|\\\\){0,40}") {
            if let Err(e) = agrees(&text) {
                prop_assert!(false, "{:?}\n{}", text, e);
            }
        }

        #[test]
        fn agrees_on_structured_text(
            lines in proptest::collection::vec(
                ("( {0,4})", "(- |)", "([a-c]{1,2}: |[a-c]{1,2}:|)", "([a-z0-9 ]{0,6}|'[a-z ]{0,3}'|\\[[a-z, ]{0,6}\\]|\\{[a-z]: [a-z0-9]\\}|\\||>-|# x|)"),
                0..12,
            )
        ) {
            let text: String = lines
                .iter()
                .map(|(i, d, k, v)| format!("{i}{d}{k}{v}\n"))
                .collect();
            if let Err(e) = agrees(&text) {
                prop_assert!(false, "{:?}\n{}", text, e);
            }
        }
    }
}
