//! YAML text → a tree of [`Node`]s that remember their line, resolved the way LAVA's loader
//! (PyYAML `safe_load`, YAML 1.1 rules) resolves plain scalars: `yes`/`on` are booleans,
//! `010` is octal, `1e3` is a string, `2023-01-01` is a date.
//!
//! The event stream comes from `saphyr-parser`; this module only assembles it, with an explicit
//! stack (no recursion), a nesting limit and a budget on nodes copied by aliases, so hostile input
//! (billion laughs, deep nesting) is rejected quickly instead of exhausting memory or the stack.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

/// Deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 200;

/// Most nodes that aliases may copy in one document (a billion-laughs file hits this quickly).
pub const MAX_ALIAS_NODES: usize = 100_000;

/// A position in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// Line, 1-based.
    pub line: u32,
    /// Column, 1-based.
    pub column: u32,
}

/// One YAML value with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it starts in the source.
    pub mark: Mark,
}

/// A YAML value as PyYAML's safe loader would construct it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or empty.
    Null,
    /// `true`, `yes`, `on`, … (YAML 1.1).
    Bool(bool),
    /// An integer (decimal, `0x`, `0b`, leading-zero octal, sexagesimal).
    Int(i128),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A date or date-time (PyYAML builds a `datetime`, which is not a string), kept as written.
    Timestamp(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order (a repeated key keeps its first place and last value).
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// Python's name for the type, used in messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Timestamp(_) => "datetime",
            Value::Seq(_) => "list",
            Value::Map(_) => "dict",
        }
    }
}

impl Node {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as a number the way Python compares it (`True` is 1).
    pub fn as_number(&self) -> Option<f64> {
        match self.value {
            Value::Bool(b) => Some(f64::from(u8::from(b))),
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The value as a Python `int` (`bool` included), if it is one.
    pub fn as_int(&self) -> Option<i128> {
        match self.value {
            Value::Bool(b) => Some(i128::from(b)),
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, if this is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under string key `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key/value node pair under string key `key`.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, v)| (k, v))
    }

    /// Whether this mapping has string key `key`.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Whether Python would consider the value true (non-empty, non-zero).
    pub fn is_truthy(&self) -> bool {
        match &self.value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) | Value::Timestamp(s) => !s.is_empty(),
            Value::Seq(s) => !s.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    /// A short display of a scalar for messages (collections are abbreviated).
    pub fn short(&self) -> String {
        match &self.value {
            Value::Null => "None".to_owned(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) | Value::Timestamp(s) => {
                let mut short: String = s.chars().take(60).collect();
                if short.len() < s.len() {
                    short.push('…');
                }
                short
            }
            Value::Seq(_) => "[…]".to_owned(),
            Value::Map(_) => "{…}".to_owned(),
        }
    }

    /// Counts the nodes of this tree, iteratively.
    fn count(&self) -> usize {
        let mut n = 0;
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            n += 1;
            match &node.value {
                Value::Seq(items) => stack.extend(items.iter()),
                Value::Map(entries) => {
                    for (k, v) in entries {
                        stack.push(k);
                        stack.push(v);
                    }
                }
                _ => {}
            }
        }
        n
    }

    /// Converts to a `serde_norway` value, e.g. to write the YAML back out.
    pub fn to_serde(&self) -> serde_norway::Value {
        use serde_norway::Value as S;
        match &self.value {
            Value::Null => S::Null,
            Value::Bool(b) => S::Bool(*b),
            Value::Int(i) => match i64::try_from(*i) {
                Ok(i) => S::Number(i.into()),
                Err(_) => match u64::try_from(*i) {
                    Ok(u) => S::Number(u.into()),
                    Err(_) => S::String(i.to_string()),
                },
            },
            Value::Float(f) => S::Number((*f).into()),
            Value::Str(s) | Value::Timestamp(s) => S::String(s.clone()),
            Value::Seq(items) => S::Sequence(items.iter().map(Node::to_serde).collect()),
            Value::Map(entries) => S::Mapping(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_serde(), v.to_serde()))
                    .collect(),
            ),
        }
    }

    /// The YAML text of this value.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(&self.to_serde()).unwrap_or_default()
    }
}

/// Why the text could not be loaded as one YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// Where.
    pub mark: Mark,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} column {}: {}",
            self.mark.line, self.mark.column, self.message
        )
    }
}

fn mark_of(span: &Span) -> Mark {
    let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    Mark {
        line: to_u32(span.start.line()),
        column: to_u32(span.start.col().saturating_add(1)),
    }
}

/// A collection being assembled.
enum Open {
    Seq {
        items: Vec<Node>,
        mark: Mark,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        /// Key index, built once a mapping is large, so repeated keys stay cheap to find.
        index: Option<HashMap<KeyRepr, usize>>,
        pending_key: Option<Node>,
        /// Whether `pending_key` is a plain `<<` (a merge key).
        pending_merge: bool,
        mark: Mark,
        anchor: usize,
        /// `<<` merge values, applied when the mapping closes.
        merges: Vec<Node>,
    },
}

/// Python-equality of hashable keys: `1`, `1.0` and `True` are the same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyRepr {
    Null,
    Num(u64),
    Int(i128),
    Str(String),
    Time(String),
}

fn key_repr(node: &Node) -> Option<KeyRepr> {
    Some(match &node.value {
        Value::Null => KeyRepr::Null,
        Value::Bool(b) => KeyRepr::Int(i128::from(*b)),
        Value::Int(i) => KeyRepr::Int(*i),
        Value::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 1e30 {
                KeyRepr::Int(*f as i128)
            } else {
                KeyRepr::Num(f.to_bits())
            }
        }
        Value::Str(s) => KeyRepr::Str(s.clone()),
        Value::Timestamp(s) => KeyRepr::Time(s.clone()),
        Value::Seq(_) | Value::Map(_) => return None,
    })
}

/// Mappings up to this size find repeated keys by scanning; larger ones get an index.
const INDEX_THRESHOLD: usize = 16;

/// Inserts with Python `dict` semantics: a repeated key keeps its place and takes the new value.
fn map_insert(
    entries: &mut Vec<(Node, Node)>,
    index: &mut Option<HashMap<KeyRepr, usize>>,
    key: Node,
    value: Node,
) -> Result<(), LoadError> {
    if matches!(key.value, Value::Seq(_) | Value::Map(_)) {
        return Err(LoadError {
            mark: key.mark,
            message: "found unhashable key".to_owned(),
        });
    }
    if index.is_none() && entries.len() >= INDEX_THRESHOLD {
        *index = Some(
            entries
                .iter()
                .enumerate()
                .filter_map(|(i, (k, _))| Some((key_repr(k)?, i)))
                .collect(),
        );
    }
    let found = match index {
        Some(map) => key_repr(&key).and_then(|r| map.get(&r).copied()),
        None => {
            let repr = key_repr(&key);
            entries
                .iter()
                .position(|(k, _)| same_key(k, &key, repr.as_ref()))
        }
    };
    match found {
        Some(i) => {
            if let Some(slot) = entries.get_mut(i) {
                slot.1 = value;
            }
        }
        None => {
            if let (Some(map), Some(repr)) = (index.as_mut(), key_repr(&key)) {
                map.insert(repr, entries.len());
            }
            entries.push((key, value));
        }
    }
    Ok(())
}

/// Python key equality without allocating for the common case of string keys.
fn same_key(a: &Node, b: &Node, b_repr: Option<&KeyRepr>) -> bool {
    match (&a.value, &b.value) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Str(_), _) | (_, Value::Str(_)) => false,
        _ => key_repr(a).as_ref() == b_repr,
    }
}

/// Loads one YAML document from `saphyr-parser`'s event stream (an empty stream loads as
/// `Null`); errors carry their position.
pub fn load(text: &str) -> Result<Node, LoadError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut alias_budget = MAX_ALIAS_NODES;
    let mut root: Option<Node> = None;
    let mut documents = 0usize;

    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| LoadError {
            mark: Mark {
                line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
                column: u32::try_from(e.marker().col().saturating_add(1)).unwrap_or(u32::MAX),
            },
            message: e.info().to_owned(),
        })?;
        let mark = mark_of(&span);
        let mut merge_key = false;
        let finished: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(LoadError {
                        mark,
                        message: "expected a single document in the stream".to_owned(),
                    });
                }
                None
            }
            Event::Alias(id) => {
                let Some(node) = anchors.get(&id) else {
                    return Err(LoadError {
                        mark,
                        message: "found undefined or recursive alias".to_owned(),
                    });
                };
                let size = node.count();
                if size > alias_budget {
                    return Err(LoadError {
                        mark,
                        message: format!(
                            "aliases expand to more than {MAX_ALIAS_NODES} nodes (billion laughs?)"
                        ),
                    });
                }
                alias_budget -= size;
                let mut copy = node.clone();
                copy.mark = mark;
                Some((copy, 0))
            }
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == ScalarStyle::Plain && tag.is_none();
                let key_position = matches!(
                    stack.last(),
                    Some(Open::Map {
                        pending_key: None,
                        ..
                    })
                );
                merge_key = plain && key_position && text == "<<";
                // PyYAML resolves plain `<<` and `=` to the merge and value tags, which only
                // a mapping key `<<` may use.
                if plain && ((text == "<<" && !key_position) || text == "=") {
                    let tag = if text == "=" { "value" } else { "merge" };
                    return Err(LoadError {
                        mark,
                        message: format!(
                            "could not determine a constructor for the tag 'tag:yaml.org,2002:{tag}'"
                        ),
                    });
                }
                let value = resolve_scalar(&text, style, tag.as_deref())
                    .map_err(|message| LoadError { mark, message })?;
                Some((Node { value, mark }, anchor))
            }
            Event::SequenceStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq", mark)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(LoadError {
                        mark,
                        message: format!("document is nested more than {MAX_DEPTH} levels deep"),
                    });
                }
                stack.push(Open::Seq {
                    items: Vec::new(),
                    mark,
                    anchor,
                });
                None
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map", mark)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(LoadError {
                        mark,
                        message: format!("document is nested more than {MAX_DEPTH} levels deep"),
                    });
                }
                stack.push(Open::Map {
                    entries: Vec::new(),
                    index: None,
                    pending_key: None,
                    pending_merge: false,
                    mark,
                    anchor,
                    merges: Vec::new(),
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Open::Seq {
                    mut items,
                    mark,
                    anchor,
                }) => Some((
                    {
                        // A closed collection never grows: give back what doubling reserved.
                        items.shrink_to_fit();
                        Node {
                            value: Value::Seq(items),
                            mark,
                        }
                    },
                    anchor,
                )),
                _ => {
                    return Err(LoadError {
                        mark,
                        message: "unbalanced sequence end".to_owned(),
                    });
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Open::Map {
                    entries,
                    mark,
                    anchor,
                    merges,
                    ..
                }) => {
                    let mut entries = apply_merges(entries, merges)?;
                    entries.shrink_to_fit();
                    Some((
                        Node {
                            value: Value::Map(entries),
                            mark,
                        },
                        anchor,
                    ))
                }
                _ => {
                    return Err(LoadError {
                        mark,
                        message: "unbalanced mapping end".to_owned(),
                    });
                }
            },
        };
        let Some((node, anchor)) = finished else {
            continue;
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map {
                entries,
                index,
                pending_key,
                pending_merge,
                merges,
                ..
            }) => match pending_key.take() {
                None => {
                    *pending_key = Some(node);
                    *pending_merge = merge_key;
                }
                Some(key) => {
                    if *pending_merge {
                        merges.push(node);
                    } else {
                        map_insert(entries, index, key, node)?;
                    }
                }
            },
        }
    }
    Ok(root.unwrap_or(Node {
        value: Value::Null,
        mark: Mark { line: 1, column: 1 },
    }))
}

/// Applies `<<: *anchor` / `<<: [*a, *b]` the way PyYAML does: explicit keys win, then earlier
/// merge sources win over later ones.
fn apply_merges(
    mut entries: Vec<(Node, Node)>,
    merges: Vec<Node>,
) -> Result<Vec<(Node, Node)>, LoadError> {
    if merges.is_empty() {
        return Ok(entries);
    }
    let mut index: HashMap<KeyRepr, usize> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, (k, _))| Some((key_repr(k)?, i)))
        .collect();
    let mut sources: Vec<Node> = Vec::new();
    for merge in merges {
        match merge.value {
            Value::Map(_) => sources.push(merge),
            Value::Seq(items) => {
                for item in items {
                    if !matches!(item.value, Value::Map(_)) {
                        return Err(LoadError {
                            mark: item.mark,
                            message: "expected a mapping for merging".to_owned(),
                        });
                    }
                    sources.push(item);
                }
            }
            _ => {
                return Err(LoadError {
                    mark: merge.mark,
                    message: "expected a mapping or list of mappings for merging".to_owned(),
                });
            }
        }
    }
    for source in sources {
        if let Value::Map(pairs) = source.value {
            for (k, v) in pairs {
                let Some(repr) = key_repr(&k) else { continue };
                if let std::collections::hash_map::Entry::Vacant(slot) = index.entry(repr) {
                    slot.insert(entries.len());
                    entries.push((k, v));
                }
            }
        }
    }
    Ok(entries)
}

fn check_collection_tag(tag: Option<&Tag>, expected: &str, mark: Mark) -> Result<(), LoadError> {
    match tag {
        None => Ok(()),
        Some(t) if t.is_yaml_core_schema() && t.suffix == expected => Ok(()),
        Some(t) => Err(LoadError {
            mark,
            message: format!("could not determine a constructor for the tag '{t}'"),
        }),
    }
}

static INT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
    )
    .unwrap_or_else(|_| unreachable_regex())
});
static FLOAT_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    )
    .unwrap_or_else(|_| unreachable_regex())
});
static TIMESTAMP_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$",
    )
    .unwrap_or_else(|_| unreachable_regex())
});

/// The patterns above are constants that compile; this only satisfies the type checker without
/// a panic path: a regex that never matches.
fn unreachable_regex() -> Regex {
    Regex::new(r"[^\s\S]").unwrap_or_else(|_| unreachable_regex())
}

fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        if !tag.is_yaml_core_schema() {
            // `!` alone (non-specific tag) means "string" for quoted and plain scalars alike.
            if tag.handle == "!" && tag.suffix.is_empty() {
                return Ok(Value::Str(text.to_owned()));
            }
            return Err(format!(
                "could not determine a constructor for the tag '{tag}'"
            ));
        }
        let implicit = implicit_value(text);
        return match tag.suffix.as_str() {
            "str" => Ok(Value::Str(text.to_owned())),
            "int" => match implicit {
                Value::Int(_) => Ok(implicit),
                _ => Err(format!("invalid literal for int(): '{text}'")),
            },
            "float" => match implicit {
                Value::Float(_) => Ok(implicit),
                Value::Int(i) => Ok(Value::Float(i as f64)),
                _ => Err(format!("could not convert string to float: '{text}'")),
            },
            "bool" => match implicit {
                Value::Bool(_) => Ok(implicit),
                _ => Err(format!("invalid boolean: '{text}'")),
            },
            "null" => Ok(Value::Null),
            "timestamp" => match implicit {
                Value::Timestamp(_) => Ok(implicit),
                _ => Err(format!("invalid timestamp: '{text}'")),
            },
            _ => Err(format!(
                "could not determine a constructor for the tag '{tag}'"
            )),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.to_owned()));
    }
    Ok(implicit_value(text))
}

/// PyYAML's implicit resolvers for plain scalars (YAML 1.1).
fn implicit_value(text: &str) -> Value {
    let first = text.chars().next();
    match first {
        None => return Value::Null,
        Some(c)
            if !matches!(
                c,
                '-' | '+' | '.' | '0'
                    ..='9' | '~' | 'n' | 'N' | 't' | 'T' | 'f' | 'F' | 'y' | 'Y' | 'o' | 'O'
            ) =>
        {
            return Value::Str(text.to_owned());
        }
        _ => {}
    }
    match text {
        "~" | "null" | "Null" | "NULL" => return Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    // Numbers and dates start with a sign, a dot or a digit.
    if !matches!(first, Some('-' | '+' | '.' | '0'..='9')) {
        return Value::Str(text.to_owned());
    }
    if INT_RE.is_match(text) {
        if let Some(i) = construct_int(text) {
            return Value::Int(i);
        }
        return Value::Float(construct_float(text).unwrap_or(f64::INFINITY));
    }
    if FLOAT_RE.is_match(text)
        && let Some(f) = construct_float(text)
    {
        return Value::Float(f);
    }
    if TIMESTAMP_RE.is_match(text) {
        return Value::Timestamp(text.to_owned());
    }
    Value::Str(text.to_owned())
}

fn construct_int(text: &str) -> Option<i128> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let (negative, digits) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    let value = if digits == "0" {
        0
    } else if let Some(bin) = digits.strip_prefix("0b") {
        i128::from_str_radix(bin, 2).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix('0') {
        i128::from_str_radix(oct, 8).ok()?
    } else if digits.contains(':') {
        let mut total: i128 = 0;
        for part in digits.split(':') {
            total = total
                .checked_mul(60)?
                .checked_add(part.parse::<i128>().ok()?)?;
        }
        total
    } else {
        digits.parse::<i128>().ok()?
    };
    Some(if negative { -value } else { value })
}

fn construct_float(text: &str) -> Option<f64> {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_lowercase();
    let (sign, digits) = match cleaned.as_bytes().first() {
        Some(b'-') => (-1.0, &cleaned[1..]),
        Some(b'+') => (1.0, &cleaned[1..]),
        _ => (1.0, cleaned.as_str()),
    };
    if digits == ".inf" {
        return Some(sign * f64::INFINITY);
    }
    if digits == ".nan" {
        return Some(f64::NAN);
    }
    if digits.contains(':') {
        let mut total = 0.0;
        for part in digits.split(':') {
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        return Some(sign * total);
    }
    digits.parse::<f64>().ok().map(|f| sign * f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(text: &str) -> Value {
        match load(&format!("k: {text}")) {
            Ok(node) => node
                .get("k")
                .map(|n| n.value.clone())
                .unwrap_or(Value::Null),
            Err(e) => Value::Str(format!("ERR {e}")),
        }
    }

    #[test]
    fn yaml11_scalars() {
        assert_eq!(scalar("yes"), Value::Bool(true));
        assert_eq!(scalar("Off"), Value::Bool(false));
        assert_eq!(scalar("'yes'"), Value::Str("yes".into()));
        assert_eq!(scalar("010"), Value::Int(8));
        assert_eq!(scalar("0x1F"), Value::Int(31));
        assert_eq!(scalar("1_000"), Value::Int(1000));
        assert_eq!(scalar("1:30"), Value::Int(90));
        assert_eq!(scalar("08"), Value::Str("08".into()));
        assert_eq!(scalar("1e3"), Value::Str("1e3".into()));
        assert_eq!(scalar("1.5"), Value::Float(1.5));
        assert_eq!(scalar("~"), Value::Null);
        assert_eq!(scalar(""), Value::Null);
        assert_eq!(scalar("2023-01-01"), Value::Timestamp("2023-01-01".into()));
        assert_eq!(scalar("!!str 12"), Value::Str("12".into()));
        assert!(matches!(scalar("!custom x"), Value::Str(s) if s.starts_with("ERR")));
    }

    #[test]
    fn duplicate_keys_keep_last_value_first_place() {
        let node = load("a: 1\nb: 2\na: 3\n").ok();
        let keys: Vec<_> = node
            .as_ref()
            .and_then(Node::as_map)
            .map(|m| m.iter().map(|(k, v)| (k.short(), v.short())).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            vec![("a".into(), "3".into()), ("b".into(), "2".into())]
        );
    }

    #[test]
    fn merge_keys() {
        let node = load("base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n").ok();
        let derived = node.as_ref().and_then(|n| n.get("derived"));
        assert_eq!(
            derived.and_then(|d| d.get("x")).map(Node::short),
            Some("1".into())
        );
        assert_eq!(
            derived.and_then(|d| d.get("y")).map(Node::short),
            Some("3".into())
        );
    }

    #[test]
    fn short_and_yaml_output() {
        let long = "x".repeat(100);
        let node = load(&format!("a: {long}\nb: [1, yes, ~]\n")).ok();
        let a = node.as_ref().and_then(|n| n.get("a")).map(Node::short);
        assert_eq!(a.map(|s| s.chars().count()), Some(61));
        let yaml = node.as_ref().map(Node::to_yaml).unwrap_or_default();
        assert!(yaml.contains("- true"), "{yaml}");
        assert!(yaml.contains("- null"), "{yaml}");
    }

    #[test]
    fn marks_are_one_based() {
        let node = load("a:\n  b: [1, 2]\n").ok();
        let b = node
            .as_ref()
            .and_then(|n| n.get("a"))
            .and_then(|a| a.get("b"));
        assert_eq!(b.map(|b| b.mark), Some(Mark { line: 2, column: 6 }));
    }

    #[test]
    fn hostile_input_is_rejected() {
        let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let prev = i - 1;
            laughs.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(load(&laughs).is_err());
        let deep = "[".repeat(100_000);
        assert!(load(&deep).is_err());
        assert!(load("a: *nope").is_err());
        assert!(load("a: 1\n---\nb: 2\n").is_err());
        assert!(load("? [1]\n: x\n").is_err());
        assert!(load("a: <<\n").is_err());
        assert!(load("a: =\n").is_err());
        assert!(load("a: '<<'\n").is_ok());
    }
}
