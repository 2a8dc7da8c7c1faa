//! `scry sql ["QUERY"]`: run SQL over the store, or an interactive prompt with history.

use std::io::Write;

use scrydb::arrow::array::RecordBatch;
use scrydb::arrow::datatypes::SchemaRef;
use scrydb::arrow::util::display::{ArrayFormatter, FormatOptions};
use scrydb::sql::{Session, ids_as_hex};

/// Output formats of `scry sql`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned table.
    Table,
    /// CSV with a header line.
    Csv,
    /// JSON lines: one object per row.
    Json,
}

/// Runs one query and prints its result; `Ok(false)` when the query failed (the error is
/// printed as one line).
pub fn run_query(session: &Session, query: &str, format: OutputFormat) -> bool {
    match session.sql_with_schema_blocking(query) {
        Ok((schema, batches)) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if let Err(e) = print(&mut out, &schema, &batches, format) {
                eprintln!("error: {e}");
                return false;
            }
            true
        }
        Err(e) => {
            eprintln!("error: {e}");
            false
        }
    }
}

/// Writes a result in `format`; ids are shown as lowercase hex.
pub fn print(
    out: &mut impl Write,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<(), Box<dyn std::error::Error>> {
    let batches: Vec<RecordBatch> = batches.iter().map(ids_as_hex).collect();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let opts = FormatOptions::default().with_null("");
    let mut rows: Vec<Vec<Option<String>>> = Vec::new();
    for b in &batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .zip(&fmts)
                    .map(|(c, f)| (!c.is_null(r)).then(|| f.value(r).to_string()))
                    .collect(),
            );
        }
    }
    match format {
        OutputFormat::Table => {
            // Cells may hold several lines (EXPLAIN plans); each line is aligned.
            let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    for l in cell.as_deref().unwrap_or("").lines() {
                        *w = (*w).max(l.chars().count());
                    }
                }
            }
            let line = |cells: Vec<&str>| -> String {
                let split: Vec<Vec<&str>> = cells.iter().map(|c| c.lines().collect()).collect();
                let height = split.iter().map(Vec::len).max().unwrap_or(0).max(1);
                (0..height)
                    .map(|i| {
                        split
                            .iter()
                            .zip(&widths)
                            .map(|(c, w)| format!(" {:<w$} ", c.get(i).copied().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join("|")
                            .trim_end()
                            .to_string()
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            writeln!(out, "{}", line(names.iter().map(String::as_str).collect()))?;
            writeln!(
                out,
                "{}",
                widths
                    .iter()
                    .map(|w| "-".repeat(w + 2))
                    .collect::<Vec<_>>()
                    .join("+")
            )?;
            for row in &rows {
                writeln!(
                    out,
                    "{}",
                    line(row.iter().map(|c| c.as_deref().unwrap_or("")).collect())
                )?;
            }
            writeln!(
                out,
                "({} row{})",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            )?;
        }
        OutputFormat::Csv => {
            let quote = |s: &str| {
                if s.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_string()
                }
            };
            writeln!(
                out,
                "{}",
                names.iter().map(|n| quote(n)).collect::<Vec<_>>().join(",")
            )?;
            for row in &rows {
                writeln!(
                    out,
                    "{}",
                    row.iter()
                        .map(|c| quote(c.as_deref().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                )?;
            }
        }
        OutputFormat::Json => {
            let mut w = scrydb::arrow::json::LineDelimitedWriter::new(&mut *out);
            for b in &batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}

/// The interactive prompt: statements end with `;`, history is kept in `~/.scry_history`.
pub fn repl(session: &Session, format: OutputFormat) -> Result<(), Box<dyn std::error::Error>> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".scry_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "ScryDB SQL. Tables: spans, logs, metrics. End statements with ';', quit with \\q or Ctrl-D."
    );
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() { "scry> " } else { "  ... " };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buf.is_empty() && (trimmed == "\\q" || trimmed == "quit" || trimmed == "exit") {
                    break;
                }
                buf.push_str(&line);
                buf.push('\n');
                if trimmed.ends_with(';') {
                    let query = buf.trim().to_string();
                    let _ = editor.add_history_entry(query.as_str());
                    run_query(session, &query, format);
                    buf.clear();
                }
            }
            Err(ReadlineError::Interrupted) => buf.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
