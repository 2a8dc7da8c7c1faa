//! The OTLP ingester: files, streams and single requests into a [`Db`], shared by `scry
//! ingest` and the OTLP receiver.
//!
//! [`Requests`] reads a stream of OTLP requests incrementally — JSON lines one line at a
//! time, concatenated JSON documents one document at a time, length-prefixed protobuf one
//! message at a time — so a file of any size is read in memory bounded by its largest
//! request. Every request carries its position (the line for JSON, the message number for
//! protobuf), so a problem is reported as `file:line`.
//!
//! [`Ingester`] converts what [`Requests`] yields through [`Request::convert`] (the one
//! conversion path, also behind [`Db::ingest_otlp`]), gathers the valid records of many
//! small requests into appends of [`IngestOptions::batch_rows`] rows, and keeps an
//! [`IngestReport`]. A request that does not decode, or records that are invalid, do not
//! stop the stream: they are counted and reported as [`Problem`]s (OTLP's partial success).
//! Rows are counted as stored only once the append holding them has returned, that is once
//! they are as durable as the database's [`crate::Durability`] says.
//!
//! ```
//! use scrydb_engine::otlp::ingest::{IngestOptions, Ingester};
//! use scrydb_engine::otlp::Format;
//! # fn main() -> scrydb_engine::Result<()> {
//! # let dir = tempfile::tempdir().expect("tempdir");
//! let db = scrydb_engine::Db::open(dir.path(), Default::default())?;
//! let jsonl = concat!(
//!     r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"a","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#,
//!     "\nnot json\n",
//! );
//! let mut ingester = Ingester::new(&db, IngestOptions::default());
//! let report = ingester.ingest_reader(jsonl.as_bytes(), Some(Format::JsonLines), "batch.jsonl")?;
//! assert_eq!((report.stored.spans, report.undecodable), (1, 1));
//! assert!(report.problems[0].to_string().starts_with("batch.jsonl:2: invalid OTLP payload"));
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;

use super::decode::{decode_json_value, invalid};
use super::{Format, Ingested, RecordError, Request, decode_json, decode_protobuf};
use crate::{Db, Error, Result, Signal};

/// How much of a stream of unknown format is read to tell its format.
const SNIFF_BYTES: usize = 64 << 10;

/// One request read from a stream: its 1-based position (line for JSON, message number
/// for protobuf) and the request, or why it did not decode.
pub type Positioned = (usize, Result<Request>);

/// The OTLP requests of a stream, read incrementally (see the [module](self) docs).
///
/// Yields `Ok((position, request))` for each request, where `request` is the decoded
/// request or why it did not decode (a bad request does not stop the ones after it), and
/// `Err(Error::Io)` when reading the stream fails (then the iteration ends). In
/// [`Format::Json`], a document whose brackets do not match or a top-level value that is
/// not an object or array also ends the stream after its error, since where the next
/// document starts cannot be known. A truncated length-prefixed protobuf message ends it
/// too.
pub struct Requests<R> {
    reader: R,
    format: Format,
    hint: Option<Signal>,
    source: String,
    bytes: u64,
    done: bool,
    /// JSON lines: the current line number; JSON: lines seen so far; protobuf: messages.
    position: usize,
    /// JSON: column of the next byte (1-based).
    column: usize,
    /// Whether a protobuf stream was found to be length-prefixed (`None`: not looked yet).
    prefixed: Option<bool>,
}

impl<R: BufRead> Requests<R> {
    /// The requests of `reader`, encoded as `format`; `hint` is the signal of protobuf
    /// input whose content cannot tell it; `source` names the stream in I/O errors.
    pub fn new(reader: R, format: Format, hint: Option<Signal>, source: impl Into<String>) -> Self {
        Requests {
            reader,
            format,
            hint,
            source: source.into(),
            bytes: 0,
            done: false,
            position: 0,
            column: 1,
            prefixed: None,
        }
    }

    /// Bytes consumed from the reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    fn io(&mut self, e: std::io::Error) -> Error {
        self.done = true;
        Error::Io {
            op: "read",
            path: PathBuf::from(&self.source),
            source: e,
        }
    }

    fn next_line(&mut self) -> Result<Option<Positioned>> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = match self.reader.read_until(b'\n', &mut line) {
                Ok(n) => n,
                Err(e) => return Err(self.io(e)),
            };
            if n == 0 {
                return Ok(None);
            }
            self.bytes += n as u64;
            self.position += 1;
            if !line.trim_ascii().is_empty() {
                return Ok(Some((self.position, decode_json(&line))));
            }
        }
    }

    /// The next top-level JSON document, found by tracking brackets and strings; decoded
    /// with the position of its first byte (or of its syntax error).
    fn next_document(&mut self) -> Result<Option<Positioned>> {
        let mut doc = Vec::new();
        let mut closers: Vec<u8> = Vec::new();
        let (mut in_string, mut escaped) = (false, false);
        let (mut line, mut column) = (0, 0);
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io(e)),
            };
            if chunk.is_empty() {
                self.done = true;
                if doc.is_empty() {
                    return Ok(None);
                }
                // Unterminated: the parser says where it ended.
                return Ok(Some(json_document(&doc, line, column)));
            }
            let mut used = 0;
            let mut complete = false;
            for &b in chunk {
                used += 1;
                let (at_line, at_column) = (self.position + 1, self.column);
                if b == b'\n' {
                    self.position += 1;
                    self.column = 1;
                } else {
                    self.column += 1;
                }
                if doc.is_empty() {
                    if b.is_ascii_whitespace() {
                        continue;
                    }
                    (line, column) = (at_line, at_column);
                    match b {
                        b'{' => closers.push(b'}'),
                        b'[' => closers.push(b']'),
                        _ => {
                            self.done = true;
                            complete = true;
                            doc.push(b);
                            break;
                        }
                    }
                    doc.push(b);
                    continue;
                }
                doc.push(b);
                if in_string {
                    match b {
                        _ if escaped => escaped = false,
                        b'\\' => escaped = true,
                        b'"' => in_string = false,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' => closers.push(b'}'),
                    b'[' => closers.push(b']'),
                    b'}' | b']' => {
                        if closers.pop() != Some(b) {
                            // Brackets that do not match: the parser reports it; where the
                            // next document would start is unknown.
                            self.done = true;
                            complete = true;
                        } else if closers.is_empty() {
                            complete = true;
                        }
                    }
                    _ => {}
                }
                if complete {
                    break;
                }
            }
            self.reader.consume(used);
            self.bytes += used as u64;
            if complete {
                if self.done && !matches!(doc.first(), Some(b'{' | b'[')) {
                    return Ok(Some((
                        line,
                        Err(invalid(format!(
                            "not a JSON object at line {line} column {column}; the rest of \
                             the input is not read"
                        ))),
                    )));
                }
                return Ok(Some(json_document(&doc, line, column)));
            }
        }
    }

    /// Fills `buf` as far as the stream goes; returns how many bytes were read.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.reader.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        self.bytes += n as u64;
        Ok(n)
    }

    fn next_message(&mut self) -> Result<Option<Positioned>> {
        let prefixed = match self.prefixed {
            Some(p) => p,
            None => {
                let first = match self.reader.fill_buf() {
                    Ok(b) => b.first().copied(),
                    Err(e) => return Err(self.io(e)),
                };
                // A plain protobuf message never starts with a zero byte (field number 0
                // is invalid), while a length prefix below 16 MiB always does.
                let Some(first) = first else {
                    self.done = true;
                    return Ok(None);
                };
                self.prefixed = Some(first == 0);
                first == 0
            }
        };
        if !prefixed {
            self.done = true;
            let mut all = Vec::new();
            if let Err(e) = self.reader.read_to_end(&mut all) {
                return Err(self.io(e));
            }
            self.bytes += all.len() as u64;
            self.position = 1;
            return Ok(Some((1, decode_protobuf(&all, self.hint))));
        }
        let mut prefix = [0u8; 4];
        let got = self.read_full(&mut prefix)?;
        if got == 0 {
            self.done = true;
            return Ok(None);
        }
        self.position += 1;
        let n = self.position;
        if got < 4 {
            self.done = true;
            return Ok(Some((
                n,
                Err(invalid(format!(
                    "message {n}: the stream ends inside its 4-byte length prefix"
                ))),
            )));
        }
        let len = u32::from_be_bytes(prefix);
        let mut message = Vec::new();
        let read = (&mut self.reader)
            .take(u64::from(len))
            .read_to_end(&mut message);
        if let Err(e) = read {
            return Err(self.io(e));
        }
        self.bytes += message.len() as u64;
        if message.len() < len as usize {
            self.done = true;
            return Ok(Some((
                n,
                Err(invalid(format!(
                    "message {n} is truncated: its prefix says {len} bytes, the stream has {}",
                    message.len()
                ))),
            )));
        }
        Ok(Some((n, decode_protobuf(&message, self.hint))))
    }
}

/// Decodes one JSON document that starts at `line`/`column` of its stream; a syntax error
/// is reported at its place in the stream, not in the document.
fn json_document(doc: &[u8], line: usize, column: usize) -> Positioned {
    match super::decode::parse_json(doc) {
        Ok(v) => (line, decode_json_value(v)),
        Err(e) => {
            let at_line = line + e.line().saturating_sub(1);
            let at_column = if e.line() <= 1 {
                column + e.column().saturating_sub(1)
            } else {
                e.column()
            };
            let text = e.to_string();
            let what = text
                .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
                .unwrap_or(&text);
            (
                at_line,
                Err(invalid(format!(
                    "{what} at line {at_line} column {at_column}"
                ))),
            )
        }
    }
}

impl<R: BufRead> Iterator for Requests<R> {
    type Item = Result<Positioned>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = match self.format {
            Format::JsonLines => self.next_line(),
            Format::Json => self.next_document(),
            Format::Protobuf => self.next_message(),
        };
        next.transpose()
    }
}

/// The format of a stream from its first bytes: [`Format::sniff`] on `prefix` when it is
/// the whole stream, else on its complete lines (a first line longer than the prefix is
/// read as [`Format::Json`], which reads JSON lines too, one document per line).
fn sniff_prefix(prefix: &[u8], complete: bool) -> Format {
    if complete || !prefix.trim_ascii_start().starts_with(b"{") {
        return Format::sniff(prefix);
    }
    match prefix.iter().rposition(|b| *b == b'\n') {
        Some(end) => Format::sniff(&prefix[..=end]),
        None => Format::Json,
    }
}

/// A reader that first fails with `error`, if any, then reads `inner`.
struct Deferred<R> {
    error: Option<std::io::Error>,
    inner: R,
}

impl<R: Read> Read for Deferred<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.error.take() {
            Some(e) => Err(e),
            None => self.inner.read(buf),
        }
    }
}

/// Per-signal record counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalCounts {
    /// Spans.
    pub spans: u64,
    /// Log records.
    pub logs: u64,
    /// Metric data points.
    pub metrics: u64,
}

impl SignalCounts {
    /// The count of `signal`.
    pub fn get(&self, signal: Signal) -> u64 {
        match signal {
            Signal::Spans => self.spans,
            Signal::Logs => self.logs,
            Signal::Metrics => self.metrics,
        }
    }

    /// Adds `n` to the count of `signal`.
    pub fn add(&mut self, signal: Signal, n: u64) {
        match signal {
            Signal::Spans => self.spans += n,
            Signal::Logs => self.logs += n,
            Signal::Metrics => self.metrics += n,
        }
    }

    /// The sum over all signals.
    pub fn total(&self) -> u64 {
        self.spans + self.logs + self.metrics
    }
}

/// Where a request came from: a source (a file name, `<stdin>`, `request`) and the
/// request's 1-based position in it (line for JSON, message number for protobuf, request
/// number for [`Ingester::ingest_request`]). Displays as `source:position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The source's name.
    pub source: String,
    /// The position in it.
    pub index: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.index)
    }
}

/// Something in the input that was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A request that did not decode; nothing of it was stored.
    Undecodable {
        /// Where the request is.
        at: Position,
        /// The decoding error (an [`Error::InvalidOtlp`] message, which names the member
        /// path or line and column).
        message: String,
    },
    /// Invalid records of a request, left out; the request's valid records were stored.
    Rejected {
        /// Where the request is.
        at: Position,
        /// The signal of the request.
        signal: Signal,
        /// How many records were left out.
        count: u64,
        /// Why, for the first [`super::MAX_ERRORS`] of them.
        errors: Vec<RecordError>,
    },
}

impl Problem {
    /// The problem in full, one line each: for rejected records, `file:line: rejected
    /// <location>: <reason>` per kept error and `file:line: and N more rejected <records>`
    /// when there were more; for an undecodable request, its [`Display`](fmt::Display)
    /// line.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Problem::Undecodable { .. } => vec![self.to_string()],
            Problem::Rejected {
                at,
                signal,
                count,
                errors,
            } => {
                let mut out: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{at}: rejected {e}"))
                    .collect();
                let more = count.saturating_sub(errors.len() as u64);
                if more > 0 {
                    out.push(format!(
                        "{at}: and {more} more rejected {}",
                        signal.record_noun()
                    ));
                }
                out
            }
        }
    }
}

impl fmt::Display for Problem {
    /// One line: `file:line: <error>`, or `file:line: N <records> rejected: <first reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Undecodable { at, message } => write!(f, "{at}: {message}"),
            Problem::Rejected {
                at,
                signal,
                count,
                errors,
            } => {
                write!(f, "{at}: {count} {} rejected", signal.record_noun())?;
                if let Some(e) = errors.first() {
                    write!(f, ": {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// What an [`Ingester`] did, for one source or in total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Requests read, whether they decoded or not.
    pub requests: u64,
    /// Requests that did not decode (nothing of them stored).
    pub undecodable: u64,
    /// Records stored, per signal: counted once the append holding them returned, so
    /// exactly as durable as the database's [`crate::Durability`] says.
    pub stored: SignalCounts,
    /// Records left out as invalid, per signal.
    pub rejected: SignalCounts,
    /// Bytes read.
    pub bytes: u64,
    /// The first [`IngestOptions::max_problems`] problems, in input order; the counts
    /// above count all of them.
    pub problems: Vec<Problem>,
    /// Reading stopped early because the stop flag ([`Ingester::stop_when`]) was raised:
    /// everything counted above is stored, the rest of the source was not read.
    pub stopped: bool,
}

impl IngestReport {
    /// Whether everything read was stored: every request decoded and no record was
    /// rejected.
    pub fn is_clean(&self) -> bool {
        self.undecodable == 0 && self.rejected.total() == 0
    }
}

/// Where an [`Ingester`] is in the current source, handed to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// The source being read.
    pub source: &'a str,
    /// Bytes of it read so far.
    pub bytes_read: u64,
    /// Its size, when known (a file, a byte slice).
    pub bytes_total: Option<u64>,
    /// Requests of it read so far.
    pub requests: u64,
    /// Valid records converted so far (stored, or waiting for the next append).
    pub accepted: u64,
    /// Records stored so far (their append returned).
    pub stored: u64,
    /// Records rejected so far.
    pub rejected: u64,
    /// Requests that did not decode so far.
    pub undecodable: u64,
}

/// Options of an [`Ingester`]. Build with [`IngestOptions::default`] and the setters.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    batch_rows: usize,
    signal: Option<Signal>,
    max_problems: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            batch_rows: 16 * 1024,
            signal: None,
            max_problems: 100,
        }
    }
}

impl IngestOptions {
    /// Rows gathered per signal before one append. OTLP requests are often small and every
    /// append is a durable log write, so a stream's requests are appended together; a
    /// source's last rows are appended when it ends.
    ///
    /// Default: 16384. At least 1 (1 appends every request on its own).
    pub fn batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// The signal of protobuf input whose content cannot tell it (see
    /// [`super::decode_protobuf`]).
    ///
    /// Default: `None` (told from the content).
    pub fn signal(mut self, signal: Option<Signal>) -> Self {
        self.signal = signal;
        self
    }

    /// How many [`Problem`]s a report keeps; the rest are only counted.
    ///
    /// Default: 100.
    pub fn max_problems(mut self, n: usize) -> Self {
        self.max_problems = n;
        self
    }
}

/// Valid records converted but not yet appended, per signal.
#[derive(Default)]
struct Pending {
    batches: [Vec<RecordBatch>; 3],
    rows: [usize; 3],
}

type ProgressFn<'a> = Box<dyn FnMut(&Progress<'_>) + Send + 'a>;
type ProblemFn<'a> = Box<dyn FnMut(&Problem) + Send + 'a>;

/// Stores OTLP requests from files, streams or one by one into a [`Db`] (see the
/// [module](self) docs), keeping a running [`IngestReport`].
///
/// Every `ingest_*` call has appended everything it accepted when it returns, so a caller
/// may acknowledge a source (print its line, answer its sender) right after.
pub struct Ingester<'a> {
    db: &'a Db,
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    opts: IngestOptions,
    total: IngestReport,
    on_progress: Option<ProgressFn<'a>>,
    on_problem: Option<ProblemFn<'a>>,
}

impl<'a> Ingester<'a> {
    /// An ingester writing into `db`.
    pub fn new(db: &'a Db, opts: IngestOptions) -> Self {
        Ingester {
            db,
            stop: None,
            opts,
            total: IngestReport::default(),
            on_progress: None,
            on_problem: None,
        }
    }

    /// Calls `f` after every request read from a source (and after every append), with
    /// the counts of that source so far. Keep it cheap, or throttle in it.
    pub fn on_progress(mut self, f: impl FnMut(&Progress<'_>) + Send + 'a) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Calls `f` with every problem as it is found, including those beyond
    /// [`IngestOptions::max_problems`] that the report does not keep.
    pub fn on_problem(mut self, f: impl FnMut(&Problem) + Send + 'a) -> Self {
        self.on_problem = Some(Box::new(f));
        self
    }

    /// Stops reading at the next request boundary once `flag` is raised (from a signal
    /// handler, another thread): what was read before is appended, the report says
    /// [`IngestReport::stopped`], and later `ingest_*` calls read nothing.
    pub fn stop_when(mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    fn should_stop(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// The totals over everything ingested so far (including the stored part of a source
    /// whose reading failed).
    pub fn report(&self) -> &IngestReport {
        &self.total
    }

    /// The totals over everything ingested.
    pub fn finish(self) -> IngestReport {
        self.total
    }

    fn problem(&mut self, current: &mut IngestReport, p: Problem) {
        if let Some(f) = &mut self.on_problem {
            f(&p);
        }
        for r in [&mut self.total, current] {
            if r.problems.len() < self.opts.max_problems {
                r.problems.push(p.clone());
            }
        }
    }

    /// Counts a converted request and reports its rejected records.
    fn count_request(
        &mut self,
        current: &mut IngestReport,
        at: Position,
        signal: Signal,
        rejected: u64,
        errors: Vec<RecordError>,
    ) {
        for r in [&mut self.total, &mut *current] {
            r.rejected.add(signal, rejected);
        }
        if rejected > 0 {
            let p = Problem::Rejected {
                at,
                signal,
                count: rejected,
                errors,
            };
            self.problem(current, p);
        }
    }

    /// Stores one request now, as one append (its valid records, durable when this
    /// returns), like [`Db::ingest_otlp`] whose result it returns, and counts it in the
    /// report; its position is `request:<n>`, `n` counting the requests of this ingester.
    /// An error means the append failed and nothing of the request is stored.
    pub fn ingest_request(&mut self, request: &Request) -> Result<Ingested> {
        let got = self.db.ingest_otlp(request)?;
        let mut current = IngestReport::default();
        self.total.requests += 1;
        let at = Position {
            source: "request".into(),
            index: self.total.requests as usize,
        };
        self.total.stored.add(got.signal, got.accepted);
        self.count_request(
            &mut current,
            at,
            got.signal,
            got.rejected,
            got.errors.clone(),
        );
        Ok(got)
    }

    /// Stores the requests of a file, in `format` or the one its name says
    /// ([`Format::from_path`]) or else its content ([`Format::sniff`]). The source is named
    /// by the path as given. Returns the report of this file; the totals are in
    /// [`Ingester::report`].
    ///
    /// Errors: [`Error::Io`] when the file cannot be opened or read (what was read before a
    /// read error is stored and counted in the totals); an append error.
    pub fn ingest_file(&mut self, path: &Path, format: Option<Format>) -> Result<IngestReport> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let size = file.metadata().ok().map(|m| m.len());
        let format = format.or_else(|| Format::from_path(path));
        self.ingest_stream(file, format, &path.display().to_string(), size)
    }

    /// Stores the requests of an in-memory payload, in `format` or the one its content
    /// says ([`Format::sniff`]). Returns the report of this payload.
    pub fn ingest_bytes(
        &mut self,
        bytes: &[u8],
        format: Option<Format>,
        source: &str,
    ) -> Result<IngestReport> {
        let format = format.unwrap_or_else(|| Format::sniff(bytes));
        self.ingest_stream(bytes, Some(format), source, Some(bytes.len() as u64))
    }

    /// Stores the requests of a stream (stdin, a socket, a decompressor), read
    /// incrementally, in `format` or, when `None`, the one its first 64 KiB say. `source`
    /// names it in problems and errors. Returns the report of this stream.
    pub fn ingest_reader(
        &mut self,
        reader: impl Read,
        format: Option<Format>,
        source: &str,
    ) -> Result<IngestReport> {
        self.ingest_stream(reader, format, source, None)
    }

    fn ingest_stream(
        &mut self,
        mut reader: impl Read,
        format: Option<Format>,
        source: &str,
        size: Option<u64>,
    ) -> Result<IngestReport> {
        let mut prefix = Vec::new();
        let mut error = None;
        let format = match format {
            Some(f) => f,
            None => {
                match (&mut reader)
                    .take(SNIFF_BYTES as u64)
                    .read_to_end(&mut prefix)
                {
                    Ok(read) => sniff_prefix(&prefix, read < SNIFF_BYTES),
                    Err(e) if prefix.is_empty() => return Err(Error::io("read", source, e)),
                    // What was read before the error is still ingested; the error follows.
                    Err(e) => {
                        error = Some(e);
                        sniff_prefix(&prefix, false)
                    }
                }
            }
        };
        let rest = Deferred {
            error,
            inner: reader,
        };
        let reader = BufReader::new(Cursor::new(prefix).chain(rest));
        let requests = Requests::new(reader, format, self.opts.signal, source);
        self.ingest_requests(requests, source, size)
    }

    /// Converts and counts each request of `requests` and appends the valid records in
    /// batches of [`IngestOptions::batch_rows`]; an append is started and the next
    /// requests read and converted while it is written and synced, with at most
    /// [`APPENDS_IN_FLIGHT`] appends unanswered at once.
    fn ingest_requests<R: BufRead>(
        &mut self,
        mut requests: Requests<R>,
        source: &str,
        size: Option<u64>,
    ) -> Result<IngestReport> {
        let mut current = IngestReport::default();
        let mut pending = Pending::default();
        let mut in_flight = InFlight::default();
        let mut accepted = 0u64;
        let result = (|| {
            loop {
                if self.should_stop() {
                    current.stopped = true;
                    self.total.stopped = true;
                    break;
                }
                let (position, request) = match requests.next() {
                    None => break,
                    Some(Ok(item)) => item,
                    Some(Err(e)) => {
                        self.account_bytes(&mut current, requests.bytes_read());
                        // Keep what was read before the stream failed.
                        self.append_all(&mut pending, &mut in_flight, &mut current)?;
                        self.settle(&mut in_flight, 0, &mut current)?;
                        return Err(e);
                    }
                };
                self.account_bytes(&mut current, requests.bytes_read());
                current.requests += 1;
                self.total.requests += 1;
                let at = Position {
                    source: source.to_string(),
                    index: position,
                };
                match request {
                    Err(e) => {
                        current.undecodable += 1;
                        self.total.undecodable += 1;
                        let p = Problem::Undecodable {
                            at,
                            message: e.to_string(),
                        };
                        self.problem(&mut current, p);
                    }
                    Ok(request) => {
                        let c = request.convert();
                        drop(request);
                        self.count_request(&mut current, at, c.signal, c.rejected, c.errors);
                        let rows = c.batch.num_rows();
                        if rows > 0 {
                            accepted += rows as u64;
                            let i = c.signal.index();
                            pending.batches[i].push(c.batch);
                            pending.rows[i] += rows;
                            if pending.rows[i] >= self.opts.batch_rows {
                                self.append(c.signal, &mut pending, &mut in_flight, &mut current)?;
                            }
                        }
                    }
                }
                self.progress(source, size, accepted, &current);
            }
            self.account_bytes(&mut current, requests.bytes_read());
            self.append_all(&mut pending, &mut in_flight, &mut current)?;
            self.settle(&mut in_flight, 0, &mut current)?;
            self.progress(source, size, accepted, &current);
            Ok(())
        })();
        if result.is_err() {
            // The rows of appends already started are counted if they were stored.
            let _ = self.settle(&mut in_flight, 0, &mut current);
        }
        result.map(|()| current)
    }

    /// Counts the stream bytes read up to `read` (a running total of the source).
    fn account_bytes(&mut self, current: &mut IngestReport, read: u64) {
        let bytes = read.saturating_sub(current.bytes);
        current.bytes += bytes;
        self.total.bytes += bytes;
    }

    fn progress(&mut self, source: &str, size: Option<u64>, accepted: u64, r: &IngestReport) {
        if let Some(f) = &mut self.on_progress {
            f(&Progress {
                source,
                bytes_read: r.bytes,
                bytes_total: size,
                requests: r.requests,
                accepted,
                stored: r.stored.total(),
                rejected: r.rejected.total(),
                undecodable: r.undecodable,
            });
        }
    }

    /// Starts one append of the pending rows of `signal`; they are counted as stored when
    /// it is answered ([`Ingester::settle`]), which happens here for the oldest appends once
    /// more than [`APPENDS_IN_FLIGHT`] are unanswered.
    fn append(
        &mut self,
        signal: Signal,
        pending: &mut Pending,
        in_flight: &mut InFlight<'a>,
        current: &mut IngestReport,
    ) -> Result<()> {
        let i = signal.index();
        let mut batches = std::mem::take(&mut pending.batches[i]);
        let rows = std::mem::take(&mut pending.rows[i]) as u64;
        let batch = match batches.len() {
            0 => return Ok(()),
            1 => batches.pop().expect("one batch"),
            _ => arrow::compute::concat_batches(&batches[0].schema(), &batches)?,
        };
        drop(batches);
        if let Some(p) = self.db.start_append(signal, &batch)? {
            in_flight.0.push_back((p, signal, rows));
        }
        self.settle(in_flight, APPENDS_IN_FLIGHT, current)
    }

    fn append_all(
        &mut self,
        pending: &mut Pending,
        in_flight: &mut InFlight<'a>,
        current: &mut IngestReport,
    ) -> Result<()> {
        for s in Signal::ALL {
            self.append(s, pending, in_flight, current)?;
        }
        Ok(())
    }

    /// Waits for the oldest started appends until at most `keep` are unanswered, counting
    /// the rows of each that succeeded. On an error the appends after it are still waited
    /// for (and counted if they succeeded) only when `keep` is 0.
    fn settle(
        &mut self,
        in_flight: &mut InFlight<'a>,
        keep: usize,
        current: &mut IngestReport,
    ) -> Result<()> {
        let mut first_error = None;
        while in_flight.0.len() > keep {
            let (p, signal, rows) = in_flight.0.pop_front().expect("more than keep");
            match p.wait() {
                Ok(()) => {
                    current.stored.add(signal, rows);
                    self.total.stored.add(signal, rows);
                }
                Err(e) => {
                    if keep > 0 {
                        return Err(e);
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Appends started and not yet answered, oldest first, with their signal and rows.
#[derive(Default)]
struct InFlight<'a>(std::collections::VecDeque<(crate::PendingAppend<'a>, Signal, u64)>);

/// Appends that may be unanswered at once while a stream is read.
const APPENDS_IN_FLIGHT: usize = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(input: &str, format: Format) -> Vec<(usize, std::result::Result<(), String>)> {
        Requests::new(input.as_bytes(), format, None, "t")
            .map(|r| {
                let (p, r) = r.expect("no I/O error");
                (p, r.map(|_| ()).map_err(|e| e.to_string()))
            })
            .collect()
    }

    const SPANS: &str = r#"{"resourceSpans":[]}"#;

    #[test]
    fn json_documents_are_split_with_their_lines() {
        // Documents on one line, across lines, with brackets and quotes inside strings.
        let input = format!(
            "{SPANS} {SPANS}\n\n  {{\"resourceLogs\":[{{\"scopeLogs\":[{{\"logRecords\":[{{\"body\":{{\"stringValue\":\"a }} ] \\\" {{\"}}}}]}}]}}]\n}}\n{SPANS}"
        );
        let got = positions(&input, Format::Json);
        let lines: Vec<usize> = got.iter().map(|g| g.0).collect();
        assert_eq!(lines, [1, 1, 3, 5]);
        assert!(got.iter().all(|g| g.1.is_ok()), "{got:?}");
    }

    #[test]
    fn json_syntax_errors_name_their_place_in_the_stream() {
        // A balanced document with a syntax error: reported where it is, the next one read.
        let input = format!("{SPANS}\n\n{{\"resourceSpans\" []}}\n{SPANS}");
        let got = positions(&input, Format::Json);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].0, 3);
        let msg = got[1].1.as_ref().expect_err("syntax error");
        assert!(msg.contains("at line 3 column 18"), "{msg}");
        assert!(got[2].1.is_ok());

        // Mismatched brackets, an unterminated document, a stray token: each ends the stream.
        for (input, line) in [
            (format!("{SPANS}\n{{\"a\": [}}\n{SPANS}"), 2),
            (format!("{SPANS}\n{SPANS}\n{{\"resourceSpans\": ["), 3),
            (format!("{SPANS}\nnonsense {SPANS}"), 2),
        ] {
            let got = positions(&input, Format::Json);
            assert_eq!(got.len(), 2 + usize::from(line == 3), "{input}: {got:?}");
            let last = got.last().expect("an error");
            assert_eq!(last.0, line, "{input}: {got:?}");
            assert!(last.1.is_err());
        }
    }

    #[test]
    fn json_lines_keep_going_and_count_blank_lines() {
        let got = positions(
            &format!("{SPANS}\n\nnot json\r\n{SPANS}"),
            Format::JsonLines,
        );
        let summary: Vec<(usize, bool)> = got.iter().map(|g| (g.0, g.1.is_ok())).collect();
        assert_eq!(summary, [(1, true), (3, false), (4, true)]);
    }

    #[test]
    fn protobuf_streams_and_truncation() {
        use prost::Message;
        // An empty request encodes to nothing; this one has an (empty) resource.
        let req = super::super::ExportTraceServiceRequest {
            resource_spans: vec![Default::default()],
        }
        .encode_to_vec();
        assert!(!req.is_empty());
        let mut stream = Vec::new();
        for _ in 0..2 {
            stream.extend_from_slice(&(req.len() as u32).to_be_bytes());
            stream.extend_from_slice(&req);
        }
        let count = |bytes: &[u8]| -> Vec<(usize, bool)> {
            Requests::new(bytes, Format::Protobuf, Some(Signal::Spans), "t")
                .map(|r| r.expect("no I/O error"))
                .map(|(p, r)| (p, r.is_ok()))
                .collect()
        };
        assert_eq!(count(&stream), [(1, true), (2, true)]);
        assert_eq!(count(&stream[..stream.len() - 1]), [(1, true), (2, false)]);
        assert_eq!(
            count(&stream[..stream.len() - req.len() - 2]),
            [(1, true), (2, false)]
        );
        assert_eq!(count(&req), [(1, true)]);
        assert_eq!(count(&[]), []);
        let mut r = Requests::new(&stream[..], Format::Protobuf, None, "t");
        while r.next().is_some() {}
        assert_eq!(r.bytes_read(), stream.len() as u64);
    }

    #[test]
    fn sniffing_a_prefix() {
        let line = format!("{SPANS}\n");
        assert_eq!(
            sniff_prefix(line.repeat(3).as_bytes(), false),
            Format::JsonLines
        );
        assert_eq!(sniff_prefix(SPANS.as_bytes(), true), Format::Json);
        assert_eq!(sniff_prefix(&SPANS.as_bytes()[..5], false), Format::Json);
        assert_eq!(sniff_prefix(&[0, 0, 0, 1, 8], false), Format::Protobuf);
    }
}
