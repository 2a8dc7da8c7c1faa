//! Column builders shared by the three converters: attributes, resource and scope columns,
//! and the nested lists (events, links, exemplars, quantiles) built from flat child builders
//! plus offsets. Public so that code building canonical batches without OTLP input (such as
//! test data generators) fills these columns exactly as conversion does.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Float64Builder, Int64Builder, ListArray, MapBuilder,
    StringBuilder, StringDictionaryBuilder, StructArray, TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Int32Type};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::value::write_value;
use crate::schema::{self, UNKNOWN_SERVICE};

/// Builder of an attributes (`Map<Utf8, Utf8>`) column.
pub type Attrs = MapBuilder<StringBuilder, StringBuilder>;

/// A `Timestamp(ns, UTC)` builder.
pub fn ts_builder() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
}

/// Appends one map of attributes (an empty map for no attributes).
pub fn append_attrs(b: &mut Attrs, kvs: &[KeyValue]) {
    for kv in kvs {
        b.keys().append_value(&kv.key);
        let values = b.values();
        if write_value(values, kv.value.as_ref()) {
            values.append_value("");
        } else {
            values.append_null();
        }
    }
    b.append(true)
        .expect("keys and values were appended in pairs");
}

/// Appends `s`, or null when it is empty (proto3 cannot tell empty from absent).
pub fn append_opt_str(b: &mut StringBuilder, s: &str) {
    if s.is_empty() {
        b.append_null();
    } else {
        b.append_value(s);
    }
}

/// A nanosecond timestamp from OTLP's `fixed64`, or `None` when it does not fit an `i64`
/// (after the year 2262).
pub fn ns(t: u64) -> Option<i64> {
    i64::try_from(t).ok()
}

/// `service.name` of a resource, in the stored string form; `unknown_service` when absent.
pub fn service_name(resource: Option<&Resource>) -> String {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => super::value::value_string(kv.value.as_ref()),
            },
        )
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| UNKNOWN_SERVICE.to_string())
}

/// The `service_name` column and the resource and scope columns every signal ends with.
pub struct ResourceScope {
    service: StringDictionaryBuilder<Int32Type>,
    res_attrs: Attrs,
    res_dropped: UInt32Builder,
    res_url: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    scope_attrs: Attrs,
    scope_dropped: UInt32Builder,
    scope_url: StringBuilder,
}

/// The resource and scope of the records being appended.
pub struct Context<'a> {
    /// The resource.
    pub resource: Option<&'a Resource>,
    /// `service.name` of the resource.
    pub service: &'a str,
    /// The resource's schema URL.
    pub resource_schema_url: &'a str,
    /// The instrumentation scope.
    pub scope: Option<&'a InstrumentationScope>,
    /// The scope's schema URL.
    pub scope_schema_url: &'a str,
}

impl Default for ResourceScope {
    fn default() -> Self {
        ResourceScope {
            service: StringDictionaryBuilder::new(),
            res_attrs: schema::attributes_builder(),
            res_dropped: UInt32Builder::new(),
            res_url: StringBuilder::new(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
            scope_attrs: schema::attributes_builder(),
            scope_dropped: UInt32Builder::new(),
            scope_url: StringBuilder::new(),
        }
    }
}

impl ResourceScope {
    /// Appends the service name, resource and scope of one row.
    pub fn append(&mut self, ctx: &Context<'_>) {
        self.service.append_value(ctx.service);
        match ctx.resource {
            Some(r) => {
                append_attrs(&mut self.res_attrs, &r.attributes);
                self.res_dropped.append_value(r.dropped_attributes_count);
            }
            None => {
                self.res_attrs.append(false).expect("no entries");
                self.res_dropped.append_null();
            }
        }
        append_opt_str(&mut self.res_url, ctx.resource_schema_url);
        match ctx.scope {
            Some(s) => {
                append_opt_str(&mut self.scope_name, &s.name);
                append_opt_str(&mut self.scope_version, &s.version);
                append_attrs(&mut self.scope_attrs, &s.attributes);
                self.scope_dropped.append_value(s.dropped_attributes_count);
            }
            None => {
                self.scope_name.append_null();
                self.scope_version.append_null();
                self.scope_attrs.append(false).expect("no entries");
                self.scope_dropped.append_null();
            }
        }
        append_opt_str(&mut self.scope_url, ctx.scope_schema_url);
    }

    /// The `service_name` column.
    pub fn finish_service(&mut self) -> ArrayRef {
        Arc::new(self.service.finish())
    }

    /// Appends the eight resource and scope columns, in schema order.
    pub fn finish_into(mut self, columns: &mut Vec<ArrayRef>) {
        columns.push(Arc::new(self.res_attrs.finish()));
        columns.push(Arc::new(self.res_dropped.finish()));
        columns.push(Arc::new(self.res_url.finish()));
        columns.push(Arc::new(self.scope_name.finish()));
        columns.push(Arc::new(self.scope_version.finish()));
        columns.push(Arc::new(self.scope_attrs.finish()));
        columns.push(Arc::new(self.scope_dropped.finish()));
        columns.push(Arc::new(self.scope_url.finish()));
    }
}

/// Offsets of a list column: one list per row, items appended to flat child builders.
pub struct Offsets(Vec<i32>);

impl Default for Offsets {
    fn default() -> Self {
        Offsets(vec![0])
    }
}

impl Offsets {
    /// Ends the current row's list after `items` children in all.
    pub fn end_row(&mut self, items: usize) {
        self.0
            .push(i32::try_from(items).expect("fewer than 2^31 nested items in one batch"));
    }

    /// A `List<Struct<fields>>` array of the children.
    pub fn finish(self, fields: Fields, children: Vec<ArrayRef>) -> ArrayRef {
        let item = Arc::new(Field::new("item", DataType::Struct(fields.clone()), true));
        let values = StructArray::try_new(fields, children, None)
            .expect("children are built to the item fields");
        Arc::new(
            ListArray::try_new(
                item,
                OffsetBuffer::new(self.0.into()),
                Arc::new(values),
                None,
            )
            .expect("offsets end at the child length"),
        )
    }
}

/// `spans.events`.
pub struct Events {
    offsets: Offsets,
    len: usize,
    time: TimestampNanosecondBuilder,
    name: StringBuilder,
    attrs: Attrs,
    dropped: UInt32Builder,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            offsets: Offsets::default(),
            len: 0,
            time: ts_builder(),
            name: StringBuilder::new(),
            attrs: schema::attributes_builder(),
            dropped: UInt32Builder::new(),
        }
    }
}

impl Events {
    /// Appends one event of the current row.
    pub fn push(&mut self, time: Option<i64>, name: &str, attrs: &[KeyValue], dropped: u32) {
        self.time.append_option(time);
        self.name.append_value(name);
        append_attrs(&mut self.attrs, attrs);
        self.dropped.append_value(dropped);
        self.len += 1;
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        self.offsets.end_row(self.len);
    }

    /// The column.
    pub fn finish(mut self) -> ArrayRef {
        let children: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.attrs.finish()),
            Arc::new(self.dropped.finish()),
        ];
        self.offsets.finish(schema::event_fields(), children)
    }
}

/// `spans.links`.
pub struct Links {
    offsets: Offsets,
    len: usize,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    attrs: Attrs,
    dropped: UInt32Builder,
    flags: UInt32Builder,
}

impl Default for Links {
    fn default() -> Self {
        Links {
            offsets: Offsets::default(),
            len: 0,
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            trace_state: StringBuilder::new(),
            attrs: schema::attributes_builder(),
            dropped: UInt32Builder::new(),
            flags: UInt32Builder::new(),
        }
    }
}

impl Links {
    /// Appends one link of the current row; the ids were checked by the caller.
    pub fn push(&mut self, link: &opentelemetry_proto::tonic::trace::v1::span::Link) {
        self.trace_id
            .append_value(&link.trace_id)
            .expect("link trace id was checked to be 16 bytes");
        self.span_id
            .append_value(&link.span_id)
            .expect("link span id was checked to be 8 bytes");
        append_opt_str(&mut self.trace_state, &link.trace_state);
        append_attrs(&mut self.attrs, &link.attributes);
        self.dropped.append_value(link.dropped_attributes_count);
        self.flags.append_value(link.flags);
        self.len += 1;
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        self.offsets.end_row(self.len);
    }

    /// The column.
    pub fn finish(mut self) -> ArrayRef {
        let children: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.attrs.finish()),
            Arc::new(self.dropped.finish()),
            Arc::new(self.flags.finish()),
        ];
        self.offsets.finish(schema::link_fields(), children)
    }
}

/// `metrics.exemplars`.
pub struct Exemplars {
    offsets: Offsets,
    len: usize,
    time: TimestampNanosecondBuilder,
    value: Float64Builder,
    value_int: Int64Builder,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    attrs: Attrs,
}

impl Default for Exemplars {
    fn default() -> Self {
        Exemplars {
            offsets: Offsets::default(),
            len: 0,
            time: ts_builder(),
            value: Float64Builder::new(),
            value_int: Int64Builder::new(),
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            attrs: schema::attributes_builder(),
        }
    }
}

impl Exemplars {
    /// Appends one exemplar of the current row; the ids were checked by the caller (empty
    /// or the right width).
    pub fn push(&mut self, e: &opentelemetry_proto::tonic::metrics::v1::Exemplar) {
        use opentelemetry_proto::tonic::metrics::v1::exemplar::Value;
        self.time.append_option(ns(e.time_unix_nano));
        match e.value {
            Some(Value::AsDouble(d)) => {
                self.value.append_value(d);
                self.value_int.append_null();
            }
            Some(Value::AsInt(i)) => {
                self.value.append_null();
                self.value_int.append_value(i);
            }
            None => {
                self.value.append_null();
                self.value_int.append_null();
            }
        }
        if !super::id_present(&e.trace_id) {
            self.trace_id.append_null();
        } else {
            self.trace_id
                .append_value(&e.trace_id)
                .expect("exemplar trace id was checked to be 16 bytes");
        }
        if !super::id_present(&e.span_id) {
            self.span_id.append_null();
        } else {
            self.span_id
                .append_value(&e.span_id)
                .expect("exemplar span id was checked to be 8 bytes");
        }
        append_attrs(&mut self.attrs, &e.filtered_attributes);
        self.len += 1;
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        self.offsets.end_row(self.len);
    }

    /// The column.
    pub fn finish(mut self) -> ArrayRef {
        let children: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.value_int.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.attrs.finish()),
        ];
        self.offsets.finish(schema::exemplar_fields(), children)
    }
}

/// `metrics.quantile_values`.
pub struct Quantiles {
    offsets: Offsets,
    len: usize,
    quantile: Float64Builder,
    value: Float64Builder,
    /// Rows whose list is null (not a summary point).
    nulls: Vec<bool>,
}

impl Default for Quantiles {
    fn default() -> Self {
        Quantiles {
            offsets: Offsets::default(),
            len: 0,
            quantile: Float64Builder::new(),
            value: Float64Builder::new(),
            nulls: Vec::new(),
        }
    }
}

impl Quantiles {
    /// Appends the quantiles of a summary point as the current row.
    pub fn push_row(&mut self, q: &[(f64, f64)]) {
        for (quantile, value) in q {
            self.quantile.append_value(*quantile);
            self.value.append_value(*value);
        }
        self.len += q.len();
        self.offsets.end_row(self.len);
        self.nulls.push(false);
    }

    /// Appends a null row (the point is not a summary).
    pub fn push_null(&mut self) {
        self.offsets.end_row(self.len);
        self.nulls.push(true);
    }

    /// The column.
    pub fn finish(mut self) -> ArrayRef {
        let fields = schema::quantile_fields();
        let children: Vec<ArrayRef> = vec![
            Arc::new(self.quantile.finish()),
            Arc::new(self.value.finish()),
        ];
        let item = Arc::new(Field::new("item", DataType::Struct(fields.clone()), true));
        let values =
            StructArray::try_new(fields, children, None).expect("children match the fields");
        let validity: arrow::buffer::NullBuffer = self.nulls.iter().map(|n| !n).collect();
        Arc::new(
            ListArray::try_new(
                item,
                OffsetBuffer::new(self.offsets.0.into()),
                Arc::new(values),
                Some(validity),
            )
            .expect("offsets end at the child length"),
        )
    }
}
