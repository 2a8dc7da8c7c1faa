//! The string form of OTLP `AnyValue`s, as stored in attribute maps and log bodies.
//!
//! | AnyValue kind | Stored string |
//! |---|---|
//! | string | the string itself |
//! | bool | `true` / `false` |
//! | int | decimal, e.g. `-42` |
//! | double | Rust's shortest round-trip form with a fraction or exponent: `1.0`, `0.25`, `1e300`, `NaN`, `inf`, `-inf` |
//! | bytes | standard base64 with padding (as OTLP/JSON encodes bytes) |
//! | array | compact JSON array of the elements in their JSON form |
//! | kvlist | compact JSON object, keys in the order given |
//! | empty (no value set) | null |
//! | string table index (profiles only; meaningless elsewhere) | `strindex:<n>` |
//!
//! Inside arrays and kvlists (the "JSON form"): strings are JSON strings, bools and ints are
//! JSON literals, finite doubles are JSON numbers in the form above, non-finite doubles are
//! the strings `"NaN"`, `"inf"`, `"-inf"`, bytes are base64 JSON strings and empty values are
//! `null`.

use std::fmt::Write;

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};

/// Appends the stored string form of `value` to `out`. Returns `false` (and writes nothing)
/// for an empty value, which is stored as null.
pub fn write_value(out: &mut impl Write, value: Option<&AnyValue>) -> bool {
    let Some(v) = value.and_then(|v| v.value.as_ref()) else {
        return false;
    };
    let r = match v {
        Value::StringValue(s) => out.write_str(s),
        Value::BoolValue(b) => out.write_str(if *b { "true" } else { "false" }),
        Value::IntValue(i) => write!(out, "{i}"),
        Value::DoubleValue(d) => write!(out, "{d:?}"),
        Value::BytesValue(b) => out.write_str(&base64::engine::general_purpose::STANDARD.encode(b)),
        Value::StringValueStrindex(i) => write!(out, "strindex:{i}"),
        Value::ArrayValue(_) | Value::KvlistValue(_) => {
            let mut s = String::new();
            write_json(&mut s, Some(v));
            out.write_str(&s)
        }
    };
    r.expect("writing to an in-memory buffer does not fail");
    true
}

/// The stored string form of `value`, `None` for an empty value.
pub fn value_string(value: Option<&AnyValue>) -> Option<String> {
    let mut s = String::new();
    write_value(&mut s, value).then_some(s)
}

fn write_json(out: &mut String, v: Option<&Value>) {
    match v {
        None => out.push_str("null"),
        Some(Value::StringValue(s)) => push_json_str(out, s),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Value::DoubleValue(d)) if d.is_finite() => {
            let _ = write!(out, "{d:?}");
        }
        Some(Value::DoubleValue(d)) => {
            out.push('"');
            let _ = write!(out, "{d:?}");
            out.push('"');
        }
        Some(Value::StringValueStrindex(i)) => {
            let _ = write!(out, "\"strindex:{i}\"");
        }
        Some(Value::BytesValue(b)) => {
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push('"');
        }
        Some(Value::ArrayValue(a)) => {
            out.push('[');
            for (i, item) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item.value.as_ref());
            }
            out.push(']');
        }
        Some(Value::KvlistValue(kv)) => {
            out.push('{');
            for (i, e) in kv.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, &e.key);
                out.push(':');
                write_json(out, e.value.as_ref().and_then(|v| v.value.as_ref()));
            }
            out.push('}');
        }
    }
}

fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string always serializes"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValue, KeyValueList};

    fn any(v: Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }

    #[test]
    fn every_kind_has_a_string_form() {
        let cases = [
            (Value::StringValue("a \"b\"".into()), "a \"b\""),
            (Value::BoolValue(true), "true"),
            (Value::IntValue(-42), "-42"),
            (Value::DoubleValue(1.0), "1.0"),
            (Value::DoubleValue(0.25), "0.25"),
            (Value::DoubleValue(f64::NAN), "NaN"),
            (Value::BytesValue(vec![0xde, 0xad, 0xbe, 0xef]), "3q2+7w=="),
            (
                Value::ArrayValue(ArrayValue {
                    values: vec![
                        any(Value::StringValue("x".into())),
                        any(Value::IntValue(1)),
                        any(Value::DoubleValue(f64::INFINITY)),
                        AnyValue { value: None },
                    ],
                }),
                r#"["x",1,"inf",null]"#,
            ),
            (
                Value::KvlistValue(KeyValueList {
                    values: vec![
                        KeyValue {
                            key: "k".into(),
                            value: Some(any(Value::BoolValue(false))),
                            ..Default::default()
                        },
                        KeyValue {
                            key: "n\"".into(),
                            value: Some(any(Value::ArrayValue(ArrayValue { values: vec![] }))),
                            ..Default::default()
                        },
                    ],
                }),
                r#"{"k":false,"n\"":[]}"#,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(value_string(Some(&any(v))).as_deref(), Some(want));
        }
        assert_eq!(value_string(Some(&AnyValue { value: None })), None);
        assert_eq!(value_string(None), None);
    }
}
