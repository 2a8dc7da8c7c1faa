//! The term index of a segment (`<id:020>.sidx`, `docs/format.md` section 4c): for every
//! *term* of a span or log segment — a token of a text column, or an attribute's
//! `key=value` — the **blocks** of [`BLOCK_ROWS`] consecutive rows (in the segment's sorted
//! order) that hold it, as a roaring bitmap of block numbers, behind a bloom filter over
//! the segment's terms.
//!
//! The index answers "which rows may match" and never "which rows match": a reader takes
//! the candidate blocks and evaluates the query's predicate on their rows, so a phrase, a
//! long token (indexed by its first [`MAX_INDEXED_TOKEN_BYTES`] bytes) or any other
//! predicate stays exact. What it guarantees is the converse: a row holding a term is in a
//! block the term's bitmap names (no false negatives), which makes a search through the
//! index return exactly what a scan returns.
//!
//! What is indexed ([`Field`]):
//!
//! | signal | text columns (tokens, [`crate::search::tokenize`]) | attributes (`key=value`) |
//! |---|---|---|
//! | `logs` | `body` | `attributes`, `resource_attributes` |
//! | `spans` | `name`, `status_message` | `attributes`, `resource_attributes` |
//!
//! Attribute values longer than [`MAX_INDEXED_VALUE_BYTES`] bytes are not indexed (a query
//! for one reads every block). Metrics have no term index.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, AsArray, MapArray, RecordBatch, StringArray};
use roaring::RoaringBitmap;

use super::tokenize::{MAX_INDEXED_TOKEN_BYTES, tokens};
use crate::index::bloom::Bloom;
use crate::io::FileSystem;
use crate::{Error, Result, Signal};

/// Rows per block: the unit the index names (a block holds rows
/// `[b × BLOCK_ROWS, (b + 1) × BLOCK_ROWS)` of the segment). Equal to the default Parquet
/// data page row limit, so a candidate block is about one page per column.
pub const BLOCK_ROWS: u32 = 1024;

/// Longest attribute value (in bytes) indexed as `key=value`.
pub const MAX_INDEXED_VALUE_BYTES: usize = 128;

/// First bytes of a term index file.
pub const MAGIC: &[u8; 8] = b"SCRYSIX\0";
/// The term index format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Bytes before the bloom filter.
const HEADER_LEN: usize = 56;

/// The column a term comes from; its byte starts the term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Field {
    /// `logs.body` (tokens).
    Body = 1,
    /// `spans.name` (tokens).
    Name = 2,
    /// `spans.status_message` (tokens).
    StatusMessage = 3,
    /// `attributes` (`key=value`).
    Attributes = 16,
    /// `resource_attributes` (`key=value`).
    ResourceAttributes = 17,
}

impl Field {
    /// The text columns of `signal` indexed by token.
    pub fn text_fields(signal: Signal) -> &'static [Field] {
        match signal {
            Signal::Logs => &[Field::Body],
            Signal::Spans => &[Field::Name, Field::StatusMessage],
            Signal::Metrics => &[],
        }
    }

    /// The attribute columns of `signal` indexed by `key=value`.
    pub fn attribute_fields(signal: Signal) -> &'static [Field] {
        match signal {
            Signal::Logs | Signal::Spans => &[Field::Attributes, Field::ResourceAttributes],
            Signal::Metrics => &[],
        }
    }

    /// The column's name in the signal's schema.
    pub fn column(self) -> &'static str {
        match self {
            Field::Body => "body",
            Field::Name => "name",
            Field::StatusMessage => "status_message",
            Field::Attributes => "attributes",
            Field::ResourceAttributes => "resource_attributes",
        }
    }

    /// The indexed field of `signal` named `column`, if that column is indexed.
    pub fn of_column(signal: Signal, column: &str) -> Option<Field> {
        Field::text_fields(signal)
            .iter()
            .chain(Field::attribute_fields(signal))
            .copied()
            .find(|f| f.column() == column)
    }

    /// Whether the field is indexed by token (else by `key=value`).
    pub fn is_text(self) -> bool {
        matches!(self, Field::Body | Field::Name | Field::StatusMessage)
    }
}

/// Whether `signal` has term indexes.
pub fn indexed(signal: Signal) -> bool {
    signal != Signal::Metrics
}

/// The term index path of the segment at `segment_path`.
pub fn term_index_path(segment_path: &Path) -> PathBuf {
    segment_path.with_extension("sidx")
}

/// Appends the indexed form of `token` (unfolded) to `out`: folded
/// ([`crate::search::fold_token`]) and cut to [`MAX_INDEXED_TOKEN_BYTES`] at a character
/// boundary.
fn push_token(out: &mut Vec<u8>, token: &str) {
    let start = out.len();
    if token.is_ascii() {
        out.extend(token.bytes().map(|b| b.to_ascii_lowercase()));
    } else {
        let mut buf = [0u8; 4];
        for c in token.chars().flat_map(char::to_lowercase) {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    if out.len() - start > MAX_INDEXED_TOKEN_BYTES {
        let folded = std::str::from_utf8(&out[start..]).expect("built from chars");
        let mut cut = MAX_INDEXED_TOKEN_BYTES;
        while !folded.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(start + cut);
    }
}

/// The term of token `token` (unfolded) of text field `field`: the field's byte, then the
/// token folded and cut to [`MAX_INDEXED_TOKEN_BYTES`].
pub fn token_term(field: Field, token: &str) -> Vec<u8> {
    let mut t = vec![field as u8];
    push_token(&mut t, token);
    t
}

/// Appends the term of attribute `key` = `value` of attribute field `field` to `out`: the
/// field's byte, the key's length (`u32` little-endian), the key, the value. `false` (and
/// nothing appended) when the value is longer than [`MAX_INDEXED_VALUE_BYTES`].
fn push_attribute(out: &mut Vec<u8>, field: Field, key: &str, value: &str) -> bool {
    if value.len() > MAX_INDEXED_VALUE_BYTES {
        return false;
    }
    out.push(field as u8);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value.as_bytes());
    true
}

/// The term of attribute `key` = `value`, or `None` when such a value is not indexed.
pub fn attribute_term(field: Field, key: &str, value: &str) -> Option<Vec<u8>> {
    let mut t = Vec::new();
    push_attribute(&mut t, field, key, value).then_some(t)
}

/// A condition on a segment's terms that a query implies: every row the query matches is
/// in a block the condition selects. Built by the SQL layer from a query's filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermQuery {
    /// No condition the index can check: every block.
    All,
    /// Blocks holding the term.
    Term(Vec<u8>),
    /// Blocks every part selects.
    And(Vec<TermQuery>),
    /// Blocks any part selects.
    Or(Vec<TermQuery>),
}

impl TermQuery {
    /// The condition `matches(<field>, query)` implies: every token of `query` is in the
    /// row ([`TermQuery::All`] for a query without tokens or a field not indexed by token).
    pub fn phrase(field: Field, query: &str) -> TermQuery {
        if !field.is_text() {
            return TermQuery::All;
        }
        let mut terms: Vec<Vec<u8>> = tokens(query).map(|t| token_term(field, t)).collect();
        terms.sort();
        terms.dedup();
        TermQuery::and(terms.into_iter().map(TermQuery::Term).collect())
    }

    /// The condition `<field>['key'] = 'value'` implies ([`TermQuery::All`] when such a
    /// value is not indexed).
    pub fn attribute(field: Field, key: &str, value: &str) -> TermQuery {
        if field.is_text() {
            return TermQuery::All;
        }
        attribute_term(field, key, value).map_or(TermQuery::All, TermQuery::Term)
    }

    /// The conjunction of `parts`, simplified: `All` parts dropped, `All` when none is left.
    pub fn and(parts: Vec<TermQuery>) -> TermQuery {
        let mut parts: Vec<TermQuery> =
            parts.into_iter().filter(|p| *p != TermQuery::All).collect();
        match parts.len() {
            0 => TermQuery::All,
            1 => parts.pop().expect("one part"),
            _ => TermQuery::And(parts),
        }
    }

    /// The disjunction of `parts`, simplified: `All` when any part is `All` (or none is
    /// given).
    pub fn or(mut parts: Vec<TermQuery>) -> TermQuery {
        if parts.is_empty() || parts.contains(&TermQuery::All) {
            return TermQuery::All;
        }
        if parts.len() == 1 {
            return parts.pop().expect("one part");
        }
        TermQuery::Or(parts)
    }

    /// Whether the index cannot narrow anything.
    pub fn is_all(&self) -> bool {
        *self == TermQuery::All
    }

    /// The number of terms the condition names.
    pub fn terms(&self) -> usize {
        match self {
            TermQuery::All => 0,
            TermQuery::Term(_) => 1,
            TermQuery::And(p) | TermQuery::Or(p) => p.iter().map(TermQuery::terms).sum(),
        }
    }
}

/// Builds a segment's term index from its rows, pushed in segment order.
#[derive(Debug)]
pub struct TermIndexBuilder {
    signal: Signal,
    rows: u64,
    /// Term → its number in `postings`.
    ids: HashMap<Box<[u8]>, u32>,
    /// Per term number: the blocks holding it, ascending, without repeats.
    postings: Vec<Vec<u32>>,
    /// The term being built.
    scratch: Vec<u8>,
}

impl TermIndexBuilder {
    /// An empty builder for a segment of `signal` (which must be indexed: [`indexed`]).
    pub fn new(signal: Signal) -> Self {
        TermIndexBuilder {
            signal,
            rows: 0,
            ids: HashMap::new(),
            postings: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Rows added so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Distinct terms so far.
    pub fn terms(&self) -> usize {
        self.postings.len()
    }

    fn note(&mut self, block: u32) {
        if let Some(&id) = self.ids.get(self.scratch.as_slice()) {
            let p = &mut self.postings[id as usize];
            if p.last() != Some(&block) {
                p.push(block);
            }
        } else {
            let id = u32::try_from(self.postings.len()).expect("fewer than 2^32 terms");
            self.ids.insert(self.scratch.as_slice().into(), id);
            self.postings.push(vec![block]);
        }
    }

    /// Adds `batch`, the segment's next rows, in the signal's canonical schema.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let first = self.rows;
        let signal = self.signal;
        let block_of = |i: usize| -> Result<u32> {
            u32::try_from((first + i as u64) / u64::from(BLOCK_ROWS)).map_err(|_| {
                Error::invalid(
                    signal,
                    "",
                    Some(i),
                    format!(
                        "a segment of more than {} rows cannot be term-indexed",
                        u64::from(u32::MAX) * u64::from(BLOCK_ROWS)
                    ),
                )
            })
        };
        for &field in Field::text_fields(self.signal) {
            let Some(col) = batch.column_by_name(field.column()) else {
                continue;
            };
            let col: &StringArray = col.as_string_opt::<i32>().ok_or_else(|| {
                Error::invalid(signal, field.column(), None, "not a string column")
            })?;
            for (i, text) in col.iter().enumerate() {
                let Some(text) = text else { continue };
                let block = block_of(i)?;
                for t in tokens(text) {
                    self.scratch.clear();
                    self.scratch.push(field as u8);
                    push_token(&mut self.scratch, t);
                    self.note(block);
                }
            }
        }
        for &field in Field::attribute_fields(self.signal) {
            let Some(col) = batch.column_by_name(field.column()) else {
                continue;
            };
            let map: &MapArray = col
                .as_map_opt()
                .ok_or_else(|| Error::invalid(signal, field.column(), None, "not a map column"))?;
            let keys = map.keys().as_string_opt::<i32>();
            let values = map.values().as_string_opt::<i32>();
            let (Some(keys), Some(values)) = (keys, values) else {
                return Err(Error::invalid(
                    signal,
                    field.column(),
                    None,
                    "not a map of strings",
                ));
            };
            let offsets = map.value_offsets();
            for i in 0..map.len() {
                if map.is_null(i) {
                    continue;
                }
                let block = block_of(i)?;
                for e in offsets[i] as usize..offsets[i + 1] as usize {
                    if keys.is_null(e) || values.is_null(e) {
                        continue;
                    }
                    self.scratch.clear();
                    if push_attribute(&mut self.scratch, field, keys.value(e), values.value(e)) {
                        self.note(block);
                    }
                }
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// The file's bytes (`docs/format.md` section 4c).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut order: Vec<(&[u8], u32)> = self.ids.iter().map(|(t, &id)| (&**t, id)).collect();
        order.sort_unstable();
        let n = order.len();
        let mut bloom = Bloom::with_keys(n);
        let terms_len: usize = order.iter().map(|(t, _)| t.len()).sum();
        let mut body = Vec::with_capacity(8 * (n + 1) + terms_len + 16 * n);
        let mut off: u32 = 0;
        body.extend_from_slice(&off.to_le_bytes());
        for (t, _) in &order {
            bloom.insert(&term_key(t));
            off = off.checked_add(t.len() as u32).ok_or_else(|| {
                Error::invalid(self.signal, "", None, "a segment's terms exceed 4 GiB")
            })?;
            body.extend_from_slice(&off.to_le_bytes());
        }
        for (t, _) in &order {
            body.extend_from_slice(t);
        }
        let mut postings = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0u32);
        for (_, id) in &order {
            let bitmap =
                RoaringBitmap::from_sorted_iter(self.postings[*id as usize].iter().copied())
                    .expect("blocks are pushed ascending without repeats");
            bitmap
                .serialize_into(&mut postings)
                .expect("writing to a Vec cannot fail");
            offsets.push(u32::try_from(postings.len()).map_err(|_| {
                Error::invalid(self.signal, "", None, "a segment's postings exceed 4 GiB")
            })?);
        }
        for o in offsets {
            body.extend_from_slice(&o.to_le_bytes());
        }
        body.extend_from_slice(&postings);
        let compressed =
            zstd::bulk::compress(&body, 3).map_err(|e| Error::io("compress", "term index", e))?;
        let words = bloom.words();
        let mut out = Vec::with_capacity(HEADER_LEN + 8 * words.len() + compressed.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(self.signal.index() as u8);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&BLOCK_ROWS.to_le_bytes());
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&(words.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(compressed.len() as u64).to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        debug_assert_eq!(out.len(), HEADER_LEN);
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&compressed);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Writes the index beside the segment at `segment_path` durably (temporary file,
    /// fsync, rename; the caller fsyncs the directory); returns its size in bytes.
    pub fn write(&self, fs: &Arc<dyn FileSystem>, segment_path: &Path) -> Result<u64> {
        let bytes = self.encode()?;
        let path = term_index_path(segment_path);
        let tmp = path.with_extension("sidx.tmp");
        let mut f = fs.create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(&bytes)
            .map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(f);
        fs.rename(&tmp, &path)
            .map_err(|e| Error::io("rename", &tmp, e))?;
        Ok(bytes.len() as u64)
    }
}

/// The 16 bytes a term's bloom filter probes derive from: FNV-1a 64 of the term with the
/// standard offset basis, then FNV-1a 64 with the basis `0x84222325cbf29ce4`, both
/// little-endian.
pub fn term_key(term: &[u8]) -> [u8; 16] {
    fn fnv(basis: u64, bytes: &[u8]) -> u64 {
        bytes.iter().fold(basis, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325, term).to_le_bytes());
    k[8..].copy_from_slice(&fnv(0x8422_2325_cbf2_9ce4, term).to_le_bytes());
    k
}

/// An open term index: checked, its bloom filter in memory, its body decompressed on the
/// first query the bloom filter does not answer.
pub struct TermIndex {
    path: PathBuf,
    rows: u64,
    terms: usize,
    bloom: Bloom,
    /// The zstd frame of the body, until decompressed.
    compressed: bytes::Bytes,
    raw_len: usize,
    body: OnceLock<std::result::Result<Body, String>>,
}

impl std::fmt::Debug for TermIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TermIndex")
            .field("path", &self.path)
            .field("terms", &self.terms)
            .finish()
    }
}

/// A decompressed, checked body.
struct Body {
    bytes: Vec<u8>,
    n: usize,
    /// Where the terms start.
    terms_at: usize,
    /// Where the postings offsets start.
    postings_offsets_at: usize,
    /// Where the postings start.
    postings_at: usize,
}

impl Body {
    fn u32_at(&self, o: usize) -> usize {
        u32::from_le_bytes(self.bytes[o..o + 4].try_into().expect("4 bytes")) as usize
    }

    fn term(&self, i: usize) -> &[u8] {
        let (a, b) = (self.u32_at(4 * i), self.u32_at(4 * (i + 1)));
        &self.bytes[self.terms_at + a..self.terms_at + b]
    }

    fn postings(&self, i: usize) -> &[u8] {
        let o = self.postings_offsets_at;
        let (a, b) = (self.u32_at(o + 4 * i), self.u32_at(o + 4 * (i + 1)));
        &self.bytes[self.postings_at + a..self.postings_at + b]
    }

    /// Decodes and checks the layout: offsets ascending and inside their areas, terms
    /// strictly ascending, the postings ending the body.
    fn decode(bytes: Vec<u8>, n: usize) -> std::result::Result<Body, String> {
        let read = |o: usize| -> Option<usize> {
            bytes
                .get(o..o + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        };
        let ascending = |at: usize| -> std::result::Result<usize, String> {
            let mut last = 0;
            for i in 0..=n {
                let v = read(at + 4 * i).ok_or("body shorter than its offsets")?;
                if v < last || (i == 0 && v != 0) {
                    return Err("offsets out of order".into());
                }
                last = v;
            }
            Ok(last)
        };
        let terms_len = ascending(0)?;
        let terms_at = 4 * (n + 1);
        let postings_offsets_at = terms_at
            .checked_add(terms_len)
            .ok_or("term area out of range")?;
        let postings_len = ascending(postings_offsets_at)?;
        let postings_at = postings_offsets_at + 4 * (n + 1);
        if postings_at.checked_add(postings_len) != Some(bytes.len()) {
            return Err(format!(
                "postings end at {} but the body has {} bytes",
                postings_at.saturating_add(postings_len),
                bytes.len()
            ));
        }
        let body = Body {
            bytes,
            n,
            terms_at,
            postings_offsets_at,
            postings_at,
        };
        for i in 1..n {
            if body.term(i - 1) >= body.term(i) {
                return Err(format!("terms out of order at term {i}"));
            }
        }
        Ok(body)
    }

    fn find(&self, term: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.term(mid).cmp(term) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

impl TermIndex {
    /// Opens and checks the term index at `path` for a segment of `signal` with `rows`
    /// rows: magic, version, CRC over the whole file, signal, row count, block size and
    /// sizes. The body is checked when first decompressed. Fails with [`Error::Io`] or
    /// [`Error::Corrupted`] naming the file; never panics on what the file holds.
    pub fn open(fs: &dyn FileSystem, path: &Path, signal: Signal, rows: u64) -> Result<Self> {
        let bytes = fs.read(path).map_err(|e| Error::io("read", path, e))?;
        let bad = |what: String| Error::corrupted(path, None, format!("term index: {what}"));
        if bytes.len() < HEADER_LEN + 4 {
            return Err(bad(format!("{} bytes, shorter than a header", bytes.len())));
        }
        let (data, crc) = bytes.split_at(bytes.len() - 4);
        let crc = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if crc32fast::hash(data) != crc {
            return Err(bad("checksum mismatch".into()));
        }
        if &data[..8] != MAGIC {
            return Err(bad("not a term index (bad magic)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(format!(
                "version {version}, this build reads {VERSION}"
            )));
        }
        if data[12] as usize != signal.index() {
            return Err(bad(format!(
                "signal byte {}, expected {}",
                data[12],
                signal.index()
            )));
        }
        if u64_at(16) != rows {
            return Err(bad(format!(
                "indexes {} rows, the segment has {rows}",
                u64_at(16)
            )));
        }
        if u32_at(24) != BLOCK_ROWS {
            return Err(bad(format!(
                "blocks of {} rows, expected {BLOCK_ROWS}",
                u32_at(24)
            )));
        }
        let terms = u32_at(28) as usize;
        let words = u32_at(32) as usize;
        let compressed_len = u64_at(40);
        let raw_len = u64_at(48);
        if words == 0 {
            return Err(bad("empty bloom filter".into()));
        }
        let body_at = HEADER_LEN + 8 * words;
        if (body_at as u64).checked_add(compressed_len) != Some(data.len() as u64) {
            return Err(bad(format!(
                "bloom filter of {words} words and a body of {compressed_len} bytes do not fill \
                 {} bytes",
                data.len()
            )));
        }
        // The smallest body: the two offset arrays of `terms + 1` entries.
        if raw_len < 8 * (terms as u64 + 1) || raw_len > (1 << 32) {
            return Err(bad(format!("body of {raw_len} bytes for {terms} terms")));
        }
        let bloom = Bloom::from_words((0..words).map(|i| u64_at(HEADER_LEN + 8 * i)).collect());
        Ok(TermIndex {
            path: path.to_path_buf(),
            rows,
            terms,
            bloom,
            compressed: bytes.slice(body_at..data.len()),
            raw_len: raw_len as usize,
            body: OnceLock::new(),
        })
    }

    /// Distinct terms in the segment.
    pub fn terms(&self) -> usize {
        self.terms
    }

    /// Bytes held in memory (bloom filter, compressed body, and the body once decompressed).
    pub fn memory(&self) -> usize {
        let body = match self.body.get() {
            Some(Ok(b)) => b.bytes.len(),
            _ => 0,
        };
        self.bloom.size() + self.compressed.len() + body
    }

    fn body(&self) -> std::result::Result<&Body, String> {
        self.body
            .get_or_init(|| {
                let raw = zstd::bulk::decompress(&self.compressed, self.raw_len)
                    .map_err(|e| format!("body does not decompress: {e}"))?;
                if raw.len() != self.raw_len {
                    return Err(format!(
                        "body decompresses to {} bytes, the header says {}",
                        raw.len(),
                        self.raw_len
                    ));
                }
                Body::decode(raw, self.terms)
            })
            .as_ref()
            .map_err(|e| format!("{}: term index: {e}", self.path.display()))
    }

    /// Decompresses and checks the body now (what `scry verify` does; queries do it on
    /// first use). Fails with [`Error::Corrupted`] naming the file.
    pub fn check(&self) -> Result<()> {
        self.body()
            .map(|_| ())
            .map_err(|e| Error::corrupted(&self.path, None, e))
    }

    /// The blocks holding `term`: `Ok(None)` when the segment does not hold it (the bloom
    /// filter alone answers most of those), `Err` when the index cannot be read (the caller
    /// must not take that for "absent").
    pub fn blocks(&self, term: &[u8]) -> std::result::Result<Option<RoaringBitmap>, String> {
        if !self.bloom.may_contain(&term_key(term)) {
            return Ok(None);
        }
        let body = self.body()?;
        let Some(i) = body.find(term) else {
            return Ok(None);
        };
        RoaringBitmap::deserialize_from(body.postings(i))
            .map(Some)
            .map_err(|e| format!("{}: term index: bad postings: {e}", self.path.display()))
    }

    /// The blocks `q` selects: `Ok(None)` for every block ([`TermQuery::All`]).
    pub fn candidates(&self, q: &TermQuery) -> std::result::Result<Option<RoaringBitmap>, String> {
        Ok(match q {
            TermQuery::All => None,
            TermQuery::Term(t) => Some(self.blocks(t)?.unwrap_or_default()),
            TermQuery::And(parts) => {
                let mut acc: Option<RoaringBitmap> = None;
                for p in parts {
                    if let Some(b) = self.candidates(p)? {
                        let next = match acc {
                            Some(a) => a & b,
                            None => b,
                        };
                        if next.is_empty() {
                            return Ok(Some(next));
                        }
                        acc = Some(next);
                    }
                }
                acc
            }
            TermQuery::Or(parts) => {
                let mut acc = RoaringBitmap::new();
                for p in parts {
                    match self.candidates(p)? {
                        Some(b) => acc |= b,
                        None => return Ok(None),
                    }
                }
                Some(acc)
            }
        })
    }

    /// The rows of `blocks` (every row of each block, the last block cut at the segment's
    /// end).
    pub fn rows_of(&self, blocks: &RoaringBitmap) -> RoaringBitmap {
        let mut rows = RoaringBitmap::new();
        for b in blocks {
            let start = u64::from(b) * u64::from(BLOCK_ROWS);
            let end = (start + u64::from(BLOCK_ROWS)).min(self.rows);
            if start < end {
                rows.insert_range(start as u32..=(end - 1) as u32);
            }
        }
        rows
    }
}

/// Rebuilds the term index of segment `seg` from its rows (for `scry reindex`); the
/// caller fsyncs the directory. Returns the index's size in bytes.
pub fn build_for_segment(
    fs: &Arc<dyn FileSystem>,
    db_dir: &Path,
    seg: &crate::SegmentMeta,
) -> Result<u64> {
    let mut b = TermIndexBuilder::new(seg.signal);
    let columns: Vec<&str> = Field::text_fields(seg.signal)
        .iter()
        .chain(Field::attribute_fields(seg.signal))
        .map(|f| f.column())
        .collect();
    let stream = crate::segment::reader::SegmentStream::open(
        fs.as_ref(),
        db_dir,
        seg,
        Some(&columns),
        crate::segment::merge::MERGE_BATCH_ROWS,
    )?;
    for batch in stream {
        b.add(&batch?)?;
    }
    b.write(fs, &db_dir.join(&seg.path))
}

/// Whether segment `seg`'s term index is missing or fails its checks (what `scry reindex`
/// rewrites). I/O errors other than a missing file are returned.
pub fn needs_rebuild(fs: &dyn FileSystem, db_dir: &Path, seg: &crate::SegmentMeta) -> Result<bool> {
    if !indexed(seg.signal) {
        return Ok(false);
    }
    let path = term_index_path(&db_dir.join(&seg.path));
    match TermIndex::open(fs, &path, seg.signal, seg.rows) {
        Ok(idx) => Ok(idx.body().is_err()),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(Error::Corrupted { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_folded_and_long_ones_cut_at_a_character_boundary() {
        assert_eq!(token_term(Field::Body, "ReFused"), b"\x01refused");
        let long = "é".repeat(40); // 80 bytes
        let t = token_term(Field::Body, &long);
        assert_eq!(t.len(), 1 + 64);
        assert!(std::str::from_utf8(&t[1..]).is_ok());
        assert_eq!(token_term(Field::Name, "İ"), "\x02i\u{307}".as_bytes());
    }

    #[test]
    fn queries_simplify() {
        assert_eq!(TermQuery::phrase(Field::Body, "..."), TermQuery::All);
        assert_eq!(
            TermQuery::phrase(Field::Body, "Disk full disk"),
            TermQuery::And(vec![
                TermQuery::Term(b"\x01disk".to_vec()),
                TermQuery::Term(b"\x01full".to_vec())
            ])
        );
        assert_eq!(
            TermQuery::or(vec![TermQuery::Term(vec![1]), TermQuery::All]),
            TermQuery::All
        );
        let long = "v".repeat(MAX_INDEXED_VALUE_BYTES + 1);
        assert_eq!(
            TermQuery::attribute(Field::Attributes, "k", &long),
            TermQuery::All
        );
        assert_eq!(TermQuery::phrase(Field::Attributes, "x"), TermQuery::All);
    }
}
