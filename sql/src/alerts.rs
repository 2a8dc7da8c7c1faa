//! The `alerts` table: what the alerting rules of `scry serve` recorded, as rows a query can
//! join with the spans, logs and metrics of the same minutes.
//!
//! Alerts live in the store as log records (so they are logged, flushed, compacted and
//! retained like every other record, and survive restarts with the store): one record per
//! state change of one alert instance, of service `scrydb`, scope [`SCOPE_NAME`] and event
//! name [`EVENT_NAME`]. The record's attributes are the instance's labels (`alertname`
//! included) plus the alert's own fields under [`FIELD_PREFIX`] and its annotations under
//! [`ANNOTATION_PREFIX`]; its body is a one-line summary. The `alerts` view reads them back:
//!
//! | column | type | what |
//! |---|---|---|
//! | `time` | timestamp | when the state changed (the rule's evaluation time) |
//! | `rule` | string | the rule's name (also `labels['alertname']`) |
//! | `group` | string | the rule group's name |
//! | `state` | string | `pending`, `firing`, `resolved`, `inactive`, `nodata` or `error` |
//! | `fingerprint` | string | 16 hex digits identifying the instance (rule + labels) |
//! | `value` | double | the `value` column of the rule's row (NULL for `nodata`/`error`) |
//! | `started` | timestamp | when the instance became pending (NULL for `inactive`) |
//! | `fired` | timestamp | when it started firing (NULL if it never did) |
//! | `ended` | timestamp | when it resolved (NULL while pending or firing) |
//! | `labels` | map | the instance's labels |
//! | `annotations` | map | its annotations, templates rendered |
//! | `summary` | string | the one-line summary |
//! | `error` | string | why the rule's query failed (`error` rows only) |
//!
//! The latest row of a fingerprint is that instance's current state.
//!
//! The view trusts its records: whoever may write logs into the store (the ingest token of
//! `scry serve`) could also write a record that reads as an alert.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, MapArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::error::DataFusionError;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlanBuilder, ScalarUDF, Volatility, col, create_udf, lit,
};
use scrydb_engine::schema::{attributes_builder, attributes_type, timestamp_type};

/// The event name of every alert record.
pub const EVENT_NAME: &str = "scrydb.alert";
/// The instrumentation scope of alert records.
pub const SCOPE_NAME: &str = "scrydb.alerts";
/// The prefix of an alert record's own attributes (`scrydb.alert.state`, ...); label names
/// may not start with `scrydb.`.
pub const FIELD_PREFIX: &str = "scrydb.alert.";
/// The prefix of an alert record's annotations (`scrydb.annotation.summary`, ...).
pub const ANNOTATION_PREFIX: &str = "scrydb.annotation.";
/// The prefix no label name may start with.
pub const RESERVED_PREFIX: &str = "scrydb.";

/// The attribute names of an alert record's fields (each prefixed with [`FIELD_PREFIX`]).
pub mod field {
    /// The rule's name.
    pub const RULE: &str = "scrydb.alert.rule";
    /// The rule group's name.
    pub const GROUP: &str = "scrydb.alert.group";
    /// The new state.
    pub const STATE: &str = "scrydb.alert.state";
    /// The instance's fingerprint.
    pub const FINGERPRINT: &str = "scrydb.alert.fingerprint";
    /// The value, as Rust formats an `f64`.
    pub const VALUE: &str = "scrydb.alert.value";
    /// Nanoseconds since the epoch when the instance became pending.
    pub const STARTED: &str = "scrydb.alert.started";
    /// Nanoseconds since the epoch when it started firing.
    pub const FIRED: &str = "scrydb.alert.fired";
    /// Nanoseconds since the epoch when it resolved.
    pub const ENDED: &str = "scrydb.alert.ended";
    /// Why the rule's query failed.
    pub const ERROR: &str = "scrydb.alert.error";
}

/// The entries of an attributes map that pass `keep`, with `strip` removed from their keys.
fn filter_map(name: &'static str, keep: fn(&str) -> bool, strip: &'static str) -> ScalarUDF {
    create_udf(
        name,
        vec![attributes_type()],
        attributes_type(),
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let map: &MapArray = arrays[0].as_map_opt().ok_or_else(|| {
                DataFusionError::Internal(format!("{name} takes an attributes map"))
            })?;
            let keys = map.keys().as_string::<i32>();
            let values = map.values().as_string::<i32>();
            let offsets = map.value_offsets();
            let mut out = attributes_builder();
            for row in 0..map.len() {
                if map.is_null(row) {
                    out.append(false)?;
                    continue;
                }
                for i in offsets[row] as usize..offsets[row + 1] as usize {
                    let key = keys.value(i);
                    if keep(key) {
                        out.keys()
                            .append_value(key.strip_prefix(strip).unwrap_or(key));
                        if values.is_null(i) {
                            out.values().append_null();
                        } else {
                            out.values().append_value(values.value(i));
                        }
                    }
                }
                out.append(true)?;
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
        }),
    )
}

/// The `alerts` view over `logs` (see the module documentation), planned over the table
/// `logs` is registered as.
pub(crate) fn view(
    logs: Arc<dyn datafusion::catalog::TableProvider>,
) -> DfResult<datafusion::catalog::view::ViewTable> {
    let labels = filter_map("alert_labels", |k| !k.starts_with(RESERVED_PREFIX), "");
    let annotations = filter_map(
        "alert_annotations",
        |k| k.starts_with(ANNOTATION_PREFIX),
        ANNOTATION_PREFIX,
    );
    let attr = |key: &str| get_field(col("attributes"), key);
    let nanos = |key: &str| {
        Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(attr(key)),
                DataType::Int64,
            ))),
            timestamp_type(),
        ))
    };
    let plan = LogicalPlanBuilder::scan(
        "logs",
        datafusion::datasource::provider_as_source(logs),
        None,
    )?
    .filter(
        col("event_name")
            .eq(lit(EVENT_NAME))
            .and(col("scope_name").eq(lit(SCOPE_NAME)))
            .and(col("service_name").eq(lit("scrydb"))),
    )?
    .project(vec![
        col("time"),
        attr(field::RULE).alias("rule"),
        attr(field::GROUP).alias("group"),
        attr(field::STATE).alias("state"),
        attr(field::FINGERPRINT).alias("fingerprint"),
        Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(attr(field::VALUE)),
            DataType::Float64,
        ))
        .alias("value"),
        nanos(field::STARTED).alias("started"),
        nanos(field::FIRED).alias("fired"),
        nanos(field::ENDED).alias("ended"),
        labels.call(vec![col("attributes")]).alias("labels"),
        annotations
            .call(vec![col("attributes")])
            .alias("annotations"),
        col("body").alias("summary"),
        attr(field::ERROR).alias("error"),
    ])?
    .build()?;
    Ok(datafusion::catalog::view::ViewTable::new(plan, None))
}
