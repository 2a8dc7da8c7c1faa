//! Writing one segment.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{SortColumn, lexsort_to_indices};
use arrow::datatypes::TimestampNanosecondType;
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::io::{FileSystem, WritableFile};
use crate::manifest::SegmentMeta;
use crate::{Error, Options, Result, Signal, partition, schema};

/// Format version recorded in every segment's key-value metadata.
pub const SEGMENT_FORMAT_VERSION: &str = "3";

/// The highest segment format version this build reads: 1 stores every column, 2 leaves
/// out the derived ones ([`super::stored`]), 3 adds each span's place in its trace's tree
/// ([`super::tree`]).
pub const SEGMENT_FORMAT_MAX: u32 = 3;

/// What to write: the rows of one signal that fall in one partition, in any order.
pub struct SegmentJob {
    /// The signal.
    pub signal: Signal,
    /// The segment's id (from the manifest's counter).
    pub id: u64,
    /// Partition start, ns.
    pub partition_start: i64,
    /// Partition end (exclusive), ns.
    pub partition_end: i64,
    /// Batches holding the rows, in the signal's canonical schema (shared with the
    /// memtable: cloning them copies no data).
    pub batches: Vec<RecordBatch>,
    /// The rows of the segment as (batch, row) positions in `batches`; `None` for every
    /// row of every batch. The segment is built with one copy of the rows, straight into
    /// sorted order.
    pub rows: Option<Vec<(usize, usize)>>,
}

impl SegmentJob {
    /// A job writing every row of `batch`.
    pub fn whole(
        signal: Signal,
        id: u64,
        partition_start: i64,
        partition_end: i64,
        batch: RecordBatch,
    ) -> Self {
        SegmentJob {
            signal,
            id,
            partition_start,
            partition_end,
            batches: vec![batch],
            rows: None,
        }
    }
}

/// Relative path of a segment.
pub fn relative_path(signal: Signal, partition_start: i64, id: u64) -> String {
    format!(
        "{}/{}/{id:020}.parquet",
        signal.name(),
        partition::partition_dir_name(partition_start)
    )
}

/// Counts and checksums bytes on their way to a file: the whole file's CRC (for the
/// manifest) and its block CRCs ([`super::blocks`], for the footer).
struct ChecksumWriter {
    inner: Box<dyn WritableFile>,
    hasher: crc32fast::Hasher,
    blocks: super::blocks::BlockHasher,
    len: u64,
}

impl Write for ChecksumWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.blocks.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Largest dictionary page per column chunk, in bytes.
const DICTIONARY_PAGE_LIMIT: usize = 16 * 1024;

/// The writer properties of every segment of `signal`.
pub fn writer_properties(signal: Signal, opts: &Options) -> WriterProperties {
    // Parquet's sorting columns index leaf columns, which differ from Arrow's top-level
    // indexes once a nested column precedes a key column.
    let parquet_schema = ArrowSchemaConverter::new()
        .convert(&super::stored::stored_schema(signal))
        .expect("the signal schemas convert to Parquet");
    let sorting = schema::sort_key(signal)
        .iter()
        .map(|k| {
            let leaf = parquet_schema
                .columns()
                .iter()
                .position(|c| c.path().parts() == [k.to_string()])
                .expect("sort key columns are top-level leaves");
            SortingColumn {
                column_idx: i32::try_from(leaf).expect("few columns"),
                descending: false,
                // As `sort_rows` sorts (the key columns are never null anyway).
                nulls_first: true,
            }
        })
        .collect();
    let mut props = WriterProperties::builder();
    // Page-level statistics (the Parquet column index) only for the columns queries prune
    // pages by — time, ids looked up without an index, the low-cardinality group columns;
    // the others keep chunk statistics. Every column keeps its offset index (lookups).
    let paged = schema::page_statistics_columns(signal);
    for c in parquet_schema.columns() {
        let parts = c.path().parts();
        if !(parts.len() == 1 && paged.contains(&parts[0].as_str())) {
            props = props.set_column_statistics_enabled(c.path().clone(), EnabledStatistics::Chunk);
        }
    }
    props
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(opts.zstd_level).expect("validated by Options"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(opts.data_page_row_limit)
        // A lookup of a few rows decodes each column's dictionary page whole; a column
        // whose dictionary outgrows this falls back to plain pages (zstd still applies).
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_LIMIT)
        .set_max_row_group_row_count(Some(opts.row_group_size))
        // Parquet's sorting columns can only state a column-prefix order; spans and logs are
        // sorted by an expression (the minute of `time`) first, so they declare none.
        .set_sorting_columns((!schema::sorts_by_minute(signal)).then_some(sorting))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(
                "scrydb.format_version".into(),
                SEGMENT_FORMAT_VERSION.to_string(),
            ),
            KeyValue::new("scrydb.signal".into(), signal.name().to_string()),
        ]))
        .build()
}

/// The values rows are sorted by, in order: for `spans` and `logs` the minute of `time`,
/// `trace_id`, `time`; for `metrics` the columns of [`schema::sort_key`]. `column` returns a
/// column of the rows by name. Ascending, nulls first, in every column.
pub fn sort_keys(
    signal: Signal,
    column: impl Fn(&str) -> Result<arrow::array::ArrayRef>,
) -> Result<Vec<arrow::array::ArrayRef>> {
    if schema::sorts_by_minute(signal) {
        let time = column("time")?;
        let minutes: arrow::array::Int64Array = time
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .iter()
            .map(|t| t.div_euclid(schema::SORT_BUCKET_NS))
            .collect();
        Ok(vec![Arc::new(minutes), column("trace_id")?, time])
    } else {
        schema::sort_key(signal).iter().map(|k| column(k)).collect()
    }
}

/// The rows `rows` of `batches` (every row when `None`) as one batch in the signal's sort
/// order: `spans` and `logs` by (minute of `time`, `trace_id`, `time`), so a trace's rows are
/// contiguous and a lookup decodes one or two pages per column; `metrics` by (`name`,
/// `service_name`, `time`), series by series. Only the sort keys are gathered to sort; the
/// rows are then copied once, in order.
pub fn sort_rows(
    signal: Signal,
    batches: &[RecordBatch],
    rows: Option<&[(usize, usize)]>,
) -> Result<RecordBatch> {
    let ordered = sort_order(signal, batches, rows)?;
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    Ok(arrow::compute::interleave_record_batch(&refs, &ordered)?)
}

/// The positions `rows` of `batches` (every row when `None`) in the signal's sort order
/// ([`sort_rows`]).
pub fn sort_order(
    signal: Signal,
    batches: &[RecordBatch],
    rows: Option<&[(usize, usize)]>,
) -> Result<Vec<(usize, usize)>> {
    let all: Vec<(usize, usize)>;
    let rows = match rows {
        Some(r) => r,
        None => {
            all = batches
                .iter()
                .enumerate()
                .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
                .collect();
            &all
        }
    };
    if schema::sorts_by_minute(signal) {
        return Ok(sort_by_minute_trace_time(batches, rows));
    }
    let gather = |name: &str| -> Result<arrow::array::ArrayRef> {
        let cols: Vec<&dyn arrow::array::Array> = batches
            .iter()
            .map(|b| {
                b.column_by_name(name)
                    .expect("canonical batches have the sort key")
                    .as_ref()
            })
            .collect();
        Ok(arrow::compute::interleave(&cols, rows)?)
    };
    let columns: Vec<SortColumn> = sort_keys(signal, gather)?
        .into_iter()
        .map(|values| SortColumn {
            values,
            options: None,
        })
        .collect();
    let order = lexsort_to_indices(&columns, None)?;
    Ok(order.values().iter().map(|&i| rows[i as usize]).collect())
}

/// The (minute of `time`, `trace_id`, `time`) order of [`sort_keys`] for `spans` and `logs`,
/// computed on packed fixed-width keys (a null trace id sorts first in its minute, as
/// Arrow's nulls-first order has it): one comparison of integers per pair instead of a
/// comparator per column.
fn sort_by_minute_trace_time(
    batches: &[RecordBatch],
    rows: &[(usize, usize)],
) -> Vec<(usize, usize)> {
    let cols: Vec<_> = batches
        .iter()
        .map(|b| {
            let time = b
                .column_by_name("time")
                .expect("canonical batches have time")
                .as_primitive::<TimestampNanosecondType>()
                .clone();
            let trace = b
                .column_by_name("trace_id")
                .expect("canonical batches have trace_id")
                .as_fixed_size_binary()
                .clone();
            (time, trace)
        })
        .collect();
    // (minute, trace id present, trace id, time, position in `rows`): the position makes
    // the order total, so equal keys keep their input order.
    let mut keys: Vec<(i64, bool, u128, i64, u32)> = rows
        .iter()
        .enumerate()
        .map(|(i, &(b, r))| {
            let (time, trace) = &cols[b];
            let t = time.value(r);
            let valid = arrow::array::Array::is_valid(trace, r);
            let id = if valid { trace_key(trace.value(r)) } else { 0 };
            let pos = u32::try_from(i).expect("a segment job holds fewer than 2^32 rows");
            (t.div_euclid(schema::SORT_BUCKET_NS), valid, id, t, pos)
        })
        .collect();
    keys.sort_unstable();
    keys.iter().map(|k| rows[k.4 as usize]).collect()
}

/// A trace id as a number ordered as its bytes are. Ids are 16 bytes (validated); a
/// shorter value is padded with zeros, a longer one cut (neither reaches a segment).
fn trace_key(id: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = id.len().min(16);
    b[..n].copy_from_slice(&id[..n]);
    u128::from_be_bytes(b)
}

/// A segment being written from rows that arrive already in sort order, batch by batch:
/// its Parquet file under a temporary name and its trace index build as rows come, so a
/// segment of any size is written holding one row group's encoding at a time (compaction
/// merges through it). [`SegmentSink::finish`] makes it durable under its final name; a
/// sink dropped unfinished leaves a temporary file the next open removes.
pub struct SegmentSink {
    fs: Arc<dyn FileSystem>,
    signal: Signal,
    id: u64,
    partition_start: i64,
    partition_end: i64,
    rel: String,
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    writer: ArrowWriter<ChecksumWriter>,
    index: crate::index::IndexBuilder,
    /// The term index and log patterns, built on a thread of their own.
    derived: Option<DerivedWorker>,
    /// For spans: the rollups of the rows pushed, or those [`SegmentSink::set_rollups`] gave.
    rollups: Option<crate::rollup::Rollups>,
    /// Whether `rollups` was given rather than computed from the rows.
    rollups_given: bool,
    min_time: i64,
    max_time: i64,
}

impl SegmentSink {
    /// Creates segment `id` of `signal` in the partition `[partition_start, partition_end)`
    /// under `db_dir` (its directories made durable first).
    pub fn create(
        fs: &Arc<dyn FileSystem>,
        db_dir: &Path,
        opts: &Options,
        signal: Signal,
        id: u64,
        partition_start: i64,
        partition_end: i64,
    ) -> Result<Self> {
        let rel = relative_path(signal, partition_start, id);
        let path = db_dir.join(&rel);
        let part_dir = path.parent().expect("segment paths have a directory");
        fs.create_dir_all(part_dir)
            .map_err(|e| Error::io("create directory", part_dir, e))?;
        let signal_dir = db_dir.join(signal.name());
        fs.sync_dir(&signal_dir)
            .map_err(|e| Error::io("fsync", &signal_dir, e))?;
        let tmp = path.with_extension("parquet.tmp");
        let file = fs.create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        let sink = ChecksumWriter {
            inner: file,
            hasher: crc32fast::Hasher::new(),
            blocks: super::blocks::BlockHasher::default(),
            len: 0,
        };
        let writer = ArrowWriter::try_new(
            sink,
            super::stored::stored_schema(signal),
            Some(writer_properties(signal, opts)),
        )
        .map_err(|source| Error::Parquet {
            path: tmp.clone(),
            source,
        })?;
        let derived = DerivedWorker::start(
            (opts.term_index && crate::search::index::indexed(signal))
                .then(|| crate::search::index::TermIndexBuilder::new(signal)),
            (opts.log_patterns && signal == Signal::Logs)
                .then(crate::search::log_patterns::PatternBuilder::new),
            &path,
        )?;
        Ok(SegmentSink {
            fs: fs.clone(),
            signal,
            id,
            partition_start,
            partition_end,
            rel,
            path,
            tmp,
            writer,
            index: crate::index::IndexBuilder::new(),
            derived,
            rollups: (signal == Signal::Spans).then(crate::rollup::Rollups::new),
            rollups_given: false,
            min_time: i64::MAX,
            max_time: i64::MIN,
        })
    }

    /// Appends `batch`, the segment's next rows in sort order ([`sort_rows`]) and in the
    /// signal's canonical schema.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let times = batch
            .column(0)
            .as_primitive::<TimestampNanosecondType>()
            .values();
        for &t in times.iter() {
            self.min_time = self.min_time.min(t);
            self.max_time = self.max_time.max(t);
        }
        self.index.add(self.signal, batch)?;
        if let Some(d) = self.derived.as_mut() {
            d.send(batch);
        }
        if let Some(r) = self.rollups.as_mut().filter(|_| !self.rollups_given) {
            r.add_spans(batch)?;
        }
        let stored = super::stored::to_stored(self.signal, batch)?;
        self.writer.write(&stored).map_err(|source| Error::Parquet {
            path: self.tmp.clone(),
            source,
        })
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.index.rows()
    }

    /// For a span segment: writes `rollups` as its rollup instead of the rollup of the rows
    /// pushed (thinning and compactions of thinned segments carry the rollups of every span
    /// the partition ever had, [`crate::rollup`]). Ignored for other signals.
    pub fn set_rollups(&mut self, rollups: crate::rollup::Rollups) {
        if self.signal == Signal::Spans {
            self.rollups = Some(rollups);
            self.rollups_given = true;
        }
    }

    /// Whether the segment's rollup has any group (always false for other signals).
    pub fn has_rollups(&self) -> bool {
        self.rollups.as_ref().is_some_and(|r| !r.is_empty())
    }

    /// Closes the Parquet file, fsyncs it, renames it to its final name, writes the trace
    /// index, the term index, the log patterns and the span rollup the same way and fsyncs the directory; returns the manifest entry. On error,
    /// files of the segment may remain under temporary or final names; none is named by a
    /// manifest, so readers never see it and the next open removes it.
    pub fn finish(self) -> Result<SegmentMeta> {
        let SegmentSink {
            fs,
            signal,
            id,
            partition_start,
            partition_end,
            rel,
            path,
            tmp,
            mut writer,
            index,
            derived,
            rollups,
            rollups_given: _,
            min_time,
            max_time,
        } = self;
        let parquet_err = |source| Error::Parquet {
            path: tmp.clone(),
            source,
        };
        // Every data page reaches the file, then the footer records the CRCs of the whole
        // blocks written so far (the rest, page index and footer, is the tail the first
        // read checks).
        writer.flush().map_err(parquet_err)?;
        writer.sync().map_err(|e| Error::io("write", &tmp, e))?;
        let table = writer.inner().blocks.encode();
        writer.append_key_value_metadata(KeyValue::new(super::blocks::KEY.to_string(), table));
        let sink = writer.into_inner().map_err(parquet_err)?;
        let ChecksumWriter {
            mut inner,
            hasher,
            blocks: _,
            len,
        } = sink;
        inner.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(inner);
        fs.rename(&tmp, &path)
            .map_err(|e| Error::io("rename", &tmp, e))?;
        // The trace index is durable before the segment can be published.
        index.write(&fs, &path, signal)?;
        // So are the term index, the log patterns and the span rollup.
        if let Some(d) = derived {
            let (terms, patterns) = d.finish()?;
            if let Some(t) = &terms {
                t.write(&fs, &path)?;
            }
            if let Some(mut p) = patterns {
                p.write(&fs, &path)?;
            }
        }
        if let Some(r) = &rollups {
            crate::rollup::write(&fs, &path, r)?;
        }
        let part_dir = path.parent().expect("segment paths have a directory");
        fs.sync_dir(part_dir)
            .map_err(|e| Error::io("fsync", part_dir, e))?;
        let rows = index.rows();
        Ok(SegmentMeta {
            id,
            signal,
            partition_start,
            partition_end,
            path: rel,
            rows,
            min_time: if rows == 0 { partition_start } else { min_time },
            max_time: if rows == 0 { partition_start } else { max_time },
            size: len,
            crc32: hasher.finalize(),
            thinned: None,
        })
    }
}

/// Builders of a segment's term index and log patterns, fed on a thread of their own: a
/// flush or compaction tokenizes and mines the rows while the Parquet encoder compresses
/// them (on a machine with a core to spare, the derived files cost little wall time).
/// An error of a builder is returned by [`DerivedWorker::finish`], after the segment's
/// rows are encoded; a sink dropped without finishing leaves the worker to drain what it
/// was sent and stop.
struct DerivedWorker {
    /// Batches to add; `None` once the worker has stopped (its error is in `handle`).
    tx: Option<crossbeam_channel::Sender<RecordBatch>>,
    handle: std::thread::JoinHandle<Result<DerivedBuilders>>,
}

type DerivedBuilders = (
    Option<crate::search::index::TermIndexBuilder>,
    Option<crate::search::log_patterns::PatternBuilder>,
);

impl std::fmt::Debug for DerivedWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedWorker").finish_non_exhaustive()
    }
}

impl DerivedWorker {
    /// Starts a worker for the builders given (`None` when there is none).
    fn start(
        terms: Option<crate::search::index::TermIndexBuilder>,
        patterns: Option<crate::search::log_patterns::PatternBuilder>,
        path: &Path,
    ) -> Result<Option<DerivedWorker>> {
        if terms.is_none() && patterns.is_none() {
            return Ok(None);
        }
        // A few batches in flight bound the memory the worker can fall behind by.
        let (tx, rx) = crossbeam_channel::bounded::<RecordBatch>(4);
        let handle = std::thread::Builder::new()
            .name("scrydb-derived".into())
            .spawn(move || {
                let (mut terms, mut patterns) = (terms, patterns);
                for batch in rx {
                    if let Some(t) = terms.as_mut() {
                        t.add(&batch)?;
                    }
                    if let Some(p) = patterns.as_mut() {
                        p.add(&batch)?;
                    }
                }
                Ok((terms, patterns))
            })
            .map_err(|e| Error::io("spawn thread", path, e))?;
        Ok(Some(DerivedWorker {
            tx: Some(tx),
            handle,
        }))
    }

    /// Hands `batch` to the worker; if it has stopped on an error, [`Self::finish`]
    /// returns that error.
    fn send(&mut self, batch: &RecordBatch) {
        if let Some(tx) = &self.tx
            && tx.send(batch.clone()).is_err()
        {
            self.tx = None;
        }
    }

    /// Waits for the worker to add every batch sent; returns its builders. A panic of the
    /// worker is resumed on the calling thread.
    fn finish(mut self) -> Result<DerivedBuilders> {
        self.tx = None;
        match self.handle.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

/// Sorts, encodes and durably writes one segment and its trace index; returns its metadata
/// for the manifest.
///
/// The segment is written to `<id>.parquet.tmp`, fsynced and renamed to its final name,
/// then its index is written the same way, then the directory is fsynced. On error, files of
/// the segment may remain under temporary or final names (a failure after the rename
/// leaves the `.parquet` in place); none is named by a manifest, so readers never see it
/// and the next open removes it.
pub fn write_segment(
    fs: &Arc<dyn FileSystem>,
    db_dir: &Path,
    opts: &Options,
    job: SegmentJob,
) -> Result<SegmentMeta> {
    let SegmentJob {
        signal,
        id,
        partition_start,
        partition_end,
        batches,
        rows,
    } = job;
    let ordered = sort_order(signal, &batches, rows.as_deref())?;
    let mut sink =
        SegmentSink::create(fs, db_dir, opts, signal, id, partition_start, partition_end)?;
    // One row group at a time: the sorted copy never holds more than a row group, beside
    // the memtable's batches (which readers share until the segment replaces them).
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    // Span rows carry their place in their trace's tree within the segment.
    let tree = match signal {
        Signal::Spans => {
            let columns = batches
                .iter()
                .map(super::tree::LinkColumns::of)
                .collect::<Result<Vec<_>>>()?;
            Some(super::tree::TreeColumns::of_rows(
                ordered.len(),
                |i| columns[ordered[i].0].trace(ordered[i].1),
                |i| columns[ordered[i].0].link(ordered[i].1).1,
            ))
        }
        Signal::Logs | Signal::Metrics => None,
    };
    let step = opts.row_group_size.max(1);
    for (i, piece) in ordered.chunks(step).enumerate() {
        let rows = arrow::compute::interleave_record_batch(&refs, piece)?;
        match &tree {
            Some(t) => sink.push(&t.attach(&rows, i * step)?)?,
            None => sink.push(&rows)?,
        }
    }
    sink.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, FixedSizeBinaryArray, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    /// Rows with only the sort columns: times within three minutes, trace ids from a small
    /// set that differ in their first and last bytes, every fifth one null.
    fn batch(seed: u64, n: usize) -> RecordBatch {
        let mut x = seed;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let (mut times, mut ids) = (Vec::new(), Vec::new());
        for _ in 0..n {
            times.push(1_764_028_800_000_000_000 + (next() % 180) as i64 * 1_000_000_000);
            let k = next() % 7;
            ids.push((k % 5 != 4).then(|| {
                let mut id = [0u8; 16];
                id[0] = (k % 3) as u8;
                id[15] = (k % 2) as u8;
                id
            }));
        }
        let schema = Schema::new(vec![
            Field::new("time", schema::timestamp_type(), false),
            Field::new("trace_id", schema::trace_id_type(), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
                Arc::new(
                    FixedSizeBinaryArray::try_from_sparse_iter_with_size(ids.into_iter(), 16)
                        .expect("ids"),
                ),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn packed_minute_order_is_arrows_lexicographic_order_and_keeps_ties_in_input_order() {
        let batches = [batch(1, 300), batch(2, 200), batch(3, 1)];
        // Every row but a few, in an interleaved input order.
        let rows: Vec<(usize, usize)> = (0..300)
            .flat_map(|r| (0..3).map(move |b| (b, r)))
            .filter(|&(b, r)| r < batches[b].num_rows() && r % 11 != 3)
            .collect();
        let ordered = sort_order(Signal::Logs, &batches, Some(&rows)).expect("sort");
        assert_eq!(ordered.len(), rows.len());

        // Arrow's own sort of the same keys (nulls first), as the segment format states.
        let column = |name: &str| -> Result<arrow::array::ArrayRef> {
            let cols: Vec<&dyn Array> = batches
                .iter()
                .map(|b| b.column_by_name(name).expect("column").as_ref())
                .collect();
            Ok(arrow::compute::interleave(&cols, &rows)?)
        };
        let keys = sort_keys(Signal::Logs, column).expect("keys");
        let expected: Vec<(usize, usize)> = lexsort_to_indices(
            &keys
                .iter()
                .map(|values| SortColumn {
                    values: values.clone(),
                    options: None,
                })
                .collect::<Vec<_>>(),
            None,
        )
        .expect("lexsort")
        .values()
        .iter()
        .map(|&i| rows[i as usize])
        .collect();
        let key = |&(b, r): &(usize, usize)| {
            let t = batches[b]
                .column(0)
                .as_primitive::<TimestampNanosecondType>()
                .value(r);
            let ids = batches[b].column(1).as_fixed_size_binary();
            let id = ids.is_valid(r).then(|| ids.value(r).to_vec());
            (t.div_euclid(schema::SORT_BUCKET_NS), id, t)
        };
        let got: Vec<_> = ordered.iter().map(key).collect();
        assert_eq!(got, expected.iter().map(key).collect::<Vec<_>>());
        assert!(got.windows(2).all(|w| w[0] <= w[1]));
        // Rows with equal keys come in the order `rows` gave them.
        let position = |p: &(usize, usize)| rows.iter().position(|q| q == p).expect("a row");
        for w in ordered.windows(2) {
            if key(&w[0]) == key(&w[1]) {
                assert!(position(&w[0]) < position(&w[1]));
            }
        }
    }
}
