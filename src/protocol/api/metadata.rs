//! Metadata: brokers, controller id, cluster id and topics (with KIP-516 topic ids) from the
//! metadata cache. A requested topic that does not exist is created through the controller
//! when `auto.create.topics.enable` is on and the client allows it (v4+; always allowed
//! before), and the answer waits for the creation so the client sees the new leaders at once.
//! Asked for authorized operations (v8+), it reports every operation, as Kafka without an
//! authorizer does.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};
use uuid::Uuid;

use super::acls::{CLUSTER_AUTHORIZED_OPERATIONS, TOPIC_AUTHORIZED_OPERATIONS};
use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::controller::messages::{CreateTopics, NewTopic};
use crate::actors::metadata_cache::{
    validate_topic_name, MetadataSnapshot, TopicMetadata, NO_LEADER,
};

pub struct Metadata;

/// A topic the client asked about, by name or (v10+) by id.
enum Wanted {
    Name(String),
    Id(Uuid),
}

impl KafkaApi for Metadata {
    const KEY: ApiKey = ApiKey::Metadata;
    const MAX_VERSION: i16 = 12;
    type Request = MetadataRequest;
    type Response = MetadataResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: MetadataRequest,
    ) -> BoxFuture<'static, Reply<MetadataResponse>> {
        let ctx = ctx.clone();
        let version = header.request_api_version;
        // Kafka reports these from v8 (the cluster's only up to v10, when it moved to
        // DescribeCluster); unasked they keep the schema default, i32::MIN.
        let topic_operations = version >= 8 && request.include_topic_authorized_operations;
        let cluster_operations =
            (8..=10).contains(&version) && request.include_cluster_authorized_operations;
        async move {
            let wanted: Option<Vec<Wanted>> = match request.topics {
                None => None,
                // v0 has no null: an empty list means every topic.
                Some(topics) if version == 0 && topics.is_empty() => None,
                Some(topics) => Some(
                    topics
                        .into_iter()
                        .map(|t| match t.name {
                            Some(name) => Wanted::Name(name.0.to_string()),
                            None => Wanted::Id(t.topic_id),
                        })
                        .collect(),
                ),
            };
            let allow_auto = version < 4 || request.allow_auto_topic_creation;
            let mut snapshot = ctx.metadata.snapshot();
            let mut creation_errors = std::collections::HashMap::new();
            if let Some(wanted) = &wanted {
                let missing: Vec<String> = wanted
                    .iter()
                    .filter_map(|w| match w {
                        Wanted::Name(name)
                            if snapshot.topic(name).is_none() && validate_topic_name(name).is_ok() =>
                        {
                            Some(name.clone())
                        }
                        _ => None,
                    })
                    .collect();
                if !missing.is_empty() && allow_auto && ctx.config.auto_create_topics_enable {
                    let request = CreateTopics {
                        topics: missing
                            .iter()
                            .map(|name| {
                                // [groups] Kafka creates its offsets topic with the
                                // offsets.topic.* settings, never with the defaults.
                                if name == crate::actors::group::GROUP_METADATA_TOPIC_NAME {
                                    crate::actors::group::directory::MetadataDirectory::new(
                                        ctx.metadata.clone(),
                                        ctx.config.as_ref(),
                                    )
                                    .offsets_topic(snapshot.brokers.len())
                                } else {
                                    NewTopic::with_defaults(name)
                                }
                            })
                            .collect(),
                        validate_only: false,
                        timeout_ms: 0,
                    };
                    match ctx.controller.create_topics.send(request).await {
                        Ok(outcomes) => {
                            for outcome in outcomes {
                                // Created, or being created by another request: until this
                                // broker's metadata has it, Kafka answers LEADER_NOT_AVAILABLE
                                // (clients retry), never UNKNOWN_TOPIC_OR_PARTITION.
                                let code = match outcome.result {
                                    Err(e) if e.code != ResponseError::TopicAlreadyExists.code() => {
                                        e.code
                                    }
                                    _ => ResponseError::LeaderNotAvailable.code(),
                                };
                                creation_errors.insert(outcome.name, code);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the controller did not answer an auto-creation");
                            for name in missing {
                                creation_errors.insert(name, ResponseError::LeaderNotAvailable.code());
                            }
                        }
                    }
                    snapshot = ctx.metadata.snapshot();
                }
            }
            let mut topics: Vec<MetadataResponseTopic> = match wanted {
                None => {
                    let mut names: Vec<&String> = snapshot.topics.keys().collect();
                    names.sort();
                    names
                        .into_iter()
                        .filter_map(|n| snapshot.topic(n))
                        .map(|t| describe_topic(&snapshot, t, version))
                        .collect()
                }
                Some(wanted) => wanted
                    .into_iter()
                    .map(|w| match w {
                        Wanted::Name(name) => match snapshot.topic(&name) {
                            Some(t) => describe_topic(&snapshot, t, version),
                            None => {
                                let code = if validate_topic_name(&name).is_err() {
                                    ResponseError::InvalidTopicException.code()
                                } else {
                                    creation_errors
                                        .get(&name)
                                        .copied()
                                        .unwrap_or(ResponseError::UnknownTopicOrPartition.code())
                                };
                                MetadataResponseTopic::default()
                                    .with_error_code(code)
                                    .with_name(Some(TopicName(str_bytes(name))))
                            }
                        },
                        Wanted::Id(id) => match snapshot.topic_by_id(&id) {
                            Some(t) => describe_topic(&snapshot, t, version),
                            None => MetadataResponseTopic::default()
                                .with_error_code(ResponseError::UnknownTopicId.code())
                                .with_name(None)
                                .with_topic_id(id),
                        },
                    })
                    .collect(),
            };
            if topic_operations {
                for topic in &mut topics {
                    topic.topic_authorized_operations = TOPIC_AUTHORIZED_OPERATIONS;
                }
            }
            let mut response = cluster_part(&snapshot, version).with_topics(topics);
            if cluster_operations {
                response.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
            }
            Reply::Respond(response)
        }
        .boxed()
    }

    fn error_response(version: i16, code: i16) -> MetadataResponse {
        // Metadata has no top-level error before v13: an empty answer makes the client retry.
        if version >= 13 {
            MetadataResponse::default().with_error_code(code)
        } else {
            MetadataResponse::default()
        }
    }
}

/// Brokers, cluster id and controller id.
fn cluster_part(snapshot: &MetadataSnapshot, version: i16) -> MetadataResponse {
    let brokers = snapshot
        .brokers
        .values()
        .map(|b| {
            let broker = MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(b.port as i32);
            if version >= 1 {
                broker.with_rack(b.rack.clone().map(str_bytes))
            } else {
                broker
            }
        })
        .collect();
    let mut response = MetadataResponse::default().with_brokers(brokers);
    if version >= 1 {
        response = response.with_controller_id(BrokerId(snapshot.controller_id));
    }
    if version >= 2 {
        response = response.with_cluster_id(snapshot.cluster_id.clone().map(str_bytes));
    }
    response
}

fn describe_topic(
    snapshot: &MetadataSnapshot,
    topic: &TopicMetadata,
    version: i16,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .values()
        .map(|p| {
            let leader_alive = p.leader != NO_LEADER && snapshot.brokers.contains_key(&p.leader);
            let mut partition = MetadataResponsePartition::default()
                .with_error_code(if leader_alive {
                    0
                } else {
                    ResponseError::LeaderNotAvailable.code()
                })
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(if leader_alive { p.leader } else { NO_LEADER }))
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect());
            if version >= 7 {
                partition = partition.with_leader_epoch(p.leader_epoch);
            }
            if version >= 5 {
                partition = partition.with_offline_replicas(
                    p.offline_replicas.iter().copied().map(BrokerId).collect(),
                );
            }
            partition
        })
        .collect();
    let mut response = MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_partitions(partitions);
    if version >= 1 {
        response = response.with_is_internal(topic.is_internal);
    }
    if version >= 10 {
        response = response.with_topic_id(topic.id);
    }
    response
}
