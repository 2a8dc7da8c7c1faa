//! `scry demo` finds the injected fault from the telemetry alone, for every fault kind and
//! several seeds; `scry gen` writes OTLP that `scry ingest` reads back.

use std::process::Command;

use scrydb_workload::FaultKind;

fn scry(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scry"))
        .args(args)
        .env_remove("SCRY_DB")
        .output()
        .expect("scry runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_names_the_injected_fault_for_every_kind_and_seed() {
    for kind in FaultKind::ALL {
        for seed in [1u64, 2] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (ok, out, err) = scry(&[
                "--db",
                &dir.path().display().to_string(),
                "demo",
                "--seed",
                &seed.to_string(),
                "--fault",
                kind.name(),
                "--seconds",
                "60",
                "--rate",
                "8",
            ]);
            let last = out.lines().last().unwrap_or_default();
            let (found, injected) = last
                .strip_prefix("verdict: ")
                .and_then(|v| v.split_once(" — injected fault: "))
                .unwrap_or_else(|| panic!("no verdict line:\n{out}\n{err}"));
            let (k, target) = injected.split_once(" on ").expect("kind on target");
            assert_eq!(k, kind.name());
            assert_eq!(found, target, "{kind} seed {seed}:\n{out}\n{err}");
            assert!(ok, "{out}\n{err}");
            // Every step shows its SQL.
            assert!(out.matches("FROM spans").count() >= 4, "{out}");
        }
    }
}

#[test]
fn generated_otlp_ingests() {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in ["w.jsonl", "w.binpb"] {
        let path = dir.path().join(file).display().to_string();
        let (ok, out, err) = scry(&[
            "gen", "--spans", "3000", "--seed", "3", "--fault", "down", "--out", &path,
        ]);
        assert!(ok, "{out}{err}");
        assert!(out.contains("injected fault: down on"), "{out}");
        let db = dir.path().join(format!("db-{file}")).display().to_string();
        let (ok, out, err) = scry(&["--db", &db, "ingest", &path]);
        assert!(ok, "{out}{err}");
        assert!(out.contains(" 0 rejected"), "{out}");
        let spans: u64 = out
            .lines()
            .find(|l| l.starts_with("spans"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .expect("spans line");
        assert!(spans >= 3000, "{out}");
    }
}

mod diagnosis {
    //! `scrydb::diagnose` called directly: the injected fault of every kind, nothing found
    //! as a clear `Ok`, a range, and names that need quoting.

    use scrydb::diagnose::{self, AnomalyKind, DiagnoseOptions, Diagnosis, Evidence, Step};
    use scrydb::otlp::Request;
    use scrydb::otlp::ingest::{IngestOptions, Ingester};
    use scrydb::{Db, TimeRange};
    use scrydb_workload::{Fault, FaultKind, Workload, WorkloadOptions};

    use crate::common::open;

    /// A store holding a workload's telemetry (flushed, so segments are read too).
    fn store(dir: &std::path::Path, fault: Option<FaultKind>, seed: u64) -> (Db, Option<Fault>) {
        let db = open(dir);
        let workload = Workload::new(WorkloadOptions {
            seed,
            seconds: 60,
            traces_per_second: 8,
            fault,
            ..Default::default()
        });
        let truth = workload.fault().cloned();
        let mut ingester = Ingester::new(&db, IngestOptions::default());
        for chunk in workload {
            for r in [
                Request::Traces(chunk.traces),
                Request::Logs(chunk.logs),
                Request::Metrics(chunk.metrics),
            ] {
                assert_eq!(ingester.ingest_request(&r).expect("ingest").rejected, 0);
            }
        }
        drop(ingester);
        db.flush().expect("flush");
        (db, truth)
    }

    fn run(db: &Db, range: Option<TimeRange>) -> Diagnosis {
        let session = db.session().expect("session");
        diagnose::diagnose_blocking(session, range, &DiagnoseOptions::default()).expect("diagnosis")
    }

    #[test]
    fn finds_the_injected_service_for_every_fault_kind() {
        for kind in FaultKind::ALL {
            let dir = tempfile::tempdir().expect("tempdir");
            let (db, truth) = store(dir.path(), Some(kind), 1);
            let truth = truth.expect("a fault");
            let d = run(&db, None);
            let anomaly = d
                .anomaly
                .clone()
                .unwrap_or_else(|| panic!("{kind}: {d:#?}"));
            // The window overlaps the fault.
            assert!(
                anomaly.start < truth.end_ns && truth.start_ns < anomaly.end,
                "{kind}: {anomaly:?} vs {truth:?}"
            );
            let want = if kind == FaultKind::Latency {
                AnomalyKind::Latency
            } else {
                AnomalyKind::Errors
            };
            assert_eq!(anomaly.kind, want, "{kind}");
            let cause = d
                .root_cause
                .clone()
                .unwrap_or_else(|| panic!("{kind}: {d:#?}"));
            assert_eq!(
                (cause.service.as_str(), cause.operation.as_str()),
                (truth.service, truth.operation),
                "{kind}: {}",
                d.summary()
            );
            match (&cause.evidence, kind) {
                (Evidence::SelfTime(c), FaultKind::Latency) => assert!(!c.is_empty()),
                (Evidence::DeepestErrors(g), _) => assert!(!g.is_empty()),
                other => panic!("{kind}: {other:?}"),
            }
            // A service unreachable is found from its callers' failed calls.
            assert_eq!(cause.callee_inferred, kind == FaultKind::Down, "{kind}");
            assert!(!d.services.is_empty());
            let trace = d.example_trace.expect("an affected trace");
            assert!(!db.trace(trace).expect("lookup").is_empty());
            assert!(d.exemplar.is_some(), "{kind}");
            // Every step's SQL is there to show, in order.
            let steps: Vec<Step> = d.queries.iter().map(|q| q.step).collect();
            let mut want_steps = vec![Step::Symptom, Step::Services, Step::RootCause];
            if !cause.callee_inferred {
                want_steps.push(Step::RootCause); // compare
            }
            want_steps.extend([Step::ExampleTrace, Step::ExampleTrace]); // + critical path
            // The example trace's critical path: for a latency fault, the slow operation
            // holds most of it.
            let top = d.critical_path.first().expect("a critical path");
            assert!(top.share > 0.0 && top.share <= 1.0, "{kind}: {top:?}");
            if kind == FaultKind::Latency {
                assert_eq!(
                    (top.service.as_str(), top.operation.as_str()),
                    (truth.service, truth.operation),
                    "{kind}: {:#?}",
                    d.critical_path
                );
            }
            // compare: a failing operation's errors differ from its successes (the gRPC
            // status code of each failure); an unreachable callee has no spans to compare.
            if kind == FaultKind::Down {
                assert!(d.differences.is_empty());
            } else if kind != FaultKind::Latency {
                assert!(
                    d.differences.iter().all(|x| x.score >= 0.05),
                    "{kind}: {:#?}",
                    d.differences
                );
                assert!(!d.differences.is_empty(), "{kind}");
            }
            assert_eq!(
                steps,
                [
                    want_steps.as_slice(),
                    &[Step::Logs, Step::LogPatterns, Step::Exemplar]
                ]
                .concat(),
                "{kind}"
            );
            // The logs say it too: a template of the faulty service is new, surging or
            // gone during the anomaly.
            assert!(
                d.log_patterns.iter().any(|p| p.service == truth.service),
                "{kind}: {:#?}",
                d.log_patterns
            );
            assert!(
                d.summary()
                    .contains(&format!("{}/{}", truth.service, truth.operation))
            );

            // Looking only before the fault finds nothing, and says so.
            let before = run(
                &db,
                Some(TimeRange::new(i64::MIN, truth.start_ns - 10_000_000_000)),
            );
            assert!(before.anomaly.is_none(), "{kind}: {:#?}", before.anomaly);
            assert!(!before.buckets.is_empty());
            assert!(before.summary().starts_with("nothing found: no anomaly"));
            assert_eq!(before.queries.len(), 1);
            db.close().expect("close");
        }
    }

    #[test]
    fn an_empty_store_and_a_healthy_one_give_nothing_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let d = run(&db, None);
        assert!(d.buckets.is_empty() && d.anomaly.is_none() && d.root_cause.is_none());
        assert_eq!(
            d.summary(),
            "nothing found: no incoming requests (root SERVER spans) in the range"
        );
        db.close().expect("close");

        for seed in [1, 2] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (db, _) = store(dir.path(), None, seed);
            let d = run(&db, None);
            assert!(
                d.anomaly.is_none(),
                "seed {seed}: {}\n{:#?}",
                d.summary(),
                d.buckets
            );
            assert_eq!(d.buckets.len(), 6);
            db.close().expect("close");
        }
    }

    #[test]
    fn names_with_quotes_are_quoted_not_pasted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        // 60 s of requests to one service whose name and route hold quotes; half of them
        // fail from 20 s to 40 s, each failure with an error log.
        let base: u64 = 1_764_064_800_000_000_000;
        let (mut spans, mut logs) = (Vec::new(), Vec::new());
        for i in 0..300u64 {
            let start = base + i * 200_000_000;
            let failing = (100..200).contains(&i) && i % 2 == 0;
            let trace = format!("{:032x}", i + 1);
            let span = format!("{:016x}", i + 1);
            spans.push(serde_json::json!({
                "traceId": trace, "spanId": span, "name": "GET /it's", "kind": 2,
                "startTimeUnixNano": start.to_string(),
                "endTimeUnixNano": (start + 10_000_000 + (i % 7) * 1_000_000).to_string(),
                "status": {"code": if failing { 2 } else { 0 }},
            }));
            if failing {
                logs.push(serde_json::json!({
                    "timeUnixNano": (start + 1000).to_string(), "severityNumber": 17,
                    "severityText": "ERROR", "body": {"stringValue": "it's broken"},
                    "traceId": trace, "spanId": span,
                }));
            }
        }
        let resource = serde_json::json!({"attributes": [
            {"key": "service.name", "value": {"stringValue": "o'brien"}}]});
        for doc in [
            serde_json::json!({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}),
            serde_json::json!({"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": logs}]}]}),
        ] {
            let r = scrydb::otlp::decode_json(doc.to_string().as_bytes()).expect("decodes");
            assert_eq!(db.ingest_otlp(&r).expect("ingest").rejected, 0);
        }
        let opts = DiagnoseOptions::default().latency_metric("it's.duration");
        let session = db.session().expect("session");
        let d = diagnose::diagnose_blocking(session, None, &opts).expect("diagnosis");
        let a = d.anomaly.clone().expect("the failures stand out");
        assert_eq!(a.kind, AnomalyKind::Errors);
        assert_eq!(
            (a.start, a.end),
            (base as i64 + 20_000_000_000, base as i64 + 40_000_000_000)
        );
        assert_eq!(a.peak_error_rate, 0.5);
        let cause = d.root_cause.clone().expect("root cause");
        assert_eq!(
            (cause.service.as_str(), cause.operation.as_str()),
            ("o'brien", "GET /it's")
        );
        assert_eq!(d.services[0].service, "o'brien");
        assert!(d.example_trace.is_some());
        assert_eq!(d.logs.len(), 6);
        assert!(
            d.logs
                .iter()
                .all(|l| l.body == "it's broken" && l.service == "o'brien")
        );
        assert!(d.exemplar.is_none());
        let sql: Vec<&str> = d.queries_of(Step::Logs).collect();
        assert!(
            sql[0].contains("service_name = 'o''brien' AND name = 'GET /it''s'"),
            "{}",
            sql[0]
        );
        assert!(
            d.queries_of(Step::Exemplar)
                .any(|q| q.contains("'it''s.duration'"))
        );
        db.close().expect("close");
    }
}

/// `scry demo` never writes into an existing store: a non-empty `--db` is refused before
/// anything is written, and the store is left as it was.
#[test]
fn the_demo_refuses_a_store_that_is_not_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = scrydb::Db::open(dir.path(), scrydb::Options::default()).expect("open");
    db.append(
        scrydb::Signal::Logs,
        &crate::common::synth(scrydb::Signal::Logs, 1, 10, crate::common::BASE),
    )
    .expect("append");
    db.close().expect("close");
    let before = std::fs::read_dir(dir.path()).expect("dir").count();
    let (ok, out, err) = scry(&["--db", &dir.path().display().to_string(), "demo"]);
    assert!(!ok, "{out}{err}");
    assert!(err.contains("not empty"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(!out.contains("ingested"), "{out}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), before);
    let db = scrydb::Db::open(dir.path(), scrydb::Options::default()).expect("reopen");
    assert_eq!(
        db.snapshot().stats(scrydb::Signal::Spans).segment_rows,
        0,
        "the demo wrote into the store"
    );
    db.close().expect("close");
}

/// Without `--db` the demo keeps its store and says where, so the commands it prints can
/// be run after it exits.
#[test]
fn the_demo_without_db_keeps_the_store_its_commands_name() {
    let (ok, out, err) = scry(&["demo", "--seconds", "30", "--rate", "4"]);
    assert!(ok, "{out}{err}");
    let kept = out
        .lines()
        .find_map(|l| l.strip_prefix("the store is kept at "))
        .unwrap_or_else(|| panic!("the demo does not say where its store is:\n{out}"));
    let kept = std::path::PathBuf::from(kept.split(" (").next().expect("path"));
    let trace_cmd = out
        .lines()
        .find(|l| l.trim_start().starts_with("scry --db "))
        .unwrap_or_else(|| panic!("no runnable command printed:\n{out}"));
    assert!(
        trace_cmd.contains(&kept.display().to_string()),
        "{trace_cmd}"
    );
    assert!(
        kept.join("spans").is_dir(),
        "{} was deleted",
        kept.display()
    );
    let args: Vec<&str> = trace_cmd.split_whitespace().skip(1).collect();
    let (ok, out2, err2) = scry(&args);
    std::fs::remove_dir_all(&kept).expect("remove the kept store");
    assert!(ok, "{trace_cmd}: {out2}{err2}");
}
