//! `scry ingest FILE...`: OTLP files (JSON, JSON lines, protobuf) or stdin into the store.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use scrydb::arrow::array::RecordBatch;
use scrydb::otlp::{self, Format, Request};
use scrydb::{Db, Signal};

/// Rows buffered per signal before one append: OTLP requests are often small, and every
/// append is a durable log write.
const APPEND_ROWS: usize = 16 * 1024;

/// Inputs larger than this get a progress bar (when stderr is a terminal).
const PROGRESS_BYTES: u64 = 16 << 20;

/// Per-signal counts over the whole run.
#[derive(Default)]
struct Totals {
    accepted: [u64; 3],
    rejected: [u64; 3],
    /// Requests that did not decode.
    bad_requests: u64,
}

struct Ingest<'a> {
    db: &'a Db,
    pending: [Vec<RecordBatch>; 3],
    pending_rows: [usize; 3],
    totals: Totals,
}

impl Ingest<'_> {
    fn add(
        &mut self,
        source: &str,
        line: usize,
        request: scrydb::Result<Request>,
    ) -> scrydb::Result<()> {
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{source}:{line}: {e}");
                self.totals.bad_requests += 1;
                return Ok(());
            }
        };
        let c = request.convert();
        let i = c.signal.index();
        for e in &c.errors {
            eprintln!("{source}:{line}: rejected {}: {}", e.location, e.reason);
        }
        if c.rejected > c.errors.len() as u64 {
            eprintln!(
                "{source}:{line}: and {} more rejected {}",
                c.rejected - c.errors.len() as u64,
                c.signal.record_noun()
            );
        }
        self.totals.rejected[i] += c.rejected;
        let rows = c.batch.num_rows();
        if rows > 0 {
            self.totals.accepted[i] += rows as u64;
            self.pending[i].push(c.batch);
            self.pending_rows[i] += rows;
            if self.pending_rows[i] >= APPEND_ROWS {
                self.flush(c.signal)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self, signal: Signal) -> scrydb::Result<()> {
        let i = signal.index();
        let batches = std::mem::take(&mut self.pending[i]);
        self.pending_rows[i] = 0;
        if batches.is_empty() {
            return Ok(());
        }
        let batch = scrydb::arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
        self.db.append(signal, &batch)
    }

    fn flush_all(&mut self) -> scrydb::Result<()> {
        for s in Signal::ALL {
            self.flush(s)?;
        }
        Ok(())
    }
}

/// A progress bar on stderr, drawn only for large inputs on a terminal.
struct Progress {
    name: String,
    total: u64,
    shown: bool,
    last: Instant,
}

impl Progress {
    fn new(name: &str, total: u64) -> Self {
        Progress {
            name: name.to_string(),
            total,
            shown: total >= PROGRESS_BYTES && std::io::stderr().is_terminal(),
            last: Instant::now(),
        }
    }

    fn update(&mut self, done: u64, records: u64) {
        if !self.shown || self.last.elapsed().as_millis() < 100 {
            return;
        }
        self.last = Instant::now();
        let frac = (done as f64 / self.total.max(1) as f64).min(1.0);
        let width = 30;
        let filled = (frac * width as f64) as usize;
        eprint!(
            "\r{} [{}{}] {:>3.0}% {records} records",
            self.name,
            "#".repeat(filled),
            ".".repeat(width - filled),
            frac * 100.0
        );
        let _ = std::io::stderr().flush();
    }

    fn done(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

/// Runs the command; returns whether every request and record was stored.
pub fn run(
    db: &Db,
    files: &[PathBuf],
    format: Option<Format>,
    hint: Option<Signal>,
) -> scrydb::Result<bool> {
    let start = Instant::now();
    let mut ingest = Ingest {
        db,
        pending: Default::default(),
        pending_rows: [0; 3],
        totals: Totals::default(),
    };
    let mut unreadable = 0;
    for path in files {
        let before = ingest.totals.accepted;
        let source = path.display().to_string();
        if let Err(e) = ingest_one(&mut ingest, path, format, hint) {
            match e {
                scrydb::Error::Io { .. } => {
                    eprintln!("{source}: {e}");
                    unreadable += 1;
                    continue;
                }
                other => return Err(other),
            }
        }
        let got: Vec<String> = Signal::ALL
            .iter()
            .filter(|s| ingest.totals.accepted[s.index()] > before[s.index()])
            .map(|s| {
                format!(
                    "{} {}",
                    ingest.totals.accepted[s.index()] - before[s.index()],
                    s.record_noun()
                )
            })
            .collect();
        println!(
            "{source}: {}",
            if got.is_empty() {
                "nothing stored".to_string()
            } else {
                got.join(", ")
            }
        );
    }
    ingest.flush_all()?;
    let t = &ingest.totals;
    for s in Signal::ALL {
        let i = s.index();
        println!(
            "{:<8} {:>10} {} stored, {} rejected",
            s.name(),
            t.accepted[i],
            s.record_noun(),
            t.rejected[i]
        );
    }
    println!("in {:.2} s", start.elapsed().as_secs_f64());
    let ok = unreadable == 0 && t.bad_requests == 0 && t.rejected.iter().all(|r| *r == 0);
    if !ok {
        eprintln!(
            "errors: {unreadable} unreadable file(s), {} request(s) that did not decode, {} rejected record(s)",
            t.bad_requests,
            t.rejected.iter().sum::<u64>()
        );
    }
    Ok(ok)
}

fn ingest_one(
    ingest: &mut Ingest<'_>,
    path: &Path,
    format: Option<Format>,
    hint: Option<Signal>,
) -> scrydb::Result<()> {
    let stdin = path.as_os_str() == "-";
    let source = if stdin {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let io_err = |op: &'static str| {
        move |e| scrydb::Error::Io {
            op,
            path: path.to_path_buf(),
            source: e,
        }
    };
    let format = format.or_else(|| (!stdin).then(|| Format::from_path(path)).flatten());
    if format == Some(Format::JsonLines) && !stdin {
        // Streamed line by line: a file of any size in bounded memory.
        let file = std::fs::File::open(path).map_err(io_err("open"))?;
        let total = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut progress = Progress::new(&source, total);
        let mut reader = BufReader::new(file);
        let (mut line_no, mut done, mut buf) = (0usize, 0u64, Vec::new());
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(io_err("read"))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            done += n as u64;
            if buf.trim_ascii().is_empty() {
                continue;
            }
            ingest.add(&source, line_no, otlp::decode_json(&buf))?;
            progress.update(done, ingest.totals.accepted.iter().sum());
        }
        progress.done();
        return Ok(());
    }
    let mut bytes = Vec::new();
    if stdin {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(io_err("read"))?;
    } else {
        bytes = std::fs::read(path).map_err(io_err("read"))?;
    }
    let format = format.unwrap_or_else(|| Format::sniff(&bytes));
    let total = bytes.len() as u64;
    let requests = otlp::split_requests(&bytes, format, hint);
    let n = requests.len().max(1) as u64;
    let mut progress = Progress::new(&source, total);
    for (i, (line, request)) in requests.into_iter().enumerate() {
        ingest.add(&source, line, request)?;
        progress.update(
            (i as u64 + 1) * total / n,
            ingest.totals.accepted.iter().sum(),
        );
    }
    progress.done();
    Ok(())
}
