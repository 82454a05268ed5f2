//! A small async Kafka client over a raw socket, for tests that need exact control: which
//! broker a request goes to, which error code comes back, no client-side retries. Real
//! clients are exercised by the `kafka_clients` tests; this one speaks the same protocol
//! through the `kafka-protocol` crate.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct WireClient {
    stream: TcpStream,
    next: i32,
}

/// One produce answer for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub error_code: i16,
    pub base_offset: i64,
}

/// One fetch answer for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub error_code: i16,
    pub high_watermark: i64,
    /// (offset, value) of every record returned.
    pub records: Vec<(i64, Bytes)>,
}

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// One uncompressed batch with these values (no keys).
pub fn batch(values: &[Bytes]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(v.clone()),
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
    .expect("encode batch");
    buf.freeze()
}

impl WireClient {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
        stream.set_nodelay(true)?;
        Ok(Self { stream, next: 1 })
    }

    pub async fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &Q,
    ) -> std::io::Result<R> {
        let id = self.next;
        self.next += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")))
            .encode(&mut buf, api.request_header_version(version))
            .expect("header");
        body.encode(&mut buf, version).expect("body");
        let mut out = (buf.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&buf);
        self.stream.write_all(&out).await?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await?;
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame).await?;
        let mut frame = Bytes::from(frame);
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        assert_eq!(header.correlation_id, id);
        R::decode(&mut frame, version).map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Produce v9 of one batch of `values` to one partition.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        values: &[Bytes],
        timeout_ms: i32,
    ) -> std::io::Result<Produced> {
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch(values))),
                ])]);
        let response: ProduceResponse = self.call(ApiKey::Produce, 9, &request).await?;
        let p = &response.responses[0].partition_responses[0];
        Ok(Produced {
            error_code: p.error_code,
            base_offset: p.base_offset,
        })
    }

    /// Fetch v11 (read_uncommitted) of one partition from `offset`, waiting up to
    /// `max_wait_ms` for data.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> std::io::Result<Fetched> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_isolation_level(0)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(8 << 20)])]);
        let response: FetchResponse = self.call(ApiKey::Fetch, 11, &request).await?;
        let p = &response.responses[0].partitions[0];
        let mut records = Vec::new();
        if let Some(mut bytes) = p.records.clone() {
            let sets = RecordBatchDecoder::decode_all(&mut bytes)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            for set in sets {
                for r in set.records {
                    records.push((r.offset, r.value.unwrap_or_default()));
                }
            }
        }
        Ok(Fetched {
            error_code: p.error_code,
            high_watermark: p.high_watermark,
            records,
        })
    }

    /// Every record from `offset` to the high-water mark.
    pub async fn read_all(
        &mut self,
        topic: &str,
        partition: i32,
        mut offset: i64,
    ) -> std::io::Result<(i16, Vec<(i64, Bytes)>)> {
        let mut out = Vec::new();
        loop {
            let fetched = self.fetch(topic, partition, offset, 0).await?;
            if fetched.error_code != 0 {
                return Ok((fetched.error_code, out));
            }
            if fetched.records.is_empty() {
                return Ok((0, out));
            }
            for (o, v) in fetched.records {
                if o >= offset {
                    offset = o + 1;
                    out.push((o, v));
                }
            }
        }
    }

    /// CreateTopics v5 with explicit partitions, replication factor and configs.
    pub async fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> std::io::Result<i16> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            create_topics_request::CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_value(Some(StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                )]);
        let response: CreateTopicsResponse = self.call(ApiKey::CreateTopics, 5, &request).await?;
        Ok(response.topics[0].error_code)
    }
}
