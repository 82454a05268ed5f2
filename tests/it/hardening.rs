//! The sweep of Kafka's guards against floods and bad input, on each of weir's ports: the Kafka
//! port of an in-process broker, `weir coordinator`'s port, and the inter-broker port (the
//! peer server's own bad-input and stall tests are in `transport::tcp`). Every attacker is a
//! raw socket; meanwhile a well-behaved client keeps producing and reading back everything it
//! stored, so each case asserts: the attacker's connection is closed (or refused), the server
//! stays up, and nothing stored is lost.
//!
//! Attackers on the Kafka port connect from 127.0.0.2 and 127.0.0.3 (Linux routes the whole
//! 127/8 to loopback), so per-IP limits hit them and not the steady client on 127.0.0.1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{fetch_request, ApiKey, ApiVersionsRequest, BrokerId, FetchRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use weir::actors::coordination::{
    CoordinationConfig, CoordinatorLimits, CoordinatorServer, CreateMode, EmbeddedCoordination,
};
use weir::cluster::Cluster;

use weir::demo::client::Client;

use crate::support::{kafka_request as request, read_response};

/// How long the server has to close a connection it must close.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
const IDLE_MS: u64 = 3000;
const TOPIC: &str = "steady";

/// A connection from `source` (an address on the loopback).
async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.expect("connect")
}

/// Reads (and drops) until the server closes; panics if it stays open past `within`.
async fn assert_closed(stream: &mut TcpStream, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("{what}: the connection is still open after {within:?}"),
        }
    }
}

/// Writes `frame` over and over without reading until the server stops reading (a write
/// blocks for 500 ms); returns the bytes written, which must stay bounded.
async fn flood_without_reading(stream: &mut TcpStream, frame: &[u8]) -> usize {
    let mut written = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_millis(500), stream.write_all(frame)).await {
            Ok(Ok(())) => written += frame.len(),
            Ok(Err(_)) | Err(_) => return written,
        }
        assert!(
            written < 256 << 20,
            "the server kept reading a client that reads nothing: {written} bytes"
        );
    }
}

/// Keeps writing `frame` to a peer that stopped reading it: the server must drop the
/// connection (the writes then fail) within `within`.
async fn assert_dropped_while_blocked(
    stream: &mut TcpStream,
    frame: &[u8],
    within: Duration,
    what: &str,
) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.write_all(frame)).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return,
            Err(_) => panic!("{what}: the connection is still open after {within:?}"),
        }
    }
}

/// A frame with a well-formed size prefix around `body`.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The well-behaved client: produces one more record and reads back every one so far. Like
/// any Kafka client it reconnects when the broker closed its connection for idleness.
struct Steady {
    addr: SocketAddr,
    client: Client,
    stored: Vec<Bytes>,
}

impl Steady {
    /// Creates `topics` (one partition each, the steady client's first), waits for their
    /// leaders, and checks the first record goes in.
    async fn start(cluster: &Cluster, addr: SocketAddr, topics: &[&str]) -> Steady {
        let mut steady = Steady {
            addr,
            client: Client::connect(addr, "test").await.unwrap(),
            stored: Vec::new(),
        };
        for topic in topics {
            assert_eq!(
                steady.client.create_topic(topic, 1, 1, None).await.unwrap(),
                0
            );
        }
        crate::support::wait_until_async(
            "the topics have leaders",
            Duration::from_secs(30),
            || {
                let led = cluster
                    .status()
                    .partitions
                    .iter()
                    .filter(|p| topics.contains(&p.topic.as_str()) && p.leader >= 0)
                    .count();
                async move { (led == topics.len()).then_some(()) }
            },
        )
        .await;
        steady.check("start").await;
        steady
    }

    async fn check(&mut self, after: &str) {
        let value = Bytes::from(format!("record after {after}"));
        let produced = match self
            .client
            .produce_values(TOPIC, 0, -1, std::slice::from_ref(&value), 10_000)
            .await
        {
            Ok(p) => p,
            Err(_) => {
                self.client = Client::connect(self.addr, "test").await.unwrap();
                self.client
                    .produce_values(TOPIC, 0, -1, std::slice::from_ref(&value), 10_000)
                    .await
                    .unwrap_or_else(|e| panic!("the steady client's produce after {after}: {e}"))
            }
        };
        assert_eq!(produced.error_code, 0, "producing after {after}");
        self.stored.push(value);
        let (code, read) = self.client.read_all(TOPIC, 0, 0).await.unwrap();
        assert_eq!(code, 0, "reading after {after}");
        let read: Vec<Bytes> = read.into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            read, self.stored,
            "everything stored is still there after {after}"
        );
    }
}

#[actix::test]
async fn the_kafka_port_survives_floods_and_bad_input_while_a_client_keeps_producing() {
    crate::support::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::builder()
        .brokers(1)
        .base_port(0)
        .data_dir(dir.path())
        .worker_threads(2)
        .set("connections.max.idle.ms", IDLE_MS.to_string())
        .set("queued.max.requests", "8")
        .set("socket.request.max.bytes", (1 << 20).to_string())
        .set("max.connections", "40")
        .set("max.connections.per.ip.overrides", "127.0.0.2:5")
        .start()
        .await
        .expect("cluster starts");
    let addr = cluster.broker(1).unwrap().addr;
    let mut steady = Steady::start(&cluster, addr, &[TOPIC]).await;

    // Bad input, one class per connection: each is closed, nothing else is.
    let mut unknown_key = request(ApiKey::ApiVersions, 0, 1, &ApiVersionsRequest::default());
    unknown_key[4..6].copy_from_slice(&9999i16.to_be_bytes());
    let mut unknown_version = request(ApiKey::Metadata, 0, 1, &ApiVersionsRequest::default());
    unknown_version[6..8].copy_from_slice(&999i16.to_be_bytes());
    let bad_inputs: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\nHost: weir\r\n\r\n".to_vec()),
        ("garbage inside a valid frame", framed(&[0xff; 40])),
        ("an oversized size prefix", i32::MAX.to_be_bytes().to_vec()),
        ("a negative size prefix", (-2i32).to_be_bytes().to_vec()),
        ("an unknown API key", unknown_key),
        ("an unknown API version", unknown_version),
    ];
    for (what, bytes) in bad_inputs {
        let mut attacker = connect_from("127.0.0.3", addr).await;
        attacker.write_all(&bytes).await.unwrap();
        assert_closed(&mut attacker, CLOSE_WITHIN, what).await;
        steady.check(what).await;
    }
    // A truncated frame: the client ends inside it.
    let mut attacker = connect_from("127.0.0.3", addr).await;
    let whole = request(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
    attacker.write_all(&whole[..whole.len() / 2]).await.unwrap();
    attacker.shutdown().await.unwrap();
    assert_closed(&mut attacker, CLOSE_WITHIN, "a truncated frame").await;
    steady.check("a truncated frame").await;

    // connections.max.idle.ms: an idle connection, and a slowloris trickling a partial frame
    // faster than the idle timeout, are both dropped.
    let mut idle = connect_from("127.0.0.3", addr).await;
    let mut slow = connect_from("127.0.0.3", addr).await;
    let trickle = tokio::spawn(async move {
        let frame = framed(&[0u8; 200]);
        let started = Instant::now();
        for byte in frame {
            if slow.write_all(&[byte]).await.is_err() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(IDLE_MS / 4)).await;
        }
        None
    });
    assert_closed(
        &mut idle,
        Duration::from_millis(IDLE_MS) + CLOSE_WITHIN,
        "an idle connection",
    )
    .await;
    let dropped_after = trickle
        .await
        .unwrap()
        .expect("the slowloris is dropped mid-frame");
    assert!(
        dropped_after < Duration::from_millis(IDLE_MS) + CLOSE_WITHIN,
        "the slowloris was dropped after {dropped_after:?}"
    );
    steady.check("idle and slowloris connections").await;

    // A client pipelining fetches of a large record and never reading the answers: the
    // broker stops reading it (its writes block after a bounded amount), then drops it once
    // its answers stall for connections.max.idle.ms.
    let big = Bytes::from(vec![b'b'; 900 * 1024]);
    assert_eq!(
        steady.client.create_topic("big", 1, 1, None).await.unwrap(),
        0
    );
    crate::support::wait_until_async(
        "the big topic has a leader",
        Duration::from_secs(30),
        || async {
            let mut c = Client::connect(addr, "test").await.ok()?;
            c.produce_values("big", 0, 1, std::slice::from_ref(&big), 10_000)
                .await
                .ok()
                .filter(|p| p.error_code == 0)
        },
    )
    .await;
    let fetch = request(
        ApiKey::Fetch,
        11,
        1,
        &FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(weir::demo::client::topic_name("big"))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]),
    );
    let mut flooder = connect_from("127.0.0.3", addr).await;
    let written = flood_without_reading(&mut flooder, &fetch).await;
    eprintln!(
        "a pipelining client that reads nothing got {written} bytes in before its writes blocked"
    );
    steady.check("a pipelining flood").await;
    assert_dropped_while_blocked(
        &mut flooder,
        &fetch,
        Duration::from_millis(IDLE_MS) + CLOSE_WITHIN,
        "a client that never reads",
    )
    .await;

    // max.connections.per.ip (overridden to 5 for 127.0.0.2): the sixth is closed at once.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from("127.0.0.2", addr).await);
    }
    let mut sixth = connect_from("127.0.0.2", addr).await;
    assert_closed(
        &mut sixth,
        Duration::from_secs(1),
        "a sixth connection from 127.0.0.2",
    )
    .await;
    // A slot freed: a new connection from 127.0.0.2 is served again.
    drop(held.pop());
    crate::support::wait_until_async(
        "a connection from 127.0.0.2 is served once a slot is free",
        Duration::from_secs(10),
        || async {
            let mut s = connect_from("127.0.0.2", addr).await;
            let probe = request(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default());
            s.write_all(&probe).await.ok()?;
            let mut size = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut size))
                .await
                .ok()?
                .ok()
        },
    )
    .await;
    drop(held);
    steady.check("per-IP limits").await;

    // max.connections (40 in all): a flood from 127.0.0.3 is refused past it; the steady
    // client's connection keeps working, and once the flood leaves, new clients get in.
    steady.check("before a connection flood").await;
    let mut flood = Vec::new();
    let mut refused = 0;
    for _ in 0..60 {
        let mut s = connect_from("127.0.0.3", addr).await;
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(20), s.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => refused += 1,
            _ => flood.push(s),
        }
    }
    assert!(refused >= 20, "only {refused} of 60 connections refused");
    assert!(
        flood.len() < 40,
        "{} flood connections admitted",
        flood.len()
    );
    steady.check("a connection flood").await;
    drop(flood);
    let mut fresh = crate::support::wait_until_async(
        "a new client is admitted once the flood left",
        Duration::from_secs(10),
        || async {
            let mut c = Client::connect(addr, "test").await.ok()?;
            c.produce_values(TOPIC, 0, 1, &[Bytes::from_static(b"fresh")], 10_000)
                .await
                .ok()
                .filter(|p| p.error_code == 0)
                .map(|_| c)
        },
    )
    .await;
    steady.stored.push(Bytes::from_static(b"fresh"));
    let (_, read) = fresh.read_all(TOPIC, 0, 0).await.unwrap();
    assert_eq!(read.len(), steady.stored.len());
    steady.check("the end").await;
    cluster.shutdown().await.expect("clean shutdown");
}

/// The coordinator's well-behaved client: its znode is still there, and it can still write.
async fn coordinator_still_serves(
    client: &weir::actors::coordination::CoordinationClient,
    after: &str,
) {
    let (data, _) = client
        .get_data("/kept", false)
        .await
        .unwrap_or_else(|e| panic!("reading /kept after {after}: {e}"));
    assert_eq!(data, b"stored before", "after {after}");
    client
        .create(
            "/writes/w-",
            after.as_bytes(),
            CreateMode::PersistentSequential,
        )
        .await
        .unwrap_or_else(|e| panic!("writing after {after}: {e}"));
}

#[actix::test]
async fn the_coordinator_port_survives_floods_and_bad_input_while_a_session_keeps_working() {
    use weir::actors::coordination::wire::{encode_frame, ClientMessage};
    use weir::actors::coordination::Request;
    crate::support::init_test_logging();
    let tick = Duration::from_millis(100);
    let service = EmbeddedCoordination::start(CoordinationConfig::in_memory().with_tick_time(tick))
        .await
        .unwrap();
    let limits = CoordinatorLimits {
        max_client_cnxns: 5,
        max_outstanding: 16,
    };
    let server = CoordinatorServer::bind_with("127.0.0.1:0", service.clone(), limits)
        .await
        .unwrap();
    let addr = server.local_addr();
    let (client, _events) = weir::actors::coordination::connect(
        Some(&format!("weir://{addr}")),
        Duration::from_secs(2),
        None,
    )
    .await
    .unwrap();
    client
        .create("/kept", b"stored before", CreateMode::Persistent)
        .await
        .unwrap();
    client
        .create("/writes", b"", CreateMode::Persistent)
        .await
        .unwrap();
    client
        .create("/big", &vec![7u8; 512 * 1024], CreateMode::Persistent)
        .await
        .unwrap();
    // A session that lasts 1 s (10 ticks): its connection must send a whole frame that often.
    let connect = encode_frame(&ClientMessage::Connect {
        session_id: None,
        timeout_ms: 1000,
    })
    .unwrap();
    let within = Duration::from_secs(1) + CLOSE_WITHIN;

    let mut bad_version = encode_frame(&ClientMessage::Ping { xid: 1 }).unwrap();
    bad_version[4] = 99;
    let bad_inputs: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\nHost: weir\r\n\r\n".to_vec()),
        ("an oversized length", u32::MAX.to_be_bytes().to_vec()),
        ("a negative length", (-2i32).to_be_bytes().to_vec()),
        ("an undecodable message", framed(&[1, 0xc1, 0xc1, 0xc1])),
        ("another protocol version", bad_version),
        (
            "a request before Connect",
            encode_frame(&ClientMessage::Ping { xid: 1 }).unwrap(),
        ),
    ];
    for (what, bytes) in bad_inputs {
        let mut attacker = connect_from("127.0.0.3", addr).await;
        attacker.write_all(&bytes).await.unwrap();
        assert_closed(&mut attacker, CLOSE_WITHIN, what).await;
        coordinator_still_serves(&client, what).await;
    }
    let mut truncated = connect_from("127.0.0.3", addr).await;
    truncated
        .write_all(&connect[..connect.len() - 2])
        .await
        .unwrap();
    truncated.shutdown().await.unwrap();
    assert_closed(&mut truncated, CLOSE_WITHIN, "a truncated frame").await;
    coordinator_still_serves(&client, "a truncated frame").await;

    // A session whose connection stalls inside a frame is dropped within its timeout.
    let mut slow = connect_from("127.0.0.3", addr).await;
    slow.write_all(&connect).await.unwrap();
    let ping = encode_frame(&ClientMessage::Ping { xid: 1 }).unwrap();
    slow.write_all(&ping[..3]).await.unwrap();
    assert_closed(&mut slow, within, "a stalled partial frame").await;
    coordinator_still_serves(&client, "a stalled partial frame").await;

    // Pipelined requests never read: the coordinator stops reading past its outstanding
    // bound, then drops the connection once its answers stall.
    let mut flooder = connect_from("127.0.0.3", addr).await;
    flooder.write_all(&connect).await.unwrap();
    let get_big = encode_frame(&ClientMessage::Request {
        xid: 1,
        request: Request::GetData {
            path: "/big".into(),
            watch: false,
        },
    })
    .unwrap();
    let written = flood_without_reading(&mut flooder, &get_big).await;
    eprintln!(
        "a coordination client that reads nothing got {written} bytes in before its writes blocked"
    );
    coordinator_still_serves(&client, "a pipelining flood").await;
    assert_dropped_while_blocked(&mut flooder, &get_big, within, "a client that never reads").await;

    // maxClientCnxns (5 per IP): the sixth connection from 127.0.0.2 is closed at once.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from("127.0.0.2", addr).await);
    }
    let mut sixth = connect_from("127.0.0.2", addr).await;
    assert_closed(
        &mut sixth,
        Duration::from_secs(1),
        "a sixth connection from 127.0.0.2",
    )
    .await;
    coordinator_still_serves(&client, "a connection flood").await;
    drop(held);

    server.stop();
    service.shutdown().await;
}

/// The broker's request queue now: (requests, bytes, peak bytes). The same numbers are the
/// `weir_request_queue_*` metrics; read here directly, since a paused broker's metrics
/// endpoint waits on its paused actors.
fn request_queue(cluster: &Cluster, broker: i32) -> (usize, u64, u64) {
    let q = &cluster
        .broker(broker)
        .expect("the broker")
        .node
        .request_queue;
    (
        q.queued_requests() as usize,
        q.queued_bytes(),
        q.peak_bytes(),
    )
}

/// Kafka's request channel bound, broker-wide: many connections pipelining produce requests
/// while the broker cannot handle them (paused) hold at most `queued.max.requests` requests
/// and `queued.max.request.bytes` bytes read from their sockets; the rest wait in the clients'
/// TCP windows. Once the broker goes on, every request is answered (none was dropped), every
/// record is stored, and another client is served.
#[actix::test]
async fn many_flooding_connections_hold_no_more_than_the_broker_wide_request_queue() {
    use kafka_protocol::messages::{produce_request, ProduceRequest, ProduceResponse};
    use kafka_protocol::protocol::Decodable;
    use weir::cluster::faults::Fault;
    crate::support::init_test_logging();
    const MAX_REQUESTS: usize = 16;
    const MAX_BYTES: usize = 1 << 20;
    const CONNECTIONS: usize = 24;
    const FRAMES: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::builder()
        .brokers(1)
        .base_port(0)
        .data_dir(dir.path())
        .worker_threads(2)
        .set("queued.max.requests", MAX_REQUESTS.to_string())
        .set("queued.max.request.bytes", MAX_BYTES.to_string())
        .start()
        .await
        .expect("cluster starts");
    let addr = cluster.broker(1).unwrap().addr;
    let mut steady = Steady::start(&cluster, addr, &[TOPIC, "flood"]).await;

    // Produce requests of ~100 KiB: the byte bound binds before the request bound for them,
    // tiny ApiVersions requests in between fill places without bytes.
    let record = Bytes::from(vec![b'f'; 100 * 1024]);
    let produce = |id: i32| {
        request(
            ApiKey::Produce,
            9,
            id,
            &ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(weir::demo::client::topic_name("flood"))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(weir::demo::client::batch(&[(
                                None,
                                record.clone(),
                            )]))),
                    ])]),
        )
    };
    cluster.inject(Fault::Pause(1)).await.expect("pause 1");
    let mut flooders = Vec::new();
    for c in 0..CONNECTIONS {
        let mut stream = connect_from("127.0.0.3", addr).await;
        let frames: Vec<Vec<u8>> = (0..FRAMES as i32)
            .map(|i| {
                if c % 3 == 2 {
                    request(ApiKey::ApiVersions, 3, i, &ApiVersionsRequest::default())
                } else {
                    produce(i)
                }
            })
            .collect();
        flooders.push(tokio::spawn(async move {
            // Writes everything (blocking while the broker does not read), then reads every
            // answer.
            for f in &frames {
                stream.write_all(f).await.expect("the flooder's writes");
            }
            let mut codes = Vec::new();
            for i in 0..FRAMES as i32 {
                let mut frame = read_response(&mut stream).await.expect("an answer");
                if c % 3 == 2 {
                    continue;
                }
                let header = kafka_protocol::messages::ResponseHeader::decode(
                    &mut frame,
                    ApiKey::Produce.response_header_version(9),
                )
                .unwrap();
                assert_eq!(header.correlation_id, i, "answers in request order");
                let response = ProduceResponse::decode(&mut frame, 9).unwrap();
                codes.push(response.responses[0].partition_responses[0].error_code);
            }
            codes
        }));
    }
    // The paused broker reads requests until the queue is full, then no more.
    let full = crate::support::wait_until_async(
        "the request queue fills up",
        Duration::from_secs(20),
        || async {
            let (requests, bytes, _) = request_queue(&cluster, 1);
            assert!(requests <= MAX_REQUESTS, "{requests} requests queued");
            (requests == MAX_REQUESTS || bytes as usize + 110 * 1024 > MAX_BYTES)
                .then_some((requests, bytes))
        },
    )
    .await;
    eprintln!("the request queue filled up at {full:?} (requests, bytes)");
    cluster.inject(Fault::Resume(1)).await.expect("resume 1");
    let mut stored = 0;
    for (c, flooder) in flooders.into_iter().enumerate() {
        let codes = flooder.await.expect("a flooder");
        assert!(codes.iter().all(|c| *c == 0), "flooder {c}: {codes:?}");
        stored += codes.len();
    }
    let (requests, bytes, peak) = request_queue(&cluster, 1);
    assert!(
        peak as usize <= MAX_BYTES,
        "{peak} request bytes were queued at once, over queued.max.request.bytes={MAX_BYTES}"
    );
    eprintln!("peak of queued request bytes: {peak}; now {requests} requests, {bytes} bytes");
    let (code, read) = steady.client.read_all("flood", 0, 0).await.unwrap();
    assert_eq!(code, 0);
    assert_eq!(read.len(), stored, "every flooded record is stored");
    steady.check("a flood of many connections").await;
    cluster.shutdown().await.expect("clean shutdown");
}

/// A connection pipelining long-poll fetches waits on itself (one fetch at a time per
/// connection), not on the broker: its queued fetches are out of the request queue, so a
/// small `queued.max.requests` still serves everyone else at once.
#[actix::test]
async fn pipelined_long_poll_fetches_of_one_connection_leave_the_request_queue_to_others() {
    crate::support::init_test_logging();
    const MAX_REQUESTS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::builder()
        .brokers(1)
        .base_port(0)
        .data_dir(dir.path())
        .worker_threads(2)
        .set("queued.max.requests", MAX_REQUESTS.to_string())
        .start()
        .await
        .expect("cluster starts");
    let addr = cluster.broker(1).unwrap().addr;
    let mut steady = Steady::start(&cluster, addr, &[TOPIC, "empty"]).await;
    // Fetches of an empty partition that wait 3 s each for data that never comes.
    let fetch = |id: i32| {
        request(
            ApiKey::Fetch,
            11,
            id,
            &FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(3000)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(weir::demo::client::topic_name("empty"))
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])]),
        )
    };
    let queue = cluster.broker(1).unwrap().node.request_queue.clone();
    let before = queue.admitted_total();
    let mut poller = connect_from("127.0.0.3", addr).await;
    for id in 0..(4 * MAX_REQUESTS) as i32 {
        poller.write_all(&fetch(id)).await.unwrap();
    }
    // In flight up to the connection's bound, one more handed to its writer, one more read.
    crate::support::wait_until_async(
        "the poller's fetches are in",
        Duration::from_secs(10),
        || {
            let admitted = queue.admitted_total() - before;
            async move { (admitted as usize >= MAX_REQUESTS + 2).then_some(()) }
        },
    )
    .await;
    let started = Instant::now();
    steady.check("pipelined long polls").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the steady client waited {:?} behind another connection's long polls",
        started.elapsed()
    );
    let (requests, _, _) = request_queue(&cluster, 1);
    assert!(
        requests < MAX_REQUESTS,
        "{requests} places held by one connection"
    );
    cluster.shutdown().await.expect("clean shutdown");
}
