//! What message-trace logging costs: a produce through a real in-process 3-broker cluster
//! (replication factor 3, `acks=all`: every hook fires on its path — the client request and
//! answer at dispatch, the followers' fetches across the seam, each replica's high-water
//! mark) with the trace off, on (every event written), and on with a filter that keeps
//! nothing (events built, then dropped), and with the browser console's trace tap open and
//! drained (events built and cloned to it, no file); and the hooks themselves with the trace off (one
//! relaxed atomic load each).
//!
//! `cargo bench --bench trace`; the medians are printed at the end. Without `--bench`
//! (cargo test, nextest) every routine runs once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use std::hint::black_box;
use weir::actors::replica::{PartitionProgress, Role};
use weir::cluster::Cluster;
use weir::demo::client::Client;
use weir::storage::TopicPartition;
use weir::trace::{Filter, TraceConfig};

/// Per-configuration produce latencies (µs), for the summary.
static PRODUCE_US: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// One 1 KiB record per request, acks=all, sequentially; returns the time `n` took.
async fn produce(client: &mut Client, n: u64) -> Duration {
    let value = Bytes::from(vec![b'x'; 1024]);
    let start = Instant::now();
    for _ in 0..n {
        let r = client
            .produce("bench", 0, -1, &[(None, value.clone())], 10_000)
            .await
            .expect("produce")
            .expect("an answer");
        assert_eq!(r.error_code, 0);
    }
    start.elapsed()
}

fn bench_produce(c: &mut Criterion) {
    let system = actix_rt::System::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let trace_dir = tempfile::tempdir().expect("temp dir");
    let (cluster, mut client) = system.block_on(async {
        let cluster = Cluster::builder()
            .brokers(3)
            .base_port(0)
            .data_dir(dir.path())
            .worker_threads(2)
            .start()
            .await
            .expect("cluster");
        let controller = cluster.status().controller;
        let addr = cluster.broker(controller).expect("controller").addr;
        let mut admin = Client::connect(addr, "bench").await.expect("connect");
        assert_eq!(
            admin
                .create_topic("bench", -1, -1, Some(&[vec![1, 2, 3]]))
                .await
                .expect("create"),
            0
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cluster
            .status()
            .partitions
            .iter()
            .any(|p| p.topic == "bench" && p.leader == 1 && p.isr.len() == 3)
        {
            assert!(
                Instant::now() < deadline,
                "the bench topic never got a full ISR"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = Client::connect(cluster.broker(1).expect("b1").addr, "bench")
            .await
            .expect("connect");
        (cluster, client)
    });

    let mut group = c.benchmark_group("produce_acks_all_rf3");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    let configs: [(&'static str, Option<Filter>); 3] = [
        ("trace_off", None),
        ("trace_on", Some(Filter::default())),
        (
            "trace_on_filtered_out",
            Some(Filter::parse("cat=meta").expect("filter")),
        ),
    ];
    for (name, filter) in configs {
        let recording = filter.map(|f| {
            weir::trace::start(
                TraceConfig::new(trace_dir.path().join(format!("{name}.jsonl")))
                    .filter(f)
                    // No cap: measure the full cost of writing everything.
                    .rate_per_sec(u32::MAX),
            )
            .expect("trace")
        });
        group.bench_function(name, |b| {
            b.iter_custom(|n| {
                let took = system.block_on(produce(&mut client, n));
                PRODUCE_US
                    .lock()
                    .unwrap()
                    .push((name, took.as_secs_f64() * 1e6 / n.max(1) as f64));
                took
            })
        });
        if let Some(r) = recording {
            let summary = r.finish().expect("trace finished");
            assert_eq!(summary.dropped, 0, "{name} dropped events");
        }
    }
    // The browser console's page connected: the trace tap open, every event cloned to it and
    // drained as the page's event stream does (no recording).
    let name = "console_tap_open";
    let mut subscription = weir::trace::tap::subscribe();
    let drain = system.runtime().spawn(async move {
        let mut seen = 0u64;
        while subscription.recv().await.is_ok() {
            seen += 1;
        }
        seen
    });
    group.bench_function(name, |b| {
        b.iter_custom(|n| {
            let took = system.block_on(produce(&mut client, n));
            PRODUCE_US
                .lock()
                .unwrap()
                .push((name, took.as_secs_f64() * 1e6 / n.max(1) as f64));
            took
        })
    });
    drain.abort();
    group.finish();
    system.block_on(async { cluster.shutdown().await.expect("shutdown") });
}

fn bench_hooks_off(c: &mut Criterion) {
    let tp = TopicPartition {
        topic: "bench".into(),
        partition: 0,
    };
    let progress = PartitionProgress {
        high_watermark: 1,
        log_end_offset: 2,
        log_start_offset: 0,
        recovery_point: 0,
        leader_epoch: 0,
        is_leader: false,
        isr_size: 0,
        stopped: false,
    };
    let (published, _) = tokio::sync::watch::channel(progress);
    let role = Role::Follower { leader: 2 };
    let mut group = c.benchmark_group("hooks_trace_off");
    group.bench_function("replica_progress_hook", |b| {
        b.iter(|| {
            weir::observe::replica::progress(
                black_box(1),
                black_box(&tp),
                black_box(&role),
                black_box(&published),
                black_box(&progress),
            )
        })
    });
    group.bench_function("enabled_check", |b| {
        b.iter(|| black_box(weir::observe::enabled()))
    });
    group.finish();
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_hooks_off(&mut c);
    bench_produce(&mut c);
    c.final_summary();
    if bench_mode() {
        let runs = PRODUCE_US.lock().unwrap().clone();
        println!("\nproduce, 1 KiB, acks=all, RF 3, 3 in-process brokers (median µs per request):");
        for name in [
            "trace_off",
            "trace_on",
            "trace_on_filtered_out",
            "console_tap_open",
        ] {
            let v: Vec<f64> = runs
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .collect();
            if let Some(m) = median(v) {
                println!("  {name:<22} {m:.1}");
            }
        }
    }
}
