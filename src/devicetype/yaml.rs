//! YAML parsing with PyYAML's leniency about repeated keys.
//!
//! LAVA reads rendered configurations with `yaml.safe_load`, which keeps the last value of a
//! repeated mapping key; several of LAVA's own templates rely on that (a block and its parent
//! both writing `adb:` under `connections`, say). serde_norway refuses such documents, so
//! mappings are built here with the same last-one-wins rule, keeping the key's first position.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_norway::{Mapping, Number, Value};

/// Parses one YAML document into a value, letting repeated keys override earlier ones.
pub(crate) fn parse(text: &str) -> Result<Value, serde_norway::Error> {
    serde_norway::from_str::<Lenient>(text).map(|Lenient(value)| value)
}

/// A YAML value deserialized without the duplicate-key check.
struct Lenient(Value);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor).map(Lenient)
    }
}

struct LenientVisitor;

impl<'de> Visitor<'de> for LenientVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Lenient::deserialize(deserializer).map(|Lenient(v)| v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Lenient(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some((Lenient(key), Lenient(value))) = map.next_entry()? {
            // Replaces the value of a repeated key and keeps its first position, as a Python
            // dict does.
            mapping.insert(key, value);
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "YAML tags are not allowed in a device configuration",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_keep_the_last_value_in_the_first_place() {
        let value = parse("a: 1\nb: {x: 1, x: 2}\na: 3\n").expect("lenient parse");
        let Value::Mapping(map) = &value else {
            panic!("not a mapping: {value:?}");
        };
        assert_eq!(
            map.keys().filter_map(Value::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(value["a"].as_u64(), Some(3));
        assert_eq!(value["b"]["x"].as_u64(), Some(2));
    }

    #[test]
    fn scalars_sequences_and_aliases() {
        let value = parse("s: &anchor [1, -2, 2.5, true, ~, text]\nt: *anchor\n").expect("parse");
        assert_eq!(value["s"], value["t"]);
        assert_eq!(value["s"][1].as_i64(), Some(-2));
        assert_eq!(value["s"][2].as_f64(), Some(2.5));
        assert_eq!(value["s"][3].as_bool(), Some(true));
        assert!(value["s"][4].is_null());
    }

    #[test]
    fn tags_and_syntax_errors_are_refused() {
        assert!(parse("a: !custom 1\n").is_err());
        assert!(parse("a: [1\n").is_err());
    }
}
