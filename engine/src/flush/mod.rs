//! The background flush: frozen memtables become segments and a new manifest.
//!
//! One manager thread (`scry-flush`) takes frozen memtables in order from a bounded
//! channel, cuts each into (signal, partition) jobs and hands them to worker threads
//! (`scry-flush-0`, ...), which sort and encode segments in parallel. When every job of a
//! memtable is written, the manager publishes a new manifest, swaps it into the read state
//! together with the removal of the frozen memtable (so a snapshot sees each row exactly
//! once), then removes the log files the memtable covered. The manager is the only writer of
//! manifests.

pub mod manager;
pub mod worker;
