//! # scrydb-workload
//!
//! Telemetry generators for ScryDB's demo, benchmarks and tests. Every generator is
//! deterministic: the same seed and options give the same data.
//!
//! - [`synth`]: Arrow batches of the `spans`, `logs` and `metrics` tables with every column
//!   populated (coverage and speed, no realism);
//! - [`system`]: a twelve-service shop emitting OTLP traces, logs and metrics, with an
//!   optional injected fault whose ground truth is recorded (the `scry demo` story);
//! - [`logtext`]: log lines in the style of web, HDFS, SSH, kernel and application logs,
//!   each with its ground-truth template;
//! - [`otlp`]: OTLP requests shaped like real instrumentation output, for decode benchmarks.
//!
//! It is not part of the storage engine: `scrydb-engine` uses it only in its tests and
//! examples, and the `scrydb` facade only for its command-line tool.
//!
//! ```
//! use scrydb_workload::synth::{Rng, spans};
//! let batch = spans(&mut Rng::new(42), 100, scrydb_workload::BASE_NS);
//! assert_eq!(batch.num_rows(), 100);
//! ```

mod proto;
mod rng;

pub mod logtext;
pub mod otlp;
pub mod synth;
pub mod system;

pub use rng::Rng;
pub use system::{Chunk, Fault, FaultKind, Workload, WorkloadOptions};

/// A fixed base time for generated data: 2025-11-25T00:00:00Z, in ns since the epoch.
pub const BASE_NS: i64 = 1_764_028_800_000_000_000;
