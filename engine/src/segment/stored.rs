//! What a segment file stores of its signal's columns, and how readers get the signal's
//! canonical columns back.
//!
//! Segment format 2 leaves out the columns that follow exactly from others: `spans.end_time`
//! is `time + duration_ns` (validation refuses a batch where it is not, [`crate::validate`]),
//! so storing both costs ~4 bytes per span for nothing. Readers compute such a column from
//! the file's columns; format 1 files store every column and read unchanged. Readers match
//! the file's columns to the signal's by name, so both formats read through the same code.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch};
use arrow::datatypes::{Int64Type, Schema, SchemaRef, TimestampNanosecondType};

use crate::{Error, Result, Signal, schema};

/// The columns of `signal`'s canonical schema that segments of the current format do not
/// store, because readers compute them from stored ones: `end_time` for spans.
pub fn derived_columns(signal: Signal) -> &'static [&'static str] {
    match signal {
        Signal::Spans => &["end_time"],
        Signal::Logs | Signal::Metrics => &[],
    }
}

/// The stored columns a derived column is computed from.
fn sources(name: &str) -> &'static [&'static str] {
    match name {
        "end_time" => &["time", "duration_ns"],
        _ => &[],
    }
}

/// The schema segments of `signal` are written with: the canonical schema without
/// [`derived_columns`], and for spans the trace-tree columns after it (format 3,
/// [`super::tree`]).
pub fn stored_schema(signal: Signal) -> SchemaRef {
    static SCHEMAS: OnceLock<[SchemaRef; 3]> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        [Signal::Spans, Signal::Logs, Signal::Metrics].map(|s| {
            let full = schema::schema(s);
            let mut fields: Vec<arrow::datatypes::FieldRef> = full
                .fields()
                .iter()
                .filter(|f| !derived_columns(s).contains(&f.name().as_str()))
                .cloned()
                .collect();
            if s == Signal::Spans {
                fields.extend(super::tree::fields());
            }
            Arc::new(Schema::new(fields))
        })
    });
    all[match signal {
        Signal::Spans => 0,
        Signal::Logs => 1,
        Signal::Metrics => 2,
    }]
    .clone()
}

/// `batch` (in `signal`'s canonical schema; spans may carry the tree columns after it,
/// [`super::tree::spans_with_tree`]) as segments store it: without the derived columns.
/// Span rows without tree columns get null ones (no tree: readers compute it).
pub fn to_stored(signal: Signal, batch: &RecordBatch) -> Result<RecordBatch> {
    let stored = stored_schema(signal);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(stored.fields().len());
    for f in stored.fields() {
        match batch.column_by_name(f.name()) {
            Some(c) => columns.push(c.clone()),
            None if super::tree::COLUMNS.contains(&f.name().as_str()) => {
                columns.push(arrow::array::new_null_array(
                    f.data_type(),
                    batch.num_rows(),
                ));
            }
            None => {
                return Err(Error::invalid(
                    signal,
                    f.name().as_str(),
                    None,
                    "missing from rows written to a segment",
                ));
            }
        }
    }
    Ok(RecordBatch::try_new(stored, columns)?)
}

/// The root columns (indices into `file`, a segment's Arrow schema) a reader must decode to
/// produce the columns of `want` (the canonical schema or a projection of it): each wanted
/// column the file stores, and for a wanted column it does not store, the columns it is
/// computed from. In the file's order.
pub fn columns_to_read(file: &Schema, want: &Schema) -> Vec<usize> {
    let mut names: Vec<&str> = Vec::new();
    for f in want.fields() {
        let name = f.name().as_str();
        if file.index_of(name).is_ok() {
            names.push(name);
        } else {
            names.extend(sources(name));
        }
    }
    (0..file.fields().len())
        .filter(|&i| names.contains(&file.field(i).name().as_str()))
        .collect()
}

/// The rows of `batch`, decoded from the segment at `path` with the columns
/// [`columns_to_read`] chose, as a batch of schema `want`: columns matched by name, derived
/// ones computed. A column the file lacks and cannot compute is [`Error::Corrupted`].
pub fn to_canonical(path: &Path, want: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let missing = |name: &str| {
        Error::corrupted(
            path,
            None,
            format!("segment schema differs: it has no column {name:?}"),
        )
    };
    let mut columns = Vec::with_capacity(want.fields().len());
    for f in want.fields() {
        let name = f.name().as_str();
        let column = match batch.column_by_name(name) {
            Some(c) => c.clone(),
            None if name == "end_time" => {
                let time = batch.column_by_name("time").ok_or_else(|| missing(name))?;
                let duration = batch
                    .column_by_name("duration_ns")
                    .ok_or_else(|| missing(name))?;
                end_time(path, time, duration)?
            }
            None => return Err(missing(name)),
        };
        columns.push(column);
    }
    RecordBatch::try_new(want.clone(), columns)
        .map_err(|e| Error::corrupted(path, None, format!("segment schema differs: {e}")))
}

/// `time + duration_ns`, typed as `end_time`.
fn end_time(path: &Path, time: &ArrayRef, duration: &ArrayRef) -> Result<ArrayRef> {
    let (Some(t), Some(d)) = (
        time.as_primitive_opt::<TimestampNanosecondType>(),
        duration.as_primitive_opt::<Int64Type>(),
    ) else {
        return Err(Error::corrupted(
            path,
            None,
            "segment's time or duration_ns column has the wrong type",
        ));
    };
    if t.null_count() > 0 || d.null_count() > 0 {
        return Err(Error::corrupted(
            path,
            None,
            "segment's time or duration_ns column holds nulls",
        ));
    }
    let ends: PrimitiveArray<TimestampNanosecondType> =
        arrow::compute::binary(t, d, |t, d| t.wrapping_add(d))?;
    Ok(Arc::new(ends.with_data_type(schema::timestamp_type())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_spans_leave_out_end_time_and_read_back_whole() {
        let full = schema::schema(Signal::Spans);
        let stored = stored_schema(Signal::Spans);
        // Less end_time, plus the four tree columns (format 3).
        assert_eq!(stored.fields().len(), full.fields().len() - 1 + 4);
        assert!(stored.index_of("end_time").is_err());
        assert!(stored.index_of(super::super::tree::LEFT).is_ok());
        assert_eq!(
            stored_schema(Signal::Logs).fields().len(),
            schema::schema(Signal::Logs).fields().len()
        );

        // Asking for end_time alone reads what it is computed from.
        let want = Arc::new(
            full.project(&[full.index_of("end_time").expect("test value")])
                .expect("test value"),
        );
        let read: Vec<&str> = columns_to_read(&stored, &want)
            .into_iter()
            .map(|i| stored.field(i).name().as_str())
            .collect();
        assert_eq!(read, ["time", "duration_ns"]);
        // A format 1 file stores it.
        assert_eq!(
            columns_to_read(&full, &want),
            [full.index_of("end_time").expect("test value")]
        );

        let time: ArrayRef = Arc::new(
            PrimitiveArray::<TimestampNanosecondType>::from(vec![10, 20])
                .with_data_type(schema::timestamp_type()),
        );
        let dur: ArrayRef = Arc::new(PrimitiveArray::<Int64Type>::from(vec![5, 7]));
        let file = Arc::new(Schema::new(vec![
            stored.field_with_name("time").expect("test value").clone(),
            stored
                .field_with_name("duration_ns")
                .expect("test value")
                .clone(),
        ]));
        let batch = RecordBatch::try_new(file, vec![time, dur]).expect("test value");
        let got = to_canonical(Path::new("x.parquet"), &want, &batch).expect("test value");
        let ends = got.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(ends.values().as_ref(), [15, 27]);

        // A column that is neither stored nor derivable is damage, named.
        let want_kind = Arc::new(
            full.project(&[full.index_of("kind").expect("test value")])
                .expect("test value"),
        );
        let err = to_canonical(Path::new("x.parquet"), &want_kind, &batch)
            .expect_err("kind is neither stored nor derived");
        assert!(err.to_string().contains("\"kind\""), "{err}");
    }
}
