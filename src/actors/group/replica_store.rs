//! The broker's [`GroupStore`]: group records go to the local leader replica of their
//! `__consumer_offsets` partition as one uncompressed RecordBatch v2, with acks=all
//! (`offsets.commit.required.acks` = -1), and are replayed from it by reading the partition
//! from its log start to its log end offset.
//!
//! The replay reads to the log end, not the high-water mark, as Kafka's
//! `GroupMetadataManager` does (`FetchLogEnd`): a broker that has just become leader may lag
//! in high-water mark behind records its log already holds (followers learn the high-water
//! mark one fetch late), and as leader its log is the truth, so every record in it will be
//! committed. Stopping at the high-water mark would forget commits that clients were told
//! succeeded.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::offsets_records::GROUP_METADATA_TOPIC_NAME;
use super::store::{GroupStore, OffsetsRecord};
use crate::actors::broker::LocalReplicas;
use crate::actors::delayed::{delayed_produce, ProduceWait, ProduceWaitOutcome};
use crate::actors::replica::{AppendRecords, FetchIsolation, ReadRecords};
use crate::protocol::error::ApiError;
use crate::storage::validate_client_batches;

/// How much one load read asks for: big enough to replay quickly, small enough that one
/// answer does not hold much memory.
const LOAD_CHUNK_BYTES: usize = 1 << 20;

/// Group records are small; this only bounds a forged or runaway batch.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// [`GroupStore`] over this broker's `__consumer_offsets` replicas.
#[derive(Clone)]
pub struct ReplicaGroupStore {
    replicas: LocalReplicas,
    /// `offsets.commit.timeout.ms`: how long an append waits for the ISR.
    commit_timeout: Duration,
}

impl ReplicaGroupStore {
    pub fn new(replicas: LocalReplicas, commit_timeout: Duration) -> Self {
        ReplicaGroupStore {
            replicas,
            commit_timeout,
        }
    }
}

fn response_error(e: &ApiError) -> ResponseError {
    ResponseError::try_from_code(e.code).unwrap_or(ResponseError::UnknownServerError)
}

/// One uncompressed v2 batch holding `records` (keys always present: the topic is compacted).
pub fn encode_batch(records: &[OffsetsRecord], timestamp: i64) -> Result<Bytes, ResponseError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // offset - sequence constant keeps the encoder from splitting the batch.
            sequence: i as i32 - 1,
            timestamp,
            key: Some(key.clone()),
            value: value.clone(),
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
    .map_err(|e| {
        tracing::error!(error = %e, "cannot encode group records");
        ResponseError::UnknownServerError
    })?;
    Ok(buf.freeze())
}

/// Appends the (key, value) records of every batch in `data` with offset ≥ `from` to `out`
/// and returns the offset after the last batch seen (`from` when `data` holds none).
pub fn decode_batches(
    mut data: Bytes,
    from: i64,
    out: &mut Vec<OffsetsRecord>,
) -> Result<i64, String> {
    let mut next = from;
    while data.len() >= 12 {
        let base_offset = i64::from_be_bytes(data[0..8].try_into().map_err(|_| "short")?);
        let length = i32::from_be_bytes(data[8..12].try_into().map_err(|_| "short")?);
        if length < 0 {
            return Err(format!("negative batch length {length}"));
        }
        let total = 12 + length as usize;
        if data.len() < total || total < 27 {
            // A trailing partial batch: read it again in the next chunk.
            break;
        }
        let mut batch = data.split_to(total);
        let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().map_err(|_| "short")?);
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| format!("batch at offset {base_offset}: {e}"))?;
        for record in set.records {
            if record.control || record.offset < from {
                continue;
            }
            if let Some(key) = record.key {
                out.push((key, record.value));
            }
        }
        next = next.max(base_offset + i64::from(last_offset_delta) + 1);
    }
    Ok(next)
}

impl GroupStore for ReplicaGroupStore {
    fn append(
        &self,
        partition: i32,
        records: Vec<OffsetsRecord>,
    ) -> BoxFuture<'static, Result<(), ResponseError>> {
        let Some(replica) = self.replicas.get(GROUP_METADATA_TOPIC_NAME, partition) else {
            return futures::future::ready(Err(ResponseError::NotLeaderOrFollower)).boxed();
        };
        if records.is_empty() {
            return futures::future::ready(Ok(())).boxed();
        }
        let batches = encode_batch(&records, super::now_ms()).and_then(|bytes| {
            validate_client_batches(bytes, MAX_BATCH_BYTES, true).map_err(|e| {
                tracing::error!(error = %e, "group records failed batch validation");
                ResponseError::try_from_code(e.kafka_code())
                    .unwrap_or(ResponseError::UnknownServerError)
            })
        });
        let batches = match batches {
            Ok(b) => b,
            Err(e) => return futures::future::ready(Err(e)).boxed(),
        };
        // Takes its place in the replica's mailbox now, as the GroupStore contract requires.
        let request = replica.addr.send(AppendRecords {
            batches,
            required_acks: -1,
        });
        let purgatory = replica.purgatory.clone();
        let timeout = self.commit_timeout;
        async move {
            let outcome = match request.await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(e)) => return Err(response_error(&e)),
                Err(_) => return Err(ResponseError::NotLeaderOrFollower),
            };
            let wait = ProduceWait {
                purgatory,
                required_offset: outcome.last_offset + 1,
                leader_epoch: outcome.leader_epoch,
                min_insync_replicas: outcome.min_insync_replicas,
            };
            match delayed_produce(vec![wait], timeout).await.first() {
                Some(ProduceWaitOutcome::Replicated) => Ok(()),
                Some(ProduceWaitOutcome::TimedOut) => Err(ResponseError::RequestTimedOut),
                Some(ProduceWaitOutcome::NotEnoughReplicasAfterAppend) => {
                    Err(ResponseError::NotEnoughReplicasAfterAppend)
                }
                _ => Err(ResponseError::NotLeaderOrFollower),
            }
        }
        .boxed()
    }

    fn load(
        &self,
        partition: i32,
    ) -> BoxFuture<'static, Result<Vec<OffsetsRecord>, ResponseError>> {
        let replicas = self.replicas.clone();
        async move {
            let replica = replicas
                .get(GROUP_METADATA_TOPIC_NAME, partition)
                .ok_or(ResponseError::NotLeaderOrFollower)?;
            let start = replica.progress();
            let end = start.log_end_offset;
            let mut offset = start.log_start_offset.max(0);
            let mut out = Vec::new();
            while offset < end {
                let read = replica
                    .addr
                    .send(ReadRecords {
                        fetch_offset: offset,
                        max_bytes: LOAD_CHUNK_BYTES,
                        min_one: true,
                        isolation: FetchIsolation::LogEnd,
                        current_leader_epoch: Some(start.leader_epoch),
                    })
                    .await
                    .map_err(|_| ResponseError::NotLeaderOrFollower)?;
                if let Some(e) = &read.error {
                    if e.code == ResponseError::OffsetOutOfRange.code()
                        && read.log_start_offset > offset
                    {
                        // Retention or DeleteRecords moved the start meanwhile.
                        offset = read.log_start_offset;
                        continue;
                    }
                    return Err(response_error(e));
                }
                if read.records.is_empty() {
                    break;
                }
                let next = decode_batches(read.records, offset, &mut out).map_err(|e| {
                    tracing::error!(partition, error = %e, "cannot replay __consumer_offsets");
                    ResponseError::CorruptMessage
                })?;
                if next <= offset {
                    break;
                }
                offset = next;
            }
            Ok(out)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::broker::{Broker, LeaderAndIsr, LeaderAndIsrPartitionState};
    use crate::actors::metadata_cache::BrokerEndpoint;
    use crate::config::BrokerConfig;
    use actix::Actor;

    /// A broker leading `__consumer_offsets`-0 alone (ISR {1}), and a store over it.
    async fn leader_store(dir: &std::path::Path) -> (actix::Addr<Broker>, ReplicaGroupStore) {
        leader_store_with_isr(dir, vec![1], Duration::from_secs(5)).await
    }

    /// Broker 1 leading `__consumer_offsets`-0 with `isr` (other members never fetch, so
    /// their log end offsets stay 0 and so does the high-water mark).
    async fn leader_store_with_isr(
        dir: &std::path::Path,
        isr: Vec<i32>,
        commit_timeout: Duration,
    ) -> (actix::Addr<Broker>, ReplicaGroupStore) {
        let config = BrokerConfig {
            broker_id: 1,
            log_dirs: vec![dir.display().to_string()],
            min_insync_replicas: 1,
            ..BrokerConfig::default()
        };
        let (broker, shared) = Broker::open(config, Some("test-cluster"), vec![]).unwrap();
        let broker = broker.start();
        broker
            .send(LeaderAndIsr {
                controller_id: 1,
                controller_epoch: 1,
                partition_states: vec![LeaderAndIsrPartitionState {
                    topic: GROUP_METADATA_TOPIC_NAME.into(),
                    topic_id: uuid::Uuid::new_v4(),
                    partition: 0,
                    leader: 1,
                    leader_epoch: 0,
                    isr: isr.clone(),
                    replicas: isr,
                    partition_epoch: 0,
                    is_new: true,
                }],
                live_leaders: vec![BrokerEndpoint {
                    id: 1,
                    host: "127.0.0.1".into(),
                    port: 10_001,
                    rack: None,
                    listeners: vec![],
                }],
            })
            .await
            .unwrap()
            .unwrap();
        let store = ReplicaGroupStore::new(shared.replicas.clone(), commit_timeout);
        (broker, store)
    }

    #[actix::test]
    async fn appends_are_durable_and_replay_in_offset_order_from_the_replica() {
        let dir = tempfile::tempdir().unwrap();
        let (_broker, store) = leader_store(dir.path()).await;
        let first = vec![
            (Bytes::from_static(b"k1"), Some(Bytes::from_static(b"v1"))),
            (Bytes::from_static(b"k2"), Some(Bytes::from_static(b"v2"))),
        ];
        let second = vec![(Bytes::from_static(b"k1"), None)];
        // Issued back to back: the second takes its place in line before the first completes.
        let a = store.append(0, first.clone());
        let b = store.append(0, second.clone());
        a.await.unwrap();
        b.await.unwrap();
        let mut expected = first;
        expected.extend(second);
        assert_eq!(store.load(0).await.unwrap(), expected);
    }

    #[actix::test]
    async fn an_append_is_not_durable_until_the_isr_has_it_but_a_load_replays_to_the_log_end() {
        let dir = tempfile::tempdir().unwrap();
        // Follower 2 never fetches: the high-water mark stays at 0.
        let (_broker, store) =
            leader_store_with_isr(dir.path(), vec![1, 2], Duration::from_millis(200)).await;
        let record = vec![(Bytes::from_static(b"k"), Some(Bytes::from_static(b"v")))];
        assert_eq!(
            store.append(0, record.clone()).await,
            Err(ResponseError::RequestTimedOut),
            "acks=all: not durable while an ISR member lacks the record"
        );
        let replica = store.replicas.get(GROUP_METADATA_TOPIC_NAME, 0).unwrap();
        assert_eq!(
            (
                replica.progress().high_watermark,
                replica.progress().log_end_offset
            ),
            (0, 1)
        );
        // A leader replays its whole log, as Kafka's loader does (FetchLogEnd): the record is
        // the leader's, so it will be committed, and a new leader's high-water mark lags.
        assert_eq!(store.load(0).await.unwrap(), record);
    }

    #[actix::test]
    async fn a_partition_this_broker_does_not_host_is_not_leader() {
        let dir = tempfile::tempdir().unwrap();
        let (_broker, store) = leader_store(dir.path()).await;
        let record = vec![(Bytes::from_static(b"k"), None)];
        assert_eq!(
            store.append(7, record).await,
            Err(ResponseError::NotLeaderOrFollower)
        );
        assert_eq!(store.load(7).await, Err(ResponseError::NotLeaderOrFollower));
    }

    #[test]
    fn encoded_batch_passes_validation_and_decodes_in_order() {
        let records = vec![
            (Bytes::from_static(b"k1"), Some(Bytes::from_static(b"v1"))),
            (Bytes::from_static(b"k2"), None),
            (Bytes::from_static(b"k1"), Some(Bytes::from_static(b"v3"))),
        ];
        let bytes = encode_batch(&records, 1_000).unwrap();
        let validated = validate_client_batches(bytes.clone(), MAX_BATCH_BYTES, true).unwrap();
        assert_eq!(validated.record_count, 3);
        let mut out = Vec::new();
        let next = decode_batches(bytes, 0, &mut out).unwrap();
        assert_eq!(next, 3);
        assert_eq!(out, records);
    }

    #[test]
    fn decoding_skips_records_before_the_requested_offset() {
        let records = vec![
            (Bytes::from_static(b"a"), Some(Bytes::from_static(b"1"))),
            (Bytes::from_static(b"b"), Some(Bytes::from_static(b"2"))),
        ];
        let bytes = encode_batch(&records, 1_000).unwrap();
        let mut out = Vec::new();
        decode_batches(bytes, 1, &mut out).unwrap();
        assert_eq!(out, records[1..].to_vec());
    }
}
