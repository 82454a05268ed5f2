//! A partition log opened over arbitrary segment, index and leader-epoch files, as a broker
//! does after a crash. Opening may fail with an error; it may not panic, and a log recovered
//! from offset 0 must be readable batch by batch with valid CRCs and increasing offsets, take
//! a new append, and reopen cleanly where it was.
//!
//! Input: `[flags u8][recovery point u8]`, then files, each `[kind u8][base offset u16 BE]
//! [length u16 BE][bytes]` (the last one's bytes may be short). kind % 4: 0 `.log`,
//! 1 `.index`, 2 `.timeindex`, 3 `leader-epoch-checkpoint`. Flags bit 0: the log dir was
//! shut down cleanly (nothing is recovered; only no-panic is checked); bit 1: the harness
//! fixes the CRCs of the `.log` files' batches (so mutations get past the CRC check).
#![no_main]

use std::path::Path;

use kafka_protocol::records::Compression;
use libfuzzer_sys::fuzz_target;
use weir::config::TopicConfig;
use weir::storage::batch::{self, BatchHeader};
use weir::storage::leader_epoch::LeaderEpochFileCache;
use weir::storage::log::{LogLoadParams, PartitionLog, TopicPartition};

fn write_files(dir: &Path, mut data: &[u8], fix_crcs: bool) {
    while data.len() >= 5 {
        let kind = data[0] % 4;
        let base = u16::from_be_bytes([data[1], data[2]]) as i64;
        let len = u16::from_be_bytes([data[3], data[4]]) as usize;
        let body = &data[5..];
        let (bytes, rest) = body.split_at(len.min(body.len()));
        data = rest;
        let name = match kind {
            0 => format!("{base:020}.log"),
            1 => format!("{base:020}.index"),
            2 => format!("{base:020}.timeindex"),
            _ => LeaderEpochFileCache::FILE_NAME.to_string(),
        };
        let mut bytes = bytes.to_vec();
        if kind == 0 && fix_crcs {
            weir_fuzz::fix_crcs(&mut bytes);
        }
        std::fs::write(dir.join(name), bytes).expect("write a fuzzed file");
    }
}

fn config() -> TopicConfig {
    TopicConfig {
        // Small, so full indexes and rolls are reachable.
        segment_bytes: 64 * 1024,
        segment_index_bytes: 1024,
        index_interval_bytes: 64,
        ..TopicConfig::default()
    }
}

fn params(recovery_point: i64, clean_shutdown: bool) -> LogLoadParams {
    LogLoadParams {
        recovery_point,
        log_start_offset: -1,
        high_watermark: -1,
        clean_shutdown,
    }
}

/// Reads the whole log; every batch must be whole, CRC-valid and above the previous one.
fn check_readable(log: &PartitionLog) {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    assert!(offset <= end);
    while offset < end {
        let read = log
            .read(offset, 1 << 20, end, true)
            .expect("recovered log reads");
        if read.records.is_empty() {
            // Segment base offsets from file names may leave an empty stretch before the end.
            break;
        }
        let mut rest = &read.records[..];
        let mut first = true;
        while !rest.is_empty() {
            let header = BatchHeader::parse(rest).expect("a recovered batch header parses");
            assert!(
                header.total_size() <= rest.len(),
                "a recovered batch is whole"
            );
            let bytes = &rest[..header.total_size()];
            batch::verify_crc(bytes, &header).expect("a recovered batch has a valid CRC");
            assert!(
                header.last_offset() >= offset,
                "batch {}..={} below offset {offset}",
                header.base_offset,
                header.last_offset()
            );
            assert!(
                first || header.base_offset >= offset,
                "batch at {} after offset {offset}",
                header.base_offset
            );
            first = false;
            assert!(
                header.last_offset() < end,
                "batch past the log end offset {end}"
            );
            assert!(header.next_offset() > offset);
            offset = header.next_offset();
            rest = &rest[header.total_size()..];
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let clean = data[0] & 1 == 1;
    let recovery_point = data[1] as i64;
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("fuzz-0");
    std::fs::create_dir(&dir).expect("partition dir");
    write_files(&dir, &data[2..], data[0] & 2 == 2);
    let tp = TopicPartition::new("fuzz", 0);
    let config = config();
    let Ok(mut log) = PartitionLog::load(&dir, tp.clone(), &config, params(recovery_point, clean))
    else {
        return;
    };
    let _ = log.offset_for_timestamp(0);
    let _ = log.max_timestamp_and_offset();
    let _ = log.end_offset_for_epoch(0);
    if clean || recovery_point != 0 {
        // Kafka trusts what a clean shutdown or a recovery point vouches for: no checks.
        return;
    }
    check_readable(&log);
    let end = log.log_end_offset();
    let valid = batch::validate_client_batches(
        weir_fuzz::client_batch(2, Compression::None),
        1 << 20,
        false,
    )
    .expect("the client batch is valid");
    let epoch = log.latest_epoch().unwrap_or(0).max(0);
    let appended = log
        .append_as_leader(valid, epoch, 1_700_000_000_000)
        .expect("a recovered log takes an append");
    assert_eq!(appended.first_offset, end);
    let end = log.log_end_offset();
    check_readable(&log);
    log.close().expect("close");
    let reopened = PartitionLog::load(&dir, tp, &config, params(end, true)).expect("reopen");
    assert_eq!(reopened.log_end_offset(), end);
    check_readable(&reopened);
});
