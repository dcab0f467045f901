//! django-filter style query filters: `?field=value`, `?field__lookup=value`, related
//! `?rel__field=value`. Each resource declares its [`FieldSpec`]s; [`parse`] validates the
//! query against them (an invalid value is a 400 with a field error, as django-filter
//! reports it; unknown parameters are ignored, as django-filter ignores them) and
//! [`matches`] evaluates the conditions on one object (resources whose store cannot
//! evaluate them; the job list hands them to the store as SQL instead).

use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::ApiError;
use super::page::Params;

/// How a field's values are parsed and compared.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// An integer (`?id__lt=10`).
    Int,
    /// Text (`?description__icontains=boot`).
    Text,
    /// A datetime (`?end_time__gt=2023-01-10T10:00:00Z`).
    Time,
    /// A boolean (`true`/`false`, `True`/`False`, `1`/`0`).
    Bool,
    /// A decimal number.
    Float,
    /// One of fixed display names; case-sensitive or not.
    Choice(&'static [&'static str], bool),
}

/// One filterable field: its query name, kind and accepted lookups (the first, `exact`,
/// is what `?name=value` means).
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// The query name, e.g. `requested_device_type__name`.
    pub name: &'static str,
    /// How values parse.
    pub kind: Kind,
    /// Accepted lookups besides `exact`.
    pub lookups: &'static [&'static str],
}

/// Lookups for text fields.
pub const TEXT: &[&str] = &[
    "exact",
    "iexact",
    "in",
    "contains",
    "icontains",
    "startswith",
    "istartswith",
    "endswith",
    "iendswith",
];
/// Lookups for numbers.
pub const NUMBER: &[&str] = &["exact", "in", "lt", "lte", "gt", "gte"];
/// Lookups for datetimes.
pub const TIME: &[&str] = &["exact", "lt", "lte", "gt", "gte", "isnull"];
/// Lookups for choices.
pub const CHOICE: &[&str] = &["exact", "in"];
/// Exact only.
pub const EXACT: &[&str] = &["exact"];

/// A field value of an object.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
    /// A datetime.
    Time(OffsetDateTime),
    /// A boolean.
    Bool(bool),
    /// A number.
    Float(f64),
    /// SQL NULL.
    Null,
}

/// What a condition compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// One value (`exact`, `lt`, `icontains`, …).
    One(Val),
    /// `in`: any of these.
    Many(Vec<Val>),
    /// `isnull`: whether the field is NULL.
    IsNull(bool),
}

/// One validated filter condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// The field's query name.
    pub field: &'static str,
    /// The lookup, `exact` when none was given.
    pub lookup: &'static str,
    operand: Operand,
}

impl Cond {
    /// What the condition compares with.
    pub fn operand(&self) -> &Operand {
        &self.operand
    }
}

/// Objects whose fields the filters read. A many-to-many field yields several values; a
/// missing one yields [`Val::Null`] (or nothing).
pub trait Filterable {
    /// The values of `field` (a [`FieldSpec::name`]).
    fn values(&self, field: &str) -> Vec<Val>;
}

/// Parses a datetime as Django's form field accepts it (ISO 8601 with `T` or a space,
/// optional seconds, fraction and offset; a date alone means midnight), in UTC when naive.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    let (date, rest) = match text.find(['T', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    let date = Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let Some(rest) = rest else {
        return Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc());
    };
    let (clock, offset) = if let Some(clock) = rest.strip_suffix('Z') {
        (clock, UtcOffset::UTC)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (clock, zone) = rest.split_at(i);
        let sign: i8 = if zone.starts_with('-') { -1 } else { 1 };
        let zone = &zone[1..];
        let (h, m) = match zone.split_once(':') {
            Some((h, m)) => (h, m),
            None if zone.len() == 4 => zone.split_at(2),
            None => (zone, "0"),
        };
        let h: i8 = h.parse().ok()?;
        let m: i8 = m.parse().ok()?;
        (clock, UtcOffset::from_hms(sign * h, sign * m, 0).ok()?)
    } else {
        (rest, UtcOffset::UTC)
    };
    let mut fields = clock.split(':');
    let hour: u8 = fields.next()?.parse().ok()?;
    let minute: u8 = fields.next()?.parse().ok()?;
    let (second, micro) = match fields.next() {
        None => (0, 0),
        Some(sec) => match sec.split_once(['.', ',']) {
            None => (sec.parse().ok()?, 0),
            Some((s, frac)) => (s.parse().ok()?, micro_of(frac)?),
        },
    };
    if fields.next().is_some() {
        return None;
    }
    let time = Time::from_hms_micro(hour, minute, second, micro).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

/// The microseconds of a seconds fraction as Django's `parse_datetime` reads it: 1 to 12
/// digits, of which the first 6 count (Python clients send nanoseconds, e.g. lava-api's
/// `chrono` times with 9 digits).
fn micro_of(frac: &str) -> Option<u32> {
    if frac.is_empty() || frac.len() > 12 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &frac[..frac.len().min(6)];
    format!("{digits:0<6}").parse().ok()
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "1" => Some(true),
        "false" | "False" | "0" => Some(false),
        _ => None,
    }
}

fn parse_value(spec: &FieldSpec, text: &str) -> Result<Val, ApiError> {
    let name = spec.name;
    match spec.kind {
        Kind::Int => text
            .trim()
            .parse()
            .map(Val::Int)
            .map_err(|_| ApiError::field(name, "Enter a number.")),
        Kind::Float => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Val::Float)
            .ok_or_else(|| ApiError::field(name, "Enter a number.")),
        Kind::Text => Ok(Val::Text(text.to_owned())),
        Kind::Time => parse_time(text)
            .map(Val::Time)
            .ok_or_else(|| ApiError::field(name, "Enter a valid date/time.")),
        Kind::Bool => parse_bool(text)
            .map(Val::Bool)
            .ok_or_else(|| ApiError::field(name, "Select a valid choice.")),
        Kind::Choice(names, case_sensitive) => names
            .iter()
            .find(|n| {
                if case_sensitive {
                    **n == text
                } else {
                    n.eq_ignore_ascii_case(text)
                }
            })
            .map(|n| Val::Text((*n).to_owned()))
            .ok_or_else(|| {
                ApiError::field(
                    name,
                    format!("Select a valid choice. {text} is not one of the available choices."),
                )
            }),
    }
}

/// Validates the query's filter parameters against `specs`.
pub fn parse(params: &Params, specs: &[FieldSpec]) -> Result<Vec<Cond>, ApiError> {
    let mut conds = Vec::new();
    for (key, value) in &params.pairs {
        if value.is_empty() {
            continue;
        }
        let (spec, lookup) = match specs.iter().find(|s| s.name == key) {
            Some(spec) => (spec, "exact"),
            None => {
                let Some((field, lookup)) = key.rsplit_once("__") else {
                    continue;
                };
                let Some(spec) = specs.iter().find(|s| s.name == field) else {
                    continue;
                };
                let Some(lookup) = spec.lookups.iter().find(|l| **l == lookup) else {
                    continue;
                };
                (spec, *lookup)
            }
        };
        let operand = match lookup {
            "in" => Operand::Many(
                value
                    .split(',')
                    .map(|v| parse_value(spec, v))
                    .collect::<Result<_, _>>()?,
            ),
            "isnull" => Operand::IsNull(
                parse_bool(value).ok_or_else(|| ApiError::field(key, "Select a valid choice."))?,
            ),
            "exact" | "lt" | "lte" | "gt" | "gte" => Operand::One(parse_value(spec, value)?),
            _ => Operand::One(Val::Text(value.to_owned())),
        };
        conds.push(Cond {
            field: spec.name,
            lookup,
            operand,
        });
    }
    Ok(conds)
}

fn compare(a: &Val, b: &Val) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Time(x), Val::Time(y)) => Some(x.cmp(y)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y),
        (Val::Int(x), Val::Float(y)) => (*x as f64).partial_cmp(y),
        (Val::Float(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Val::Text(x), Val::Text(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn text_match(lookup: &str, have: &str, want: &str) -> bool {
    let (h, w) = (have.to_lowercase(), want.to_lowercase());
    match lookup {
        "iexact" => h == w,
        "contains" => have.contains(want),
        "icontains" => h.contains(&w),
        "startswith" => have.starts_with(want),
        "istartswith" => h.starts_with(&w),
        "endswith" => have.ends_with(want),
        "iendswith" => h.ends_with(&w),
        _ => false,
    }
}

fn cond_matches(values: &[Val], cond: &Cond) -> bool {
    use std::cmp::Ordering::*;
    match &cond.operand {
        Operand::IsNull(want) => {
            let null = values.iter().all(|v| *v == Val::Null);
            null == *want
        }
        Operand::Many(wanted) => values
            .iter()
            .any(|v| wanted.iter().any(|w| compare(v, w) == Some(Equal))),
        Operand::One(want) => values.iter().any(|v| match cond.lookup {
            "exact" => compare(v, want) == Some(Equal),
            "lt" => compare(v, want) == Some(Less),
            "lte" => matches!(compare(v, want), Some(Less | Equal)),
            "gt" => compare(v, want) == Some(Greater),
            "gte" => matches!(compare(v, want), Some(Greater | Equal)),
            lookup => match (v, want) {
                (Val::Text(h), Val::Text(w)) => text_match(lookup, h, w),
                _ => false,
            },
        }),
    }
}

/// Whether `item` satisfies every condition.
pub fn matches<T: Filterable>(item: &T, conds: &[Cond]) -> bool {
    conds
        .iter()
        .all(|cond| cond_matches(&item.values(cond.field), cond))
}

/// `?ordering=` as DRF's `OrderingFilter` reads it: the first listed field that is allowed,
/// with `-` for descending; an unknown field is ignored.
pub fn ordering<'a>(params: &Params, allowed: &[&'a str]) -> Option<(&'a str, bool)> {
    let value = params.get("ordering")?;
    value.split(',').find_map(|term| {
        let term = term.trim();
        let (name, desc) = match term.strip_prefix('-') {
            Some(name) => (name, true),
            None => (term, false),
        };
        allowed.iter().find(|a| **a == name).map(|a| (*a, desc))
    })
}

/// Sorts by one field, stably. Nulls sort as PostgreSQL (LAVA's database) sorts them: last
/// ascending, first descending.
pub fn sort_by_field<T: Filterable>(items: &mut [T], field: &str, descending: bool) {
    items.sort_by(|a, b| {
        let (x, y) = (a.values(field), b.values(field));
        let (x, y) = (
            x.first().unwrap_or(&Val::Null),
            y.first().unwrap_or(&Val::Null),
        );
        let ord = match (x, y) {
            (Val::Null, Val::Null) => std::cmp::Ordering::Equal,
            (Val::Null, _) => std::cmp::Ordering::Greater,
            (_, Val::Null) => std::cmp::Ordering::Less,
            _ => compare(x, y).unwrap_or(std::cmp::Ordering::Equal),
        };
        if descending { ord.reverse() } else { ord }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_django() {
        let t = parse_time("2023-01-10T10:00:00.5Z").unwrap();
        assert_eq!(t.microsecond(), 500_000);
        assert_eq!(
            parse_time("2023-01-10 12:00+02:00").unwrap(),
            parse_time("2023-01-10T10:00:00Z").unwrap()
        );
        assert!(parse_time("2023-01-10").is_some());
        // Up to 12 fraction digits, the first 6 counted (Django's parse_datetime).
        let nanos = parse_time("2023-01-10T10:00:00.123456789+00:00").unwrap();
        assert_eq!(nanos.microsecond(), 123_456);
        assert_eq!(
            parse_time("2023-01-10T10:00:00,123456789012Z").unwrap(),
            nanos
        );
        for bad in [
            "",
            "yesterday",
            "2023-13-01",
            "2023-01-10T25:00",
            "2023-01-10T10:00:00.1234567890123",
            "2023-01-10T10:00:00.12a",
            "2023-01-10T10:00:00.",
        ] {
            assert!(parse_time(bad).is_none(), "{bad}");
        }
    }
}
