//! Read snapshots: an immutable view of the database at one moment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::TimestampNanosecondType;

use crate::index::IndexCache;
use crate::io::FileSystem;
use crate::manifest::{Manifest, SegmentMeta};
use crate::memtable::{FrozenMemtable, Memtable};
use crate::{Result, Signal, segment};

/// What one time partition of one signal holds on disk; see [`Snapshot::partition_stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionStats {
    /// The table.
    pub signal: Signal,
    /// Partition start (inclusive), ns since the epoch.
    pub partition_start: i64,
    /// Partition end (exclusive), ns since the epoch.
    pub partition_end: i64,
    /// Segments.
    pub segments: usize,
    /// Rows.
    pub rows: u64,
    /// Bytes of the segments' Parquet files.
    pub bytes: u64,
    /// Bytes the same data takes as uncoded Parquet pages (the footers' uncompressed sizes):
    /// `uncompressed_bytes / bytes` is the compression ratio.
    pub uncompressed_bytes: u64,
    /// Bytes of the segments' trace index files.
    pub index_bytes: u64,
    /// Bytes of the segments' term index files (`spans` and `logs`,
    /// [`crate::search::index`]).
    pub term_index_bytes: u64,
    /// Bytes of the segments' log pattern files (`logs` only,
    /// [`crate::search::log_patterns`]).
    pub pattern_bytes: u64,
    /// Bytes of the segments' span rollup files (`spans` only, [`crate::rollup`]).
    pub rollup_bytes: u64,
    /// Memory the segments' bloom filters hold while their indexes are open.
    pub bloom_bytes: u64,
    /// Smallest row time, ns since the epoch.
    pub min_time: i64,
    /// Largest row time, ns since the epoch.
    pub max_time: i64,
    /// For a partition thinned by retention ([`crate::thin`]): the traces kept and why.
    pub kept: Option<crate::manifest::Kept>,
}

/// A half-open time range `[start, end)` in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive start.
    pub start: i64,
    /// Exclusive end.
    pub end: i64,
}

impl TimeRange {
    /// `[start, end)`.
    pub fn new(start: i64, end: i64) -> Self {
        TimeRange { start, end }
    }

    /// Every representable time.
    pub fn all() -> Self {
        TimeRange {
            start: i64::MIN,
            end: i64::MAX,
        }
    }

    /// Whether `t` is in the range.
    pub fn contains(&self, t: i64) -> bool {
        self.start <= t && t < self.end
    }
}

/// Row and byte counts of one signal in a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalStats {
    /// Segments.
    pub segments: usize,
    /// Rows in segments.
    pub segment_rows: u64,
    /// Bytes of segment files.
    pub segment_bytes: u64,
    /// Rows in the memtable (not yet flushed).
    pub memtable_rows: u64,
}

/// An immutable view of the database: the segments of one manifest version plus the
/// memtable batches that were not in those segments at that moment. Every acknowledged row
/// is in exactly one of the two.
///
/// Taking a snapshot never waits for writers or flushes (beyond a few pointer copies under
/// a lock), and holding one blocks nobody: the files it names stay readable as long as it
/// lives.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) dir: PathBuf,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) frozen: Vec<Arc<FrozenMemtable>>,
    pub(crate) active: Arc<Memtable>,
    pub(crate) indexes: Arc<IndexCache>,
}

impl Snapshot {
    /// The manifest version the snapshot reads.
    pub fn manifest_version(&self) -> u64 {
        self.manifest.version
    }

    /// The database directory; segment paths are relative to it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segments of `signal` that may hold rows in `range` (all of them for `None`), in the
    /// order they were written.
    pub fn segments(&self, signal: Signal, range: Option<TimeRange>) -> Vec<Arc<SegmentMeta>> {
        self.manifest
            .segments
            .iter()
            .filter(|s| s.signal == signal)
            .filter(|s| range.is_none_or(|r| s.overlaps(r.start, r.end)))
            .cloned()
            .collect()
    }

    /// Absolute path of a segment.
    pub fn segment_path(&self, seg: &SegmentMeta) -> PathBuf {
        self.dir.join(&seg.path)
    }

    /// The object-storage URL (`s3://bucket/key`) of a segment of a store in object
    /// storage (or of a view of such stores); `None` for a segment on local disk.
    pub fn segment_url(&self, seg: &SegmentMeta) -> Option<String> {
        self.fs.object_url(&self.segment_path(seg))
    }

    /// The object-storage stores (`s3://bucket/prefix`) the snapshot's segments are in:
    /// one for a store in object storage, its members for a view of such stores; `None`
    /// when the store is on local disk.
    pub fn remote_stores(&self) -> Option<Vec<String>> {
        self.fs.remote_stores()
    }

    /// The unflushed batches of `signal`, oldest first, restricted to rows in `range`
    /// (every row for `None`). Batches with no row left are omitted.
    pub fn memtable_batches(
        &self,
        signal: Signal,
        range: Option<TimeRange>,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let tables = self
            .frozen
            .iter()
            .map(|f| &f.table)
            .chain(std::iter::once(self.active.as_ref()));
        for table in tables {
            for batch in table.batches(signal) {
                if let Some(b) = filter_time(batch, range)? {
                    out.push(b);
                }
            }
        }
        Ok(out)
    }

    /// The largest `time` of `signal`'s rows (segments and unflushed), `None` when there is
    /// none.
    pub fn newest_time(&self, signal: Signal) -> Result<Option<i64>> {
        use arrow::array::AsArray;
        let mut newest = self
            .segments(signal, None)
            .iter()
            .filter(|s| s.rows > 0)
            .map(|s| s.max_time)
            .max();
        for b in self.memtable_batches(signal, None)? {
            let t = b
                .column(0)
                .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
            newest = newest.max(arrow::compute::max(t));
        }
        Ok(newest)
    }

    /// The span rollups ([`crate::rollup`], the `span_metrics` table) of every span whose
    /// 10-second interval overlaps `range` (all for `None`): the rollup rows of each span segment
    /// (read once per segment and process, then kept in memory), then one batch computed
    /// now from the unflushed spans. A group (interval, service, operation, kind,
    /// status, root) can appear in several batches — once per segment holding some of its spans —
    /// so callers add rows up (`GROUP BY` with `sum` and `exp_histogram_quantile` in SQL,
    /// [`crate::rollup::Rollups::add_rollups`] in Rust).
    pub fn span_metrics(&self, range: Option<TimeRange>) -> Result<Vec<RecordBatch>> {
        use crate::rollup::INTERVAL_NS;
        // Whole intervals: a group's interval overlaps the range.
        let range = range.map(|r| {
            let up = |t: i64| {
                let rem = t.rem_euclid(INTERVAL_NS);
                if rem == 0 {
                    t
                } else {
                    t.saturating_add(INTERVAL_NS - rem)
                }
            };
            TimeRange::new(
                r.start.saturating_sub(r.start.rem_euclid(INTERVAL_NS)),
                up(r.end),
            )
        });
        let in_range = |b: RecordBatch| -> Result<Option<RecordBatch>> {
            let b = match range {
                Some(r) => filter_time(&b, Some(r))?,
                None => Some(b),
            };
            Ok(b.filter(|b| b.num_rows() > 0))
        };
        let mut out = Vec::new();
        // By partition bounds, not row times: a thinned segment's rollup counts spans it no
        // longer holds (it may hold none).
        let segments = self.manifest.segments.iter().filter(|s| {
            s.signal == Signal::Spans
                && range.is_none_or(|r| s.partition_start < r.end && s.partition_end > r.start)
        });
        for seg in segments {
            let b = self.indexes.rollup(self.fs.as_ref(), &self.dir, seg)?;
            out.extend(in_range(b)?);
        }
        let mut unflushed = crate::rollup::Rollups::new();
        for b in self.memtable_batches(Signal::Spans, range)? {
            unflushed.add_spans(&b)?;
        }
        if !unflushed.is_empty() {
            out.extend(in_range(unflushed.to_batch())?);
        }
        Ok(out)
    }

    /// Opens a segment of this snapshot for random-access reads through the engine's file
    /// system. The file stays readable while this snapshot (or a clone) lives.
    ///
    /// The first use of a segment in a process checks it against the size and CRC its
    /// manifest entry records ([`IndexCache::verify_segment`]: its tail and block table, or
    /// the whole file when it has no table); a damaged tail or file is
    /// [`crate::Error::Corrupted`] naming it, here or from [`Snapshot::segment_metadata`].
    /// The returned file then checks every block a read touches before serving it (an I/O
    /// error of kind `InvalidData` naming the file and bytes), so no byte is served before
    /// a checksum tied to the manifest matched it.
    pub fn open_segment(&self, seg: &SegmentMeta) -> Result<segment::file::SegmentFile> {
        let blocks = self
            .indexes
            .verify_segment(self.fs.as_ref(), &self.dir, seg)?;
        let path = self.segment_path(seg);
        let file = self
            .fs
            .open_read(&path)
            .map_err(|e| crate::Error::io("open", &path, e))?;
        if file.len() != seg.size {
            return Err(crate::Error::corrupted(
                &path,
                None,
                format!(
                    "segment is {} bytes, the manifest says {}",
                    file.len(),
                    seg.size
                ),
            ));
        }
        Ok(segment::file::SegmentFile::new(file, blocks))
    }

    /// The Parquet metadata of a segment, page index included: read once per segment and
    /// process, after the segment's whole-file check passed (see
    /// [`Snapshot::open_segment`]), then shared by every snapshot (a segment never changes).
    pub fn segment_metadata(
        &self,
        seg: &SegmentMeta,
    ) -> Result<parquet::arrow::arrow_reader::ArrowReaderMetadata> {
        self.indexes
            .parquet_metadata(self.fs.as_ref(), &self.dir, seg)
    }

    /// Per signal and time partition: segments, rows, bytes on disk (data and trace index),
    /// compression ratio, bloom filter memory and time range, ordered by signal and
    /// partition. Reads every segment's footer and opens every trace index (as lookups
    /// would); unflushed rows are not included (see [`Snapshot::stats`]). A segment whose
    /// footer or index cannot be read counts with what its manifest entry says.
    pub fn partition_stats(&self) -> Vec<PartitionStats> {
        use std::collections::BTreeMap;
        let mut out: BTreeMap<(Signal, i64, i64), PartitionStats> = BTreeMap::new();
        for seg in &self.manifest.segments {
            let p = out
                .entry((seg.signal, seg.partition_start, seg.partition_end))
                .or_insert_with(|| PartitionStats {
                    signal: seg.signal,
                    partition_start: seg.partition_start,
                    partition_end: seg.partition_end,
                    segments: 0,
                    rows: 0,
                    bytes: 0,
                    uncompressed_bytes: 0,
                    index_bytes: 0,
                    term_index_bytes: 0,
                    pattern_bytes: 0,
                    rollup_bytes: 0,
                    bloom_bytes: 0,
                    min_time: i64::MAX,
                    max_time: i64::MIN,
                    kept: None,
                });
            if seg.thinned.is_some() {
                p.kept = seg.thinned;
            }
            p.segments += 1;
            p.rows += seg.rows;
            p.bytes += seg.size;
            // A segment with no row (a thinned partition's carrier of span rollups) has no
            // time of its own.
            if seg.rows > 0 {
                p.min_time = p.min_time.min(seg.min_time);
                p.max_time = p.max_time.max(seg.max_time);
            }
            let path = self.segment_path(seg);
            let [index, terms, patterns, rollup, _] = segment::segment_files(&path);
            p.index_bytes += self.fs.file_size(&index).unwrap_or(0);
            p.term_index_bytes += self.fs.file_size(&terms).unwrap_or(0);
            p.pattern_bytes += self.fs.file_size(&patterns).unwrap_or(0);
            p.rollup_bytes += self.fs.file_size(&rollup).unwrap_or(0);
            if let Some(index) = self.indexes.index(self.fs.as_ref(), &self.dir, seg) {
                p.bloom_bytes += index.memory() as u64;
            }
            let footer = self.fs.open_read(&path).ok().and_then(|f| {
                parquet::file::metadata::ParquetMetaDataReader::new()
                    .parse_and_finish(&segment::file::SegmentFile::new(f, None))
                    .ok()
            });
            p.uncompressed_bytes += footer.map_or(seg.size, |m| {
                m.row_groups()
                    .iter()
                    .map(|rg| u64::try_from(rg.total_byte_size()).unwrap_or(0))
                    .sum()
            });
        }
        out.into_values()
            .map(|mut p| {
                if p.min_time > p.max_time {
                    // Only rowless segments: the partition's start stands for both.
                    (p.min_time, p.max_time) = (p.partition_start, p.partition_start);
                }
                p
            })
            .collect()
    }

    /// The open-index cache of the database (the SQL layer uses it too).
    pub fn index_cache(&self) -> &IndexCache {
        &self.indexes
    }

    /// Reads one segment whole, restricted to `range`, verifying its checksum first.
    pub fn read_segment(
        &self,
        seg: &SegmentMeta,
        range: Option<TimeRange>,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for b in segment::reader::read_segment(self.fs.as_ref(), &self.dir, seg)? {
            if let Some(b) = filter_time(&b, range)? {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Every row of `signal` in `range`: the segments' rows, then the memtable's.
    ///
    /// This reads whole segments; the SQL layer reads them selectively instead.
    pub fn scan(&self, signal: Signal, range: Option<TimeRange>) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for seg in self.segments(signal, range) {
            out.extend(self.read_segment(&seg, range)?);
        }
        out.extend(self.memtable_batches(signal, range)?);
        Ok(out)
    }

    /// Row and byte counts of `signal`.
    pub fn stats(&self, signal: Signal) -> SignalStats {
        let mut s = SignalStats::default();
        for seg in self.manifest.segments.iter().filter(|s| s.signal == signal) {
            s.segments += 1;
            s.segment_rows += seg.rows;
            s.segment_bytes += seg.size;
        }
        s.memtable_rows = self
            .frozen
            .iter()
            .map(|f| f.table.rows(signal))
            .chain(std::iter::once(self.active.rows(signal)))
            .sum::<usize>() as u64;
        s
    }
}

/// Restricts a batch to rows with `time` in `range`; `None` when no row is left.
pub(crate) fn filter_time(
    batch: &RecordBatch,
    range: Option<TimeRange>,
) -> Result<Option<RecordBatch>> {
    let Some(range) = range else {
        return Ok((batch.num_rows() > 0).then(|| batch.clone()));
    };
    let times = batch.column(0).as_primitive::<TimestampNanosecondType>();
    let mask: BooleanArray = times
        .values()
        .iter()
        .map(|t| Some(range.contains(*t)))
        .collect();
    let n = mask.true_count();
    if n == 0 {
        Ok(None)
    } else if n == batch.num_rows() {
        Ok(Some(batch.clone()))
    } else {
        Ok(Some(filter_record_batch(batch, &mask)?))
    }
}
