//! Writes seed inputs for every fuzz target into `fuzz/seeds/<target>/` from real encodings:
//! Kafka requests as a client library encodes them, record batches as producers encode them,
//! a partition log written by weir's own storage, weir's coordination and inter-broker frames,
//! and the repo's `.properties` files. `cargo fuzz cmin` then minimizes them into
//! `fuzz/corpus/<target>/` (see README.md).
//!
//! Run from `fuzz/`: `cargo run --example seed_corpora`.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use kafka_protocol::records::Compression;
use weir::actors::controller::messages::ControlledShutdown;
use weir::actors::coordination::types::{
    self as coord, CreateMode, EventType, SessionEvent, SessionState, WatchedEvent,
};
use weir::actors::coordination::wire::{ClientMessage, ServerMessage, FRAMING};
use weir::actors::replication::{FetchPartition, ReplicaFetch, ReplicaFetchResponse};
use weir::config::TopicConfig;
use weir::storage::batch;
use weir::storage::log::{PartitionLog, TopicPartition};
use weir::transport::peer::{PeerRequest, PeerResponse, TransportError};
use weir::transport::wire::{self, Hello, HelloReply, RequestFrame, ResponseFrame};
use weir_fuzz::client_batch;

const COMPRESSIONS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

struct Seeds {
    dir: PathBuf,
    n: usize,
}

impl Seeds {
    fn new(root: &Path, target: &str) -> Self {
        let dir = root.join(target);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Seeds { dir, n: 0 }
    }

    fn add(&mut self, name: &str, bytes: &[u8]) {
        self.n += 1;
        fs::write(self.dir.join(format!("{:03}-{name}", self.n)), bytes).unwrap();
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Every version of `request` kafka-protocol can encode, as request frames (header + body).
fn request_frames<R: Request + Clone>(seeds: &mut Seeds, name: &str, request: R) {
    let api = ApiKey::try_from(R::KEY).unwrap();
    for version in R::VERSIONS.min..=R::VERSIONS.max {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(s("rdkafka")));
        let mut out = BytesMut::new();
        if header
            .encode(&mut out, api.request_header_version(version))
            .is_err()
        {
            continue;
        }
        if request.encode(&mut out, version).is_ok() {
            seeds.add(&format!("{name}-v{version}"), &out);
        }
    }
}

fn kafka_requests(root: &Path) {
    let mut seeds = Seeds::new(root, "kafka_request");
    let records = client_batch(3, Compression::None);
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(s("orders")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])]);
    request_frames(&mut seeds, "produce", produce);
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(52_428_800)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(s("orders")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(5)
                .with_partition_max_bytes(1_048_576)])]);
    request_frames(&mut seeds, "fetch", fetch);
    request_frames(
        &mut seeds,
        "list_offsets",
        ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)]),
        ]),
    );
    request_frames(
        &mut seeds,
        "metadata",
        MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(TopicName(s("orders"))))])),
    );
    request_frames(
        &mut seeds,
        "api_versions",
        ApiVersionsRequest::default()
            .with_client_software_name(s("librdkafka"))
            .with_client_software_version(s("2.3.0")),
    );
    request_frames(
        &mut seeds,
        "create_topics",
        CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("orders")))
                .with_num_partitions(3)
                .with_replication_factor(2)
                .with_configs(vec![
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(s("cleanup.policy"))
                        .with_value(Some(s("compact"))),
                ])]),
    );
    request_frames(
        &mut seeds,
        "delete_topics",
        DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(s("orders"))])
            .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                .with_name(Some(TopicName(s("orders"))))]),
    );
    request_frames(
        &mut seeds,
        "delete_records",
        DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(3),
                ]),
        ]),
    );
    request_frames(
        &mut seeds,
        "describe_configs",
        DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders")),
        ]),
    );
    request_frames(
        &mut seeds,
        "alter_configs",
        AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("1000")))]),
        ]),
    );
    request_frames(
        &mut seeds,
        "incremental_alter_configs",
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(s("1000"))),
                ]),
        ]),
    );
    request_frames(
        &mut seeds,
        "describe_log_dirs",
        DescribeLogDirsRequest::default(),
    );
    request_frames(
        &mut seeds,
        "create_partitions",
        CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(TopicName(s("orders")))
                .with_count(6),
        ]),
    );
    request_frames(
        &mut seeds,
        "describe_cluster",
        DescribeClusterRequest::default(),
    );
    request_frames(
        &mut seeds,
        "init_producer_id",
        InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    request_frames(
        &mut seeds,
        "offset_for_leader_epoch",
        OffsetForLeaderEpochRequest::default().with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(TopicName(s("orders")))
                .with_partitions(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_leader_epoch(3),
                ]),
        ]),
    );
    request_frames(
        &mut seeds,
        "elect_leaders",
        ElectLeadersRequest::default().with_topic_partitions(Some(vec![
            elect_leaders_request::TopicPartitions::default()
                .with_topic(TopicName(s("orders")))
                .with_partitions(vec![0]),
        ])),
    );
    request_frames(
        &mut seeds,
        "offset_commit",
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(1)
            .with_member_id(s("m-1"))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("orders")))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(42),
                    ]),
            ]),
    );
    request_frames(
        &mut seeds,
        "offset_fetch",
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("orders")))
                    .with_partition_indexes(vec![0]),
            ]))
            .with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g"))),
            ]),
    );
    request_frames(
        &mut seeds,
        "find_coordinator",
        FindCoordinatorRequest::default()
            .with_key(s("g"))
            .with_coordinator_keys(vec![s("g")]),
    );
    let mut protocol_metadata = BytesMut::new();
    protocol_metadata.put_i16(1);
    protocol_metadata.put_i32(1);
    protocol_metadata.put_i16(6);
    protocol_metadata.put_slice(b"orders");
    protocol_metadata.put_i32(-1);
    request_frames(
        &mut seeds,
        "join_group",
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(protocol_metadata.freeze())]),
    );
    request_frames(
        &mut seeds,
        "heartbeat",
        HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(1)
            .with_member_id(s("m-1")),
    );
    request_frames(
        &mut seeds,
        "leave_group",
        LeaveGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s("m-1"))
            .with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(s("m-1"))
            ]),
    );
    request_frames(
        &mut seeds,
        "sync_group",
        SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(1)
            .with_member_id(s("m-1"))
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(s("m-1"))
                    .with_assignment(Bytes::from_static(b"\0\0\0\0\0\0")),
            ]),
    );
    request_frames(
        &mut seeds,
        "describe_groups",
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
    );
    request_frames(&mut seeds, "list_groups", ListGroupsRequest::default());
    request_frames(
        &mut seeds,
        "delete_groups",
        DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
    );
    request_frames(
        &mut seeds,
        "offset_delete",
        OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s("orders")))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(0),
                    ]),
            ]),
    );
    // The old formats kafka-protocol cannot encode: a v0 Produce carrying a v0 message set,
    // and OffsetCommit v1 / OffsetFetch v0 as librdkafka's balanced consumer sends them.
    let mut legacy = BytesMut::new();
    legacy.put_i16(0);
    legacy.put_i16(0);
    legacy.put_i32(9);
    legacy.put_i16(7);
    legacy.put_slice(b"rdkafka");
    legacy.put_i16(1);
    legacy.put_i32(1000);
    legacy.put_i32(1);
    legacy.put_i16(6);
    legacy.put_slice(b"orders");
    legacy.put_i32(1);
    legacy.put_i32(0);
    legacy.put_i32(4);
    legacy.put_slice(b"\0\0\0\0");
    seeds.add("produce-legacy-v0", &legacy);
    let mut commit = BytesMut::new();
    commit.put_i16(8);
    commit.put_i16(1);
    commit.put_i32(11);
    commit.put_i16(-1);
    commit.put_i16(1);
    commit.put_slice(b"g");
    commit.put_i32(3);
    commit.put_i16(3);
    commit.put_slice(b"m-1");
    commit.put_i32(1);
    commit.put_i16(6);
    commit.put_slice(b"orders");
    commit.put_i32(1);
    commit.put_i32(0);
    commit.put_i64(42);
    commit.put_i64(-1);
    commit.put_i16(4);
    commit.put_slice(b"meta");
    seeds.add("offset_commit-legacy-v1", &commit);
    let mut fetch0 = BytesMut::new();
    fetch0.put_i16(9);
    fetch0.put_i16(0);
    fetch0.put_i32(12);
    fetch0.put_i16(-1);
    fetch0.put_i16(1);
    fetch0.put_slice(b"g");
    fetch0.put_i32(1);
    fetch0.put_i16(6);
    fetch0.put_slice(b"orders");
    fetch0.put_i32(1);
    fetch0.put_i32(0);
    seeds.add("offset_fetch-legacy-v0", &fetch0);
}

fn record_batches(root: &Path) {
    let mut seeds = Seeds::new(root, "record_batch");
    for compression in COMPRESSIONS {
        // Flags: bit 0 keys required, bit 1 the default max.message.bytes, bit 2 CRC fixed.
        for (flags, n) in [(3u8, 1), (6, 5)] {
            let mut input = vec![flags];
            input.extend_from_slice(&client_batch(n, compression));
            seeds.add(&format!("{compression:?}-{n}"), &input);
        }
    }
}

/// A log dir as weir writes it (several segments, compressed batches, leader epochs), packed
/// in the `log_recovery` target's format.
fn log_dirs(root: &Path) {
    let mut seeds = Seeds::new(root, "log_recovery");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders-0");
    let config = TopicConfig {
        segment_bytes: 600,
        segment_index_bytes: 1024,
        index_interval_bytes: 64,
        ..TopicConfig::default()
    };
    let mut log =
        PartitionLog::open(&dir, TopicPartition::new("orders", 0), &config, 0, false).unwrap();
    for (i, compression) in COMPRESSIONS.iter().cycle().take(8).enumerate() {
        let batch =
            batch::validate_client_batches(client_batch(3, *compression), 1 << 20, false).unwrap();
        log.append_as_leader(batch, (i / 3) as i32, 1_700_000_000_000 + i as i64)
            .unwrap();
        log.maybe_roll(1_700_000_000_000 + i as i64).unwrap();
    }
    log.close().unwrap();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut packed = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let (kind, base) = match name.split_once('.') {
            Some((stem, "log")) => (0u8, stem.parse::<u16>().unwrap()),
            Some((stem, "index")) => (1, stem.parse().unwrap()),
            Some((stem, "timeindex")) => (2, stem.parse().unwrap()),
            _ if name == "leader-epoch-checkpoint" => (3, 0),
            _ => continue,
        };
        let bytes = fs::read(path).unwrap();
        packed.push(kind);
        packed.extend_from_slice(&base.to_be_bytes());
        packed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        packed.extend_from_slice(&bytes);
    }
    // Unclean from offset 0 (full recovery), clean, and unclean past a recovery point.
    for (name, flags, recovery_point) in [
        ("unclean", 0u8, 0u8),
        ("unclean-crc-fixed", 2, 0),
        ("clean", 1, 0),
        ("rp", 0, 9),
    ] {
        let mut input = vec![flags, recovery_point];
        input.extend_from_slice(&packed);
        seeds.add(name, &input);
        // A crash mid-write: the last file cut short.
        seeds.add(&format!("{name}-torn"), &input[..input.len() - 20]);
    }
}

fn peer_frames(root: &Path) {
    let mut seeds = Seeds::new(root, "peer_frames");
    let mut add = |name: &str, which: u8, frames: Vec<Vec<u8>>| {
        let mut input = vec![which];
        for f in frames {
            input.extend(f);
        }
        seeds.add(name, &input);
    };
    let client = [
        ClientMessage::Connect {
            session_id: None,
            timeout_ms: 6000,
        },
        ClientMessage::Request {
            xid: 1,
            request: coord::Request::Create {
                path: "/brokers/ids/1".into(),
                data: br#"{"version":5,"host":"localhost","port":9092}"#.to_vec(),
                mode: CreateMode::Ephemeral,
            },
        },
        ClientMessage::Request {
            xid: 2,
            request: coord::Request::GetChildren {
                path: "/brokers/topics".into(),
                watch: true,
            },
        },
        ClientMessage::Request {
            xid: 3,
            request: coord::Request::Multi(vec![coord::Op::Check {
                path: "/controller".into(),
                version: Some(0),
            }]),
        },
        ClientMessage::Ping { xid: 4 },
        ClientMessage::Close { xid: 5 },
    ];
    add(
        "coordination-client",
        0,
        client.iter().map(|m| FRAMING.encode(m).unwrap()).collect(),
    );
    let server = [
        ServerMessage::Connected {
            session_id: 7,
            timeout_ms: 6000,
        },
        ServerMessage::Reply {
            xid: 1,
            result: Ok(coord::Response::Created("/brokers/ids/1".into())),
        },
        ServerMessage::Reply {
            xid: 2,
            result: Ok(coord::Response::Data(
                b"{}".to_vec(),
                coord::Stat::default(),
            )),
        },
        ServerMessage::Event(SessionEvent::Watch(WatchedEvent {
            event_type: EventType::NodeChildrenChanged,
            path: "/brokers/topics".into(),
        })),
        ServerMessage::Event(SessionEvent::State(SessionState::Disconnected)),
        ServerMessage::Ack {
            xid: 4,
            result: Ok(()),
        },
    ];
    add(
        "coordination-server",
        1,
        server.iter().map(|m| FRAMING.encode(m).unwrap()).collect(),
    );
    let mut hello = wire::MAGIC.to_vec();
    hello.extend(
        wire::HANDSHAKE
            .encode(&Hello {
                from: 1,
                broker_epoch: 4294967302,
                to: 2,
            })
            .unwrap(),
    );
    // The listener reads the magic before the frames.
    add("hello", 2, vec![hello[4..].to_vec()]);
    add(
        "hello-reply",
        3,
        vec![
            wire::HANDSHAKE
                .encode(&HelloReply::Welcome { broker_id: 2 })
                .unwrap(),
            wire::HANDSHAKE
                .encode(&HelloReply::Refused {
                    reason: "broker epoch 3 is not the registered 4".into(),
                })
                .unwrap(),
        ],
    );
    let framing = wire::framing(104_857_600);
    let requests = [
        RequestFrame {
            id: 1,
            request: PeerRequest::ControlledShutdown(ControlledShutdown {
                broker_id: 2,
                broker_epoch: 42,
            }),
        },
        RequestFrame {
            id: 2,
            request: PeerRequest::ReplicaFetch(ReplicaFetch {
                replica_id: 2,
                broker_epoch: 42,
                max_wait_ms: 500,
                min_bytes: 1,
                max_bytes: 10_485_760,
                partitions: vec![FetchPartition {
                    tp: TopicPartition::new("orders", 0),
                    topic_id: uuid::Uuid::from_u128(0x1234),
                    fetch_offset: 5,
                    current_leader_epoch: 1,
                    last_fetched_epoch: 1,
                    log_start_offset: 0,
                    max_bytes: 1_048_576,
                }],
            }),
        },
    ];
    add(
        "peer-requests",
        4,
        requests
            .iter()
            .map(|m| framing.encode(m).unwrap())
            .collect(),
    );
    let responses = [
        ResponseFrame {
            id: 2,
            result: Ok(PeerResponse::ReplicaFetch(ReplicaFetchResponse::default())),
        },
        ResponseFrame {
            id: 3,
            result: Err(TransportError::Closed(3)),
        },
    ];
    add(
        "peer-responses",
        5,
        responses
            .iter()
            .map(|m| framing.encode(m).unwrap())
            .collect(),
    );
}

fn properties(root: &Path) {
    let mut seeds = Seeds::new(root, "properties");
    let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for entry in fs::read_dir(config_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "properties") {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            seeds.add(&name, &fs::read(&path).unwrap());
        }
    }
    seeds.add(
        "escapes.properties",
        b"# comment\n! bang comment\nlog.dirs = /tmp/a,\\\n    /tmp/b\nlisteners:PLAINTEXT://:9092\n\
          advertised.listeners PLAINTEXT://h\\u0061st:9092\nkey\\ with\\ spaces=\\t\\n\\r\\f\n\
          log.retention.minutes=5\nlog.cleanup.policy=compact,delete\n",
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    kafka_requests(&root);
    record_batches(&root);
    log_dirs(&root);
    peer_frames(&root);
    properties(&root);
    println!("seeds written under {}", root.display());
}
