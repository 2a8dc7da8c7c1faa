//! Reading single values out of result batches, whatever their exact Arrow type.

use scrydb_engine::arrow::array::{Array, ArrayRef, AsArray, MapArray, RecordBatch};
use scrydb_engine::arrow::datatypes::{DataType, Int64Type};
use scrydb_engine::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::sql::ids::hex;

/// The column `name` of `b`.
pub fn column<'a>(b: &'a RecordBatch, name: &str) -> Option<&'a ArrayRef> {
    b.column_by_name(name)
}

/// The value at `row` of `c` as display text (ids as hex, null as `None`).
pub fn text_of(c: &dyn Array, row: usize) -> Option<String> {
    if c.is_null(row) {
        return None;
    }
    match c.data_type() {
        DataType::Utf8 => Some(c.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Some(c.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Some(c.as_string_view().value(row).to_string()),
        DataType::FixedSizeBinary(_) => Some(hex(c.as_fixed_size_binary().value(row))),
        _ => {
            let options = FormatOptions::default().with_null("");
            ArrayFormatter::try_new(c, &options)
                .ok()
                .map(|f| f.value(row).to_string())
        }
    }
}

/// The text of column `name` at `row` (empty when null or missing).
pub fn text(b: &RecordBatch, name: &str, row: usize) -> String {
    column(b, name)
        .and_then(|c| text_of(c.as_ref(), row))
        .unwrap_or_default()
}

/// An integer or timestamp column at `row` as i64 (`None` when null, missing or not
/// integral).
pub fn int(b: &RecordBatch, name: &str, row: usize) -> Option<i64> {
    let c = column(b, name)?;
    if c.is_null(row) {
        return None;
    }
    let c = scrydb_engine::arrow::compute::cast(c, &DataType::Int64).ok()?;
    Some(c.as_primitive::<Int64Type>().value(row))
}

/// An integer or timestamp value at `row` of `c`.
pub fn int_of(c: &dyn Array, row: usize) -> Option<i64> {
    if c.is_null(row) {
        return None;
    }
    let c = scrydb_engine::arrow::compute::cast(&c.slice(row, 1), &DataType::Int64).ok()?;
    Some(c.as_primitive::<Int64Type>().value(0))
}

/// A float (or integer) column at `row` as f64.
pub fn float(b: &RecordBatch, name: &str, row: usize) -> Option<f64> {
    let c = column(b, name)?;
    if c.is_null(row) {
        return None;
    }
    let c = scrydb_engine::arrow::compute::cast(c, &DataType::Float64).ok()?;
    Some(
        c.as_primitive::<scrydb_engine::arrow::datatypes::Float64Type>()
            .value(row),
    )
}

/// An id column (trace or span id) at `row` as bytes.
pub fn id(b: &RecordBatch, name: &str, row: usize) -> Option<Vec<u8>> {
    let c = column(b, name)?.as_fixed_size_binary_opt()?;
    c.is_valid(row).then(|| c.value(row).to_vec())
}

/// An attribute map (`Attrs`) at `row` of a map array: its pairs in stored order (a null
/// value is `None`).
pub fn attrs_of(c: &dyn Array, row: usize) -> Vec<(String, Option<String>)> {
    let Some(map) = c.as_any().downcast_ref::<MapArray>() else {
        return Vec::new();
    };
    if map.is_null(row) {
        return Vec::new();
    }
    let entries = map.value(row);
    let (keys, values) = (entries.column(0), entries.column(1));
    (0..entries.len())
        .map(|i| {
            (
                text_of(keys.as_ref(), i).unwrap_or_default(),
                text_of(values.as_ref(), i),
            )
        })
        .collect()
}

/// The attribute map in column `name` at `row`.
pub fn attrs(b: &RecordBatch, name: &str, row: usize) -> Vec<(String, Option<String>)> {
    column(b, name).map_or_else(Vec::new, |c| attrs_of(c.as_ref(), row))
}
