//! Log patterns kept beside each log segment (`<id>.lpat`, `docs/format.md` section 4d) and
//! the `log_patterns` query over a time window.
//!
//! At flush (and compaction, and `scry reindex`) a segment's bodies go through a fresh
//! [`Miner`] in the segment's row order; the file keeps each template's service, text,
//! count, first and last time and an example line, and **each row's template**. A query
//! ([`Snapshot::log_patterns`]) counts the rows of each template in a window and in a
//! baseline window — from the summaries when a segment lies wholly inside or outside a
//! window, from the rows' template ids and times when it straddles one — mines the
//! unflushed logs the same way, and merges the templates of all of them ([`Merger`]).
//!
//! A segment whose file is missing (written with `Options::log_patterns(false)` or before
//! log patterns existed) or damaged is mined from its rows when a query needs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampNanosecondType};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::patterns::{Merger, Miner, WILDCARD};
use crate::io::FileSystem;
use crate::manifest::SegmentMeta;
use crate::schema::{Strings, timestamp_type};
use crate::snapshot::TimeRange;
use crate::{Error, Result, Signal, Snapshot};

/// `b"SCRYPAT\0"`: the magic of a log pattern file.
pub const MAGIC: &[u8; 8] = b"SCRYPAT\0";
/// Log pattern file format version.
pub const VERSION: u32 = 1;
/// Bytes of a template's example line kept (cut at a char boundary).
pub const EXAMPLE_BYTES: usize = 512;
/// A template whose rate in the window is at least this many times its baseline rate (and
/// that has at least [`SURGE_MIN_COUNT`] lines in the window) is surging.
pub const SURGE_FACTOR: f64 = 2.0;
/// Lines in the window a template needs before it can be surging.
pub const SURGE_MIN_COUNT: u64 = 5;

/// Columns of the logs a pattern miner reads.
const COLUMNS: &[&str] = &["time", "service_name", "body"];

/// Path of the pattern file of the log segment at `segment_path`.
pub fn pattern_path(segment_path: &Path) -> PathBuf {
    segment_path.with_extension("lpat")
}

/// One template of a segment: its service, text ([`Miner::template`]), how many rows have
/// it, the times of the first and last and the body of one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSummary {
    /// `service_name` of its lines ("" for none).
    pub service: String,
    /// The template: tokens separated by single spaces, `<*>` for variables.
    pub template: String,
    /// Rows with this template.
    pub count: u64,
    /// Smallest `time` of those rows, ns since the epoch.
    pub first_seen: i64,
    /// Largest `time` of those rows.
    pub last_seen: i64,
    /// The body of the first row with this template (at most [`EXAMPLE_BYTES`]).
    pub example: String,
}

/// The templates of one log segment and each row's template, by row position in the
/// segment's order: `rows[i]` indexes `templates`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentPatterns {
    /// The templates, in the order the miner started them.
    pub templates: Vec<TemplateSummary>,
    /// Per row, its template.
    pub rows: Vec<u32>,
}

fn templates_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("service", DataType::Utf8, false),
        Field::new("template", DataType::Utf8, false),
        Field::new("count", DataType::UInt64, false),
        Field::new("first_seen", DataType::Int64, false),
        Field::new("last_seen", DataType::Int64, false),
        Field::new("example", DataType::Utf8, false),
    ]))
}

fn rows_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "template",
        DataType::UInt32,
        false,
    )]))
}

fn ipc(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
    let mut w = arrow::ipc::writer::StreamWriter::try_new(out, &batch.schema())?;
    w.write(batch)?;
    w.finish()?;
    Ok(())
}

impl SegmentPatterns {
    /// Bytes held in memory (approximately).
    pub fn memory(&self) -> usize {
        self.rows.len() * 4
            + self
                .templates
                .iter()
                .map(|t| 64 + t.service.len() + t.template.len() + t.example.len())
                .sum::<usize>()
    }

    /// The file's bytes (`docs/format.md` section 4d).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let t = &self.templates;
        let templates = RecordBatch::try_new(
            templates_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(t.iter().map(|t| &t.service))),
                Arc::new(StringArray::from_iter_values(t.iter().map(|t| &t.template))),
                Arc::new(UInt64Array::from_iter_values(t.iter().map(|t| t.count))),
                Arc::new(Int64Array::from_iter_values(t.iter().map(|t| t.first_seen))),
                Arc::new(Int64Array::from_iter_values(t.iter().map(|t| t.last_seen))),
                Arc::new(StringArray::from_iter_values(t.iter().map(|t| &t.example))),
            ],
        )?;
        let rows = RecordBatch::try_new(
            rows_schema(),
            vec![Arc::new(UInt32Array::from(self.rows.clone()))],
        )?;
        let mut first = Vec::new();
        ipc(&templates, &mut first)?;
        let mut payload = Vec::with_capacity(8 + first.len() + 4 * self.rows.len() + 512);
        payload.extend_from_slice(&(first.len() as u64).to_le_bytes());
        payload.extend_from_slice(&first);
        ipc(&rows, &mut payload)?;
        crate::io::seal(MAGIC, VERSION, &payload)
    }

    /// Decodes a pattern file read from `path` (for messages) of a segment of `rows` rows.
    /// Damage — including a row count or template id that does not fit — is
    /// [`Error::Corrupted`]; another format version [`Error::UnsupportedVersion`].
    pub fn decode(path: &Path, bytes: &[u8], rows: u64) -> Result<Self> {
        let corrupt = |why: String| Error::corrupted(path, None, why);
        let payload = crate::io::unseal(path, bytes, MAGIC, VERSION, "log pattern")?;
        let read = |bytes: &[u8], schema: SchemaRef| -> Result<RecordBatch> {
            let reader =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
                    .map_err(|e| corrupt(format!("payload: {e}")))?;
            if reader.schema().fields() != schema.fields() {
                return Err(corrupt("payload has an unexpected schema".to_string()));
            }
            let mut batches = Vec::new();
            for b in reader {
                batches.push(b.map_err(|e| corrupt(format!("payload: {e}")))?);
            }
            Ok(arrow::compute::concat_batches(&schema, &batches)?)
        };
        if payload.len() < 8 {
            return Err(corrupt("payload too short".to_string()));
        }
        let first_len = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
        if first_len > (payload.len() - 8) as u64 {
            return Err(corrupt(
                "template table longer than the payload".to_string(),
            ));
        }
        let split = 8 + first_len as usize;
        let t = read(&payload[8..split], templates_schema())?;
        let r = read(&payload[split..], rows_schema())?;
        let strings = |i: usize| t.column(i).as_string::<i32>();
        let ints = |i: usize| t.column(i).as_primitive::<arrow::datatypes::Int64Type>();
        let (service, template, example) = (strings(0), strings(1), strings(5));
        let count = t.column(2).as_primitive::<arrow::datatypes::UInt64Type>();
        let (first, last) = (ints(3), ints(4));
        let templates: Vec<TemplateSummary> = (0..t.num_rows())
            .map(|i| TemplateSummary {
                service: service.value(i).to_string(),
                template: template.value(i).to_string(),
                count: count.value(i),
                first_seen: first.value(i),
                last_seen: last.value(i),
                example: example.value(i).to_string(),
            })
            .collect();
        let ids = r.column(0).as_primitive::<arrow::datatypes::UInt32Type>();
        if ids.len() as u64 != rows {
            return Err(corrupt(format!(
                "{} row templates for a segment of {rows} rows",
                ids.len()
            )));
        }
        let mut counts = vec![0u64; templates.len()];
        for &id in ids.values().iter() {
            match counts.get_mut(id as usize) {
                Some(c) => *c += 1,
                None => {
                    return Err(corrupt(format!(
                        "row template {id} of {} templates",
                        templates.len()
                    )));
                }
            }
        }
        if let Some((i, t)) = templates
            .iter()
            .enumerate()
            .find(|(i, t)| t.count != counts[*i])
        {
            return Err(corrupt(format!(
                "template {i} counts {} rows, {} rows have it",
                t.count, counts[i]
            )));
        }
        Ok(SegmentPatterns {
            templates,
            rows: ids.values().to_vec(),
        })
    }
}

fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Mines log rows as they come in a segment's order (or any order), keeping each row's
/// template and each template's summary.
#[derive(Debug, Default)]
pub struct PatternBuilder {
    miner: Miner,
    out: SegmentPatterns,
}

impl PatternBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        PatternBuilder::default()
    }

    /// Adds `batch`'s rows (logs with at least `time`, `service_name` and `body`); calls
    /// `each(row, time, template)` for every row.
    pub fn add_with(
        &mut self,
        batch: &RecordBatch,
        mut each: impl FnMut(usize, i64, u32),
    ) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let time = batch
            .column_by_name("time")
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .ok_or_else(|| {
                Error::invalid(Signal::Logs, "time", None, "missing or not a timestamp")
            })?;
        let service = Strings::of(batch, Signal::Logs, "service_name")?;
        let body = Strings::of(batch, Signal::Logs, "body")?;
        for i in 0..batch.num_rows() {
            let t = time.value(i);
            let text = body.get(i);
            let id = self.miner.add(service.get(i), text);
            let templates = &mut self.out.templates;
            if id as usize == templates.len() {
                templates.push(TemplateSummary {
                    service: service.get(i).to_string(),
                    template: String::new(),
                    count: 0,
                    first_seen: t,
                    last_seen: t,
                    example: cut(text, EXAMPLE_BYTES).to_string(),
                });
            }
            let s = &mut templates[id as usize];
            s.count += 1;
            s.first_seen = s.first_seen.min(t);
            s.last_seen = s.last_seen.max(t);
            self.out.rows.push(id);
            each(i, t, id);
        }
        Ok(())
    }

    /// Adds `batch`'s rows ([`PatternBuilder::add_with`]).
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        self.add_with(batch, |_, _, _| {})
    }

    /// Rows added.
    pub fn rows(&self) -> u64 {
        self.out.rows.len() as u64
    }

    /// The templates (with their final text) and row templates so far.
    pub fn finish(mut self) -> SegmentPatterns {
        self.fill_templates();
        self.out
    }

    fn fill_templates(&mut self) {
        for (id, t) in self.out.templates.iter_mut().enumerate() {
            t.template = self.miner.template(id as u32);
        }
    }

    /// Writes the pattern file of the log segment at `segment_path` durably (temporary
    /// name, fsync, rename; the caller fsyncs the directory); returns its size.
    pub fn write(&mut self, fs: &Arc<dyn FileSystem>, segment_path: &Path) -> Result<u64> {
        self.fill_templates();
        let bytes = self.out.encode()?;
        crate::io::write_durably(fs.as_ref(), &pattern_path(segment_path), &bytes)?;
        Ok(bytes.len() as u64)
    }
}

/// Reads the pattern file of log segment `seg`: `Ok(None)` when it does not exist.
pub fn read(
    fs: &dyn FileSystem,
    db_dir: &Path,
    seg: &SegmentMeta,
) -> Result<Option<SegmentPatterns>> {
    let path = pattern_path(&db_dir.join(&seg.path));
    let bytes = match fs.read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    SegmentPatterns::decode(&path, &bytes, seg.rows).map(Some)
}

/// Mines log segment `seg` from its rows (reading only `time`, `service_name`, `body`).
pub fn from_rows(fs: &dyn FileSystem, db_dir: &Path, seg: &SegmentMeta) -> Result<PatternBuilder> {
    let mut b = PatternBuilder::new();
    let stream = crate::segment::reader::SegmentStream::open(
        fs,
        db_dir,
        seg,
        Some(COLUMNS),
        crate::segment::merge::MERGE_BATCH_ROWS,
    )?;
    for batch in stream {
        b.add(&batch?)?;
    }
    Ok(b)
}

/// The patterns of log segment `seg`: its pattern file, or, when that is missing or
/// damaged ([`Error::Corrupted`], reported in the log), mined from its rows. Other errors
/// (I/O, a newer format) are returned.
pub fn of_segment(
    fs: &dyn FileSystem,
    db_dir: &Path,
    seg: &SegmentMeta,
) -> Result<SegmentPatterns> {
    match read(fs, db_dir, seg) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Ok(from_rows(fs, db_dir, seg)?.finish()),
        Err(e @ Error::Corrupted { .. }) => {
            log::warn!(
                "log patterns of segment {} unusable, mining its rows instead: {e} \
                 (`scry reindex` rewrites them)",
                seg.path
            );
            Ok(from_rows(fs, db_dir, seg)?.finish())
        }
        Err(e) => Err(e),
    }
}

/// Whether log segment `seg` needs its pattern file written by `scry reindex`: it is
/// missing or damaged. Always false for other signals; I/O errors and newer formats are
/// returned.
pub fn needs_rebuild(fs: &dyn FileSystem, db_dir: &Path, seg: &SegmentMeta) -> Result<bool> {
    if seg.signal != Signal::Logs {
        return Ok(false);
    }
    match read(fs, db_dir, seg) {
        Ok(Some(_)) => Ok(false),
        Ok(None) | Err(Error::Corrupted { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Rewrites the pattern file of log segment `seg` from its rows (for `scry reindex`); the
/// caller fsyncs the directory. Returns its size.
pub fn rebuild(fs: &Arc<dyn FileSystem>, db_dir: &Path, seg: &SegmentMeta) -> Result<u64> {
    from_rows(fs.as_ref(), db_dir, seg)?.write(fs, &db_dir.join(&seg.path))
}

/// How a template's rate in the window compares with its rate in the baseline window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatternChange {
    /// Seen in the window, not in the baseline (which has other logs).
    New,
    /// At least [`SURGE_FACTOR`] times its baseline rate, with at least
    /// [`SURGE_MIN_COUNT`] lines.
    Surging,
    /// Neither surging nor declining: within a factor of [`SURGE_FACTOR`] of its baseline
    /// rate, or above it with fewer than [`SURGE_MIN_COUNT`] lines.
    Steady,
    /// At most 1/[`SURGE_FACTOR`] of its baseline rate, but seen.
    Declining,
    /// Seen in the baseline, not in the window.
    Gone,
    /// The baseline window has no logs at all: nothing to compare with.
    NoBaseline,
}

impl PatternChange {
    /// Lowercase name: `new`, `surging`, `steady`, `declining`, `gone`, `no baseline`.
    pub fn as_str(self) -> &'static str {
        match self {
            PatternChange::New => "new",
            PatternChange::Surging => "surging",
            PatternChange::Steady => "steady",
            PatternChange::Declining => "declining",
            PatternChange::Gone => "gone",
            PatternChange::NoBaseline => "no baseline",
        }
    }

    fn rank(self) -> u8 {
        match self {
            PatternChange::New => 0,
            PatternChange::Surging => 1,
            PatternChange::Steady | PatternChange::Declining | PatternChange::NoBaseline => 2,
            PatternChange::Gone => 3,
        }
    }
}

/// One template over a window, against a baseline window ([`Snapshot::log_patterns`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LogPattern {
    /// `service_name` of its lines.
    pub service: String,
    /// The template: tokens separated by single spaces, `<*>` for variables.
    pub template: String,
    /// Lines in the window.
    pub count: u64,
    /// Time of the first line in the window (`None` when there is none: [`PatternChange::Gone`]).
    pub first_seen: Option<i64>,
    /// Time of the last line in the window.
    pub last_seen: Option<i64>,
    /// One line of the template (not necessarily from the window).
    pub example: String,
    /// Lines in the baseline window.
    pub baseline_count: u64,
    /// Rate in the window over rate in the baseline (`None` when the baseline has none).
    pub change: Option<f64>,
    /// The comparison, as a class.
    pub status: PatternChange,
}

/// The columns [`patterns_batch`] gives (the `log_patterns` SQL function's).
pub fn patterns_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("service_name", DataType::Utf8, false),
        Field::new("template", DataType::Utf8, false),
        Field::new("count", DataType::UInt64, false),
        Field::new("first_seen", timestamp_type(), true),
        Field::new("last_seen", timestamp_type(), true),
        Field::new("example", DataType::Utf8, false),
        Field::new("baseline_count", DataType::UInt64, false),
        Field::new("change", DataType::Float64, true),
        Field::new("status", DataType::Utf8, false),
    ]))
}

/// `patterns` as rows of [`patterns_schema`].
pub fn patterns_batch(patterns: &[LogPattern]) -> RecordBatch {
    let p = patterns;
    let strings = |f: &dyn Fn(&LogPattern) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(p.iter().map(f)))
    };
    let times = |f: &dyn Fn(&LogPattern) -> Option<i64>| -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from_iter(p.iter().map(f)).with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        strings(&|p| &p.service),
        strings(&|p| &p.template),
        Arc::new(UInt64Array::from_iter_values(p.iter().map(|p| p.count))),
        times(&|p| p.first_seen),
        times(&|p| p.last_seen),
        strings(&|p| &p.example),
        Arc::new(UInt64Array::from_iter_values(
            p.iter().map(|p| p.baseline_count),
        )),
        Arc::new(Float64Array::from_iter(p.iter().map(|p| p.change))),
        strings(&|p| p.status.as_str()),
    ];
    RecordBatch::try_new(patterns_schema(), columns).expect("columns match the patterns schema")
}

/// A template's numbers from one source (a segment or the unflushed logs).
#[derive(Debug, Clone, Default)]
struct Counts {
    count: u64,
    first: i64,
    last: i64,
    base: u64,
}

impl Counts {
    fn new() -> Self {
        Counts {
            count: 0,
            first: i64::MAX,
            last: i64::MIN,
            base: 0,
        }
    }

    fn see(&mut self, t: i64, window: TimeRange, baseline: TimeRange) {
        if window.contains(t) {
            self.count += 1;
            self.first = self.first.min(t);
            self.last = self.last.max(t);
        }
        if baseline.contains(t) {
            self.base += 1;
        }
    }

    fn merge(&mut self, o: &Counts) {
        self.count += o.count;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        self.base += o.base;
    }
}

fn covers(r: TimeRange, seg: &SegmentMeta) -> bool {
    r.start <= seg.min_time && seg.max_time < r.end
}

fn misses(r: TimeRange, seg: &SegmentMeta) -> bool {
    !seg.overlaps(r.start, r.end)
}

impl Snapshot {
    /// The log templates of `window` ([`crate::search::patterns`]), each with its lines in
    /// `window` and in `baseline` (default: the window's length just before it): new
    /// templates first (most lines first), then surging ones (largest change first), then the
    /// rest by lines in the window, then the gone. Reads every log segment overlapping
    /// either window: its pattern file (mined from its rows when missing or damaged), plus
    /// its `time` column when it straddles a window's edge; the unflushed logs are mined
    /// now. Each segment's patterns stay in memory for the process once read (4 bytes per
    /// row plus its templates, [`crate::index::IndexCache::log_patterns`]); a straddling
    /// segment's `time` column is held while it is counted.
    pub fn log_patterns(
        &self,
        window: TimeRange,
        baseline: Option<TimeRange>,
    ) -> Result<Vec<LogPattern>> {
        let len = window.end.saturating_sub(window.start).max(1);
        let baseline = baseline
            .unwrap_or_else(|| TimeRange::new(window.start.saturating_sub(len), window.start));
        // (service, template, example, counts) from every source.
        let mut parts: Vec<(String, String, String, Counts)> = Vec::new();
        let segments =
            self.manifest.segments.iter().filter(|s| {
                s.signal == Signal::Logs && !(misses(window, s) && misses(baseline, s))
            });
        for seg in segments {
            let pats = self
                .indexes
                .log_patterns(self.fs.as_ref(), &self.dir, seg)?;
            let mut counts = vec![Counts::new(); pats.templates.len()];
            let whole = |r: TimeRange| covers(r, seg) || misses(r, seg);
            if whole(window) && whole(baseline) {
                for (c, t) in counts.iter_mut().zip(&pats.templates) {
                    if covers(window, seg) {
                        c.count = t.count;
                        c.first = t.first_seen;
                        c.last = t.last_seen;
                    }
                    if covers(baseline, seg) {
                        c.base = t.count;
                    }
                }
            } else {
                let mut row = 0usize;
                for times in self.segment_times(seg)? {
                    for &t in times.values().iter() {
                        let Some(&id) = pats.rows.get(row) else {
                            return Err(Error::corrupted(
                                pattern_path(&self.segment_path(seg)),
                                None,
                                "fewer row templates than the segment has rows",
                            ));
                        };
                        counts[id as usize].see(t, window, baseline);
                        row += 1;
                    }
                }
            }
            for (c, t) in counts.into_iter().zip(&pats.templates) {
                if c.count > 0 || c.base > 0 {
                    parts.push((t.service.clone(), t.template.clone(), t.example.clone(), c));
                }
            }
        }
        // The unflushed logs, mined now.
        let both = TimeRange::new(
            window.start.min(baseline.start),
            window.end.max(baseline.end),
        );
        let mut unflushed = PatternBuilder::new();
        let mut counts: Vec<Counts> = Vec::new();
        for b in self.memtable_batches(Signal::Logs, Some(both))? {
            unflushed.add_with(&b, |_, t, id| {
                if id as usize == counts.len() {
                    counts.push(Counts::new());
                }
                counts[id as usize].see(t, window, baseline);
            })?;
        }
        let unflushed = unflushed.finish();
        for (c, t) in counts.into_iter().zip(unflushed.templates) {
            if c.count > 0 || c.base > 0 {
                parts.push((t.service, t.template, t.example, c));
            }
        }
        Ok(merge(parts, len, baseline))
    }

    /// The `time` column of segment `seg`, in its row order (read through the checked
    /// segment file, one column only).
    fn segment_times(&self, seg: &SegmentMeta) -> Result<Vec<TimestampNanosecondArray>> {
        let path = self.segment_path(seg);
        let meta = self.segment_metadata(seg)?;
        let file = self.open_segment(seg)?;
        let at = meta
            .schema()
            .index_of("time")
            .map_err(|_| Error::corrupted(&path, None, "segment has no time column"))?;
        let mask = ProjectionMask::roots(meta.metadata().file_metadata().schema_descr(), [at]);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(|source| Error::Parquet {
                path: path.clone(),
                source,
            })?;
        let mut out = Vec::new();
        for b in reader {
            let b = b.map_err(|e| Error::corrupted(&path, None, e.to_string()))?;
            let t = b
                .column(0)
                .as_primitive_opt::<TimestampNanosecondType>()
                .ok_or_else(|| Error::corrupted(&path, None, "time is not a timestamp"))?;
            out.push(t.clone());
        }
        Ok(out)
    }
}

/// Merges the templates of every source and ranks them (see [`Snapshot::log_patterns`]).
fn merge(
    mut parts: Vec<(String, String, String, Counts)>,
    window_len: i64,
    baseline: TimeRange,
) -> Vec<LogPattern> {
    // Templates whose first word is a variable first (so that the specific forms other
    // segments kept find them), then larger ones: a merged template takes the shape of the
    // first one.
    let general = |template: &str| {
        template
            .split(' ')
            .next()
            .is_some_and(|w| w.contains(WILDCARD))
    };
    parts.sort_by(|a, b| {
        general(&b.1)
            .cmp(&general(&a.1))
            .then_with(|| (b.3.count + b.3.base).cmp(&(a.3.count + a.3.base)))
            .then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1)))
    });
    let baseline_total: u64 = parts.iter().map(|p| p.3.base).sum();
    let mut merger = Merger::new();
    // Per merged template: its counts and the example of its largest part.
    let mut merged: Vec<(Counts, String)> = Vec::new();
    for (service, template, example, c) in parts {
        let id = merger.add(&service, &template) as usize;
        if id == merged.len() {
            merged.push((Counts::new(), example));
        }
        merged[id].0.merge(&c);
    }
    let base_len = baseline.end.saturating_sub(baseline.start).max(1);
    let mut out: Vec<LogPattern> = merged
        .into_iter()
        .enumerate()
        .map(|(id, (c, example))| {
            let change = (c.base > 0)
                .then(|| (c.count as f64 / window_len as f64) / (c.base as f64 / base_len as f64));
            let status = match change {
                _ if baseline_total == 0 => PatternChange::NoBaseline,
                None => PatternChange::New,
                Some(_) if c.count == 0 => PatternChange::Gone,
                Some(x) if x >= SURGE_FACTOR && c.count >= SURGE_MIN_COUNT => {
                    PatternChange::Surging
                }
                Some(x) if x <= 1.0 / SURGE_FACTOR => PatternChange::Declining,
                Some(_) => PatternChange::Steady,
            };
            let m = merger.miner();
            LogPattern {
                service: m.service(id as u32).to_string(),
                template: m.template(id as u32),
                count: c.count,
                first_seen: (c.count > 0).then_some(c.first),
                last_seen: (c.count > 0).then_some(c.last),
                example,
                baseline_count: c.base,
                change,
                status,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        a.status
            .rank()
            .cmp(&b.status.rank())
            .then_with(|| match a.status {
                PatternChange::Surging => b
                    .change
                    .partial_cmp(&a.change)
                    .unwrap_or(std::cmp::Ordering::Equal),
                PatternChange::Gone => b.baseline_count.cmp(&a.baseline_count),
                _ => b.count.cmp(&a.count),
            })
            .then_with(|| (&a.service, &a.template).cmp(&(&b.service, &b.template)))
    });
    out
}
