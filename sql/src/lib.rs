//! # scrydb-sql
//!
//! The SQL layer of ScryDB: Apache DataFusion over the storage engine's snapshots. It depends
//! on `scrydb-engine`, never the reverse, and knows nothing of file formats beyond what a
//! snapshot hands it (segment paths with time ranges, in-memory batches).
//!
//! This crate currently holds the one place where engine errors become DataFusion errors;
//! the `spans`, `logs` and `metrics` table providers are built on it.

use datafusion::error::DataFusionError;

/// Errors of the SQL layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The storage engine failed.
    Engine(scrydb_engine::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Engine(e) => Some(e),
        }
    }
}

impl From<scrydb_engine::Error> for Error {
    fn from(e: scrydb_engine::Error) -> Self {
        Error::Engine(e)
    }
}

/// Engine errors reach DataFusion as external errors, so the user sees the engine's
/// message (which names the file or column) and callers can downcast to the engine error.
impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_keep_their_message_in_datafusion() {
        let e: DataFusionError = Error::from(scrydb_engine::Error::Closed).into();
        assert!(e.to_string().contains("database is closed"), "{e}");
    }
}
