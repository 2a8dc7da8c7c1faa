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
