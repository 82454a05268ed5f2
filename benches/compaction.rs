//! Log compaction benches: cleaning throughput (MiB of log cleaned per second: prepare on the
//! log, build the offset map, rewrite, swap) for an uncompressed and an LZ4 log, and the effect
//! of a running clean on produce latency (appends to a replica actor while the log cleaner
//! actor cleans that very replica's log, against the same appends with no clean).
//!
//! The log: batches of 64 records with 200-byte values, keys cycling so that each appears
//! about ten times, 64 MiB segments, all closed.
//!
//! `cargo bench --bench compaction`. Sizes (MiB): `WEIR_BENCH_CLEAN_MB` (default 256).
//! Without `--bench` (cargo test, nextest) every routine runs once on 1 MiB.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix::Actor;
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, SamplingMode, Throughput};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use uuid::Uuid;
use weir::actors::log_cleaner::{CleanerPeer, GetCleanerTotals, LogCleaner, LogCleanerConfig};
use weir::actors::replica::{AppendRecords, ApplyLeaderAndIsr, LeaderAndIsrState, Replica};
use weir::config::TopicConfig;
use weir::storage::cleaner::swap::SwapOutcome;
use weir::storage::cleaner::{clean, CleanerIo, OffsetMap};
use weir::storage::{validate_client_batches, PartitionLog, TopicPartition};

const MIB: usize = 1 << 20;
const RECORDS_PER_BATCH: usize = 64;
const VALUE_BYTES: usize = 200;

/// Per clean: codec, MiB of log per second, records per second.
static CLEAN_RATES: Mutex<Vec<(String, f64, f64)>> = Mutex::new(Vec::new());
/// Per clean: µs the swap took (the part that runs on the log's owner, the replica actor).
static SWAP_MICROS: Mutex<Vec<f64>> = Mutex::new(Vec::new());

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn size_mb() -> usize {
    if !bench_mode() {
        return 1;
    }
    std::env::var("WEIR_BENCH_CLEAN_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Distinct keys: each appears about ten times in the log.
fn keys() -> usize {
    (size_mb() * MIB / (VALUE_BYTES + 30) / 10).max(100)
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-compaction-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create the bench dir");
    dir
}

fn topic_config() -> TopicConfig {
    TopicConfig {
        cleanup_policy: vec!["compact".into()],
        segment_bytes: 64 * MIB as i32,
        retention_ms: -1,
        ..TopicConfig::default()
    }
}

/// Batch `n` of the workload: 64 keyed records continuing the key cycle.
fn batch(n: usize, compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..RECORDS_PER_BATCH)
        .map(|i| {
            let seq = n * RECORDS_PER_BATCH + i;
            // Half noise, half a repeated letter: compresses about 2:1, like real payloads.
            let mut value = format!("value-{seq:012}-").into_bytes();
            let mut x = (seq as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while value.len() < VALUE_BYTES / 2 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                value.push(b'!' + (x % 90) as u8);
            }
            value.resize(VALUE_BYTES, b'a' + (seq % 26) as u8);
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32 - 1,
                timestamp: 1_700_000_000_000 + seq as i64,
                key: Some(Bytes::from(format!("key-{:08}", seq % keys()))),
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
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
    .expect("encode");
    buf.freeze()
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(
        dir,
        TopicPartition::new("bench", 0),
        &topic_config(),
        0,
        true,
    )
    .expect("open the bench log")
}

/// A log of `total` bytes of the workload with every segment closed, left on disk in `dir`.
fn build_template(dir: &Path, total: usize, compression: Compression) -> u64 {
    let _ = fs::remove_dir_all(dir);
    let mut log = open(dir);
    let mut n = 0;
    while (log.size_in_bytes() as usize) < total {
        let v = validate_client_batches(batch(n, compression), 1 << 20, true).expect("valid");
        log.append_as_leader(v, 0, 0).expect("append");
        n += 1;
    }
    log.maybe_roll(i64::MAX).expect("roll");
    let bytes = log.size_in_bytes();
    log.close().expect("close");
    bytes
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).expect("create");
    for entry in fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn io() -> CleanerIo {
    CleanerIo {
        io_buffer_bytes: 256 * 1024,
        max_io_bytes_per_second: f64::MAX,
    }
}

fn bench_clean(c: &mut Criterion, scratch: &Path) {
    let total = size_mb() * MIB;
    let mut group = c.benchmark_group("compaction");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(30));
    for (name, codec) in [
        ("uncompressed", Compression::None),
        ("lz4", Compression::Lz4),
    ] {
        let template = scratch.join(format!("template-{name}"));
        let bytes = build_template(&template, total, codec);
        let work = scratch.join(format!("work-{name}"));
        group.throughput(Throughput::Bytes(bytes));
        let mut map = OffsetMap::new(128 * MIB, 0.9);
        group.bench_function(format!("clean_{name}_{}MiB", bytes as usize / MIB), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    copy_dir(&template, &work);
                    let mut log = open(&work);
                    let end = log.log_end_offset();
                    log.update_high_watermark(end);
                    let start = Instant::now();
                    let task = log
                        .prepare_clean(1_700_000_000_000, HashMap::new())
                        .expect("prepare")
                        .expect("a dirty log");
                    let cleaned =
                        clean(&task, &mut map, &io(), &AtomicBool::new(false)).expect("clean");
                    let swap_started = Instant::now();
                    let outcome = log.replace_cleaned_segments(&cleaned).expect("swap");
                    SWAP_MICROS
                        .lock()
                        .expect("stats")
                        .push(swap_started.elapsed().as_secs_f64() * 1e6);
                    let elapsed = start.elapsed();
                    let SwapOutcome::Swapped { deleted, .. } = outcome else {
                        panic!("the clean was not swapped in: {outcome:?}");
                    };
                    deleted.delete().expect("delete");
                    assert!(log.size_in_bytes() < bytes);
                    spent += elapsed;
                    CLEAN_RATES.lock().expect("stats").push((
                        name.to_string(),
                        bytes as f64 / MIB as f64 / elapsed.as_secs_f64(),
                        cleaned.stats.records_read as f64 / elapsed.as_secs_f64(),
                    ));
                }
                spent
            })
        });
    }
    group.finish();
}

/// Append latencies while `during` runs, in µs.
struct Latencies(Vec<f64>);

impl Latencies {
    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return 0.0;
        }
        v[((v.len() - 1) as f64 * p).round() as usize]
    }

    fn line(&self, what: &str) -> String {
        format!(
            "  {what}: {} appends, p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
            self.0.len(),
            self.percentile(0.5),
            self.percentile(0.99),
            self.percentile(0.999),
            self.percentile(1.0)
        )
    }
}

/// 1 KiB-ish appends (4 records) to a replica of the template log: `count` of them with no
/// clean, then as many as fit while the log cleaner cleans that log.
fn produce_latency(scratch: &Path) -> (Latencies, Latencies, Duration) {
    let total = size_mb() * MIB;
    let template = scratch.join("template-latency");
    build_template(&template, total, Compression::None);
    let work = scratch.join("work-latency");
    copy_dir(&template, &work);
    let small: Vec<Bytes> = (0..64)
        .map(|n| {
            let records: Vec<Record> = (0..4)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    sequence: i as i32 - 1,
                    timestamp: 1_700_000_000_000,
                    key: Some(Bytes::from(format!(
                        "key-{:08}",
                        (n * 4 + i as usize) % keys()
                    ))),
                    value: Some(Bytes::from(vec![b'v'; VALUE_BYTES])),
                    headers: Default::default(),
                })
                .collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression: Compression::None,
                },
            )
            .expect("encode");
            buf.freeze()
        })
        .collect();
    actix::System::new().block_on(async move {
        let log = open(&work);
        let handle = Replica::new(
            TopicPartition::new("bench", 0),
            Uuid::new_v4(),
            1,
            log,
            topic_config(),
            Duration::from_secs(3600),
        )
        .start_here();
        let replica = handle.addr.clone();
        replica
            .send(ApplyLeaderAndIsr(LeaderAndIsrState {
                leader: 1,
                leader_epoch: 0,
                isr: vec![1],
                replicas: vec![1],
                partition_epoch: 0,
                is_new: true,
            }))
            .await
            .expect("replica")
            .expect("leader");
        let append = |i: usize| {
            let batches = validate_client_batches(small[i % small.len()].clone(), 1 << 20, true)
                .expect("valid");
            let replica = replica.clone();
            async move {
                let start = Instant::now();
                replica
                    .send(AppendRecords {
                        batches,
                        required_acks: 1,
                    })
                    .await
                    .expect("replica")
                    .expect("append");
                start.elapsed().as_secs_f64() * 1e6
            }
        };
        let baseline_count = if bench_mode() { 20_000 } else { 200 };
        let mut baseline = Vec::with_capacity(baseline_count);
        for i in 0..baseline_count {
            baseline.push(append(i).await);
        }
        let peer = CleanerPeer::of(replica.clone());
        let config = LogCleanerConfig {
            threads: 1,
            map_bytes: 128 * MIB,
            load_factor: 0.9,
            io: io(),
            backoff: Duration::from_secs(3600),
        };
        let started = Instant::now();
        let cleaner = LogCleaner::new(config, move || {
            vec![(TopicPartition::new("bench", 0), peer.clone())]
        })
        .start();
        let mut during = Vec::new();
        let mut i = 0;
        loop {
            during.push(append(i).await);
            i += 1;
            if i % 50 == 0 {
                let totals = cleaner.send(GetCleanerTotals).await.expect("cleaner");
                if totals.cleans >= 1 {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(600), "no clean");
            }
        }
        let clean_time = started.elapsed();
        (Latencies(baseline), Latencies(during), clean_time)
    })
}

fn main() {
    let scratch = scratch_dir();
    let mut c = Criterion::default().configure_from_args();
    bench_clean(&mut c, &scratch);
    c.final_summary();
    let (baseline, during, clean_time) = produce_latency(&scratch);
    if bench_mode() {
        println!();
        println!("compaction bench medians ({} MiB logs)", size_mb());
        let stats = CLEAN_RATES.lock().expect("stats").clone();
        for name in ["uncompressed", "lz4"] {
            let mut v: Vec<(f64, f64)> = stats
                .iter()
                .filter(|(n, _, _)| n == name)
                .map(|(_, mbps, rps)| (*mbps, *rps))
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((mbps, rps)) = v.get(v.len() / 2) {
                println!(
                    "  clean (prepare, map, rewrite, swap), {name}: {mbps:.0} MiB/s of log, \
                     {:.2} M records/s",
                    rps / 1e6
                );
            }
        }
        let mut swaps = SWAP_MICROS.lock().expect("stats").clone();
        swaps.sort_by(|a, b| a.total_cmp(b));
        if let (Some(median), Some(max)) = (swaps.get(swaps.len() / 2), swaps.last()) {
            println!(
                "  the swap step (on the log's owner) of those cleans: median {median:.0} µs, \
                 max {max:.0} µs"
            );
        }
        println!(
            "  produce latency, one replica, sequential 4-record appends (the clean of its \
             log took {:.1} s):",
            clean_time.as_secs_f64()
        );
        println!("{}", baseline.line("no clean"));
        println!("{}", during.line("during the clean"));
    }
    let _ = fs::remove_dir_all(&scratch);
}
