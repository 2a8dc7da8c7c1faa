//! Numeric ranges of attribute values, per block, in the term index (format 2,
//! `docs/format.md` section 4c): for each attribute key of a segment that holds a number,
//! the smallest and largest number per block of [`super::index::BLOCK_ROWS`] rows, so that
//! `TRY_CAST(attributes['http.status_code'] AS DOUBLE) >= 500` (what the search syntax's
//! `@http.status_code>=500` compiles to) or `CAST(attributes['k'] AS BIGINT) < 10` reads
//! only the blocks whose range can hold a match.
//!
//! Like the rest of the term index this names candidate blocks and never misses a row:
//!
//! - a value counts as a number only when [`number`] accepts it — a finite decimal of
//!   magnitude below 2^53 (so that every integer cast of it is exact), not negative zero
//!   (which sorts below zero in Arrow's total order of floats); a block holding any other
//!   value of the key is *unknown* and always a candidate;
//! - a block without the key is never a candidate (a missing key compares as NULL);
//! - a key listed as text (no number in the whole segment) makes every block a candidate,
//!   and a key missing from a complete list makes none.

use std::collections::HashMap;

use super::index::Field;

/// Keys per attribute column whose per-block ranges are kept; keys past it (in order of
/// first appearance) are listed as text: a range query on them reads every block.
pub const MAX_RANGE_KEYS: usize = 256;
/// Keys per attribute column that are listed at all; past it the list is marked incomplete
/// and a range query on an unlisted key reads every block.
pub const MAX_LISTED_KEYS: usize = 4096;

/// 2^53: integers of smaller magnitude are exact as `f64`.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// The number attribute value `s` holds for range statistics: `Some` for a finite decimal
/// in Rust's `f64` syntax (`500`, `-1.5`, `2e3`) of magnitude below 2^53 that is not
/// negative zero; `None` for anything else (text, `NaN`, `inf`, huge or padded numbers),
/// which makes its block a candidate for every range.
pub fn number(s: &str) -> Option<f64> {
    let bytes = s.as_bytes();
    let b = *bytes.first()?;
    if !(b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.') {
        return None;
    }
    // Most numeric attributes are short unsigned integers (codes, ports, ids): read them
    // directly (15 digits stay below 2^53).
    if bytes.len() <= 15 && bytes.iter().all(u8::is_ascii_digit) {
        return Some(
            bytes
                .iter()
                .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')) as f64,
        );
    }
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v.abs() < EXACT && !(v == 0.0 && v.is_sign_negative())).then_some(v)
}

/// What a range query asks of one attribute key: its value, read as a number, within
/// `lo`..`hi` (each bound `(value, inclusive)`, `None` for open), compared in Arrow's
/// total order of floats (`-0.0 < 0.0`, `NaN` above every number).
#[derive(Debug, Clone, PartialEq)]
pub struct NumericRange {
    /// The attribute column.
    pub field: Field,
    /// The attribute key.
    pub key: String,
    /// Lower bound.
    pub lo: Option<(f64, bool)>,
    /// Upper bound.
    pub hi: Option<(f64, bool)>,
}

impl NumericRange {
    /// Whether a block whose numbers lie in `min..=max` may hold a value in the range.
    pub fn admits(&self, min: f64, max: f64) -> bool {
        if let Some((l, inclusive)) = self.lo {
            let c = max.total_cmp(&l);
            if !(c.is_gt() || (inclusive && c.is_eq())) {
                return false;
            }
        }
        if let Some((h, inclusive)) = self.hi {
            let c = min.total_cmp(&h);
            if !(c.is_lt() || (inclusive && c.is_eq())) {
                return false;
            }
        }
        true
    }
}

/// One block's numbers of a key: `Some((min, max))`, or `None` when the block also holds a
/// value that is not a number.
type BlockRange = Option<(f64, f64)>;

#[derive(Debug)]
struct KeyStats {
    key: Box<str>,
    /// Whether any value of the segment was a number.
    numeric: bool,
    /// The block being filled and its range so far.
    open: Option<(u32, BlockRange)>,
    /// Finished blocks, ascending.
    done: Vec<(u32, BlockRange)>,
}

/// The keys of one attribute column.
#[derive(Debug, Default)]
struct KeyTable {
    ids: HashMap<Box<str>, u32>,
    keys: Vec<KeyStats>,
    /// The previous row's key numbers by position: rows of one service mostly repeat
    /// their keys in the same order, so most lookups are one string comparison.
    prev: Vec<u32>,
    cur: Vec<u32>,
    complete: bool,
}

impl KeyTable {
    fn id(&mut self, key: &str) -> Option<u32> {
        if let Some(&id) = self.prev.get(self.cur.len())
            && &*self.keys[id as usize].key == key
        {
            return Some(id);
        }
        if let Some(&id) = self.ids.get(key) {
            return Some(id);
        }
        if self.keys.len() >= MAX_LISTED_KEYS {
            self.complete = false;
            return None;
        }
        let id = self.keys.len() as u32;
        self.ids.insert(key.into(), id);
        self.keys.push(KeyStats {
            key: key.into(),
            numeric: false,
            open: None,
            done: Vec::new(),
        });
        Some(id)
    }
}

/// Collects the per-block numeric ranges of a segment's attribute columns while its rows
/// are added (by [`super::index::TermIndexBuilder`]).
#[derive(Debug)]
pub struct RangeBuilder {
    tables: Vec<(Field, KeyTable)>,
}

impl RangeBuilder {
    /// A builder for the attribute columns `fields`.
    pub fn new(fields: &[Field]) -> Self {
        RangeBuilder {
            tables: fields
                .iter()
                .map(|&f| {
                    (
                        f,
                        KeyTable {
                            complete: true,
                            ..KeyTable::default()
                        },
                    )
                })
                .collect(),
        }
    }

    /// Notes the next entry (`key` = `value`) of the current row of column number `column`
    /// (an index into the builder's fields), in block `block` (blocks ascending).
    pub fn note(&mut self, column: usize, key: &str, value: &str, block: u32) {
        let t = &mut self.tables[column].1;
        let Some(id) = t.id(key) else { return };
        t.cur.push(id);
        let k = &mut t.keys[id as usize];
        let n = number(value);
        k.numeric |= n.is_some();
        match &mut k.open {
            Some((b, range)) if *b == block => {
                *range = match (*range, n) {
                    (Some((lo, hi)), Some(v)) => Some((lo.min(v), hi.max(v))),
                    _ => None,
                };
            }
            open => {
                if let Some(finished) = open.take() {
                    k.done.push(finished);
                }
                *open = Some((block, n.map(|v| (v, v))));
            }
        }
    }

    /// Ends the current row of column number `column`.
    pub fn end_row(&mut self, column: usize) {
        let t = &mut self.tables[column].1;
        std::mem::swap(&mut t.prev, &mut t.cur);
        t.cur.clear();
    }

    /// Appends the section's bytes (`docs/format.md` section 4c, "numeric ranges").
    pub fn encode(&self, out: &mut Vec<u8>) {
        let complete = self.tables.iter().all(|(_, t)| t.complete);
        out.push(u8::from(complete));
        let mut entries: Vec<(u8, &KeyStats, bool)> = Vec::new();
        for (field, t) in &self.tables {
            let mut ranged = 0;
            for k in &t.keys {
                let with_ranges = k.numeric && ranged < MAX_RANGE_KEYS;
                ranged += usize::from(with_ranges);
                entries.push((*field as u8, k, with_ranges));
            }
        }
        entries.sort_unstable_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
        put_varint(out, entries.len() as u64);
        for (field, k, with_ranges) in entries {
            out.push(field);
            put_varint(out, k.key.len() as u64);
            out.extend_from_slice(k.key.as_bytes());
            out.push(u8::from(with_ranges));
            if !with_ranges {
                continue;
            }
            let blocks: Vec<(u32, BlockRange)> = k.done.iter().copied().chain(k.open).collect();
            put_varint(out, blocks.len() as u64);
            let mut next = 0u32;
            for (block, range) in blocks {
                put_varint(out, u64::from(block - next));
                next = block + 1;
                match range {
                    Some((lo, hi)) => {
                        out.push(1);
                        out.extend_from_slice(&lo.to_le_bytes());
                        out.extend_from_slice(&hi.to_le_bytes());
                    }
                    None => out.push(2),
                }
            }
        }
    }
}

/// A key's entry in a decoded section.
#[derive(Debug)]
enum KeyRanges {
    /// No number in the segment: every block is a candidate.
    Text,
    /// The blocks holding the key, ascending, with their ranges.
    Numeric(Vec<(u32, BlockRange)>),
}

/// The decoded numeric-range section of a term index.
#[derive(Debug, Default)]
pub struct RangeSection {
    complete: bool,
    keys: HashMap<(u8, Box<str>), KeyRanges>,
}

impl RangeSection {
    /// Decodes the section at `raw[*at..]` for a segment of `blocks` blocks whose attribute
    /// columns are `fields`, checking every length, field, order and number.
    pub fn decode(
        raw: &[u8],
        at: &mut usize,
        blocks: u32,
        fields: &[Field],
    ) -> std::result::Result<RangeSection, String> {
        let short = || "numeric ranges end early".to_string();
        let complete = match raw.get(*at).ok_or_else(short)? {
            0 => false,
            1 => true,
            b => return Err(format!("numeric ranges: bad completeness byte {b}")),
        };
        *at += 1;
        let n = get_varint(raw, at).ok_or_else(short)?;
        // Each entry takes at least 3 bytes.
        if n > (raw.len() - *at) as u64 / 3 {
            return Err(format!("numeric ranges: {n} keys do not fit"));
        }
        let mut keys = HashMap::with_capacity(n as usize);
        let mut prev: Option<(u8, Box<str>)> = None;
        for i in 0..n {
            let field = *raw.get(*at).ok_or_else(short)?;
            *at += 1;
            if !fields.iter().any(|f| *f as u8 == field) {
                return Err(format!("numeric ranges: key {i} of unknown column {field}"));
            }
            let len = get_varint(raw, at).ok_or_else(short)? as usize;
            let key = raw.get(*at..at.saturating_add(len)).ok_or_else(short)?;
            *at += len;
            let key: Box<str> = std::str::from_utf8(key)
                .map_err(|_| format!("numeric ranges: key {i} is not UTF-8"))?
                .into();
            let id = (field, key);
            if prev.as_ref().is_some_and(|p| *p >= id) {
                return Err(format!("numeric ranges: keys out of order at key {i}"));
            }
            let kind = *raw.get(*at).ok_or_else(short)?;
            *at += 1;
            let entry = match kind {
                0 => KeyRanges::Text,
                1 => {
                    let m = get_varint(raw, at).ok_or_else(short)?;
                    // Each block takes at least 2 bytes.
                    if m > u64::from(blocks) || m > (raw.len() - *at) as u64 / 2 {
                        return Err(format!("numeric ranges: {m} blocks for key {i}"));
                    }
                    let mut list = Vec::with_capacity(m as usize);
                    let mut next = 0u64;
                    for _ in 0..m {
                        let gap = get_varint(raw, at).ok_or_else(short)?;
                        let block = next.saturating_add(gap);
                        if block >= u64::from(blocks) {
                            return Err(format!("numeric ranges: block {block} out of range"));
                        }
                        next = block + 1;
                        let tag = *raw.get(*at).ok_or_else(short)?;
                        *at += 1;
                        let range = match tag {
                            1 => {
                                let f = |o: usize| -> Option<f64> {
                                    let b = raw.get(*at + o..*at + o + 8)?;
                                    Some(f64::from_le_bytes(b.try_into().expect("8 bytes")))
                                };
                                let (lo, hi) = (f(0).ok_or_else(short)?, f(8).ok_or_else(short)?);
                                *at += 16;
                                if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                                    return Err(format!(
                                        "numeric ranges: bad range {lo}..{hi} in block {block}"
                                    ));
                                }
                                Some((lo, hi))
                            }
                            2 => None,
                            t => return Err(format!("numeric ranges: bad block tag {t}")),
                        };
                        list.push((block as u32, range));
                    }
                    KeyRanges::Numeric(list)
                }
                k => return Err(format!("numeric ranges: bad key kind {k}")),
            };
            prev = Some(id.clone());
            keys.insert(id, entry);
        }
        Ok(RangeSection { complete, keys })
    }

    /// The blocks that may hold a value in `q`: `None` for every block.
    pub fn candidates(&self, q: &NumericRange) -> Option<roaring::RoaringBitmap> {
        match self.keys.get(&(q.field as u8, q.key.as_str().into())) {
            None if self.complete => Some(roaring::RoaringBitmap::new()),
            None | Some(KeyRanges::Text) => None,
            Some(KeyRanges::Numeric(list)) => Some(
                list.iter()
                    .filter(|(_, r)| r.is_none_or(|(lo, hi)| q.admits(lo, hi)))
                    .map(|(b, _)| *b)
                    .collect(),
            ),
        }
    }

    /// Bytes held in memory, roughly.
    pub fn memory(&self) -> usize {
        self.keys
            .iter()
            .map(|((_, k), r)| {
                48 + k.len()
                    + match r {
                        KeyRanges::Text => 0,
                        KeyRanges::Numeric(l) => 24 * l.len(),
                    }
            })
            .sum()
    }
}

/// Appends `v` as a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*at`, advancing it; `None` past the end or over 64 bits.
pub(crate) fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_exact_finite_decimals() {
        assert_eq!(number("500"), Some(500.0));
        assert_eq!(number("-1.5"), Some(-1.5));
        assert_eq!(number("+2e3"), Some(2000.0));
        assert_eq!(number(".5"), Some(0.5));
        assert_eq!(number("0"), Some(0.0));
        assert_eq!(number("007"), Some(7.0));
        assert_eq!(number("999999999999999"), Some(999_999_999_999_999.0));
        assert_eq!(number("9007199254740991"), Some(9_007_199_254_740_991.0));
        for bad in [
            "",
            "x1",
            " 5",
            "5 ",
            "NaN",
            "inf",
            "-inf",
            "1e400",
            "-0",
            "-0.0",
            "0x1f",
            "9007199254740993",
            "1_000",
        ] {
            assert_eq!(number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ranges_compare_in_total_order() {
        let r = |lo, hi| NumericRange {
            field: Field::Attributes,
            key: "k".into(),
            lo,
            hi,
        };
        assert!(r(Some((500.0, true)), None).admits(100.0, 500.0));
        assert!(!r(Some((500.0, false)), None).admits(100.0, 500.0));
        assert!(!r(None, Some((100.0, false))).admits(100.0, 500.0));
        assert!(r(None, Some((100.0, true))).admits(100.0, 500.0));
        // 0.0 > -0.0 in Arrow's order: a block of zeros is a candidate.
        assert!(r(Some((-0.0, false)), None).admits(0.0, 0.0));
        // Every number is below NaN.
        assert!(r(None, Some((f64::NAN, false))).admits(1.0, 2.0));
        assert!(!r(Some((f64::NAN, false)), None).admits(1.0, 2.0));
    }

    #[test]
    fn sections_round_trip_and_name_candidate_blocks() {
        let mut b = RangeBuilder::new(&[Field::Attributes, Field::ResourceAttributes]);
        // Block 0: code 200..=404; block 1: code 500 and "oops"; block 3: code 503.
        let rows: [(u32, &[(&str, &str)]); 5] = [
            (0, &[("code", "200"), ("route", "/a")]),
            (0, &[("route", "/b"), ("code", "404")]),
            (1, &[("code", "500")]),
            (1, &[("code", "oops")]),
            (3, &[("code", "503"), ("route", "/c")]),
        ];
        for (block, entries) in rows {
            for (k, v) in entries.iter() {
                b.note(0, k, v, block);
            }
            b.end_row(0);
        }
        let mut bytes = Vec::new();
        b.encode(&mut bytes);
        let mut at = 0;
        let fields = [Field::Attributes, Field::ResourceAttributes];
        let s = RangeSection::decode(&bytes, &mut at, 4, &fields).expect("decodes");
        assert_eq!(at, bytes.len());
        let q = |key: &str, lo: Option<(f64, bool)>, hi| NumericRange {
            field: Field::Attributes,
            key: key.into(),
            lo,
            hi,
        };
        let blocks = |q: NumericRange| s.candidates(&q).map(|b| b.iter().collect::<Vec<_>>());
        assert_eq!(
            blocks(q("code", Some((500.0, true)), None)),
            Some(vec![1, 3])
        );
        assert_eq!(
            blocks(q("code", None, Some((300.0, false)))),
            Some(vec![0, 1])
        );
        assert_eq!(blocks(q("code", Some((504.0, true)), None)), Some(vec![1]));
        // A text key reads everything; an absent key nothing.
        assert_eq!(blocks(q("route", Some((1.0, true)), None)), None);
        assert_eq!(blocks(q("nope", Some((1.0, true)), None)), Some(vec![]));
        // A block out of range is refused.
        let mut at = 0;
        assert!(RangeSection::decode(&bytes, &mut at, 3, &fields).is_err());
        // A gap past every block is refused, not wrapped.
        let mut hostile = vec![1, 1, Field::Attributes as u8, 1, b'k', 1, 2, 0, 2];
        put_varint(&mut hostile, u64::MAX);
        hostile.push(2);
        let mut at = 0;
        assert!(RangeSection::decode(&hostile, &mut at, 4, &fields).is_err());
        for cut in 0..bytes.len() {
            let mut at = 0;
            assert!(RangeSection::decode(&bytes[..cut], &mut at, 4, &fields).is_err());
        }
    }
}
