//! The interim, in-process controller of a `weir cluster`: the one decision maker for topic
//! creation and deletion, partition additions and topic configs, until the ZooKeeper-backed
//! controller of [control-plane] (src/actors/controller/) replaces it.
//!
//! It behaves as Kafka's ZooKeeper-era controller does towards brokers, so the brokers do not
//! change when it is replaced: it places partitions (round-robin over the brokers; replication
//! factor 1 until [replication]), generates topic ids (UUID v4), elects the single replica as
//! leader, and pushes `LeaderAndIsr` to the hosting brokers and `UpdateMetadata` to every
//! broker, each stamped with its controller epoch. Its id (broker 1's) is what Metadata and
//! DescribeCluster report as the controller, and every broker forwards the admin requests it
//! receives here.
//!
//! What ZooKeeper would hold (cluster id, controller epoch, topics with ids, assignments,
//! leader epochs, config overrides) is kept in one JSON file under the cluster's data dir,
//! rewritten atomically on every change, so a restart on the same data dir recovers every
//! topic. Each start is a new controller epoch and, as when a broker returns after a crash,
//! a new leader epoch for every partition.
//!
//! Requests are processed one at a time (an `AtomicResponse` per request), like Kafka's
//! single controller event queue: a request's state change and its pushes to the brokers
//! finish before the next request starts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use actix::prelude::*;
use kafka_protocol::error::ResponseError;
use rand::Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::actors::broker::{
    Broker, LeaderAndIsr, LeaderAndIsrPartitionState, TopicConfigChanged, UpdateMetadata,
    UpdateMetadataKind, UpdateMetadataTopicState,
};
use crate::actors::metadata_cache::{
    collides_with, validate_topic_name, BrokerEndpoint, PartitionMetadata, LEADER_DURING_DELETE,
    NO_LEADER,
};
use crate::config::{ConfigError, TopicConfig};
use crate::protocol::error::ApiError;
use crate::storage::TopicPartition;

/// The replication factor the interim controller supports.
pub const MAX_REPLICATION_FACTOR: i16 = 1;

/// One topic as the controller records it (what `/brokers/topics/<t>` and
/// `/config/topics/<t>` hold in ZooKeeper).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionMetadata>,
    /// Topic-level config overrides (keys as Kafka names them).
    pub configs: BTreeMap<String, String>,
}

/// Everything the controller must remember across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerState {
    pub cluster_id: String,
    pub controller_epoch: i32,
    pub topics: BTreeMap<String, TopicRecord>,
    /// The first producer id not yet handed out (what `/latest_producer_id_block` implies in
    /// ZooKeeper): persisted before a block is answered, so a restart never reuses ids.
    /// Older state files lack it; they predate idempotence, so 0 is right for them.
    #[serde(default)]
    pub next_producer_id: i64,
}

impl ControllerState {
    pub fn new() -> Self {
        Self {
            cluster_id: generate_cluster_id(),
            controller_epoch: 0,
            topics: BTreeMap::new(),
            next_producer_id: 0,
        }
    }

    /// Reads the state file, or starts a new cluster when there is none.
    pub fn load_or_new(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("reading controller state {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            Err(e) => Err(anyhow::anyhow!(
                "reading controller state {}: {e}",
                path.display()
            )),
        }
    }

    /// Writes the state atomically: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

impl Default for ControllerState {
    fn default() -> Self {
        Self::new()
    }
}

/// Kafka's cluster id form: a random UUID, URL-safe base64 without padding (22 characters).
pub fn generate_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

/// The cluster-wide settings the controller applies to requests that leave them out.
#[derive(Debug, Clone)]
pub struct ControllerDefaults {
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub delete_topic_enable: bool,
    /// Broker-level topic defaults, to validate overrides against.
    pub topic_defaults: TopicConfig,
}

/// A broker the controller pushes to.
#[derive(Debug, Clone)]
pub struct ControlledBroker {
    pub endpoint: BrokerEndpoint,
    pub addr: Addr<Broker>,
}

pub struct LocalController {
    controller_id: i32,
    state: ControllerState,
    /// `None` keeps the state in memory only (tests).
    state_path: Option<PathBuf>,
    brokers: BTreeMap<i32, ControlledBroker>,
    defaults: ControllerDefaults,
}

impl LocalController {
    pub fn new(
        controller_id: i32,
        state: ControllerState,
        state_path: Option<PathBuf>,
        brokers: Vec<ControlledBroker>,
        defaults: ControllerDefaults,
    ) -> Self {
        Self {
            controller_id,
            state,
            state_path,
            brokers: brokers.into_iter().map(|b| (b.endpoint.id, b)).collect(),
            defaults,
        }
    }

    fn live_brokers(&self) -> Vec<BrokerEndpoint> {
        self.brokers.values().map(|b| b.endpoint.clone()).collect()
    }

    fn topic_state(name: &str, record: &TopicRecord) -> UpdateMetadataTopicState {
        UpdateMetadataTopicState {
            name: name.to_string(),
            topic_id: record.id,
            partitions: record.partitions.values().cloned().collect(),
        }
    }

    /// The pushes for a set of changed topics: config notifications first (replicas are
    /// created with the topic's config), then LeaderAndIsr to hosting brokers, then
    /// UpdateMetadata to everyone; all awaited. Returns the failures, for logging.
    fn push(
        &self,
        kind: UpdateMetadataKind,
        changed: Vec<UpdateMetadataTopicState>,
        configs: Vec<(String, BTreeMap<String, String>)>,
        new_partitions: &BTreeSet<TopicPartition>,
    ) -> impl std::future::Future<Output = Vec<String>> + 'static {
        let epoch = self.state.controller_epoch;
        let controller_id = self.controller_id;
        let live = self.live_brokers();
        let mut config_sends = Vec::new();
        let mut leader_sends = Vec::new();
        let mut metadata_sends = Vec::new();
        for (id, broker) in &self.brokers {
            for (topic, overrides) in &configs {
                config_sends.push((
                    *id,
                    broker.addr.send(TopicConfigChanged {
                        topic: topic.clone(),
                        overrides: overrides.clone(),
                    }),
                ));
            }
            let states: Vec<LeaderAndIsrPartitionState> = changed
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .filter(|p| p.replicas.contains(id) && p.leader != LEADER_DURING_DELETE)
                        .map(|p| LeaderAndIsrPartitionState {
                            topic: t.name.clone(),
                            topic_id: t.topic_id,
                            partition: p.partition,
                            leader: p.leader,
                            leader_epoch: p.leader_epoch,
                            isr: p.isr.clone(),
                            replicas: p.replicas.clone(),
                            partition_epoch: p.partition_epoch,
                            is_new: new_partitions.contains(&TopicPartition {
                                topic: t.name.clone(),
                                partition: p.partition,
                            }),
                        })
                })
                .collect();
            if !states.is_empty() {
                let leaders: BTreeSet<i32> = states.iter().map(|s| s.leader).collect();
                leader_sends.push((
                    *id,
                    broker.addr.send(LeaderAndIsr {
                        controller_id,
                        controller_epoch: epoch,
                        partition_states: states,
                        live_leaders: live
                            .iter()
                            .filter(|b| leaders.contains(&b.id))
                            .cloned()
                            .collect(),
                    }),
                ));
            }
        }
        let update = UpdateMetadata {
            controller_id,
            controller_epoch: epoch,
            kind,
            cluster_id: self.state.cluster_id.clone(),
            live_brokers: live,
            topic_states: changed,
        };
        for (id, broker) in &self.brokers {
            // Sent now so it queues behind the LeaderAndIsr in the broker's mailbox.
            metadata_sends.push((*id, broker.addr.send(update.clone())));
        }
        async move {
            let mut failures = Vec::new();
            for (id, send) in config_sends {
                match send.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(format!("broker {id}: topic config: {e}")),
                    Err(e) => failures.push(format!("broker {id}: topic config: {e}")),
                }
            }
            for (id, send) in leader_sends {
                match send.await {
                    Ok(Ok(results)) => {
                        for (tp, error) in results {
                            if let Some(e) = error {
                                failures.push(format!("broker {id}: LeaderAndIsr {tp}: {e}"));
                            }
                        }
                    }
                    Ok(Err(e)) => failures.push(format!("broker {id}: LeaderAndIsr: {e}")),
                    Err(e) => failures.push(format!("broker {id}: LeaderAndIsr: {e}")),
                }
            }
            for (id, send) in metadata_sends {
                match send.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(format!("broker {id}: UpdateMetadata: {e}")),
                    Err(e) => failures.push(format!("broker {id}: UpdateMetadata: {e}")),
                }
            }
            for failure in &failures {
                tracing::warn!("{failure}");
            }
            failures
        }
    }

    /// Persists the state off the actor thread.
    fn persist(&self) -> impl std::future::Future<Output = Result<(), String>> + 'static {
        let path = self.state_path.clone();
        let state = self.state.clone();
        async move {
            let Some(path) = path else {
                return Ok(());
            };
            tokio::task::spawn_blocking(move || {
                state
                    .save(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))
            })
            .await
            .map_err(|e| e.to_string())?
        }
    }

    /// Round-robin placement of `count` single-replica partitions numbered from `first`,
    /// starting at a random broker (or after partition 0's broker when adding partitions).
    fn place(&self, first: i32, count: i32, start: Option<usize>) -> BTreeMap<i32, Vec<i32>> {
        let ids: Vec<i32> = self.brokers.keys().copied().collect();
        let start = start.unwrap_or_else(|| rand::thread_rng().gen_range(0..ids.len().max(1)));
        (0..count)
            .map(|i| {
                let broker = ids[(start + i as usize) % ids.len()];
                (first + i, vec![broker])
            })
            .collect()
    }

    fn check_replication_factor(&self, rf: i16) -> Result<(), ApiError> {
        if rf <= 0 {
            return Err(ApiError::with_message(
                ResponseError::InvalidReplicationFactor,
                format!("Replication factor must be larger than 0, got {rf}."),
            ));
        }
        if rf as usize > self.brokers.len() {
            return Err(ApiError::with_message(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Replication factor: {rf} larger than available brokers: {}.",
                    self.brokers.len()
                ),
            ));
        }
        if rf > MAX_REPLICATION_FACTOR {
            return Err(ApiError::with_message(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Replication factor {rf} is not supported yet: weir keeps one replica per partition until replication arrives with [replication]; use 1."
                ),
            ));
        }
        Ok(())
    }

    fn check_assignment(
        &self,
        assignment: &BTreeMap<i32, Vec<i32>>,
        first_partition: i32,
    ) -> Result<(), ApiError> {
        let invalid =
            |m: String| ApiError::with_message(ResponseError::InvalidReplicaAssignment, m);
        let expected: Vec<i32> =
            (first_partition..first_partition + assignment.len() as i32).collect();
        if assignment.keys().copied().collect::<Vec<_>>() != expected {
            return Err(invalid(format!(
                "partitions must be numbered consecutively from {first_partition}"
            )));
        }
        let mut sizes = BTreeSet::new();
        for (p, replicas) in assignment {
            if replicas.is_empty() {
                return Err(invalid(format!("partition {p} has no replicas")));
            }
            let unique: BTreeSet<i32> = replicas.iter().copied().collect();
            if unique.len() != replicas.len() {
                return Err(invalid(format!("partition {p} repeats a broker")));
            }
            if let Some(unknown) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                return Err(invalid(format!(
                    "partition {p} names broker {unknown}, which is not in the cluster"
                )));
            }
            sizes.insert(replicas.len());
        }
        if sizes.len() > 1 {
            return Err(invalid(
                "all partitions must have the same number of replicas".into(),
            ));
        }
        if let Some(rf) = sizes.into_iter().next() {
            self.check_replication_factor(rf as i16)?;
        }
        Ok(())
    }

    fn validate_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<(), ApiError> {
        self.defaults
            .topic_defaults
            .with_overrides(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map(|_| ())
            .map_err(config_error)
    }

    fn new_partition(leader: i32) -> PartitionMetadata {
        PartitionMetadata {
            partition: 0,
            leader,
            leader_epoch: 0,
            replicas: vec![leader],
            isr: vec![leader],
            offline_replicas: vec![],
            partition_epoch: 0,
        }
    }

    /// Validates one topic of a CreateTopics request and works out its layout.
    fn plan_topic(&self, topic: &NewTopic) -> Result<(TopicRecord, i16), ApiError> {
        validate_topic_name(&topic.name).map_err(|e| {
            ApiError::with_message(ResponseError::InvalidTopicException, e.to_string())
        })?;
        if self.state.topics.contains_key(&topic.name) {
            return Err(ApiError::with_message(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{}' already exists.", topic.name),
            ));
        }
        if let Some(existing) = self
            .state
            .topics
            .keys()
            .find(|existing| collides_with(existing, &topic.name))
        {
            return Err(ApiError::with_message(
                ResponseError::InvalidTopicException,
                format!(
                    "Topic '{}' collides with existing topic: {existing}",
                    topic.name
                ),
            ));
        }
        let mut configs = BTreeMap::new();
        for (key, value) in &topic.configs {
            let Some(value) = value else {
                return Err(ApiError::with_message(
                    ResponseError::InvalidConfig,
                    format!("Null value not supported for topic configs: {key}"),
                ));
            };
            configs.insert(key.clone(), value.clone());
        }
        self.validate_overrides(&configs)?;
        let assignment = if topic.assignments.is_empty() {
            let partitions = if topic.num_partitions == -1 {
                self.defaults.num_partitions
            } else {
                topic.num_partitions
            };
            if partitions <= 0 {
                return Err(ApiError::with_message(
                    ResponseError::InvalidPartitions,
                    format!("Number of partitions must be larger than 0, got {partitions}."),
                ));
            }
            let rf = if topic.replication_factor == -1 {
                self.defaults.default_replication_factor
            } else {
                topic.replication_factor
            };
            self.check_replication_factor(rf)?;
            self.place(0, partitions, None)
        } else {
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                return Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                ));
            }
            let assignment: BTreeMap<i32, Vec<i32>> = topic.assignments.iter().cloned().collect();
            if assignment.len() != topic.assignments.len() {
                return Err(ApiError::with_message(
                    ResponseError::InvalidReplicaAssignment,
                    "a partition is assigned twice",
                ));
            }
            self.check_assignment(&assignment, 0)?;
            assignment
        };
        let rf = assignment.values().next().map(|r| r.len()).unwrap_or(1) as i16;
        let partitions = assignment
            .into_iter()
            .map(|(p, replicas)| {
                let mut state = Self::new_partition(replicas[0]);
                state.partition = p;
                state.replicas = replicas.clone();
                state.isr = replicas;
                (p, state)
            })
            .collect();
        Ok((
            TopicRecord {
                id: Uuid::new_v4(),
                partitions,
                configs,
            },
            rf,
        ))
    }
}

fn config_error(e: ConfigError) -> ApiError {
    match e {
        ConfigError::Unknown { key } => ApiError::with_message(
            ResponseError::InvalidConfig,
            format!("Unknown topic config name: {key}"),
        ),
        other => ApiError::with_message(ResponseError::InvalidConfig, other.to_string()),
    }
}

impl Actor for LocalController {
    type Context = Context<Self>;
}

// ---------------------------------------------------------------------------------------
// Messages

/// Become the active controller: a new controller epoch, a new leader epoch for every
/// partition, and the full metadata pushed to every broker. Answers once every broker has
/// its metadata (the cluster prints `ready` then).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct Activate;

impl Handler<Activate> for LocalController {
    type Result = AtomicResponse<Self, Result<(), String>>;

    fn handle(&mut self, _: Activate, _: &mut Self::Context) -> Self::Result {
        self.state.controller_epoch += 1;
        let live: BTreeSet<i32> = self.brokers.keys().copied().collect();
        let mut configs = Vec::new();
        for (name, topic) in self.state.topics.iter_mut() {
            for p in topic.partitions.values_mut() {
                // Leadership restarts: as when a broker comes back, a new leader epoch.
                let candidate = p.replicas.iter().copied().find(|r| live.contains(r));
                p.leader = candidate.unwrap_or(NO_LEADER);
                p.leader_epoch += 1;
                p.partition_epoch += 1;
                p.offline_replicas = p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| !live.contains(r))
                    .collect();
                if let Some(leader) = candidate {
                    p.isr = vec![leader];
                }
            }
            if !topic.configs.is_empty() {
                configs.push((name.clone(), topic.configs.clone()));
            }
        }
        let changed = self
            .state
            .topics
            .iter()
            .map(|(name, record)| Self::topic_state(name, record))
            .collect();
        let persist = self.persist();
        let push = self.push(UpdateMetadataKind::Full, changed, configs, &BTreeSet::new());
        let epoch = self.state.controller_epoch;
        let controller_id = self.controller_id;
        let work = async move {
            persist.await?;
            let failures = push.await;
            tracing::info!(controller = controller_id, epoch, "controller active");
            if failures.is_empty() {
                Ok(())
            } else {
                Err(failures.join("; "))
            }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

/// One topic of a CreateTopics request (-1 for `num_partitions`/`replication_factor` means
/// the cluster default).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// Explicit assignment: partition → replicas.
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: Vec<(String, Option<String>)>,
}

impl NewTopic {
    /// A topic with the cluster's defaults (Metadata's auto-creation).
    pub fn with_defaults(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![],
            configs: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreateTopicOutcome {
    pub name: String,
    pub result: Result<CreatedTopic, ApiError>,
}

/// CreateTopics (also Metadata's auto-creation).
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Vec<CreateTopicOutcome>")]
pub struct CreateTopics {
    pub topics: Vec<NewTopic>,
    pub validate_only: bool,
}

impl Handler<CreateTopics> for LocalController {
    type Result = AtomicResponse<Self, Vec<CreateTopicOutcome>>;

    fn handle(&mut self, msg: CreateTopics, _: &mut Self::Context) -> Self::Result {
        let mut outcomes = Vec::new();
        let mut changed = Vec::new();
        let mut configs = Vec::new();
        let mut new_partitions = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for topic in &msg.topics {
            if !seen.insert(topic.name.clone())
                || msg.topics.iter().filter(|t| t.name == topic.name).count() > 1
            {
                outcomes.push(CreateTopicOutcome {
                    name: topic.name.clone(),
                    result: Err(ApiError::with_message(
                        ResponseError::InvalidRequest,
                        format!("Create topics request from client contains multiple entries for the following topic: {}", topic.name),
                    )),
                });
                continue;
            }
            let result = self.plan_topic(topic).map(|(record, rf)| {
                let created = CreatedTopic {
                    topic_id: record.id,
                    num_partitions: record.partitions.len() as i32,
                    replication_factor: rf,
                    configs: record.configs.clone(),
                };
                if !msg.validate_only {
                    for p in record.partitions.keys() {
                        new_partitions.insert(TopicPartition {
                            topic: topic.name.clone(),
                            partition: *p,
                        });
                    }
                    if !record.configs.is_empty() {
                        configs.push((topic.name.clone(), record.configs.clone()));
                    }
                    changed.push(Self::topic_state(&topic.name, &record));
                    self.state.topics.insert(topic.name.clone(), record);
                }
                created
            });
            if let Ok(created) = &result {
                if !msg.validate_only {
                    tracing::info!(topic = %topic.name, partitions = created.num_partitions, id = %created.topic_id, "created topic");
                }
            }
            outcomes.push(CreateTopicOutcome {
                name: topic.name.clone(),
                result,
            });
        }
        if changed.is_empty() {
            return AtomicResponse::new(Box::pin(fut::ready(outcomes)));
        }
        let persist = self.persist();
        let push = self.push(
            UpdateMetadataKind::Incremental,
            changed,
            configs,
            &new_partitions,
        );
        let work = async move {
            if let Err(e) = persist.await {
                tracing::error!(error = %e, "persisting controller state failed");
            }
            push.await;
            outcomes
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

/// A topic named by name or (DeleteTopics v6) by id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeleteTopicOutcome {
    pub name: Option<String>,
    pub topic_id: Uuid,
    pub error: Option<ApiError>,
}

#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Vec<DeleteTopicOutcome>")]
pub struct DeleteTopics {
    pub topics: Vec<TopicRef>,
}

impl Handler<DeleteTopics> for LocalController {
    type Result = AtomicResponse<Self, Vec<DeleteTopicOutcome>>;

    fn handle(&mut self, msg: DeleteTopics, _: &mut Self::Context) -> Self::Result {
        let mut outcomes = Vec::new();
        let mut deleted: Vec<(String, TopicRecord)> = Vec::new();
        for topic in msg.topics {
            let name = match &topic {
                TopicRef::Name(name) => Some(name.clone()),
                TopicRef::Id(id) => self
                    .state
                    .topics
                    .iter()
                    .find(|(_, r)| r.id == *id)
                    .map(|(n, _)| n.clone()),
            };
            let unknown = match &topic {
                TopicRef::Name(_) => ResponseError::UnknownTopicOrPartition,
                TopicRef::Id(_) => ResponseError::UnknownTopicId,
            };
            let requested_id = match &topic {
                TopicRef::Id(id) => *id,
                TopicRef::Name(_) => Uuid::nil(),
            };
            let Some(name) = name.filter(|n| self.state.topics.contains_key(n)) else {
                outcomes.push(DeleteTopicOutcome {
                    name: match topic {
                        TopicRef::Name(n) => Some(n),
                        TopicRef::Id(_) => None,
                    },
                    topic_id: requested_id,
                    error: Some(ApiError::new(unknown)),
                });
                continue;
            };
            if !self.defaults.delete_topic_enable {
                outcomes.push(DeleteTopicOutcome {
                    name: Some(name),
                    topic_id: requested_id,
                    error: Some(ApiError::with_message(
                        ResponseError::TopicDeletionDisabled,
                        "Topic deletion is disabled (delete.topic.enable=false).",
                    )),
                });
                continue;
            }
            let Some(record) = self.state.topics.remove(&name) else {
                continue;
            };
            tracing::info!(topic = %name, id = %record.id, "deleting topic");
            outcomes.push(DeleteTopicOutcome {
                name: Some(name.clone()),
                topic_id: record.id,
                error: None,
            });
            deleted.push((name, record));
        }
        if deleted.is_empty() {
            return AtomicResponse::new(Box::pin(fut::ready(outcomes)));
        }
        let epoch = self.state.controller_epoch;
        let controller_id = self.controller_id;
        let mut stops = Vec::new();
        for (id, broker) in &self.brokers {
            let partitions: Vec<TopicPartition> = deleted
                .iter()
                .flat_map(|(name, record)| {
                    record
                        .partitions
                        .values()
                        .filter(|p| p.replicas.contains(id))
                        .map(|p| TopicPartition {
                            topic: name.clone(),
                            partition: p.partition,
                        })
                })
                .collect();
            if !partitions.is_empty() {
                stops.push(broker.addr.send(crate::actors::broker::StopReplica {
                    controller_id,
                    controller_epoch: epoch,
                    partitions,
                    delete: true,
                }));
            }
        }
        let changed = deleted
            .iter()
            .map(|(name, record)| UpdateMetadataTopicState {
                name: name.clone(),
                topic_id: record.id,
                partitions: record
                    .partitions
                    .values()
                    .map(|p| PartitionMetadata {
                        leader: LEADER_DURING_DELETE,
                        ..p.clone()
                    })
                    .collect(),
            })
            .collect();
        let persist = self.persist();
        let push = self.push(
            UpdateMetadataKind::Incremental,
            changed,
            vec![],
            &BTreeSet::new(),
        );
        let work = async move {
            if let Err(e) = persist.await {
                tracing::error!(error = %e, "persisting controller state failed");
            }
            for stop in stops {
                match stop.await {
                    Ok(Ok(results)) => {
                        for (tp, e) in results {
                            if let Some(e) = e {
                                tracing::warn!(partition = %tp, error = %e, "deleting a replica failed");
                            }
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "StopReplica refused"),
                    Err(e) => tracing::warn!(error = %e, "StopReplica not delivered"),
                }
            }
            push.await;
            outcomes
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

/// One topic of a CreatePartitions request: grow to `count` partitions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewPartitions {
    pub name: String,
    pub count: i32,
    /// Replicas of each new partition, in partition order.
    pub assignments: Option<Vec<Vec<i32>>>,
}

#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Vec<(String, Result<(), ApiError>)>")]
pub struct CreatePartitions {
    pub topics: Vec<NewPartitions>,
    pub validate_only: bool,
}

impl Handler<CreatePartitions> for LocalController {
    type Result = AtomicResponse<Self, Vec<(String, Result<(), ApiError>)>>;

    fn handle(&mut self, msg: CreatePartitions, _: &mut Self::Context) -> Self::Result {
        let mut outcomes = Vec::new();
        let mut changed = Vec::new();
        let mut new_partitions = BTreeSet::new();
        for request in msg.topics {
            let result = (|| {
                let Some(record) = self.state.topics.get(&request.name) else {
                    return Err(ApiError::with_message(
                        ResponseError::UnknownTopicOrPartition,
                        format!("The topic '{}' does not exist.", request.name),
                    ));
                };
                let current = record.partitions.len() as i32;
                if request.count <= current {
                    return Err(ApiError::with_message(
                        ResponseError::InvalidPartitions,
                        format!(
                            "Topic currently has {current} partitions, which is higher than the requested {}.",
                            request.count
                        ),
                    ));
                }
                let adding = request.count - current;
                let assignment: BTreeMap<i32, Vec<i32>> = match &request.assignments {
                    Some(lists) => {
                        if lists.len() as i32 != adding {
                            return Err(ApiError::with_message(
                                ResponseError::InvalidReplicaAssignment,
                                format!(
                                    "Increasing the number of partitions by {adding} but {} assignments provided.",
                                    lists.len()
                                ),
                            ));
                        }
                        let assignment = lists
                            .iter()
                            .enumerate()
                            .map(|(i, r)| (current + i as i32, r.clone()))
                            .collect();
                        self.check_assignment(&assignment, current)?;
                        assignment
                    }
                    None => {
                        let ids: Vec<i32> = self.brokers.keys().copied().collect();
                        let first_leader = record
                            .partitions
                            .get(&0)
                            .and_then(|p| p.replicas.first().copied());
                        let start = first_leader
                            .and_then(|l| ids.iter().position(|id| *id == l))
                            .map(|i| i + current as usize);
                        self.place(current, adding, start)
                    }
                };
                Ok(assignment)
            })();
            match result {
                Ok(assignment) => {
                    if !msg.validate_only {
                        if let Some(record) = self.state.topics.get_mut(&request.name) {
                            for (p, replicas) in assignment {
                                let mut state = Self::new_partition(replicas[0]);
                                state.partition = p;
                                state.isr = replicas.clone();
                                state.replicas = replicas;
                                record.partitions.insert(p, state);
                                new_partitions.insert(TopicPartition {
                                    topic: request.name.clone(),
                                    partition: p,
                                });
                            }
                            changed.push(Self::topic_state(&request.name, record));
                        }
                    }
                    outcomes.push((request.name, Ok(())));
                }
                Err(e) => outcomes.push((request.name, Err(e))),
            }
        }
        if changed.is_empty() {
            return AtomicResponse::new(Box::pin(fut::ready(outcomes)));
        }
        let persist = self.persist();
        let push = self.push(
            UpdateMetadataKind::Incremental,
            changed,
            vec![],
            &new_partitions,
        );
        let work = async move {
            if let Err(e) = persist.await {
                tracing::error!(error = %e, "persisting controller state failed");
            }
            push.await;
            outcomes
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

/// IncrementalAlterConfigs' operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AlterConfigOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl AlterConfigOp {
    pub fn from_wire(op: i8) -> Option<Self> {
        match op {
            0 => Some(Self::Set),
            1 => Some(Self::Delete),
            2 => Some(Self::Append),
            3 => Some(Self::Subtract),
            _ => None,
        }
    }
}

/// How a topic's overrides change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConfigChange {
    /// AlterConfigs: the given overrides replace all existing ones.
    Replace(Vec<(String, Option<String>)>),
    /// IncrementalAlterConfigs.
    Incremental(Vec<(String, AlterConfigOp, Option<String>)>),
}

#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Vec<(String, Result<(), ApiError>)>")]
pub struct AlterTopicConfigs {
    pub changes: Vec<(String, ConfigChange)>,
    pub validate_only: bool,
}

/// Keys whose value is a list (APPEND and SUBTRACT apply only to them).
const LIST_KEYS: &[&str] = &["cleanup.policy"];

impl LocalController {
    fn apply_change(
        &self,
        topic: &str,
        change: &ConfigChange,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let record = self.state.topics.get(topic).ok_or_else(|| {
            ApiError::with_message(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{topic}' does not exist."),
            )
        })?;
        let unknown = |key: &str| {
            ApiError::with_message(
                ResponseError::InvalidConfig,
                format!("Unknown topic config name: {key}"),
            )
        };
        let mut overrides = match change {
            ConfigChange::Replace(_) => BTreeMap::new(),
            ConfigChange::Incremental(_) => record.configs.clone(),
        };
        match change {
            ConfigChange::Replace(entries) => {
                for (key, value) in entries {
                    let value = value.clone().ok_or_else(|| {
                        ApiError::with_message(
                            ResponseError::InvalidRequest,
                            format!("Null value not supported for : {key}"),
                        )
                    })?;
                    overrides.insert(key.clone(), value);
                }
            }
            ConfigChange::Incremental(ops) => {
                for (key, op, value) in ops {
                    if !TopicConfig::KEYS.contains(&key.as_str()) {
                        return Err(unknown(key));
                    }
                    let current = || -> Vec<String> {
                        overrides
                            .get(key)
                            .cloned()
                            .or_else(|| self.defaults.topic_defaults.get(key))
                            .unwrap_or_default()
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    };
                    match op {
                        AlterConfigOp::Set => {
                            let value = value.clone().ok_or_else(|| {
                                ApiError::with_message(
                                    ResponseError::InvalidRequest,
                                    format!("Null value not supported for : {key}"),
                                )
                            })?;
                            overrides.insert(key.clone(), value);
                        }
                        AlterConfigOp::Delete => {
                            overrides.remove(key);
                        }
                        AlterConfigOp::Append | AlterConfigOp::Subtract => {
                            if !LIST_KEYS.contains(&key.as_str()) {
                                return Err(ApiError::with_message(
                                    ResponseError::InvalidConfig,
                                    format!("Config value append/subtract is not allowed for config key {key}, which is not a list"),
                                ));
                            }
                            let items: Vec<String> = value
                                .clone()
                                .unwrap_or_default()
                                .split(',')
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                                .map(String::from)
                                .collect();
                            let mut list = current();
                            if *op == AlterConfigOp::Append {
                                for item in items {
                                    if !list.contains(&item) {
                                        list.push(item);
                                    }
                                }
                            } else {
                                list.retain(|v| !items.contains(v));
                            }
                            overrides.insert(key.clone(), list.join(","));
                        }
                    }
                }
            }
        }
        self.validate_overrides(&overrides)?;
        Ok(overrides)
    }
}

impl Handler<AlterTopicConfigs> for LocalController {
    type Result = AtomicResponse<Self, Vec<(String, Result<(), ApiError>)>>;

    fn handle(&mut self, msg: AlterTopicConfigs, _: &mut Self::Context) -> Self::Result {
        let mut outcomes = Vec::new();
        let mut configs = Vec::new();
        for (topic, change) in msg.changes {
            match self.apply_change(&topic, &change) {
                Ok(overrides) => {
                    if !msg.validate_only {
                        if let Some(record) = self.state.topics.get_mut(&topic) {
                            record.configs = overrides.clone();
                        }
                        configs.push((topic.clone(), overrides));
                    }
                    outcomes.push((topic, Ok(())));
                }
                Err(e) => outcomes.push((topic, Err(e))),
            }
        }
        if configs.is_empty() {
            return AtomicResponse::new(Box::pin(fut::ready(outcomes)));
        }
        let persist = self.persist();
        let controller_id = self.controller_id;
        let epoch = self.state.controller_epoch;
        let sends: Vec<_> = self
            .brokers
            .values()
            .flat_map(|b| {
                configs.iter().map(|(topic, overrides)| {
                    b.addr.send(TopicConfigChanged {
                        topic: topic.clone(),
                        overrides: overrides.clone(),
                    })
                })
            })
            .collect();
        let work = async move {
            if let Err(e) = persist.await {
                tracing::error!(error = %e, "persisting controller state failed");
            }
            for send in sends {
                if let Ok(Err(e)) = send.await {
                    tracing::warn!(controller = controller_id, epoch, error = %e, "a broker refused a topic config");
                }
            }
            outcomes
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

/// Kafka's producer id block size (`ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// A range of producer ids one broker may hand out on its own, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    pub broker_id: i32,
    pub first: i64,
    pub last: i64,
}

/// Asks the cluster-wide producer id allocator for a fresh block (what Kafka's ZooKeeper
/// mode does by updating `/latest_producer_id_block` with a conditional write, and KRaft by
/// AllocateProducerIds). Any allocator speaks this message: the interim controller now, the
/// ZooKeeper-backed controller later.
#[derive(Debug, Message)]
#[rtype(result = "Result<ProducerIdBlock, ApiError>")]
pub struct AllocateProducerIdBlock {
    pub broker_id: i32,
}

impl Handler<AllocateProducerIdBlock> for LocalController {
    type Result = AtomicResponse<Self, Result<ProducerIdBlock, ApiError>>;

    fn handle(&mut self, msg: AllocateProducerIdBlock, _: &mut Self::Context) -> Self::Result {
        let first = self.state.next_producer_id;
        let block = match first.checked_add(PRODUCER_ID_BLOCK_SIZE) {
            Some(next) if next > 0 => {
                self.state.next_producer_id = next;
                Ok(ProducerIdBlock {
                    broker_id: msg.broker_id,
                    first,
                    last: next - 1,
                })
            }
            _ => Err(ApiError::with_message(
                ResponseError::UnknownServerError,
                "producer ids are exhausted",
            )),
        };
        let persist = self.persist();
        let work = async move {
            let block = block?;
            // The block is only handed out once the new high mark is durable.
            persist.await.map_err(|e| {
                ApiError::with_message(
                    ResponseError::UnknownServerError,
                    format!("persisting the producer id high mark: {e}"),
                )
            })?;
            Ok(block)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

/// One broker process's current producer id block, shared by its connections: ids come out
/// of it without asking the allocator until it is used up (Kafka's ProducerIdManager).
#[derive(Debug, Default)]
pub struct ProducerIdBlockState {
    /// The next id to hand out and the block's last id; `None` before the first block.
    current: Option<(i64, i64)>,
}

/// Hands out producer ids from blocks obtained from the cluster-wide allocator.
#[derive(Debug, Clone)]
pub struct ProducerIdManager {
    allocator: Recipient<AllocateProducerIdBlock>,
    /// An async mutex: the allocator round trip happens while holding it, so concurrent
    /// InitProducerId requests never fetch two blocks when one would do.
    state: std::sync::Arc<tokio::sync::Mutex<ProducerIdBlockState>>,
}

impl ProducerIdManager {
    pub fn new(allocator: Recipient<AllocateProducerIdBlock>) -> Self {
        Self {
            allocator,
            state: Default::default(),
        }
    }

    /// The next unused producer id.
    pub async fn generate(&self, broker_id: i32) -> Result<i64, ApiError> {
        let mut state = self.state.lock().await;
        if let Some((next, last)) = state.current {
            if next <= last {
                state.current = Some((next + 1, last));
                return Ok(next);
            }
        }
        let block = self
            .allocator
            .send(AllocateProducerIdBlock { broker_id })
            .await
            .map_err(|e| {
                ApiError::with_message(
                    ResponseError::CoordinatorNotAvailable,
                    format!("the producer id allocator is unreachable: {e}"),
                )
            })??;
        state.current = Some((block.first + 1, block.last));
        Ok(block.first)
    }
}

/// The recipients a broker's connections forward admin requests to: the interim controller
/// now, the elected controller of [control-plane] later.
#[derive(Debug, Clone)]
pub struct ControllerLink {
    pub controller_id: i32,
    pub create_topics: Recipient<CreateTopics>,
    pub delete_topics: Recipient<DeleteTopics>,
    pub create_partitions: Recipient<CreatePartitions>,
    pub alter_topic_configs: Recipient<AlterTopicConfigs>,
    /// ElectLeaders (preferred or unclean).
    pub elect_leaders: Recipient<crate::actors::controller::messages::ElectLeaders>,
    /// InitProducerId's id source (one block at a time from the cluster-wide allocator).
    pub producer_ids: ProducerIdManager,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::broker::BrokerShared;
    use crate::config::BrokerConfig;

    struct TestCluster {
        controller: Addr<LocalController>,
        brokers: Vec<BrokerShared>,
        _dirs: Vec<tempfile::TempDir>,
        state_dir: tempfile::TempDir,
    }

    fn defaults() -> ControllerDefaults {
        ControllerDefaults {
            num_partitions: 2,
            default_replication_factor: 1,
            delete_topic_enable: true,
            topic_defaults: BrokerConfig::default().topic_defaults(),
        }
    }

    async fn cluster(n: i32, state_dir: Option<tempfile::TempDir>) -> TestCluster {
        let state_dir = state_dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let path = state_dir.path().join("state.json");
        let state = ControllerState::load_or_new(&path).unwrap();
        let mut dirs = Vec::new();
        let mut shared = Vec::new();
        let mut controlled = Vec::new();
        for id in 1..=n {
            let dir = tempfile::tempdir().unwrap();
            let config = BrokerConfig {
                broker_id: id,
                log_dirs: vec![dir.path().display().to_string()],
                ..BrokerConfig::default()
            };
            let (broker, s) = Broker::open(config, Some(&state.cluster_id), vec![]).unwrap();
            controlled.push(ControlledBroker {
                endpoint: BrokerEndpoint {
                    id,
                    host: "127.0.0.1".into(),
                    port: 20_000 + id as u16,
                    rack: None,
                    listeners: vec![],
                },
                addr: broker.start(),
            });
            shared.push(s);
            dirs.push(dir);
        }
        let controller = LocalController::new(1, state, Some(path), controlled, defaults()).start();
        controller.send(Activate).await.unwrap().unwrap();
        TestCluster {
            controller,
            brokers: shared,
            _dirs: dirs,
            state_dir,
        }
    }

    fn new_topic(name: &str, partitions: i32, rf: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            assignments: vec![],
            configs: vec![],
        }
    }

    #[actix::test]
    async fn activation_gives_every_broker_the_cluster_and_the_controller_id() {
        let c = cluster(3, None).await;
        for b in &c.brokers {
            let s = b.metadata.snapshot();
            assert_eq!(s.controller_id, 1);
            assert_eq!(s.brokers.len(), 3);
            assert_eq!(s.cluster_id.as_deref().map(str::len), Some(22));
        }
    }

    #[actix::test]
    async fn created_partitions_spread_round_robin_with_leaders_hosting_them() {
        let c = cluster(3, None).await;
        let outcomes = c
            .controller
            .send(CreateTopics {
                topics: vec![new_topic("orders", 6, 1)],
                validate_only: false,
            })
            .await
            .unwrap();
        let created = outcomes[0].result.clone().unwrap();
        assert_eq!(created.num_partitions, 6);
        let snapshot = c.brokers[0].metadata.snapshot();
        let topic = snapshot.topic("orders").unwrap();
        assert_eq!(topic.id, created.topic_id);
        let mut per_broker = BTreeMap::<i32, usize>::new();
        for p in topic.partitions.values() {
            *per_broker.entry(p.leader).or_default() += 1;
            let host = &c.brokers[(p.leader - 1) as usize];
            assert!(
                host.replicas
                    .get("orders", p.partition)
                    .unwrap()
                    .progress()
                    .is_leader
            );
        }
        assert_eq!(
            per_broker.values().copied().collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
    }

    #[actix::test]
    async fn invalid_creations_get_kafkas_error_codes() {
        let c = cluster(1, None).await;
        let mut bad_config = new_topic("configured", 1, 1);
        bad_config.configs = vec![("retention.ms".into(), Some("later".into()))];
        let mut unknown_config = new_topic("configured2", 1, 1);
        unknown_config.configs = vec![("no.such.key".into(), Some("1".into()))];
        let outcomes = c
            .controller
            .send(CreateTopics {
                topics: vec![
                    new_topic("bad name", 1, 1),
                    new_topic("zero", 0, 1),
                    new_topic("replicated", 1, 3),
                    bad_config,
                    unknown_config,
                ],
                validate_only: false,
            })
            .await
            .unwrap();
        let codes: Vec<i16> = outcomes
            .iter()
            .map(|o| o.result.as_ref().unwrap_err().code)
            .collect();
        assert_eq!(
            codes,
            vec![
                ResponseError::InvalidTopicException.code(),
                ResponseError::InvalidPartitions.code(),
                ResponseError::InvalidReplicationFactor.code(),
                ResponseError::InvalidConfig.code(),
                ResponseError::InvalidConfig.code(),
            ]
        );
        let again = c
            .controller
            .send(CreateTopics {
                topics: vec![new_topic("t", 1, 1)],
                validate_only: false,
            })
            .await
            .unwrap();
        assert!(again[0].result.is_ok());
        let dup = c
            .controller
            .send(CreateTopics {
                topics: vec![new_topic("t", 1, 1)],
                validate_only: false,
            })
            .await
            .unwrap();
        assert_eq!(
            dup[0].result.as_ref().unwrap_err().code,
            ResponseError::TopicAlreadyExists.code()
        );
    }

    #[actix::test]
    async fn replication_factor_above_one_is_refused_until_replication() {
        let c = cluster(3, None).await;
        let outcomes = c
            .controller
            .send(CreateTopics {
                topics: vec![new_topic("r3", 1, 3)],
                validate_only: false,
            })
            .await
            .unwrap();
        let err = outcomes[0].result.clone().unwrap_err();
        assert_eq!(err.code, ResponseError::InvalidReplicationFactor.code());
        assert!(err.message.unwrap().contains("[replication]"));
    }

    #[actix::test]
    async fn deleting_a_topic_removes_it_everywhere() {
        let c = cluster(2, None).await;
        c.controller
            .send(CreateTopics {
                topics: vec![new_topic("gone", 4, 1)],
                validate_only: false,
            })
            .await
            .unwrap();
        let outcomes = c
            .controller
            .send(DeleteTopics {
                topics: vec![
                    TopicRef::Name("gone".into()),
                    TopicRef::Name("never".into()),
                ],
            })
            .await
            .unwrap();
        assert!(outcomes[0].error.is_none());
        assert_eq!(
            outcomes[1].error.as_ref().unwrap().code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        for b in &c.brokers {
            assert!(b.metadata.snapshot().topic("gone").is_none());
            assert!(b.replicas.is_empty());
        }
    }

    #[actix::test]
    async fn partitions_can_only_grow() {
        let c = cluster(2, None).await;
        c.controller
            .send(CreateTopics {
                topics: vec![new_topic("grow", 2, 1)],
                validate_only: false,
            })
            .await
            .unwrap();
        let outcomes = c
            .controller
            .send(CreatePartitions {
                topics: vec![
                    NewPartitions {
                        name: "grow".into(),
                        count: 5,
                        assignments: None,
                    },
                    NewPartitions {
                        name: "grow".into(),
                        count: 1,
                        assignments: None,
                    },
                ],
                validate_only: false,
            })
            .await
            .unwrap();
        assert!(outcomes[0].1.is_ok());
        assert_eq!(
            outcomes[1].1.as_ref().unwrap_err().code,
            ResponseError::InvalidPartitions.code()
        );
        let snapshot = c.brokers[1].metadata.snapshot();
        assert_eq!(snapshot.topic("grow").unwrap().partitions.len(), 5);
    }

    #[actix::test]
    async fn incremental_config_changes_validate_and_reach_brokers() {
        let c = cluster(1, None).await;
        c.controller
            .send(CreateTopics {
                topics: vec![new_topic("cfg", 1, 1)],
                validate_only: false,
            })
            .await
            .unwrap();
        let outcomes = c
            .controller
            .send(AlterTopicConfigs {
                changes: vec![
                    (
                        "cfg".into(),
                        ConfigChange::Incremental(vec![
                            (
                                "retention.ms".into(),
                                AlterConfigOp::Set,
                                Some("5000".into()),
                            ),
                            (
                                "cleanup.policy".into(),
                                AlterConfigOp::Append,
                                Some("compact".into()),
                            ),
                        ]),
                    ),
                    (
                        "cfg".into(),
                        ConfigChange::Incremental(vec![(
                            "retention.ms".into(),
                            AlterConfigOp::Append,
                            Some("1".into()),
                        )]),
                    ),
                ],
                validate_only: false,
            })
            .await
            .unwrap();
        assert!(outcomes[0].1.is_ok(), "{outcomes:?}");
        assert_eq!(
            outcomes[1].1.as_ref().unwrap_err().code,
            ResponseError::InvalidConfig.code()
        );
        let snapshot = c.brokers[0].metadata.snapshot();
        let config = snapshot.topic_config("cfg").unwrap();
        assert_eq!(config.effective.retention_ms, 5000);
        assert_eq!(config.effective.cleanup_policy, vec!["delete", "compact"]);
    }

    #[actix::test]
    async fn a_restarted_controller_recovers_topics_with_a_new_leader_epoch() {
        let c = cluster(1, None).await;
        let created = c
            .controller
            .send(CreateTopics {
                topics: vec![new_topic("kept", 3, 1)],
                validate_only: false,
            })
            .await
            .unwrap()[0]
            .result
            .clone()
            .unwrap();
        let state_dir = c.state_dir;
        let state = ControllerState::load_or_new(&state_dir.path().join("state.json")).unwrap();
        assert_eq!(state.controller_epoch, 1);
        assert_eq!(state.topics["kept"].id, created.topic_id);
        let again = cluster(1, Some(state_dir)).await;
        let snapshot = again.brokers[0].metadata.snapshot();
        let topic = snapshot.topic("kept").unwrap();
        assert_eq!(topic.id, created.topic_id);
        assert!(topic.partitions.values().all(|p| p.leader_epoch == 1));
        assert_eq!(snapshot.controller_epoch, 2);
    }

    #[actix::test]
    async fn producer_id_blocks_are_disjoint_and_never_reused_after_a_restart() {
        let c = cluster(1, None).await;
        let first = c
            .controller
            .send(AllocateProducerIdBlock { broker_id: 1 })
            .await
            .unwrap()
            .unwrap();
        let second = c
            .controller
            .send(AllocateProducerIdBlock { broker_id: 2 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!((first.first, first.last), (0, PRODUCER_ID_BLOCK_SIZE - 1));
        assert_eq!(second.first, first.last + 1);
        assert_eq!(second.broker_id, 2);
        let again = cluster(1, Some(c.state_dir)).await;
        let third = again
            .controller
            .send(AllocateProducerIdBlock { broker_id: 1 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(third.first, second.last + 1);
    }

    /// An allocator that hands out 2-id blocks.
    struct TinyBlocks {
        next: i64,
    }

    impl Actor for TinyBlocks {
        type Context = Context<Self>;
    }

    impl Handler<AllocateProducerIdBlock> for TinyBlocks {
        type Result = Result<ProducerIdBlock, ApiError>;

        fn handle(&mut self, msg: AllocateProducerIdBlock, _: &mut Self::Context) -> Self::Result {
            let first = self.next;
            self.next += 2;
            Ok(ProducerIdBlock {
                broker_id: msg.broker_id,
                first,
                last: first + 1,
            })
        }
    }

    #[actix::test]
    async fn the_producer_id_manager_uses_up_a_block_before_asking_for_the_next() {
        let allocator = TinyBlocks { next: 100 }.start();
        let ids = ProducerIdManager::new(allocator.clone().recipient());
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(ids.clone().generate(1).await.unwrap());
        }
        assert_eq!(got, vec![100, 101, 102, 103, 104]);
        // Three blocks were fetched for five ids: the allocator's next block starts at 106.
        let next = allocator
            .send(AllocateProducerIdBlock { broker_id: 1 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next.first, 106);
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = generate_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}
