//! The term index of a segment (`<id:020>.sidx`, `docs/format.md` section 4c): for every
//! *term* of a span or log segment — a token of a text column, or an attribute's
//! `key=value` — the **blocks** of [`BLOCK_ROWS`] consecutive rows (in the segment's sorted
//! order) that hold it, behind a bloom filter over the segment's terms. A term found in
//! several blocks is in a sorted dictionary with a roaring bitmap of its block numbers; a
//! term found in one block only — most ids and numbers of real logs, and most of an
//! exact dictionary's bytes — is in that block's own bloom filter instead (about 0.05%
//! false positives), which keeps the index at a few bytes per row.
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
//! | `spans` | `name`, `status_message`, the names of `events` | `attributes`, `resource_attributes` |
//!
//! Attribute values longer than [`MAX_INDEXED_VALUE_BYTES`] bytes are not indexed (a query
//! for one reads every block). Since format 2 the index also keeps, per block, the range
//! of each numeric attribute key ([`super::ranges`]). Metrics have no term index.
//!
//! Format 1 files (no event names, no ranges) are still read: a query on event names or a
//! numeric range reads every block of such a segment until `scry reindex` rewrites it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, AsArray, MapArray, RecordBatch, StringArray};
use roaring::RoaringBitmap;

use super::ranges::{NumericRange, RangeBuilder, RangeSection, get_varint, put_varint};
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
/// The term index format version this build writes (it reads 1 and 2).
pub const VERSION: u32 = 2;
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
    /// The `name` of each item of `spans.events` (tokens; term index format 2).
    EventName = 4,
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
            Signal::Spans => &[Field::Name, Field::StatusMessage, Field::EventName],
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
            Field::EventName => "events",
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
        matches!(
            self,
            Field::Body | Field::Name | Field::StatusMessage | Field::EventName
        )
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
#[derive(Debug, Clone, PartialEq)]
pub enum TermQuery {
    /// No condition the index can check: every block.
    All,
    /// Blocks holding the term.
    Term(Vec<u8>),
    /// Blocks that may hold a value of the attribute in the range (format 2).
    Range(NumericRange),
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

    /// The condition `<field>['key']`, read as a number, lies within `lo`..`hi` (each
    /// `(bound, inclusive)`, `None` for open) implies ([`TermQuery::All`] for a text field).
    pub fn range(
        field: Field,
        key: &str,
        lo: Option<(f64, bool)>,
        hi: Option<(f64, bool)>,
    ) -> TermQuery {
        if field.is_text() || (lo.is_none() && hi.is_none()) {
            return TermQuery::All;
        }
        TermQuery::Range(NumericRange {
            field,
            key: key.to_string(),
            lo,
            hi,
        })
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
            TermQuery::Term(_) | TermQuery::Range(_) => 1,
            TermQuery::And(p) | TermQuery::Or(p) => p.iter().map(TermQuery::terms).sum(),
        }
    }
}

/// A fast hasher for terms (FxHash's multiply-rotate over 8-byte words): building the
/// index hashes every token of every row, where SipHash's cost shows.
#[derive(Default, Clone, Copy)]
struct TermHasher(u64);

impl std::hash::Hasher for TermHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.0 =
            (self.0.rotate_left(5) ^ u64::from_le_bytes(last) ^ rest.len() as u64).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        // Mixed so that the low bits, which pick a hash table's bucket, depend on every
        // byte (short numbers and ids otherwise differ only in their high bits).
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A hasher that passes a precomputed 64-bit hash through.
#[derive(Default, Clone, Copy)]
struct PassHasher(u64);

impl std::hash::Hasher for PassHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) fn fx_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = TermHasher::default();
    h.write(bytes);
    h.finish()
}

/// The distinct terms of the block being read, collected in a small table (a block has a
/// few thousand) before they go to the segment's table once each: most tokens of a block
/// repeat, and the segment's table is too large to stay in cache.
#[derive(Default)]
struct BlockTerms {
    block: u32,
    /// Hash of a term → its bytes in `arena` (start, length).
    slots: HashMap<u64, (usize, usize), std::hash::BuildHasherDefault<PassHasher>>,
    arena: Vec<u8>,
}

impl std::fmt::Debug for BlockTerms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockTerms")
            .field("block", &self.block)
            .field("terms", &self.slots.len())
            .finish()
    }
}

/// The blocks holding one term, ascending without repeats: the first inline (most terms
/// of real logs, ids and numbers, are in one block only), the others after it.
#[derive(Debug, Default)]
struct Posting {
    first: u32,
    more: Vec<u32>,
}

impl Posting {
    fn last(&self) -> u32 {
        self.more.last().copied().unwrap_or(self.first)
    }

    fn blocks(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.first).chain(self.more.iter().copied())
    }
}

/// Builds a segment's term index from its rows, pushed in segment order.
#[derive(Debug)]
pub struct TermIndexBuilder {
    signal: Signal,
    rows: u64,
    /// Hash of a term ([`fx_hash`]) → its number in `postings`.
    ids: HashMap<u64, u32, std::hash::BuildHasherDefault<PassHasher>>,
    /// Terms whose hash another term already has → their numbers (rare).
    collided: HashMap<Box<[u8]>, u32>,
    /// Every term's bytes, concatenated; term `i` is `terms[spans[i]]`.
    terms: Vec<u8>,
    spans: Vec<(usize, usize)>,
    /// Per term number: the blocks holding it.
    postings: Vec<Posting>,
    /// The term being built.
    scratch: Vec<u8>,
    /// The current block's distinct terms, not yet in `ids`.
    local: BlockTerms,
    /// Per-block numeric ranges of the attribute columns.
    ranges: RangeBuilder,
}

impl TermIndexBuilder {
    /// An empty builder for a segment of `signal` (which must be indexed: [`indexed`]).
    pub fn new(signal: Signal) -> Self {
        TermIndexBuilder {
            signal,
            rows: 0,
            ids: HashMap::default(),
            collided: HashMap::new(),
            terms: Vec::new(),
            spans: Vec::new(),
            postings: Vec::new(),
            scratch: Vec::new(),
            local: BlockTerms::default(),
            ranges: RangeBuilder::new(Field::attribute_fields(signal)),
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

    /// Notes the term in `scratch` for `block` (blocks arrive in ascending order).
    fn see(&mut self, block: u32) {
        if block != self.local.block {
            self.flush_block();
            self.local.block = block;
        }
        let h = fx_hash(&self.scratch);
        let collision = match self.local.slots.entry(h) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let (start, len) = *e.get();
                self.local.arena[start..start + len] != self.scratch[..]
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let start = self.local.arena.len();
                self.local.arena.extend_from_slice(&self.scratch);
                e.insert((start, self.scratch.len()));
                false
            }
        };
        if collision {
            // Another term with the same hash is in the table: this one goes straight to
            // the segment's table.
            self.note(h, block);
        }
    }

    /// Moves the current block's terms to the segment's table (keeping `scratch`).
    fn flush_block(&mut self) {
        let current = std::mem::take(&mut self.scratch);
        let mut local = std::mem::take(&mut self.local);
        for (&h, &(start, len)) in &local.slots {
            self.scratch.clear();
            self.scratch
                .extend_from_slice(&local.arena[start..start + len]);
            self.note(h, local.block);
        }
        local.slots.clear();
        local.arena.clear();
        self.local = local;
        self.scratch = current;
    }

    /// Notes the term in `scratch`, whose hash is `h`, for `block`.
    fn note(&mut self, h: u64, block: u32) {
        let id = match self.ids.get(&h) {
            Some(&id) if self.term(id) == self.scratch.as_slice() => Some(id),
            Some(_) => self.collided.get(self.scratch.as_slice()).copied(),
            None => None,
        };
        if let Some(id) = id {
            let p = &mut self.postings[id as usize];
            if p.last() != block {
                p.more.push(block);
            }
            return;
        }
        let id = u32::try_from(self.postings.len()).expect("fewer than 2^32 terms");
        if let std::collections::hash_map::Entry::Vacant(e) = self.ids.entry(h) {
            e.insert(id);
        } else {
            self.collided.insert(self.scratch.as_slice().into(), id);
        }
        let start = self.terms.len();
        self.terms.extend_from_slice(&self.scratch);
        self.spans.push((start, self.scratch.len()));
        self.postings.push(Posting {
            first: block,
            more: Vec::new(),
        });
    }

    fn term(&self, id: u32) -> &[u8] {
        let (start, len) = self.spans[id as usize];
        &self.terms[start..start + len]
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
            // Event names are the `name` strings of a list of structs: row `i` holds
            // strings `offsets[i]..offsets[i + 1]` (those of a NULL event are skipped).
            let (col, offsets, items): (&StringArray, Option<&[i32]>, Option<&dyn Array>) = if field
                == Field::EventName
            {
                let list = col.as_list_opt::<i32>().ok_or_else(|| {
                    Error::invalid(signal, field.column(), None, "not a list column")
                })?;
                let events = list.values();
                let names = events
                    .as_struct_opt()
                    .and_then(|s| s.column_by_name("name"))
                    .and_then(|c| c.as_string_opt::<i32>())
                    .ok_or_else(|| {
                        Error::invalid(signal, field.column(), None, "items have no name string")
                    })?;
                (names, Some(list.value_offsets()), Some(events.as_ref()))
            } else {
                let col = col.as_string_opt::<i32>().ok_or_else(|| {
                    Error::invalid(signal, field.column(), None, "not a string column")
                })?;
                (col, None, None)
            };
            for i in 0..batch.num_rows() {
                let block = block_of(i)?;
                let range = match offsets {
                    Some(o) => o[i] as usize..o[i + 1] as usize,
                    None => i..i + 1,
                };
                for item in range {
                    if col.is_null(item) || items.is_some_and(|e| e.is_null(item)) {
                        continue;
                    }
                    for t in tokens(col.value(item)) {
                        self.scratch.clear();
                        self.scratch.push(field as u8);
                        push_token(&mut self.scratch, t);
                        self.see(block);
                    }
                }
            }
        }
        for (column, &field) in Field::attribute_fields(self.signal).iter().enumerate() {
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
                    let (key, value) = (keys.value(e), values.value(e));
                    self.ranges.note(column, key, value, block);
                    self.scratch.clear();
                    if push_attribute(&mut self.scratch, field, key, value) {
                        self.see(block);
                    }
                }
                self.ranges.end_row(column);
            }
        }
        self.flush_block();
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// The file's bytes (`docs/format.md` section 4c).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let blocks = usize::try_from(self.rows.div_ceil(u64::from(BLOCK_ROWS)))
            .map_err(|_| Error::invalid(self.signal, "", None, "too many rows to term-index"))?;
        // Terms in more than one block go to the dictionary with their postings; the others
        // (most ids and numbers) only to the bloom filter of their block.
        let mut head: Vec<(&[u8], &Posting)> = Vec::new();
        let mut tail: Vec<Vec<&[u8]>> = vec![Vec::new(); blocks];
        for (id, p) in self.postings.iter().enumerate() {
            let t = self.term(id as u32);
            if p.more.is_empty() {
                tail[p.first as usize].push(t);
            } else {
                head.push((t, p));
            }
        }
        head.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let n = self.postings.len();
        let mut bloom = Bloom::with_keys(n);
        for id in 0..n {
            bloom.insert(&term_key(self.term(id as u32)));
        }

        let mut body = Vec::new();
        let mut prev: &[u8] = &[];
        for (t, _) in &head {
            let shared = prev
                .iter()
                .zip(t.iter())
                .take_while(|(a, b)| a == b)
                .count();
            put_varint(&mut body, shared as u64);
            put_varint(&mut body, (t.len() - shared) as u64);
            body.extend_from_slice(&t[shared..]);
            prev = t;
        }
        let mut bitmap = Vec::new();
        for (_, p) in &head {
            bitmap.clear();
            RoaringBitmap::from_sorted_iter(p.blocks())
                .expect("blocks are pushed ascending without repeats")
                .serialize_into(&mut bitmap)
                .expect("writing to a Vec cannot fail");
            put_varint(&mut body, bitmap.len() as u64);
            body.extend_from_slice(&bitmap);
        }
        for terms in &tail {
            let mut filter = BlockBloom::with_keys(terms.len());
            for t in terms {
                filter.insert(&term_key(t));
            }
            put_varint(&mut body, filter.words.len() as u64);
            for w in &filter.words {
                body.extend_from_slice(&w.to_le_bytes());
            }
        }
        self.ranges.encode(&mut body);
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
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
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
        crate::io::write_durably(fs.as_ref(), &term_index_path(segment_path), &bytes)?;
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

/// Bits per term of a block's bloom filter, and its probes (about 0.05% false positives).
const BLOCK_BLOOM_BITS_PER_KEY: usize = 16;
const BLOCK_BLOOM_PROBES: u64 = 11;

/// The bloom filter over the terms found in one block only: `16 × terms` bits rounded up
/// to 64-bit words (none for a block without such terms), 11 probes placed as in the
/// segment's filter ([`crate::index::bloom`]).
struct BlockBloom {
    words: Vec<u64>,
}

impl BlockBloom {
    fn with_keys(n: usize) -> Self {
        BlockBloom {
            words: vec![0; (n * BLOCK_BLOOM_BITS_PER_KEY).div_ceil(64)],
        }
    }

    fn insert(&mut self, key: &[u8; 16]) {
        let bits = self.words.len() as u64 * 64;
        let (h1, h2) = crate::index::bloom::hashes(key);
        for i in 0..BLOCK_BLOOM_PROBES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }
}

/// Whether the block filter of `words` (little-endian `u64`s) may hold `key`; an empty
/// filter holds nothing.
fn block_may_contain(words: &[u8], key: &[u8; 16]) -> bool {
    let n = words.len() / 8;
    if n == 0 {
        return false;
    }
    let bits = n as u64 * 64;
    let (h1, h2) = crate::index::bloom::hashes(key);
    (0..BLOCK_BLOOM_PROBES).all(|i| {
        let bit = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
        let w = (bit / 64) as usize * 8;
        let word = u64::from_le_bytes(words[w..w + 8].try_into().expect("8 bytes"));
        word & (1 << (bit % 64)) != 0
    })
}

/// An open term index: checked, its bloom filter in memory, its body decompressed on the
/// first query the bloom filter does not answer.
pub struct TermIndex {
    path: PathBuf,
    signal: Signal,
    /// The file's format version (1 or 2).
    version: u32,
    rows: u64,
    terms: usize,
    /// Terms in the dictionary (in more than one block).
    head: usize,
    bloom: Bloom,
    /// The zstd frame of the body, until decompressed.
    compressed: bytes::Bytes,
    raw_len: usize,
    body: OnceLock<std::result::Result<Body, String>>,
    /// Set once an unusable body has been reported.
    reported: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for TermIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TermIndex")
            .field("path", &self.path)
            .field("terms", &self.terms)
            .finish()
    }
}

/// A decompressed, checked body, decoded for lookups.
struct Body {
    /// The dictionary's terms, concatenated in order.
    terms: Vec<u8>,
    /// `terms` offsets: term `i` is `terms[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    /// The decompressed body.
    raw: Vec<u8>,
    /// Per dictionary term: its roaring bitmap's range in `raw`.
    postings: Vec<(usize, usize)>,
    /// Per block: its bloom filter's range in `raw`.
    blocks: Vec<(usize, usize)>,
    /// The numeric ranges (format 2; `None` in format 1).
    ranges: Option<RangeSection>,
}

impl Body {
    fn term(&self, i: usize) -> &[u8] {
        &self.terms[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Decodes and checks the layout: the front-coded terms strictly ascending, each
    /// length in range, then the block filters and (format 2) the numeric ranges ending
    /// the body.
    fn decode(
        raw: Vec<u8>,
        head: usize,
        blocks: usize,
        version: u32,
        signal: Signal,
    ) -> std::result::Result<Body, String> {
        let mut at = 0;
        let short = || "body ends early".to_string();
        let mut terms: Vec<u8> = Vec::new();
        let mut offsets = Vec::with_capacity(head + 1);
        offsets.push(0u32);
        let mut prev = 0..0;
        // Front coding expands terms; more than this many bytes is damage, not data.
        let most = raw.len().saturating_mul(64);
        for i in 0..head {
            let shared = get_varint(&raw, &mut at).ok_or_else(short)? as usize;
            let len = get_varint(&raw, &mut at).ok_or_else(short)? as usize;
            if shared > prev.len() || (i > 0 && len == 0) {
                return Err(format!("term {i}: bad prefix length"));
            }
            let suffix = raw.get(at..at.saturating_add(len)).ok_or_else(short)?;
            at += len;
            let start = terms.len();
            if start + shared + len > most {
                return Err(format!("term {i}: terms expand past {most} bytes"));
            }
            terms.extend_from_within(prev.start..prev.start + shared);
            terms.extend_from_slice(suffix);
            if i > 0 && terms[prev.clone()] >= terms[start..] {
                return Err(format!("terms out of order at term {i}"));
            }
            prev = start..terms.len();
            offsets.push(u32::try_from(terms.len()).map_err(|_| "terms exceed 4 GiB")?);
        }
        let mut postings = Vec::with_capacity(head);
        for _ in 0..head {
            let len = get_varint(&raw, &mut at).ok_or_else(short)? as usize;
            if raw.len() - at < len {
                return Err(short());
            }
            postings.push((at, at + len));
            at += len;
        }
        let mut filters = Vec::with_capacity(blocks);
        for _ in 0..blocks {
            let words = get_varint(&raw, &mut at).ok_or_else(short)? as usize;
            let len = words.checked_mul(8).ok_or_else(short)?;
            if raw.len() - at < len {
                return Err(short());
            }
            filters.push((at, at + len));
            at += len;
        }
        let ranges = if version >= 2 {
            let blocks = u32::try_from(blocks).map_err(|_| "too many blocks")?;
            Some(RangeSection::decode(
                &raw,
                &mut at,
                blocks,
                Field::attribute_fields(signal),
            )?)
        } else {
            None
        };
        if at != raw.len() {
            return Err(format!(
                "{} bytes after the body's last part",
                raw.len() - at
            ));
        }
        Ok(Body {
            terms,
            offsets,
            raw,
            postings,
            blocks: filters,
            ranges,
        })
    }

    fn find(&self, term: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.postings.len());
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
        if !(1..=VERSION).contains(&version) {
            return Err(bad(format!(
                "version {version}, this build reads 1 to {VERSION}"
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
        let head = u32_at(36) as usize;
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
        // Each dictionary term takes at least 3 bytes, each block 1; the body is not
        // allowed to claim more than zstd could plausibly have compressed into the frame,
        // so a damaged (CRC-matching) header cannot make a reader allocate gigabytes.
        let blocks = rows.div_ceil(u64::from(BLOCK_ROWS));
        let most = compressed_len.saturating_mul(256).saturating_add(16 << 20);
        if head > terms || raw_len < 3 * head as u64 + blocks || raw_len > most.min(1 << 32) {
            return Err(bad(format!(
                "body of {raw_len} bytes for {head} of {terms} terms in the dictionary and \
                 {blocks} blocks"
            )));
        }
        let bloom = Bloom::from_words((0..words).map(|i| u64_at(HEADER_LEN + 8 * i)).collect());
        Ok(TermIndex {
            path: path.to_path_buf(),
            signal,
            version,
            rows,
            terms,
            head,
            bloom,
            compressed: bytes.slice(body_at..data.len()),
            raw_len: raw_len as usize,
            body: OnceLock::new(),
            reported: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Distinct terms in the segment.
    pub fn terms(&self) -> usize {
        self.terms
    }

    /// Bytes held in memory (bloom filter, compressed body, and the body once decompressed).
    pub fn memory(&self) -> usize {
        let body = match self.body.get() {
            Some(Ok(b)) => {
                b.raw.len()
                    + b.terms.len()
                    + 4 * b.offsets.len()
                    + 16 * b.postings.len()
                    + 16 * b.blocks.len()
                    + b.ranges.as_ref().map_or(0, RangeSection::memory)
            }
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
                let blocks = self.rows.div_ceil(u64::from(BLOCK_ROWS)) as usize;
                Body::decode(raw, self.head, blocks, self.version, self.signal)
            })
            .as_ref()
            .map_err(|e| format!("{}: term index: {e}", self.path.display()))
    }

    /// Whether a failure of this index is being reported for the first time (the caller
    /// logs it then, and not on every later query).
    pub fn first_report(&self) -> bool {
        !self
            .reported
            .swap(true, std::sync::atomic::Ordering::Relaxed)
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
        if let Some(i) = body.find(term) {
            let (a, b) = body.postings[i];
            return RoaringBitmap::deserialize_from(&body.raw[a..b])
                .map(Some)
                .map_err(|e| format!("{}: term index: bad postings: {e}", self.path.display()));
        }
        // Not in the dictionary: in one block at most, if any filter holds it.
        let key = term_key(term);
        let mut found = RoaringBitmap::new();
        for (i, &(a, b)) in body.blocks.iter().enumerate() {
            if block_may_contain(&body.raw[a..b], &key) {
                found.insert(i as u32);
            }
        }
        Ok((!found.is_empty()).then_some(found))
    }

    /// The file's format version: 1 has no event names and no numeric ranges (a query on
    /// them selects every block).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The blocks `q` selects: `Ok(None)` for every block ([`TermQuery::All`]).
    pub fn candidates(&self, q: &TermQuery) -> std::result::Result<Option<RoaringBitmap>, String> {
        Ok(match q {
            TermQuery::All => None,
            TermQuery::Term(t)
                if self.version < 2 && t.first() == Some(&(Field::EventName as u8)) =>
            {
                None
            }
            TermQuery::Term(t) => Some(self.blocks(t)?.unwrap_or_default()),
            TermQuery::Range(r) => match &self.body()?.ranges {
                Some(section) => section.candidates(r),
                None => None,
            },
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

/// Whether segment `seg`'s term index is missing, of an older format (which lacks event
/// names and numeric ranges) or fails its checks (what `scry reindex` rewrites). I/O errors other than a missing file are returned.
pub fn needs_rebuild(fs: &dyn FileSystem, db_dir: &Path, seg: &crate::SegmentMeta) -> Result<bool> {
    if !indexed(seg.signal) {
        return Ok(false);
    }
    let path = term_index_path(&db_dir.join(&seg.path));
    match TermIndex::open(fs, &path, seg.signal, seg.rows) {
        Ok(idx) => Ok(idx.version < VERSION || idx.body().is_err()),
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

    /// A log batch with `bodies` and one attribute `k` = the row number modulo 3.
    fn logs(bodies: &[String]) -> RecordBatch {
        use arrow::array::{ArrayRef, MapBuilder, StringBuilder};
        let schema = crate::schema::schema(Signal::Logs);
        let mut attrs = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for i in 0..bodies.len() {
            attrs.keys().append_value("k");
            attrs.values().append_value((i % 3).to_string());
            attrs.append(true).expect("map");
        }
        let body: ArrayRef = std::sync::Arc::new(arrow::array::StringArray::from(bodies.to_vec()));
        let attrs: ArrayRef = std::sync::Arc::new(attrs.finish());
        let cols = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "body" => body.clone(),
                "attributes" => attrs.clone(),
                _ => arrow::array::new_null_array(f.data_type(), bodies.len()),
            })
            .collect();
        RecordBatch::try_new_with_options(
            std::sync::Arc::new(arrow::datatypes::Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            )),
            cols,
            &Default::default(),
        )
        .expect("batch")
    }

    #[test]
    fn dictionary_terms_block_filter_terms_and_absent_terms_are_found_exactly_or_not_at_all() {
        // 3000 rows = blocks 0, 1, 2: "common" everywhere, "id<i>" once each, "second"
        // in block 1 only (many times), "edge" in the first and last row.
        let bodies: Vec<String> = (0..3000)
            .map(|i| {
                let mut b = format!("common id{i}");
                if (1024..2048).contains(&i) {
                    b.push_str(" second");
                }
                if i == 0 || i == 2999 {
                    b.push_str(" EDGE");
                }
                b
            })
            .collect();
        let mut builder = TermIndexBuilder::new(Signal::Logs);
        builder.add(&logs(&bodies[..1500])).expect("add");
        builder.add(&logs(&bodies[1500..])).expect("add");
        let bytes = builder.encode().expect("encode");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.sidx");
        std::fs::write(&path, &bytes).expect("write");
        let fs = crate::io::StdFs;
        let idx = TermIndex::open(&fs, &path, Signal::Logs, 3000).expect("open");
        idx.check().expect("body checks");
        let blocks = |t: &str| -> Vec<u32> {
            idx.blocks(&token_term(Field::Body, t))
                .expect("readable")
                .map(|b| b.iter().collect())
                .unwrap_or_default()
        };
        assert_eq!(blocks("common"), [0, 1, 2]);
        assert_eq!(blocks("edge"), [0, 2]);
        assert_eq!(blocks("second"), [1]);
        for i in (0..3000).step_by(97) {
            assert!(blocks(&format!("ID{i}")).contains(&(i / 1024)), "id{i}");
        }
        assert_eq!(blocks("nothere"), Vec::<u32>::new());
        let kv = attribute_term(Field::Attributes, "k", "2").expect("short");
        assert_eq!(idx.blocks(&kv).expect("readable").map(|b| b.len()), Some(3));
        let q = TermQuery::and(vec![
            TermQuery::phrase(Field::Body, "common second"),
            TermQuery::or(vec![
                TermQuery::phrase(Field::Body, "id1500"),
                TermQuery::phrase(Field::Body, "edge"),
            ]),
        ]);
        let c = idx.candidates(&q).expect("readable").expect("narrowed");
        assert_eq!(c.iter().collect::<Vec<_>>(), [1]);
        assert_eq!(idx.rows_of(&c).len(), 1024);
        let last = RoaringBitmap::from_iter([2u32]);
        assert_eq!(idx.rows_of(&last).len(), 3000 - 2048);

        // Another segment's row count, signal, or any flipped byte is refused.
        assert!(TermIndex::open(&fs, &path, Signal::Logs, 2999).is_err());
        assert!(TermIndex::open(&fs, &path, Signal::Spans, 3000).is_err());
        for at in [0, 12, 40, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).expect("write");
            assert!(
                TermIndex::open(&fs, &path, Signal::Logs, 3000).is_err(),
                "flip at {at}"
            );
        }
    }

    #[test]
    fn terms_with_equal_hashes_keep_their_own_blocks() {
        let mut b = TermIndexBuilder::new(Signal::Logs);
        for (term, block) in [("\x01aa", 0), ("\x01bb", 0), ("\x01aa", 1), ("\x01bb", 2)] {
            b.scratch.clear();
            b.scratch.extend_from_slice(term.as_bytes());
            b.note(7, block);
        }
        b.rows = 3 * u64::from(BLOCK_ROWS);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.sidx");
        std::fs::write(&path, b.encode().expect("encode")).expect("write");
        let idx = TermIndex::open(&crate::io::StdFs, &path, Signal::Logs, b.rows).expect("open");
        let blocks = |t: &str| -> Vec<u32> {
            idx.blocks(t.as_bytes())
                .expect("ok")
                .expect("found")
                .iter()
                .collect()
        };
        assert_eq!(blocks("\x01aa"), [0, 1]);
        assert_eq!(blocks("\x01bb"), [0, 2]);
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
