//! Producers writing faster than the disk: broker 1's `log.dirs` is an ext4 file system on a
//! loop device whose writes the kernel throttles (a blkio cgroup's `write_bps_device`, the
//! test process moved into it), and every append is fsynced (`log.flush.interval.messages=1`,
//! Kafka's synchronous flush in the append), so the disk really is the bottleneck. Producers
//! pipeline requests as fast as TCP lets them; the broker must hold bounded memory (its
//! request queue within `queued.max.request.bytes`, its RSS about flat), the producers must
//! be slowed (their requests wait), and every acknowledged record must be readable after.
//!
//! cgroup v1's throttle applies only to writes the process itself submits (fsync, direct
//! I/O), which is why the flush is synchronous here. Setting up needs root, a loop device,
//! `mkfs.ext4` and cgroup v1's blkio controller; where any is missing the test prints why
//! and returns (skipped, not silently passed).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{produce_request, ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::Decodable;
use tokio::io::AsyncWriteExt;
use weir::cluster::Cluster;
use weir::demo::client::{topic_name, Client};

use crate::loop_disk::LoopDisk;
use crate::support::{kafka_request, read_response, wait_until_async};

const TOPIC: &str = "slow";
/// What the throttled device takes, in bytes per second.
const DISK_BPS: u64 = 1 << 20;
const QUEUE_BYTES: u64 = 1 << 20;
const RECORD: usize = 16 * 1024;
const PRODUCERS: usize = 4;
const FLOOD: Duration = Duration::from_secs(3);

/// This process's resident set, in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Producer `id`'s record `n`.
fn record(id: usize, n: i32) -> Bytes {
    let mut value = format!("producer-{id}-record-{n}-").into_bytes();
    value.resize(RECORD, b'.');
    Bytes::from(value)
}

/// What one producer saw.
#[derive(Default)]
struct Produced {
    /// (offset, value) of every acknowledged record.
    acked: Vec<(i64, Bytes)>,
    errors: Vec<i16>,
    max_latency: Duration,
    sent: usize,
}

/// Pipelines produce requests (acks=1, one record each) until `stop`, reading the answers
/// as they come until `answer_until`.
async fn produce_flat_out(
    addr: std::net::SocketAddr,
    id: usize,
    stop: Arc<AtomicBool>,
    offered: Arc<AtomicU64>,
    answer_until: Instant,
) -> Produced {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    // What was sent, to match the answers: not the records (the test must not hold what the
    // broker is being tested for holding), which `record` makes again.
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, i32)>();
    let writer = tokio::spawn(async move {
        let mut n = 0i32;
        while !stop.load(Ordering::Relaxed) {
            let value = record(id, n);
            let frame = kafka_request(
                ApiKey::Produce,
                9,
                n,
                &ProduceRequest::default()
                    .with_acks(1)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![produce_request::TopicProduceData::default()
                        .with_name(topic_name(TOPIC))
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(weir::demo::client::batch(&[(None, value)]))),
                        ])]),
            );
            // A write the broker does not take within the flood is cut short by `stop`.
            let started = Instant::now();
            let written = tokio::select! {
                r = wr.write_all(&frame) => r.is_ok(),
                _ = async { while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                } } => false,
            };
            if !written {
                break;
            }
            offered.fetch_add(frame.len() as u64, Ordering::Relaxed);
            let _ = sent_tx.send((started, n));
            n += 1;
        }
        n as usize
    });
    let mut out = Produced::default();
    let answer_until = tokio::time::Instant::from_std(answer_until);
    while let Ok(Some((started, n))) = tokio::time::timeout_at(answer_until, sent_rx.recv()).await {
        let Ok(Ok(mut frame)) = tokio::time::timeout_at(answer_until, read_response(&mut rd)).await
        else {
            break;
        };
        out.max_latency = out.max_latency.max(started.elapsed());
        let _header = kafka_protocol::messages::ResponseHeader::decode(
            &mut frame,
            ApiKey::Produce.response_header_version(9),
        )
        .unwrap();
        let response = ProduceResponse::decode(&mut frame, 9).unwrap();
        let p = &response.responses[0].partition_responses[0];
        if p.error_code == 0 {
            out.acked.push((p.base_offset, record(id, n)));
        } else {
            out.errors.push(p.error_code);
        }
    }
    out.sent = writer.await.unwrap_or(0);
    out
}

#[actix::test]
async fn producers_faster_than_the_disk_are_slowed_with_bounded_broker_memory_and_lose_nothing() {
    crate::support::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    let disk = LoopDisk::mount(
        &dir.path().join("disk.img"),
        &dir.path().join("data/broker-1"),
        true,
    )
    .and_then(|mut disk| disk.throttle_writes(DISK_BPS).map(|()| disk));
    let disk = match disk {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("SKIPPED producers_faster_than_the_disk...: cannot make a slow disk ({why}); this test needs root, losetup, mkfs.ext4 and cgroup v1 blkio");
            return;
        }
    };
    let cluster = Cluster::builder()
        .brokers(1)
        .base_port(0)
        .data_dir(dir.path().join("data"))
        .worker_threads(2)
        .set("log.flush.interval.messages", "1")
        .set("queued.max.request.bytes", QUEUE_BYTES.to_string())
        .start()
        .await
        .expect("cluster starts");
    let addr = cluster.broker(1).unwrap().addr;
    let mut client = Client::connect(addr, "test").await.unwrap();
    assert_eq!(client.create_topic(TOPIC, 1, 1, None).await.unwrap(), 0);
    wait_until_async("the topic has a leader", Duration::from_secs(30), || {
        let led = cluster
            .status()
            .partitions
            .iter()
            .any(|p| p.topic == TOPIC && p.leader >= 0);
        async move { led.then_some(()) }
    })
    .await;

    let rss_before = rss();
    let stop = Arc::new(AtomicBool::new(false));
    let offered = Arc::new(AtomicU64::new(0));
    // Answers owed when the flood stops come at the disk's pace; those not in by then are
    // not acknowledged (and need not be stored).
    let answer_until = Instant::now() + FLOOD + Duration::from_secs(3);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            tokio::spawn(produce_flat_out(
                addr,
                id,
                stop.clone(),
                offered.clone(),
                answer_until,
            ))
        })
        .collect();
    let started = Instant::now();
    let mut rss_max = rss_before;
    while started.elapsed() < FLOOD {
        rss_max = rss_max.max(rss());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut max_latency = Duration::ZERO;
    let mut sent = 0;
    for p in producers {
        let p = p.await.expect("a producer");
        assert!(p.errors.is_empty(), "produce errors: {:?}", p.errors);
        max_latency = max_latency.max(p.max_latency);
        sent += p.sent;
        acked.extend(p.acked);
    }
    rss_max = rss_max.max(rss());
    let queue = &cluster.broker(1).unwrap().node.request_queue;
    let acked_bytes = (acked.len() * RECORD) as u64;
    eprintln!(
        "in {FLOOD:?} producers got {} bytes of requests in ({sent} requests), {} records \
         ({acked_bytes} bytes) acknowledged, slowest answer {max_latency:?}; the broker's \
         request queue peaked at {} bytes; RSS {} → {} MiB at most",
        offered.load(Ordering::Relaxed),
        acked.len(),
        queue.peak_bytes(),
        rss_before >> 20,
        rss_max >> 20,
    );
    // The disk was the bottleneck: the producers were answered at about its pace (well under
    // what a page-cache append takes), and kept waiting.
    assert!(!acked.is_empty(), "nothing was acknowledged");
    assert!(
        acked_bytes < 4 * DISK_BPS * FLOOD.as_secs() + QUEUE_BYTES,
        "{acked_bytes} bytes acknowledged in {FLOOD:?}: the disk was not slower than the producers"
    );
    assert!(
        max_latency > Duration::from_millis(300),
        "the producers were never made to wait (slowest answer {max_latency:?})"
    );
    // Bounded memory: the requests read and not yet appended stayed within the bound.
    assert!(
        queue.peak_bytes() <= QUEUE_BYTES,
        "{} request bytes queued at once, over queued.max.request.bytes={QUEUE_BYTES}",
        queue.peak_bytes()
    );
    assert!(
        rss_max.saturating_sub(rss_before) < 32 << 20,
        "RSS grew by {} MiB",
        (rss_max - rss_before) >> 20
    );
    // Nothing acknowledged is lost.
    let (code, stored) = client.read_all(TOPIC, 0, 0).await.unwrap();
    assert_eq!(code, 0);
    let stored: std::collections::HashMap<i64, Bytes> = stored.into_iter().collect();
    for (offset, value) in &acked {
        assert_eq!(
            stored.get(offset),
            Some(value),
            "the record acknowledged at offset {offset}"
        );
    }
    cluster.shutdown().await.expect("clean shutdown");
    drop(disk);
}
