//! The broker's [`CoordinatorDirectory`]: `__consumer_offsets` leaders come from the
//! metadata cache, and the topic is created on first use (Kafka's FindCoordinator
//! auto-creation) through the controller link the CreateTopics API uses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use kafka_protocol::error::ResponseError;

use super::api::{CoordinatorDirectory, OffsetsTopicLeader};
use super::offsets_records::GROUP_METADATA_TOPIC_NAME;
use crate::actors::controller::messages;
use crate::actors::controller::messages::{ControllerLink, NewTopic};
use crate::actors::metadata_cache::MetadataCache;
use crate::config::BrokerConfig;

/// [`CoordinatorDirectory`] over one broker's metadata cache and controller link.
#[derive(Clone)]
pub struct MetadataDirectory {
    metadata: MetadataCache,
    /// Set once the controller is up (brokers are built before it).
    controller: Arc<OnceLock<ControllerLink>>,
    /// `offsets.topic.num.partitions`.
    num_partitions: i32,
    /// `offsets.topic.replication.factor`, capped at the live brokers when creating.
    replication_factor: i16,
    /// `offsets.topic.segment.bytes`.
    segment_bytes: i32,
    /// A creation request is in flight: FindCoordinator retries must not pile up requests.
    creating: Arc<AtomicBool>,
}

impl MetadataDirectory {
    pub fn new(metadata: MetadataCache, config: &BrokerConfig) -> Self {
        MetadataDirectory {
            metadata,
            controller: Arc::new(OnceLock::new()),
            num_partitions: config.offsets_topic_num_partitions.max(1),
            replication_factor: config.offsets_topic_replication_factor.max(1),
            segment_bytes: config.offsets_topic_segment_bytes,
            creating: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Connects the directory to the controller (once; later calls are ignored).
    pub fn set_controller(&self, link: ControllerLink) {
        let _ = self.controller.set(link);
    }

    /// The CreateTopics entry for `__consumer_offsets` given `live_brokers`.
    pub fn offsets_topic(&self, live_brokers: usize) -> NewTopic {
        let live = i16::try_from(live_brokers).unwrap_or(i16::MAX).max(1);
        let replication_factor = if self.replication_factor > live {
            tracing::warn!(
                configured = self.replication_factor,
                live_brokers = live,
                "offsets.topic.replication.factor exceeds the live brokers; creating \
                 __consumer_offsets with fewer replicas"
            );
            live
        } else {
            self.replication_factor
        };
        NewTopic {
            name: GROUP_METADATA_TOPIC_NAME.to_string(),
            num_partitions: self.num_partitions,
            replication_factor,
            assignments: vec![],
            configs: vec![
                ("cleanup.policy".to_string(), Some("compact".to_string())),
                (
                    "segment.bytes".to_string(),
                    Some(self.segment_bytes.to_string()),
                ),
            ],
        }
    }
}

impl CoordinatorDirectory for MetadataDirectory {
    fn offsets_partition_leader(&self, partition: i32) -> OffsetsTopicLeader {
        let snapshot = self.metadata.snapshot();
        let Some(topic) = snapshot.topic(GROUP_METADATA_TOPIC_NAME) else {
            return OffsetsTopicLeader::TopicMissing;
        };
        let Some(p) = topic.partitions.get(&partition) else {
            return OffsetsTopicLeader::LeaderUnavailable;
        };
        match snapshot.brokers.get(&p.leader) {
            Some(b) => OffsetsTopicLeader::Leader {
                node_id: b.id,
                host: b.host.clone(),
                port: i32::from(b.port),
            },
            None => OffsetsTopicLeader::LeaderUnavailable,
        }
    }

    fn request_offsets_topic_creation(&self) {
        let Some(link) = self.controller.get().cloned() else {
            return;
        };
        if self.creating.swap(true, Ordering::AcqRel) {
            return;
        }
        let live = self.metadata.snapshot().brokers.len();
        let topic = self.offsets_topic(live);
        let creating = Arc::clone(&self.creating);
        let request = link.create_topics.send(messages::CreateTopics {
            topics: vec![topic],
            validate_only: false,
            timeout_ms: 0,
        });
        tokio::spawn(async move {
            match request.await {
                Ok(outcomes) => {
                    for o in outcomes {
                        match o.result {
                            // TOPIC_ALREADY_EXISTS is the normal race with another broker.
                            Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {}
                            Err(e) => tracing::warn!(
                                topic = %o.name,
                                error = %e.message_or_default(),
                                "cannot create the offsets topic"
                            ),
                            Ok(_) => tracing::info!("created {GROUP_METADATA_TOPIC_NAME}"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the controller did not answer CreateTopics"),
            }
            creating.store(false, Ordering::Release);
        });
    }

    fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        self.metadata
            .snapshot()
            .partition(topic, partition)
            .is_some()
    }
}

/// One broker's group router (over its `__consumer_offsets` replicas and metadata cache),
/// plus the directory to hand the controller link once it exists
/// ([`MetadataDirectory::set_controller`]). Give the router to
/// [`crate::actors::broker::Broker::with_group_router`] before starting the broker, and to
/// the connections' `ApiContext::groups`.
pub fn broker_group_router(
    config: &BrokerConfig,
    shared: &crate::actors::broker::BrokerShared,
) -> (super::GroupRouter, MetadataDirectory) {
    let group_config = super::GroupConfig::from_broker(config);
    let store = super::replica_store::ReplicaGroupStore::new(
        shared.replicas.clone(),
        group_config.offset_commit_timeout,
    );
    let directory = MetadataDirectory::new(shared.metadata.clone(), config);
    let router =
        super::GroupRouter::new(group_config, Arc::new(store), Arc::new(directory.clone()));
    (router, directory)
}

// The protocol front end's context derives Debug; a router shows what it coordinates.
impl std::fmt::Debug for super::GroupRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupRouter")
            .field("hosted_partitions", &self.hosted_partitions())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_topic_is_compacted_and_capped_at_live_brokers() {
        let config = BrokerConfig::default();
        let dir = MetadataDirectory::new(MetadataCache::new(), &config);
        let t = dir.offsets_topic(1);
        assert_eq!(t.name, "__consumer_offsets");
        assert_eq!(t.num_partitions, 50);
        assert_eq!(t.replication_factor, 1);
        assert!(t
            .configs
            .contains(&("cleanup.policy".into(), Some("compact".into()))));
        assert!(t
            .configs
            .contains(&("segment.bytes".into(), Some("104857600".into()))));
        assert_eq!(dir.offsets_topic(5).replication_factor, 3);
    }

    #[test]
    fn missing_topic_is_reported_and_creation_without_controller_is_a_no_op() {
        let dir = MetadataDirectory::new(MetadataCache::new(), &BrokerConfig::default());
        assert_eq!(
            dir.offsets_partition_leader(0),
            OffsetsTopicLeader::TopicMissing
        );
        dir.request_offsets_topic_creation();
        assert!(!dir.partition_exists("t", 0));
    }
}
