//! Every advertised version of every API is answered: a raw socket sends each one (the
//! versions real clients pick are covered by the client tests; this catches a version no
//! client here happens to use) and decodes the answer at that version.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::rdkafka_client::create_topic;
use super::Weir;

/// A raw Kafka connection, for versions and requests no client here sends.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    next: i32,
}

impl Conn {
    pub(super) fn new(bootstrap: &str) -> Self {
        Self::over(TcpStream::connect(bootstrap).unwrap())
    }

    /// A connection from the local address `source` (e.g. another loopback address).
    pub(super) fn from_source(source: std::net::IpAddr, bootstrap: &str) -> Self {
        let to: std::net::SocketAddr = bootstrap.parse().expect("host:port");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let stream = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((source, 0).into()).unwrap();
            socket.connect(to).await.unwrap()
        });
        let stream = stream.into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        Self::over(stream)
    }

    fn over(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        Self { stream, next: 1 }
    }

    /// Sends `body` as `api` v`version`; returns the response body after its header.
    pub(super) fn raw(&mut self, api: ApiKey, version: i16, body: &[u8]) -> Bytes {
        let id = self.next;
        self.next += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("versions")))
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        buf.extend_from_slice(body);
        let mut out = (buf.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&buf);
        self.stream.write_all(&out).unwrap();
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .unwrap_or_else(|e| panic!("{api:?} v{version}: no answer ({e})"));
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame).unwrap();
        let mut frame = Bytes::from(frame);
        // Header v0 for legacy versions decodes the same way (correlation id first).
        let header_version = if version < api.valid_versions().min {
            0
        } else {
            api.response_header_version(version)
        };
        let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
        assert_eq!(header.correlation_id, id, "{api:?} v{version}");
        frame
    }

    pub(super) fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &Q,
    ) -> R {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
        let mut frame = self.raw(api, version, &buf);
        let response =
            R::decode(&mut frame, version).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
        assert!(frame.is_empty(), "{api:?} v{version}: trailing bytes");
        response
    }
}

pub(super) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn batch() -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

#[test]
fn every_advertised_version_of_every_api_is_answered() {
    let weir = Weir::start(1);
    let b = weir.bootstrap();
    create_topic(&b, "v", 1);
    let mut c = Conn::new(&b);

    let versions: ApiVersionsResponse =
        c.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    let table: Vec<(i16, i16, i16)> = versions
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    let range = |api: ApiKey| {
        let (_, min, max) = *table.iter().find(|(k, _, _)| *k == api as i16).unwrap();
        min..=max
    };
    for v in range(ApiKey::ApiVersions) {
        let mut request = ApiVersionsRequest::default();
        if v >= 3 {
            request = request
                .with_client_software_name(StrBytes::from_static_str("versions"))
                .with_client_software_version(StrBytes::from_static_str("1"));
        }
        let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, v, &request);
        assert_eq!(r.error_code, 0, "ApiVersions v{v}");
    }

    let mut topic_id = uuid::Uuid::nil();
    for v in range(ApiKey::Metadata) {
        let r: MetadataResponse = c.call(
            ApiKey::Metadata,
            v,
            &MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("v"))),
            ])),
        );
        assert_eq!(r.topics[0].error_code, 0, "Metadata v{v}");
        if v >= 10 {
            topic_id = r.topics[0].topic_id;
        }
    }
    assert!(!topic_id.is_nil());

    for v in range(ApiKey::Produce) {
        let mut body = BytesMut::new();
        if v < 3 {
            // acks, timeout, no topics: the old formats are answered UNSUPPORTED_VERSION.
            body.extend_from_slice(&[0, 1, 0, 0, 3, 232, 0, 0, 0, 0]);
            c.raw(ApiKey::Produce, v, &body);
            continue;
        }
        assert_eq!(
            produce_to_partition_0(&mut c, v, "v", batch()).0,
            0,
            "Produce v{v}"
        );
    }

    for v in range(ApiKey::Fetch) {
        if v < 4 {
            let mut body = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1];
            if v == 3 {
                body.extend_from_slice(&[0, 0, 16, 0]);
            }
            body.extend_from_slice(&[0, 0, 0, 0]);
            c.raw(ApiKey::Fetch, v, &body);
            continue;
        }
        let mut topic = fetch_request::FetchTopic::default().with_partitions(vec![
            fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20),
        ]);
        topic = if v >= 13 {
            topic.with_topic_id(topic_id)
        } else {
            topic.with_topic(name("v"))
        };
        let mut request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![topic]);
        if v < 15 {
            request = request.with_replica_id(BrokerId(-1));
        }
        let r: FetchResponse = c.call(ApiKey::Fetch, v, &request);
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert!(
            !p.records.as_ref().unwrap().is_empty(),
            "Fetch v{v}: no records"
        );
    }

    for v in range(ApiKey::ListOffsets) {
        if v < 1 {
            c.raw(
                ApiKey::ListOffsets,
                v,
                &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
            );
            continue;
        }
        let r: ListOffsetsResponse = c.call(
            ApiKey::ListOffsets,
            v,
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("v"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ])]),
        );
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset > 0), (0, true), "ListOffsets v{v}");
    }

    for v in range(ApiKey::CreateTopics) {
        if v < 2 {
            c.raw(ApiKey::CreateTopics, v, &[0, 0, 0, 0, 0, 0, 39, 16]);
            continue;
        }
        let topic = format!("ct-{v}");
        let r: CreateTopicsResponse = c.call(
            ApiKey::CreateTopics,
            v,
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(name(&topic))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]),
        );
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
        let r: CreatePartitionsResponse = c.call(
            ApiKey::CreatePartitions,
            v.min(*range(ApiKey::CreatePartitions).end()),
            &CreatePartitionsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(name(&topic))
                        .with_count(2),
                ]),
        );
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions");
    }
    for v in range(ApiKey::CreatePartitions) {
        let r: CreatePartitionsResponse = c.call(
            ApiKey::CreatePartitions,
            v,
            &CreatePartitionsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(name("ct-2"))
                        .with_count(3 + v as i32),
                ]),
        );
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
    }

    for v in range(ApiKey::DeleteTopics) {
        if v < 1 {
            c.raw(ApiKey::DeleteTopics, v, &[0, 0, 0, 0, 0, 0, 39, 16]);
            continue;
        }
        let topic = name(&format!("ct-{}", v + 1));
        let request = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(topic)),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic])
        };
        let r: DeleteTopicsResponse =
            c.call(ApiKey::DeleteTopics, v, &request.with_timeout_ms(10_000));
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
    }

    for v in range(ApiKey::DeleteRecords) {
        let r: DeleteRecordsResponse = c.call(
            ApiKey::DeleteRecords,
            v,
            &DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name("v"))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(v as i64),
                    ])]),
        );
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.low_watermark),
            (0, v as i64),
            "DeleteRecords v{v}"
        );
    }

    for v in range(ApiKey::DescribeConfigs) {
        if v < 1 {
            c.raw(ApiKey::DescribeConfigs, v, &[0, 0, 0, 0]);
            continue;
        }
        let r: DescribeConfigsResponse = c.call(
            ApiKey::DescribeConfigs,
            v,
            &DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("v"))
                    .with_configuration_keys(None),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1"))
                    .with_configuration_keys(None),
            ]),
        );
        assert!(
            r.results
                .iter()
                .all(|r| r.error_code == 0 && !r.configs.is_empty()),
            "DescribeConfigs v{v}"
        );
    }

    for v in range(ApiKey::AlterConfigs) {
        let r: AlterConfigsResponse = c.call(
            ApiKey::AlterConfigs,
            v,
            &AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("v"))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("100000")))]),
            ]),
        );
        assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
    }

    for v in range(ApiKey::IncrementalAlterConfigs) {
        let r: IncrementalAlterConfigsResponse = c.call(
            ApiKey::IncrementalAlterConfigs,
            v,
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("v"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("segment.ms"))
                            .with_config_operation(0)
                            .with_value(Some(StrBytes::from_static_str("100000"))),
                    ]),
            ]),
        );
        assert_eq!(r.responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
    }

    for v in range(ApiKey::DescribeLogDirs) {
        if v < 1 {
            c.raw(ApiKey::DescribeLogDirs, v, &[0xff, 0xff, 0xff, 0xff]);
            continue;
        }
        let r: DescribeLogDirsResponse = c.call(
            ApiKey::DescribeLogDirs,
            v,
            &DescribeLogDirsRequest::default().with_topics(None),
        );
        assert_eq!(r.results.len(), 1, "DescribeLogDirs v{v}");
        assert!(r.results[0].topics.iter().any(|t| t.name.0.as_str() == "v"));
    }

    for v in range(ApiKey::AlterReplicaLogDirs) {
        if v < 1 {
            // v0 (beyond kafka-protocol) is answered UNSUPPORTED_VERSION per partition.
            c.raw(ApiKey::AlterReplicaLogDirs, v, &[0, 0, 0, 0]);
            continue;
        }
        let r: AlterReplicaLogDirsResponse = c.call(
            ApiKey::AlterReplicaLogDirs,
            v,
            &AlterReplicaLogDirsRequest::default().with_dirs(vec![
                alter_replica_log_dirs_request::AlterReplicaLogDir::default()
                    .with_path(StrBytes::from_static_str("/nonexistent/weir-dir"))
                    .with_topics(vec![
                        alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
                            .with_name(name("v"))
                            .with_partitions(vec![0]),
                    ]),
            ]),
        );
        // LOG_DIR_NOT_FOUND
        assert_eq!(
            r.results[0].partitions[0].error_code, 57,
            "AlterReplicaLogDirs v{v}"
        );
    }

    for v in range(ApiKey::DescribeCluster) {
        let mut request = DescribeClusterRequest::default();
        if v >= 1 {
            request = request.with_endpoint_type(1);
        }
        let r: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, v, &request);
        assert_eq!(
            (r.error_code, r.controller_id.0, r.brokers.len()),
            (0, 1, 1),
            "DescribeCluster v{v}"
        );
    }

    // Without an authorizer Kafka answers every ACL request SECURITY_DISABLED (54).
    // v0 (no pattern types), which kafka-protocol cannot encode, by hand: the response's
    // error code follows its throttle time; each creation or filter result starts with one.
    let describe_v0 = c.raw(
        ApiKey::DescribeAcls,
        0,
        &[1, 255, 255, 255, 255, 255, 255, 1, 1],
    );
    assert_eq!(&describe_v0[4..6], &54i16.to_be_bytes(), "DescribeAcls v0");
    let mut creation = vec![0, 0, 0, 1, 2, 0, 1, b'v'];
    creation.extend_from_slice(&[0, 10]);
    creation.extend_from_slice(b"User:alice");
    creation.extend_from_slice(&[0, 1, b'*', 3, 3]);
    let create_v0 = c.raw(ApiKey::CreateAcls, 0, &creation);
    assert_eq!(&create_v0[4..10], &[0, 0, 0, 1, 0, 54], "CreateAcls v0");
    let delete_v0 = c.raw(
        ApiKey::DeleteAcls,
        0,
        &[0, 0, 0, 1, 1, 255, 255, 255, 255, 255, 255, 1, 1],
    );
    assert_eq!(&delete_v0[4..10], &[0, 0, 0, 1, 0, 54], "DeleteAcls v0");
    for v in range(ApiKey::DescribeAcls).filter(|v| *v >= 1) {
        let r: DescribeAclsResponse = c.call(
            ApiKey::DescribeAcls,
            v,
            &DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(3)
                .with_operation(1)
                .with_permission_type(1),
        );
        assert_eq!(r.error_code, 54, "DescribeAcls v{v}");
    }
    for v in range(ApiKey::CreateAcls).filter(|v| *v >= 1) {
        let creation = create_acls_request::AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("v"))
            .with_resource_pattern_type(3)
            .with_principal(StrBytes::from_static_str("User:alice"))
            .with_host(StrBytes::from_static_str("*"))
            .with_operation(3)
            .with_permission_type(3);
        let r: CreateAclsResponse = c.call(
            ApiKey::CreateAcls,
            v,
            &CreateAclsRequest::default().with_creations(vec![creation.clone(), creation]),
        );
        let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, [54, 54], "CreateAcls v{v}");
    }
    for v in range(ApiKey::DeleteAcls).filter(|v| *v >= 1) {
        let r: DeleteAclsResponse = c.call(
            ApiKey::DeleteAcls,
            v,
            &DeleteAclsRequest::default().with_filters(vec![
                delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(3)
                    .with_operation(1)
                    .with_permission_type(1),
            ]),
        );
        let codes: Vec<i16> = r.filter_results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, [54], "DeleteAcls v{v}");
    }

    // Idempotent producers get a fresh id with epoch 0 each time; transactional ids are
    // refused (transactions are not served).
    let mut last_id = -1;
    for v in range(ApiKey::InitProducerId) {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, v, &request);
        assert_eq!(
            (r.error_code, r.producer_epoch),
            (0, 0),
            "InitProducerId v{v}"
        );
        assert!(
            r.producer_id.0 > last_id,
            "InitProducerId v{v} reused an id"
        );
        last_id = r.producer_id.0;
        let transactional = request
            .clone()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))));
        let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, v, &transactional);
        assert_eq!(r.error_code, 35, "transactional InitProducerId v{v}");
    }
}

/// One record from `producer_id` (epoch 0) with sequence `sequence`, stamped now (a
/// producer's state expires `producer.id.expiration.ms` after its last batch's timestamp).
pub(super) fn idempotent_batch(producer_id: i64, sequence: i32) -> Bytes {
    producer_batch(producer_id, sequence, false)
}

/// [`idempotent_batch`] flagged as part of a transaction.
pub(super) fn transactional_batch(producer_id: i64, sequence: i32) -> Bytes {
    producer_batch(producer_id, sequence, true)
}

fn producer_batch(producer_id: i64, sequence: i32, transactional: bool) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let record = Record {
        transactional,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence,
        timestamp: now,
        key: None,
        value: Some(Bytes::from(format!("seq {sequence}"))),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Produce v`version` with acks=all of `records` to `topic`-0: (error code, base offset).
pub(super) fn produce_to_partition_0(
    c: &mut Conn,
    version: i16,
    topic: &str,
    records: Bytes,
) -> (i16, i64) {
    let r: ProduceResponse = c.call(
        ApiKey::Produce,
        version,
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ])]),
    );
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Kafka answers a retried batch like the original append (no error, the original base
/// offset) and a sequence gap with OUT_OF_ORDER_SEQUENCE_NUMBER.
#[test]
fn a_retried_idempotent_produce_is_answered_with_its_original_offset() {
    let weir = Weir::start(1);
    let b = weir.bootstrap();
    create_topic(&b, "idem", 1);
    let mut c = Conn::new(&b);
    let r: InitProducerIdResponse = c.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_eq!(r.error_code, 0);
    let pid = r.producer_id.0;
    let mut produce =
        |sequence: i32| produce_to_partition_0(&mut c, 9, "idem", idempotent_batch(pid, sequence));
    assert_eq!(produce(0), (0, 0));
    assert_eq!(produce(1), (0, 1));
    assert_eq!(
        produce(1),
        (0, 1),
        "a retry is answered with its original offset"
    );
    assert_eq!(produce(0), (0, 0));
    assert_eq!(produce(5).0, 45, "a gap is OUT_OF_ORDER_SEQUENCE_NUMBER");
    assert_eq!(produce(2), (0, 2), "nothing was stored for the retries");
}

#[test]
fn pipelined_responses_come_back_in_request_order() {
    let weir = Weir::start(1);
    let b = weir.bootstrap();
    create_topic(&b, "pipelined", 1);
    let mut c = Conn::new(&b);
    // A long-poll fetch at the log end (nothing to return for 400 ms), then a request the
    // broker can answer at once: the second answer must wait for the first.
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(400)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name("pipelined"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let mut frames = Vec::new();
    for (id, (api, version, body)) in [
        (ApiKey::Fetch, 11i16, {
            let mut buf = BytesMut::new();
            fetch.encode(&mut buf, 11).unwrap();
            buf
        }),
        (ApiKey::ApiVersions, 2, {
            let mut buf = BytesMut::new();
            ApiVersionsRequest::default().encode(&mut buf, 2).unwrap();
            buf
        }),
    ]
    .into_iter()
    .enumerate()
    {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(id as i32 + 100)
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        buf.extend_from_slice(&body);
        frames.extend_from_slice(&(buf.len() as i32).to_be_bytes());
        frames.extend_from_slice(&buf);
    }
    let start = std::time::Instant::now();
    c.stream.write_all(&frames).unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut size = [0u8; 4];
        c.stream.read_exact(&mut size).unwrap();
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        c.stream.read_exact(&mut frame).unwrap();
        ids.push(i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]));
    }
    assert_eq!(ids, vec![100, 101]);
    assert!(
        start.elapsed() >= Duration::from_millis(350),
        "the fetch did not long-poll"
    );
}
