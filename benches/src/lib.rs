//! ScryDB's benchmarks: the criterion benches of each component live in `benches/benches/`
//! (`cargo bench -p scrydb-benches`); [`harness`] runs a whole workload through ScryDB and
//! DuckDB side by side (`cargo run --release -p scrydb-benches --bin scry-bench`). Their data
//! comes from `scrydb-workload`.

pub mod agent_bench;
pub mod analysis_bench;
pub mod harness;
pub mod remote_bench;
pub mod search_bench;
pub mod ui_bench;
