//! Options for opening a database, with every default documented.

use std::sync::Arc;
use std::time::Duration;

use crate::io::{FileSystem, StdFs};
use crate::{Error, Result};

/// What an acknowledged append survives.
///
/// Whatever the mode, an append call returns only after its batch is in the write-ahead log
/// file (handed to the operating system), so every mode survives a crash of the process.
/// The modes differ in what survives a power loss or kernel crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// The write-ahead log is fsynced before the append returns: an acknowledged batch
    /// survives power loss. Concurrent appends share one fsync (group commit), so the cost
    /// is one fsync per group, not per batch.
    Sync,
    /// Appends return once written to the operating system; the log is fsynced at least
    /// every `interval` while writes arrive. A power loss loses at most the batches
    /// acknowledged during the last interval.
    Periodic(Duration),
    /// Appends return once written to the operating system and the log is never fsynced by
    /// ScryDB (segments still are). A power loss can lose any batch not yet flushed to a
    /// segment.
    NoSync,
}

/// What recovery does with a damaged write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WalRecovery {
    /// A torn tail — the newest log file ends in a frame that runs past the end of the
    /// file, a partial frame header, or a zero-filled tail — is a write interrupted by a
    /// crash and never acknowledged (an append returns only after its whole frame is
    /// written): it is cut off, with a warning. Any other damage, including a bit flip in
    /// the last *complete* frame, means acknowledged data is unreadable: `open` fails with
    /// [`Error::Corrupted`] naming the file, the byte offset and the `scry recover` command,
    /// and leaves every live log file as it was (cleanup of files that are already
    /// obsolete — older manifests, log files fully in segments, leftovers of a crashed
    /// flush — may already have happened).
    #[default]
    TolerateTornTail,
    /// Keep every frame before the first damaged one; **move** the rest of that file and
    /// every later log file into quarantine files beside the log
    /// (`wal/<seq:020>.wal.quarantine-<n>`), never deleting them, and say so in a warning
    /// and in [`crate::Db::recovery_report`]. Use this (or `scry recover`) to open a
    /// database that [`WalRecovery::TolerateTornTail`] refuses: the batches after the damage
    /// are no longer in the database, but their bytes are kept for inspection.
    TruncateAtCorruption,
}

/// Options for [`crate::Db::open`]. Build with [`Options::default`] and the setters.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) partition_duration: Duration,
    pub(crate) durability: Durability,
    pub(crate) memtable_size: usize,
    pub(crate) max_frozen_memtables: usize,
    pub(crate) flush_threads: usize,
    pub(crate) wal_recovery: WalRecovery,
    pub(crate) zstd_level: i32,
    pub(crate) compaction_zstd_level: i32,
    pub(crate) row_group_size: usize,
    pub(crate) data_page_row_limit: usize,
    pub(crate) term_index: bool,
    pub(crate) log_patterns: bool,
    pub(crate) retention: Option<Duration>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) keep_interesting: Option<Duration>,
    pub(crate) slow_percentile: f64,
    pub(crate) slow_thresholds: std::collections::BTreeMap<String, Duration>,
    pub(crate) compaction: bool,
    pub(crate) compaction_interval: Duration,
    pub(crate) compaction_max_bytes: u64,
    pub(crate) follow_writer: bool,
    pub(crate) fs: Arc<dyn FileSystem>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            partition_duration: Duration::from_secs(3600),
            durability: Durability::Sync,
            memtable_size: 64 << 20,
            max_frozen_memtables: 2,
            flush_threads: 2,
            wal_recovery: WalRecovery::default(),
            zstd_level: 3,
            compaction_zstd_level: 7,
            row_group_size: 32 * 1024,
            data_page_row_limit: 1024,
            term_index: true,
            log_patterns: true,
            retention: None,
            max_bytes: None,
            keep_interesting: None,
            slow_percentile: 0.99,
            slow_thresholds: std::collections::BTreeMap::new(),
            compaction: true,
            compaction_interval: Duration::from_secs(30),
            compaction_max_bytes: 16 << 20,
            follow_writer: true,
            fs: Arc::new(StdFs),
        }
    }
}

impl Options {
    /// Width of a time partition: rows are grouped into segments by
    /// `floor(time / partition_duration)`, and time predicates skip whole partitions.
    /// Each segment records its own partition, so changing this on reopen only affects new
    /// segments.
    ///
    /// Default: 1 hour. Must be at least 1 second and at most 366 days.
    pub fn partition_duration(mut self, d: Duration) -> Self {
        self.partition_duration = d;
        self
    }

    /// What an acknowledged append survives.
    ///
    /// Default: [`Durability::Sync`] (survives power loss; group commit shares fsyncs).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Size in bytes of Arrow data the memtable holds before it is frozen and handed to
    /// the background flush.
    ///
    /// Default: 64 MiB. Must be at least 64 KiB.
    pub fn memtable_size(mut self, bytes: usize) -> Self {
        self.memtable_size = bytes;
        self
    }

    /// How many frozen memtables may wait for the flush before appends block (push back)
    /// until one is written. Bounds memory to about
    /// `memtable_size * (max_frozen_memtables + 1)`.
    ///
    /// Default: 2. Must be at least 1.
    pub fn max_frozen_memtables(mut self, n: usize) -> Self {
        self.max_frozen_memtables = n;
        self
    }

    /// Number of threads (`scry-flush-N`) that encode Parquet segments in parallel.
    ///
    /// Default: 2 (this project's reference machine has 2 cores). Must be at least 1.
    pub fn flush_threads(mut self, n: usize) -> Self {
        self.flush_threads = n;
        self
    }

    /// What recovery does with a damaged write-ahead log.
    ///
    /// Default: [`WalRecovery::TolerateTornTail`].
    pub fn wal_recovery(mut self, r: WalRecovery) -> Self {
        self.wal_recovery = r;
        self
    }

    /// zstd level of segment pages.
    ///
    /// Default: 3 (zstd's own default: most of the ratio of higher levels at a fraction of
    /// their CPU). Must be in 1..=22.
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// zstd level of the segments compaction and thinning write: they are written once
    /// per partition in the background and kept for the partition's life, so they spend
    /// more CPU for a smaller store than flushes do.
    ///
    /// Default: 7 (about 5% smaller segments than level 3 on the benchmark workload). Must
    /// be in 1..=22.
    pub fn compaction_zstd_level(mut self, level: i32) -> Self {
        self.compaction_zstd_level = level;
        self
    }

    /// The options a compaction or thinning writes its segments with.
    pub(crate) fn for_compaction(&self) -> Options {
        let mut o = self.clone();
        o.zstd_level = self.compaction_zstd_level;
        o
    }

    /// Whether span and log segments get a term index (`.sidx`, [`crate::search::index`]):
    /// searches (`matches`, `attributes['k'] = 'v'`) then read only the blocks holding
    /// their terms. Without it segments are written faster and searches scan them; `scry
    /// reindex` can add the indexes later (it builds every missing one).
    ///
    /// Default: `true`.
    pub fn term_index(mut self, on: bool) -> Self {
        self.term_index = on;
        self
    }

    /// Whether log segments get a log pattern file (`.lpat`,
    /// [`crate::search::log_patterns`]): each row's template, mined at flush. Without it
    /// `log_patterns` queries mine the segments they read from their rows (slower); `scry
    /// reindex` writes the missing files.
    ///
    /// Default: `true`.
    pub fn log_patterns(mut self, on: bool) -> Self {
        self.log_patterns = on;
        self
    }

    /// Maximum rows per Parquet row group in a segment.
    ///
    /// Default: 32768 (32 Ki rows). Must be at least 1024.
    pub fn row_group_size(mut self, rows: usize) -> Self {
        self.row_group_size = rows;
        self
    }

    /// Maximum rows per Parquet data page; smaller pages let a trace lookup or a narrow time
    /// range decode less.
    ///
    /// Default: 1024. Must be at least 64.
    pub fn data_page_row_limit(mut self, rows: usize) -> Self {
        self.data_page_row_limit = rows;
        self
    }

    /// Keep data for this long: a background pass (at open and every minute) drops every
    /// time partition that ended longer ago than this, whole. Files are deleted once no
    /// snapshot reads them. Rows still in the memtable are dropped after they are flushed.
    ///
    /// Default: `None` (keep everything). Must be at least the partition duration.
    pub fn retention(mut self, keep: Option<Duration>) -> Self {
        self.retention = keep;
        self
    }

    /// Keep the interesting traces of a partition this much longer than
    /// [`Options::retention`]: when a partition ages out it is *thinned* — its spans and
    /// logs rewritten keeping only whole traces that had an error, a span slower than its
    /// operation's threshold ([`Options::slow_percentile`], [`Options::slow_threshold`]),
    /// or are referred to by a WARN+ log or a metric exemplar (the rule: [`crate::thin`])
    /// — and dropped whole only after `retention + keep_interesting`. With
    /// [`Options::max_bytes`], the disk budget also thins before it drops: while the store
    /// is over budget its oldest partitions that ended are thinned first, and partitions
    /// are dropped whole only if it is still over budget once all of them are. Thinning
    /// runs on the compaction thread (whether or not background compaction is on).
    ///
    /// Default: `None` (aged partitions are dropped whole). Needs `retention` or
    /// `max_bytes`.
    pub fn keep_interesting(mut self, extra: Option<Duration>) -> Self {
        self.keep_interesting = extra;
        self
    }

    /// Thinning keeps traces with a span slower than this percentile of its operation
    /// (`service_name`, `name`) among the partition's spans, for operations with at least
    /// 20 spans there and no [`Options::slow_threshold`]. Computed from a histogram with
    /// buckets under 1 % wide: a span within 1 % above the exact percentile may not count.
    ///
    /// Default: 0.99. Must be in (0, 1).
    pub fn slow_percentile(mut self, p: f64) -> Self {
        self.slow_percentile = p;
        self
    }

    /// Thinning keeps traces with a span named `operation` (in any service) that took longer
    /// than `threshold`, instead of comparing it with the percentile. Call once per
    /// operation; a second call for the same name replaces the first.
    ///
    /// Default: none (every operation by percentile).
    pub fn slow_threshold(mut self, operation: impl Into<String>, threshold: Duration) -> Self {
        self.slow_thresholds.insert(operation.into(), threshold);
        self
    }

    /// The rule thinning uses for slow spans.
    pub(crate) fn slow_rule(&self) -> crate::thin::SlowRule {
        crate::thin::SlowRule {
            percentile: self.slow_percentile,
            thresholds: self
                .slow_thresholds
                .iter()
                .map(|(k, v)| (k.clone(), i64::try_from(v.as_nanos()).unwrap_or(i64::MAX)))
                .collect(),
        }
    }

    /// A disk budget: a background pass (at open and every minute) drops the oldest time
    /// partitions, whole and across all signals, until the segments and their trace
    /// indexes take at most this many bytes. The write-ahead log (at most about three
    /// memtables) is not counted. Files are deleted once no snapshot reads them.
    /// [`crate::Db::retain`] applies a budget on demand.
    ///
    /// Default: `None` (no budget). Must be at least 1 MiB.
    pub fn max_bytes(mut self, budget: Option<u64>) -> Self {
        self.max_bytes = budget;
        self
    }

    /// Whether a background thread (`scry-compact`) merges small segments of a time
    /// partition into larger ones (policy: [`crate::compaction`]) every
    /// [`Options::compaction_interval`]. [`crate::Db::compact`] works either way.
    ///
    /// Default: `true`.
    pub fn compaction(mut self, on: bool) -> Self {
        self.compaction = on;
        self
    }

    /// How often background compaction looks for work (the first time one interval after
    /// open).
    ///
    /// Default: 30 s. Must be above zero.
    pub fn compaction_interval(mut self, every: Duration) -> Self {
        self.compaction_interval = every;
        self
    }

    /// Segments smaller than this (Parquet bytes) are merged by compaction, and a merge
    /// writes at most about this much. A merge streams: it reads its inputs a row group at
    /// a time and holds one decoded batch per input, not their rows (a span merge first
    /// computes its output's trace trees: about 100 bytes per span while it does, ~50 MB at
    /// the default, and keeps 20 bytes per span of them while it merges).
    ///
    /// Default: 16 MiB (about 350k spans; 10M spans become 32 segments instead of 94).
    /// Must be at least 64 KiB.
    pub fn compaction_max_bytes(mut self, bytes: u64) -> Self {
        self.compaction_max_bytes = bytes;
        self
    }

    /// For a handle opened with [`crate::Db::open_read_only`]: whether every snapshot first
    /// picks up what the writing process did since the last one — its newest manifest and
    /// the log frames it acknowledged (read incrementally: only new bytes are read). A
    /// refresh costs two directory listings and a `stat` when nothing changed. With `false`
    /// the view changes only on [`crate::Db::refresh`]. Writers ignore this option.
    ///
    /// Default: `true` (a reader sees every write acknowledged before its snapshot).
    pub fn follow_writer(mut self, follow: bool) -> Self {
        self.follow_writer = follow;
        self
    }

    /// The file system all engine I/O goes through. Tests use this to inject failures.
    ///
    /// Default: [`StdFs`], the operating system's file system.
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.fs = fs;
        self
    }

    /// The partition width in nanoseconds.
    pub(crate) fn partition_nanos(&self) -> i64 {
        i64::try_from(self.partition_duration.as_nanos()).unwrap_or(i64::MAX)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        fn bad(option: &'static str, reason: String) -> Result<()> {
            Err(Error::InvalidOptions { option, reason })
        }
        let p = self.partition_duration;
        if p < Duration::from_secs(1) || p > Duration::from_secs(366 * 86400) {
            return bad(
                "partition_duration",
                format!("{p:?} is outside 1 s ..= 366 days"),
            );
        }
        if self.memtable_size < 64 << 10 {
            return bad(
                "memtable_size",
                format!("{} bytes is below 64 KiB", self.memtable_size),
            );
        }
        if self.max_frozen_memtables == 0 {
            return bad("max_frozen_memtables", "must be at least 1".into());
        }
        if self.flush_threads == 0 {
            return bad("flush_threads", "must be at least 1".into());
        }
        if !(1..=22).contains(&self.zstd_level) {
            return bad(
                "zstd_level",
                format!("{} is outside 1..=22", self.zstd_level),
            );
        }
        if !(1..=22).contains(&self.compaction_zstd_level) {
            return bad(
                "compaction_zstd_level",
                format!("{} is outside 1..=22", self.compaction_zstd_level),
            );
        }
        if self.row_group_size < 1024 {
            return bad(
                "row_group_size",
                format!("{} is below 1024", self.row_group_size),
            );
        }
        if self.data_page_row_limit < 64 {
            return bad(
                "data_page_row_limit",
                format!("{} is below 64", self.data_page_row_limit),
            );
        }
        if let Some(keep) = self.retention
            && keep < self.partition_duration
        {
            return bad(
                "retention",
                format!("{keep:?} is shorter than the partition duration {p:?}"),
            );
        }
        if self.keep_interesting.is_some() && self.retention.is_none() && self.max_bytes.is_none() {
            return bad(
                "keep_interesting",
                "keeps traces longer than `retention` or the disk budget `max_bytes` would; \
                 neither is set"
                    .into(),
            );
        }
        if !(self.slow_percentile > 0.0 && self.slow_percentile < 1.0) {
            return bad(
                "slow_percentile",
                format!("{} is not in (0, 1)", self.slow_percentile),
            );
        }
        if self.max_bytes.is_some_and(|b| b < 1 << 20) {
            return bad("max_bytes", "a disk budget must be at least 1 MiB".into());
        }
        if self.compaction_interval.is_zero() {
            return bad("compaction_interval", "must be above zero".into());
        }
        if self.compaction_max_bytes < 64 << 10 {
            return bad(
                "compaction_max_bytes",
                format!("{} is below 64 KiB", self.compaction_max_bytes),
            );
        }
        if let Durability::Periodic(i) = self.durability
            && i.is_zero()
        {
            return bad(
                "durability",
                "Periodic interval must be above zero (use Durability::Sync)".into(),
            );
        }
        Ok(())
    }
}
