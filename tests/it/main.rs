//! Integration tests of the whole engine, compiled into one binary.

mod common;
mod concurrency;
mod crash;
mod failstop;
mod partitions;
mod recovery;
mod roundtrip;
mod validation;
