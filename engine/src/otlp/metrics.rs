//! `ExportMetricsServiceRequest` → the `metrics` batch: one row per data point, all five
//! metric types in one table.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder, StringDictionaryBuilder, TimestampNanosecondBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow::datatypes::Int32Type;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    SummaryDataPoint, metric::Data, number_data_point,
};

use super::columns::{
    Attrs, Context, Exemplars, Quantiles, ResourceScope, append_attrs, append_opt_str,
    service_name, ts_builder,
};
use super::{Converted, Rejections, check_enum, check_id, check_time};
use crate::Signal;
use crate::schema::{self, METRIC_TYPES, TEMPORALITIES};

/// Data points of a metric.
pub(super) fn point_count(m: &Metric) -> usize {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// One data point of any type.
enum Point<'a> {
    Number(&'a NumberDataPoint),
    Histogram(&'a HistogramDataPoint),
    ExpHistogram(&'a ExponentialHistogramDataPoint),
    Summary(&'a SummaryDataPoint),
}

impl Point<'_> {
    fn times(&self) -> (u64, u64) {
        match self {
            Point::Number(p) => (p.time_unix_nano, p.start_time_unix_nano),
            Point::Histogram(p) => (p.time_unix_nano, p.start_time_unix_nano),
            Point::ExpHistogram(p) => (p.time_unix_nano, p.start_time_unix_nano),
            Point::Summary(p) => (p.time_unix_nano, p.start_time_unix_nano),
        }
    }
    fn attributes(&self) -> &[KeyValue] {
        match self {
            Point::Number(p) => &p.attributes,
            Point::Histogram(p) => &p.attributes,
            Point::ExpHistogram(p) => &p.attributes,
            Point::Summary(p) => &p.attributes,
        }
    }
    fn flags(&self) -> u32 {
        match self {
            Point::Number(p) => p.flags,
            Point::Histogram(p) => p.flags,
            Point::ExpHistogram(p) => p.flags,
            Point::Summary(p) => p.flags,
        }
    }
    fn exemplars(&self) -> &[Exemplar] {
        match self {
            Point::Number(p) => &p.exemplars,
            Point::Histogram(p) => &p.exemplars,
            Point::ExpHistogram(p) => &p.exemplars,
            Point::Summary(_) => &[],
        }
    }
}

/// What the metric says about all its points.
struct MetricInfo<'a> {
    metric: &'a Metric,
    type_name: &'static str,
    temporality: Option<i32>,
    monotonic: Option<bool>,
}

struct Builder {
    time: TimestampNanosecondBuilder,
    start: TimestampNanosecondBuilder,
    name: StringBuilder,
    description: StringBuilder,
    unit: StringBuilder,
    metric_type: StringDictionaryBuilder<Int32Type>,
    temporality: StringDictionaryBuilder<Int32Type>,
    monotonic: BooleanBuilder,
    flags: UInt32Builder,
    attrs: Attrs,
    value: Float64Builder,
    value_int: Int64Builder,
    count: UInt64Builder,
    sum: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
    bucket_counts: ListBuilder<UInt64Builder>,
    explicit_bounds: ListBuilder<Float64Builder>,
    scale: Int32Builder,
    zero_count: UInt64Builder,
    zero_threshold: Float64Builder,
    positive_offset: Int32Builder,
    positive_counts: ListBuilder<UInt64Builder>,
    negative_offset: Int32Builder,
    negative_counts: ListBuilder<UInt64Builder>,
    quantiles: Quantiles,
    exemplars: Exemplars,
    metadata: Attrs,
    common: ResourceScope,
}

impl Builder {
    fn new() -> Self {
        Builder {
            time: ts_builder(),
            start: ts_builder(),
            name: StringBuilder::new(),
            description: StringBuilder::new(),
            unit: StringBuilder::new(),
            metric_type: StringDictionaryBuilder::new(),
            temporality: StringDictionaryBuilder::new(),
            monotonic: BooleanBuilder::new(),
            flags: UInt32Builder::new(),
            attrs: schema::attributes_builder(),
            value: Float64Builder::new(),
            value_int: Int64Builder::new(),
            count: UInt64Builder::new(),
            sum: Float64Builder::new(),
            min: Float64Builder::new(),
            max: Float64Builder::new(),
            bucket_counts: ListBuilder::new(UInt64Builder::new()),
            explicit_bounds: ListBuilder::new(Float64Builder::new()),
            scale: Int32Builder::new(),
            zero_count: UInt64Builder::new(),
            zero_threshold: Float64Builder::new(),
            positive_offset: Int32Builder::new(),
            positive_counts: ListBuilder::new(UInt64Builder::new()),
            negative_offset: Int32Builder::new(),
            negative_counts: ListBuilder::new(UInt64Builder::new()),
            quantiles: Quantiles::default(),
            exemplars: Exemplars::default(),
            metadata: schema::attributes_builder(),
            common: ResourceScope::default(),
        }
    }

    /// Checks a point; returns its time and start time.
    fn check(info: &MetricInfo<'_>, p: &Point<'_>) -> Result<(i64, Option<i64>), String> {
        super::decode_error(p.attributes())?;
        if info.metric.name.is_empty() {
            return Err("the metric has no name".into());
        }
        if let Some(t) = info.temporality {
            check_enum("aggregation_temporality", t, TEMPORALITIES)?;
        }
        let (time, start) = p.times();
        let time = check_time("time_unix_nano", time)?;
        if time == 0 {
            return Err("time_unix_nano is missing (0)".into());
        }
        let start = check_time("start_time_unix_nano", start)?;
        for (i, e) in p.exemplars().iter().enumerate() {
            check_id(&format!("exemplars[{i}].trace_id"), &e.trace_id, 16, true)?;
            check_id(&format!("exemplars[{i}].span_id"), &e.span_id, 8, true)?;
            check_time(&format!("exemplars[{i}].time_unix_nano"), e.time_unix_nano)?;
        }
        match p {
            Point::Number(n) if n.value.is_none() => {
                return Err("the point has neither as_double nor as_int".into());
            }
            // Both empty is a histogram without buckets (only count and sum), which is valid.
            Point::Histogram(h)
                if (!h.explicit_bounds.is_empty() || !h.bucket_counts.is_empty())
                    && h.bucket_counts.len() != h.explicit_bounds.len() + 1 =>
            {
                return Err(format!(
                    "bucket_counts has {} entries for {} explicit_bounds (want one more)",
                    h.bucket_counts.len(),
                    h.explicit_bounds.len()
                ));
            }
            _ => {}
        }
        Ok((time, (start != 0).then_some(start)))
    }

    fn append(
        &mut self,
        info: &MetricInfo<'_>,
        p: &Point<'_>,
        (time, start): (i64, Option<i64>),
        ctx: &Context<'_>,
    ) {
        let m = info.metric;
        self.time.append_value(time);
        self.start.append_option(start);
        self.name.append_value(&m.name);
        append_opt_str(&mut self.description, &m.description);
        append_opt_str(&mut self.unit, &m.unit);
        self.metric_type.append_value(info.type_name);
        match info.temporality {
            Some(t) => self.temporality.append_value(TEMPORALITIES[t as usize]),
            None => self.temporality.append_null(),
        }
        self.monotonic.append_option(info.monotonic);
        self.flags.append_value(p.flags());
        append_attrs(&mut self.attrs, p.attributes());

        let (mut value, mut value_int, mut count, mut sum) = (None, None, None, None);
        let (mut min, mut max) = (None, None);
        let (mut buckets, mut bounds): (Option<&[u64]>, Option<&[f64]>) = (None, None);
        let (mut scale, mut zero_count, mut zero_threshold) = (None, None, None);
        let (mut pos, mut neg) = (None, None);
        match p {
            Point::Number(n) => match n.value {
                Some(number_data_point::Value::AsDouble(d)) => value = Some(d),
                Some(number_data_point::Value::AsInt(i)) => value_int = Some(i),
                None => {}
            },
            Point::Histogram(h) => {
                count = Some(h.count);
                sum = h.sum;
                min = h.min;
                max = h.max;
                buckets = Some(&h.bucket_counts);
                bounds = Some(&h.explicit_bounds);
            }
            Point::ExpHistogram(h) => {
                count = Some(h.count);
                sum = h.sum;
                min = h.min;
                max = h.max;
                scale = Some(h.scale);
                zero_count = Some(h.zero_count);
                zero_threshold = Some(h.zero_threshold);
                pos = Some(
                    h.positive
                        .as_ref()
                        .map(|b| (b.offset, &b.bucket_counts[..])),
                );
                neg = Some(
                    h.negative
                        .as_ref()
                        .map(|b| (b.offset, &b.bucket_counts[..])),
                );
            }
            Point::Summary(s) => {
                count = Some(s.count);
                sum = Some(s.sum);
            }
        }
        self.value.append_option(value);
        self.value_int.append_option(value_int);
        self.count.append_option(count);
        self.sum.append_option(sum);
        self.min.append_option(min);
        self.max.append_option(max);
        append_list(&mut self.bucket_counts, buckets);
        append_list(&mut self.explicit_bounds, bounds);
        self.scale.append_option(scale);
        self.zero_count.append_option(zero_count);
        self.zero_threshold.append_option(zero_threshold);
        // An exponential histogram without a positive (negative) range has offset 0 and no
        // buckets there; other types have nulls.
        fn range(r: Option<Option<(i32, &[u64])>>) -> (Option<i32>, Option<&[u64]>) {
            match r {
                Some(Some((offset, counts))) => (Some(offset), Some(counts)),
                Some(None) => (Some(0), Some(&[])),
                None => (None, None),
            }
        }
        let (po, pc) = range(pos);
        let (no, nc) = range(neg);
        self.positive_offset.append_option(po);
        append_list(&mut self.positive_counts, pc);
        self.negative_offset.append_option(no);
        append_list(&mut self.negative_counts, nc);
        match p {
            Point::Summary(s) => {
                let q: Vec<(f64, f64)> = s
                    .quantile_values
                    .iter()
                    .map(|q| (q.quantile, q.value))
                    .collect();
                self.quantiles.push_row(&q);
            }
            _ => self.quantiles.push_null(),
        }
        for e in p.exemplars() {
            self.exemplars.push(e);
        }
        self.exemplars.end_row();
        append_attrs(&mut self.metadata, &m.metadata);
        self.common.append(ctx);
    }

    fn finish(mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.start.finish()),
            self.common.finish_service(),
            Arc::new(self.name.finish()),
            Arc::new(self.description.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.metric_type.finish()),
            Arc::new(self.temporality.finish()),
            Arc::new(self.monotonic.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.attrs.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.value_int.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.sum.finish()),
            Arc::new(self.min.finish()),
            Arc::new(self.max.finish()),
            Arc::new(self.bucket_counts.finish()),
            Arc::new(self.explicit_bounds.finish()),
            Arc::new(self.scale.finish()),
            Arc::new(self.zero_count.finish()),
            Arc::new(self.zero_threshold.finish()),
            Arc::new(self.positive_offset.finish()),
            Arc::new(self.positive_counts.finish()),
            Arc::new(self.negative_offset.finish()),
            Arc::new(self.negative_counts.finish()),
            self.quantiles.finish(),
            self.exemplars.finish(),
            Arc::new(self.metadata.finish()),
        ];
        self.common.finish_into(&mut columns);
        RecordBatch::try_new(schema::schema(Signal::Metrics), columns)
            .expect("the metric builders follow the metrics schema")
    }
}

fn append_list<B, T>(b: &mut ListBuilder<B>, values: Option<&[T]>)
where
    B: arrow::array::ArrayBuilder + Extend<Option<T>>,
    T: Copy,
{
    match values {
        Some(v) => {
            b.values().extend(v.iter().map(|x| Some(*x)));
            b.append(true);
        }
        None => b.append(false),
    }
}

fn points(m: &Metric) -> (MetricInfo<'_>, Vec<Point<'_>>) {
    let info = |type_idx: usize, temporality: Option<i32>, monotonic: Option<bool>| MetricInfo {
        metric: m,
        type_name: METRIC_TYPES[type_idx],
        temporality,
        monotonic,
    };
    match &m.data {
        Some(Data::Gauge(g)) => (
            info(0, None, None),
            g.data_points.iter().map(Point::Number).collect(),
        ),
        Some(Data::Sum(s)) => (
            info(1, Some(s.aggregation_temporality), Some(s.is_monotonic)),
            s.data_points.iter().map(Point::Number).collect(),
        ),
        Some(Data::Histogram(h)) => (
            info(2, Some(h.aggregation_temporality), None),
            h.data_points.iter().map(Point::Histogram).collect(),
        ),
        Some(Data::ExponentialHistogram(h)) => (
            info(3, Some(h.aggregation_temporality), None),
            h.data_points.iter().map(Point::ExpHistogram).collect(),
        ),
        Some(Data::Summary(s)) => (
            info(4, None, None),
            s.data_points.iter().map(Point::Summary).collect(),
        ),
        None => (info(0, None, None), Vec::new()),
    }
}

pub(super) fn convert(req: &ExportMetricsServiceRequest) -> Converted {
    let mut b = Builder::new();
    let mut rejected = Rejections::default();
    for (ri, rm) in req.resource_metrics.iter().enumerate() {
        let service = service_name(rm.resource.as_ref());
        for (si, sm) in rm.scope_metrics.iter().enumerate() {
            let ctx = Context {
                resource: rm.resource.as_ref(),
                service: &service,
                resource_schema_url: &rm.schema_url,
                scope: sm.scope.as_ref(),
                scope_schema_url: &sm.schema_url,
            };
            for (mi, metric) in sm.metrics.iter().enumerate() {
                let (info, points) = points(metric);
                for (pi, p) in points.iter().enumerate() {
                    match Builder::check(&info, p) {
                        Ok(times) => b.append(&info, p, times, &ctx),
                        Err(reason) => rejected.reject(
                            || {
                                format!(
                                    "resource_metrics[{ri}].scope_metrics[{si}].metrics[{mi}] \
                                     ({:?}).data_points[{pi}]",
                                    metric.name
                                )
                            },
                            reason,
                        ),
                    }
                }
            }
        }
    }
    Converted {
        signal: Signal::Metrics,
        batch: b.finish(),
        rejected: rejected.count,
        errors: rejected.errors,
    }
}
