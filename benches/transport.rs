//! Inter-broker seam benches: a replica fetch answered with 1 MiB of stored batch bytes, and a
//! small controller request, through the in-process seam ([`LocalTransport`]) and through the
//! TCP one ([`TcpTransport`] to a [`PeerServer`] on loopback, rmp-serde framed), so the cost
//! of crossing processes is the difference of the two.
//!
//! `cargo bench --bench transport`. Without `--bench` (cargo test, nextest) every routine runs
//! once.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use futures::future::BoxFuture;
use weir::actors::controller::messages::ControlledShutdown;
use weir::actors::replication::{FetchedPartition, ReplicaFetch, ReplicaFetchResponse};
use weir::storage::TopicPartition;
use weir::transport::peer::{
    LocalTransport, PeerHandler, PeerRequest, PeerResponse, PeerTransport, Peers, TransportError,
};
use weir::transport::server::{PeerAuthority, PeerServer, ServerLimits};
use weir::transport::tcp::{PeerDirectory, TcpSettings, TcpTransport};
use weir::transport::LinkFaults;

const MIB: usize = 1 << 20;

/// Answers a fetch with `records` and a controlled shutdown with nothing left.
struct Leader {
    records: Bytes,
}

impl PeerHandler for Leader {
    fn handle(
        &self,
        _from: i32,
        request: PeerRequest,
    ) -> BoxFuture<'static, Result<PeerResponse, TransportError>> {
        let records = self.records.clone();
        Box::pin(async move {
            Ok(match request {
                PeerRequest::ReplicaFetch(f) => PeerResponse::ReplicaFetch(ReplicaFetchResponse {
                    partitions: f
                        .partitions
                        .into_iter()
                        .map(|p| FetchedPartition {
                            tp: p.tp,
                            error: None,
                            high_watermark: 0,
                            log_start_offset: 0,
                            log_end_offset: 0,
                            diverging_epoch: None,
                            records: records.clone(),
                        })
                        .collect(),
                }),
                _ => PeerResponse::ControlledShutdown(Ok(vec![])),
            })
        })
    }
}

struct Admit;

impl PeerAuthority for Admit {
    fn registered_epoch(&self, _: i32) -> BoxFuture<'static, Result<Option<i64>, String>> {
        Box::pin(async { Ok(Some(1)) })
    }
}

struct At(String);

impl PeerDirectory for At {
    fn address(&self, _: i32) -> BoxFuture<'static, Option<String>> {
        let addr = self.0.clone();
        Box::pin(async move { Some(addr) })
    }
}

fn fetch() -> ReplicaFetch {
    ReplicaFetch {
        replica_id: 1,
        broker_epoch: 1,
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 10 * MIB as u32,
        partitions: vec![weir::actors::replication::FetchPartition {
            tp: TopicPartition {
                topic: "bench".into(),
                partition: 0,
            },
            topic_id: uuid::Uuid::nil(),
            fetch_offset: 0,
            current_leader_epoch: 0,
            last_fetched_epoch: -1,
            log_start_offset: 0,
            max_bytes: 2 * MIB as u32,
        }],
    }
}

fn main() {
    // Without `--bench` criterion runs each routine once (as a test).
    let mut c = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let leader = Arc::new(Leader {
        records: Bytes::from(vec![7u8; MIB]),
    });

    let local = LocalTransport::new(LinkFaults::new());
    local.register(2, leader.clone());
    let timeout = Duration::from_secs(30);
    let local_peers = Peers::new(1, local as Arc<dyn PeerTransport>, timeout);

    let tcp_peers = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let limits = ServerLimits {
            max_frame_len: 100 * MIB,
            max_in_flight: 64,
            handshake_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(5),
        };
        let server = PeerServer::new(2, leader.clone(), Arc::new(Admit), limits);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().serve(stream));
            }
        });
        let settings = TcpSettings {
            request_timeout: timeout,
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 64,
            max_frame_len: 100 * MIB,
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
        };
        let transport =
            TcpTransport::new(1, Arc::new(AtomicI64::new(1)), Arc::new(At(addr)), settings);
        Peers::new(1, transport as Arc<dyn PeerTransport>, timeout)
    });

    let mut group = c.benchmark_group("transport");
    group.throughput(Throughput::Bytes(MIB as u64));
    for (name, peers) in [("local", &local_peers), ("tcp", &tcp_peers)] {
        group.bench_function(format!("replica_fetch_1MiB_{name}"), |b| {
            b.iter(|| {
                let answer = runtime.block_on(peers.replica_fetch(2, fetch())).unwrap();
                assert_eq!(answer.partitions[0].records.len(), MIB);
            })
        });
    }
    group.throughput(Throughput::Elements(1));
    for (name, peers) in [("local", &local_peers), ("tcp", &tcp_peers)] {
        group.bench_function(format!("controller_request_{name}"), |b| {
            b.iter(|| {
                runtime
                    .block_on(peers.controlled_shutdown(
                        2,
                        ControlledShutdown {
                            broker_id: 1,
                            broker_epoch: 1,
                        },
                    ))
                    .unwrap()
                    .unwrap()
            })
        });
    }
    group.finish();
    c.final_summary();
}
