//! A raw socket sends every class of bad input; each gets its Kafka error code or a closed
//! connection (after the responses already owed), the broker keeps serving a normal client,
//! and the data stored before is intact.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::rdkafka_client::{consume_all, create_topic, produce_mixed};
use super::Weir;
use crate::support::kafka_request as frame;

const MAX_REQUEST: usize = 1 << 20;
const MAX_MESSAGE: usize = 100_000;

fn connect(bootstrap: &str) -> TcpStream {
    let s = TcpStream::connect(bootstrap).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// The next response frame, or `None` when the broker closed the connection.
fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    match s.read_exact(&mut size) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            return None
        }
        Err(e) => panic!("reading a response: {e}"),
    }
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).expect("a whole response");
    Some(Bytes::from(body))
}

fn response<R: Decodable>(api: ApiKey, version: i16, correlation_id: i32, frame: Bytes) -> R {
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    R::decode(&mut buf, version).unwrap()
}

fn call<Q: Encodable, R: Decodable>(bootstrap: &str, api: ApiKey, version: i16, body: &Q) -> R {
    let mut s = connect(bootstrap);
    s.write_all(&frame(api, version, 7, body)).unwrap();
    let f = read_frame(&mut s).expect("a response");
    response(api, version, 7, f)
}

fn assert_closed(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("{what}: expected the connection to close, got {other:?}"),
    }
}

/// One uncompressed batch of `records` keyed records with `value_size`-byte values.
pub(super) fn batch(records: usize, value_size: usize) -> BytesMut {
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("raw-{i}"))),
            value: Some(Bytes::from(vec![b'x'; value_size])),
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
    .unwrap();
    buf
}

fn produce_request(topic: &str, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn produce_error(bootstrap: &str, topic: &str, acks: i16, records: Bytes) -> i16 {
    let r: ProduceResponse = call(
        bootstrap,
        ApiKey::Produce,
        9,
        &produce_request(topic, acks, records),
    );
    r.responses[0].partition_responses[0].error_code
}

fn metadata_error(bootstrap: &str, topic: &str) -> i16 {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(topic.into())))),
        ]))
        .with_allow_auto_topic_creation(true);
    let r: MetadataResponse = call(bootstrap, ApiKey::Metadata, 12, &request);
    r.topics[0].error_code
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

#[test]
fn bad_input_gets_kafka_errors_or_a_closed_connection_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start_in(
        1,
        0,
        dir.path(),
        &[
            &format!("socket.request.max.bytes={MAX_REQUEST}"),
            &format!("message.max.bytes={MAX_MESSAGE}"),
            "auto.create.topics.enable=false",
        ],
    );
    let b = weir.bootstrap();
    create_topic(&b, "intact", 3);
    let stored = produce_mixed(&b, "intact", "all", 3_000, 3);

    // A frame larger than socket.request.max.bytes: closed before it is read.
    let mut s = connect(&b);
    s.write_all(&((MAX_REQUEST as i32) * 4).to_be_bytes())
        .unwrap();
    s.write_all(&[0u8; 1024]).unwrap();
    assert_closed(&mut s, "oversized frame");
    let mut s = connect(&b);
    s.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert_closed(&mut s, "negative frame size");

    // Truncated: a size prefix promising more than ever comes.
    let mut s = connect(&b);
    s.write_all(&100i32.to_be_bytes()).unwrap();
    s.write_all(&[0u8; 10]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed(&mut s, "truncated frame");

    // Garbage: too short for a header; a known key with a forged array length.
    let mut s = connect(&b);
    s.write_all(&[0, 0, 0, 3, 1, 2, 3]).unwrap();
    assert_closed(&mut s, "garbage frame");
    let mut s = connect(&b);
    let mut forged = frame(
        ApiKey::Metadata,
        1,
        1,
        &MetadataRequest::default().with_topics(Some(vec![])),
    );
    let n = forged.len();
    forged[n - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
    s.write_all(&forged).unwrap();
    assert_closed(&mut s, "forged array length");

    // An unknown API key closes the connection, after the response already owed.
    let mut s = connect(&b);
    let mut pipelined = frame(ApiKey::ApiVersions, 0, 41, &ApiVersionsRequest::default());
    let mut unknown = frame(ApiKey::ApiVersions, 0, 42, &ApiVersionsRequest::default());
    unknown[4..6].copy_from_slice(&999i16.to_be_bytes());
    pipelined.extend_from_slice(&unknown);
    s.write_all(&pipelined).unwrap();
    let owed = read_frame(&mut s).expect("the owed ApiVersions response");
    let versions: ApiVersionsResponse = response(ApiKey::ApiVersions, 0, 41, owed);
    assert_eq!(versions.error_code, 0);
    assert_closed(&mut s, "unknown API key");

    // An unsupported version of a known API: UNSUPPORTED_VERSION.
    let r: MetadataResponse = call(&b, ApiKey::Metadata, 13, &MetadataRequest::default());
    assert_eq!(r.error_code, 35);
    let r: DescribeClusterResponse = call(
        &b,
        ApiKey::DescribeCluster,
        2,
        &DescribeClusterRequest::default(),
    );
    assert_eq!(r.error_code, 35);
    // ApiVersions newer than ours: UNSUPPORTED_VERSION with our table in a v0 body.
    let mut s = connect(&b);
    let mut request = frame(ApiKey::ApiVersions, 3, 5, &ApiVersionsRequest::default());
    request[6..8].copy_from_slice(&9i16.to_be_bytes());
    s.write_all(&request).unwrap();
    let fallback: ApiVersionsResponse =
        response(ApiKey::ApiVersions, 0, 5, read_frame(&mut s).unwrap());
    assert_eq!(fallback.error_code, 35);
    assert!(fallback
        .api_keys
        .iter()
        .any(|k| k.api_key == 0 && k.min_version == 0));

    // Record batches: too large, bad CRC, header and records that disagree.
    assert_eq!(
        produce_error(&b, "intact", 1, batch(1, MAX_MESSAGE + 1_000).freeze()),
        10
    );
    let mut corrupt = batch(5, 10);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(produce_error(&b, "intact", 1, corrupt.freeze()), 2);
    let mut disagree = batch(5, 10);
    disagree[57..61].copy_from_slice(&4i32.to_be_bytes());
    disagree[23..27].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c::crc32c(&disagree[21..]);
    disagree[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(produce_error(&b, "intact", 1, disagree.freeze()), 87);
    // Invalid acks.
    assert_eq!(produce_error(&b, "intact", 5, batch(1, 10).freeze()), 21);
    // Unknown topic (auto-creation off) and invalid topic names.
    assert_eq!(produce_error(&b, "missing", 1, batch(1, 10).freeze()), 3);
    assert_eq!(metadata_error(&b, "missing"), 3);
    assert_eq!(metadata_error(&b, "bad name!"), 17);
    let r: CreateTopicsResponse = call(
        &b,
        ApiKey::CreateTopics,
        5,
        &CreateTopicsRequest::default().with_topics(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("bad/name")))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]),
    );
    assert_eq!(r.topics[0].error_code, 17);

    // A fetch outside [log start, log end].
    let fetch = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("intact")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(1_000_000)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = call(&b, ApiKey::Fetch, 11, &fetch);
    assert_eq!(r.responses[0].partitions[0].error_code, 1);

    // A client that never reads its responses: the broker stops reading from it (the
    // client's writes block) and its memory stays bounded.
    let pid = weir.pid();
    let before = rss_kib(pid);
    let mut greedy = connect(&b);
    greedy.set_nonblocking(true).unwrap();
    let request = frame(ApiKey::Metadata, 12, 1, &MetadataRequest::default());
    let mut sent = 0usize;
    let mut blocked = false;
    let mut pending: &[u8] = &[];
    while sent < 256 << 20 {
        if pending.is_empty() {
            pending = &request;
        }
        match greedy.write(pending) {
            Ok(n) => {
                sent += n;
                pending = &pending[n..];
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Give the broker a moment to drain, then check it still refuses.
                std::thread::sleep(Duration::from_millis(200));
                match greedy.write(pending) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Ok(n) => {
                        sent += n;
                        pending = &pending[n..];
                    }
                    Err(e) => panic!("write: {e}"),
                }
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(
        blocked,
        "the broker kept reading {sent} bytes of requests nobody reads answers to"
    );
    let after = rss_kib(pid);
    assert!(
        after < before + 200 * 1024,
        "broker memory grew from {before} KiB to {after} KiB"
    );

    // A normal client still works, and nothing stored was lost.
    let total: usize = stored.values().map(Vec::len).sum();
    let consumed = consume_all(&b, "intact", 3, total);
    for (p, records) in &stored {
        let got: Vec<_> = consumed[p]
            .iter()
            .map(|(o, k, v, _)| (*o, k.clone(), v.clone()))
            .collect();
        assert_eq!(&got, records, "partition {p}");
    }
    drop(greedy);
}
