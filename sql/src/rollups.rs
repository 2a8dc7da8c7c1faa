//! The `span_metrics` table (span rollups, [`scrydb_engine::rollup`]) and the aggregate
//! `exp_histogram_quantile`, which reads quantiles out of its exponential histograms (and
//! out of the `metrics` table's).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int32Type, SchemaRef, UInt64Type};
use datafusion::catalog::Session;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, Expr, TableProviderFilterPushDown, Volatility, create_udaf,
};
use datafusion::physical_plan::ExecutionPlan;
use scrydb_engine::rollup::ExpHistogram;
use scrydb_engine::{Reader, TimeRange, schema};

use crate::table::{statement_snapshot, time_range};

/// `span_metrics`: per 10 seconds, service, operation, span kind, status and whether the span
/// is a trace's root, the count, errors, duration sum/min/max and an exponential histogram
/// of durations of spans — kept beside each span segment from flush on and through
/// compaction, thinning and retention (`docs/schema.md`). A group can appear in more than
/// one row (one per segment holding some of its spans, and one for unflushed spans):
/// aggregate with `GROUP BY`, `sum(count)`, `sum(errors)` and `exp_histogram_quantile`.
/// Filters on `time` prune segments by their partitions.
#[derive(Debug, Clone)]
pub struct SpanMetricsTable {
    reader: Reader,
}

impl SpanMetricsTable {
    /// The table over the database `reader` reads.
    pub fn new(reader: Reader) -> Self {
        SpanMetricsTable { reader }
    }
}

#[async_trait]
impl TableProvider for SpanMetricsTable {
    fn schema(&self) -> SchemaRef {
        scrydb_engine::rollup::schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = statement_snapshot(state, &self.reader);
        let range = time_range(filters);
        let batches = snapshot
            .span_metrics((range != TimeRange::all()).then_some(range))
            .map_err(crate::Error::from)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

/// `exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, q)`:
/// aggregates OpenTelemetry exponential histograms (the columns of `span_metrics`, and of
/// `metrics` rows of type `exponential_histogram`) and returns their `q` quantile
/// (`0 <= q <= 1`) as a double, defined as `approx_percentile_cont` defines it (position
/// `q * (count - 1)`, interpolated between the two values around it), each value taken as
/// the geometric middle of its bucket: within half a bucket of the exact value (1.1% at
/// `span_metrics`' scale 5); 0 in the zero bucket; null for no values. Histograms of different scales are merged
/// at the coarsest. Negative buckets are not considered (durations have none).
pub fn exp_histogram_quantile() -> AggregateUDF {
    let list = schema::list_of(DataType::UInt64);
    create_udaf(
        "exp_histogram_quantile",
        vec![
            DataType::Int32,
            DataType::UInt64,
            DataType::Int32,
            list,
            DataType::Float64,
        ],
        Arc::new(DataType::Float64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(QuantileAcc::default()))),
        Arc::new(vec![DataType::Binary, DataType::Float64]),
    )
}

/// The merged histogram so far and the quantile asked for.
#[derive(Debug, Default)]
struct QuantileAcc {
    hist: Option<ExpHistogram>,
    q: Option<f64>,
}

impl QuantileAcc {
    fn add(&mut self, h: &ExpHistogram) {
        match &mut self.hist {
            Some(mine) => mine.merge(h),
            None => self.hist = Some(h.clone()),
        }
    }

    fn set_q(&mut self, q: f64) -> Result<()> {
        if !(0.0..=1.0).contains(&q) {
            return exec_err!("exp_histogram_quantile: the quantile must be in [0, 1], not {q}");
        }
        self.q = Some(q);
        Ok(())
    }
}

impl Accumulator for QuantileAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let scale = values[0].as_primitive::<Int32Type>();
        let zero = values[1].as_primitive::<UInt64Type>();
        let offset = values[2].as_primitive::<Int32Type>();
        let counts = values[3].as_list::<i32>();
        let q = values[4].as_primitive::<Float64Type>();
        for i in 0..scale.len() {
            if !q.is_null(i) && self.q.is_none() {
                self.set_q(q.value(i))?;
            }
            if scale.is_null(i) || counts.is_null(i) {
                continue;
            }
            // OTLP's range of scales; beyond it the bucket arithmetic would be meaningless.
            if !(-10..=20).contains(&scale.value(i)) {
                return exec_err!(
                    "exp_histogram_quantile: scale {} is outside OpenTelemetry's -10..=20",
                    scale.value(i)
                );
            }
            let buckets = counts.value(i);
            let h = ExpHistogram {
                scale: scale.value(i),
                zero_count: if zero.is_null(i) { 0 } else { zero.value(i) },
                offset: if offset.is_null(i) {
                    0
                } else {
                    offset.value(i)
                },
                counts: buckets.as_primitive::<UInt64Type>().values().to_vec(),
            };
            self.add(&h);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let hists: &BinaryArray = states[0].as_binary::<i32>();
        let qs: &Float64Array = states[1].as_primitive::<Float64Type>();
        for i in 0..hists.len() {
            if !qs.is_null(i) && self.q.is_none() {
                self.set_q(qs.value(i))?;
            }
            if hists.is_null(i) {
                continue;
            }
            match ExpHistogram::from_bytes(hists.value(i)) {
                Some(h) => self.add(&h),
                None => return exec_err!("exp_histogram_quantile: a damaged partial state"),
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Binary(self.hist.as_ref().map(ExpHistogram::to_bytes)),
            ScalarValue::Float64(self.q),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let v = match (&self.hist, self.q) {
            (Some(h), Some(q)) => h.quantile(q),
            _ => None,
        };
        Ok(ScalarValue::Float64(v))
    }

    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.hist.as_ref().map_or(0, |h| 8 * h.counts.capacity())
    }
}
