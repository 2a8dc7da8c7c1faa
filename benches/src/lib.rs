//! ScryDB's benchmarks: the criterion benches live in `benches/benches/`; their data comes
//! from `scrydb-workload`.
