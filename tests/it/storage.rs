//! Integration tests: storage. Real files in temp dirs: recovery from torn and corrupt data,
//! lost or garbage indexes, crashes between the steps of a roll, replication appends,
//! truncation, retention, checkpoints and the log manager. `model` holds the proptest model.

mod model;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use weir::config::TopicConfig;
use weir::storage::batch::verify_crc;
use weir::storage::log_manager::{
    CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
};
use weir::storage::{
    validate_client_batches, BatchHeader, LogAppendInfo, LogLoadParams, LogManager,
    OffsetCheckpointFile, PartitionLog, StorageError, TopicPartition,
};

/// A batch exactly as a client encodes it: `n` records with timestamps `ts, ts+1, ..`.
pub(crate) fn client_batch(n: usize, ts: i64, compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // offset - sequence constant keeps the encoder at one batch.
            sequence: i as i32 - 1,
            timestamp: ts + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}-{}", "x".repeat(i % 7)))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode a client batch");
    buf.freeze()
}

/// Small segments and indexes so a few batches exercise rolls and index entries.
pub(crate) fn small_config() -> TopicConfig {
    TopicConfig {
        segment_bytes: 2048,
        segment_index_bytes: 1024,
        index_interval_bytes: 200,
        retention_ms: -1,
        ..TopicConfig::default()
    }
}

fn tp() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

fn open(dir: &Path, config: &TopicConfig, recovery_point: i64, clean: bool) -> PartitionLog {
    PartitionLog::open(dir, tp(), config, recovery_point, clean).expect("open the log")
}

pub(crate) fn produce(log: &mut PartitionLog, n: usize, ts: i64, epoch: i32) -> LogAppendInfo {
    let v = validate_client_batches(client_batch(n, ts, Compression::None), 1 << 20, false)
        .expect("valid client batch");
    log.append_as_leader(v, epoch, ts).expect("append")
}

/// Every stored batch from the log start to the log end, each checked for a valid CRC.
pub(crate) fn read_all(log: &PartitionLog) -> Vec<(BatchHeader, Bytes)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        assert!(
            !data.records.is_empty(),
            "empty read at {offset} below the log end"
        );
        let mut at = 0;
        while at < data.records.len() {
            let h = BatchHeader::parse(&data.records[at..]).expect("stored header");
            let bytes = data.records.slice(at..at + h.total_size());
            verify_crc(&bytes, &h).expect("served batches have valid CRCs");
            offset = h.next_offset();
            at += h.total_size();
            out.push((h, bytes));
        }
    }
    out
}

fn log_file(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// Drops the log without closing it: indexes stay untrimmed, nothing is flushed, no marker.
fn crash(log: PartitionLog) {
    drop(log);
}

#[test]
fn torn_last_batch_at_every_byte_position_is_cut_and_the_rest_kept() {
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("orders-0");
    let mut log = open(&dir, &small_config(), 0, false);
    let mut ends = vec![(0usize, 0i64)];
    for i in 0..4 {
        let info = produce(&mut log, 2 + i, 1_000 + i as i64, 0);
        ends.push((log.size_in_bytes() as usize, info.last_offset + 1));
    }
    crash(log);
    let bytes = fs::read(log_file(&dir, 0, "log")).unwrap();
    assert_eq!(bytes.len(), ends.last().unwrap().0);

    for cut in 0..=bytes.len() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("orders-0");
        fs::create_dir_all(&d).unwrap();
        fs::write(log_file(&d, 0, "log"), &bytes[..cut]).unwrap();
        let (kept_bytes, leo) = *ends.iter().rev().find(|(end, _)| *end <= cut).unwrap();

        let mut log = open(&d, &small_config(), 0, false);
        assert_eq!(log.log_end_offset(), leo, "cut at byte {cut}");
        assert_eq!(
            log.size_in_bytes() as usize,
            kept_bytes,
            "cut at byte {cut}"
        );
        let served: Vec<u8> = read_all(&log)
            .into_iter()
            .flat_map(|(_, b)| b.to_vec())
            .collect();
        assert_eq!(&served[..], &bytes[..kept_bytes], "cut at byte {cut}");
        assert_eq!(
            fs::metadata(log_file(&d, 0, "log")).unwrap().len() as usize,
            kept_bytes
        );
        // Offsets continue from what survived.
        assert_eq!(produce(&mut log, 1, 5_000, 0).first_offset, leo);
    }
}

#[test]
fn flipped_byte_mid_segment_truncates_from_the_bad_batch_and_drops_later_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let mut log = open(&dir, &small_config(), 0, false);
    while log.segment_count() < 3 {
        produce(&mut log, 4, 1_000, 0);
    }
    let bases = log.segment_base_offsets();
    let before = read_all(&log);
    crash(log);

    // Flip one byte in the records of the third batch of the first segment.
    let path = log_file(&dir, bases[0], "log");
    let mut bytes = fs::read(&path).unwrap();
    let third = before[2].0;
    let third_pos: usize = before[..2].iter().map(|(h, _)| h.total_size()).sum();
    bytes[third_pos + BatchHeader::SIZE + 5] ^= 0x5a;
    fs::write(&path, &bytes).unwrap();

    let log = open(&dir, &small_config(), 0, false);
    assert_eq!(log.log_end_offset(), third.base_offset);
    assert_eq!(log.segment_base_offsets(), vec![bases[0]]);
    for later in &bases[1..] {
        assert!(!log_file(&dir, *later, "log").exists());
    }
    let after = read_all(&log);
    assert_eq!(after.len(), 2);
    assert_eq!(after[..], before[..2]);
}

#[test]
fn recovery_scans_from_the_recovery_point_and_a_clean_shutdown_skips_it() {
    // Kafka's contract: data below the recovery point was flushed and is trusted; past it,
    // every batch is checked after an unclean shutdown.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let mut log = open(&dir, &small_config(), 0, false);
    for i in 0..5 {
        produce(&mut log, 3, 1_000 + i, 0);
    }
    let leo = log.log_end_offset();
    let batches = read_all(&log);
    log.close().unwrap();
    let path = log_file(&dir, 0, "log");
    let mut bytes = fs::read(&path).unwrap();
    let third_pos: usize = batches[..2].iter().map(|(h, _)| h.total_size()).sum();
    bytes[third_pos + BatchHeader::SIZE + 5] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let trusted = open(&dir, &small_config(), leo, true);
    assert_eq!(
        trusted.log_end_offset(),
        leo,
        "a clean shutdown is not re-scanned"
    );
    assert_eq!(trusted.recovery_point(), leo);
    drop(trusted);
    let recovered = open(&dir, &small_config(), 0, false);
    assert_eq!(recovered.log_end_offset(), batches[2].0.base_offset);
    assert_eq!(recovered.recovery_point(), 0);
}

#[test]
fn deleted_or_garbage_indexes_are_rebuilt_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let mut log = open(&dir, &small_config(), 0, false);
    while log.segment_count() < 3 {
        produce(&mut log, 5, 1_000, 0);
    }
    let bases = log.segment_base_offsets();
    let before = read_all(&log);
    log.close().unwrap();
    let index_of = |base: i64, ext: &str| fs::read(log_file(&dir, base, ext)).unwrap();
    let original: Vec<_> = bases
        .iter()
        .map(|b| (index_of(*b, "index"), index_of(*b, "timeindex")))
        .collect();
    assert!(
        !original[0].0.is_empty(),
        "closed segments have offset index entries"
    );

    for damage in ["delete", "garbage", "truncated"] {
        for base in &bases {
            for ext in ["index", "timeindex"] {
                let p = log_file(&dir, *base, ext);
                match damage {
                    "delete" => fs::remove_file(&p).unwrap(),
                    "garbage" => fs::write(&p, b"\x07garbage that is not an index").unwrap(),
                    _ => {
                        let b = fs::read(&p).unwrap();
                        fs::write(&p, &b[..b.len().saturating_sub(3)]).unwrap();
                    }
                }
            }
        }
        let log = open(&dir, &small_config(), i64::MAX, true);
        assert_eq!(read_all(&log), before, "after {damage}");
        for offset in log.log_start_offset()..log.log_end_offset() {
            let r = log.read(offset, 1, i64::MAX, true).unwrap();
            let h = BatchHeader::parse(&r.records).unwrap();
            assert!(h.base_offset <= offset && offset <= h.last_offset());
        }
        log.close().unwrap();
        for (base, (index, time)) in bases.iter().zip(&original) {
            assert_eq!(&index_of(*base, "index"), index, "{damage}: {base}.index");
            assert_eq!(
                &index_of(*base, "timeindex"),
                time,
                "{damage}: {base}.timeindex"
            );
        }
    }
}

#[test]
fn crash_between_the_steps_of_a_roll_loads_a_consistent_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let mut log = open(&dir, &small_config(), 0, false);
    while log.segment_count() < 2 {
        produce(&mut log, 5, 1_000, 0);
    }
    let old_base = log.segment_base_offsets()[0];
    let new_base = log.segment_base_offsets()[1];
    // Keep only the batches of the first segment: as if the crash came right at the roll.
    log.truncate_to(new_base).unwrap();
    let before = read_all(&log);
    let leo = log.log_end_offset();
    assert_eq!(leo, new_base);
    crash(log);

    // Step 1 done (old segment closed), step 2 not: no new segment files at all, and the
    // old segment's indexes as a crash mid-trim leaves them (preallocated length, zero tail).
    for ext in ["log", "index", "timeindex"] {
        let _ = fs::remove_file(log_file(&dir, new_base, ext));
    }
    let index = log_file(&dir, old_base, "index");
    fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(1024)
        .unwrap();
    let mut log = open(&dir, &small_config(), 0, false);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(read_all(&log), before);
    assert_eq!(produce(&mut log, 1, 2_000, 0).first_offset, leo);
    log.truncate_to(leo).unwrap();
    crash(log);

    // Step 2 half done: the new `.log` exists (empty) but its indexes do not.
    for ext in ["index", "timeindex"] {
        let _ = fs::remove_file(log_file(&dir, new_base, ext));
    }
    fs::write(log_file(&dir, new_base, "log"), b"").unwrap();
    let mut log = open(&dir, &small_config(), 0, false);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.segment_base_offsets(), vec![old_base, new_base]);
    assert_eq!(produce(&mut log, 1, 2_000, 0).first_offset, leo);
    crash(log);

    // Index files whose `.log` never got created are orphans and go.
    for ext in ["index", "timeindex"] {
        fs::write(log_file(&dir, 9_999, ext), vec![0u8; 64]).unwrap();
    }
    let log = open(&dir, &small_config(), 0, false);
    assert!(!log_file(&dir, 9_999, "index").exists());
    assert!(!log_file(&dir, 9_999, "timeindex").exists());
    assert_eq!(log.log_end_offset(), leo + 1);
}

#[test]
fn follower_stores_the_leaders_bytes_verbatim() {
    let tmp = tempfile::tempdir().unwrap();
    let mut leader = open(
        &tmp.path().join("leader").join("orders-0"),
        &small_config(),
        0,
        false,
    );
    let mut follower = open(
        &tmp.path().join("follower").join("orders-0"),
        &small_config(),
        0,
        false,
    );
    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let v = validate_client_batches(client_batch(3 + i, 1_000, codec), 1 << 20, false).unwrap();
        leader.append_as_leader(v, 2, 1_000).unwrap();
    }
    while follower.log_end_offset() < leader.log_end_offset() {
        let fetched = leader
            .read(follower.log_end_offset(), 300, i64::MAX, true)
            .unwrap();
        follower.append_as_follower(fetched.records).unwrap();
    }
    assert_eq!(read_all(&follower), read_all(&leader));
    assert_eq!(
        follower.end_offset_for_epoch(2),
        (2, leader.log_end_offset())
    );

    // Offsets below the log end are refused and change nothing.
    let again = leader.read(0, 1 << 20, i64::MAX, true).unwrap().records;
    let err = follower.append_as_follower(again).unwrap_err();
    assert!(matches!(err, StorageError::InvalidAppend(_)), "{err}");
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
}

#[test]
fn follower_batch_with_a_bad_crc_is_refused_before_it_touches_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut leader = open(
        &tmp.path().join("a").join("orders-0"),
        &small_config(),
        0,
        false,
    );
    let mut follower = open(
        &tmp.path().join("b").join("orders-0"),
        &small_config(),
        0,
        false,
    );
    produce(&mut leader, 3, 1_000, 0);
    let good = leader.read(0, 1 << 20, i64::MAX, true).unwrap().records;
    let mut bad = BytesMut::from(&good[..]);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = follower.append_as_follower(bad.freeze()).unwrap_err();
    assert_eq!(err.kafka_code(), 2);
    assert_eq!(follower.size_in_bytes(), 0);
    assert_eq!(follower.log_end_offset(), 0);
}

#[test]
fn client_batch_failing_its_crc_is_refused_with_corrupt_message() {
    let mut bytes = BytesMut::from(&client_batch(3, 0, Compression::Lz4)[..]);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    let err = validate_client_batches(bytes.freeze(), 1 << 20, false).unwrap_err();
    assert_eq!(err.kafka_code(), 2, "CORRUPT_MESSAGE");
}

#[test]
fn truncation_removes_later_offsets_and_appends_continue_from_there() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let config = TopicConfig {
        segment_bytes: 512,
        ..small_config()
    };
    let mut log = open(&dir, &config, 0, false);
    for epoch in 0..3 {
        for _ in 0..8 {
            produce(&mut log, 4, 1_000, epoch);
        }
    }
    let segments_before = log.segment_count();
    assert!(segments_before > 3);
    let (_, epoch1_end) = log.end_offset_for_epoch(1);
    log.truncate_to(epoch1_end).unwrap();
    assert_eq!(log.log_end_offset(), epoch1_end);
    assert!(log.segment_count() < segments_before);
    assert_eq!(log.leader_epoch_cache().latest_epoch(), Some(1));
    let info = produce(&mut log, 2, 2_000, 5);
    assert_eq!(info.first_offset, epoch1_end);
    assert_eq!(log.end_offset_for_epoch(1), (1, epoch1_end));
    let all = read_all(&log);
    assert_eq!(all.last().unwrap().0.partition_leader_epoch, 5);

    log.truncate_fully_and_start_at(500).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
    assert_eq!(produce(&mut log, 1, 3_000, 6).first_offset, 500);
    assert!(log_file(&dir, 500, "log").exists());
}

#[test]
fn delete_records_moves_the_log_start_within_the_high_water_mark() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let mut log = open(&dir, &small_config(), 0, false);
    while log.segment_count() < 4 {
        produce(&mut log, 4, 1_000, 0);
    }
    let bases = log.segment_base_offsets();
    let err = log.delete_records_before(5).unwrap_err();
    assert_eq!(err.kafka_code(), 1, "above the high-water mark (still 0)");
    log.update_high_watermark(log.log_end_offset());
    let target = bases[2] + 1;
    assert_eq!(log.delete_records_before(target).unwrap(), target);
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(log.segment_base_offsets()[0], bases[2]);
    assert!(!log_file(&dir, bases[0], "log").exists());
    let err = log.read(target - 1, 100, i64::MAX, true).unwrap_err();
    assert!(
        matches!(err, StorageError::OffsetOutOfRange { .. }),
        "{err}"
    );
    let first = log.read(target, 1 << 20, i64::MAX, true).unwrap();
    let h = BatchHeader::parse(&first.records).unwrap();
    assert!(h.base_offset <= target && target <= h.last_offset());
}

#[test]
fn retention_bytes_deletes_the_oldest_segments_below_the_high_water_mark() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let mut config = small_config();
    let mut log = open(&dir, &config, 0, false);
    while log.segment_count() < 6 {
        produce(&mut log, 4, 1_000, 0);
    }
    let retention = 2 * 2048;
    config.retention_bytes = retention;
    log.update_config(&config);
    assert_eq!(
        log.apply_retention(10_000).unwrap(),
        0,
        "nothing is committed yet"
    );

    // Kafka's rule: drop the oldest segments while the excess still covers a whole one.
    let sizes: Vec<i64> = log
        .segment_base_offsets()
        .iter()
        .map(|b| fs::metadata(log_file(&dir, *b, "log")).unwrap().len() as i64)
        .collect();
    let mut excess = sizes.iter().sum::<i64>() - retention;
    let expected = sizes
        .iter()
        .take_while(|s| {
            let go = excess - **s >= 0;
            if go {
                excess -= **s;
            }
            go
        })
        .count();
    assert!(expected >= 2, "the test needs real deletions ({expected})");
    let bases = log.segment_base_offsets();
    log.update_high_watermark(log.log_end_offset());
    assert_eq!(log.apply_retention(10_000).unwrap(), expected);
    assert_eq!(log.segment_base_offsets(), bases[expected..].to_vec());
    assert_eq!(log.log_start_offset(), bases[expected]);
    for gone in &bases[..expected] {
        assert!(!log_file(&dir, *gone, "log").exists());
    }
    read_all(&log);
}

#[test]
fn retention_ms_deletes_segments_whose_newest_record_is_too_old() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let mut config = small_config();
    config.retention_ms = 60_000;
    config.segment_ms = 100_000;
    let mut log = open(&dir, &config, 0, false);
    // Old data in the first segments, recent data after a roll.
    while log.segment_count() < 3 {
        produce(&mut log, 4, 1_000, 0);
    }
    let recent = 1_000_000;
    log.maybe_roll(recent).unwrap();
    produce(&mut log, 4, recent, 0);
    log.update_high_watermark(log.log_end_offset());
    let old_segments = log.segment_count() - 1;
    assert_eq!(log.apply_retention(recent + 1).unwrap(), old_segments);
    assert_eq!(log.segment_count(), 1);
    let all = read_all(&log);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0.max_timestamp, recent + 3);

    // When every segment has expired, a new empty segment is rolled so the log keeps its end.
    let leo = log.log_end_offset();
    assert_eq!(log.apply_retention(recent + 120_000).unwrap(), 1);
    assert_eq!(log.segment_base_offsets(), vec![leo]);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (leo, leo));
    assert_eq!(produce(&mut log, 1, recent, 0).first_offset, leo);
}

#[test]
fn appends_roll_a_segment_once_record_time_passes_segment_ms() {
    // Kafka's rule: a segment's age is measured from its first batch's max timestamp to the
    // new batch's, so replayed old data rolls exactly as it did the first time.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let config = TopicConfig {
        segment_ms: 1_000,
        retention_ms: -1,
        ..TopicConfig::default()
    };
    let mut log = open(&dir, &config, 0, false);
    produce(&mut log, 2, 10_000, 0); // max timestamp 10 001
    produce(&mut log, 2, 10_999, 0); // 11 000: 999 ms after it, not more than segment.ms
    assert_eq!(log.segment_base_offsets(), vec![0]);
    produce(&mut log, 2, 11_001, 0); // 11 002: 1 001 ms after the first batch
    assert_eq!(log.segment_base_offsets(), vec![0, 4]);
    produce(&mut log, 2, 11_500, 0);
    assert_eq!(log.segment_base_offsets(), vec![0, 4]);
    let h = read_all(&log);
    assert_eq!(h.len(), 4);
    assert!(log_file(&dir, 4, "log").exists());
    // The closed segment's indexes were trimmed at the roll.
    assert_eq!(fs::metadata(log_file(&dir, 0, "index")).unwrap().len(), 0);
    assert_eq!(
        fs::metadata(log_file(&dir, 0, "timeindex")).unwrap().len(),
        12
    );
}

#[test]
fn offset_for_timestamp_uses_the_time_index_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("orders-0"), &small_config(), 0, false);
    for i in 0..60i64 {
        produce(&mut log, 3, 10_000 + 100 * i, 0);
    }
    assert!(log.segment_count() > 2);
    // Batch i holds offsets 3i..3i+2 with timestamps 10000+100i, +1, +2.
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 10_000)));
    assert_eq!(log.offset_for_timestamp(10_001).unwrap(), Some((1, 10_001)));
    assert_eq!(
        log.offset_for_timestamp(11_250).unwrap(),
        Some((39, 11_300))
    );
    assert_eq!(
        log.offset_for_timestamp(12_902).unwrap(),
        Some((89, 12_902))
    );
    assert_eq!(
        log.offset_for_timestamp(15_902).unwrap(),
        Some((179, 15_902))
    );
    assert_eq!(log.offset_for_timestamp(15_903).unwrap(), None);
    assert_eq!(log.max_timestamp_and_offset(), (15_902, 179));

    // A clean reopen trusts the closed time index; an unclean one scans; both agree.
    let dir = log.dir().to_path_buf();
    log.close().unwrap();
    for clean in [true, false] {
        let log = open(&dir, &small_config(), 0, clean);
        assert_eq!(
            log.max_timestamp_and_offset(),
            (15_902, 179),
            "clean: {clean}"
        );
        assert_eq!(
            log.offset_for_timestamp(11_250).unwrap(),
            Some((39, 11_300))
        );
        if clean {
            log.close().unwrap();
        }
    }
}

#[test]
fn flush_messages_fsyncs_on_the_append_path_only_when_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("a-0"), &small_config(), 0, false);
    produce(&mut log, 2, 0, 0);
    assert_eq!(log.recovery_point(), 0, "Kafka's default: never");
    let config = TopicConfig {
        flush_messages: 1,
        ..small_config()
    };
    let mut log = open(&tmp.path().join("b-0"), &config, 0, false);
    produce(&mut log, 2, 0, 0);
    assert_eq!(log.recovery_point(), 2);
}

#[test]
fn flush_job_runs_elsewhere_and_moves_the_recovery_point() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(&tmp.path().join("orders-0"), &small_config(), 0, false);
    while log.segment_count() < 2 {
        produce(&mut log, 4, 1_000, 0);
    }
    assert!(log.needs_flush(0), "a roll asks for a flush");
    let job = log.flush_job().unwrap();
    std::thread::spawn({
        let job = job;
        move || {
            job.run().unwrap();
            job
        }
    })
    .join()
    .map(|job| log.flush_completed(&job, 1).unwrap())
    .unwrap();
    assert_eq!(log.recovery_point(), log.log_end_offset());
    assert!(!log.needs_flush(1));
}

#[test]
fn leader_epochs_are_checkpointed_and_rebuilt_when_the_checkpoint_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let mut log = open(&dir, &small_config(), 0, false);
    produce(&mut log, 2, 0, 0);
    produce(&mut log, 2, 0, 3);
    produce(&mut log, 2, 0, 7);
    log.close().unwrap();
    let path = dir.join("leader-epoch-checkpoint");
    assert_eq!(fs::read_to_string(&path).unwrap(), "0\n3\n0 0\n3 2\n7 4\n");
    fs::write(&path, "0\n9\nnot a checkpoint\n").unwrap();
    let mut log = open(&dir, &small_config(), 0, true);
    let entries: Vec<_> = log
        .leader_epoch_cache()
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect();
    assert_eq!(entries, vec![(0, 0), (3, 2), (7, 4)]);
    assert_eq!(fs::read_to_string(&path).unwrap(), "0\n3\n0 0\n3 2\n7 4\n");
}

#[test]
fn log_manager_restarts_cleanly_and_recovers_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = vec![tmp.path().join("d1"), tmp.path().join("d2")];
    let config = small_config();
    let (mut manager, logs) = LogManager::open(&dirs, 1, Some("cluster-a"), &config).unwrap();
    assert!(logs.is_empty());
    let mut logs: Vec<PartitionLog> = (0..4)
        .map(|p| {
            manager
                .create_log(&TopicPartition::new("t", p), &config)
                .unwrap()
        })
        .collect();
    for (i, log) in logs.iter_mut().enumerate() {
        for _ in 0..=i {
            produce(log, 3, 1_000, 0);
        }
        log.update_high_watermark(log.log_end_offset());
    }
    let ends: HashMap<TopicPartition, i64> = logs
        .iter()
        .map(|l| (l.topic_partition().clone(), l.log_end_offset()))
        .collect();

    // Clean shutdown: close logs, checkpoints, marker.
    for log in logs {
        log.close().unwrap();
    }
    manager
        .write_checkpoints(&ends, &ends, &HashMap::new())
        .unwrap();
    manager.mark_clean_shutdown().unwrap();
    for d in &dirs {
        assert!(d.join(CLEAN_SHUTDOWN_FILE).exists());
        assert_eq!(
            fs::read_to_string(d.join(RECOVERY_POINT_CHECKPOINT))
                .unwrap()
                .lines()
                .nth(1),
            Some("2"),
            "two partitions per dir"
        );
    }
    drop(manager);

    let (manager, logs) = LogManager::open(&dirs, 1, Some("cluster-a"), &config).unwrap();
    assert_eq!(logs.len(), 4);
    for log in &logs {
        let tp = log.topic_partition();
        assert_eq!(log.log_end_offset(), ends[tp], "{tp}");
        assert_eq!(log.recovery_point(), ends[tp], "{tp}");
        assert_eq!(log.high_watermark(), ends[tp], "{tp}");
        assert!(manager.log_dir_of(tp).is_some());
    }
    for d in &dirs {
        assert!(
            !d.join(CLEAN_SHUTDOWN_FILE).exists(),
            "the marker is consumed"
        );
    }

    // Crash: a torn tail on one partition, no marker.
    let victim = logs
        .iter()
        .find(|l| l.topic_partition().partition == 3)
        .unwrap();
    let victim_dir = victim.dir().to_path_buf();
    let victim_tp = victim.topic_partition().clone();
    drop(logs);
    drop(manager);
    let seg = log_file(&victim_dir, 0, "log");
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    // The recovery checkpoint written above still says the partition was flushed to its end;
    // scrub it as a crash before the flush would have left it.
    let placement_dir = victim_dir.parent().unwrap();
    let mut recovery =
        OffsetCheckpointFile::read(&placement_dir.join(RECOVERY_POINT_CHECKPOINT)).unwrap();
    recovery.insert(victim_tp.clone(), 0);
    OffsetCheckpointFile::write(&placement_dir.join(RECOVERY_POINT_CHECKPOINT), &recovery).unwrap();

    let (_manager, logs) = LogManager::open(&dirs, 1, Some("cluster-a"), &config).unwrap();
    let victim = logs
        .iter()
        .find(|l| l.topic_partition() == &victim_tp)
        .unwrap();
    assert_eq!(
        victim.log_end_offset(),
        ends[&victim_tp] - 3,
        "the torn last batch is gone"
    );
    assert_eq!(victim.high_watermark(), victim.log_end_offset());
    read_all(victim);
    assert!(placement_dir.join(REPLICATION_OFFSET_CHECKPOINT).exists());
    assert!(placement_dir.join(LOG_START_OFFSET_CHECKPOINT).exists());
}

#[test]
fn load_restores_a_log_start_offset_moved_by_delete_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let mut log = open(&dir, &small_config(), 0, false);
    for _ in 0..5 {
        produce(&mut log, 3, 1_000, 0);
    }
    log.update_high_watermark(log.log_end_offset());
    log.delete_records_before(4).unwrap();
    log.close().unwrap();
    let params = LogLoadParams {
        recovery_point: 15,
        log_start_offset: 4,
        high_watermark: 15,
        clean_shutdown: true,
    };
    let log = PartitionLog::load(&dir, tp(), &small_config(), params).unwrap();
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(log.high_watermark(), 15);
}
