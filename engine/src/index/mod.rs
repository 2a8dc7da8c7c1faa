//! The per-segment trace index: for every trace id in a segment, a roaring bitmap of the
//! row positions holding it (for `metrics`, the rows whose exemplars carry it), plus a bloom
//! filter over the ids that readers keep in memory so a lookup opens only segments that can
//! hold the id.
//!
//! File `<id:020>.tidx` beside segment `<id:020>.parquet` (layout in `docs/format.md`,
//! section 4a). It is written and fsynced before the segment is published, read memory-mapped
//! through the engine's [`FileSystem`](crate::io::FileSystem) (never read whole), and checked
//! against its CRC when first opened. It can be rebuilt from the segment at any time
//! ([`build_for_segment`]).
//!
//! The steps: [`format`] (the bytes), [`bloom`] (the membership filter), [`build`] (rows to
//! file), [`read`] (an open index), [`cache`] (the indexes a database keeps open). Lookups
//! that use them are in [`crate::trace`].

pub mod bloom;
pub mod build;
pub mod cache;
pub mod format;
pub mod read;

pub use bloom::Bloom;
pub use build::{IndexBuilder, build_for_segment, collect, write};
pub use cache::IndexCache;
pub use format::{MAGIC, VERSION, encode, index_path};
pub use read::SegmentIndex;
