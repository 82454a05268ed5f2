//! A small Kafka client over a raw socket, for the demos: each request goes to the broker the
//! scenario names, with the `client.id` that names the client in the diagram, and nothing is
//! retried behind the scenario's back (a real client's retries are what the scenarios show,
//! step by step). It speaks the protocol through the `kafka-protocol` crate, as the
//! integration tests' client does. `weir chaos` builds its idempotent producer on it
//! ([`Client::init_producer_id`], [`stamped_batch`], [`Client::produce_batch`]) and does
//! its own retrying.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Kafka's error codes the scenarios react to.
pub mod code {
    pub const NONE: i16 = 0;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
}

/// How long one request may take before the scenario gives up.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

pub struct Client {
    stream: TcpStream,
    next: i32,
    client_id: String,
    /// How long one request may wait for its answer.
    deadline: Duration,
}

/// The idempotent producer's stamp on a batch: producer id, epoch, and the sequence number of
/// its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// One partition's produce answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub error_code: i16,
    pub base_offset: i64,
}

/// One partition's fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub error_code: i16,
    pub high_watermark: i64,
    /// (offset, key, value) of every record returned.
    pub records: Vec<(i64, Option<Bytes>, Bytes)>,
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// One uncompressed batch of (key, value) records.
pub fn batch(records: &[(Option<Bytes>, Bytes)]) -> Bytes {
    stamped_batch(records, None)
}

/// One uncompressed batch of (key, value) records, stamped for an idempotent producer when
/// `stamp` is given (record i gets sequence `base_sequence + i`).
pub fn stamped_batch(records: &[(Option<Bytes>, Bytes)], stamp: Option<ProducerStamp>) -> Bytes {
    let (producer_id, producer_epoch, base_sequence) = stamp
        .map(|s| (s.producer_id, s.producer_epoch, s.base_sequence))
        .unwrap_or((-1, -1, -1));
    let now = crate::protocol::api::now_ms();
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if base_sequence < 0 {
                -1
            } else {
                base_sequence.wrapping_add(i as i32)
            },
            timestamp: now,
            key: k.clone(),
            value: Some(v.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    // Encoding plain records into a buffer cannot fail.
    let _ = RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    );
    buf.freeze()
}

impl Client {
    pub async fn connect(addr: SocketAddr, client_id: &str) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr} timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            next: 1,
            client_id: client_id.to_string(),
            deadline: REQUEST_DEADLINE,
        })
    }

    /// How long each request waits for its answer (60 s unless set). After a request timed
    /// out, its answer may still arrive: drop the client rather than reuse it.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    async fn send<Q: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &Q,
    ) -> anyhow::Result<i32> {
        let id = self.next;
        self.next += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(str_bytes(&self.client_id)))
            .encode(&mut buf, api.request_header_version(version))?;
        body.encode(&mut buf, version)?;
        let mut out = Vec::with_capacity(buf.len() + 4);
        out.put_i32(buf.len() as i32);
        out.extend_from_slice(&buf);
        self.stream.write_all(&out).await?;
        Ok(id)
    }

    /// One request and its answer.
    pub async fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &Q,
    ) -> anyhow::Result<R> {
        let id = self.send(api, version, body).await?;
        let read = async {
            let mut size = [0u8; 4];
            self.stream.read_exact(&mut size).await?;
            let mut frame = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
            self.stream.read_exact(&mut frame).await?;
            Ok::<_, std::io::Error>(Bytes::from(frame))
        };
        let mut frame = tokio::time::timeout(self.deadline, read)
            .await
            .with_context(|| format!("{api:?} got no answer"))?
            .with_context(|| format!("{api:?}: the broker closed the connection"))?;
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))?;
        anyhow::ensure!(header.correlation_id == id, "answer to another request");
        R::decode(&mut frame, version)
    }

    /// Metadata v9 for `topics` (all topics when empty), without auto-creation.
    pub async fn metadata(&mut self, topics: &[&str]) -> anyhow::Result<MetadataResponse> {
        let request = MetadataRequest::default()
            .with_topics(if topics.is_empty() {
                None
            } else {
                Some(
                    topics
                        .iter()
                        .map(|t| {
                            metadata_request::MetadataRequestTopic::default()
                                .with_name(Some(topic_name(t)))
                        })
                        .collect(),
                )
            })
            .with_allow_auto_topic_creation(false);
        self.call(ApiKey::Metadata, 9, &request).await
    }

    /// The leader of each partition of `topic`, as this broker's metadata says.
    pub async fn leaders(&mut self, topic: &str) -> anyhow::Result<Vec<(i32, i32)>> {
        let m = self.metadata(&[topic]).await?;
        let t = m
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
            .context("the topic is not in the metadata")?;
        let mut leaders: Vec<(i32, i32)> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        leaders.sort();
        Ok(leaders)
    }

    /// CreateTopics v5; `assignment` (replicas per partition, in order) replaces the count
    /// and replication factor when given. Returns the error code.
    pub async fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        assignment: Option<&[Vec<i32>]>,
    ) -> anyhow::Result<i16> {
        let mut creatable =
            create_topics_request::CreatableTopic::default().with_name(topic_name(topic));
        match assignment {
            Some(replicas) => {
                creatable = creatable
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(
                        replicas
                            .iter()
                            .enumerate()
                            .map(|(p, r)| {
                                create_topics_request::CreatableReplicaAssignment::default()
                                    .with_partition_index(p as i32)
                                    .with_broker_ids(r.iter().map(|b| BrokerId(*b)).collect())
                            })
                            .collect(),
                    );
            }
            None => {
                creatable = creatable
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication_factor);
            }
        }
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![creatable]);
        let response: CreateTopicsResponse = self.call(ApiKey::CreateTopics, 5, &request).await?;
        Ok(response.topics.first().map(|t| t.error_code).unwrap_or(-1))
    }

    /// Produce v9 of one batch to one partition. `None` for `acks=0` (no answer comes).
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        records: &[(Option<Bytes>, Bytes)],
        timeout_ms: i32,
    ) -> anyhow::Result<Option<Produced>> {
        self.produce_batch(topic, partition, acks, batch(records), timeout_ms)
            .await
    }

    /// Produce v9 of one encoded batch (see [`stamped_batch`]) to one partition. `None` for
    /// `acks=0`.
    pub async fn produce_batch(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        batch: Bytes,
        timeout_ms: i32,
    ) -> anyhow::Result<Option<Produced>> {
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch)),
                ])]);
        if acks == 0 {
            self.send(ApiKey::Produce, 9, &request).await?;
            return Ok(None);
        }
        let response: ProduceResponse = self.call(ApiKey::Produce, 9, &request).await?;
        let p = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .context("an empty produce answer")?;
        Ok(Some(Produced {
            error_code: p.error_code,
            base_offset: p.base_offset,
        }))
    }

    /// Fetch v11 (read_uncommitted) of one partition from `offset`.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> anyhow::Result<Fetched> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_isolation_level(0)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(8 << 20)])]);
        let response: FetchResponse = self.call(ApiKey::Fetch, 11, &request).await?;
        let p = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .context("an empty fetch answer")?;
        let mut records = Vec::new();
        if let Some(mut bytes) = p.records.clone() {
            for set in RecordBatchDecoder::decode_all(&mut bytes)? {
                for r in set.records {
                    if r.offset >= offset {
                        records.push((r.offset, r.key, r.value.unwrap_or_default()));
                    }
                }
            }
        }
        Ok(Fetched {
            error_code: p.error_code,
            high_watermark: p.high_watermark,
            records,
        })
    }

    /// Produce v9 of one batch of unkeyed `values`, answered (acks 1 or all).
    pub async fn produce_values(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        values: &[Bytes],
        timeout_ms: i32,
    ) -> anyhow::Result<Produced> {
        anyhow::ensure!(acks != 0, "acks=0 gets no answer");
        let records: Vec<(Option<Bytes>, Bytes)> =
            values.iter().map(|v| (None, v.clone())).collect();
        self.produce(topic, partition, acks, &records, timeout_ms)
            .await?
            .context("no answer to a produce with acks != 0")
    }

    /// Every record of one partition from `offset` up to the high-water mark, as (offset,
    /// value), with the first error code met (0 when none).
    pub async fn read_all(
        &mut self,
        topic: &str,
        partition: i32,
        mut offset: i64,
    ) -> anyhow::Result<(i16, Vec<(i64, Bytes)>)> {
        let mut out = Vec::new();
        loop {
            let fetched = self.fetch(topic, partition, offset, 0).await?;
            if fetched.error_code != 0 || fetched.records.is_empty() {
                return Ok((fetched.error_code, out));
            }
            for (o, _, v) in fetched.records {
                offset = o + 1;
                out.push((o, v));
            }
        }
    }

    /// InitProducerId v2 of a non-transactional (idempotent) producer: (error code, producer
    /// id, producer epoch).
    pub async fn init_producer_id(&mut self) -> anyhow::Result<(i16, i64, i16)> {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1);
        let r: InitProducerIdResponse = self.call(ApiKey::InitProducerId, 2, &request).await?;
        Ok((r.error_code, r.producer_id.0, r.producer_epoch))
    }

    /// FindCoordinator v2 for a group: (error code, coordinator id).
    pub async fn find_coordinator(&mut self, group: &str) -> anyhow::Result<(i16, i32)> {
        let request = FindCoordinatorRequest::default()
            .with_key(str_bytes(group))
            .with_key_type(0);
        let r: FindCoordinatorResponse = self.call(ApiKey::FindCoordinator, 2, &request).await?;
        Ok((r.error_code, r.node_id.0))
    }

    /// JoinGroup v5 with the consumer protocol's `range` assignor over `topics`.
    pub async fn join_group(
        &mut self,
        group: &str,
        member_id: &str,
        session_timeout_ms: i32,
        topics: &[&str],
    ) -> anyhow::Result<JoinGroupResponse> {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_session_timeout_ms(session_timeout_ms)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(str_bytes(member_id))
            .with_protocol_type(str_bytes("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(str_bytes("range"))
            .with_metadata(subscription(topics))]);
        self.call(ApiKey::JoinGroup, 5, &request).await
    }

    /// SyncGroup v3; the leader passes every member's assignment.
    pub async fn sync_group(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> anyhow::Result<SyncGroupResponse> {
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id(generation)
            .with_member_id(str_bytes(member_id))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(m, a)| {
                        sync_group_request::SyncGroupRequestAssignment::default()
                            .with_member_id(str_bytes(&m))
                            .with_assignment(a)
                    })
                    .collect(),
            );
        self.call(ApiKey::SyncGroup, 3, &request).await
    }

    /// Heartbeat v3: the error code.
    pub async fn heartbeat(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
    ) -> anyhow::Result<i16> {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id(generation)
            .with_member_id(str_bytes(member_id));
        let r: HeartbeatResponse = self.call(ApiKey::Heartbeat, 3, &request).await?;
        Ok(r.error_code)
    }

    /// OffsetCommit v7 of (partition, offset) for one topic: the first error code.
    pub async fn commit(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> anyhow::Result<i16> {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(str_bytes(member_id))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        offsets
                            .iter()
                            .map(|(p, o)| {
                                offset_commit_request::OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(*o)
                            })
                            .collect(),
                    ),
            ]);
        let r: OffsetCommitResponse = self.call(ApiKey::OffsetCommit, 7, &request).await?;
        Ok(r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .find(|c| *c != 0)
            .unwrap_or(0))
    }

    /// OffsetFetch v5 of `partitions` of `topic`: (partition, committed offset or −1).
    pub async fn committed(
        &mut self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> anyhow::Result<Vec<(i32, i64)>> {
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(partitions.to_vec()),
            ]));
        let r: OffsetFetchResponse = self.call(ApiKey::OffsetFetch, 5, &request).await?;
        anyhow::ensure!(
            r.error_code == 0,
            "OffsetFetch: {}",
            crate::trace::event::kafka_error_name(r.error_code)
        );
        Ok(r.topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.committed_offset))
            })
            .collect())
    }
}

/// The consumer protocol's subscription (v0): the topics a member wants.
pub fn subscription(topics: &[&str]) -> Bytes {
    let s = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| str_bytes(t)).collect());
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    let _ = s.encode(&mut buf, 0);
    buf.freeze()
}

/// The topics of a subscription.
pub fn subscribed_topics(bytes: &Bytes) -> Vec<String> {
    let mut buf = bytes.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16();
    ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3))
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

/// The consumer protocol's assignment (v0) of `partitions` of `topic`.
pub fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        consumer_protocol_assignment::TopicPartition::default()
            .with_topic(topic_name(topic))
            .with_partitions(partitions.to_vec()),
    ]);
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    let _ = a.encode(&mut buf, 0);
    buf.freeze()
}

/// The partitions of `topic` an assignment gives.
pub fn assigned_partitions(bytes: &Bytes, topic: &str) -> Vec<i32> {
    crate::actors::group::metadata::consumer_assignment(bytes)
        .unwrap_or_default()
        .into_iter()
        .filter(|(t, _)| t == topic)
        .flat_map(|(_, partitions)| partitions)
        .collect()
}

/// Kafka's `RangeAssignor` for one topic: members sorted by id, each a contiguous range,
/// the first `partitions % members` getting one extra.
pub fn range_assign(members: &[String], partitions: i32) -> Vec<(String, Vec<i32>)> {
    let mut members = members.to_vec();
    members.sort();
    let n = members.len() as i32;
    if n == 0 {
        return Vec::new();
    }
    let (per, extra) = (partitions / n, partitions % n);
    members
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let i = i as i32;
            let start = i * per + i.min(extra);
            let len = per + i32::from(i < extra);
            (m, (start..start + len).collect())
        })
        .collect()
}

/// The Java client's default partitioner for keyed records: `toPositive(murmur2(key)) %
/// partitions` (Kafka's `Utils.murmur2`).
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as i32) % partitions.max(1)
}

/// Kafka's `Utils.murmur2` (seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = 0x9747_b28c ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_own_test_vectors() {
        // Kafka's UtilsTest.testMurmur2.
        for (input, expected) in [
            (&b"21"[..], -973932308i32),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ] {
            assert_eq!(murmur2(input) as i32, expected, "{input:?}");
        }
    }

    #[test]
    fn the_range_assignor_gives_the_first_members_the_extra_partitions() {
        let members: Vec<String> = ["C2", "C1", "C3"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            range_assign(&members, 4),
            vec![
                ("C1".to_string(), vec![0, 1]),
                ("C2".to_string(), vec![2]),
                ("C3".to_string(), vec![3]),
            ]
        );
    }

    #[test]
    fn subscriptions_and_assignments_round_trip() {
        assert_eq!(subscribed_topics(&subscription(&["orders"])), ["orders"]);
        assert_eq!(
            assigned_partitions(&assignment("orders", &[1, 3]), "orders"),
            [1, 3]
        );
    }
}
