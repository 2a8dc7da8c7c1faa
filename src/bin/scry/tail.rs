//! `scry tail`: print records as a writer stores them.

use std::path::Path;
use std::time::Duration;

use scrydb::Signal;
use scrydb::arrow::array::{Array, AsArray, RecordBatch};
use scrydb::arrow::datatypes::TimestampNanosecondType;
use scrydb::tail::Tail;

/// How often the store is polled.
const POLL: Duration = Duration::from_millis(200);

/// Follows `signal` until interrupted (or, with `max`, until that many records printed).
pub fn run(
    dir: &Path,
    signal: Signal,
    filter: Option<&str>,
    max: Option<u64>,
) -> Result<bool, scrydb::sql::Error> {
    let mut tail = Tail::open(dir, signal, filter)?;
    let mut printed = 0u64;
    loop {
        let polled = tail.poll()?;
        if polled.skipped {
            eprintln!(
                "scry tail: fell behind the writer's flush; some records were stored but not shown"
            );
        }
        for batch in &polled.batches {
            for row in 0..batch.num_rows() {
                say!("{}", line(signal, batch, row));
                printed += 1;
                if max.is_some_and(|m| printed >= m) {
                    return Ok(true);
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

fn col<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a dyn Array> {
    batch.column_by_name(name).map(|c| c.as_ref())
}

fn text(batch: &RecordBatch, name: &str, row: usize) -> String {
    use scrydb::arrow::util::display::ArrayFormatter;
    let Some(c) = col(batch, name) else {
        return String::new();
    };
    if c.is_null(row) {
        return String::new();
    }
    ArrayFormatter::try_new(c, &Default::default())
        .map(|f| f.value(row).to_string())
        .unwrap_or_default()
}

fn hex(batch: &RecordBatch, name: &str, row: usize) -> String {
    match col(batch, name) {
        Some(c) if !c.is_null(row) => c
            .as_fixed_size_binary()
            .value(row)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        _ => String::new(),
    }
}

fn time(batch: &RecordBatch, row: usize) -> String {
    let Some(c) = col(batch, "time") else {
        return String::new();
    };
    let ns = c.as_primitive::<TimestampNanosecondType>().value(row);
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// One record as one line.
fn line(signal: Signal, b: &RecordBatch, row: usize) -> String {
    let trace = hex(b, "trace_id", row);
    let trace = if trace.is_empty() {
        String::new()
    } else {
        format!(" trace={trace}")
    };
    match signal {
        Signal::Logs => format!(
            "{} {:<5} {} {}{trace}",
            time(b, row),
            text(b, "severity_text", row),
            text(b, "service_name", row),
            text(b, "body", row).replace('\n', "\\n"),
        ),
        Signal::Spans => {
            let ms = text(b, "duration_ns", row).parse::<f64>().unwrap_or(0.0) / 1e6;
            format!(
                "{} {} {} {ms:.3}ms {} {}{trace}",
                time(b, row),
                text(b, "service_name", row),
                text(b, "name", row),
                text(b, "kind", row),
                text(b, "status_code", row),
            )
        }
        Signal::Metrics => format!(
            "{} {} {} {} {}",
            time(b, row),
            text(b, "service_name", row),
            text(b, "name", row),
            text(b, "metric_type", row),
            text(b, "value", row),
        ),
    }
}
