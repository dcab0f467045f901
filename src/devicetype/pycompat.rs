//! The few Python features LAVA device-type templates use that MiniJinja lacks, so that
//! templates written for LAVA (an admin's own, kept in a local template directory) render too:
//! `dict.get(key[, default])`, `dict.items()`, `dict.keys()`, `dict.values()`, a handful of
//! string methods, and `self.<block>()` to render a block again.

use std::sync::Arc;

use minijinja::value::{Object, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, Value};

/// Installs the Python compatibility on `env`.
pub(crate) fn install(env: &mut Environment<'_>) {
    env.set_unknown_method_callback(call_method);
    // Jinja2 has no `debug` global; LAVA templates use `debug` as an ordinary variable name.
    env.remove_global("debug");
    env.add_global("self", Value::from_object(SelfBlocks));
}

/// Methods of built-in values that Jinja2 gets from Python.
fn call_method(
    _state: &mut State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match (value.kind(), method) {
        (ValueKind::Map, "get") => {
            let (key, default) = match args {
                [key] => (key, Value::from(())),
                [key, default] => (key, default.clone()),
                _ => return Err(Error::from(ErrorKind::InvalidOperation)),
            };
            let found = value.get_item(key)?;
            Ok(if found.is_undefined() { default } else { found })
        }
        (ValueKind::Map, "items") => {
            no_args(args)?;
            let mut items = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                items.push(Value::from(vec![key, item]));
            }
            Ok(Value::from(items))
        }
        (ValueKind::Map, "keys") => {
            no_args(args)?;
            Ok(Value::from(value.try_iter()?.collect::<Vec<_>>()))
        }
        (ValueKind::Map, "values") => {
            no_args(args)?;
            let mut values = Vec::new();
            for key in value.try_iter()? {
                values.push(value.get_item(&key)?);
            }
            Ok(Value::from(values))
        }
        (ValueKind::String, _) => string_method(value.as_str().unwrap_or_default(), method, args),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    let arg = |i: usize| -> Result<&str, Error> {
        args.get(i)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "expected a string argument"))
    };
    Ok(match method {
        "startswith" => Value::from(s.starts_with(arg(0)?)),
        "endswith" => Value::from(s.ends_with(arg(0)?)),
        "upper" => Value::from(s.to_uppercase()),
        "lower" => Value::from(s.to_lowercase()),
        "strip" => Value::from(s.trim()),
        "replace" => Value::from(s.replace(arg(0)?, arg(1)?)),
        "split" => match args {
            [] => Value::from(s.split_whitespace().map(Value::from).collect::<Vec<_>>()),
            _ => Value::from(s.split(arg(0)?).map(Value::from).collect::<Vec<_>>()),
        },
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}

fn no_args(args: &[Value]) -> Result<(), Error> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(Error::from(ErrorKind::TooManyArguments))
    }
}

/// Jinja2's `self`: `self.name()` renders the block `name` of the current template chain again.
#[derive(Debug)]
struct SelfBlocks;

impl Object for SelfBlocks {
    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        no_args(args)?;
        state.render_block(method).map(Value::from)
    }
}
