//! Mutation fuzzing on stable Rust (cargo-fuzz needs a nightly toolchain, which this
//! project's machines do not have): every parser of outside or on-disk bytes gets inputs
//! made by mutating the checked-in seeds — flipped bits, overwritten, deleted, inserted and
//! duplicated runs, truncations, splices of two seeds — and must return a value or an error,
//! never panic. A panicking input is written to `target/fuzz-crashes/` and named in the
//! failure; it then belongs in a regression test.
//!
//! Targets and seeds (all in `tests/fixtures/`): OTLP protobuf decode + convert (`otlp/*.binpb`),
//! OTLP/JSON decode + convert (`otlp/*.json`), log replay (`v1/db/wal/*.wal`), manifest
//! decode (`v1/db/MANIFEST-*`), trace-index open + lookups (`v1/db/*/*/*.tidx`).
//!
//! CI runs each target for `SCRY_FUZZ_SECONDS` (default 2) seconds; run longer with e.g.
//! `SCRY_FUZZ_SECONDS=600 cargo test --test it fuzz -- --nocapture`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scrydb::io::StdFs;
use scrydb::{Signal, WalRecovery, otlp};
use scrydb_workload::Rng;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The files under `dir` whose name ends with `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = crate::common::files_under(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    out.sort();
    out
}

fn seeds(dir: &str, ext: &str) -> Vec<Vec<u8>> {
    let s: Vec<Vec<u8>> = files(&fixtures().join(dir), ext)
        .iter()
        .map(|p| std::fs::read(p).expect("seed"))
        .collect();
    assert!(!s.is_empty(), "no seeds for {dir}/*{ext}");
    s
}

/// One mutation of `input` (with `other` for splices).
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = v.len() as u64;
        let at = if len == 0 { 0 } else { rng.below(len) as usize };
        match rng.below(8) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.below(8),
            1 if !v.is_empty() => v[at] = rng.below(256) as u8,
            2 if !v.is_empty() => {
                let n = (1 + rng.below(16) as usize).min(v.len() - at);
                v.drain(at..at + n);
            }
            3 => {
                let n = 1 + rng.below(16) as usize;
                let bytes: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
                v.splice(at..at, bytes);
            }
            4 if !v.is_empty() => {
                let n = (1 + rng.below(64) as usize).min(v.len() - at);
                let run = v[at..at + n].to_vec();
                v.splice(at..at, run);
            }
            5 => v.truncate(at),
            6 if !other.is_empty() => {
                let from = rng.below(other.len() as u64) as usize;
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            // Interesting values where lengths and counts live.
            _ if v.len() >= 4 => {
                let at = at.min(v.len() - 4);
                let val: u32 =
                    [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, u32::MAX][rng.below(8) as usize];
                v[at..at + 4].copy_from_slice(&val.to_le_bytes());
            }
            _ => {}
        }
    }
    v
}

/// Runs `target` on mutations of `seeds` for the time budget; fails naming every input that
/// panicked.
fn fuzz(name: &str, seeds: &[Vec<u8>], target: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let secs: f64 = std::env::var("SCRY_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut rng = Rng::new(0x5c27_0000 ^ name.len() as u64);
    let mut crashes = Vec::new();
    let mut runs = 0u64;
    // The seeds themselves first. (A panic prints its message as usual: it is a failure.)
    let mut inputs: Vec<Vec<u8>> = seeds.to_vec();
    while Instant::now() < deadline || !inputs.is_empty() {
        let input = inputs.pop().unwrap_or_else(|| {
            let a = &seeds[rng.below(seeds.len() as u64) as usize];
            let b = &seeds[rng.below(seeds.len() as u64) as usize];
            mutate(&mut rng, a, b)
        });
        runs += 1;
        if std::panic::catch_unwind(|| target(&input)).is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{name}-{runs}.bin"));
            let _ = std::fs::write(&path, &input);
            crashes.push(path);
            if crashes.len() >= 5 {
                break;
            }
        }
    }
    eprintln!(
        "fuzz {name}: {runs} inputs in {secs} s, {} seeds",
        seeds.len()
    );
    assert!(
        crashes.is_empty(),
        "fuzz {name}: inputs that panic: {crashes:?}"
    );
}

#[test]
fn fuzz_otlp_protobuf() {
    fuzz("otlp-protobuf", &seeds("otlp", ".binpb"), |b| {
        for hint in [
            None,
            Some(Signal::Spans),
            Some(Signal::Logs),
            Some(Signal::Metrics),
        ] {
            if let Ok(r) = otlp::decode_protobuf(b, hint) {
                let c = r.convert();
                assert!(c.batch.num_rows() as u64 + c.rejected >= c.errors.len() as u64);
            }
        }
    });
}

#[test]
fn fuzz_otlp_json() {
    fuzz("otlp-json", &seeds("otlp", ".json"), |b| {
        if let Ok(r) = otlp::decode_json(b) {
            let _ = r.convert();
        }
    });
}

#[test]
fn fuzz_wal_replay() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let name = files(&fixtures().join("v1/db/wal"), ".wal")[0]
        .file_name()
        .expect("name")
        .to_owned();
    let path = tmp.path().join(&name);
    fuzz("wal-replay", &seeds("v1/db/wal", ".wal"), |b| {
        std::fs::write(&path, b).expect("write");
        for mode in [
            WalRecovery::TolerateTornTail,
            WalRecovery::TruncateAtCorruption,
        ] {
            let _ = scrydb::wal::reader::replay(&StdFs, tmp.path(), 1, mode, true, |_, batch| {
                assert!(batch.num_rows() > 0 || batch.num_columns() > 0);
                Ok(())
            });
        }
    });
}

#[test]
fn fuzz_manifest_decode() {
    let path = fixtures().join("v1/db/MANIFEST-00000000000000000002");
    fuzz(
        "manifest",
        &seeds("v1/db", "MANIFEST-00000000000000000002"),
        |b| {
            let _ = scrydb::manifest::decode(&path, b);
        },
    );
}

#[test]
fn fuzz_trace_index_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("x.tidx");
    let ids: Vec<[u8; 16]> = vec![[0; 16], [0xff; 16], *b"0123456789abcdef"];
    fuzz("trace-index", &seeds("v1/db", ".tidx"), |b| {
        std::fs::write(&path, b).expect("write");
        for signal in Signal::ALL {
            if let Ok(ix) = scrydb::index::SegmentIndex::open(&StdFs, &path, signal, 1000) {
                for id in &ids {
                    let _ = ix.may_contain(id);
                    let _ = ix.rows(id);
                }
            }
        }
    });
}
