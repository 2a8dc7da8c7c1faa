//! Files out: choosing the rows to export as OTLP, and streaming them into an
//! [`OtlpWriter`](scrydb_engine::otlp::export::OtlpWriter) (`scry export`).
//!
//! Two selections ([`Selection`]):
//! - **traces by id**: every span of each trace, and every log record carrying one of the
//!   ids. Metric data points whose exemplars reference a trace are *not* exported with it:
//!   a point aggregates many requests and belongs to its series, not to one trace, and
//!   exporting it with every trace it has an exemplar of would store it again for each
//!   trace file re-ingested. Export them with a predicate over `metrics` when wanted.
//! - **a SQL predicate over one table** (`spans`, `logs` or `metrics`): every row of that
//!   table for which it holds. The predicate is checked as one SQL expression first
//!   ([`crate::compare::sql_predicate`]), so it cannot change the statement it is placed in.
//!
//! Rows are read with `SELECT *` through the [`Session`] (trace ids go through the trace
//! indexes) and streamed batch by batch into the writer: memory is bounded by a batch and
//! one pending request per signal, never by the rows exported. Each table is read in its own
//! statement, so the spans and the logs of a trace come from two snapshots taken one after
//! the other.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use scrydb_engine::otlp::export::ExportOptions;
//! use scrydb_sql::export::{Selection, export_blocking};
//! let dir = tempfile::tempdir()?;
//! let db = scrydb_engine::Db::open(dir.path(), scrydb_engine::Options::default())?;
//! let spans = scrydb_workload::synth::spans(&mut scrydb_workload::Rng::new(1), 10, 0);
//! db.append(scrydb_engine::Signal::Spans, &spans)?;
//! let session = scrydb_sql::Session::new(db.reader())?;
//! let selection = Selection::predicate(scrydb_engine::Signal::Spans, "true");
//! let (out, exported) = export_blocking(&session, &selection, Vec::new(), ExportOptions::default())?;
//! assert_eq!(exported.records.spans, 10);
//! assert_eq!(out.iter().filter(|b| **b == b'\n').count() as u64, exported.requests);
//! # Ok(()) }
//! ```

use std::io::Write;

use futures::StreamExt;
use scrydb_engine::Signal;
use scrydb_engine::otlp::export::{ExportOptions, Exported, OtlpWriter};

use crate::{Error, Session};

/// Which rows to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Traces by id: every span of each, and every log record carrying one of the ids (not
    /// the metric points whose exemplars reference them; see the [module](self) docs).
    Traces(Vec<[u8; 16]>),
    /// The rows of `signal`'s table for which `predicate` (a SQL expression over its
    /// columns, e.g. `service_name = 'cart' AND duration_ns > 5e8`) holds.
    Where {
        /// The table.
        signal: Signal,
        /// The SQL predicate.
        predicate: String,
    },
}

impl Selection {
    /// [`Selection::Where`] with `predicate` over `signal`'s table.
    pub fn predicate(signal: Signal, predicate: impl Into<String>) -> Self {
        Selection::Where {
            signal,
            predicate: predicate.into(),
        }
    }

    /// The statements reading the selected rows, each with the table it reads. A predicate
    /// that is not one SQL expression, or a trace selection without ids, is an
    /// [`Error::Query`] saying so.
    pub fn statements(&self, max_expression_depth: usize) -> Result<Vec<(Signal, String)>, Error> {
        match self {
            Selection::Traces(ids) => {
                if ids.is_empty() {
                    return Err(Error::Query("export: no trace ids given".into()));
                }
                let list: Vec<String> = ids
                    .iter()
                    .map(|id| format!("'{}'", crate::ids::hex(id)))
                    .collect();
                let list = list.join(", ");
                Ok([Signal::Spans, Signal::Logs]
                    .into_iter()
                    .map(|s| (s, format!("SELECT * FROM {s} WHERE trace_id IN ({list})")))
                    .collect())
            }
            Selection::Where { signal, predicate } => {
                // The one checker of user predicates (shared with `compare`).
                let checked = crate::compare::sql_predicate(
                    &format!("export --where over {signal}: predicate"),
                    predicate,
                    max_expression_depth,
                )?;
                Ok(vec![(
                    *signal,
                    format!("SELECT * FROM {signal} WHERE {checked}"),
                )])
            }
        }
    }
}

/// Exports the rows `selection` chooses from `session` into `out` as `options` says, and
/// returns `out` with what was written. Batches stream from the query into the writer
/// (see the [module](self) docs). A predicate that does not parse or plan is an
/// [`Error::Query`] naming it; a row that cannot be expressed in OTLP is an
/// [`Error::Engine`] holding [`scrydb_engine::Error::InvalidBatch`]. On an error, `out` may
/// hold the requests written before it. Trace ids that match nothing export nothing (the
/// counts say so).
pub async fn export<W: Write + Send>(
    session: &Session,
    selection: &Selection,
    out: W,
    options: ExportOptions,
) -> Result<(W, Exported), Error> {
    let statements = selection.statements(session.max_expression_depth)?;
    let mut writer = OtlpWriter::new(out, options);
    for (signal, sql) in statements {
        let mut stream = session.sql_stream(&sql).await?;
        while let Some(batch) = stream.next().await {
            writer.write_batch(signal, &batch?)?;
        }
    }
    Ok(writer.finish()?)
}

/// [`export`] for callers without an async runtime (see [`crate::block_on`]).
pub fn export_blocking<W: Write + Send>(
    session: &Session,
    selection: &Selection,
    out: W,
    options: ExportOptions,
) -> Result<(W, Exported), Error> {
    crate::block_on(export(session, selection, out, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_of_each_selection() {
        let ids = Selection::Traces(vec![[0xab; 16]]);
        let s = ids.statements(100).expect("ids");
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1],
            (
                Signal::Logs,
                format!(
                    "SELECT * FROM logs WHERE trace_id IN ('{}')",
                    "ab".repeat(16)
                )
            )
        );
        let p = Selection::predicate(Signal::Metrics, "name = 'x'");
        assert_eq!(
            p.statements(100).expect("predicate")[0].1,
            "SELECT * FROM metrics WHERE (name = 'x')"
        );
        for bad in ["true; DROP TABLE x", "a = 1) OR (1 = 1", "x AS y"] {
            let e = Selection::predicate(Signal::Spans, bad)
                .statements(100)
                .expect_err(bad)
                .to_string();
            assert!(e.starts_with("export --where over spans: predicate"), "{e}");
        }
        assert!(Selection::Traces(vec![]).statements(100).is_err());
    }
}
