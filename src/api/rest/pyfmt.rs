//! The text formats of the results exports that come from Python libraries rather than
//! from Python's own `str()`/`repr()` (those are in [`crate::pyfmt`]): Python's `csv`
//! quoting, and PyYAML 6's default block-style dump (`yaml.dump(data)`: keys sorted,
//! 80-column folding of plain and single-quoted scalars, YAML 1.1 implicit types quoted).
//!
//! Only the shapes the exports produce are covered: mappings with string keys, sequences,
//! strings, numbers, booleans and null.

use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;
use serde_norway::Value;

use crate::pyfmt::py_float;

/// Appends one CSV field as Python's `csv` module writes it: `all` = `QUOTE_ALL`, else
/// `QUOTE_MINIMAL` (quoted when it holds `,`, `"`, CR or LF).
pub fn csv_field(field: &str, all: bool, out: &mut String) {
    if all || field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        for ch in field.chars() {
            if ch == '"' {
                out.push('"');
            }
            out.push(ch);
        }
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Appends a CSV row terminated by `\r\n` (Python's default line terminator).
pub fn csv_row<'a>(fields: impl IntoIterator<Item = &'a str>, all: bool, out: &mut String) {
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(field, all, out);
    }
    out.push_str("\r\n");
}

/// PyYAML's best width.
const WIDTH: usize = 80;

/// Strings PyYAML's YAML 1.1 resolver would load as something else (so they get quoted).
static IMPLICIT: LazyLock<Regex> = LazyLock::new(|| {
    let patterns = [
        // bool
        r"yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF",
        // float
        r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        // int
        r"[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
        // merge, null, value
        r"<<|~|null|Null|NULL|=",
        // timestamp
        r"[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?",
    ];
    let all = patterns.join("|");
    Regex::new(&format!("^(?:{all})$")).expect("the YAML 1.1 resolver patterns are valid")
});

/// How PyYAML would write a string scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
}

fn is_break(ch: char) -> bool {
    matches!(ch, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_ws(ch: Option<char>) -> bool {
    matches!(ch, None | Some('\0' | ' ' | '\t' | '\r')) || ch.is_some_and(is_break)
}

/// PyYAML's `analyze_scalar` + `choose_scalar_style` for a block-context scalar.
fn style(s: &str, simple_key: bool) -> Style {
    if s.is_empty() || IMPLICIT.is_match(s) {
        return Style::Single;
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let mut preceded_by_ws = true;
    let last = chars.len() - 1;
    for (i, &ch) in chars.iter().enumerate() {
        let followed_by_ws = is_ws(chars.get(i + 1).copied());
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(ch) {
                block_indicators = true;
            }
            if (ch == '?' || ch == ':' || ch == '-') && followed_by_ws {
                block_indicators = true;
            }
        } else if (ch == ':' && followed_by_ws) || (ch == '#' && preceded_by_ws) {
            block_indicators = true;
        }
        if is_break(ch) {
            line_breaks = true;
        }
        if !(ch == '\n' || (' '..='~').contains(&ch)) {
            special = true;
        }
        if ch == ' ' {
            leading_space |= i == 0;
            trailing_space |= i == last;
            break_space |= prev_break;
            prev_space = true;
            prev_break = false;
        } else if is_break(ch) {
            leading_break |= i == 0;
            trailing_break |= i == last;
            space_break |= prev_space;
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_by_ws = is_ws(Some(ch));
    }
    let mut plain = !block_indicators;
    let mut single = true;
    if leading_space || leading_break || trailing_space || trailing_break {
        plain = false;
    }
    if break_space {
        plain = false;
        single = false;
    }
    if space_break || special {
        plain = false;
        single = false;
    }
    if line_breaks {
        plain = false;
    }
    let multiline = line_breaks;
    if plain && !(simple_key && multiline) {
        Style::Plain
    } else if single && !(simple_key && multiline) {
        Style::Single
    } else {
        Style::Double
    }
}

/// A PyYAML-style block emitter writing into a string.
struct Emitter<'a> {
    out: &'a mut String,
    column: usize,
}

impl Emitter<'_> {
    fn write(&mut self, s: &str) {
        self.out.push_str(s);
        self.column += s.chars().count();
    }

    fn newline_indent(&mut self, indent: usize) {
        self.out.push('\n');
        for _ in 0..indent {
            self.out.push(' ');
        }
        self.column = indent;
    }

    /// Writes a scalar string after a separating space has been written; `indent` is the
    /// continuation indent.
    fn scalar(&mut self, s: &str, indent: usize, simple_key: bool) {
        match style(s, simple_key) {
            Style::Plain => self.plain(s, indent, !simple_key),
            Style::Single => self.single(s, indent, !simple_key),
            Style::Double => self.double(s),
        }
    }

    fn plain(&mut self, s: &str, indent: usize, split: bool) {
        let chars: Vec<char> = s.chars().collect();
        let (mut start, mut end) = (0usize, 0usize);
        let mut spaces = false;
        while end <= chars.len() {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end && self.column > WIDTH && split {
                        self.newline_indent(indent);
                    } else {
                        let data: String = chars[start..end].iter().collect();
                        self.write(&data);
                    }
                    start = end;
                }
            } else if ch.is_none() || ch == Some(' ') {
                let data: String = chars[start..end].iter().collect();
                self.write(&data);
                start = end;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
            }
            end += 1;
        }
    }

    fn single(&mut self, s: &str, indent: usize, split: bool) {
        self.write("'");
        let chars: Vec<char> = s.chars().collect();
        let (mut start, mut end) = (0usize, 0usize);
        let (mut spaces, mut breaks) = (false, false);
        while end <= chars.len() {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end
                        && self.column > WIDTH
                        && split
                        && start != 0
                        && end != chars.len()
                    {
                        self.newline_indent(indent);
                    } else {
                        let data: String = chars[start..end].iter().collect();
                        self.write(&data);
                    }
                    start = end;
                }
            } else if breaks {
                if !ch.is_some_and(is_break) {
                    if chars[start] == '\n' {
                        self.out.push('\n');
                    }
                    for _ in start..end {
                        self.out.push('\n');
                    }
                    self.newline_indent_no_break(indent);
                    start = end;
                }
            } else if (ch.is_none()
                || ch == Some(' ')
                || ch == Some('\'')
                || ch.is_some_and(is_break))
                && start < end
            {
                let data: String = chars[start..end].iter().collect();
                self.write(&data);
                start = end;
            }
            if ch == Some('\'') {
                self.write("''");
                start = end + 1;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
                breaks = is_break(c);
            }
            end += 1;
        }
        self.write("'");
    }

    /// Indents after line breaks were already written.
    fn newline_indent_no_break(&mut self, indent: usize) {
        for _ in 0..indent {
            self.out.push(' ');
        }
        self.column = indent;
    }

    fn double(&mut self, s: &str) {
        let mut text = String::from("\"");
        for ch in s.chars() {
            match ch {
                '"' => text.push_str("\\\""),
                '\\' => text.push_str("\\\\"),
                '\0' => text.push_str("\\0"),
                '\x07' => text.push_str("\\a"),
                '\x08' => text.push_str("\\b"),
                '\t' => text.push_str("\\t"),
                '\n' => text.push_str("\\n"),
                '\x0b' => text.push_str("\\v"),
                '\x0c' => text.push_str("\\f"),
                '\r' => text.push_str("\\r"),
                '\x1b' => text.push_str("\\e"),
                '\u{85}' => text.push_str("\\N"),
                '\u{a0}' => text.push_str("\\_"),
                '\u{2028}' => text.push_str("\\L"),
                '\u{2029}' => text.push_str("\\P"),
                c if (' '..='~').contains(&c) => text.push(c),
                c if (c as u32) <= 0xff => {
                    let _ = write!(text, "\\x{:02X}", c as u32);
                }
                c if (c as u32) <= 0xffff => {
                    let _ = write!(text, "\\u{:04X}", c as u32);
                }
                c => {
                    let _ = write!(text, "\\U{:08X}", c as u32);
                }
            }
        }
        text.push('"');
        self.write(&text);
    }

    /// A non-string scalar as PyYAML represents it.
    fn other_scalar(&mut self, value: &Value) {
        let text = match value {
            Value::Null => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i.to_string(),
                (None, Some(u), _) => u.to_string(),
                (None, None, Some(f)) => {
                    if f.is_nan() {
                        ".nan".into()
                    } else if f.is_infinite() {
                        if f > 0.0 {
                            ".inf".into()
                        } else {
                            "-.inf".into()
                        }
                    } else {
                        let r = py_float(f).to_lowercase();
                        if !r.contains('.') && r.contains('e') {
                            r.replacen('e', ".0e", 1)
                        } else {
                            r
                        }
                    }
                }
                _ => "null".into(),
            },
            _ => String::new(),
        };
        self.write(&text);
    }

    /// Writes `value` as a block node whose first line continues the current line
    /// (after `key:` or `- `). `indent` is the indentation of the enclosing collection.
    fn node(&mut self, value: &Value, indent: usize, in_mapping: bool) {
        match value {
            Value::Tagged(tagged) => self.node(&tagged.value, indent, in_mapping),
            Value::String(s) => {
                self.write(" ");
                self.scalar(s, indent + 2, false);
            }
            Value::Mapping(map) if map.is_empty() => self.write(" {}"),
            Value::Sequence(seq) if seq.is_empty() => self.write(" []"),
            Value::Mapping(map) => {
                let child = indent + 2;
                if in_mapping {
                    self.newline_indent(child);
                } else {
                    self.write(" ");
                }
                self.mapping_body(map, child);
            }
            Value::Sequence(seq) => {
                // PyYAML writes a sequence inside a mapping without extra indentation.
                let child = if in_mapping { indent } else { indent + 2 };
                if in_mapping {
                    self.newline_indent(child);
                } else {
                    self.write(" ");
                }
                self.sequence_body(seq, child);
            }
            other => {
                self.write(" ");
                self.other_scalar(other);
            }
        }
    }

    fn key_text(key: &Value) -> String {
        match key {
            Value::String(s) => s.clone(),
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        }
    }

    /// Entries of a mapping, the first at the current position, the rest at `indent`.
    fn mapping_body(&mut self, map: &serde_norway::Mapping, indent: usize) {
        let mut entries: Vec<(&Value, &Value)> = map.iter().collect();
        entries.sort_by_key(|(k, _)| Self::key_text(k));
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if i > 0 {
                self.newline_indent(indent);
            }
            match k {
                Value::String(s) => self.scalar(s, indent + 2, true),
                other => self.other_scalar(other),
            }
            self.write(":");
            self.node(v, indent, true);
        }
    }

    /// Items of a sequence, the first at the current position, the rest at `indent`.
    fn sequence_body(&mut self, seq: &[Value], indent: usize) {
        for (i, item) in seq.iter().enumerate() {
            if i > 0 {
                self.newline_indent(indent);
            }
            self.write("-");
            self.node(item, indent, false);
        }
    }
}

/// `yaml.dump(value)` as PyYAML 6 writes it with its defaults, newline-terminated.
pub fn yaml_dump(value: &Value, out: &mut String) {
    let mut emitter = Emitter { out, column: 0 };
    match value {
        Value::Mapping(map) if !map.is_empty() => emitter.mapping_body(map, 0),
        Value::Sequence(seq) if !seq.is_empty() => emitter.sequence_body(seq, 0),
        Value::Mapping(_) => emitter.write("{}"),
        Value::Sequence(_) => emitter.write("[]"),
        Value::String(s) => emitter.scalar(s, 2, false),
        other => emitter.other_scalar(other),
    }
    emitter.out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(yaml: &str) -> String {
        let value: Value = serde_norway::from_str(yaml).unwrap();
        let mut out = String::new();
        yaml_dump(&value, &mut out);
        out
    }

    #[test]
    fn scalars_quote_like_pyyaml() {
        let cases = [
            ("'311'", "'311'\n"),
            ("'yes'", "'yes'\n"),
            ("'None'", "None\n"),
            ("''", "''\n"),
            ("'1.4.3.1'", "1.4.3.1\n"),
            (
                "'2023-01-10 10:00:00.123456+00:00'",
                "'2023-01-10 10:00:00.123456+00:00'\n",
            ),
            ("'a: b'", "'a: b'\n"),
            ("'a #b'", "'a #b'\n"),
            ("'-x'", "-x\n"),
            ("'- x'", "'- x'\n"),
            ("' lead'", "' lead'\n"),
            ("\"it's\"", "it's\n"),
            ("\"'q\"", "'''q'\n"),
            ("\"tab\\there\"", "\"tab\\there\"\n"),
            ("\"caf\\u00e9\"", "\"caf\\xE9\"\n"),
            ("'/results/testcase/311'", "/results/testcase/311\n"),
        ];
        for (input, want) in cases {
            assert_eq!(dump(input), want, "{input}");
        }
    }

    /// Outputs of PyYAML 6.0.3 `yaml.dump([{'k': s}], Dumper=CDumper)` (LAVA's dumper).
    #[test]
    fn matches_recorded_pyyaml_output() {
        let cases: Vec<(String, String)> =
            serde_json::from_str(include_str!("pyyaml_cases.json")).unwrap();
        for (input, want) in cases {
            let mut map = serde_norway::Mapping::new();
            map.insert("k".into(), Value::String(input.clone()));
            let mut out = String::new();
            yaml_dump(&Value::Sequence(vec![Value::Mapping(map)]), &mut out);
            assert_eq!(out, want, "{input:?}");
        }
    }

    #[test]
    fn nested_block_style() {
        let got = dump("- b: '1'\n  a: {z: [1, x], y: 1.5, e: {}, n: null, t: true}\n");
        assert_eq!(
            got,
            "- a:\n    e: {}\n    n: null\n    t: true\n    y: 1.5\n    z:\n    - 1\n    - x\n  b: '1'\n"
        );
    }

    #[test]
    fn long_plain_scalars_fold() {
        let words = vec!["word"; 30].join(" ");
        let got = dump(&format!("- k: {words}\n"));
        let mut lines = got.lines();
        let first = lines.next().unwrap();
        assert!(first.len() > 80 && first.len() < 90, "{first}");
        assert!(lines.next().unwrap().starts_with("    word"));
    }

    #[test]
    fn csv_quoting() {
        let mut out = String::new();
        csv_row(["a", "b,c", "d\"e", ""], false, &mut out);
        csv_row(["a", ""], true, &mut out);
        assert_eq!(out, "a,\"b,c\",\"d\"\"e\",\r\n\"a\",\"\"\r\n");
    }
}
