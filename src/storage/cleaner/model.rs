//! The proptest model of compaction: any sequence of appends (keys from a small set, values or
//! tombstones, every codec), high-water mark moves, rolls, cleans (with small or large offset
//! maps, at an advancing clock), follower truncations (never below the high-water mark, as
//! Kafka's truncation by leader epoch never removes committed records: a clean relies on it,
//! having removed what committed records superseded), clean or unclean reopens (which commit
//! everything) and crashes in the middle of a swap
//! keeps the one property compaction owes its readers: for every key, the last record of it
//! in the log is the last one written, or, when that was a tombstone, the key may be gone
//! altogether; never is an older value the last. Every record read is one that was written,
//! at its offset. And once everything is closed and cleaned, no key appears twice.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use kafka_protocol::records::Compression;
use proptest::prelude::*;

use super::checkpoint::CleanerCheckpoints;
use super::swap::SwapOutcome;
use super::tests::{io, read_all, Seen};
use super::{clean, offset_map, OffsetMap};
use crate::config::TopicConfig;
use crate::storage::batch::tests::records_batch;
use crate::storage::batch::validate_client_batches;
use crate::storage::log::{LogLoadParams, PartitionLog, TopicPartition};

const KEYS: usize = 6;
const DELETE_RETENTION_MS: i64 = 1_000;

fn config() -> TopicConfig {
    TopicConfig {
        cleanup_policy: vec!["compact".into()],
        segment_bytes: 700,
        segment_index_bytes: 1024,
        index_interval_bytes: 100,
        retention_ms: -1,
        delete_retention_ms: DELETE_RETENTION_MS,
        ..TopicConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `(key, value?)` records in one batch; `None` is a tombstone.
    Append {
        records: Vec<(usize, bool)>,
        codec: usize,
    },
    Roll,
    /// The high-water mark moves to the log end (the followers caught up).
    Commit,
    /// A clean with room for `map_keys` keys, `advance_ms` after the previous step.
    Clean {
        map_keys: usize,
        advance_ms: i64,
    },
    /// Follower truncation to `fraction/255` of the way from the high-water mark to the log end.
    Truncate {
        fraction: u8,
    },
    Reopen {
        clean_shutdown: bool,
    },
    /// A clean whose swap stops after `renames` renames, then an unclean reopen.
    CrashDuringSwap {
        renames: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec((0..KEYS, prop::bool::weighted(0.85)), 1..8), 0..5usize)
            .prop_map(|(records, codec)| Op::Append { records, codec }),
        2 => Just(Op::Roll),
        3 => Just(Op::Commit),
        3 => (prop_oneof![Just(2usize), Just(1000)], 0..1500i64)
            .prop_map(|(map_keys, advance_ms)| Op::Clean { map_keys, advance_ms }),
        1 => any::<u8>().prop_map(|fraction| Op::Truncate { fraction }),
        1 => any::<bool>().prop_map(|clean_shutdown| Op::Reopen { clean_shutdown }),
        1 => (0..12usize).prop_map(|renames| Op::CrashDuringSwap { renames }),
    ]
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Opens the log as the log manager does: with the dir's cleaner checkpoint attached.
fn open(root: &Path, clean_shutdown: bool) -> PartitionLog {
    let mut log = PartitionLog::load(
        &root.join("t-0"),
        TopicPartition::new("t", 0),
        &config(),
        LogLoadParams {
            recovery_point: 0,
            log_start_offset: -1,
            high_watermark: -1,
            clean_shutdown,
        },
    )
    .unwrap();
    log.attach_cleaner_checkpoints(CleanerCheckpoints::open(root))
        .unwrap();
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    log
}

/// For every key, the log's last record of it against the last one written.
fn check(log: &PartitionLog, written: &[Seen]) -> Result<(), TestCaseError> {
    let read = read_all(log);
    let by_offset: HashMap<i64, &Seen> = written.iter().map(|r| (r.0, r)).collect();
    for r in &read {
        prop_assert_eq!(Some(&r), by_offset.get(&r.0), "a record nobody wrote");
    }
    let last = |records: &[Seen]| -> BTreeMap<String, Seen> {
        records.iter().map(|r| (r.1.clone(), r.clone())).collect()
    };
    let (in_log, in_model) = (last(&read), last(written));
    for (key, latest) in &in_model {
        match in_log.get(key) {
            Some(found) => prop_assert_eq!(found, latest, "key {} went back in time", key),
            None => prop_assert!(
                latest.2.is_none(),
                "key {} lost its latest value {:?}",
                key,
                latest
            ),
        }
    }
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), false);
    let mut written: Vec<Seen> = Vec::new();
    let mut now = 1_000_000i64;
    for op in ops {
        match op {
            Op::Append { records, codec } => {
                let values: Vec<(String, Option<String>)> = records
                    .iter()
                    .enumerate()
                    .map(|(i, (k, has_value))| {
                        let offset = log.log_end_offset() + i as i64;
                        (format!("k{k}"), has_value.then(|| format!("v{offset}")))
                    })
                    .collect();
                let as_refs: Vec<(Option<&str>, Option<&str>)> = values
                    .iter()
                    .map(|(k, v)| (Some(k.as_str()), v.as_deref()))
                    .collect();
                let batch = records_batch(&as_refs, now, None, CODECS[*codec]);
                let v = validate_client_batches(batch, 1 << 20, true).unwrap();
                let info = log.append_as_leader(v, 0, now).unwrap();
                for (i, (k, v)) in values.into_iter().enumerate() {
                    written.push((info.first_offset + i as i64, k, v));
                }
            }
            Op::Roll => log.maybe_roll(i64::MAX).unwrap(),
            Op::Commit => {
                let end = log.log_end_offset();
                log.update_high_watermark(end);
            }
            Op::Clean {
                map_keys,
                advance_ms,
            } => {
                now += advance_ms;
                if let Some(task) = log.prepare_clean(now, HashMap::new()).unwrap() {
                    let mut map = OffsetMap::new((map_keys + 1) * offset_map::ENTRY_BYTES, 0.9);
                    let cleaned = clean(&task, &mut map, &io(), &AtomicBool::new(false)).unwrap();
                    if let SwapOutcome::Swapped { deleted, .. } =
                        log.replace_cleaned_segments(&cleaned).unwrap()
                    {
                        deleted.delete().unwrap();
                        log.cleaner_checkpoints().write().unwrap();
                    }
                }
            }
            Op::Truncate { fraction } => {
                let hwm = log.high_watermark();
                let to = hwm + (log.log_end_offset() - hwm) * *fraction as i64 / 255;
                log.truncate_to(to).unwrap();
                // The batch holding `to` goes whole.
                let end = log.log_end_offset();
                written.retain(|r| r.0 < end);
            }
            Op::Reopen { clean_shutdown } => {
                if *clean_shutdown {
                    log.close().unwrap();
                } else {
                    drop(log);
                }
                log = open(root.path(), *clean_shutdown);
            }
            Op::CrashDuringSwap { renames } => {
                now += DELETE_RETENTION_MS;
                if let Some(task) = log.prepare_clean(now, HashMap::new()).unwrap() {
                    let mut map = OffsetMap::new(1 << 16, 0.9);
                    let cleaned = clean(&task, &mut map, &io(), &AtomicBool::new(false)).unwrap();
                    let mut done = 0;
                    let outcome = log
                        .replace_cleaned_segments_with(&cleaned, &mut || {
                            done += 1;
                            done <= *renames
                        })
                        .unwrap();
                    if let SwapOutcome::Swapped { deleted, .. } = outcome {
                        deleted.delete().unwrap();
                    }
                }
                drop(log);
                log = open(root.path(), false);
            }
        }
        check(&log, &written)?;
    }
    // Everything closed and cleaned with room for every key: each key at most once.
    log.maybe_roll(i64::MAX).unwrap();
    let end = log.log_end_offset();
    log.update_high_watermark(end);
    if let Some(task) = log.prepare_clean(now, HashMap::new()).unwrap() {
        let mut map = OffsetMap::new(1 << 16, 0.9);
        let cleaned = clean(&task, &mut map, &io(), &AtomicBool::new(false)).unwrap();
        let _ = log.replace_cleaned_segments(&cleaned).unwrap();
    }
    check(&log, &written)?;
    let read = read_all(&log);
    let mut keys: Vec<&String> = read.iter().map(|r| &r.1).collect();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    prop_assert_eq!(
        keys.len(),
        total,
        "a key twice after a full clean: {:?}",
        read
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_history_keeps_every_keys_latest_record_last(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}
