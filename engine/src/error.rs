//! The engine's error type.

use std::path::PathBuf;

use crate::Signal;

/// Everything that can go wrong in the storage engine.
///
/// Variants say what the caller did wrong ([`Error::InvalidBatch`], [`Error::InvalidOptions`])
/// or what broke ([`Error::Io`], [`Error::Corrupted`], [`Error::Poisoned`]). Every variant
/// that concerns a file names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A batch handed to an append call does not fit its signal's schema. Nothing of the
    /// batch was stored.
    #[error("invalid {signal} batch: column `{column}`{}: {reason}", row.map(|r| format!(", row {r}")).unwrap_or_default())]
    InvalidBatch {
        /// The signal the batch was appended to.
        signal: Signal,
        /// The offending column.
        column: String,
        /// The first offending row, when the problem is in a value rather than the type.
        row: Option<usize>,
        /// What is wrong.
        reason: String,
    },

    /// An OTLP payload could not be decoded at all (malformed protobuf or JSON, a signal
    /// that cannot be told). Nothing of it was stored. Records that decode but are invalid
    /// are not this error: they are counted as rejected (OTLP partial success).
    #[error("invalid OTLP payload: {reason}")]
    InvalidOtlp {
        /// What is wrong and where (a field path or a line and column).
        reason: String,
    },

    /// An option value is out of range.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOptions {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What the engine was doing ("write", "fsync", "rename", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A file the engine wrote does not hold what the engine wrote into it: a checksum
    /// mismatch, a bad magic number, a frame that cannot be decoded.
    #[error("corrupted file {}{}: {reason}", path.display(), offset.map(|o| format!(" at byte {o}")).unwrap_or_default())]
    Corrupted {
        /// The damaged file.
        path: PathBuf,
        /// Where in the file the damage was found, when known.
        offset: Option<u64>,
        /// What was found.
        reason: String,
    },

    /// A file was written by a newer (or unknown) version of the on-disk format.
    #[error("{} has format version {found}; this build reads versions up to {supported}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// Data exceeds a limit of the on-disk format (a segment with more rows than its trace
    /// index can address). The operation failed before anything was published.
    #[error("{what} is too large: {size} exceeds the format's limit of {limit}")]
    TooLarge {
        /// What exceeds the limit.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// Another process (or another `Db` in this process) has the directory open.
    #[error("database directory {} is locked by another writer{} (lock file {})", dir.display(), holder.as_ref().map(|h| format!(", {h}")).unwrap_or_default(), lock_file.display())]
    Locked {
        /// The database directory.
        dir: PathBuf,
        /// The lock file that is held.
        lock_file: PathBuf,
        /// Who holds it, as the holder wrote it into the lock file: `pid 4242: scry serve
        /// --db ./data`. `None` when the holder wrote nothing readable.
        holder: Option<String>,
    },

    /// An earlier write, fsync or flush failed, or a background thread panicked; the
    /// database refuses writes rather than continue on an unknown state. Reopen it: recovery
    /// replays the write-ahead log, so no acknowledged write is lost.
    #[error(
        "database refuses writes after an earlier failure: {reason}. Nothing acknowledged is lost: {}",
        recovery_advice(reason)
    )]
    Poisoned {
        /// The first failure.
        reason: String,
    },

    /// The database is closed.
    #[error("database is closed")]
    Closed,

    /// A write (append, flush, retention, index rebuild) on a database opened with
    /// [`crate::Db::open_read_only`]. Nothing was changed.
    #[error("database {} is open read-only: writes are refused", dir.display())]
    ReadOnly {
        /// The database directory.
        dir: PathBuf,
    },

    /// A read-only open of a directory that holds no ScryDB store (it is missing, empty, or
    /// has no manifest and no data). Nothing was created.
    #[error("no ScryDB store at {}", dir.display())]
    NotAStore {
        /// The directory.
        dir: PathBuf,
    },

    /// Encoding or decoding Parquet failed.
    #[error("parquet {}: {source}", path.display())]
    Parquet {
        /// The segment file.
        path: PathBuf,
        /// The Parquet library's error.
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// An Arrow computation failed (an engine bug or an unsupported value; never bad input,
    /// which is [`Error::InvalidBatch`]).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A copy of this error with the same variant and fields, for an error that has to be
    /// reported in two places (errors are not `Clone`: they hold `std::io::Error`s). Wrapped
    /// operating-system, Parquet and Arrow errors keep their kind and message, not their
    /// own sources.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::InvalidBatch {
                signal,
                column,
                row,
                reason,
            } => Error::InvalidBatch {
                signal: *signal,
                column: column.clone(),
                row: *row,
                reason: reason.clone(),
            },
            Error::InvalidOtlp { reason } => Error::InvalidOtlp {
                reason: reason.clone(),
            },
            Error::InvalidOptions { option, reason } => Error::InvalidOptions {
                option,
                reason: reason.clone(),
            },
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Corrupted {
                path,
                offset,
                reason,
            } => Error::Corrupted {
                path: path.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => Error::UnsupportedVersion {
                path: path.clone(),
                found: *found,
                supported: *supported,
            },
            Error::Locked {
                dir,
                lock_file,
                holder,
            } => Error::Locked {
                dir: dir.clone(),
                lock_file: lock_file.clone(),
                holder: holder.clone(),
            },
            Error::Poisoned { reason } => Error::Poisoned {
                reason: reason.clone(),
            },
            Error::TooLarge { what, size, limit } => Error::TooLarge {
                what,
                size: *size,
                limit: *limit,
            },
            Error::Closed => Error::Closed,
            Error::ReadOnly { dir } => Error::ReadOnly { dir: dir.clone() },
            Error::NotAStore { dir } => Error::NotAStore { dir: dir.clone() },
            Error::Parquet { path, source } => Error::Parquet {
                path: path.clone(),
                source: parquet::errors::ParquetError::General(source.to_string()),
            },
            Error::Arrow(e) => Error::Arrow(arrow::error::ArrowError::ExternalError(
                e.to_string().into(),
            )),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupted(
        path: impl Into<PathBuf>,
        offset: Option<u64>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupted {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_option(option: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidOptions {
            option,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(
        signal: Signal,
        column: impl Into<String>,
        row: Option<usize>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidBatch {
            signal,
            column: column.into(),
            row,
            reason: reason.into(),
        }
    }
}

/// What to do after a fail-stop, for [`Error::Poisoned`]'s message.
fn recovery_advice(reason: &str) -> &'static str {
    let lower = reason.to_ascii_lowercase();
    if lower.contains("no space left")
        || lower.contains("storage full")
        || lower.contains("disk quota")
    {
        "free disk space, then close and reopen the database (restart `scry serve`); recovery \
         replays the write-ahead log and writes are accepted again"
    } else {
        "close and reopen the database (restart `scry serve`); recovery replays the \
         write-ahead log"
    }
}
