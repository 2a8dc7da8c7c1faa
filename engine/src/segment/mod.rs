//! Segments: immutable, sorted, zstd-compressed Parquet files of one signal and one time
//! partition.
//!
//! A segment is written under a temporary name, fsynced, renamed to
//! `<signal>/<partition>/<id:020>.parquet` and its directory fsynced before a manifest names
//! it. Files carry statistics and the page index (so readers prune row groups and pages by
//! `time` and sort key) and the key-value metadata `scrydb.format_version` and
//! `scrydb.signal`. From format 2 a file leaves out the columns that follow from
//! others (`spans.end_time`), which readers compute ([`stored`]); from format 3 a span
//! segment also stores each span's place in its trace's tree ([`tree`]).

pub mod blocks;
pub mod file;
pub mod merge;
pub mod reader;
pub mod stored;
pub mod tree;
pub mod writer;

pub use crate::manifest::SegmentMeta;

/// Every file of the segment at `path`: its trace index, its term index (spans and logs),
/// its log patterns (logs), its span rollup (spans) and the Parquet file itself, in the
/// order they are deleted.
pub fn segment_files(path: &std::path::Path) -> [std::path::PathBuf; 5] {
    [
        crate::index::index_path(path),
        crate::search::index::term_index_path(path),
        crate::search::log_patterns::pattern_path(path),
        crate::rollup::rollup_path(path),
        path.to_path_buf(),
    ]
}
