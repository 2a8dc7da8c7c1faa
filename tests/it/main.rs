//! Integration tests of the whole engine, compiled into one binary.

mod common;
mod compaction;
mod concurrency;
mod corruption;
mod crash;
mod demo;
mod duckdb;
mod failstop;
mod fixture;
mod follow;
mod fuzz;
mod ingest;
mod otlp;
mod partitions;
mod powercut;
mod recovery;
mod retention;
mod rollups;
mod roundtrip;
mod search;
mod serve;
mod sql_limits;
mod sql_reads;
mod thin;
mod trace;
mod validation;
