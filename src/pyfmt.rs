//! Python's text forms that LAVA's wire formats and notifications carry, in one place:
//! `str()`/`repr()` of strings and loaded YAML values, `str()` of a decimal field, and the
//! datetime forms (`datetime.isoformat()` with and without a zone, `str(datetime)`, Django
//! REST framework's ISO 8601 with `Z`).
//!
//! Every datetime form is the same text with different separators and zone suffixes, so it
//! is written once ([`write_datetime`]). Times are shown in UTC, as LAVA (`USE_TZ`, UTC)
//! shows them; a time carrying another offset is converted first. Python has no years
//! before 1 or after 9999, and neither do LAVA's records, so the year is always four digits.
//!
//! Pure: no I/O, no clock.

use std::fmt::Write as _;

use serde_norway::Value;
use time::{OffsetDateTime, UtcOffset};

/// Appends `YYYY-MM-DD<sep>HH:MM:SS[.ffffff]` of `t` in UTC: Python's `isoformat(sep)` of a
/// naive datetime, microseconds only when non-zero (as Python leaves them out).
pub fn write_datetime(t: OffsetDateTime, sep: char, out: &mut String) {
    let t = t.to_offset(UtcOffset::UTC);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.microsecond() != 0 {
        let _ = write!(out, ".{:06}", t.microsecond());
    }
}

/// Python's `datetime.isoformat(sep)` of a naive UTC datetime: `2023-01-10T10:00:00.123456`
/// (lava-publisher's message time).
pub fn py_isoformat(t: OffsetDateTime, sep: char) -> String {
    let mut out = String::with_capacity(26);
    write_datetime(t, sep, &mut out);
    out
}

/// Python's `datetime.isoformat(sep)` of an aware UTC datetime:
/// `2023-01-10T10:00:00.123456+00:00` (times inside lava-publisher's JSON).
pub fn py_isoformat_tz(t: OffsetDateTime, sep: char) -> String {
    let mut out = String::with_capacity(32);
    write_datetime(t, sep, &mut out);
    out.push_str("+00:00");
    out
}

/// Python's `str(datetime)` of an aware UTC datetime: `2023-01-10 10:00:00.123456+00:00`
/// (XML-RPC's verbose job lists, the results exports, notification texts).
pub fn py_datetime(t: OffsetDateTime) -> String {
    py_isoformat_tz(t, ' ')
}

/// Django REST framework's datetime: `isoformat()` with `+00:00` written `Z`, e.g.
/// `2023-01-10T10:00:00.123456Z`.
pub fn drf_datetime(t: OffsetDateTime) -> String {
    let mut out = String::with_capacity(28);
    write_datetime(t, 'T', &mut out);
    out.push('Z');
    out
}

/// Python `repr()` of a float (shortest round-trip digits, exponent outside 1e-4..1e16).
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        format!("{mantissa}e{sign}{digits:0>2}")
    } else {
        let s = format!("{f}");
        if s.contains('.') { s } else { format!("{s}.0") }
    }
}

/// A decimal measurement as Django's `DecimalField(decimal_places=10)` renders it.
pub fn py_decimal(f: f64) -> String {
    format!("{f:.10}")
}

/// Python `repr()` of a string.
pub fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python `repr()` of a loaded YAML value (dicts keep their insertion order).
pub fn py_repr(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => {
                let _ = write!(out, "{i}");
            }
            (None, Some(u), _) => {
                let _ = write!(out, "{u}");
            }
            (None, None, Some(f)) => out.push_str(&py_float(f)),
            _ => out.push_str("None"),
        },
        Value::String(s) => out.push_str(&py_str_repr(s)),
        Value::Sequence(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(item, out);
            }
            out.push(']');
        }
        Value::Mapping(map) => py_repr_mapping(map, out),
        Value::Tagged(tagged) => py_repr(&tagged.value, out),
    }
}

/// Python `repr()` of a loaded YAML mapping (a dict, in insertion order).
pub fn py_repr_mapping(map: &serde_norway::Mapping, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        py_repr(k, out);
        out.push_str(": ");
        py_repr(v, out);
    }
    out.push('}');
}

#[cfg(test)]
mod tests;
