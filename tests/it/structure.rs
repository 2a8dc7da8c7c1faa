//! Structural predicates (`children`, `descendants`, `parents`, `ancestors`) against a naive
//! walk of parent links, on generated traces whose spans are split over segments and the
//! memtable.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{FixedSizeBinaryArray, RecordBatch, StringArray};
use scrydb::Signal;
use scrydb::sql::structure::{self, Pair, Relation};

use crate::common::*;

/// One generated span.
#[derive(Clone)]
struct Gen {
    trace: [u8; 16],
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: &'static str,
}

/// `traces` random forests: mostly one root, sometimes a second root or an orphan (a parent
/// id no span has); names from a small set.
fn generate(rng: &mut scrydb_workload::Rng, traces: usize) -> Vec<Gen> {
    const NAMES: [&str; 4] = ["checkout", "payment", "db", "cache"];
    let mut out = Vec::new();
    for _ in 0..traces {
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
        trace[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
        let n = 1 + rng.below(30) as usize;
        let mut ids: Vec<[u8; 8]> = Vec::new();
        for i in 0..n {
            let id = (rng.next_u64() | 1).to_be_bytes();
            let parent = if i == 0 || rng.chance(0.05) {
                None
            } else if rng.chance(0.05) {
                Some((rng.next_u64() & !1).to_be_bytes()) // never a span's id (those are odd)
            } else {
                Some(ids[rng.below(ids.len() as u64) as usize])
            };
            ids.push(id);
            out.push(Gen {
                trace,
                id,
                parent,
                name: NAMES[rng.below(NAMES.len() as u64) as usize],
            });
        }
    }
    out
}

/// The spans of `gens` as a batch of the spans table (other columns from the synthesizer).
fn batch(gens: &[Gen], seed: u64) -> RecordBatch {
    let b = synth(Signal::Spans, seed, gens.len(), BASE);
    let b = with_column(
        &b,
        "trace_id",
        Arc::new(FixedSizeBinaryArray::try_from_iter(gens.iter().map(|g| g.trace)).expect("ids")),
    );
    let b = with_column(
        &b,
        "span_id",
        Arc::new(FixedSizeBinaryArray::try_from_iter(gens.iter().map(|g| g.id)).expect("ids")),
    );
    let b = with_column(
        &b,
        "parent_span_id",
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(gens.iter().map(|g| g.parent), 8)
                .expect("ids"),
        ),
    );
    with_column(
        &b,
        "name",
        Arc::new(StringArray::from_iter_values(gens.iter().map(|g| g.name))),
    )
}

/// The pairs of `relation` by walking parent ids (every id is unique, no loops).
fn naive(
    gens: &[Gen],
    relation: Relation,
    anchor: impl Fn(&Gen) -> bool,
    target: impl Fn(&Gen) -> bool,
) -> BTreeSet<Pair> {
    let mut by_trace: HashMap<[u8; 16], Vec<&Gen>> = HashMap::new();
    for g in gens {
        by_trace.entry(g.trace).or_default().push(g);
    }
    let mut out = BTreeSet::new();
    for (trace, spans) in by_trace {
        let parent: HashMap<[u8; 8], [u8; 8]> = spans
            .iter()
            .filter_map(|g| {
                let p = g.parent?;
                spans.iter().any(|x| x.id == p).then_some((g.id, p))
            })
            .collect();
        // Proper ancestors of `id`, nearest first.
        let ancestors = |id: [u8; 8]| {
            let mut chain = Vec::new();
            let mut at = id;
            while let Some(p) = parent.get(&at) {
                chain.push(*p);
                at = *p;
            }
            chain
        };
        let span = |id: [u8; 8]| *spans.iter().find(|g| g.id == id).expect("span");
        for g in &spans {
            let chain = ancestors(g.id);
            for (d, a) in chain.iter().enumerate() {
                let distance = d as u32 + 1;
                let (t, anc) = match relation {
                    // g is the target, a its ancestor the anchor.
                    Relation::Children | Relation::Descendants => (g.id, *a),
                    // g is the anchor, a its ancestor the target.
                    Relation::Parents | Relation::Ancestors => (*a, g.id),
                };
                let direct = matches!(relation, Relation::Children | Relation::Parents);
                if (direct && distance != 1) || !target(span(t)) || !anchor(span(anc)) {
                    continue;
                }
                out.insert(Pair {
                    trace_id: trace,
                    span_id: t,
                    anchor_span_id: anc,
                    distance,
                });
            }
        }
    }
    out
}

#[test]
fn structural_predicates_match_a_naive_walk_across_segments_and_the_memtable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let mut rng = scrydb_workload::Rng::new(11);
    let gens = generate(&mut rng, 900);
    // Every trace's spans spread over two segments and the memtable.
    let mut parts: [Vec<Gen>; 3] = Default::default();
    for g in &gens {
        parts[rng.below(3) as usize].push(g.clone());
    }
    for (i, part) in parts.iter().enumerate() {
        db.append(Signal::Spans, &batch(part, i as u64))
            .expect("append");
        if i < 2 {
            db.flush().expect("flush");
        }
    }
    // Some spans stored twice, as a retried export stores them: no pair comes twice.
    let again: Vec<Gen> = parts[0].iter().step_by(7).cloned().collect();
    db.append(Signal::Spans, &batch(&again, 0)).expect("append");
    let session = scrydb::sql::Session::new(db.reader()).expect("session");
    let cond = |n: &str| format!("name = '{n}'");
    // Every relation and condition pair against the naive walk; returns how many traces'
    // trees were read from their segment and how many were built from their spans.
    let check_all = |when: &str| {
        let (mut stored, mut computed) = (0, 0);
        for relation in Relation::ALL {
            for (anchor, target) in [("checkout", "payment"), ("db", "db"), ("cache", "checkout")] {
                let got = scrydb::sql::block_on(structure::relate(
                    &session,
                    relation,
                    &cond(anchor),
                    &cond(target),
                ))
                .expect("related");
                stored += got.stored_trees;
                computed += got.computed_trees;
                let got = got.pairs;
                let set: BTreeSet<Pair> = got.iter().copied().collect();
                assert_eq!(set.len(), got.len(), "{when}: {relation:?}: no pair twice");
                let want = naive(&gens, relation, |g| g.name == anchor, |g| g.name == target);
                assert!(
                    !want.is_empty(),
                    "{relation:?} {anchor} {target}: the data has pairs"
                );
                assert_eq!(set, want, "{when}: {relation:?}({anchor}, {target})");
                // Through SQL, the same pairs.
                let sql = format!(
                    "SELECT count(*) FROM {}('name = ''{anchor}''', 'name = ''{target}''')",
                    relation.name()
                );
                assert_eq!(
                    values(&session.sql_blocking(&sql).expect("sql")),
                    vec![want.len().to_string()]
                );
            }
        }
        (stored, computed)
    };
    // Traces one segment holds whole use the tree it stores; the others (spans in both
    // segments or the memtable) are built from their spans.
    let (stored, computed) = check_all("split");
    assert!(
        stored > 0 && computed > 0,
        "{stored} stored, {computed} computed"
    );
    // Few candidate traces (an IN list of ids): their spans are read through the trace
    // index; the answer is the same.
    let some: Vec<[u8; 16]> = gens.iter().step_by(97).map(|g| g.trace).collect();
    let list: Vec<String> = some
        .iter()
        .map(|t| {
            format!(
                "'{}'",
                t.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        })
        .collect();
    let anchor = format!("trace_id IN ({}) AND name = 'checkout'", list.join(", "));
    let got: BTreeSet<Pair> = scrydb::sql::block_on(structure::related_spans(
        &session,
        Relation::Descendants,
        &anchor,
        "name = 'db'",
    ))
    .expect("related")
    .into_iter()
    .collect();
    assert!(!got.is_empty());
    assert_eq!(
        got,
        naive(
            &gens,
            Relation::Descendants,
            |g| some.contains(&g.trace) && g.name == "checkout",
            |g| g.name == "db"
        )
    );
    // One trace: read through the trace index.
    let one = gens[0].trace;
    let hex: String = one.iter().map(|b| format!("{b:02x}")).collect();
    let got: BTreeSet<Pair> = scrydb::sql::block_on(structure::related_spans(
        &session,
        Relation::Descendants,
        &format!("trace_id = '{hex}'"),
        "true",
    ))
    .expect("related")
    .into_iter()
    .collect();
    assert_eq!(
        got,
        naive(&gens, Relation::Descendants, |g| g.trace == one, |_| true)
    );

    // Flushed and compacted into one segment: every trace's tree is the one the segment
    // stores (compaction computes it over the spans of all its inputs), and the answers
    // stay the same.
    db.flush().expect("flush");
    db.compact().expect("compact");
    assert_eq!(
        db.reader().snapshot().segments(Signal::Spans, None).len(),
        1
    );
    let (stored, computed) = check_all("compacted");
    assert!(stored > 0, "{stored}");
    assert_eq!(computed, 0, "every trace is whole in the one segment");

    // Every `checkout` span stored again alike (same id, parent and times) but under
    // another name, as a second collector might: a condition matching only the copies
    // relates them as the spans they copy, whether the tree is built (copies unflushed)
    // or stored (after compaction).
    let originals =
        scrydb::sql::block_on(session.sql("SELECT * FROM spans WHERE name = 'checkout'"))
            .expect("originals");
    for b in &originals {
        let field = b.schema().field_with_name("name").expect("name").clone();
        let renamed = arrow::compute::cast(
            &(Arc::new(StringArray::from(vec!["retry"; b.num_rows()])) as arrow::array::ArrayRef),
            field.data_type(),
        )
        .expect("cast");
        db.append(Signal::Spans, &with_column(b, "name", renamed))
            .expect("append copies");
    }
    let copied = |g: &Gen| g.name == "checkout";
    for relation in [Relation::Descendants, Relation::Children] {
        let want = naive(&gens, relation, copied, |_| true);
        assert!(!want.is_empty());
        for when in ["copies unflushed", "copies compacted"] {
            if when == "copies compacted" {
                db.flush().expect("flush");
                db.compact().expect("compact");
            }
            let got = scrydb::sql::block_on(structure::relate(
                &session,
                relation,
                "name = 'retry'",
                "name <> 'retry'",
            ))
            .expect("related");
            if when == "copies compacted" {
                assert_eq!(got.computed_trees, 0, "{when}");
            }
            let set: BTreeSet<Pair> = got.pairs.iter().copied().collect();
            assert_eq!(set, want, "{when}: {relation:?}");
        }
    }
}

#[test]
fn structural_functions_join_with_spans_and_refuse_bad_conditions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let mut rng = scrydb_workload::Rng::new(5);
    let gens = generate(&mut rng, 200);
    db.append(Signal::Spans, &batch(&gens, 1)).expect("append");
    let session = scrydb::sql::Session::new(db.reader()).expect("session");
    // Traces where a checkout span has a payment descendant, and those spans' names.
    let sql = "SELECT count(DISTINCT d.trace_id) AS traces, min(s.name) AS name \
               FROM descendants('name = ''checkout''', 'name = ''payment''') d \
               JOIN spans s ON s.trace_id = d.trace_id AND s.span_id = d.span_id";
    let got = values(&session.sql_blocking(sql).expect("join"));
    let want = naive(
        &gens,
        Relation::Descendants,
        |g| g.name == "checkout",
        |g| g.name == "payment",
    )
    .iter()
    .map(|p| p.trace_id)
    .collect::<BTreeSet<_>>()
    .len();
    assert_eq!(got, vec![format!("{want}|payment")]);
    // Ids show as hex like the spans table's.
    let shown = values(
        &session
            .sql_blocking("SELECT span_id FROM children('name = ''checkout''', 'true') LIMIT 1")
            .expect("children"),
    );
    assert_eq!(shown[0].len(), 16, "{shown:?}");

    for (sql, says) in [
        (
            "SELECT * FROM descendants('name = ')",
            "takes (anchor, target)",
        ),
        (
            "SELECT * FROM descendants('name = ', 'true')",
            "descendants's anchor `name = `",
        ),
        (
            "SELECT * FROM ancestors('true', 'nope = 1')",
            "ancestors: target (nope = 1): Schema error: No field named nope",
        ),
        // Planned before anything runs: a bad target is an error even when no anchor
        // matches.
        (
            "SELECT * FROM descendants('false', 'nope = 1')",
            "descendants: target (nope = 1)",
        ),
        (
            "SELECT * FROM children('true', 'true) OR (true')",
            "children's target",
        ),
        (
            "SELECT * FROM parents('true', 3)",
            "parents's target must be",
        ),
    ] {
        let e = session.sql_blocking(sql).expect_err(sql).to_string();
        assert!(e.contains(says), "{sql}: {e}");
    }
}
