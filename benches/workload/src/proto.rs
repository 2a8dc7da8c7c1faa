//! Small constructors of OTLP protobuf values shared by the generators.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};

pub use any_value::Value;

/// An attribute.
pub fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// A string value.
pub fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

/// An integer value.
pub fn i(v: i64) -> Value {
    Value::IntValue(v)
}

/// An instrumentation scope with a name and version.
pub fn scope(name: &str, version: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        version: version.into(),
        ..Default::default()
    })
}
