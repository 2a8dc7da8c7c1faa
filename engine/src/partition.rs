//! Time partitions: which partition a row belongs to and how a partition's directory is
//! named.

use chrono::DateTime;

/// Start (inclusive, ns since the Unix epoch) of the partition of width `width_ns` that
/// holds `time_ns`. Rounds toward negative infinity, so times before 1970 are partitioned
/// like any other; saturates at the ends of the `i64` range.
pub fn partition_start(time_ns: i64, width_ns: i64) -> i64 {
    let start = i128::from(time_ns.div_euclid(width_ns)) * i128::from(width_ns);
    i64::try_from(start).unwrap_or(i64::MIN)
}

/// Directory name of the partition that starts at `start_ns`: its UTC start as
/// `YYYYMMDDTHHMMSSZ`, e.g. `20261125T200000Z`, which sorts in time order for years
/// 0..=9999. Times outside chrono's range fall back to `ns<start_ns>`.
pub fn partition_dir_name(start_ns: i64) -> String {
    let dt = DateTime::from_timestamp_nanos(start_ns);
    let year = chrono::Datelike::year(&dt);
    if (0..=9999).contains(&year) {
        dt.format("%Y%m%dT%H%M%SZ").to_string()
    } else {
        format!("ns{start_ns}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn rounds_down_including_before_the_epoch() {
        assert_eq!(partition_start(0, HOUR), 0);
        assert_eq!(partition_start(HOUR - 1, HOUR), 0);
        assert_eq!(partition_start(HOUR, HOUR), HOUR);
        assert_eq!(partition_start(-1, HOUR), -HOUR);
        assert_eq!(partition_start(i64::MIN, HOUR), i64::MIN);
        assert_eq!(partition_start(i64::MAX, HOUR), i64::MAX / HOUR * HOUR);
    }

    #[test]
    fn names_sort_in_time_order() {
        assert_eq!(partition_dir_name(0), "19700101T000000Z");
        assert_eq!(partition_dir_name(-HOUR), "19691231T230000Z");
        assert!(partition_dir_name(HOUR) > partition_dir_name(0));
    }
}
