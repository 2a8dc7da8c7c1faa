//! `scry ingest FILE...`: OTLP files (JSON, JSON lines, protobuf) or stdin into the store,
//! through the library's [`Ingester`]; this prints what it reports.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use scrydb::otlp::Format;
use scrydb::otlp::ingest::{IngestOptions, IngestReport, Ingester, Problem, Progress};
use scrydb::{Db, Signal};

/// Inputs larger than this get a progress bar (when stderr is a terminal).
const PROGRESS_BYTES: u64 = 16 << 20;

/// A progress bar on stderr, drawn only for large inputs on a terminal.
struct Bar {
    terminal: bool,
    last: Instant,
    /// Whether a bar line is open (so the caller ends it after the file).
    drawn: Arc<AtomicBool>,
}

impl Bar {
    fn update(&mut self, p: &Progress<'_>) {
        let Some(total) = p.bytes_total.filter(|t| *t >= PROGRESS_BYTES) else {
            return;
        };
        if !self.terminal || self.last.elapsed().as_millis() < 100 {
            return;
        }
        self.last = Instant::now();
        self.drawn.store(true, Ordering::Relaxed);
        let frac = (p.bytes_read as f64 / total.max(1) as f64).min(1.0);
        let width = 30;
        let filled = (frac * width as f64) as usize;
        eprint!(
            "\r{} [{}{}] {:>3.0}% {} records",
            p.source,
            "#".repeat(filled),
            ".".repeat(width - filled),
            frac * 100.0,
            p.accepted
        );
        let _ = std::io::stderr().flush();
    }
}

/// Prints a problem as it is found: `file:line: ...`, one line per rejected record.
fn print_problem(p: &Problem) {
    for line in p.lines() {
        eprintln!("{line}");
    }
}

/// What one file stored, as `N spans, M log records` or `nothing stored`.
fn stored_line(r: &IngestReport) -> String {
    let got: Vec<String> = Signal::ALL
        .iter()
        .filter(|s| r.stored.get(**s) > 0)
        .map(|s| format!("{} {}", r.stored.get(*s), s.record_noun()))
        .collect();
    if got.is_empty() {
        "nothing stored".to_string()
    } else {
        got.join(", ")
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
    let drawn = Arc::new(AtomicBool::new(false));
    let mut bar = Bar {
        terminal: std::io::stderr().is_terminal(),
        last: Instant::now(),
        drawn: drawn.clone(),
    };
    // Ctrl-C (or SIGTERM) stops at the next request boundary; what was read before is
    // stored and reported exactly. A second Ctrl-C while stopping is not waited for.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let installed = ctrlc::try_set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
        if let Err(e) = installed {
            log::warn!("Ctrl-C will not stop the ingest cleanly: {e}");
        }
    }
    let mut ingester = Ingester::new(db, IngestOptions::default().signal(hint))
        .stop_when(stop.clone())
        .on_problem(print_problem)
        .on_progress(move |p| bar.update(p));
    let mut unreadable = 0;
    for path in files {
        let stdin = path.as_os_str() == "-";
        let source = if stdin {
            "<stdin>".to_string()
        } else {
            path.display().to_string()
        };
        let result = if stdin {
            ingester.ingest_reader(std::io::stdin().lock(), format, &source)
        } else {
            ingester.ingest_file(path, format)
        };
        if drawn.swap(false, Ordering::Relaxed) {
            eprintln!();
        }
        // Printed only now: the file's rows are all appended.
        match result {
            Ok(report) if report.stopped => {
                say!(
                    "{source}: {} (interrupted: the rest was not read)",
                    stored_line(&report)
                );
                break;
            }
            Ok(report) => say!("{source}: {}", stored_line(&report)),
            Err(e @ scrydb::Error::Io { .. }) => {
                eprintln!("{source}: {e}");
                unreadable += 1;
            }
            Err(other) => return Err(other),
        }
    }
    let t = ingester.finish();
    // The summary's time covers the rows reaching their Parquet segments, not only the log.
    db.flush()?;
    for s in Signal::ALL {
        say!(
            "{:<8} {:>10} {} stored, {} rejected",
            s.name(),
            t.stored.get(s),
            s.record_noun(),
            t.rejected.get(s)
        );
    }
    say!("in {:.2} s", start.elapsed().as_secs_f64());
    if t.stopped {
        eprintln!("interrupted: the counts above are exactly what was stored");
    }
    let ok = unreadable == 0 && t.is_clean() && !t.stopped;
    if !ok {
        eprintln!(
            "errors: {unreadable} unreadable file(s), {} request(s) that did not decode, {} rejected record(s)",
            t.undecodable,
            t.rejected.total()
        );
    }
    Ok(ok)
}
