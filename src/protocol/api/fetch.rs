//! Fetch: read every requested partition from its replica actor (concurrently), assemble the
//! response within the request's byte limits, and long-poll (Kafka's `DelayedFetch`) until
//! `min_bytes` are there or `max_wait_ms` passes.
//!
//! - Limits: each partition reads at most its `partition_max_bytes`; the response holds at
//!   most `max_bytes` (v3+), except that the first partition with data always gets at least
//!   its first batch (KIP-74) so a consumer never stalls on a batch larger than its limits.
//! - Stored batches go out as stored: the records are the `Bytes` the log read returned, and
//!   the response encoder writes them as separate chunks (no copy into the response buffer).
//! - Sessions (KIP-227) are not kept: every response carries session id 0 (sessionless), and
//!   a request naming a session gets FETCH_SESSION_ID_NOT_FOUND.
//! - `read_committed`: without transactions the last stable offset is the high-water mark and
//!   the aborted-transactions list is empty.
//! - OFFSET_OUT_OF_RANGE is judged against the log start and log end offsets; a fetch in
//!   [high-water mark, log end) returns no records.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::Encodable;
use tokio::time::Instant;
use uuid::Uuid;

use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::delayed::{wait_for_fetchable, FetchWatch};
use crate::actors::replica::{FetchIsolation, PartitionRead, ReadRecords, ReplicaHandle};
use crate::protocol::error::ApiError;

pub struct Fetch;

/// The longest a fetch may wait, whatever the client asks (Kafka caps it by its request
/// timeout in the same way).
const MAX_WAIT_CAP: Duration = Duration::from_secs(60);

/// One requested partition, resolved against the metadata cache.
struct FetchPartition {
    topic_index: usize,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    current_leader_epoch: Option<i32>,
    replica: Result<ReplicaHandle, ApiError>,
}

/// One requested topic as the response must name it.
struct FetchTopic {
    name: String,
    id: Uuid,
}

impl KafkaApi for Fetch {
    const KEY: ApiKey = ApiKey::Fetch;
    const MAX_VERSION: i16 = 16;
    type Request = FetchRequest;
    type Response = FetchResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: FetchRequest,
    ) -> BoxFuture<'static, Reply<FetchResponse>> {
        let ctx = ctx.clone();
        let version = header.request_api_version;
        async move {
            // Held until the response is built; the gate never closes.
            let _gate = match ctx.fetch_gate.clone().try_acquire_owned() {
                Ok(gate) => Some(gate),
                Err(_) => {
                    // Behind this connection's previous fetch: waiting on the client's own
                    // request, out of the broker's request queue (or one connection
                    // pipelining fetches could hold every place in it).
                    crate::protocol::request_queue::parked();
                    ctx.fetch_gate.clone().acquire_owned().await.ok()
                }
            };
            if version >= 7 && request.session_id != 0 {
                return Reply::Respond(
                    FetchResponse::default()
                        .with_error_code(ResponseError::FetchSessionIdNotFound.code()),
                );
            }
            let replica_id = if version >= 15 {
                request.replica_state.replica_id.0
            } else {
                request.replica_id.0
            };
            let isolation = if replica_id >= 0 {
                FetchIsolation::LogEnd
            } else if version >= 4 && request.isolation_level == 1 {
                FetchIsolation::TxnCommitted
            } else {
                FetchIsolation::HighWatermark
            };
            let snapshot = ctx.metadata.snapshot();
            let mut topics = Vec::new();
            let mut partitions = Vec::new();
            for topic in request.topics {
                let resolved = if version >= 13 {
                    snapshot
                        .topic_by_id(&topic.topic_id)
                        .map(|t| t.name.clone())
                        .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicId))
                } else {
                    let name = topic.topic.0.to_string();
                    if snapshot.topic(&name).is_some() {
                        Ok(name)
                    } else {
                        Err(ApiError::new(ResponseError::UnknownTopicOrPartition))
                    }
                };
                let topic_index = topics.len();
                topics.push(FetchTopic {
                    name: match &resolved {
                        Ok(name) => name.clone(),
                        Err(_) => topic.topic.0.to_string(),
                    },
                    id: topic.topic_id,
                });
                for p in topic.partitions {
                    let replica = resolved.clone().and_then(|name| {
                        if snapshot.partition(&name, p.partition).is_none() {
                            return Err(ApiError::new(ResponseError::UnknownTopicOrPartition));
                        }
                        ctx.replicas
                            .get(&name, p.partition)
                            .ok_or_else(|| ApiError::new(ResponseError::NotLeaderOrFollower))
                    });
                    partitions.push(FetchPartition {
                        topic_index,
                        partition: p.partition,
                        fetch_offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes.max(0) as usize,
                        current_leader_epoch: (version >= 9 && p.current_leader_epoch >= 0)
                            .then_some(p.current_leader_epoch),
                        replica,
                    });
                }
            }
            let max_bytes = if version >= 3 {
                request.max_bytes.max(0) as usize
            } else {
                i32::MAX as usize
            };
            let min_bytes = request.min_bytes.max(0) as usize;
            let max_wait =
                Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
            let deadline = Instant::now() + max_wait;
            loop {
                let reads = read_all(&partitions, isolation, max_bytes).await;
                let (bytes, any_error) = summarize(&reads);
                let expired = Instant::now() >= deadline;
                if bytes >= min_bytes || any_error || expired || partitions.is_empty() {
                    return Reply::Respond(build_response(
                        &topics,
                        &partitions,
                        reads,
                        isolation,
                        version,
                    ));
                }
                let mut watches: Vec<FetchWatch> = partitions
                    .iter()
                    .zip(&reads)
                    .filter_map(|(p, read)| {
                        let handle = p.replica.as_ref().ok()?;
                        Some(FetchWatch {
                            progress: handle.progress.clone(),
                            isolation,
                            seen_end: match isolation {
                                FetchIsolation::LogEnd => read.log_end_offset,
                                _ => read.high_watermark,
                            },
                            leader_epoch: read.leader_epoch,
                        })
                    })
                    .collect();
                // Woken or expired, the next turn reads again; after the deadline it answers.
                wait_for_fetchable(&mut watches, deadline).await;
            }
        }
        .boxed()
    }

    fn error_response(_version: i16, code: i16) -> FetchResponse {
        FetchResponse::default().with_error_code(code)
    }

    fn encode_body(
        response: &FetchResponse,
        version: i16,
        out: &mut BytesMut,
        chunks: &mut Vec<Bytes>,
    ) -> anyhow::Result<()> {
        encode_without_copying_records(response, version, out, chunks)
    }
}

/// Reads every partition concurrently; a partition's read is capped by its own limit and the
/// response limit, and asks for at least one batch (KIP-74; trimmed later for all but the
/// first partition with data).
async fn read_all(
    partitions: &[FetchPartition],
    isolation: FetchIsolation,
    max_bytes: usize,
) -> Vec<PartitionRead> {
    let reads = partitions.iter().map(|p| {
        let request = p.replica.as_ref().map(|handle| {
            handle.addr.send(ReadRecords {
                fetch_offset: p.fetch_offset,
                max_bytes: p.max_bytes.min(max_bytes),
                min_one: true,
                isolation,
                current_leader_epoch: p.current_leader_epoch,
            })
        });
        async move {
            match request {
                Err(e) => failed_read(e.clone()),
                Ok(request) => match request.await {
                    Ok(read) => read,
                    Err(_) => failed_read(ApiError::new(ResponseError::NotLeaderOrFollower)),
                },
            }
        }
    });
    let mut reads = futures::future::join_all(reads).await;
    // Apply the response limit in request order.
    let mut remaining = max_bytes;
    let mut any_data = false;
    for read in &mut reads {
        if read.records.is_empty() {
            continue;
        }
        if !any_data || read.records.len() <= remaining {
            remaining = remaining.saturating_sub(read.records.len());
            any_data = true;
        } else {
            read.records = Bytes::new();
        }
    }
    reads
}

fn failed_read(error: ApiError) -> PartitionRead {
    PartitionRead {
        error: Some(error),
        records: Bytes::new(),
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        log_end_offset: -1,
        leader_epoch: -1,
    }
}

/// Bytes returned and whether any partition failed (an error answers at once).
fn summarize(reads: &[PartitionRead]) -> (usize, bool) {
    let bytes = reads.iter().map(|r| r.records.len()).sum();
    let any_error = reads.iter().any(|r| r.error.is_some());
    (bytes, any_error)
}

fn build_response(
    topics: &[FetchTopic],
    partitions: &[FetchPartition],
    reads: Vec<PartitionRead>,
    isolation: FetchIsolation,
    version: i16,
) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = topics
        .iter()
        .map(|t| {
            let mut r = FetchableTopicResponse::default();
            if version >= 13 {
                r = r.with_topic_id(t.id);
            } else {
                r = r.with_topic(TopicName(str_bytes(t.name.clone())));
            }
            r
        })
        .collect();
    for (p, read) in partitions.iter().zip(reads) {
        let mut data = PartitionData::default()
            .with_partition_index(p.partition)
            .with_records(Some(read.records));
        match read.error {
            Some(e) => {
                data = data.with_error_code(e.code).with_high_watermark(-1);
                if version >= 4 {
                    data = data.with_last_stable_offset(-1);
                }
                if version >= 5 {
                    data = data.with_log_start_offset(-1);
                }
            }
            None => {
                data = data.with_high_watermark(read.high_watermark);
                if version >= 4 {
                    data = data.with_last_stable_offset(read.last_stable_offset);
                    if isolation == FetchIsolation::TxnCommitted {
                        data = data.with_aborted_transactions(Some(Vec::new()));
                    }
                }
                if version >= 5 {
                    data = data.with_log_start_offset(read.log_start_offset);
                }
            }
        }
        if version < 4 {
            data = data.with_aborted_transactions(None);
        }
        responses[p.topic_index].partitions.push(data);
    }
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(responses)
}

/// Encodes the response with the stored records left out of the copy: the frame is written
/// as alternating pieces (encoded fields, then a partition's records as its own chunk), and
/// the connection writes the pieces with vectored I/O.
///
/// Records are the last regular field of a partition; on flexible versions (v12+) only the
/// partition's tagged fields follow, and weir sets none. So each partition is encoded with an
/// empty record set, the empty length prefix is replaced by the real one, and the records
/// follow as a chunk. Small responses are copied whole (cheaper than splicing).
fn encode_without_copying_records(
    response: &FetchResponse,
    version: i16,
    out: &mut BytesMut,
    chunks: &mut Vec<Bytes>,
) -> anyhow::Result<()> {
    let records_total: usize = response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.records.as_ref().map_or(0, Bytes::len))
        .sum();
    let has_tagged_fields = !response.unknown_tagged_fields.is_empty()
        || !response.node_endpoints.is_empty()
        || response.responses.iter().any(|t| {
            !t.unknown_tagged_fields.is_empty()
                || t.partitions.iter().any(|p| {
                    !p.unknown_tagged_fields.is_empty()
                        || p.diverging_epoch != Default::default()
                        || p.current_leader != Default::default()
                        || p.snapshot_id != Default::default()
                })
        });
    if records_total < 64 * 1024 || has_tagged_fields {
        return response.encode(out, version);
    }
    let flexible = version >= 12;
    let mut writer = Splicer {
        out,
        chunks,
        current: BytesMut::new(),
        spliced: false,
    };
    if version >= 1 {
        writer
            .buf()
            .extend_from_slice(&response.throttle_time_ms.to_be_bytes());
    }
    if version >= 7 {
        writer
            .buf()
            .extend_from_slice(&response.error_code.to_be_bytes());
        writer
            .buf()
            .extend_from_slice(&response.session_id.to_be_bytes());
    }
    put_array_len(writer.buf(), response.responses.len(), flexible);
    for topic in &response.responses {
        if version >= 13 {
            writer.buf().extend_from_slice(topic.topic_id.as_bytes());
        } else {
            let name = topic.topic.0.as_bytes();
            if flexible {
                put_unsigned_varint(writer.buf(), name.len() as u32 + 1);
            } else {
                writer
                    .buf()
                    .extend_from_slice(&(name.len() as i16).to_be_bytes());
            }
            writer.buf().extend_from_slice(name);
        }
        put_array_len(writer.buf(), topic.partitions.len(), flexible);
        for partition in &topic.partitions {
            let records = partition.records.clone().unwrap_or_default();
            let mut empty = partition.clone();
            empty.records = Some(Bytes::new());
            let mut encoded = BytesMut::new();
            empty.encode(&mut encoded, version)?;
            // The empty record set: i32 0, or varint 1 followed by the tagged-field count 0.
            let (empty_len, tail_len) = if flexible { (1, 1) } else { (4, 0) };
            let cut = encoded
                .len()
                .checked_sub(empty_len + tail_len)
                .ok_or_else(|| anyhow::anyhow!("fetch partition encoding too short"))?;
            writer.buf().extend_from_slice(&encoded[..cut]);
            if flexible {
                put_unsigned_varint(writer.buf(), records.len() as u32 + 1);
            } else {
                writer
                    .buf()
                    .extend_from_slice(&(records.len() as i32).to_be_bytes());
            }
            if !records.is_empty() {
                writer.splice(records);
            }
            writer.buf().extend_from_slice(&encoded[cut + empty_len..]);
        }
        if flexible {
            put_unsigned_varint(writer.buf(), 0);
        }
    }
    if flexible {
        put_unsigned_varint(writer.buf(), 0);
    }
    writer.finish();
    Ok(())
}

/// Writes a frame as `out` followed by `chunks`, switching to a fresh buffer after each
/// spliced chunk so the pieces stay in order.
struct Splicer<'a> {
    out: &'a mut BytesMut,
    chunks: &'a mut Vec<Bytes>,
    current: BytesMut,
    spliced: bool,
}

impl Splicer<'_> {
    fn buf(&mut self) -> &mut BytesMut {
        if self.spliced {
            &mut self.current
        } else {
            self.out
        }
    }

    fn splice(&mut self, bytes: Bytes) {
        if self.spliced {
            let done = self.current.split().freeze();
            self.chunks.push(done);
        }
        self.spliced = true;
        self.chunks.push(bytes);
    }

    fn finish(self) {
        if self.spliced && !self.current.is_empty() {
            self.chunks.push(self.current.freeze());
        }
    }
}

fn put_array_len(buf: &mut BytesMut, len: usize, flexible: bool) {
    if flexible {
        put_unsigned_varint(buf, len as u32 + 1);
    } else {
        buf.extend_from_slice(&(len as i32).to_be_bytes());
    }
}

fn put_unsigned_varint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.extend_from_slice(&[(v as u8) | 0x80]);
        v >>= 7;
    }
    buf.extend_from_slice(&[v as u8]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Decodable;

    fn response(version: i16, records: Vec<Bytes>) -> FetchResponse {
        let partitions: Vec<PartitionData> = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let mut p = PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(42)
                    .with_records(Some(r));
                if version >= 4 {
                    p = p
                        .with_last_stable_offset(42)
                        .with_aborted_transactions(Some(vec![]));
                } else {
                    p = p.with_aborted_transactions(None);
                }
                if version >= 5 {
                    p = p.with_log_start_offset(3);
                }
                p
            })
            .collect();
        let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= 13 {
            topic = topic.with_topic_id(Uuid::from_u128(7));
        } else {
            topic = topic.with_topic(TopicName(str_bytes("orders")));
        }
        FetchResponse::default().with_responses(vec![topic])
    }

    #[test]
    fn spliced_fetch_responses_decode_like_copied_ones() {
        let big = Bytes::from(vec![7u8; 100 * 1024]);
        let small = Bytes::from(vec![1u8; 10]);
        for version in 4..=16 {
            let expected = response(
                version,
                vec![big.clone(), Bytes::new(), small.clone(), big.clone()],
            );
            let mut out = BytesMut::new();
            let mut chunks = Vec::new();
            encode_without_copying_records(&expected, version, &mut out, &mut chunks).unwrap();
            assert!(chunks.len() > 1, "v{version} should splice");
            assert!(out.len() < 1024, "v{version}: records were copied");
            let mut whole = BytesMut::new();
            whole.extend_from_slice(&out);
            for c in &chunks {
                whole.extend_from_slice(c);
            }
            let mut copied = BytesMut::new();
            expected.encode(&mut copied, version).unwrap();
            assert_eq!(whole, copied, "v{version}");
            let decoded = FetchResponse::decode(&mut whole.freeze(), version).unwrap();
            assert_eq!(decoded, expected, "v{version}");
        }
    }
}
