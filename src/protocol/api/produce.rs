//! Produce: validate each partition's batch here, on the connection's task (CRC, framing,
//! size: Kafka's LogValidator work, kept off the replica actor), then send one append per
//! partition straight to its replica actor, in request order. `acks=0` gets no response
//! (and the connection is closed if an append failed, as Kafka does, so the client notices);
//! `acks=1` answers after the leader's append; `acks=all` parks the request as a delayed
//! produce until the high-water mark passes the appended offsets (at once with one replica).
//!
//! Produce v0–v2 (the old message formats) are advertised, as Kafka 3.x does, and answered
//! UNSUPPORTED_VERSION by the legacy codec.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader};

use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::delayed::{delayed_produce, ProduceWait, ProduceWaitOutcome};
use crate::actors::replica::{AppendOutcome, AppendRecords};
use crate::protocol::error::ApiError;
use crate::storage::batch::RecordError;
use crate::storage::{validate_client_batches, BatchError, BatchHeader};

pub struct Produce;

/// A partition's failed produce: the error, and for a batch refused record by record (a
/// compacted topic's keyless records) which records, returned as `record_errors` on v8+.
struct Failure {
    error: ApiError,
    record_errors: Vec<RecordError>,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            record_errors: Vec::new(),
        }
    }
}

impl From<BatchError> for Failure {
    fn from(e: BatchError) -> Self {
        let error = ApiError::from_code(e.kafka_code(), Some(e.to_string()));
        let record_errors = match e {
            BatchError::RecordErrors(errors) => errors,
            _ => Vec::new(),
        };
        Self {
            error,
            record_errors,
        }
    }
}

/// One partition's fate while the request is in flight.
enum PartitionState {
    Failed(Failure),
    /// Boxed: the pending actor request is much larger than an error.
    Appending(Box<Appending>),
}

struct Appending {
    request: actix::dev::Request<crate::actors::replica::Replica, AppendRecords>,
    purgatory: std::sync::Arc<crate::actors::delayed::ProducePurgatory>,
}

/// Each topic's partitions with their append results, in request order.
type TopicResults = Vec<(String, Vec<(i32, Result<AppendOutcome, Failure>)>)>;

impl KafkaApi for Produce {
    const KEY: ApiKey = ApiKey::Produce;
    const MAX_VERSION: i16 = 10;
    type Request = ProduceRequest;
    type Response = ProduceResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: ProduceRequest,
    ) -> BoxFuture<'static, Reply<ProduceResponse>> {
        let version = header.request_api_version;
        let acks = request.acks;
        let request_error = if !matches!(acks, -1..=1) {
            Some(ApiError::with_message(
                ResponseError::InvalidRequiredAcks,
                format!("acks must be -1, 0 or 1, not {acks}"),
            ))
        } else if request.transactional_id.is_some() || has_transactional_batch(&request) {
            // Kafka answers transactional records without an authorized transactional id
            // with TRANSACTIONAL_ID_AUTHORIZATION_FAILED for the whole request; weir authorizes
            // none, since it has no transaction coordinator to write their markers.
            Some(ApiError::with_message(
                ResponseError::TransactionalIdAuthorizationFailed,
                "transactions are not supported by this broker",
            ))
        } else {
            None
        };
        let snapshot = ctx.metadata.snapshot();
        // Validation and the sends to replicas happen now, in request order.
        let topics: Vec<(String, Vec<(i32, PartitionState)>)> = request
            .topic_data
            .into_iter()
            .map(|topic| {
                let name = topic.name.0.to_string();
                let config = ctx.topic_config(&snapshot, &name);
                let max_bytes = config.max_message_bytes.max(0) as usize;
                let compacted = config.compact();
                let partitions = topic
                    .partition_data
                    .into_iter()
                    .map(|p| {
                        let state = (|| {
                            if let Some(e) = &request_error {
                                return Err(Failure::from(e.clone()));
                            }
                            if snapshot.partition(&name, p.index).is_none() {
                                return Err(Failure::from(ApiError::with_message(
                                    ResponseError::UnknownTopicOrPartition,
                                    format!("this server does not host {name}-{}", p.index),
                                )));
                            }
                            let Some(replica) = ctx.replicas.get(&name, p.index) else {
                                return Err(Failure::from(ApiError::with_message(
                                    ResponseError::NotLeaderOrFollower,
                                    format!(
                                        "broker {} is not the leader of {name}-{}",
                                        ctx.broker_id, p.index
                                    ),
                                )));
                            };
                            let records = p.records.unwrap_or_default();
                            let batches = validate_client_batches(records, max_bytes, compacted)?;
                            Ok(PartitionState::Appending(Box::new(Appending {
                                request: replica.addr.send(AppendRecords {
                                    batches,
                                    required_acks: acks,
                                }),
                                purgatory: replica.purgatory.clone(),
                            })))
                        })();
                        (p.index, state.unwrap_or_else(PartitionState::Failed))
                    })
                    .collect();
                (name, partitions)
            })
            .collect();
        let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
        async move {
            let mut results: TopicResults = Vec::new();
            let mut waits = Vec::new();
            for (name, partitions) in topics {
                let mut done = Vec::new();
                for (index, state) in partitions {
                    let result = match state {
                        PartitionState::Failed(e) => Err(e),
                        PartitionState::Appending(appending) => match appending.request.await {
                            Ok(Ok(outcome)) => {
                                if acks == -1 {
                                    waits.push((
                                        results.len(),
                                        done.len(),
                                        ProduceWait {
                                            purgatory: appending.purgatory,
                                            required_offset: outcome.last_offset + 1,
                                            leader_epoch: outcome.leader_epoch,
                                            min_insync_replicas: outcome.min_insync_replicas,
                                        },
                                    ));
                                }
                                Ok(outcome)
                            }
                            Ok(Err(e)) => Err(Failure::from(e)),
                            Err(_) => Err(Failure::from(ApiError::with_message(
                                ResponseError::NotLeaderOrFollower,
                                format!("the replica of {name}-{index} stopped"),
                            ))),
                        },
                    };
                    done.push((index, result));
                }
                results.push((name, done));
            }
            if !waits.is_empty() {
                let (positions, waits): (Vec<(usize, usize)>, Vec<ProduceWait>) =
                    waits.into_iter().map(|(t, p, w)| ((t, p), w)).unzip();
                let outcomes = delayed_produce(waits, timeout).await;
                for ((t, p), outcome) in positions.into_iter().zip(outcomes) {
                    let error = match outcome {
                        ProduceWaitOutcome::Replicated => continue,
                        ProduceWaitOutcome::NotLeader => {
                            ApiError::new(ResponseError::NotLeaderOrFollower)
                        }
                        ProduceWaitOutcome::TimedOut => {
                            ApiError::new(ResponseError::RequestTimedOut)
                        }
                        ProduceWaitOutcome::NotEnoughReplicasAfterAppend => {
                            ApiError::new(ResponseError::NotEnoughReplicasAfterAppend)
                        }
                    };
                    results[t].1[p].1 = Err(Failure::from(error));
                }
            }
            if acks == 0 {
                let failure = results
                    .iter()
                    .flat_map(|(name, parts)| parts.iter().map(move |(i, r)| (name, i, r)))
                    .find_map(|(name, i, r)| {
                        r.as_ref().err().map(|e| format!("{name}-{i}: {}", e.error))
                    });
                return match failure {
                    Some(reason) => Reply::Close(format!("acks=0 produce failed: {reason}")),
                    None => Reply::NoResponse,
                };
            }
            Reply::Respond(encode(results, version))
        }
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> ProduceResponse {
        ProduceResponse::default()
    }
}

/// Whether any partition's records start with a batch flagged transactional (Kafka's
/// `ProduceRequest.hasTransactionalRecords`). Unparseable records are left to validation.
fn has_transactional_batch(request: &ProduceRequest) -> bool {
    request.topic_data.iter().any(|t| {
        t.partition_data.iter().any(|p| {
            p.records
                .as_ref()
                .and_then(|r| BatchHeader::parse(r).ok())
                .is_some_and(|h| h.is_transactional())
        })
    })
}

fn encode(results: TopicResults, version: i16) -> ProduceResponse {
    let responses = results
        .into_iter()
        .map(|(name, partitions)| {
            let partition_responses = partitions
                .into_iter()
                .map(|(index, result)| {
                    let mut p = PartitionProduceResponse::default().with_index(index);
                    match result {
                        Ok(outcome) => {
                            p = p
                                .with_base_offset(outcome.base_offset)
                                .with_log_append_time_ms(outcome.log_append_time);
                            if version >= 5 {
                                p = p.with_log_start_offset(outcome.log_start_offset);
                            }
                        }
                        Err(Failure {
                            error,
                            record_errors,
                        }) => {
                            p = p.with_error_code(error.code).with_base_offset(-1);
                            if version >= 8 {
                                let record_errors = record_errors
                                    .into_iter()
                                    .map(|r| {
                                        BatchIndexAndErrorMessage::default()
                                            .with_batch_index(r.batch_index)
                                            .with_batch_index_error_message(Some(str_bytes(
                                                r.message,
                                            )))
                                    })
                                    .collect();
                                p = p
                                    .with_error_message(error.message.map(str_bytes))
                                    .with_record_errors(record_errors);
                            }
                        }
                    }
                    p
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(kafka_protocol::messages::TopicName(str_bytes(name)))
                .with_partition_responses(partition_responses)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
