//! Runs the `.slt` files beside this file against a ScryDB store holding the dataset of
//! `tests/fixtures/sql/` (see its README): `dataset.jsonl` flushed into segments, then
//! `unflushed.json` left in the memtable.
//!
//! Output conventions: ids are lowercase hex, NULL is `NULL`, an empty string is
//! `(empty)`. For `EXPLAIN` statements only the `ScryScan` lines of the physical plan are
//! returned (the rest of a DataFusion plan changes between versions; the scan line is what
//! ScryDB decides: how many segments the time predicates pruned).
//!
//! `cargo test --test sqllogictest [-- FILTER]` runs the files whose name contains FILTER.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::Array;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use scrydb::sql::{Session, ids_as_hex};
use scrydb::{Db, Options, otlp};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

#[derive(Clone)]
struct ScryRunner {
    session: Arc<Session>,
}

#[async_trait::async_trait]
impl AsyncDB for ScryRunner {
    type Error = scrydb::sql::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let (schema, batches) = self.session.sql_with_schema(sql).await?;
        let upper = sql.trim_start().to_ascii_uppercase();
        if upper.starts_with("EXPLAIN") && !upper.starts_with("EXPLAIN ANALYZE") {
            let mut rows = Vec::new();
            for b in &batches {
                let plan = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>();
                for line in plan.into_iter().flat_map(|a| a.iter().flatten()) {
                    for l in line.lines().filter(|l| l.contains("ScryScan")) {
                        rows.push(vec![l.trim().to_string()]);
                    }
                }
            }
            return Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Text],
                rows,
            });
        }
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let opts = FormatOptions::default();
        let mut rows = Vec::new();
        for b in batches.iter().map(ids_as_hex) {
            let fmts: Vec<ArrayFormatter> = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).expect("formattable"))
                .collect();
            for r in 0..b.num_rows() {
                rows.push(
                    b.columns()
                        .iter()
                        .zip(&fmts)
                        .map(|(c, f)| {
                            if c.is_null(r) {
                                "NULL".to_string()
                            } else {
                                let v = f.value(r).to_string();
                                if v.is_empty() { "(empty)".into() } else { v }
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; schema.fields().len()],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "scrydb"
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sql")
        .join(name)
}

fn ingest(db: &Db, file: &Path) {
    let bytes = std::fs::read(file).expect("fixture");
    let format = otlp::Format::from_path(file).expect("known extension");
    for (line, request) in otlp::split_requests(&bytes, format, None) {
        let request = request.unwrap_or_else(|e| panic!("{}:{line}: {e}", file.display()));
        let got = db.ingest_otlp(&request).expect("ingest");
        assert_eq!(got.rejected, 0, "{:?}", got.errors);
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    ingest(&db, &fixture("dataset.jsonl"));
    db.flush().expect("flush");
    ingest(&db, &fixture("unflushed.json"));
    let runner = ScryRunner {
        session: Arc::new(Session::new(db.reader()).expect("session")),
    };

    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sqllogictest");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&here)
        .expect("test directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .filter(|p| {
            filter
                .as_ref()
                .is_none_or(|f| p.to_string_lossy().contains(f.as_str()))
        })
        .collect();
    files.sort();
    let mut failed = 0;
    for file in &files {
        let mut r = sqllogictest::Runner::new({
            let runner = runner.clone();
            move || {
                let runner = runner.clone();
                async move { Ok(runner) }
            }
        });
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        match scrydb::sql::runtime().block_on(r.run_file_async(file)) {
            Ok(()) => println!("ok      {name}"),
            Err(e) => {
                failed += 1;
                println!("FAILED  {name}\n{}", e.display(true));
            }
        }
    }
    db.close().expect("close");
    println!("{} file(s), {failed} failed", files.len());
    if failed > 0 {
        std::process::exit(1);
    }
}
