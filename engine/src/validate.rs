//! Validation and normalization of appended batches.
//!
//! A batch appended to a signal may leave out optional columns, use another string or
//! timestamp flavour, or plain binary ids; [`normalize`] turns it into exactly the signal's
//! canonical schema ([`crate::schema::schema`]) or rejects it whole with an
//! [`Error::InvalidBatch`] naming the column and, for a bad value, the first bad row.
//!
//! Accepted coercions (anything else is an error):
//! - any `Timestamp` unit and time zone → `Timestamp(Nanosecond, "UTC")` (the instant is
//!   kept; a value out of the nanosecond range is an error);
//! - `Utf8`, `LargeUtf8`, `Utf8View` and dictionaries of them → the canonical string type;
//! - `Binary`, `LargeBinary`, `BinaryView` ids → `FixedSizeBinary(16|8)` when every value
//!   has the right length;
//! - any integer type → the canonical integer type when every value fits;
//!   `Float32` → `Float64`;
//! - nested columns (lists, structs, maps) whose types equal the canonical ones except for
//!   field names.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, FixedSizeBinaryArray, Int64Array, RecordBatch,
    StringArray, new_null_array,
};
use arrow::compute::kernels::cast::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Int32Type, TimestampNanosecondType};

use crate::schema::{self, ColumnSpec, Fill};
use crate::{Error, Result, Signal};

/// Checks `batch` against `signal`'s schema and returns it in canonical form.
///
/// Nothing is partially accepted: on any problem the whole batch is rejected.
pub fn normalize(signal: Signal, batch: &RecordBatch) -> Result<RecordBatch> {
    let specs = schema::columns(signal);
    let input = batch.schema();
    let rows = batch.num_rows();

    let mut seen = HashSet::new();
    for field in input.fields() {
        let name = field.name();
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(
                signal,
                name,
                None,
                "column appears twice in the batch",
            ));
        }
        if !specs.iter().any(|s| s.name == name) {
            return Err(Error::invalid(
                signal,
                name,
                None,
                format!(
                    "no such column in the {signal} table (columns: {})",
                    specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }

    let mut columns: Vec<ArrayRef> = Vec::with_capacity(specs.len());
    let mut derived = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let array = match batch.column_by_name(spec.name) {
            Some(a) => coerce(signal, spec, a)?,
            None => match spec.fill {
                Fill::Required => {
                    return Err(Error::invalid(
                        signal,
                        spec.name,
                        None,
                        "required column is missing",
                    ));
                }
                Fill::Null => new_null_array(&spec.data_type, rows),
                Fill::Const(value) => constant_dict(value, rows),
                Fill::Derived => {
                    derived.push(i);
                    new_null_array(&spec.data_type, rows)
                }
            },
        };
        if !derived.contains(&i) {
            check_values(signal, spec, &array)?;
        }
        columns.push(array);
    }

    // spans.duration_ns is the only derived column: end_time - time.
    if signal == Signal::Spans {
        let pos = |n: &str| {
            specs
                .iter()
                .position(|s| s.name == n)
                .expect("span schema has time, end_time and duration_ns")
        };
        let (t, e, d) = (pos("time"), pos("end_time"), pos("duration_ns"));
        let start = columns[t].as_primitive::<TimestampNanosecondType>();
        let end = columns[e].as_primitive::<TimestampNanosecondType>();
        let computed: Int64Array = start
            .values()
            .iter()
            .zip(end.values().iter())
            .map(|(s, e)| e.wrapping_sub(*s))
            .collect();
        if derived.contains(&d) {
            columns[d] = Arc::new(computed);
        } else {
            let given = columns[d].as_primitive::<arrow::datatypes::Int64Type>();
            if let Some(row) = (0..rows).find(|&r| given.value(r) != computed.value(r)) {
                return Err(Error::invalid(
                    signal,
                    "duration_ns",
                    Some(row),
                    format!(
                        "{} does not equal end_time - time = {} (leave the column out to have it computed)",
                        given.value(row),
                        computed.value(row)
                    ),
                ));
            }
        }
    }

    RecordBatch::try_new(schema::schema(signal), columns)
        .map_err(|e| Error::invalid(signal, "*", None, format!("batch does not assemble: {e}")))
}

fn constant_dict(value: &str, rows: usize) -> ArrayRef {
    let keys = arrow::array::Int32Array::from(vec![0i32; rows]);
    let values = StringArray::from(vec![value]);
    Arc::new(
        DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values))
            .expect("key 0 is in range of a one-value dictionary"),
    )
}

fn type_error(signal: Signal, spec: &ColumnSpec, got: &DataType) -> Error {
    Error::invalid(
        signal,
        spec.name,
        None,
        format!("expected type {}, got {got}", spec.data_type),
    )
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(k, v) if k.is_integer() && is_string(v))
}

/// Converts one column to its canonical type, or explains why it cannot be.
fn coerce(signal: Signal, spec: &ColumnSpec, array: &ArrayRef) -> Result<ArrayRef> {
    let from = array.data_type();
    let to = &spec.data_type;
    if from == to {
        return Ok(array.clone());
    }
    let convertible = match (from, to) {
        (DataType::Timestamp(_, _), DataType::Timestamp(_, _)) => true,
        (f, DataType::Utf8) | (f, DataType::Dictionary(_, _)) if is_string(f) => true,
        (DataType::FixedSizeBinary(n), DataType::FixedSizeBinary(m)) => {
            return Err(Error::invalid(
                signal,
                spec.name,
                None,
                format!("ids in this column must be {m} bytes, got FixedSizeBinary({n})"),
            ));
        }
        (
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView,
            DataType::FixedSizeBinary(n),
        ) => return binary_to_fixed(signal, spec, array, *n),
        (f, t) if f.is_integer() && t.is_integer() => true,
        (DataType::Float32, DataType::Float64) => true,
        (
            DataType::List(_) | DataType::Map(_, _) | DataType::Struct(_),
            DataType::List(_) | DataType::Map(_, _) | DataType::Struct(_),
        ) => from.equals_datatype(to),
        _ => false,
    };
    if !convertible {
        return Err(type_error(signal, spec, from));
    }
    // A safe cast turns values that do not convert into nulls; the first row that was not
    // null before and is after is the first bad value.
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    let cast = cast_with_options(array, to, &options).map_err(|e| {
        Error::invalid(
            signal,
            spec.name,
            None,
            format!("cannot convert {from} to {to}: {e}"),
        )
    })?;
    if cast.null_count() != array.null_count()
        && let Some(row) = (0..array.len()).find(|&r| array.is_valid(r) && cast.is_null(r))
    {
        return Err(Error::invalid(
            signal,
            spec.name,
            Some(row),
            format!("value does not fit {to}"),
        ));
    }
    Ok(cast)
}

fn binary_to_fixed(
    signal: Signal,
    spec: &ColumnSpec,
    array: &ArrayRef,
    width: i32,
) -> Result<ArrayRef> {
    let bin = cast_with_options(array, &DataType::LargeBinary, &CastOptions::default())?;
    let bin = bin.as_binary::<i64>();
    let want = usize::try_from(width).expect("id widths are 8 or 16");
    if let Some(row) = (0..bin.len()).find(|&r| bin.is_valid(r) && bin.value(r).len() != want) {
        return Err(Error::invalid(
            signal,
            spec.name,
            Some(row),
            format!("id is {} bytes, expected {want}", bin.value(row).len()),
        ));
    }
    let fixed = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
        (0..bin.len()).map(|r| bin.is_valid(r).then(|| bin.value(r))),
        width,
    )?;
    Ok(Arc::new(fixed))
}

/// Value-level checks: required columns have no nulls, enumerated columns hold allowed
/// values, ids are not all zero bytes (OTLP's "invalid id").
fn check_values(signal: Signal, spec: &ColumnSpec, array: &ArrayRef) -> Result<()> {
    if !spec.nullable
        && array.null_count() > 0
        && let Some(row) = (0..array.len()).find(|&r| array.is_null(r))
    {
        return Err(Error::invalid(
            signal,
            spec.name,
            Some(row),
            "null in a column that requires a value",
        ));
    }
    if let Some(allowed) = spec.allowed {
        let dict = array.as_dictionary::<Int32Type>();
        let values = dict.values().as_string::<i32>();
        let bad: HashSet<usize> = (0..values.len())
            .filter(|&i| values.is_valid(i) && !allowed.contains(&values.value(i)))
            .collect();
        if !bad.is_empty() {
            let keys = dict.keys();
            if let Some(row) = (0..keys.len()).find(|&r| {
                keys.is_valid(r) && usize::try_from(keys.value(r)).is_ok_and(|k| bad.contains(&k))
            }) {
                let k = usize::try_from(keys.value(row)).expect("checked above");
                return Err(Error::invalid(
                    signal,
                    spec.name,
                    Some(row),
                    format!("`{}` is not one of {}", values.value(k), allowed.join(", ")),
                ));
            }
        }
        // A null in a dictionary's values is a null row too.
        if !spec.nullable
            && let Some(nulls) = dict.logical_nulls()
            && let Some(row) = (0..dict.len()).find(|&r| nulls.is_null(r))
        {
            return Err(Error::invalid(
                signal,
                spec.name,
                Some(row),
                "null in a column that requires a value",
            ));
        }
    }
    if let DataType::FixedSizeBinary(_) = spec.data_type {
        let ids = array.as_fixed_size_binary();
        if let Some(row) =
            (0..ids.len()).find(|&r| ids.is_valid(r) && ids.value(r).iter().all(|b| *b == 0))
        {
            return Err(Error::invalid(
                signal,
                spec.name,
                Some(row),
                "an all-zero id is invalid in OpenTelemetry (use null for \"no id\")",
            ));
        }
    }
    Ok(())
}
