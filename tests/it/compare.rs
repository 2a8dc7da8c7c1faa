//! `compare`: the values over-represented in a selection of spans against a baseline, from
//! the library, SQL and `scry compare`, checked against counts by `GROUP BY`.

use arrow::array::RecordBatch;
use scrydb::Signal;
use scrydb::sql::compare;

use crate::common::*;

/// Spans where a tenth are `slow=true`; 90% of the slow ones are in region `eu`, 10% of
/// the others; every span has a unique `request.id`.
fn spans(rng: &mut scrydb_workload::Rng, n: usize, base: i64, first: usize) -> RecordBatch {
    let batch = synth(Signal::Spans, rng.next_u64(), n, base);
    let mut attrs = scrydb::schema::attributes_builder();
    for i in 0..n {
        let slow = (first + i).is_multiple_of(10);
        let eu = if slow {
            rng.chance(0.9)
        } else {
            rng.chance(0.1)
        };
        for (k, v) in [
            ("slow", slow.to_string()),
            ("region", if eu { "eu" } else { "us" }.to_string()),
            ("request.id", format!("r{}", first + i)),
        ] {
            attrs.keys().append_value(k);
            attrs.values().append_value(v);
        }
        attrs.append(true).expect("map");
    }
    crate::common::with_column(&batch, "attributes", std::sync::Arc::new(attrs.finish()))
}

#[test]
fn compare_ranks_what_the_selection_has_more_of() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let mut rng = scrydb_workload::Rng::new(3);
    db.append(Signal::Spans, &spans(&mut rng, 4000, BASE, 0))
        .expect("append");
    db.flush().expect("flush");
    // Unflushed spans count too.
    db.append(
        Signal::Spans,
        &spans(&mut rng, 1000, BASE + 60_000_000_000, 4000),
    )
    .expect("append");

    let session = scrydb::sql::Session::new(db.reader()).expect("session");
    let selection = "attributes['slow'] = 'true'";
    let rows =
        scrydb::sql::block_on(compare::compare(&session, selection, None, 5)).expect("compare");
    let count = |sql: &str| single_i64(&session.sql_blocking(sql).expect("sql")) as u64;
    let eu_selected = count(
        "SELECT count(*) FROM spans WHERE attributes['slow'] = 'true' AND attributes['region'] = 'eu'",
    );
    let eu_other = count(
        "SELECT count(*) FROM spans WHERE attributes['slow'] = 'false' AND attributes['region'] = 'eu'",
    );
    let (top, second) = (&rows[0], &rows[1]);
    // The selection's own definition first, then the region it concentrates in.
    assert_eq!(
        (
            top.dimension.as_str(),
            top.value.as_str(),
            top.selection_count,
            top.baseline_count
        ),
        ("attributes.slow", "true", 500, 0)
    );
    assert!((top.score - 1.0).abs() < 1e-12);
    assert_eq!(
        (second.dimension.as_str(), second.value.as_str()),
        ("attributes.region", "eu")
    );
    assert_eq!(
        (second.selection_count, second.baseline_count),
        (eu_selected, eu_other)
    );
    assert!((second.selection_share - eu_selected as f64 / 500.0).abs() < 1e-12);
    assert!((second.baseline_share - eu_other as f64 / 4500.0).abs() < 1e-12);
    assert!(second.score > 0.6, "{second:?}");
    // A unique id explains nothing and is left out; scores only fall.
    assert!(rows.iter().all(|r| r.dimension != "attributes.request.id"));
    assert!(rows.windows(2).all(|w| w[0].score >= w[1].score));

    // The SQL table function gives the same rows; an explicit baseline narrows it.
    let sql_rows = values(
        &session
            .sql_blocking(&format!(
                "SELECT dimension, value, selection_count, baseline_count FROM compare('{}', NULL, 5)",
                selection.replace('\'', "''")
            ))
            .expect("sql"),
    );
    let lib_rows: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{}",
                r.dimension, r.value, r.selection_count, r.baseline_count
            )
        })
        .collect();
    assert_eq!(sql_rows, lib_rows);
    let narrowed = values(
        &session
            .sql_blocking(
                "SELECT value, baseline_count FROM compare('attributes[''slow''] = ''true''', \
                 'attributes[''region''] = ''us''') WHERE dimension = 'attributes.region'",
            )
            .expect("sql"),
    );
    assert_eq!(narrowed, ["eu|0"]);
    for (sql, want) in [
        ("SELECT * FROM compare('nosuchcolumn = 1')", "nosuchcolumn"),
        (
            "SELECT * FROM compare('')",
            "selection must be a SQL predicate",
        ),
        (
            "SELECT * FROM compare('true', NULL, 0)",
            "limit must be at least 1",
        ),
    ] {
        let err = session.sql_blocking(sql).expect_err(sql).to_string();
        assert!(err.contains(want), "{sql}: {err}");
    }
    db.close().expect("close");

    // scry compare prints the same ranking, within a time range too.
    let (ok, out, err) = run_scry(&[
        "--db",
        dir.path().to_str().expect("utf-8"),
        "compare",
        "--where",
        selection,
        "--limit",
        "3",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("SCORE") && lines.len() == 4, "{out}");
    assert!(
        lines[1].contains("attributes.slow") && lines[1].contains("true (500 / 0)"),
        "{out}"
    );
    assert!(
        lines[2].contains("attributes.region") && lines[2].contains("eu"),
        "{out}"
    );
    let (ok, _, err) = run_scry(&[
        "--db",
        dir.path().to_str().expect("utf-8"),
        "compare",
        "--where",
        "nosuchcolumn = 1",
    ]);
    assert!(!ok && err.contains("nosuchcolumn"), "{err}");
}
