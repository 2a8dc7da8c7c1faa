//! `scry sql ["QUERY"]`: run SQL over the store; with no query, statements from standard
//! input (an interactive prompt with history on a terminal).
//!
//! Results stream: CSV and JSON are written batch by batch, and the table format aligns
//! its columns on the first [`TABLE_ALIGN_ROWS`] rows and streams the rest, so a query of
//! millions of rows never holds them all as strings.

use std::io::{self, BufRead, IsTerminal, Write};

use futures::StreamExt;
use scrydb::arrow::array::RecordBatch;
use scrydb::arrow::datatypes::SchemaRef;
use scrydb::arrow::util::display::{ArrayFormatter, FormatOptions};
use scrydb::sql::{Session, ids_as_hex};

/// Rows the table format reads before it fixes its column widths.
const TABLE_ALIGN_ROWS: usize = 1_000;

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

/// How a statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and its result was printed.
    Ok,
    /// It failed; the error was printed as one line.
    Failed,
    /// Whoever reads our output stopped reading (a closed pipe): stop quietly.
    OutputClosed,
}

/// Runs one statement and prints its result to standard output.
pub fn run_query(session: &Session, query: &str, format: OutputFormat) -> Outcome {
    let result = scrydb::sql::block_on(async {
        let df = session.dataframe(query).await?;
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let stream = df
            .execute_stream()
            .await
            .map_err(scrydb::sql::Error::from)?;
        Ok::<_, scrydb::sql::Error>((schema, stream))
    });
    print_result(result, format)
}

/// Runs one statement on a cluster (`scry sql --cluster`: `ctx` from
/// `scrydb::sql::cluster::connect`) and prints its result to standard output.
pub fn run_cluster_query(
    ctx: &scrydb::sql::datafusion::prelude::SessionContext,
    query: &str,
    format: OutputFormat,
) -> Outcome {
    let result = scrydb::sql::block_on(async {
        let df = ctx.sql(query).await.map_err(scrydb::sql::Error::from)?;
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let stream = df
            .execute_stream()
            .await
            .map_err(scrydb::sql::Error::from)?;
        Ok::<_, scrydb::sql::Error>((schema, stream))
    });
    print_result(result, format)
}

fn print_result(
    result: Result<
        (
            SchemaRef,
            scrydb::sql::datafusion::physical_plan::SendableRecordBatchStream,
        ),
        scrydb::sql::Error,
    >,
    format: OutputFormat,
) -> Outcome {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let (schema, mut stream) = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
    };
    let mut printer = Printer::new(&schema, format);
    let mut next = || scrydb::sql::block_on(stream.next());
    let written = (|| -> Result<(), PrintError> {
        while let Some(batch) = next() {
            let batch = batch.map_err(|e| PrintError::Query(scrydb::sql::Error::from(e)))?;
            printer.batch(&mut out, &batch)?;
        }
        printer.finish(&mut out)?;
        out.flush().map_err(PrintError::Io)
    })();
    match written {
        Ok(()) => Outcome::Ok,
        Err(PrintError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => Outcome::OutputClosed,
        Err(e) => {
            // What was printed so far stays; the error says why the rest is missing.
            let _ = out.flush();
            eprintln!("error: {e}");
            Outcome::Failed
        }
    }
}

#[derive(Debug)]
enum PrintError {
    Io(io::Error),
    Query(scrydb::sql::Error),
    Format(String),
}

impl std::fmt::Display for PrintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrintError::Io(e) => write!(f, "writing the result: {e}"),
            PrintError::Query(e) => write!(f, "{e}"),
            PrintError::Format(e) => write!(f, "formatting the result: {e}"),
        }
    }
}

impl From<io::Error> for PrintError {
    fn from(e: io::Error) -> Self {
        PrintError::Io(e)
    }
}

/// Writes a result in one format as its batches arrive; ids are shown as lowercase hex.
struct Printer {
    format: OutputFormat,
    names: Vec<String>,
    /// Table format: rows held until the widths are fixed.
    pending: Vec<Vec<String>>,
    /// Table format: the column widths, once fixed.
    widths: Option<Vec<usize>>,
    rows: usize,
    header_done: bool,
}

impl Printer {
    fn new(schema: &SchemaRef, format: OutputFormat) -> Self {
        Printer {
            format,
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            pending: Vec::new(),
            widths: None,
            rows: 0,
            header_done: false,
        }
    }

    fn batch(&mut self, out: &mut impl Write, batch: &RecordBatch) -> Result<(), PrintError> {
        let batch = ids_as_hex(batch);
        self.rows += batch.num_rows();
        if self.format == OutputFormat::Json {
            let mut w = scrydb::arrow::json::LineDelimitedWriter::new(&mut *out);
            w.write(&batch)
                .and_then(|()| w.finish())
                .map_err(|e| match e {
                    scrydb::arrow::error::ArrowError::IoError(_, e) => PrintError::Io(e),
                    e => PrintError::Format(e.to_string()),
                })?;
            return Ok(());
        }
        let opts = FormatOptions::default().with_null("");
        let fmts = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PrintError::Format(e.to_string()))?;
        for r in 0..batch.num_rows() {
            let row: Vec<String> = fmts.iter().map(|f| f.value(r).to_string()).collect();
            match self.format {
                OutputFormat::Csv => {
                    if !self.header_done {
                        csv_line(out, &self.names)?;
                        self.header_done = true;
                    }
                    csv_line(out, &row)?;
                }
                OutputFormat::Table => {
                    if self.widths.is_some() {
                        self.table_row(out, &row)?;
                    } else {
                        self.pending.push(row);
                        if self.pending.len() >= TABLE_ALIGN_ROWS {
                            self.fix_widths(out)?;
                        }
                    }
                }
                OutputFormat::Json => unreachable!("handled above"),
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut impl Write) -> Result<(), PrintError> {
        match self.format {
            OutputFormat::Csv if !self.header_done => csv_line(out, &self.names)?,
            OutputFormat::Table => {
                if self.widths.is_none() {
                    self.fix_widths(out)?;
                }
                let n = self.rows;
                writeln!(out, "({n} row{})", if n == 1 { "" } else { "s" })?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Fixes the column widths from the header and the rows held, prints both.
    fn fix_widths(&mut self, out: &mut impl Write) -> Result<(), PrintError> {
        // Cells may hold several lines (EXPLAIN plans); each line is aligned.
        let mut widths: Vec<usize> = self.names.iter().map(|n| n.chars().count()).collect();
        for row in &self.pending {
            for (w, cell) in widths.iter_mut().zip(row) {
                for l in cell.lines() {
                    *w = (*w).max(l.chars().count());
                }
            }
        }
        self.widths = Some(widths);
        let names = self.names.clone();
        self.table_row(out, &names)?;
        let widths = self.widths.as_ref().expect("set above");
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
        writeln!(out, "{}", rule.join("+"))?;
        for row in std::mem::take(&mut self.pending) {
            self.table_row(out, &row)?;
        }
        Ok(())
    }

    /// One table row, each cell padded to its column's width (a wider cell is written
    /// whole and pushes the rest of its line right).
    fn table_row(&self, out: &mut impl Write, cells: &[String]) -> Result<(), PrintError> {
        let widths = self.widths.as_deref().unwrap_or(&[]);
        let split: Vec<Vec<&str>> = cells.iter().map(|c| c.lines().collect()).collect();
        let height = split.iter().map(Vec::len).max().unwrap_or(0).max(1);
        for i in 0..height {
            let mut line = String::new();
            for (j, cell) in split.iter().enumerate() {
                if j > 0 {
                    line.push('|');
                }
                let text = cell.get(i).copied().unwrap_or("");
                let width = widths.get(j).copied().unwrap_or(0);
                line.push(' ');
                line.push_str(text);
                let pad = width.saturating_sub(text.chars().count());
                line.extend(std::iter::repeat_n(' ', pad + 1));
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

fn csv_line(out: &mut impl Write, cells: &[String]) -> io::Result<()> {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let line: Vec<String> = cells.iter().map(|c| quote(c)).collect();
    writeln!(out, "{}", line.join(","))
}

/// Splits SQL text into statements at `;` outside quotes and comments; the text after the
/// last `;` (if not blank) is a statement too. Returns the complete statements and the
/// unfinished rest.
pub fn split_statements(text: &str) -> (Vec<String>, String) {
    let mut out = Vec::new();
    let mut start = 0;
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        // A doubled quote is an escaped quote.
                        if b.get(i + 1) == Some(&q) {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            b';' => {
                let stmt = text[start..i].trim();
                if !stmt.is_empty() {
                    out.push(stmt.to_string());
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    (out, text[start.min(text.len())..].to_string())
}

/// Whether the unfinished rest holds anything but blanks and comments.
fn has_statement(rest: &str) -> bool {
    rest.lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && !l.starts_with("--"))
}

/// A backslash command of the prompt: `\q` quits, `\d` lists the tables, `\d TABLE`
/// describes one, `\?` lists the commands. `None` when the line is not one.
enum Meta {
    Quit,
    Run(String),
    Help,
    Unknown(String),
}

fn meta_command(line: &str) -> Option<Meta> {
    let t = line.trim();
    if matches!(t, "quit" | "exit") {
        return Some(Meta::Quit);
    }
    let rest = t.strip_prefix('\\')?;
    let mut words = rest.split_whitespace();
    Some(match (words.next(), words.next()) {
        (Some("q"), None) => Meta::Quit,
        (Some("?"), None) => Meta::Help,
        (Some("d"), None) => Meta::Run(
            "SELECT table_name, table_type FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY table_name"
                .into(),
        ),
        (Some("d"), Some(table)) => {
            Meta::Run(format!("DESCRIBE \"{}\"", table.replace('"', "\"\"")))
        }
        _ => Meta::Unknown(t.to_string()),
    })
}

const HELP: &str = "\\d            list tables\n\\d TABLE      describe a table\n\\q            quit\n\\?            this help\n\
Statements end with ';' (the last one of piped input may omit it).";

/// Statements from standard input: a prompt with history on a terminal, else every
/// statement of the input in order. Returns whether every statement succeeded.
pub fn repl(session: &Session, format: OutputFormat) -> Result<bool, Box<dyn std::error::Error>> {
    if io::stdin().is_terminal() {
        interactive(session, format)
    } else {
        Ok(piped(session, format, io::stdin().lock()))
    }
}

/// Runs the statements read from `input` in order, continuing after a failed one; returns
/// whether all succeeded. Stops when the output is closed.
pub fn piped(session: &Session, format: OutputFormat, input: impl BufRead) -> bool {
    let mut ok = true;
    let mut buf = String::new();
    let run = |stmt: &str, ok: &mut bool| -> bool {
        match run_query(session, stmt, format) {
            Outcome::Ok => true,
            Outcome::Failed => {
                *ok = false;
                true
            }
            Outcome::OutputClosed => false,
        }
    };
    for line in input.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: reading standard input: {e}");
                return false;
            }
        };
        if buf.trim().is_empty() {
            match meta_command(&line) {
                Some(Meta::Quit) => return ok,
                Some(Meta::Run(q)) => {
                    if !run(&q, &mut ok) {
                        return ok;
                    }
                    continue;
                }
                Some(Meta::Help) => {
                    say!("{HELP}");
                    continue;
                }
                Some(Meta::Unknown(c)) => {
                    eprintln!("error: unknown command {c} (\\? lists them)");
                    ok = false;
                    continue;
                }
                None => {}
            }
        }
        buf.push_str(&line);
        buf.push('\n');
        let (stmts, rest) = split_statements(&buf);
        for s in stmts {
            if !run(&s, &mut ok) {
                return ok;
            }
        }
        buf = rest;
    }
    if has_statement(&buf) {
        run(buf.trim(), &mut ok);
    }
    ok
}

fn interactive(
    session: &Session,
    format: OutputFormat,
) -> Result<bool, Box<dyn std::error::Error>> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".scry_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    say!(
        "ScryDB SQL. Tables: spans, logs, metrics. End statements with ';', \\? for help, \\q or Ctrl-D to quit."
    );
    let mut buf = String::new();
    let mut ok = true;
    loop {
        let prompt = if buf.trim().is_empty() {
            "scry> "
        } else {
            "  ... "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if buf.trim().is_empty()
                    && let Some(meta) = meta_command(&line)
                {
                    let _ = editor.add_history_entry(line.trim());
                    match meta {
                        Meta::Quit => break,
                        Meta::Run(q) => ok &= run_query(session, &q, format) == Outcome::Ok,
                        Meta::Help => say!("{HELP}"),
                        Meta::Unknown(c) => {
                            eprintln!("error: unknown command {c} (\\? lists them)")
                        }
                    }
                    continue;
                }
                buf.push_str(&line);
                buf.push('\n');
                let (stmts, rest) = split_statements(&buf);
                for s in stmts {
                    let _ = editor.add_history_entry(format!("{s};"));
                    ok &= run_query(session, &s, format) == Outcome::Ok;
                }
                buf = rest;
            }
            Err(ReadlineError::Interrupted) => buf.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let (s, rest) = split_statements(
            "SELECT 1; SELECT ';' AS a; -- no; split\nSELECT \"x;y\" FROM t; /* ; */ SELECT 'it''s;'; SELECT 2",
        );
        assert_eq!(
            s,
            vec![
                "SELECT 1",
                "SELECT ';' AS a",
                "-- no; split\nSELECT \"x;y\" FROM t",
                "/* ; */ SELECT 'it''s;'",
            ]
        );
        assert_eq!(rest.trim(), "SELECT 2");
        assert!(!has_statement("  \n-- only a comment\n"));
    }

    #[test]
    fn wide_cells_and_many_rows_print() {
        use scrydb::arrow::array::StringArray;
        use scrydb::arrow::datatypes::{DataType, Field, Schema};
        use std::sync::Arc;
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let wide = "x".repeat(70_000); // wider than a format string's width can be
        let batch = |cell: &str| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(vec![Some(cell), None]))],
            )
            .expect("batch")
        };
        let (first, rest) = (batch(&wide), batch("narrow"));
        for format in [OutputFormat::Table, OutputFormat::Csv, OutputFormat::Json] {
            let mut out = Vec::new();
            let mut p = Printer::new(&schema, format);
            p.batch(&mut out, &first).expect("prints");
            for _ in 1..(TABLE_ALIGN_ROWS + 5) {
                p.batch(&mut out, &rest).expect("prints");
            }
            p.finish(&mut out).expect("finishes");
            let text = String::from_utf8(out).expect("utf8");
            assert!(text.contains(&wide), "{format:?}");
            if format == OutputFormat::Table {
                assert!(text.ends_with(&format!("({} rows)\n", 2 * (TABLE_ALIGN_ROWS + 5))));
            }
        }
    }
}
