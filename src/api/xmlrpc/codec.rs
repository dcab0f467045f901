//! XML-RPC wire format: decoding `methodCall` documents and encoding `methodResponse`s.
//!
//! Decoding reads the body with `quick-xml` into a small element tree (bounded depth and
//! element count, no DTDs, only the five predefined entities and character references) and
//! converts it into [`Value`]s. Every failure is a [`DecodeError`]; nothing here panics on
//! input. Encoding writes the document by hand, escaping like Python's `xmlrpc.client`.

use std::fmt::Write as _;

use base64::Engine as _;
use quick_xml::Reader;
use quick_xml::events::Event;
use time::OffsetDateTime;
use time::macros::format_description;

/// Deepest element nesting accepted (Python's expat has no limit; LAVA never needs more
/// than a handful of levels).
pub const MAX_DEPTH: usize = 64;

/// Most elements accepted in one request, bounding the memory of the decoded tree.
pub const MAX_ELEMENTS: usize = 200_000;

/// An XML-RPC value (with the `nil` extension that LAVA enables).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `<int>`, `<i4>`, `<i8>`.
    Int(i64),
    /// `<boolean>`.
    Bool(bool),
    /// `<string>` or untyped text.
    String(String),
    /// `<double>`.
    Double(f64),
    /// `<dateTime.iso8601>`, kept as sent (`YYYYMMDDTHH:MM:SS`).
    DateTime(String),
    /// `<base64>` (Python's `xmlrpc.client.Binary`).
    Base64(Vec<u8>),
    /// `<struct>`: members in document order.
    Struct(Vec<(String, Value)>),
    /// `<array>`.
    Array(Vec<Value>),
    /// `<nil/>` (Python's `None`).
    Nil,
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// A string, or nil when `None`.
    pub fn opt_str(s: Option<impl Into<String>>) -> Value {
        s.map_or(Value::Nil, |s| Value::String(s.into()))
    }

    /// A `dateTime.iso8601` in UTC, as Python's `xmlrpc.client.DateTime` writes it.
    pub fn datetime(t: OffsetDateTime) -> Value {
        let fmt = format_description!("[year][month][day]T[hour]:[minute]:[second]");
        let t = t.to_offset(time::UtcOffset::UTC);
        Value::DateTime(t.format(fmt).unwrap_or_default())
    }

    /// A `dateTime.iso8601`, or nil.
    pub fn opt_datetime(t: Option<OffsetDateTime>) -> Value {
        t.map_or(Value::Nil, Value::datetime)
    }

    /// A struct from `(name, value)` pairs.
    pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
        Value::Struct(
            members
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    /// The Python type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Bool(_) => "bool",
            Value::String(_) => "str",
            Value::Double(_) => "float",
            Value::DateTime(_) => "DateTime",
            Value::Base64(_) => "Binary",
            Value::Struct(_) => "dict",
            Value::Array(_) => "list",
            Value::Nil => "NoneType",
        }
    }
}

/// A decoded `methodCall`.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    /// `methodName`.
    pub name: String,
    /// The positional parameters.
    pub params: Vec<Value>,
}

/// Why a request body is not a valid `methodCall`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not well-formed XML (or not UTF-8).
    #[error("not well-formed XML: {0}")]
    Xml(String),
    /// Well-formed, but not an XML-RPC call.
    #[error("invalid XML-RPC request: {0}")]
    Structure(String),
    /// Nested too deeply or too many elements.
    #[error("request too complex: {0}")]
    TooComplex(String),
}

/// One element of the parsed tree.
#[derive(Debug, Default)]
struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

fn resolve_entity(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix('x').or_else(|| num.strip_prefix('X')) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse::<u32>().ok()?,
            };
            return char::from_u32(code);
        }
    })
}

fn parse_tree(body: &[u8]) -> Result<Element, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|e| DecodeError::Xml(e.to_string()))?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| DecodeError::Xml(e.to_string()))?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(DecodeError::Xml("content after the root element".into()));
                }
                count += 1;
                if stack.len() >= MAX_DEPTH {
                    return Err(DecodeError::TooComplex(format!(
                        "nesting deeper than {MAX_DEPTH}"
                    )));
                }
                if count > MAX_ELEMENTS {
                    return Err(DecodeError::TooComplex(format!(
                        "more than {MAX_ELEMENTS} elements"
                    )));
                }
                let name = String::from_utf8_lossy(start.name().as_ref().as_bytes()).into_owned();
                stack.push(Element {
                    name,
                    ..Element::default()
                });
            }
            Event::End(_) => {
                let done = stack
                    .pop()
                    .ok_or_else(|| DecodeError::Xml("unexpected end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => match stack.last_mut() {
                Some(el) => el.text.push_str(&t.xml10_content()),
                None if t.xml10_content().trim().is_empty() => {}
                None => return Err(DecodeError::Xml("text outside the root element".into())),
            },
            Event::CData(t) => match stack.last_mut() {
                Some(el) => el.text.push_str(&t.xml10_content()),
                None => return Err(DecodeError::Xml("CDATA outside the root element".into())),
            },
            Event::GeneralRef(r) => {
                let name = r.xml10_content();
                let c = resolve_entity(&name).ok_or_else(|| {
                    DecodeError::Xml(format!("undefined entity &{};", cut(&name)))
                })?;
                match stack.last_mut() {
                    Some(el) => el.text.push(c),
                    None => return Err(DecodeError::Xml("entity outside the root element".into())),
                }
            }
            Event::DocType(_) => {
                return Err(DecodeError::Xml(
                    "DOCTYPE declarations are not allowed".into(),
                ));
            }
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(DecodeError::Xml("unexpected end of document".into()));
    }
    root.ok_or_else(|| DecodeError::Xml("no root element".into()))
}

fn structure(msg: impl Into<String>) -> DecodeError {
    DecodeError::Structure(msg.into())
}

/// The element's children, ignoring nothing (whitespace text is kept on the parent only).
fn only_child<'a>(el: &'a Element, name: &str) -> Result<&'a Element, DecodeError> {
    match el.children.as_slice() {
        [child] if child.name == name => Ok(child),
        _ => Err(structure(format!(
            "<{}> must contain one <{name}>",
            cut(&el.name)
        ))),
    }
}

fn decode_value(el: &Element) -> Result<Value, DecodeError> {
    if el.name != "value" {
        return Err(structure(format!(
            "expected <value>, found <{}>",
            cut(&el.name)
        )));
    }
    let typed = match el.children.as_slice() {
        [] => return Ok(Value::String(el.text.clone())),
        [typed] => typed,
        _ => return Err(structure("<value> with several children")),
    };
    let text = typed.text.as_str();
    let scalar = |what: &str| -> Result<(), DecodeError> {
        if typed.children.is_empty() {
            Ok(())
        } else {
            Err(structure(format!("<{what}> cannot contain elements")))
        }
    };
    let local = typed.name.rsplit(':').next().unwrap_or_default();
    Ok(match local {
        "int" | "i4" | "i8" | "i1" | "i2" | "biginteger" => {
            scalar(local)?;
            Value::Int(
                text.trim()
                    .parse()
                    .map_err(|_| structure(format!("invalid integer {:?}", trunc(text))))?,
            )
        }
        "boolean" => {
            scalar(local)?;
            match text.trim() {
                "1" => Value::Bool(true),
                "0" => Value::Bool(false),
                other => return Err(structure(format!("invalid boolean {:?}", trunc(other)))),
            }
        }
        "string" => {
            scalar(local)?;
            Value::String(text.to_owned())
        }
        "double" | "float" => {
            scalar(local)?;
            Value::Double(
                text.trim()
                    .parse()
                    .map_err(|_| structure(format!("invalid double {:?}", trunc(text))))?,
            )
        }
        "dateTime.iso8601" => {
            scalar(local)?;
            Value::DateTime(text.trim().to_owned())
        }
        "base64" => {
            scalar(local)?;
            let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            Value::Base64(
                base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|e| structure(format!("invalid base64: {e}")))?,
            )
        }
        "nil" => {
            scalar(local)?;
            Value::Nil
        }
        "array" => {
            let data = only_child(typed, "data")?;
            Value::Array(
                data.children
                    .iter()
                    .map(decode_value)
                    .collect::<Result<_, _>>()?,
            )
        }
        "struct" => {
            let mut members = Vec::with_capacity(typed.children.len());
            for member in &typed.children {
                if member.name != "member" {
                    return Err(structure(format!(
                        "expected <member>, found <{}>",
                        cut(&member.name)
                    )));
                }
                let (name, value) = match member.children.as_slice() {
                    [n, v] if n.name == "name" => (n, v),
                    [v, n] if n.name == "name" => (n, v),
                    _ => return Err(structure("<member> needs <name> and <value>")),
                };
                members.push((name.text.clone(), decode_value(value)?));
            }
            Value::Struct(members)
        }
        other => return Err(structure(format!("unknown type <{}>", cut(other)))),
    })
}

fn trunc(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Most characters of a name from the request (an element, entity or method name) that an
/// error message repeats: a megabyte of name is not echoed back.
pub const NAME_IN_MESSAGE: usize = 100;

/// `name` as an error message repeats it: at most [`NAME_IN_MESSAGE`] characters, `…` marking
/// a cut.
pub fn cut(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(NAME_IN_MESSAGE) {
        None => std::borrow::Cow::Borrowed(name),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}…", &name[..end])),
    }
}

/// Decodes a `methodCall` document.
pub fn decode_call(body: &[u8]) -> Result<MethodCall, DecodeError> {
    let root = parse_tree(body)?;
    if root.name != "methodCall" {
        return Err(structure(format!(
            "expected <methodCall>, found <{}>",
            cut(&root.name)
        )));
    }
    let mut name = None;
    let mut params = Vec::new();
    for child in &root.children {
        match child.name.as_str() {
            "methodName" => name = Some(child.text.trim().to_owned()),
            "params" => {
                for param in &child.children {
                    if param.name != "param" {
                        return Err(structure(format!(
                            "expected <param>, found <{}>",
                            cut(&param.name)
                        )));
                    }
                    params.push(decode_value(only_child(param, "value")?)?);
                }
            }
            other => return Err(structure(format!("unexpected <{}>", cut(other)))),
        }
    }
    let name = name.ok_or_else(|| structure("missing <methodName>"))?;
    Ok(MethodCall { name, params })
}

/// Escapes text the way Python's `xmlrpc.client.escape` does.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            // Characters XML 1.0 cannot carry at all; replaced so the client can parse.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

fn encode_value(out: &mut String, value: &Value) {
    out.push_str("<value>");
    match value {
        Value::Int(i) => {
            if i32::try_from(*i).is_ok() {
                let _ = write!(out, "<int>{i}</int>");
            } else {
                let _ = write!(out, "<i8>{i}</i8>");
            }
        }
        Value::Bool(b) => {
            let _ = write!(out, "<boolean>{}</boolean>", u8::from(*b));
        }
        Value::String(s) => {
            out.push_str("<string>");
            escape_into(out, s);
            out.push_str("</string>");
        }
        Value::Double(d) => {
            let _ = write!(out, "<double>{d:?}</double>");
        }
        Value::DateTime(s) => {
            out.push_str("<dateTime.iso8601>");
            escape_into(out, s);
            out.push_str("</dateTime.iso8601>");
        }
        Value::Base64(bytes) => {
            out.push_str("<base64>\n");
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
            out.push_str("\n</base64>");
        }
        Value::Struct(members) => {
            out.push_str("<struct>\n");
            for (name, v) in members {
                out.push_str("<member>\n<name>");
                escape_into(out, name);
                out.push_str("</name>\n");
                encode_value(out, v);
                out.push_str("</member>\n");
            }
            out.push_str("</struct>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>\n");
            for v in items {
                encode_value(out, v);
            }
            out.push_str("</data></array>");
        }
        Value::Nil => out.push_str("<nil/>"),
    }
    out.push_str("</value>\n");
}

/// Encodes a successful `methodResponse` carrying `value`.
pub fn encode_response(value: &Value) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n");
    encode_value(&mut out, value);
    out.push_str("</param>\n</params>\n</methodResponse>\n");
    out
}

/// Encodes a fault `methodResponse`.
pub fn encode_fault(code: i64, message: &str) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<methodResponse>\n<fault>\n");
    encode_value(
        &mut out,
        &Value::object([
            ("faultCode", Value::Int(code)),
            ("faultString", Value::str(message)),
        ]),
    );
    out.push_str("</fault>\n</methodResponse>\n");
    out
}

/// Encodes a `methodCall` (used by tests and the benchmark as a client).
pub fn encode_call(name: &str, params: &[Value]) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<methodCall>\n<methodName>");
    escape_into(&mut out, name);
    out.push_str("</methodName>\n<params>\n");
    for p in params {
        out.push_str("<param>\n");
        encode_value(&mut out, p);
        out.push_str("</param>\n");
    }
    out.push_str("</params>\n</methodCall>\n");
    out
}

/// Decodes a `methodResponse` (client side, for tests): `Ok(value)` or `Err((code, string))`.
pub fn decode_response(body: &[u8]) -> Result<Result<Value, (i64, String)>, DecodeError> {
    let root = parse_tree(body)?;
    if root.name != "methodResponse" {
        return Err(structure("expected <methodResponse>"));
    }
    let child = root
        .children
        .first()
        .ok_or_else(|| structure("empty <methodResponse>"))?;
    match child.name.as_str() {
        "params" => {
            let param = only_child(child, "param")?;
            Ok(Ok(decode_value(only_child(param, "value")?)?))
        }
        "fault" => {
            let v = decode_value(only_child(child, "value")?)?;
            let Value::Struct(members) = v else {
                return Err(structure("fault is not a struct"));
            };
            let mut code = 0;
            let mut message = String::new();
            for (k, v) in members {
                match (k.as_str(), v) {
                    ("faultCode", Value::Int(c)) => code = c,
                    ("faultString", Value::String(s)) => message = s,
                    _ => {}
                }
            }
            Ok(Err((code, message)))
        }
        other => Err(structure(format!("unexpected <{}>", cut(other)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_in_messages_are_cut() {
        assert_eq!(cut("scheduler.jobs.list"), "scheduler.jobs.list");
        let long = "é".repeat(5000);
        let short = cut(&long);
        assert_eq!(short.chars().count(), NAME_IN_MESSAGE + 1);
        assert!(short.ends_with('…'));
        let element = "b".repeat(1_000_000);
        let body = format!("<{element}/>");
        let err = decode_call(body.as_bytes()).unwrap_err().to_string();
        assert!(err.len() < 300, "{} bytes", err.len());
    }

    #[test]
    fn decodes_all_types() {
        let body = br#"<?xml version='1.0'?>
<methodCall><methodName>a.b</methodName><params>
<param><value><int>42</int></value></param>
<param><value><i4>-1</i4></value></param>
<param><value><boolean>1</boolean></value></param>
<param><value>plain &amp; &lt;text&gt; &#65;&#x42;</value></param>
<param><value><string><![CDATA[<cdata>]]></string></value></param>
<param><value><double>1.5</double></value></param>
<param><value><dateTime.iso8601>20230110T10:00:00</dateTime.iso8601></value></param>
<param><value><base64>aGVs
bG8=</base64></value></param>
<param><value><nil/></value></param>
<param><value><array><data><value><int>1</int></value><value><string>x</string></value></data></array></value></param>
<param><value><struct><member><name>k</name><value><struct></struct></value></member></struct></value></param>
<param><value><string/></value></param>
</params></methodCall>"#;
        let call = decode_call(body).unwrap();
        assert_eq!(call.name, "a.b");
        assert_eq!(
            call.params,
            vec![
                Value::Int(42),
                Value::Int(-1),
                Value::Bool(true),
                Value::str("plain & <text> AB"),
                Value::str("<cdata>"),
                Value::Double(1.5),
                Value::DateTime("20230110T10:00:00".into()),
                Value::Base64(b"hello".to_vec()),
                Value::Nil,
                Value::Array(vec![Value::Int(1), Value::str("x")]),
                Value::Struct(vec![("k".into(), Value::Struct(vec![]))]),
                Value::str(""),
            ]
        );
    }

    #[test]
    fn rejects_bad_documents() {
        for body in [
            &b""[..],
            b"<methodCall>",
            b"<methodCall><methodName>x</methodName></methodCall><x/>",
            b"<!DOCTYPE x [<!ENTITY a 'b'>]><methodCall><methodName>&a;</methodName></methodCall>",
            b"<methodCall><params/></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value><int>z</int></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value><boolean>2</boolean></value></param></params></methodCall>",
            b"<methodCall><methodName>x</methodName><params><param><value><bogus/></value></param></params></methodCall>",
            b"\xff\xfe",
        ] {
            assert!(decode_call(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        let deep = format!(
            "<methodCall><methodName>x</methodName><params><param>{}{}</param></params></methodCall>",
            "<value><array><data>".repeat(100),
            "</data></array></value>".repeat(100)
        );
        assert!(matches!(
            decode_call(deep.as_bytes()),
            Err(DecodeError::TooComplex(_))
        ));
    }

    #[test]
    fn round_trips_through_encoder() {
        let params = vec![
            Value::Int(1 << 40),
            Value::str("a<&>b\r\n"),
            Value::Base64(vec![0, 1, 2, 255]),
            Value::Nil,
            Value::object([("x", Value::Array(vec![Value::Bool(false)]))]),
        ];
        let call = decode_call(encode_call("m", &params).as_bytes()).unwrap();
        assert_eq!(call.params, params);
        let resp = decode_response(encode_fault(-32601, "No such <method>").as_bytes()).unwrap();
        assert_eq!(resp, Err((-32601, "No such <method>".into())));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            any::<bool>().prop_map(Value::Bool),
            "[^\u{0}-\u{1f}]*".prop_map(Value::String),
            any::<Vec<u8>>().prop_map(Value::Base64),
            Just(Value::Nil),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{0,8}", inner), 0..6).prop_map(Value::Struct),
            ]
        })
    }

    /// A random tree of XML-RPC element names with random text leaves.
    fn arb_element() -> impl Strategy<Value = String> {
        const NAMES: [&str; 18] = [
            "value",
            "int",
            "i4",
            "i8",
            "string",
            "boolean",
            "double",
            "base64",
            "dateTime.iso8601",
            "nil",
            "struct",
            "member",
            "name",
            "array",
            "data",
            "params",
            "param",
            "fault",
        ];
        let leaf = prop_oneof![
            "[ -~]{0,12}".prop_map(|t| t.replace('<', "&lt;").replace('&', "&amp;")),
            Just("20230110T10:00:00".to_owned()),
            Just("-12".to_owned()),
            Just("1".to_owned()),
            Just("aGVsbG8=".to_owned()),
        ];
        leaf.prop_recursive(6, 48, 4, move |inner| {
            (
                prop::sample::select(&NAMES[..]),
                prop::collection::vec(inner, 0..4),
            )
                .prop_map(|(name, kids)| format!("<{name}>{}</{name}>", kids.concat()))
        })
    }

    fn arb_xmlrpc_doc() -> impl Strategy<Value = String> {
        (
            "[a-zA-Z_.]{0,12}",
            prop::collection::vec(arb_element(), 0..4),
            any::<bool>(),
        )
            .prop_map(|(name, params, wrap)| {
                let params: String = params
                    .iter()
                    .map(|p| {
                        if wrap {
                            format!("<param>{p}</param>")
                        } else {
                            p.clone()
                        }
                    })
                    .collect();
                format!(
                    "<?xml version=\"1.0\"?><methodCall><methodName>{name}</methodName>\
                     <params>{params}</params></methodCall>"
                )
            })
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in any::<Vec<u8>>()) {
            let _ = decode_call(&bytes);
            let _ = decode_response(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_calls(v in arb_value(), cut in any::<usize>(), byte in any::<u8>()) {
            let mut doc = encode_call("x.y", std::slice::from_ref(&v)).into_bytes();
            let i = cut % doc.len();
            doc[i] = byte;
            let _ = decode_call(&doc);
            doc.truncate(i);
            let _ = decode_call(&doc);
        }

        /// Documents built from XML-RPC's own element names, nested at random, reach the
        /// decoder's deep paths (random bytes mostly stop at the XML parser). Whatever they
        /// are, decoding returns: a call whose params re-encode to the same call, or an
        /// error that the endpoint turns into a -32700 fault response clients can parse.
        #[test]
        fn random_element_trees_decode_or_fault(doc in arb_xmlrpc_doc()) {
            match decode_call(doc.as_bytes()) {
                Ok(call) => {
                    let again = decode_call(encode_call(&call.name, &call.params).as_bytes());
                    prop_assert_eq!(again, Ok(call));
                }
                Err(e) => {
                    let fault = encode_fault(-32700, &format!("parse error. not well formed: {e}"));
                    let parsed = decode_response(fault.as_bytes()).expect("our fault parses");
                    prop_assert!(matches!(parsed, Err((-32700, _))));
                }
            }
        }

        #[test]
        fn encoded_values_round_trip(v in arb_value()) {
            let call = decode_call(encode_call("x", std::slice::from_ref(&v)).as_bytes()).unwrap();
            prop_assert_eq!(call.params, vec![v]);
        }
    }
}
