//! `compare`: which attribute values, services, operations, kinds and statuses are
//! over-represented in one set of spans (the *selection*, e.g. the slow or failing requests
//! of an incident) against another (the *baseline*, e.g. the normal ones) — what Honeycomb's
//! BubbleUp and TraceQL's `compare()` do.
//!
//! Both sets are given as SQL predicates over `spans`. For every **dimension** — the columns
//! `service_name`, `name`, `kind` and `status_code`, and every key of `attributes`
//! (`attributes.<key>`) and `resource_attributes` (`resource.<key>`) — each value's share of
//! the selection's spans is compared with its share of the baseline's; the rows are the
//! values whose share is larger in the selection, ranked by the difference of the shares
//! (`score`, from 0 to 1: 1 means every selected span and no baseline span has it).
//!
//! A dimension with more than [`MAX_VALUES`] distinct values in either set (ids, addresses,
//! timestamps) is left out: it cannot explain a difference by one value. Values longer than
//! [`MAX_VALUE_BYTES`] bytes are left out too. Counting streams the two sets batch by batch:
//! memory is bounded by the distinct values kept, never by the number of spans.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Float64Array, RecordBatch, StringArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::StreamExt;

use crate::{Error, Session};

/// Distinct values a dimension may have in one set before it is left out.
pub const MAX_VALUES: usize = 1000;
/// Longest value (bytes) counted.
pub const MAX_VALUE_BYTES: usize = 256;

/// The plain columns compared.
const COLUMNS: [&str; 4] = ["service_name", "name", "kind", "status_code"];

/// Counts of the values of every dimension over a set of spans.
#[derive(Debug, Default)]
pub struct Counts {
    /// Spans counted.
    pub spans: u64,
    /// Dimension → value → spans holding it; `None` once the dimension has too many values.
    dimensions: HashMap<String, Option<HashMap<String, u64>>>,
}

impl Counts {
    fn add(&mut self, dimension: &str, value: &str) {
        if value.len() > MAX_VALUE_BYTES {
            return;
        }
        let values = match self.dimensions.get_mut(dimension) {
            Some(v) => v,
            None => self
                .dimensions
                .entry(dimension.to_string())
                .or_insert_with(|| Some(HashMap::new())),
        };
        let Some(map) = values.as_mut() else { return };
        if let Some(n) = map.get_mut(value) {
            *n += 1;
            return;
        }
        if map.len() >= MAX_VALUES {
            *values = None;
            return;
        }
        map.insert(value.to_string(), 1);
    }

    /// Counts the spans of `batch`, which has the columns of [`COLUMNS`] (text or
    /// dictionary) and the maps `attributes` and `resource_attributes`.
    pub fn add_batch(
        &mut self,
        batch: &RecordBatch,
    ) -> Result<(), datafusion::arrow::error::ArrowError> {
        self.spans += batch.num_rows() as u64;
        for c in COLUMNS {
            let Some(col) = batch.column_by_name(c) else {
                continue;
            };
            let col = datafusion::arrow::compute::cast(col, &DataType::Utf8)?;
            let col = col.as_string::<i32>();
            for v in col.iter().flatten() {
                self.add(c, v);
            }
        }
        let mut dimension = String::new();
        for (c, prefix) in [
            ("attributes", "attributes."),
            ("resource_attributes", "resource."),
        ] {
            let Some(col) = batch.column_by_name(c) else {
                continue;
            };
            let Some(map) = col.as_map_opt() else {
                continue;
            };
            let (Some(keys), Some(values)) = (
                map.keys().as_string_opt::<i32>(),
                map.values().as_string_opt::<i32>(),
            ) else {
                continue;
            };
            let offsets = map.value_offsets();
            for row in 0..map.len() {
                if map.is_null(row) {
                    continue;
                }
                for e in offsets[row] as usize..offsets[row + 1] as usize {
                    if keys.is_null(e) || values.is_null(e) {
                        continue;
                    }
                    dimension.clear();
                    dimension.push_str(prefix);
                    dimension.push_str(keys.value(e));
                    self.add(&dimension, values.value(e));
                }
            }
        }
        Ok(())
    }

    fn values(&self, dimension: &str) -> Option<&HashMap<String, u64>> {
        self.dimensions.get(dimension).and_then(Option::as_ref)
    }

    fn too_many(&self, dimension: &str) -> bool {
        matches!(self.dimensions.get(dimension), Some(None))
    }
}

/// One value over-represented in the selection.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// `service_name`, `name`, `kind`, `status_code`, `attributes.<key>` or
    /// `resource.<key>`.
    pub dimension: String,
    /// The value.
    pub value: String,
    /// Selected spans with it.
    pub selection_count: u64,
    /// Baseline spans with it.
    pub baseline_count: u64,
    /// `selection_count` over the selection's spans.
    pub selection_share: f64,
    /// `baseline_count` over the baseline's spans (0 for an empty baseline).
    pub baseline_share: f64,
    /// `selection_share - baseline_share`: the rank.
    pub score: f64,
}

/// The values over-represented in `selection` against `baseline`, best first (ties by
/// dimension, then value), at most `limit`.
pub fn differences(selection: &Counts, baseline: &Counts, limit: usize) -> Vec<Difference> {
    let mut out = Vec::new();
    if selection.spans == 0 {
        return out;
    }
    let share = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    for (dimension, values) in &selection.dimensions {
        let Some(values) = values else { continue };
        if baseline.too_many(dimension) {
            continue;
        }
        let base = baseline.values(dimension);
        for (value, &n) in values {
            let b = base.and_then(|m| m.get(value)).copied().unwrap_or(0);
            let (s_share, b_share) = (share(n, selection.spans), share(b, baseline.spans));
            if s_share > b_share {
                out.push(Difference {
                    dimension: dimension.clone(),
                    value: value.clone(),
                    selection_count: n,
                    baseline_count: b,
                    selection_share: s_share,
                    baseline_share: b_share,
                    score: s_share - b_share,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.dimension.cmp(&b.dimension))
            .then_with(|| a.value.cmp(&b.value))
    });
    out.truncate(limit);
    out
}

/// The statement that reads the columns `compare` counts from the spans matching
/// `predicate` (SQL over `spans`).
pub fn counting_sql(predicate: &str) -> String {
    format!(
        "SELECT {}, attributes, resource_attributes FROM spans WHERE {predicate}",
        COLUMNS.join(", ")
    )
}

/// The baseline predicate when none is given: every span the selection does not hold.
pub fn complement(selection: &str) -> String {
    format!("NOT coalesce(({selection}), false)")
}

/// Compares the spans matching `selection` with those matching `baseline` (default: every
/// other span, [`complement`]) — both SQL predicates over `spans`, run as statements of
/// `session` — and returns the `limit` most over-represented values.
pub async fn compare(
    session: &Session,
    selection: &str,
    baseline: Option<&str>,
    limit: usize,
) -> Result<Vec<Difference>, Error> {
    let baseline = baseline.map_or_else(|| complement(selection), str::to_string);
    let mut sets = [Counts::default(), Counts::default()];
    for (counts, predicate) in sets.iter_mut().zip([selection, baseline.as_str()]) {
        let mut stream = session.sql_stream(&counting_sql(predicate)).await?;
        while let Some(batch) = stream.next().await {
            counts
                .add_batch(&batch?)
                .map_err(datafusion::error::DataFusionError::from)?;
        }
    }
    Ok(differences(&sets[0], &sets[1], limit))
}

/// The columns of `compare`'s rows: `dimension`, `value`, `selection_count`,
/// `baseline_count`, `selection_share`, `baseline_share`, `score`.
pub fn compare_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("dimension", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("selection_count", DataType::UInt64, false),
        Field::new("baseline_count", DataType::UInt64, false),
        Field::new("selection_share", DataType::Float64, false),
        Field::new("baseline_share", DataType::Float64, false),
        Field::new("score", DataType::Float64, false),
    ]))
}

/// `rows` as a batch of [`compare_schema`].
pub fn compare_batch(rows: &[Difference]) -> RecordBatch {
    RecordBatch::try_new(
        compare_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| &r.dimension),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.value))),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.selection_count),
            )),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.baseline_count),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.selection_share),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.baseline_share),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.score))),
        ],
    )
    .expect("columns match the compare schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(rows: &[(&str, &str)]) -> Counts {
        let mut c = Counts::default();
        for (d, v) in rows {
            c.add(d, v);
            c.spans += 1;
        }
        c
    }

    #[test]
    fn over_represented_values_rank_by_the_difference_of_shares() {
        let sel = counts(&[
            ("region", "eu"),
            ("region", "eu"),
            ("region", "us"),
            ("region", "eu"),
        ]);
        let base = counts(&[
            ("region", "us"),
            ("region", "us"),
            ("region", "eu"),
            ("region", "us"),
        ]);
        let d = differences(&sel, &base, 10);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (
                d[0].value.as_str(),
                d[0].selection_count,
                d[0].baseline_count
            ),
            ("eu", 3, 1)
        );
        assert!((d[0].score - 0.5).abs() < 1e-12);
        // Nothing to compare against: every selected value is over-represented.
        let d = differences(&sel, &Counts::default(), 10);
        assert_eq!(d[0].value, "eu");
        assert!((d[0].score - 0.75).abs() < 1e-12);
        assert!(differences(&Counts::default(), &base, 10).is_empty());
    }

    #[test]
    fn dimensions_with_too_many_values_are_left_out() {
        let mut sel = Counts::default();
        for i in 0..=MAX_VALUES {
            sel.add("id", &i.to_string());
            sel.add("region", "eu");
            sel.spans += 1;
        }
        let d = differences(&sel, &Counts::default(), 10);
        assert_eq!(
            d.iter().map(|d| d.dimension.as_str()).collect::<Vec<_>>(),
            ["region"]
        );
        sel.add("long", &"x".repeat(MAX_VALUE_BYTES + 1));
        assert!(sel.values("long").is_none());
    }
}
