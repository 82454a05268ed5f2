//! Cleans of real logs in temp dirs: prepare on the log, clean, swap, read back; and a crash
//! at every step of the swap followed by a reopen.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use super::swap::SwapOutcome;
use super::*;
use crate::config::TopicConfig;
use crate::storage::batch::tests::records_batch;
use crate::storage::batch::validate_client_batches;
use crate::storage::log::PartitionLog;

/// `(offset, key, value)` as a consumer sees it.
pub(crate) type Seen = (i64, String, Option<String>);

pub(crate) fn compact_config() -> TopicConfig {
    TopicConfig {
        cleanup_policy: vec!["compact".into()],
        segment_bytes: 1024,
        segment_index_bytes: 1024,
        index_interval_bytes: 128,
        retention_ms: -1,
        ..TopicConfig::default()
    }
}

pub(crate) fn io() -> CleanerIo {
    CleanerIo {
        io_buffer_bytes: 4096,
        max_io_bytes_per_second: f64::MAX,
    }
}

pub(crate) fn open(dir: &Path, config: &TopicConfig) -> PartitionLog {
    PartitionLog::open(
        &dir.join("t-0"),
        TopicPartition::new("t", 0),
        config,
        0,
        false,
    )
    .unwrap()
}

fn batch_of(
    records: &[(String, Option<String>)],
    producer: Option<(i64, i32)>,
    compression: Compression,
) -> Bytes {
    let records: Vec<_> = records
        .iter()
        .map(|(k, v)| (Some(k.as_str()), v.as_deref()))
        .collect();
    records_batch(
        &records,
        1_000,
        producer.map(|(id, seq)| (id, 0, seq)),
        compression,
    )
}

pub(crate) fn append(
    log: &mut PartitionLog,
    records: &[(String, Option<String>)],
    compression: Compression,
) {
    let v = validate_client_batches(batch_of(records, None, compression), 1 << 20, true).unwrap();
    log.append_as_leader(v, 0, 1_000).unwrap();
    let end = log.log_end_offset();
    log.update_high_watermark(end);
}

/// `rounds` batches of `per_batch` records cycling over `keys` keys; values name the round.
pub(crate) fn fill(log: &mut PartitionLog, rounds: usize, per_batch: usize, keys: usize) {
    let mut n = 0;
    for round in 0..rounds {
        let records: Vec<_> = (0..per_batch)
            .map(|_| {
                n += 1;
                (
                    format!("k{}", (n - 1) % keys),
                    Some(format!("v{}-r{round}", n - 1)),
                )
            })
            .collect();
        append(log, &records, Compression::None);
    }
}

/// Every record from the log start to its end, with offsets.
pub(crate) fn read_all(log: &PartitionLog) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log
            .read(offset, 1 << 20, log.log_end_offset(), true)
            .unwrap();
        if read.records.is_empty() {
            break;
        }
        let mut buf = read.records.clone();
        let mut next = offset;
        let mut pos = 0;
        while pos < read.records.len() {
            let h = BatchHeader::parse(&read.records[pos..]).unwrap();
            next = h.next_offset();
            pos += h.total_size();
        }
        for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
            for r in set.records {
                out.push((
                    r.offset,
                    String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                    r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                ));
            }
        }
        offset = next;
    }
    out
}

/// The latest record per key, in offset order: what a fully compacted log must hold (below
/// the part a clean may not touch).
pub(crate) fn latest_per_key(records: &[Seen]) -> Vec<Seen> {
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (o, k, _) in records {
        last.insert(k, *o);
    }
    records
        .iter()
        .filter(|(o, k, _)| last[k.as_str()] == *o)
        .cloned()
        .collect()
}

/// prepare → clean → swap, at `now`.
fn run_clean(
    log: &mut PartitionLog,
    map: &mut OffsetMap,
    now: i64,
) -> Option<(CleanedLog, SwapOutcome)> {
    let task = log.prepare_clean(now, HashMap::new()).unwrap()?;
    let cleaned = clean(&task, map, &io(), &AtomicBool::new(false)).unwrap();
    let outcome = log.replace_cleaned_segments(&cleaned).unwrap();
    Some((cleaned, outcome))
}

fn swapped(outcome: SwapOutcome) -> usize {
    match outcome {
        SwapOutcome::Swapped {
            segments, deleted, ..
        } => {
            deleted.delete().unwrap();
            segments
        }
        other => panic!("expected a swap, got {other:?}"),
    }
}

#[test]
fn repeated_keys_shrink_to_the_latest_values_in_offset_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &compact_config());
    fill(&mut log, 40, 5, 7);
    let before = read_all(&log);
    let size_before = log.size_in_bytes();
    let active = *log.segment_base_offsets().last().unwrap();
    let mut map = OffsetMap::new(1 << 20, 0.9);
    let (cleaned, outcome) = run_clean(&mut log, &mut map, 10_000).unwrap();
    assert!(swapped(outcome) > 0);
    assert_eq!(
        cleaned.end_offset, active,
        "the active segment bounds the clean"
    );
    let after = read_all(&log);
    let (below, above): (Vec<_>, Vec<_>) =
        before.iter().cloned().partition(|(o, _, _)| *o < active);
    // Below the active segment: each key's latest record there; above it: everything.
    let mut expected: Vec<Seen> = below
        .iter()
        .filter(|(o, k, _)| !below.iter().any(|(o2, k2, _)| k2 == k && o2 > o))
        .cloned()
        .collect();
    expected.extend(above.iter().cloned());
    assert_eq!(after, expected);
    assert!(
        log.size_in_bytes() < size_before / 2,
        "{} of {size_before}",
        log.size_in_bytes()
    );
    assert_eq!(
        log.log_end_offset(),
        before.last().unwrap().0 + 1,
        "offsets never change"
    );
    // The checkpoint moved: nothing is dirty now.
    let info = log.log_to_clean(10_000).unwrap().unwrap();
    assert_eq!(info.first_dirty_offset, active);
    assert_eq!(info.cleanable_bytes, 0);
    assert!(!info.should_clean());
}

#[test]
fn a_consumer_from_the_start_sees_each_keys_latest_value_after_repeated_cleans() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &compact_config());
    let mut map = OffsetMap::new(1 << 20, 0.9);
    let mut produced = Vec::new();
    for _ in 0..5 {
        let before = read_all(&log);
        fill(&mut log, 20, 4, 9);
        // What this pass added, as produced.
        produced.extend(read_all(&log).into_iter().filter(|r| !before.contains(r)));
        run_clean(&mut log, &mut map, 10_000).map(|(_, o)| swapped(o));
    }
    // Roll so everything is cleanable, then clean once more.
    log.maybe_roll(i64::MAX).unwrap();
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    run_clean(&mut log, &mut map, 10_000).map(|(_, o)| swapped(o));
    assert_eq!(read_all(&log), latest_per_key(&produced));
}

#[test]
fn every_codec_is_cleaned_and_stays_in_its_codec() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), &compact_config());
        for round in 0..30 {
            let records: Vec<_> = (0..4)
                .map(|i| (format!("k{i}"), Some(format!("r{round}"))))
                .collect();
            append(&mut log, &records, codec);
        }
        log.maybe_roll(i64::MAX).unwrap();
        let before = read_all(&log);
        let mut map = OffsetMap::new(1 << 20, 0.9);
        swapped(run_clean(&mut log, &mut map, 10_000).unwrap().1);
        assert_eq!(read_all(&log), latest_per_key(&before), "{codec:?}");
        let read = log
            .read(log.log_start_offset(), 1 << 20, log.log_end_offset(), true)
            .unwrap();
        let h = BatchHeader::parse(&read.records).unwrap();
        if h.records_count > 0 {
            assert_eq!(h.compression(), codec);
        }
    }
}

#[test]
fn the_active_segment_and_records_at_or_above_the_high_watermark_are_never_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &compact_config());
    fill(&mut log, 40, 5, 3);
    let bases = log.segment_base_offsets();
    assert!(bases.len() > 4);
    // Hold the high-water mark inside the third segment.
    log.update_high_watermark(bases[2] + 1);
    let info = log.log_to_clean(10_000).unwrap().unwrap();
    assert_eq!(info.first_uncleanable_offset, bases[2]);
    let before = read_all(&log);
    let mut map = OffsetMap::new(1 << 20, 0.9);
    let (cleaned, outcome) = run_clean(&mut log, &mut map, 10_000).unwrap();
    swapped(outcome);
    assert_eq!(cleaned.end_offset, bases[2]);
    let after = read_all(&log);
    let untouched: Vec<_> = before
        .iter()
        .filter(|(o, _, _)| *o >= bases[2])
        .cloned()
        .collect();
    assert_eq!(
        after
            .iter()
            .filter(|(o, _, _)| *o >= bases[2])
            .cloned()
            .collect::<Vec<_>>(),
        untouched
    );
}

#[test]
fn tombstones_stay_for_delete_retention_ms_after_the_clean_that_reached_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        delete_retention_ms: 5_000,
        ..compact_config()
    };
    let mut log = open(dir.path(), &config);
    fill(&mut log, 20, 5, 5);
    append(
        &mut log,
        &[("k1".into(), None), ("k3".into(), None)],
        Compression::None,
    );
    log.maybe_roll(i64::MAX).unwrap();
    append(
        &mut log,
        &[("tail".into(), Some("t".into()))],
        Compression::None,
    );
    let mut map = OffsetMap::new(1 << 20, 0.9);

    let (cleaned, outcome) = run_clean(&mut log, &mut map, 100_000).unwrap();
    swapped(outcome);
    assert_eq!(cleaned.earliest_tombstone_horizon, Some(105_000));
    let after_first = read_all(&log);
    assert!(
        after_first.iter().any(|(_, k, v)| k == "k1" && v.is_none()),
        "{after_first:?}"
    );
    assert!(!after_first.iter().any(|(_, k, v)| k == "k1" && v.is_some()));

    // Before the horizon: still there, and still reported (whether or not its segment was
    // rewritten).
    let (cleaned, outcome) = run_clean(&mut log, &mut map, 104_999).unwrap();
    assert_eq!(cleaned.earliest_tombstone_horizon, Some(105_000));
    if let SwapOutcome::Swapped { deleted, .. } = outcome {
        deleted.delete().unwrap();
    }
    assert!(read_all(&log)
        .iter()
        .any(|(_, k, v)| k == "k1" && v.is_none()));

    // From the horizon on: gone, and so is every older record of the key.
    let (cleaned, outcome) = run_clean(&mut log, &mut map, 105_000).unwrap();
    swapped(outcome);
    assert_eq!(cleaned.earliest_tombstone_horizon, None);
    let after = read_all(&log);
    assert!(
        !after.iter().any(|(_, k, _)| k == "k1" || k == "k3"),
        "{after:?}"
    );
    assert!(after.iter().any(|(_, k, _)| k == "k0"));
}

#[test]
fn a_log_too_large_for_the_offset_map_is_cleaned_in_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &compact_config());
    fill(&mut log, 60, 5, 40);
    log.maybe_roll(i64::MAX).unwrap();
    let before = read_all(&log);
    // Room for 9 keys: the 40 keys need several passes.
    let mut map = OffsetMap::new(10 * offset_map::ENTRY_BYTES, 0.9);
    let mut passes = 0;
    loop {
        let info = log.log_to_clean(10_000).unwrap().unwrap();
        if info.cleanable_bytes == 0 {
            break;
        }
        let (cleaned, outcome) = run_clean(&mut log, &mut map, 10_000).unwrap();
        assert!(cleaned.stats.map_keys <= map.capacity());
        if let SwapOutcome::Swapped { deleted, .. } = outcome {
            deleted.delete().unwrap();
        }
        passes += 1;
        assert!(passes < 100, "no progress");
    }
    assert!(passes > 2, "{passes}");
    assert_eq!(read_all(&log), latest_per_key(&before));
}

#[test]
fn an_idempotent_producers_last_batch_survives_as_an_empty_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &compact_config());
    let records = vec![("k".to_string(), Some("old".to_string()))];
    let v = validate_client_batches(
        batch_of(&records, Some((42, 0)), Compression::None),
        1 << 20,
        true,
    )
    .unwrap();
    log.append_as_leader(v, 0, 1_000).unwrap();
    fill(&mut log, 30, 5, 1); // key k0 only, superseding nothing of "k"
    let records = vec![("k".to_string(), Some("new".to_string()))];
    append(&mut log, &records, Compression::None);
    log.maybe_roll(i64::MAX).unwrap();
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    let task = log
        .prepare_clean(10_000, HashMap::from([(42i64, 0i64)]))
        .unwrap()
        .unwrap();
    let mut map = OffsetMap::new(1 << 20, 0.9);
    let cleaned = clean(&task, &mut map, &io(), &AtomicBool::new(false)).unwrap();
    swapped(log.replace_cleaned_segments(&cleaned).unwrap());
    let read = log.read(0, 1 << 20, log.log_end_offset(), true).unwrap();
    let h = BatchHeader::parse(&read.records).unwrap();
    assert_eq!(
        (
            h.base_offset,
            h.records_count,
            h.producer_id,
            h.base_sequence
        ),
        (0, 0, 42, 0)
    );
    assert!(!read_all(&log)
        .iter()
        .any(|(_, _, v)| v.as_deref() == Some("old")));
}

#[test]
fn a_truncation_during_a_clean_discards_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &compact_config());
    fill(&mut log, 40, 5, 4);
    let task = log.prepare_clean(10_000, HashMap::new()).unwrap().unwrap();
    let mut map = OffsetMap::new(1 << 20, 0.9);
    let cleaned = clean(&task, &mut map, &io(), &AtomicBool::new(false)).unwrap();
    let bases = log.segment_base_offsets();
    log.truncate_to(bases[1] + 2).unwrap();
    fill(&mut log, 5, 5, 4);
    let before = read_all(&log);
    match log.replace_cleaned_segments(&cleaned).unwrap() {
        SwapOutcome::Discarded(_) => {}
        other => panic!("expected a discard, got {other:?}"),
    }
    assert_eq!(read_all(&log), before);
    let leftovers: Vec<_> = std::fs::read_dir(log.dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(CLEANED_SUFFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The truncation brought the checkpoint down, so the next clean covers the new data.
    let info = log.log_to_clean(10_000).unwrap().unwrap();
    assert!(info.first_dirty_offset <= bases[1] + 2);
}

#[test]
fn retention_deleting_whole_cleaned_segments_meanwhile_leaves_the_rest_swapped() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        cleanup_policy: vec!["compact".into(), "delete".into()],
        ..compact_config()
    };
    let mut log = open(dir.path(), &config);
    fill(&mut log, 40, 5, 50);
    let end = *log.segment_base_offsets().last().unwrap();
    let task = log.prepare_clean(10_000, HashMap::new()).unwrap().unwrap();
    let mut map = OffsetMap::new(1 << 20, 0.9);
    let cleaned = clean(&task, &mut map, &io(), &AtomicBool::new(false)).unwrap();
    assert!(cleaned.groups.len() > 1, "{:?}", cleaned.groups);
    // DeleteRecords past the first group's segments.
    let second_group = cleaned.groups[1].base_offset;
    log.delete_records_before(second_group).unwrap();
    let before = read_all(&log);
    match log.replace_cleaned_segments(&cleaned).unwrap() {
        SwapOutcome::Swapped {
            segments, deleted, ..
        } => {
            assert_eq!(segments, cleaned.groups.len() - 1);
            deleted.delete().unwrap();
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(log.log_start_offset(), second_group);
    let expected: Vec<Seen> = before
        .iter()
        .filter(|(o, k, _)| {
            *o >= end
                || !before
                    .iter()
                    .any(|(o2, k2, _)| k2 == k && o2 > o && *o2 < end)
        })
        .cloned()
        .collect();
    assert_eq!(read_all(&log), expected);
}

#[test]
fn a_high_watermark_below_the_cleaned_point_leaves_nothing_to_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &compact_config());
    fill(&mut log, 40, 5, 4);
    let mut map = OffsetMap::new(1 << 20, 0.9);
    swapped(run_clean(&mut log, &mut map, 10_000).unwrap().1);
    fill(&mut log, 40, 5, 4);
    // A new leader's high-water mark can start below where this replica cleaned to.
    log.update_high_watermark(3);
    let info = log.log_to_clean(10_000).unwrap().unwrap();
    assert!(
        info.first_dirty_offset > info.first_uncleanable_offset,
        "{info:?}"
    );
    assert_eq!(info.cleanable_bytes, 0);
    assert!(!info.should_clean());
}

#[test]
fn min_compaction_lag_keeps_young_segments_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        min_compaction_lag_ms: 60_000,
        ..compact_config()
    };
    let mut log = open(dir.path(), &config);
    fill(&mut log, 40, 5, 4); // record timestamps around 1_000
    let info = log.log_to_clean(30_000).unwrap().unwrap();
    assert_eq!(
        info.first_uncleanable_offset, 0,
        "every segment is younger than the lag"
    );
    assert_eq!(info.cleanable_bytes, 0);
    let info = log.log_to_clean(100_000).unwrap().unwrap();
    assert!(info.cleanable_bytes > 0);
}

#[test]
fn max_compaction_lag_forces_a_clean_below_the_dirty_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        max_compaction_lag_ms: 50_000,
        min_cleanable_dirty_ratio: 0.99,
        ..compact_config()
    };
    let mut log = open(dir.path(), &config);
    fill(&mut log, 40, 5, 4);
    let mut map = OffsetMap::new(1 << 20, 0.9);
    swapped(run_clean(&mut log, &mut map, 10_000).unwrap().1);
    fill(&mut log, 10, 5, 4);
    let info = log.log_to_clean(10_000).unwrap().unwrap();
    assert!(!info.should_clean(), "{info:?}");
    let info = log.log_to_clean(60_000).unwrap().unwrap();
    assert!(info.need_compaction_now && info.should_clean(), "{info:?}");
}

#[test]
fn a_clean_that_changes_nothing_swaps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = TopicConfig {
        segment_bytes: 100_000,
        ..compact_config()
    };
    let mut log = open(dir.path(), &config);
    let records: Vec<_> = (0..10)
        .map(|i| (format!("k{i}"), Some("v".into())))
        .collect();
    append(&mut log, &records, Compression::None);
    log.maybe_roll(i64::MAX).unwrap();
    append(
        &mut log,
        &[("x".into(), Some("y".into()))],
        Compression::None,
    );
    let mut map = OffsetMap::new(1 << 20, 0.9);
    let (cleaned, outcome) = run_clean(&mut log, &mut map, 10_000).unwrap();
    assert!(cleaned.groups.is_empty());
    match outcome {
        SwapOutcome::Swapped { segments: 0, .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        log.log_to_clean(10_000)
            .unwrap()
            .unwrap()
            .first_dirty_offset,
        10
    );
}

#[test]
fn an_aborted_clean_leaves_no_cleaned_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), &compact_config());
    fill(&mut log, 40, 5, 4);
    let task = log.prepare_clean(10_000, HashMap::new()).unwrap().unwrap();
    let mut map = OffsetMap::new(1 << 20, 0.9);
    let err = clean(&task, &mut map, &io(), &AtomicBool::new(true)).unwrap_err();
    assert!(matches!(err, CleanError::Aborted));
    let names: Vec<_> = std::fs::read_dir(log.dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".cleaned"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// The log's files by name, for comparing states.
fn files(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.file_name().into_string().ok()?, e.metadata().ok()?.len()))
        })
        .collect()
}

#[test]
fn a_crash_at_every_step_of_the_swap_leaves_the_old_or_the_new_log_never_a_mix() {
    // A swap of three groups, crashed after 0, 1, 2, ... renames, then reopened as after an
    // unclean shutdown.
    let mut step = 0;
    let mut saw_old = false;
    let mut saw_new = false;
    // What the whole swap produces.
    let expected_new: Vec<Seen> = {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), &compact_config());
        fill(&mut log, 24, 5, 6);
        let mut map = OffsetMap::new(1 << 20, 0.9);
        swapped(run_clean(&mut log, &mut map, 10_000).unwrap().1);
        read_all(&log)
    };
    loop {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), &compact_config());
        fill(&mut log, 24, 5, 6);
        let old = read_all(&log);
        let end = log.log_end_offset();
        let task = log.prepare_clean(10_000, HashMap::new()).unwrap().unwrap();
        let mut map = OffsetMap::new(1 << 20, 0.9);
        let cleaned = clean(&task, &mut map, &io(), &AtomicBool::new(false)).unwrap();
        assert!(cleaned.groups.len() >= 2, "{:?}", cleaned.groups);
        let mut renames = 0;
        let outcome = log
            .replace_cleaned_segments_with(&cleaned, &mut || {
                renames += 1;
                renames <= step
            })
            .unwrap();
        let finished = matches!(outcome, SwapOutcome::Swapped { .. });
        let new = if let SwapOutcome::Swapped { .. } = outcome {
            read_all(&log)
        } else {
            Vec::new()
        };
        drop(log); // the crash: nothing more happens in memory
        let log = open(dir.path(), &compact_config());
        let recovered = read_all(&log);
        assert_eq!(log.log_end_offset(), end, "step {step}");
        if finished {
            assert_eq!(new, expected_new);
        }
        // Build the expectation group by group: each group's range comes from one side.
        let mut ranges: Vec<(i64, i64)> =
            cleaned.groups.iter().map(|g| (g.base_offset, 0)).collect();
        for i in 0..ranges.len() {
            ranges[i].1 = ranges.get(i + 1).map_or(cleaned.end_offset, |r| r.0);
        }
        for (from, to) in &ranges {
            let got: Vec<_> = recovered
                .iter()
                .filter(|(o, _, _)| o >= from && o < to)
                .cloned()
                .collect();
            let was: Vec<_> = old
                .iter()
                .filter(|(o, _, _)| o >= from && o < to)
                .cloned()
                .collect();
            let will: Vec<_> = expected_new
                .iter()
                .filter(|(o, _, _)| o >= from && o < to)
                .cloned()
                .collect();
            assert!(
                got == was || got == will,
                "step {step}: group [{from}, {to}) is a mix:\n{got:?}"
            );
            saw_old |= got == was && was != will;
            saw_new |= got == will && was != will;
        }
        let above: Vec<_> = recovered
            .iter()
            .filter(|(o, _, _)| *o >= cleaned.end_offset)
            .cloned()
            .collect();
        let above_old: Vec<_> = old
            .iter()
            .filter(|(o, _, _)| *o >= cleaned.end_offset)
            .cloned()
            .collect();
        assert_eq!(above, above_old, "step {step}");
        let names = files(log.dir());
        assert!(
            names.keys().all(|n| !n.ends_with(".swap")
                && !n.ends_with(".cleaned")
                && !n.ends_with(".deleted")),
            "step {step}: {names:?}"
        );
        if finished {
            break;
        }
        step += 1;
        assert!(step < 1000);
    }
    assert!(saw_old && saw_new && step > 6, "step {step}");
}
