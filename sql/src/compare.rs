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
//! A dimension with more than [`MAX_VALUES`] distinct values in the selection (ids,
//! addresses, timestamps) is left out: it cannot explain a difference by one value. So are
//! values longer than [`MAX_VALUE_BYTES`] bytes, attribute keys longer than
//! [`MAX_KEY_BYTES`], and dimensions past the first [`MAX_DIMENSIONS`] met. A span counts
//! once per dimension (an attribute key repeated in one span counts its first value, as
//! `attributes['k']` reads it). The baseline is counted only for the selection's values.
//! Counting streams the two sets batch by batch: memory is bounded by those limits (about
//! 64 MiB at worst), never by the number of spans.
//!
//! Predicates are parsed as one SQL expression each ([`predicate`]) before they are run:
//! anything after the expression (`LIMIT`, a second statement, an unbalanced parenthesis)
//! is refused, so a predicate cannot change the statement it is placed in.

// hashbrown with foldhash: `entry_ref` counts a value without allocating its key, and the
// hashing is several times cheaper than SipHash (counting is most of `compare`'s time).
use datafusion::common::HashMap;
use std::sync::Arc;

use crate::{Error, Session};
use datafusion::arrow::array::{
    Array, AsArray, Float64Array, RecordBatch, StringArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Distinct values a dimension may have in the selection before it is left out.
pub const MAX_VALUES: usize = 1000;
/// Longest value (bytes) counted.
pub const MAX_VALUE_BYTES: usize = 256;
/// Longest attribute key (bytes) counted.
pub const MAX_KEY_BYTES: usize = 128;
/// Dimensions counted (the first met); later ones are left out.
pub const MAX_DIMENSIONS: usize = 256;

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
    /// Counts `value` of `dimension` for one span; with `only`, just the values `only`
    /// holds (the baseline is counted for the selection's values).
    fn add(&mut self, dimension: &str, value: &str, only: Option<&Counts>) {
        if value.len() > MAX_VALUE_BYTES {
            return;
        }
        if let Some(only) = only {
            if only
                .values(dimension)
                .is_some_and(|v| v.contains_key(value))
            {
                let map = self
                    .dimensions
                    .entry_ref(dimension)
                    .or_insert_with(|| Some(HashMap::new()))
                    .get_or_insert_with(HashMap::new);
                *map.entry_ref(value).or_insert(0) += 1;
            }
            return;
        }
        let dimensions = self.dimensions.len();
        let Some(values) = self.dimensions.get_mut(dimension) else {
            if dimensions < MAX_DIMENSIONS {
                self.dimensions.insert(
                    dimension.to_string(),
                    Some(HashMap::from([(value.to_string(), 1)])),
                );
            }
            return;
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
    /// dictionary) and the maps `attributes` and `resource_attributes`; with `only`, just
    /// the values `only` holds.
    pub fn add_batch(
        &mut self,
        batch: &RecordBatch,
        only: Option<&Counts>,
    ) -> Result<(), datafusion::arrow::error::ArrowError> {
        self.spans += batch.num_rows() as u64;
        for c in COLUMNS {
            let Some(col) = batch.column_by_name(c) else {
                continue;
            };
            let col = datafusion::arrow::compute::cast(col, &DataType::Utf8)?;
            let col = col.as_string::<i32>();
            for v in col.iter().flatten() {
                self.add(c, v, only);
            }
        }
        let mut dimension = String::new();
        let mut seen: Vec<&str> = Vec::new();
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
                seen.clear();
                for e in offsets[row] as usize..offsets[row + 1] as usize {
                    if keys.is_null(e) || values.is_null(e) {
                        continue;
                    }
                    let key = keys.value(e);
                    // A key once per span (its first value), as `attributes['k']` reads it.
                    if key.len() > MAX_KEY_BYTES || seen.contains(&key) {
                        continue;
                    }
                    seen.push(key);
                    dimension.clear();
                    dimension.push_str(prefix);
                    dimension.push_str(key);
                    self.add(&dimension, values.value(e), only);
                }
            }
        }
        Ok(())
    }

    /// Adds the counts of `other` (another part of the same set, counted with the same
    /// `only`): a dimension left out of either is left out, one that now has too many
    /// values too; dimensions past [`MAX_DIMENSIONS`] are not added.
    pub fn merge(&mut self, other: Counts) {
        self.spans += other.spans;
        for (dimension, values) in other.dimensions {
            let dimensions = self.dimensions.len();
            let Some(mine) = self.dimensions.get_mut(&dimension) else {
                if dimensions < MAX_DIMENSIONS {
                    self.dimensions.insert(dimension, values);
                }
                continue;
            };
            let (Some(map), Some(values)) = (mine.as_mut(), values) else {
                *mine = None;
                continue;
            };
            for (value, n) in values {
                *map.entry(value).or_insert(0) += n;
            }
            if map.len() > MAX_VALUES {
                *mine = None;
            }
        }
    }

    fn values(&self, dimension: &str) -> Option<&HashMap<String, u64>> {
        self.dimensions.get(dimension).and_then(Option::as_ref)
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

/// `p` checked as one SQL expression over `spans` and written back in canonical form,
/// parenthesized: the text after `WHERE` in the statements that count a set. Anything
/// after the expression, an alias, or nesting deeper than `max_depth` is refused, naming
/// `what` (`selection`, `baseline`).
pub fn predicate(what: &str, p: &str, max_depth: usize) -> Result<String, Error> {
    sql_predicate(&format!("compare's {what}"), p, max_depth)
}

/// [`predicate`] for any caller: errors start with `label` (`descendants' anchor`).
pub fn sql_predicate(label: &str, p: &str, max_depth: usize) -> Result<String, Error> {
    let bad = |e: String| Error::Query(format!("{label} `{p}`: {e}"));
    let parsed = datafusion::sql::parser::DFParser::parse_sql_into_expr(p)
        .map_err(|e| bad(e.to_string()))?;
    if let Some(alias) = parsed.alias {
        return Err(bad(format!("a predicate has no alias (`AS {alias}`)")));
    }
    crate::check_expr_depth(&parsed.expr, max_depth).map_err(|e| bad(e.to_string()))?;
    // The text placed in a statement must say what was checked: written back and read
    // again, it must give the same expression (sqlparser prints some literals, such as
    // `N'...'`, without escaping their quotes).
    let text = parsed.expr.to_string();
    let again = datafusion::sql::parser::DFParser::parse_sql_into_expr(&text);
    if !again.is_ok_and(|e| e.expr == parsed.expr && e.alias.is_none()) {
        return Err(bad(
            "it cannot be written back as the same SQL (a quote inside an N'' or E'' \
             literal?); use a plain '...' string"
                .to_string(),
        ));
    }
    Ok(format!("({text})"))
}

/// The statement that reads the columns `compare` counts from the spans matching
/// `predicate` (checked by [`predicate`]).
pub fn counting_sql(predicate: &str) -> String {
    format!(
        "SELECT {}, attributes, resource_attributes FROM spans WHERE {predicate}",
        COLUMNS.join(", ")
    )
}

/// The baseline predicate when none is given: every span the selection (checked by
/// [`predicate`]) does not hold.
pub fn complement(selection: &str) -> String {
    format!("NOT coalesce({selection}, false)")
}

/// Compares the spans matching `selection` with those matching `baseline` (default: every
/// other span, [`complement`]) — both SQL predicates over `spans` — and returns the
/// `limit` most over-represented values. One statement of `session`
/// (`SELECT * FROM compare(...)`): both sets come from one snapshot.
pub async fn compare(
    session: &Session,
    selection: &str,
    baseline: Option<&str>,
    limit: usize,
) -> Result<Vec<Difference>, Error> {
    if limit == 0 {
        return Err(Error::Query("compare's limit must be at least 1".into()));
    }
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let sql = format!(
        "SELECT * FROM compare({}, {}, {limit})",
        quote(selection),
        baseline.map_or_else(|| "NULL".to_string(), quote)
    );
    let batches = session.sql(&sql).await?;
    let mut out = Vec::new();
    for b in &batches {
        let text = |i: usize| b.column(i).as_string::<i32>();
        let count = |i: usize| {
            b.column(i)
                .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
        };
        let float = |i: usize| {
            b.column(i)
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
        };
        for r in 0..b.num_rows() {
            out.push(Difference {
                dimension: text(0).value(r).to_string(),
                value: text(1).value(r).to_string(),
                selection_count: count(2).value(r),
                baseline_count: count(3).value(r),
                selection_share: float(4).value(r),
                baseline_share: float(5).value(r),
                score: float(6).value(r),
            });
        }
    }
    Ok(out)
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
            c.add(d, v, None);
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
    fn predicates_are_one_expression() {
        assert_eq!(
            predicate("selection", "duration_ns > 5 AND name = 'x'", 100).expect("ok"),
            "(duration_ns > 5 AND name = 'x')"
        );
        for bad in [
            "a) OR (b",
            "true LIMIT 1",
            "true; DROP TABLE spans",
            "x AS y",
            "",
        ] {
            let e = predicate("selection", bad, 100).expect_err(bad).to_string();
            assert!(e.contains("compare's selection"), "{bad}: {e}");
        }
        // A comment is not part of the expression written back.
        assert_eq!(
            predicate("selection", "true -- ) OR (false", 100).expect("ok"),
            "(true)"
        );
        let deep = vec!["1"; 50].join(" + ");
        assert!(predicate("baseline", &format!("{deep} > 0"), 20).is_err());
        // A literal sqlparser would print unescaped is refused, not pasted.
        let e = predicate("selection", "name = N'a'') OR true OR (''b'", 64)
            .expect_err("not written back faithfully")
            .to_string();
        assert!(e.contains("cannot be written back"), "{e}");
        assert_eq!(
            predicate("selection", "name = 'it''s'", 64).expect("plain"),
            "(name = 'it''s')"
        );
    }

    #[test]
    fn a_key_counts_once_per_span_and_the_baseline_only_for_selected_values() {
        let mut attrs = scrydb_engine::schema::attributes_builder();
        for (k, v) in [("k", "a"), ("k", "b"), ("j", "x")] {
            attrs.keys().append_value(k);
            attrs.values().append_value(v);
        }
        attrs.append(true).expect("map");
        let batch = RecordBatch::try_from_iter([(
            "attributes",
            Arc::new(attrs.finish()) as datafusion::arrow::array::ArrayRef,
        )])
        .expect("batch");
        let mut sel = Counts::default();
        sel.add_batch(&batch, None).expect("counts");
        assert_eq!(sel.values("attributes.k").map(|v| v.len()), Some(1));
        assert_eq!(
            sel.values("attributes.k").and_then(|v| v.get("a")),
            Some(&1)
        );
        // The baseline counts `a` and `x` (the selection's values) and nothing else.
        let mut base = Counts::default();
        let mut other = scrydb_engine::schema::attributes_builder();
        for (k, v) in [("k", "a"), ("z", "q")] {
            other.keys().append_value(k);
            other.values().append_value(v);
        }
        other.append(true).expect("map");
        let other = RecordBatch::try_from_iter([(
            "attributes",
            Arc::new(other.finish()) as datafusion::arrow::array::ArrayRef,
        )])
        .expect("batch");
        base.add_batch(&other, Some(&sel)).expect("counts");
        assert_eq!(
            base.values("attributes.k").and_then(|v| v.get("a")),
            Some(&1)
        );
        assert!(base.values("attributes.z").is_none());
        let d = differences(&sel, &base, 10);
        assert_eq!(
            d.iter()
                .map(|d| (d.dimension.as_str(), d.value.as_str()))
                .collect::<Vec<_>>(),
            [("attributes.j", "x")]
        );
    }

    #[test]
    fn dimensions_with_too_many_values_are_left_out() {
        let mut sel = Counts::default();
        for i in 0..=MAX_VALUES {
            sel.add("id", &i.to_string(), None);
            sel.add("region", "eu", None);
            sel.spans += 1;
        }
        let d = differences(&sel, &Counts::default(), 10);
        assert_eq!(
            d.iter().map(|d| d.dimension.as_str()).collect::<Vec<_>>(),
            ["region"]
        );
        sel.add("long", &"x".repeat(MAX_VALUE_BYTES + 1), None);
        assert!(sel.values("long").is_none());
    }
}
