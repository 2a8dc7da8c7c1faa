//! Span rollups: request, error and duration metrics of spans per 10 seconds, kept beside
//! each span segment (the `span_metrics` table).
//!
//! A rollup row counts the spans of one (10-second interval, `service_name`, `name`, `kind`,
//! `status_code`, root or not) group: how many, how many with status ERROR, the sum, minimum
//! and maximum of `duration_ns`, and the durations' distribution as an OpenTelemetry
//! **exponential histogram** (`scale`, `zero_count`, `positive_offset`,
//! `positive_bucket_counts`, the same columns and meaning as in the `metrics` table). Every
//! rollup is written at [`SCALE`], so histograms of different intervals and segments merge
//! exactly by adding bucket counts; a quantile read from a merged histogram is within
//! [`relative_error`] of the exact quantile of the values ([`ExpHistogram::quantile`]).
//!
//! Lifecycle (`docs/format.md`, "Span rollups"): a flush writes the rollup of each span
//! segment from its rows; a compaction writes the rollup of its output from its rows, or,
//! when an input was thinned, by merging the inputs' rollups, so the counts of spans that
//! thinning dropped survive; thinning writes the merged rollups of the partition it thins
//! (an output with no span left is still written, to carry them); retention deletes a
//! segment's rollup with it. A rollup file that is missing or damaged is rebuilt from the
//! segment's rows when it is needed (and by `scry reindex`), which for a thinned segment
//! counts only the spans thinning kept (the file itself is rewritten by `scry reindex`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringDictionaryBuilder, TimestampNanosecondArray, UInt64Array, UInt64Builder,
};
use arrow::datatypes::{
    DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, TimestampNanosecondType,
};

use crate::io::FileSystem;
use crate::manifest::SegmentMeta;
use crate::schema::{SPAN_KINDS, STATUS_CODES, Strings, dict_type, list_of, timestamp_type};
use crate::{Error, Result, Signal};

/// The exponential-histogram scale of every rollup: bucket `i` holds durations in
/// `(2^(i/32), 2^((i+1)/32)]` nanoseconds (2.2% wide).
pub const SCALE: i32 = 5;
/// The rollups' time granularity, 10 seconds, in nanoseconds: a row's `time` is the start
/// of its interval. Fine enough for the diagnosis's 10-second buckets; any multiple (a
/// minute, an hour) adds rows up exactly.
pub const INTERVAL_NS: i64 = 10_000_000_000;
/// Most buckets a merged histogram spans ([`ExpHistogram::merge`]); a duration histogram at
/// [`SCALE`] never needs more than 2,016.
pub const MAX_BUCKETS: usize = 4096;
/// `b"SCRYRUP\0"`: the magic of a rollup file.
pub const MAGIC: &[u8; 8] = b"SCRYRUP\0";
/// Rollup file format version.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 24;

/// Path of the rollup of the span segment at `segment_path`.
pub fn rollup_path(segment_path: &Path) -> PathBuf {
    segment_path.with_extension("rollup")
}

/// The largest relative difference between a quantile read from a histogram at `scale` and
/// the exact value it stands for: half a bucket's width, `2^(2^-scale / 2) - 1` (1.1% at
/// [`SCALE`]).
pub fn relative_error(scale: i32) -> f64 {
    (2f64).powf((2f64).powi(-scale) / 2.0) - 1.0
}

/// The schema of the `span_metrics` table (and of a rollup file's rows); documented column
/// by column in `docs/schema.md`.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("time", timestamp_type(), false),
                Field::new("service_name", dict_type(), false),
                Field::new("name", DataType::Utf8, false),
                Field::new("kind", dict_type(), false),
                Field::new("status_code", dict_type(), false),
                Field::new("is_root", DataType::Boolean, false),
                Field::new("count", DataType::Int64, false),
                Field::new("errors", DataType::Int64, false),
                Field::new("duration_sum_ns", DataType::Int64, false),
                Field::new("duration_min_ns", DataType::Int64, false),
                Field::new("duration_max_ns", DataType::Int64, false),
                Field::new("scale", DataType::Int32, false),
                Field::new("zero_count", DataType::UInt64, false),
                Field::new("positive_offset", DataType::Int32, false),
                Field::new("positive_bucket_counts", list_of(DataType::UInt64), false),
            ]))
        })
        .clone()
}

/// A base-2 exponential histogram of non-negative values, in OpenTelemetry's
/// representation (positive buckets only: values `<= 0` count as zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpHistogram {
    /// Bucket `i` holds values in `(2^(i/2^scale), 2^((i+1)/2^scale)]`.
    pub scale: i32,
    /// Values `<= 0`.
    pub zero_count: u64,
    /// Index of the first bucket of `counts`.
    pub offset: i32,
    /// Counts of consecutive buckets from `offset`.
    pub counts: Vec<u64>,
}

impl ExpHistogram {
    /// An empty histogram at `scale`.
    pub fn new(scale: i32) -> Self {
        ExpHistogram {
            scale,
            zero_count: 0,
            offset: 0,
            counts: Vec::new(),
        }
    }

    /// The bucket index of `v > 0` at `scale` (OpenTelemetry's mapping, exact at powers of
    /// two).
    pub fn index_of(v: f64, scale: i32) -> i32 {
        let (mantissa, exp) = frexp(v);
        let power_of_two = mantissa == 0.5;
        if scale <= 0 {
            // The index at scale 0, ceil(log2 v) - 1, then `-scale` halvings.
            let at_zero = if power_of_two { exp - 2 } else { exp - 1 };
            return at_zero >> (-scale).min(31);
        }
        if power_of_two {
            // An exact power of two, 2^(exp-1), is the upper bound of its bucket.
            return (((exp - 1) as i64) << scale) as i32 - 1;
        }
        let factor = (2f64).powi(scale);
        (v.log2() * factor).ceil() as i32 - 1
    }

    /// Counts `v` once.
    pub fn record(&mut self, v: i64) {
        if v <= 0 {
            self.zero_count += 1;
            return;
        }
        let i = Self::index_of(v as f64, self.scale);
        self.add_to_bucket(i, 1);
    }

    fn add_to_bucket(&mut self, i: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = i;
            self.counts.push(n);
            return;
        }
        if i < self.offset {
            let grow = (self.offset - i) as usize;
            let mut v = vec![0; grow];
            v.extend_from_slice(&self.counts);
            self.counts = v;
            self.offset = i;
        }
        let at = (i - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += n;
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.zero_count + self.counts.iter().sum::<u64>()
    }

    /// Lowers the scale by `by` (two buckets become one, `by` times).
    pub fn downscale(&mut self, by: u32) {
        if by == 0 {
            return;
        }
        let old = std::mem::take(&mut self.counts);
        let offset = i64::from(self.offset);
        self.scale = self.scale.saturating_sub(by.min(i32::MAX as u32) as i32);
        let by = by.min(63);
        for (k, n) in old.into_iter().enumerate() {
            if n > 0 {
                self.add_to_bucket(((offset + k as i64) >> by) as i32, n);
            }
        }
    }

    /// Adds every count of `other`, first bringing both to the lower of the two scales, and
    /// lower still while the buckets of both would span more than [`MAX_BUCKETS`] (as the
    /// OpenTelemetry SDKs bound theirs).
    pub fn merge(&mut self, other: &ExpHistogram) {
        let mut other = std::borrow::Cow::Borrowed(other);
        if other.scale > self.scale {
            let by = (other.scale as i64 - self.scale as i64).min(62) as u32;
            other.to_mut().downscale(by);
        } else if other.scale < self.scale {
            self.downscale((self.scale as i64 - other.scale as i64).min(62) as u32);
        }
        let span = |a: &ExpHistogram, b: &ExpHistogram| {
            let ends = |h: &ExpHistogram| {
                (!h.counts.is_empty())
                    .then(|| (h.offset as i64, h.offset as i64 + h.counts.len() as i64))
            };
            match (ends(a), ends(b)) {
                (Some((l1, h1)), Some((l2, h2))) => h1.max(h2) - l1.min(l2),
                _ => 0,
            }
        };
        while span(self, &other) > MAX_BUCKETS as i64 {
            self.downscale(1);
            other.to_mut().downscale(1);
        }
        self.zero_count += other.zero_count;
        for (k, &n) in other.counts.iter().enumerate() {
            if n > 0 {
                self.add_to_bucket(other.offset + k as i32, n);
            }
        }
    }

    /// The `q` quantile (`0 <= q <= 1`) the way `approx_percentile_cont` and NumPy's
    /// default define it: at position `q * (count - 1)` among the values in order,
    /// interpolating linearly between the two values around it; each value is taken as the
    /// geometric middle of its bucket (0 in the zero bucket). `None` for an empty histogram
    /// or a `q` outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let pos = q * (total - 1) as f64;
        let lo = pos.floor() as u64;
        let hi = (lo + 1).min(total - 1);
        let (a, b) = (self.value_at(lo)?, self.value_at(hi)?);
        Some(a + (b - a) * (pos - lo as f64))
    }

    /// The value of rank `k` (0-based) in order: the geometric middle of its bucket.
    fn value_at(&self, k: u64) -> Option<f64> {
        if k < self.zero_count {
            return Some(0.0);
        }
        let mut seen = self.zero_count;
        for (j, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen > k {
                let i = f64::from(self.offset + j as i32);
                return Some((2f64).powf((i + 0.5) / (2f64).powi(self.scale)));
            }
        }
        None
    }

    /// A compact byte encoding (for SQL aggregate states): scale, zero count, offset, bucket
    /// count, buckets, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + 8 * self.counts.len());
        out.extend_from_slice(&self.scale.to_le_bytes());
        out.extend_from_slice(&self.zero_count.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&(self.counts.len() as u32).to_le_bytes());
        for c in &self.counts {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out
    }

    /// Decodes [`ExpHistogram::to_bytes`]; `None` for bytes it did not write.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let i32_at = |at: usize| Some(i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
        let u64_at = |at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
        let scale = i32_at(0)?;
        let zero_count = u64_at(4)?;
        let offset = i32_at(12)?;
        let n = u32::from_le_bytes(b.get(16..20)?.try_into().ok()?) as usize;
        if b.len() != 20 + 8 * n {
            return None;
        }
        let counts = (0..n).map(|k| u64_at(20 + 8 * k)).collect::<Option<_>>()?;
        Some(ExpHistogram {
            scale,
            zero_count,
            offset,
            counts,
        })
    }
}

/// `v = m * 2^e` with `0.5 <= m < 1` for finite `v > 0`.
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale up first (durations never get here; kept exact anyway).
        let (m, e) = frexp(v * (2f64).powi(64));
        return (m, e - 64);
    }
    let m = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (m, exp - 1022)
}

/// The group a rollup row counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    interval: i64,
    service: String,
    name: String,
    kind: u8,
    status: u8,
    root: bool,
}

/// What a rollup row accumulates.
#[derive(Debug, Clone)]
struct Acc {
    count: i64,
    errors: i64,
    sum: i64,
    min: i64,
    max: i64,
    hist: ExpHistogram,
}

impl Acc {
    fn new() -> Self {
        Acc {
            count: 0,
            errors: 0,
            sum: 0,
            min: i64::MAX,
            max: i64::MIN,
            hist: ExpHistogram::new(SCALE),
        }
    }

    fn merge(&mut self, o: &Acc) {
        self.count += o.count;
        self.errors += o.errors;
        self.sum = self.sum.saturating_add(o.sum);
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.hist.merge(&o.hist);
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| bad_column(name, "is missing"))
}

fn bad_column(name: &str, what: impl std::fmt::Display) -> Error {
    Error::invalid(
        Signal::Spans,
        name,
        None,
        format!("span rollups: column `{name}` {what}"),
    )
}

/// Span rollups being built or merged: one accumulator per group.
#[derive(Debug, Clone, Default)]
pub struct Rollups {
    groups: HashMap<Key, Acc>,
}

/// The columns of `spans` a rollup is computed from.
pub const SPAN_COLUMNS: &[&str] = &[
    "time",
    "duration_ns",
    "parent_span_id",
    "service_name",
    "name",
    "kind",
    "status_code",
];

impl Rollups {
    /// No groups.
    pub fn new() -> Self {
        Self::default()
    }

    /// Groups held.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no group is held.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Counts the spans of `batch`, which has (at least) the columns [`SPAN_COLUMNS`] as in
    /// the `spans` schema.
    pub fn add_spans(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let time = column(batch, "time")?
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| bad_column("time", "is not a nanosecond timestamp"))?;
        let dur = column(batch, "duration_ns")?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| bad_column("duration_ns", "is not Int64"))?;
        let parent = column(batch, "parent_span_id")?;
        let (service, name) = (
            Strings::of(batch, Signal::Spans, "service_name")?,
            Strings::of(batch, Signal::Spans, "name")?,
        );
        let (kind, status) = (
            Strings::of(batch, Signal::Spans, "kind")?,
            Strings::of(batch, Signal::Spans, "status_code")?,
        );
        let code =
            |values: &[&str], s: &str| values.iter().position(|v| *v == s).unwrap_or(0) as u8;
        let error = code(STATUS_CODES, "ERROR");
        // Groups of this batch keyed by borrowed strings, folded in once at the end.
        let mut local: HashMap<(i64, &str, &str, u8, u8, bool), Acc> = HashMap::new();
        for i in 0..batch.num_rows() {
            let t = time.value(i);
            let interval = t.div_euclid(INTERVAL_NS).saturating_mul(INTERVAL_NS);
            let key = (
                interval,
                service.get(i),
                name.get(i),
                code(SPAN_KINDS, kind.get(i)),
                code(STATUS_CODES, status.get(i)),
                parent.is_null(i),
            );
            let acc = local.entry(key).or_insert_with(Acc::new);
            let d = dur.value(i);
            acc.count += 1;
            acc.errors += i64::from(key.4 == error);
            acc.sum = acc.sum.saturating_add(d);
            acc.min = acc.min.min(d);
            acc.max = acc.max.max(d);
            acc.hist.record(d);
        }
        for ((interval, service, name, kind, status, root), acc) in local {
            let key = Key {
                interval,
                service: service.to_string(),
                name: name.to_string(),
                kind,
                status,
                root,
            };
            match self.groups.get_mut(&key) {
                Some(a) => a.merge(&acc),
                None => {
                    self.groups.insert(key, acc);
                }
            }
        }
        Ok(())
    }

    /// Adds every row of `batch`, rows of the `span_metrics` schema ([`schema`]).
    pub fn add_rollups(&mut self, batch: &RecordBatch) -> Result<()> {
        let bad = |what: &str| {
            Error::invalid(
                Signal::Spans,
                what,
                None,
                format!("span rollups: column `{what}` does not match the span_metrics schema"),
            )
        };
        if batch.schema().fields() != schema().fields() {
            return Err(bad("*"));
        }
        let c = |i: usize| batch.column(i);
        let time = c(0).as_primitive::<TimestampNanosecondType>();
        let service = Strings::of(batch, Signal::Spans, "service_name")?;
        let name = Strings::of(batch, Signal::Spans, "name")?;
        let kind = Strings::of(batch, Signal::Spans, "kind")?;
        let status = Strings::of(batch, Signal::Spans, "status_code")?;
        let root = c(5).as_boolean();
        let ints = |i: usize| c(i).as_primitive::<Int64Type>();
        let (count, errors, sum, min, max) = (ints(6), ints(7), ints(8), ints(9), ints(10));
        let scale = c(11).as_primitive::<Int32Type>();
        let zero = c(12).as_primitive::<arrow::datatypes::UInt64Type>();
        let offset = c(13).as_primitive::<Int32Type>();
        let buckets = c(14).as_list::<i32>();
        let code =
            |values: &[&str], s: &str| values.iter().position(|v| *v == s).unwrap_or(0) as u8;
        for i in 0..batch.num_rows() {
            let counts = buckets.value(i);
            let acc = Acc {
                count: count.value(i),
                errors: errors.value(i),
                sum: sum.value(i),
                min: min.value(i),
                max: max.value(i),
                hist: ExpHistogram {
                    scale: scale.value(i),
                    zero_count: zero.value(i),
                    offset: offset.value(i),
                    counts: counts
                        .as_primitive::<arrow::datatypes::UInt64Type>()
                        .values()
                        .to_vec(),
                },
            };
            let key = Key {
                interval: time.value(i),
                service: service.get(i).to_string(),
                name: name.get(i).to_string(),
                kind: code(SPAN_KINDS, kind.get(i)),
                status: code(STATUS_CODES, status.get(i)),
                root: root.value(i),
            };
            self.groups
                .entry(key)
                .and_modify(|a| a.merge(&acc))
                .or_insert(acc);
        }
        Ok(())
    }

    /// Adds every group of `other`.
    pub fn merge(&mut self, other: &Rollups) {
        for (k, acc) in &other.groups {
            self.groups
                .entry(k.clone())
                .and_modify(|a| a.merge(acc))
                .or_insert_with(|| acc.clone());
        }
    }

    /// The rows, in the `span_metrics` schema, sorted by (interval, service, operation,
    /// kind, status, root), keeping only intervals starting in `[start, end)`.
    pub fn to_batch_in(&self, start: i64, end: i64) -> RecordBatch {
        let mut keys: Vec<&Key> = self
            .groups
            .keys()
            .filter(|k| k.interval >= start && k.interval < end)
            .collect();
        keys.sort_unstable();
        let n = keys.len();
        let mut service = StringDictionaryBuilder::<Int32Type>::new();
        let mut kind = StringDictionaryBuilder::<Int32Type>::new();
        let mut status = StringDictionaryBuilder::<Int32Type>::new();
        let mut buckets = ListBuilder::new(UInt64Builder::new()).with_field(Arc::new(Field::new(
            "item",
            DataType::UInt64,
            true,
        )));
        let mut accs = Vec::with_capacity(n);
        for k in &keys {
            let a = &self.groups[*k];
            service.append_value(&k.service);
            kind.append_value(SPAN_KINDS[usize::from(k.kind)]);
            status.append_value(STATUS_CODES[usize::from(k.status)]);
            buckets.values().append_slice(&a.hist.counts);
            buckets.append(true);
            accs.push(a);
        }
        let ints = |f: &dyn Fn(&Acc) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(accs.iter().map(|a| f(a))))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampNanosecondArray::from_iter_values(keys.iter().map(|k| k.interval))
                    .with_timezone("UTC"),
            ),
            Arc::new(service.finish()),
            Arc::new(StringArray::from_iter_values(keys.iter().map(|k| &k.name))),
            Arc::new(kind.finish()),
            Arc::new(status.finish()),
            Arc::new(BooleanArray::from_iter(keys.iter().map(|k| Some(k.root)))),
            ints(&|a| a.count),
            ints(&|a| a.errors),
            ints(&|a| a.sum),
            ints(&|a| a.min),
            ints(&|a| a.max),
            Arc::new(Int32Array::from_iter_values(
                accs.iter().map(|a| a.hist.scale),
            )),
            Arc::new(UInt64Array::from_iter_values(
                accs.iter().map(|a| a.hist.zero_count),
            )),
            Arc::new(Int32Array::from_iter_values(
                accs.iter().map(|a| a.hist.offset),
            )),
            Arc::new(buckets.finish()),
        ];
        RecordBatch::try_new(schema(), columns).expect("columns match the span_metrics schema")
    }

    /// Every row, as [`Rollups::to_batch_in`] over all time.
    pub fn to_batch(&self) -> RecordBatch {
        self.to_batch_in(i64::MIN, i64::MAX)
    }
}

/// Encodes rollup rows as a rollup file (`docs/format.md`, "Span rollups").
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut ipc = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut ipc, &batch.schema())?;
        w.write(batch)?;
        w.finish()?;
    }
    crate::io::seal(MAGIC, VERSION, &ipc)
}

/// Decodes a rollup file read from `path` (for messages); damage is
/// [`Error::Corrupted`], a newer format [`Error::UnsupportedVersion`].
pub fn decode(path: &Path, bytes: &[u8]) -> Result<RecordBatch> {
    let corrupt = |at: Option<u64>, why: &str| Error::corrupted(path, at, why.to_string());
    let ipc = crate::io::unseal(path, bytes, MAGIC, VERSION, "span rollup")?;
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
        .map_err(|e| corrupt(Some(HEADER_LEN as u64), &format!("payload: {e}")))?;
    if reader.schema().fields() != schema().fields() {
        return Err(corrupt(None, "rows do not have the span_metrics schema"));
    }
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(|e| corrupt(None, &format!("payload: {e}")))?);
    }
    Ok(arrow::compute::concat_batches(&schema(), &batches)?)
}

/// Writes the rollup of the span segment at `segment_path` durably (temporary name, fsync,
/// rename; the caller fsyncs the directory); returns its size.
pub fn write(fs: &Arc<dyn FileSystem>, segment_path: &Path, rollups: &Rollups) -> Result<u64> {
    let bytes = encode(&rollups.to_batch())?;
    crate::io::write_durably(fs.as_ref(), &rollup_path(segment_path), &bytes)?;
    Ok(bytes.len() as u64)
}

/// Reads the rollup file of the span segment `seg`: `Ok(None)` when it does not exist.
pub fn read(fs: &dyn FileSystem, db_dir: &Path, seg: &SegmentMeta) -> Result<Option<RecordBatch>> {
    let path = rollup_path(&db_dir.join(&seg.path));
    let bytes = match fs.read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    decode(&path, &bytes).map(Some)
}

/// Computes the rollup of the span segment `seg` from its rows (reading only
/// [`SPAN_COLUMNS`]).
pub fn from_rows(fs: &dyn FileSystem, db_dir: &Path, seg: &SegmentMeta) -> Result<Rollups> {
    let mut r = Rollups::new();
    let stream = crate::segment::reader::SegmentStream::open(
        fs,
        db_dir,
        seg,
        Some(SPAN_COLUMNS),
        crate::segment::merge::MERGE_BATCH_ROWS,
    )?;
    for b in stream {
        r.add_spans(&b?)?;
    }
    Ok(r)
}

/// The rollup rows of span segment `seg` (the `span_metrics` schema): its rollup file, or,
/// when that is missing or damaged ([`Error::Corrupted`], reported in the log), computed
/// from its rows — which for a thinned segment counts only the spans thinning kept. Other
/// errors (I/O, a newer format) are returned: the caller retries rather than undercount.
pub fn batch_of_segment(
    fs: &dyn FileSystem,
    db_dir: &Path,
    seg: &SegmentMeta,
) -> Result<RecordBatch> {
    match read(fs, db_dir, seg) {
        Ok(Some(batch)) => Ok(batch),
        Ok(None) => Ok(from_rows(fs, db_dir, seg)?.to_batch()),
        Err(e @ Error::Corrupted { .. }) => {
            log::warn!(
                "span rollup of segment {} unusable, computing it from the segment's rows: {e} \
                 (`scry reindex` rewrites it)",
                seg.path
            );
            Ok(from_rows(fs, db_dir, seg)?.to_batch())
        }
        Err(e) => Err(e),
    }
}

/// [`batch_of_segment`] as [`Rollups`], to merge.
pub fn of_segment(fs: &dyn FileSystem, db_dir: &Path, seg: &SegmentMeta) -> Result<Rollups> {
    let mut r = Rollups::new();
    r.add_rollups(&batch_of_segment(fs, db_dir, seg)?)?;
    Ok(r)
}

/// Whether span segment `seg` needs its rollup file written by `scry reindex`: it is
/// missing or damaged. A valid one is kept (for a thinned segment it counts spans its rows
/// no longer hold); I/O errors and newer formats are returned.
pub fn needs_rebuild(fs: &dyn FileSystem, db_dir: &Path, seg: &SegmentMeta) -> Result<bool> {
    match read(fs, db_dir, seg) {
        Ok(Some(_)) => Ok(false),
        Ok(None) | Err(Error::Corrupted { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Rewrites the rollup file of span segment `seg` from its rows (for `scry reindex`).
pub fn rebuild(fs: &Arc<dyn FileSystem>, db_dir: &Path, seg: &SegmentMeta) -> Result<u64> {
    let r = from_rows(fs.as_ref(), db_dir, seg)?;
    let path = db_dir.join(&seg.path);
    let size = write(fs, &path, &r)?;
    let dir = path
        .parent()
        .expect("segments are in a partition directory");
    fs.sync_dir(dir).map_err(|e| Error::io("fsync", dir, e))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_indexes_follow_the_otlp_mapping() {
        // Powers of two are the upper bounds of their buckets.
        assert_eq!(ExpHistogram::index_of(1.0, 0), -1);
        assert_eq!(ExpHistogram::index_of(2.0, 0), 0);
        assert_eq!(ExpHistogram::index_of(3.0, 0), 1);
        assert_eq!(ExpHistogram::index_of(4.0, 0), 1);
        assert_eq!(ExpHistogram::index_of(1024.0, SCALE), 10 * 32 - 1);
        // Negative scales: bucket i holds (4^i, 4^(i+1)] at scale -1.
        assert_eq!(ExpHistogram::index_of(4.0, -1), 0);
        assert_eq!(ExpHistogram::index_of(5.0, -1), 1);
        assert_eq!(ExpHistogram::index_of(16.0, -1), 1);
        assert_eq!(ExpHistogram::index_of(17.0, -1), 2);
        for v in [1.5f64, 7.0, 1e3, 123_456.0, 9.9e9] {
            let i = ExpHistogram::index_of(v, SCALE);
            let base = (2f64).powf(1.0 / 32.0);
            assert!(base.powi(i) < v * (1.0 + 1e-12) && v <= base.powi(i + 1) * (1.0 + 1e-12));
        }
    }

    /// The interpolated quantile of sorted `values` (what `quantile` estimates).
    fn exact_quantile(values: &[i64], q: f64) -> f64 {
        let pos = q * (values.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(values.len() - 1);
        let (a, b) = (values[lo] as f64, values[hi] as f64);
        a + (b - a) * (pos - lo as f64)
    }

    #[test]
    fn merged_histograms_give_the_quantiles_of_all_values() {
        let mut rng = 0x1234_5678u64;
        let mut all = ExpHistogram::new(SCALE);
        let mut parts = [ExpHistogram::new(SCALE), ExpHistogram::new(SCALE)];
        let mut values = Vec::new();
        for k in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let v = (rng % 5_000_000) as i64 + if k % 50 == 0 { 0 } else { 1_000 };
            values.push(v);
            all.record(v);
            parts[k % 2].record(v);
        }
        let mut merged = parts[0].clone();
        merged.merge(&parts[1]);
        assert_eq!(merged, all);
        values.sort_unstable();
        for q in [0.0, 0.01, 0.5, 0.9, 0.99, 1.0] {
            let exact = exact_quantile(&values, q);
            let got = merged.quantile(q).expect("not empty");
            assert!(
                (got - exact).abs() <= exact * relative_error(SCALE) + 1e-9,
                "q {q}: {got} vs {exact}"
            );
        }
        // Durations of zero (or negative) count in the zero bucket, read back as 0.
        let mut z = ExpHistogram::new(SCALE);
        for v in [0, -5, 100] {
            z.record(v);
        }
        assert_eq!(
            (z.zero_count, z.quantile(0.0), z.quantile(0.5)),
            (2, Some(0.0), Some(0.0))
        );
        // Merging across scales downscales to the coarser one.
        let mut coarse = ExpHistogram::new(2);
        coarse.record(1000);
        coarse.merge(&all);
        assert_eq!(coarse.scale, 2);
        assert_eq!(coarse.count(), all.count() + 1);
        assert_eq!(ExpHistogram::from_bytes(&coarse.to_bytes()), Some(coarse));
        // Histograms far apart merge into a bounded number of buckets.
        let far = |offset| ExpHistogram {
            scale: 20,
            zero_count: 0,
            offset,
            counts: vec![1],
        };
        let mut a = far(-1_000_000_000);
        a.merge(&far(1_000_000_000));
        assert!(
            a.counts.len() <= MAX_BUCKETS && a.count() == 2,
            "{}",
            a.counts.len()
        );
    }
}
