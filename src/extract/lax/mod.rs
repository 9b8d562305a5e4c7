//! Validation as pydantic's lax mode does it, on top of serde: every error of a value in one
//! list (serde stops at the first), with pydantic's types and messages, and the coercions
//! pydantic allows (`"42"` for an integer, `"50.5"` for a number, `"yes"` for a boolean).
//!
//! Written by hand because no crate reports serde errors this way. The value is deserialized;
//! at each error the offending place is recorded once and given a stand-in (a coerced value,
//! or placeholders tried in turn until the type accepts one), and deserializing starts again,
//! until it succeeds. Only the error path pays for the rounds; a valid value is deserialized
//! once.

use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use super::ValidationIssue;

mod path;

use self::path::{get, remove, set};

/// Where a value comes from, which decides a few of pydantic's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A JSON body: a missing field's `input` is the object it is missing from.
    Body,
    /// Query or path parameters: every value is text, a single value may stand for a list,
    /// and a missing parameter's `input` is `null`.
    Params,
}

/// Stand-ins tried in turn at a place whose value the type refused.
const PLACEHOLDERS: [fn() -> Value; 6] = [
    || Value::Null,
    || json!(0),
    || json!(""),
    || json!(false),
    || json!([]),
    || json!({}),
];

/// At most this many rounds (a value with more errors than this reports the first ones).
const MAX_ROUNDS: usize = 256;

type Path = Vec<Step>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `T` from `value`, or every issue with it; `loc` starts each issue's location.
pub(crate) fn from_value<T: DeserializeOwned>(
    value: Value,
    loc: &[Value],
    source: Source,
) -> Result<T, Vec<ValidationIssue>> {
    let original = value.clone();
    let mut value = value;
    let mut issues = Vec::new();
    // Places given a stand-in, and the next placeholder to try at each.
    let mut filled: Vec<(Path, usize)> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let err = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(done) if issues.is_empty() => return Ok(done),
            Ok(_) => return Err(issues),
            Err(err) => err,
        };
        let mut path: Path = err
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                _ => None,
            })
            .collect();
        let message = err.into_inner().to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        let inside_stand_in = |path: &Path| {
            filled
                .iter()
                .any(|(p, _)| path.len() > p.len() && path.starts_with(p))
        };
        if let Some(field) = quoted(message, "missing field `") {
            let enclosing = get(&original, &path).cloned();
            path.push(Step::Key(field.to_owned()));
            if !inside_stand_in(&path) && !filled.iter().any(|(p, _)| *p == path) {
                let input = match source {
                    Source::Body => enclosing.unwrap_or(Value::Null),
                    Source::Params => Value::Null,
                };
                issues.push(issue("missing", loc, &path, "Field required").input(input));
            }
        } else if let Some(field) = quoted(message, "unknown field `") {
            if path.last() != Some(&Step::Key(field.to_owned())) {
                path.push(Step::Key(field.to_owned()));
            }
            let input = get(&original, &path).cloned().unwrap_or(Value::Null);
            issues.push(
                issue(
                    "extra_forbidden",
                    loc,
                    &path,
                    "Extra inputs are not permitted",
                )
                .input(input),
            );
            if !remove(&mut value, &path) {
                break;
            }
            continue;
        } else if !filled.iter().any(|(p, _)| *p == path) && !inside_stand_in(&path) {
            let current = get(&value, &path).cloned().unwrap_or(Value::Null);
            let expected = message.rsplit("expected ").next().unwrap_or_default();
            if let Some(coerced) = coerce(&current, expected, source).filter(|c| *c != current) {
                set(&mut value, &path, coerced);
                continue;
            }
            let input = get(&original, &path).cloned().unwrap_or(Value::Null);
            issues.push(describe(message, expected, &current, loc, &path).input(input));
            // An enum's stand-in is one of its variants.
            if message.starts_with("unknown variant `") {
                if let Some(variant) = variant_names(expected).next() {
                    set(&mut value, &path, json!(variant));
                    filled.push((path, PLACEHOLDERS.len()));
                    continue;
                }
            }
        }
        // A stand-in for the place: the next placeholder it has not had yet.
        let next = match filled.iter_mut().find(|(p, _)| *p == path) {
            Some((_, next)) => next,
            None => {
                filled.push((path.clone(), 0));
                &mut filled.last_mut().expect("just pushed").1
            }
        };
        let Some(placeholder) = PLACEHOLDERS.get(*next) else {
            // No stand-in fits (a type this does not know): report what was found.
            break;
        };
        *next += 1;
        set(&mut value, &path, placeholder());
    }
    if issues.is_empty() {
        issues.push(issue(
            "value_error",
            loc,
            &[],
            "Value error, input is not valid",
        ));
    }
    Err(issues)
}

/// The text between `prefix` and the next backtick.
fn quoted<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message
        .strip_prefix(prefix)
        .and_then(|rest| rest.split('`').next())
}

fn issue(kind: &'static str, loc: &[Value], path: &[Step], msg: &str) -> ValidationIssue {
    let mut full = loc.to_vec();
    full.extend(path.iter().map(|step| match step {
        Step::Key(k) => json!(k),
        Step::Index(i) => json!(i),
    }));
    ValidationIssue::new(kind, full, msg)
}

fn is_int(expected: &str) -> bool {
    matches!(
        expected,
        "i8" | "i16"
            | "i32"
            | "i64"
            | "i128"
            | "isize"
            | "u8"
            | "u16"
            | "u32"
            | "u64"
            | "u128"
            | "usize"
    )
}

/// An integer type's range (what fits in JSON's exact integers for the widest).
fn int_range(expected: &str) -> Option<(i128, i128)> {
    Some(match expected {
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        _ => return None,
    })
}

fn is_float(expected: &str) -> bool {
    matches!(expected, "f32" | "f64")
}

/// What pydantic's lax mode would have accepted in place of `value`, if anything.
fn coerce(value: &Value, expected: &str, source: Source) -> Option<Value> {
    match value {
        Value::String(s) if is_int(expected) => {
            let s = s.trim();
            s.parse::<i64>()
                .map(Value::from)
                .or_else(|_| s.parse::<u64>().map(Value::from))
                .ok()
        }
        Value::Number(n) if is_int(expected) => n
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| json!(f as i64)),
        Value::String(s) if is_float(expected) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| json!(f)),
        Value::String(s) if expected == "a boolean" => {
            match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" | "t" | "y" => Some(json!(true)),
                "false" | "0" | "no" | "off" | "f" | "n" => Some(json!(false)),
                _ => None,
            }
        }
        Value::Number(n) if expected == "a boolean" => match n.as_i64() {
            Some(0) => Some(json!(false)),
            Some(1) => Some(json!(true)),
            _ => None,
        },
        // `?limit=1&limit=2` for one value: the last, as Starlette takes it.
        Value::Array(items) if source == Source::Params && expected != "a sequence" => {
            items.last().cloned()
        }
        // `?tag=a` for a list of tags.
        Value::String(_) if source == Source::Params && expected == "a sequence" => {
            Some(json!([value]))
        }
        _ => None,
    }
}

/// Pydantic's error for a value the type refused.
fn describe(
    message: &str,
    expected: &str,
    value: &Value,
    loc: &[Value],
    path: &[Step],
) -> ValidationIssue {
    let string = value.is_string();
    if let (Some(n), Some((min, max))) = (
        quoted(message, "invalid value: integer `").and_then(|n| n.parse::<i128>().ok()),
        int_range(expected),
    ) {
        // Out of the type's range: the bound it crossed, as `Field(ge=..., le=...)` says it.
        let (kind, msg, ctx) = if n < min {
            (
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
                json!({ "ge": min }),
            )
        } else {
            (
                "less_than_equal",
                format!("Input should be less than or equal to {max}"),
                json!({ "le": max }),
            )
        };
        return ValidationIssue {
            ctx: Some(ctx),
            ..issue(kind, loc, path, &msg)
        };
    }
    let (kind, msg) = if is_int(expected) {
        match value {
            Value::String(_) => (
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            ),
            Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() != 0.0) => (
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
            ),
            _ => ("int_type", "Input should be a valid integer"),
        }
    } else if is_float(expected) {
        if string {
            (
                "float_parsing",
                "Input should be a valid number, unable to parse string as a number",
            )
        } else {
            ("float_type", "Input should be a valid number")
        }
    } else if expected == "a boolean" {
        if string {
            (
                "bool_parsing",
                "Input should be a valid boolean, unable to interpret input",
            )
        } else {
            ("bool_type", "Input should be a valid boolean")
        }
    } else if expected.contains("string") || expected == "a character" {
        ("string_type", "Input should be a valid string")
    } else if expected == "a sequence" || expected.starts_with("a tuple") {
        ("list_type", "Input should be a valid list")
    } else if expected.starts_with("struct ") {
        (
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        )
    } else if expected == "a map" {
        ("dict_type", "Input should be a valid dictionary")
    } else if let Some(variants) = message
        .strip_prefix("unknown variant `")
        .and_then(|rest| rest.split_once("expected "))
        .map(|(_, variants)| variants)
    {
        let names: Vec<String> = variant_names(variants).map(|v| format!("'{v}'")).collect();
        let expected = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        return ValidationIssue {
            ctx: Some(json!({ "expected": expected })),
            ..issue("enum", loc, path, &format!("Input should be {expected}"))
        };
    } else {
        return issue("value_error", loc, path, &format!("Value error, {message}"));
    };
    issue(kind, loc, path, msg)
}

/// The names in serde's "expected `a`, `b` or `c`".
fn variant_names(expected: &str) -> impl Iterator<Item = &str> {
    expected.split('`').skip(1).step_by(2)
}
