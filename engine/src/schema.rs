//! The Arrow schemas of the `spans`, `logs` and `metrics` tables.
//!
//! Every column is documented in `docs/schema.md` with its OTLP source field. The schemas
//! are fixed per format version: a batch appended to a signal is validated and normalized
//! to exactly this schema (see [`crate::validate`]), the write-ahead log and segments store
//! exactly this schema, and readers get exactly this schema back.
//!
//! Conventions: timestamps are `Timestamp(Nanosecond, "UTC")`; `trace_id` is
//! `FixedSizeBinary(16)`, `span_id` `FixedSizeBinary(8)`; attributes are `Map<Utf8, Utf8>`
//! with values rendered as strings; low-cardinality strings (`service_name`, `kind`,
//! `status_code`, ...) are `Dictionary(Int32, Utf8)`.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, AsArray, DictionaryArray, MapBuilder, MapFieldNames, RecordBatch, StringArray,
    StringBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema, SchemaRef, TimeUnit};

use crate::Signal;

/// How a column that a batch leaves out is filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The column must be present.
    Required,
    /// Filled with nulls.
    Null,
    /// Filled with this string (dictionary columns).
    Const(&'static str),
    /// Computed from other columns (`spans.duration_ns = end_time - time`).
    Derived,
}

/// One column of a signal's schema.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    /// Column name.
    pub name: &'static str,
    /// Canonical Arrow type.
    pub data_type: DataType,
    /// Whether nulls are allowed.
    pub nullable: bool,
    /// What happens when a batch leaves the column out.
    pub fill: Fill,
    /// For enumerated string columns, the allowed values.
    pub allowed: Option<&'static [&'static str]>,
}

/// Values of `spans.kind`: the OTLP `SpanKind` names without their `SPAN_KIND_` prefix.
pub const SPAN_KINDS: &[&str] = &[
    "UNSPECIFIED",
    "INTERNAL",
    "SERVER",
    "CLIENT",
    "PRODUCER",
    "CONSUMER",
];
/// Values of `spans.status_code`: OTLP `StatusCode` names without `STATUS_CODE_`.
pub const STATUS_CODES: &[&str] = &["UNSET", "OK", "ERROR"];
/// Values of `metrics.metric_type`.
pub const METRIC_TYPES: &[&str] = &[
    "gauge",
    "sum",
    "histogram",
    "exponential_histogram",
    "summary",
];
/// Values of `metrics.aggregation_temporality`: OTLP names without
/// `AGGREGATION_TEMPORALITY_`.
pub const TEMPORALITIES: &[&str] = &["UNSPECIFIED", "DELTA", "CUMULATIVE"];

/// The service name the OpenTelemetry SDKs report when `service.name` is not set.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// `Timestamp(Nanosecond, "UTC")`.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// `FixedSizeBinary(16)`.
pub fn trace_id_type() -> DataType {
    DataType::FixedSizeBinary(16)
}

/// `FixedSizeBinary(8)`.
pub fn span_id_type() -> DataType {
    DataType::FixedSizeBinary(8)
}

/// `Dictionary(Int32, Utf8)`.
pub fn dict_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// `Map<Utf8, Utf8>` with arrow's default field names (`entries`, `keys`, `values`), the
/// type [`attributes_builder`] builds.
pub fn attributes_type() -> DataType {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", DataType::Utf8, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

/// A builder for an attributes column (or a nested attributes field).
pub fn attributes_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(
        Some(MapFieldNames::default()),
        StringBuilder::new(),
        StringBuilder::new(),
    )
}

/// `List<item>` with a nullable item field named `item` (what arrow's `ListBuilder` makes).
pub fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// Fields of `spans.events` items.
pub fn event_fields() -> Fields {
    Fields::from(vec![
        Field::new("time", timestamp_type(), true),
        Field::new("name", DataType::Utf8, true),
        Field::new("attributes", attributes_type(), true),
        Field::new("dropped_attributes_count", DataType::UInt32, true),
    ])
}

/// Fields of `spans.links` items.
pub fn link_fields() -> Fields {
    Fields::from(vec![
        Field::new("trace_id", trace_id_type(), true),
        Field::new("span_id", span_id_type(), true),
        Field::new("trace_state", DataType::Utf8, true),
        Field::new("attributes", attributes_type(), true),
        Field::new("dropped_attributes_count", DataType::UInt32, true),
        Field::new("flags", DataType::UInt32, true),
    ])
}

/// Fields of `metrics.exemplars` items.
pub fn exemplar_fields() -> Fields {
    Fields::from(vec![
        Field::new("time", timestamp_type(), true),
        Field::new("value", DataType::Float64, true),
        Field::new("value_int", DataType::Int64, true),
        Field::new("trace_id", trace_id_type(), true),
        Field::new("span_id", span_id_type(), true),
        Field::new("filtered_attributes", attributes_type(), true),
    ])
}

/// Fields of `metrics.quantile_values` items.
pub fn quantile_fields() -> Fields {
    Fields::from(vec![
        Field::new("quantile", DataType::Float64, true),
        Field::new("value", DataType::Float64, true),
    ])
}

fn col(name: &'static str, data_type: DataType, nullable: bool, fill: Fill) -> ColumnSpec {
    ColumnSpec {
        name,
        data_type,
        nullable,
        fill,
        allowed: None,
    }
}

fn opt(name: &'static str, data_type: DataType) -> ColumnSpec {
    col(name, data_type, true, Fill::Null)
}

fn enumerated(
    name: &'static str,
    nullable: bool,
    fill: Fill,
    allowed: &'static [&'static str],
) -> ColumnSpec {
    ColumnSpec {
        allowed: Some(allowed),
        ..col(name, dict_type(), nullable, fill)
    }
}

/// The resource and scope columns every signal ends with.
fn resource_and_scope() -> Vec<ColumnSpec> {
    vec![
        opt("resource_attributes", attributes_type()),
        opt("resource_dropped_attributes_count", DataType::UInt32),
        opt("resource_schema_url", DataType::Utf8),
        opt("scope_name", DataType::Utf8),
        opt("scope_version", DataType::Utf8),
        opt("scope_attributes", attributes_type()),
        opt("scope_dropped_attributes_count", DataType::UInt32),
        opt("scope_schema_url", DataType::Utf8),
    ]
}

fn service_name() -> ColumnSpec {
    col(
        "service_name",
        dict_type(),
        false,
        Fill::Const(UNKNOWN_SERVICE),
    )
}

fn span_columns() -> Vec<ColumnSpec> {
    let mut c = vec![
        col("time", timestamp_type(), false, Fill::Required),
        col("end_time", timestamp_type(), false, Fill::Required),
        col("duration_ns", DataType::Int64, false, Fill::Derived),
        col("trace_id", trace_id_type(), false, Fill::Required),
        col("span_id", span_id_type(), false, Fill::Required),
        opt("parent_span_id", span_id_type()),
        opt("trace_state", DataType::Utf8),
        opt("flags", DataType::UInt32),
        service_name(),
        col("name", DataType::Utf8, false, Fill::Required),
        enumerated("kind", false, Fill::Const("UNSPECIFIED"), SPAN_KINDS),
        enumerated("status_code", false, Fill::Const("UNSET"), STATUS_CODES),
        opt("status_message", DataType::Utf8),
        opt("attributes", attributes_type()),
        opt("dropped_attributes_count", DataType::UInt32),
        opt("events", list_of(DataType::Struct(event_fields()))),
        opt("dropped_events_count", DataType::UInt32),
        opt("links", list_of(DataType::Struct(link_fields()))),
        opt("dropped_links_count", DataType::UInt32),
    ];
    c.extend(resource_and_scope());
    c
}

fn log_columns() -> Vec<ColumnSpec> {
    let mut c = vec![
        col("time", timestamp_type(), false, Fill::Required),
        opt("observed_time", timestamp_type()),
        opt("trace_id", trace_id_type()),
        opt("span_id", span_id_type()),
        opt("flags", DataType::UInt32),
        opt("severity_number", DataType::Int32),
        opt("severity_text", dict_type()),
        opt("body", DataType::Utf8),
        opt("event_name", DataType::Utf8),
        service_name(),
        opt("attributes", attributes_type()),
        opt("dropped_attributes_count", DataType::UInt32),
    ];
    c.extend(resource_and_scope());
    c
}

fn metric_columns() -> Vec<ColumnSpec> {
    let u64_list = list_of(DataType::UInt64);
    let mut c = vec![
        col("time", timestamp_type(), false, Fill::Required),
        opt("start_time", timestamp_type()),
        service_name(),
        col("name", DataType::Utf8, false, Fill::Required),
        opt("description", DataType::Utf8),
        opt("unit", DataType::Utf8),
        enumerated("metric_type", false, Fill::Required, METRIC_TYPES),
        enumerated("aggregation_temporality", true, Fill::Null, TEMPORALITIES),
        opt("is_monotonic", DataType::Boolean),
        opt("flags", DataType::UInt32),
        opt("attributes", attributes_type()),
        opt("value", DataType::Float64),
        opt("value_int", DataType::Int64),
        opt("count", DataType::UInt64),
        opt("sum", DataType::Float64),
        opt("min", DataType::Float64),
        opt("max", DataType::Float64),
        opt("bucket_counts", u64_list.clone()),
        opt("explicit_bounds", list_of(DataType::Float64)),
        opt("scale", DataType::Int32),
        opt("zero_count", DataType::UInt64),
        opt("zero_threshold", DataType::Float64),
        opt("positive_offset", DataType::Int32),
        opt("positive_bucket_counts", u64_list.clone()),
        opt("negative_offset", DataType::Int32),
        opt("negative_bucket_counts", u64_list),
        opt(
            "quantile_values",
            list_of(DataType::Struct(quantile_fields())),
        ),
        opt("exemplars", list_of(DataType::Struct(exemplar_fields()))),
        opt("metadata", attributes_type()),
    ];
    c.extend(resource_and_scope());
    c
}

struct SignalSchema {
    columns: Vec<ColumnSpec>,
    schema: SchemaRef,
}

fn build(columns: Vec<ColumnSpec>) -> SignalSchema {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(c.name, c.data_type.clone(), c.nullable))
        .collect();
    SignalSchema {
        columns,
        schema: Arc::new(Schema::new(fields)),
    }
}

fn signal_schema(signal: Signal) -> &'static SignalSchema {
    static SCHEMAS: OnceLock<[SignalSchema; 3]> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        [
            build(span_columns()),
            build(log_columns()),
            build(metric_columns()),
        ]
    });
    &all[signal.index()]
}

/// The canonical Arrow schema of a signal's table.
pub fn schema(signal: Signal) -> SchemaRef {
    signal_schema(signal).schema.clone()
}

/// The columns of a signal's table, in schema order, with how each is filled and checked.
pub fn columns(signal: Signal) -> &'static [ColumnSpec] {
    &signal_schema(signal).columns
}

/// The columns rows inside a segment are sorted by. `spans` and `logs` are sorted by the
/// minute of `time` ([`sorts_by_minute`]) first, then by these: a trace's rows are
/// contiguous, so a trace lookup decodes one or two pages per column, and `time` is ordered
/// to within a minute for page-statistics pruning. `metrics` sort by `(name,
/// service_name, time)` so one series is contiguous, which is how metric queries read and
/// what compresses best. (Why, with measurements: `docs/format.md`, section 4.)
pub fn sort_key(signal: Signal) -> &'static [&'static str] {
    match signal {
        Signal::Spans | Signal::Logs => &["time", "trace_id"],
        Signal::Metrics => &["name", "service_name", "time"],
    }
}

/// For `spans` and `logs`, rows are sorted by the minute of `time` first ([`SORT_BUCKET_NS`]),
/// then by the [`sort_key`] columns: a trace's rows (which share a minute, nearly always)
/// are contiguous, and `time` stays ordered to within a minute.
pub const SORT_BUCKET_NS: i64 = 60_000_000_000;

/// The top-level columns of `signal` whose segments keep page-level statistics (min/max per
/// data page, the Parquet column index), so that predicates on them skip pages: time, the
/// trace id (lookups of segments without a usable index), and the low-cardinality columns
/// queries filter and group by. Every other column has chunk statistics only.
pub fn page_statistics_columns(signal: Signal) -> &'static [&'static str] {
    match signal {
        Signal::Spans => &[
            "time",
            "trace_id",
            "service_name",
            "name",
            "kind",
            "status_code",
        ],
        Signal::Logs => &[
            "time",
            "trace_id",
            "service_name",
            "severity_number",
            "severity_text",
        ],
        Signal::Metrics => &["time", "service_name", "name", "metric_type"],
    }
}

/// Whether `signal`'s sort starts with the minute of `time` ([`SORT_BUCKET_NS`]).
pub fn sorts_by_minute(signal: Signal) -> bool {
    matches!(signal, Signal::Spans | Signal::Logs)
}

/// A string column read either as `Utf8` or as `Dictionary(Int32, Utf8)`.
pub(crate) enum Strings<'a> {
    Plain(&'a StringArray),
    Dict(&'a DictionaryArray<Int32Type>, &'a StringArray),
}

impl<'a> Strings<'a> {
    /// Column `name` of `batch` (rows of `signal`, for messages).
    pub(crate) fn of(batch: &'a RecordBatch, signal: Signal, name: &str) -> crate::Result<Self> {
        let bad = |what: String| crate::Error::invalid(signal, name, None, what);
        let a = batch
            .column_by_name(name)
            .ok_or_else(|| bad("is missing".to_string()))?;
        match a.data_type() {
            DataType::Utf8 => Ok(Strings::Plain(a.as_string::<i32>())),
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                let d = a.as_dictionary::<Int32Type>();
                Ok(Strings::Dict(d, d.values().as_string::<i32>()))
            }
            other => Err(bad(format!("is {other}, not a string"))),
        }
    }

    /// Row `i`'s value; null reads as "".
    pub(crate) fn get(&self, i: usize) -> &'a str {
        match self {
            Strings::Plain(a) => {
                if a.is_null(i) {
                    ""
                } else {
                    a.value(i)
                }
            }
            Strings::Dict(d, values) => {
                if d.is_null(i) {
                    ""
                } else {
                    values.value(d.keys().value(i) as usize)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_name_real_columns() {
        for s in Signal::ALL {
            for k in sort_key(s) {
                assert!(schema(s).index_of(k).is_ok(), "{s}.{k}");
            }
            assert_eq!(schema(s).field(0).name(), "time");
        }
    }

    #[test]
    fn attributes_builder_builds_the_canonical_type() {
        use arrow::array::Array;
        let mut b = attributes_builder();
        b.keys().append_value("k");
        b.values().append_value("v");
        b.append(true).expect("append");
        assert_eq!(b.finish().data_type(), &attributes_type());
    }
}
