//! Storage benches: leader append of 16 KiB batches (MB/s), sequential read of a segment
//! (MB/s) and recovery of a log after an unclean shutdown (s), each reported as a median next
//! to this machine's buffered write bandwidth measured by `dd` in the same run with the same
//! size, and the page-cache read speed `dd` gets from the same segment.
//!
//! `cargo bench --bench storage`. Sizes (MiB): `WEIR_BENCH_APPEND_MB` (default 256),
//! `WEIR_BENCH_READ_MB` (256), `WEIR_BENCH_RECOVERY_MB` (256; 1024 for the 1 GiB
//! figure). Without `--bench` (cargo test, nextest) every routine runs once on 1 MiB.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput};
use kafka_protocol::records::Record;
use weir::config::TopicConfig;
use weir::storage::{
    validate_client_batches, BatchHeader, PartitionLog, TopicPartition, ValidatedBatches,
};

const MIB: usize = 1 << 20;
const BATCH_BYTES: usize = 16 * 1024;

/// Per-run figures collected inside criterion's routines, for the medians printed at the end.
static APPEND_MBPS: Mutex<Vec<f64>> = Mutex::new(Vec::new());
static VALIDATE_APPEND_MBPS: Mutex<Vec<f64>> = Mutex::new(Vec::new());
static DD_WRITE_MBPS: Mutex<Vec<f64>> = Mutex::new(Vec::new());
static PWRITE_MBPS: Mutex<Vec<f64>> = Mutex::new(Vec::new());
static READ_MBPS: Mutex<Vec<f64>> = Mutex::new(Vec::new());
static RECOVERY_SECS: Mutex<Vec<f64>> = Mutex::new(Vec::new());

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn size_mb(var: &str, default: usize) -> usize {
    if !bench_mode() {
        return 1;
    }
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-storage-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create the bench dir");
    dir
}

/// A client batch of 16 records totalling exactly 16 KiB, as a producer would send it.
fn client_batch_16k() -> Bytes {
    let encode = |value_len: usize, last_extra: usize| {
        let records: Vec<Record> = (0..16)
            .map(|i| {
                let extra = if i == 15 { last_extra } else { 0 };
                support::record(
                    i,
                    Some(Bytes::from(format!("key-{i:04}"))),
                    value_len + extra,
                )
            })
            .collect();
        support::encode_batch(&records)
    };
    // The largest even value size that stays under 16 KiB, then the last record's value
    // grows to fill the batch exactly.
    let mut value_len = (BATCH_BYTES - 61) / 16 - 40;
    while encode(value_len + 1, 0).len() <= BATCH_BYTES {
        value_len += 1;
    }
    for extra in 0..64 {
        let b = encode(value_len, extra);
        if b.len() == BATCH_BYTES {
            return b;
        }
    }
    panic!("no record size gives a 16 KiB batch");
}

fn bench_config() -> TopicConfig {
    TopicConfig {
        retention_ms: -1,
        ..TopicConfig::default()
    }
}

fn new_log(dir: &Path) -> PartitionLog {
    let _ = fs::remove_dir_all(dir);
    PartitionLog::open(
        dir,
        TopicPartition::new("bench", 0),
        &bench_config(),
        0,
        false,
    )
    .expect("open the bench log")
}

fn median(values: &Mutex<Vec<f64>>) -> Option<f64> {
    let mut v = values.lock().ok()?.clone();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

fn mbps(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64()
}

/// `dd if=/dev/zero of=FILE bs=16k count=N` into a fresh file: MiB/s.
fn dd_write(scratch: &Path, count: usize) -> Option<f64> {
    let target = scratch.join("dd.out");
    let _ = fs::remove_file(&target);
    let of = format!("of={}", target.display());
    let count_arg = format!("count={count}");
    let v = dd(
        &["if=/dev/zero", &of, "bs=16k", &count_arg],
        count * 16 * 1024,
    );
    let _ = fs::remove_file(&target);
    v
}

/// Positioned writes of the prepared batches into a fresh file, nothing else: MiB/s.
fn raw_pwrite(scratch: &Path, prepared: &[ValidatedBatches], bytes: usize) -> f64 {
    use std::os::unix::fs::FileExt;
    let target = scratch.join("pwrite.out");
    let _ = fs::remove_file(&target);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&target)
        .expect("create the pwrite file");
    let start = Instant::now();
    let mut position = 0;
    for v in prepared {
        file.write_all_at(&v.bytes, position).expect("pwrite");
        position += v.bytes.len() as u64;
    }
    let elapsed = start.elapsed();
    drop(file);
    let _ = fs::remove_file(&target);
    mbps(bytes, elapsed)
}

fn bench_append(c: &mut Criterion, scratch: &Path) {
    let total = size_mb("WEIR_BENCH_APPEND_MB", 256) * MIB;
    let batch = client_batch_16k();
    let count = total / batch.len();
    let bytes = count * batch.len();
    let dir = scratch.join("append").join("bench-0");

    let mut group = c.benchmark_group("storage");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Bytes(bytes as u64));

    group.bench_function(format!("append_16KiB_batches_{}MiB", bytes / MIB), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let mut log = new_log(&dir);
                let prepared: Vec<ValidatedBatches> = (0..count)
                    .map(|_| validate_client_batches(batch.clone(), 1 << 20, false).expect("valid"))
                    .collect();
                // Controls measured beside each sample, so machine load affects all alike:
                // dd's buffered write, and plain pwrites of these very buffers.
                if bench_mode() {
                    if let Some(v) = dd_write(scratch, count) {
                        DD_WRITE_MBPS.lock().expect("stats").push(v);
                    }
                    let v = raw_pwrite(scratch, &prepared, bytes);
                    PWRITE_MBPS.lock().expect("stats").push(v);
                }
                let start = Instant::now();
                for v in prepared {
                    log.append_as_leader(v, 0, 0).expect("append");
                }
                let elapsed = start.elapsed();
                spent += elapsed;
                APPEND_MBPS
                    .lock()
                    .expect("stats")
                    .push(mbps(bytes, elapsed));
                drop(log);
            }
            let _ = fs::remove_dir_all(&dir);
            spent
        })
    });

    group.bench_function(
        format!("validate_and_append_16KiB_batches_{}MiB", bytes / MIB),
        |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let mut log = new_log(&dir);
                    // Distinct buffers, as requests arrive: validation takes ownership in place.
                    let requests: Vec<Bytes> =
                        (0..count).map(|_| Bytes::copy_from_slice(&batch)).collect();
                    let start = Instant::now();
                    for r in requests {
                        let v = validate_client_batches(r, 1 << 20, false).expect("valid");
                        log.append_as_leader(v, 0, 0).expect("append");
                    }
                    let elapsed = start.elapsed();
                    spent += elapsed;
                    VALIDATE_APPEND_MBPS
                        .lock()
                        .expect("stats")
                        .push(mbps(bytes, elapsed));
                    drop(log);
                }
                let _ = fs::remove_dir_all(&dir);
                spent
            })
        },
    );
    group.finish();
}

/// Writes `total` bytes of 16 KiB batches into one segment and returns the log.
fn build_log(dir: &Path, total: usize) -> PartitionLog {
    let mut log = new_log(dir);
    let batch = client_batch_16k();
    for _ in 0..total / batch.len() {
        let v = validate_client_batches(batch.clone(), 1 << 20, false).expect("valid");
        log.append_as_leader(v, 0, 0).expect("append");
    }
    log
}

fn bench_read(c: &mut Criterion, scratch: &Path) -> PathBuf {
    let total = size_mb("WEIR_BENCH_READ_MB", 256) * MIB;
    let dir = scratch.join("read").join("bench-0");
    let log = build_log(&dir, total);
    let bytes = log.size_in_bytes() as usize;
    let end = log.log_end_offset();

    let mut group = c.benchmark_group("storage");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(
        format!("sequential_read_{}MiB_in_1MiB_fetches", bytes / MIB),
        |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let mut offset = 0;
                    let mut read = 0;
                    while offset < end {
                        let data = log.read(offset, MIB, i64::MAX, true).expect("read");
                        read += data.records.len();
                        let mut at = 0;
                        while at < data.records.len() {
                            let h = BatchHeader::parse(&data.records[at..]).expect("header");
                            offset = h.next_offset();
                            at += h.total_size();
                        }
                    }
                    let elapsed = start.elapsed();
                    assert_eq!(read, bytes);
                    spent += elapsed;
                    READ_MBPS.lock().expect("stats").push(mbps(bytes, elapsed));
                }
                spent
            })
        },
    );
    group.finish();
    dir.join(format!("{:020}.log", 0))
}

fn bench_recovery(c: &mut Criterion, scratch: &Path) {
    let total = size_mb("WEIR_BENCH_RECOVERY_MB", 256) * MIB;
    let dir = scratch.join("recovery").join("bench-0");
    // Kafka's default segment.bytes: a 1 GiB log is one segment.
    let config = bench_config();
    let log = build_log(&dir, total);
    let bytes = log.size_in_bytes() as usize;
    drop(log); // unclean: no marker, recovery point 0

    let mut group = c.benchmark_group("storage");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(
        format!("recover_{}MiB_log_after_unclean_shutdown", bytes / MIB),
        |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let log = PartitionLog::open(
                        &dir,
                        TopicPartition::new("bench", 0),
                        &config,
                        0,
                        false,
                    )
                    .expect("recover");
                    let elapsed = start.elapsed();
                    assert_eq!(log.size_in_bytes() as usize, bytes, "nothing lost");
                    spent += elapsed;
                    RECOVERY_SECS
                        .lock()
                        .expect("stats")
                        .push(elapsed.as_secs_f64());
                    drop(log);
                }
                spent
            })
        },
    );
    group.finish();
}

/// Runs dd and returns the MB/s (MiB/s) computed from the seconds it reports.
fn dd(args: &[&str], bytes: usize) -> Option<f64> {
    let out = Command::new("dd").args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    // "... bytes (...) copied, 0.123 s, 2.1 GB/s"
    let secs: f64 = text
        .split("copied,")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(bytes as f64 / MIB as f64 / secs)
}

fn median_of(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

fn report(segment: &Path) {
    let append_mb = size_mb("WEIR_BENCH_APPEND_MB", 256);
    let seg_len = fs::metadata(segment).map(|m| m.len() as usize).unwrap_or(0);
    let inf = format!("if={}", segment.display());
    let reads: Vec<f64> = (0..10)
        .filter_map(|_| dd(&[inf.as_str(), "of=/dev/null", "bs=1M"], seg_len))
        .collect();
    let dd_write = median(&DD_WRITE_MBPS);
    let dd_read = median_of(reads);
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0} MiB/s"));
    let ratio = |v: f64, base: Option<f64>| {
        base.map_or(String::new(), |b| format!(" = {:.0}% of dd", 100.0 * v / b))
    };
    println!();
    println!("storage bench medians (dd measured in the same run, same sizes)");
    println!(
        "  dd buffered write, beside each append sample: dd if=/dev/zero of=FILE bs=16k count={}: {}",
        append_mb * 64,
        show(dd_write)
    );
    println!(
        "  plain pwrite of the same prepared batches (control): {}{}",
        show(median(&PWRITE_MBPS)),
        median(&PWRITE_MBPS).map_or(String::new(), |v| ratio(v, dd_write))
    );
    if let Some(v) = median(&APPEND_MBPS) {
        println!(
            "  append 16 KiB batches (pre-validated): {v:.0} MiB/s{}",
            ratio(v, dd_write)
        );
    }
    if let Some(v) = median(&VALIDATE_APPEND_MBPS) {
        println!(
            "  validate + append 16 KiB batches: {v:.0} MiB/s{}",
            ratio(v, dd_write)
        );
    }
    println!(
        "  dd page-cache read: dd if={} of=/dev/null bs=1M: {}",
        segment.display(),
        show(dd_read)
    );
    if let Some(v) = median(&READ_MBPS) {
        println!(
            "  sequential segment read (1 MiB fetches): {v:.0} MiB/s{}",
            ratio(v, dd_read)
        );
    }
    if let Some(v) = median(&RECOVERY_SECS) {
        let mb = size_mb("WEIR_BENCH_RECOVERY_MB", 256);
        println!(
            "  recovery of a {mb} MiB log after an unclean shutdown: {v:.3} s ({:.0} MiB/s)",
            mb as f64 / v
        );
    }
}

fn main() {
    let scratch = scratch_dir();
    let mut c = Criterion::default().configure_from_args();
    bench_append(&mut c, &scratch);
    let segment = bench_read(&mut c, &scratch);
    bench_recovery(&mut c, &scratch);
    c.final_summary();
    if bench_mode() {
        report(&segment);
    }
    let _ = fs::remove_dir_all(&scratch);
}
