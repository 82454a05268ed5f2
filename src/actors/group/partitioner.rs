//! Which `__consumer_offsets` partition owns a group: Kafka's
//! `Utils.abs(groupId.hashCode) % offsets.topic.num.partitions`, bit for bit, so that
//! FindCoordinator names the same broker a Kafka cluster with the same leaders would.

/// Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units, with
/// `int` overflow wrapping. Characters outside the BMP count as two code units (a surrogate
/// pair), exactly as Java stores them.
pub fn java_string_hash_code(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Kafka's `Utils.abs`: `n & 0x7fffffff`, not `i32::abs`, so `i32::MIN` maps to 0 rather than
/// overflowing.
pub fn kafka_abs(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The `__consumer_offsets` partition that stores `group_id`'s offsets and metadata.
/// `num_partitions` is `offsets.topic.num.partitions` (must be positive; a non-positive count
/// is treated as 1 so that bad configuration cannot divide by zero).
pub fn partition_for(group_id: &str, num_partitions: i32) -> i32 {
    kafka_abs(java_string_hash_code(group_id)) % num_partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected hash codes follow Java's definition by hand: "a" = 97; "hello" = 99162322 (the
    // value every Java runtime prints); "polygenelubricants" is the well-known string whose
    // hashCode is Integer.MIN_VALUE.
    #[test]
    fn hash_code_matches_java_string_hash_code() {
        assert_eq!(java_string_hash_code(""), 0);
        assert_eq!(java_string_hash_code("a"), 97);
        assert_eq!(java_string_hash_code("ab"), 97 * 31 + 98);
        assert_eq!(java_string_hash_code("hello"), 99_162_322);
        assert_eq!(java_string_hash_code("my-group"), -1_906_497_762);
        assert_eq!(java_string_hash_code("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn hash_code_counts_utf16_code_units_like_java() {
        // 'ü' and 'ß' are single BMP code units.
        assert_eq!(java_string_hash_code("grüße"), 98_768_023);
        // U+1F600 is the surrogate pair D83D DE00: 0xD83D * 31 + 0xDE00.
        assert_eq!(java_string_hash_code("😀"), 0xD83D * 31 + 0xDE00);
        assert_eq!(java_string_hash_code("😀"), 1_772_899);
    }

    #[test]
    fn partition_for_uses_kafka_abs_and_modulo() {
        assert_eq!(partition_for("hello", 50), 22);
        assert_eq!(partition_for("my-group", 50), 36);
        assert_eq!(partition_for("test-consumer-group", 50), 17);
        // i32::MIN & 0x7fffffff == 0: Kafka's Utils.abs, where i32::abs would overflow.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("", 50), 0);
    }

    #[test]
    fn partition_for_tolerates_a_non_positive_partition_count() {
        assert_eq!(partition_for("hello", 0), 0);
        assert_eq!(partition_for("hello", -3), 0);
    }
}
