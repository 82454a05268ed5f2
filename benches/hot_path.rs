//! Hot-path benches: the work a broker does per produce and fetch request, piece by piece, with
//! the shapes librdkafka sends at full speed (one batch of 500 records of 100 B per partition,
//! six partitions per request).
//!
//! - `produce_request`: decoding a Produce v9 request and validating its six batches (CRC-32C,
//!   record framing): the work on the connection's task before any actor sees the request.
//! - `log_append`: a leader append of one validated batch (offsets assigned in place, bytes
//!   into the page cache, sparse index entries).
//! - `index_lookup`: the offset index's binary search, in a full 10 MiB index.
//! - `fetch_read`: reading 1 MiB of whole batches from a random offset of a 64 MiB log.
//! - `hwm_advance`: N `acks=all` produces parked on one partition, released by N successive
//!   high-water-mark advances (each advance wakes every waiter still parked).
//! - `coordination`: znode writes through the embedded coordination service with its
//!   transaction log on disk, one at a time and 64 in flight.
//!
//! `cargo bench --bench hot_path` (a few seconds per bench); `cargo bench --bench hot_path --
//! fetch_read` runs one. Without `--bench` (cargo test, nextest) every routine runs once.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rand::{Rng, SeedableRng};
use weir::actors::coordination::{self, CoordinationConfig, CreateMode, EmbeddedCoordination};
use weir::actors::delayed::{delayed_produce, ProducePurgatory, ProduceWait, ProduceWaitOutcome};
use weir::actors::replica::PartitionProgress;
use weir::config::TopicConfig;
use weir::storage::offset_index::OffsetIndex;
use weir::storage::{validate_client_batches, PartitionLog, TopicPartition};

const RECORDS_PER_BATCH: usize = 500;
const RECORD_BYTES: usize = 100;
const PARTITIONS: i32 = 6;
const PRODUCE_VERSION: i16 = 9;

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-hot-path-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the bench dir");
    dir
}

/// One client batch as librdkafka builds it: `count` records with `value_len`-byte values, no
/// keys.
fn client_batch(count: usize, value_len: usize) -> Bytes {
    let records: Vec<_> = (0..count as i64)
        .map(|i| support::record(i, None, value_len))
        .collect();
    support::encode_batch(&records)
}

/// A Produce v9 request body: one topic, six partitions, one batch each.
fn produce_request_body() -> Bytes {
    let batch = client_batch(RECORDS_PER_BATCH, RECORD_BYTES);
    let partitions = (0..PARTITIONS)
        .map(|i| {
            PartitionProduceData::default()
                .with_index(i)
                .with_records(Some(batch.clone()))
        })
        .collect();
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(partitions)]);
    let mut buf = BytesMut::new();
    request
        .encode(&mut buf, PRODUCE_VERSION)
        .expect("encode the request");
    buf.freeze()
}

fn bench_produce_request(c: &mut Criterion) {
    let body = produce_request_body();
    let max_bytes = TopicConfig::default().max_message_bytes as usize;
    let mut group = c.benchmark_group("produce_request");
    group.throughput(Throughput::Elements(
        (RECORDS_PER_BATCH * PARTITIONS as usize) as u64,
    ));
    group.bench_function("decode_and_validate_6x500x100B", |b| {
        b.iter(|| {
            let mut buf = body.clone();
            let request = ProduceRequest::decode(&mut buf, PRODUCE_VERSION).expect("decode");
            let mut records = 0;
            for topic in request.topic_data {
                for p in topic.partition_data {
                    let batch = p.records.expect("records");
                    records += validate_client_batches(batch, max_bytes, false)
                        .expect("valid")
                        .record_count;
                }
            }
            records
        })
    });
    group.finish();
}

fn bench_config() -> TopicConfig {
    TopicConfig {
        retention_ms: -1,
        ..TopicConfig::default()
    }
}

fn new_log(dir: &Path) -> PartitionLog {
    let _ = std::fs::remove_dir_all(dir);
    PartitionLog::open(
        dir,
        TopicPartition::new("bench", 0),
        &bench_config(),
        0,
        false,
    )
    .expect("open the bench log")
}

fn bench_log_append(c: &mut Criterion, scratch: &Path) {
    let batch = client_batch(RECORDS_PER_BATCH, RECORD_BYTES);
    let validated = validate_client_batches(batch.clone(), usize::MAX, false).expect("valid");
    let dir = scratch.join("append");
    let mut group = c.benchmark_group("log_append");
    group.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
    group.bench_function("leader_append_500x100B", |b| {
        // A fresh log per sample keeps the scratch space to one sample's worth of batches.
        b.iter_custom(|iters| {
            let mut log = new_log(&dir);
            let copies: Vec<_> = (0..iters).map(|_| validated.clone()).collect();
            let start = Instant::now();
            for v in copies {
                log.append_as_leader(v, 0, 1_700_000_000_000)
                    .expect("append");
            }
            let elapsed = start.elapsed();
            drop(log);
            let _ = std::fs::remove_dir_all(&dir);
            elapsed
        })
    });
    group.finish();
}

fn bench_index_lookup(c: &mut Criterion, scratch: &Path) {
    let path = scratch.join("00000000000000000000.index");
    let max_bytes = TopicConfig::default().segment_index_bytes as usize;
    let mut index = OffsetIndex::create(&path, 0, max_bytes).expect("create the index");
    let mut entries = 0i64;
    while index.append((entries + 1) * 40, (entries as u32 + 1) * 1000) {
        entries += 1;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let targets: Vec<i64> = (0..4096).map(|_| rng.gen_range(0..entries * 40)).collect();
    let mut group = c.benchmark_group("index_lookup");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("offset_index_{entries}_entries"), |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % targets.len();
            index.lookup(targets[i])
        })
    });
    group.finish();
}

fn bench_fetch_read(c: &mut Criterion, scratch: &Path) {
    let dir = scratch.join("read");
    let mut log = new_log(&dir);
    let batch = client_batch(RECORDS_PER_BATCH, RECORD_BYTES);
    let validated = validate_client_batches(batch.clone(), usize::MAX, false).expect("valid");
    let total_mb = if bench_mode() { 64 } else { 1 };
    while log.log_end_offset() == 0 || (log.size_in_bytes() as usize) < total_mb << 20 {
        log.append_as_leader(validated.clone(), 0, 1_700_000_000_000)
            .expect("append");
    }
    let end = log.log_end_offset();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let starts: Vec<i64> = (0..1024).map(|_| rng.gen_range(0..end)).collect();
    let mut group = c.benchmark_group("fetch_read");
    const MAX_BYTES: usize = 1 << 20;
    group.throughput(Throughput::Bytes(MAX_BYTES as u64));
    group.bench_function("read_1MiB_from_random_offset", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % starts.len();
            log.read(starts[i], MAX_BYTES, end, true)
                .expect("read")
                .records
                .len()
        })
    });
    group.finish();
}

fn progress(high_watermark: i64) -> PartitionProgress {
    PartitionProgress::sole_leader_at(high_watermark)
}

fn bench_hwm_advance(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("hwm_advance");
    for waiters in [100usize, 1000] {
        group.throughput(Throughput::Elements(waiters as u64));
        group.bench_with_input(
            BenchmarkId::new("parked_acks_all_released_one_by_one", waiters),
            &waiters,
            |b, &waiters| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let purgatory = Arc::new(ProducePurgatory::new(progress(0)));
                            let tasks: Vec<_> = (0..waiters as i64)
                                .map(|i| {
                                    let wait = ProduceWait {
                                        purgatory: purgatory.clone(),
                                        required_offset: i + 1,
                                        leader_epoch: 0,
                                        min_insync_replicas: 1,
                                    };
                                    tokio::spawn(delayed_produce(
                                        vec![wait],
                                        Duration::from_secs(30),
                                    ))
                                })
                                .collect();
                            // Every waiter parks before the clock starts.
                            tokio::task::yield_now().await;
                            let start = Instant::now();
                            for hw in 1..=waiters as i64 {
                                purgatory.publish(progress(hw));
                                tokio::task::yield_now().await;
                            }
                            for t in tasks {
                                let outcome = t.await.expect("task");
                                assert_eq!(outcome, vec![ProduceWaitOutcome::Replicated]);
                            }
                            total += start.elapsed();
                        }
                        total
                    })
                })
            },
        );
    }
    group.finish();
}

fn bench_coordination(c: &mut Criterion, scratch: &Path) {
    let system = actix_rt::System::new();
    let dir = scratch.join("coordination");
    let (service, client) = system.block_on(async {
        let service = EmbeddedCoordination::start(CoordinationConfig::persistent(&dir))
            .await
            .expect("start the coordination service");
        let (client, _events) =
            coordination::connect(None, Duration::from_secs(30), Some(&service))
                .await
                .expect("session");
        for i in 0..64 {
            client
                .create(&format!("/bench-{i}"), b"{}", CreateMode::Persistent)
                .await
                .expect("create");
        }
        (service, client)
    });
    let data = vec![b'x'; 200];
    let mut group = c.benchmark_group("coordination");
    group.throughput(Throughput::Elements(1));
    group.bench_function("set_data_one_at_a_time", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    client.set_data("/bench-0", &data, None).await.expect("set");
                }
                start.elapsed()
            })
        })
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function("set_data_64_in_flight", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let writes = (0..64).map(|i| {
                        let path = format!("/bench-{i}");
                        let client = &client;
                        let data = &data;
                        async move { client.set_data(&path, data, None).await.expect("set") }
                    });
                    futures::future::join_all(writes).await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    system.block_on(async {
        let _ = client.close().await;
        service.shutdown().await;
    });
}

fn main() {
    let scratch = scratch_dir();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    bench_produce_request(&mut c);
    bench_log_append(&mut c, &scratch);
    bench_index_lookup(&mut c, &scratch);
    bench_fetch_read(&mut c, &scratch);
    bench_hwm_advance(&mut c);
    bench_coordination(&mut c, &scratch);
    c.final_summary();
    let _ = std::fs::remove_dir_all(&scratch);
}
