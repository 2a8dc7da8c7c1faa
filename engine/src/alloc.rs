//! Process-wide tuning of the C allocator for programs that embed ScryDB. Opt-in: the
//! library never calls it; ScryDB's own binaries (`scry`, the benchmark harness) do.

/// Bytes of freed memory glibc's malloc keeps at the top of a heap before giving it back to
/// the kernel, once [`tune_allocator`] ran (glibc's default is 128 KiB).
pub const TRIM_THRESHOLD: usize = 64 * 1024 * 1024;

/// Tunes the C allocator for ScryDB's read pattern and returns whether it applied.
///
/// The Parquet reader creates zstd contexts for every column chunk it reads — a trace
/// lookup decodes about 40 — through the C allocator, and frees them together when the
/// read ends. With glibc's malloc those few megabytes sit at the top of the heap, are given
/// back to the kernel at once (`M_TRIM_THRESHOLD`) and fault in again on the next read.
/// This raises the threshold to [`TRIM_THRESHOLD`]: measured on the 10M-span harness store
/// (2 cores), a warm `Db::trace` went from 1.16–1.53 ms to 0.72–0.74 ms at the median.
/// The cost: up to that much freed memory stays mapped per malloc arena. Setting it
/// also stops glibc from adjusting its mmap threshold dynamically (allocations of 128 KiB
/// and more are then always mapped separately and returned when freed).
///
/// Applies to glibc on Linux only; elsewhere it does nothing and returns `false`. The same
/// effect without code: `GLIBC_TUNABLES=glibc.malloc.trim_threshold=67108864`.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
