//! The broker actor (Kafka's `KafkaServer` with its `ReplicaManager` and `MetadataCache`):
//! owns this broker's [`LogManager`], the replica actor of every partition it hosts, and the
//! metadata cache, and applies the controller's typed requests to them:
//!
//! - [`UpdateMetadata`] (full or incremental) refreshes the metadata cache;
//! - [`LeaderAndIsr`] creates replicas (opening or creating their logs, the file work on a
//!   blocking thread) and tells each its role and leader epoch;
//! - [`StopReplica`] stops replicas and, for a deleted topic, deletes their logs;
//! - [`TopicConfigChanged`] (Kafka's config change notification) re-applies a topic's config.
//!
//! Every controller request carries the controller epoch; one older than the newest seen is
//! refused with STALE_CONTROLLER_EPOCH, so a deposed controller cannot undo a newer one.
//!
//! The broker learns about the cluster only through these messages. Connections do not go
//! through this actor on the hot path: they read the metadata cache snapshot and the
//! [`LocalReplicas`] table directly and send produce and fetch requests straight to the
//! replica actors, which are spread over several arbiters (threads).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use actix::prelude::*;
use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use crate::actors::alter_partition::{AlterPartitionManager, ProposeIsr};
use crate::actors::controller::messages::ConfigEntity;
use crate::actors::group::{GroupRouter, GROUP_METADATA_TOPIC_NAME};
use crate::actors::metadata_cache::{
    BrokerEndpoint, MetadataCache, MetadataSnapshot, PartitionMetadata, TopicConfigState,
    TopicMetadata, INTERNAL_TOPICS, LEADER_DURING_DELETE,
};
use crate::actors::replica::{
    self, ApplyLeaderAndIsr, DescribeReplica, FollowerPosition, LeaderAndIsrState, LogDirFailed,
    LogDirOffline, PartitionProgress, Replica, ReplicaDescription, ReplicaHandle, RoleChange,
    UpdateTopicConfig,
};
use crate::actors::replication::fetcher::{FetcherManager, FetcherSettings, FollowedPartition};
use crate::config::dynamic::{self, DynamicBrokerConfigs};
use crate::config::{BrokerConfig, TopicConfig};
use crate::protocol::error::ApiError;
use crate::storage::{LogManager, PartitionLog, StorageError, TopicPartition};

/// The replicas this broker hosts, shared with its connections: produce and fetch look their
/// replica up here and talk to it directly.
#[derive(Debug, Clone, Default)]
pub struct LocalReplicas {
    /// Keyed by topic then partition so a lookup by `&str` needs no allocation. A std
    /// `RwLock`: never held across an `.await`, and written only when replicas come and go.
    inner: Arc<RwLock<HashMap<String, BTreeMap<i32, ReplicaHandle>>>>,
    /// Woken whenever a leader replica here appends, changes leader epoch, stops or leaves:
    /// a follower's long-poll fetch waits on this one signal, not on thousands of watches.
    appended: Arc<tokio::sync::Notify>,
}

impl LocalReplicas {
    pub fn get(&self, topic: &str, partition: i32) -> Option<ReplicaHandle> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.get(topic).and_then(|p| p.get(&partition)).cloned()
    }

    /// Calls `f` with the replica of each of `tps` (`None` if not hosted) under one read
    /// lock, hashing each topic name once per run of equal names: a follower's fetch names
    /// thousands of partitions, mostly of a few topics.
    pub fn for_each<'a>(
        &self,
        tps: impl IntoIterator<Item = &'a TopicPartition>,
        mut f: impl FnMut(&'a TopicPartition, Option<&ReplicaHandle>),
    ) {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut current: Option<(&str, Option<&BTreeMap<i32, ReplicaHandle>>)> = None;
        for tp in tps {
            let partitions = match current {
                Some((topic, partitions)) if topic == tp.topic => partitions,
                _ => {
                    let partitions = map.get(tp.topic.as_str());
                    current = Some((tp.topic.as_str(), partitions));
                    partitions
                }
            };
            f(tp, partitions.and_then(|p| p.get(&tp.partition)));
        }
    }

    /// Every hosted replica.
    pub fn all(&self) -> Vec<(TopicPartition, ReplicaHandle)> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .flat_map(|(topic, parts)| {
                parts.iter().map(move |(p, h)| {
                    (
                        TopicPartition {
                            topic: topic.clone(),
                            partition: *p,
                        },
                        h.clone(),
                    )
                })
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The signal a follower's long-poll fetch waits on (see the field).
    pub fn appended(&self) -> &tokio::sync::Notify {
        &self.appended
    }

    pub(crate) fn insert(&self, tp: &TopicPartition, handle: ReplicaHandle) {
        handle.caught_up.signal_appends_to(self.appended.clone());
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        map.entry(tp.topic.clone())
            .or_default()
            .insert(tp.partition, handle);
    }

    fn remove(&self, tp: &TopicPartition) -> Option<ReplicaHandle> {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let parts = map.get_mut(&tp.topic)?;
        let handle = parts.remove(&tp.partition);
        if parts.is_empty() {
            map.remove(&tp.topic);
        }
        self.appended.notify_waiters();
        handle
    }
}

pub struct Broker {
    broker_id: i32,
    config: Arc<BrokerConfig>,
    /// The topic-level defaults this broker's config implies (`log.retention.ms` → `retention.ms`...).
    topic_defaults: TopicConfig,
    metadata: MetadataCache,
    replicas: LocalReplicas,
    /// Behind a mutex so checkpoint writes (fsync) can run on a blocking thread; taken (and
    /// the log dirs' locks released) by [`Shutdown`].
    log_manager: Arc<Mutex<Option<LogManager>>>,
    /// Logs found on disk at start-up that no LeaderAndIsr has claimed yet.
    unattached_logs: HashMap<TopicPartition, PartitionLog>,
    /// Threads the replica actors are spread over.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    /// The newest controller epoch seen; requests from older controllers are refused.
    controller_epoch: i32,
    /// Set by [`Shutdown`]: controller requests arriving afterwards are refused.
    shutting_down: bool,
    /// Starts and stops the group coordinators of the `__consumer_offsets` partitions this
    /// broker leads (none when the broker runs without group coordination, as in tests).
    group_router: Option<GroupRouter>,
    /// Follower replication: the fetchers pulling from leaders, and where leaders propose
    /// ISR changes. `None` for a broker without peers (single-broker tests): it then only
    /// leads.
    replication: Option<Replication>,
    /// Where replicas report an I/O error on their log (this actor, once started).
    log_dir_failures: Option<Recipient<LogDirFailed>>,
    /// Told once per log dir that goes offline (the controller actor writes Kafka's
    /// `/log_dir_event_notification`); `None` without a controller (tests).
    on_log_dir_offline: Option<Arc<dyn Fn(PathBuf) + Send + Sync>>,
}

/// A broker's replication machinery.
struct Replication {
    fetchers: FetcherManager,
    isr_proposer: Recipient<ProposeIsr>,
}

/// What a broker shares with the connections that serve its clients.
#[derive(Debug, Clone)]
pub struct BrokerShared {
    pub metadata: MetadataCache,
    pub replicas: LocalReplicas,
}

impl Broker {
    /// Opens the broker's log dirs (recovering them if the last shutdown was not clean).
    /// `arbiters` are the threads replica actors run on; empty means the current one.
    pub fn open(
        config: BrokerConfig,
        cluster_id: Option<&str>,
        arbiters: Vec<ArbiterHandle>,
    ) -> anyhow::Result<(Self, BrokerShared)> {
        crate::storage::open_handles::limit(
            config.log_max_open_files.max(0) as usize,
            config.log_max_index_maps.max(0) as usize,
        );
        let topic_defaults = config.topic_defaults();
        let dirs = config.log_dirs();
        let (log_manager, logs) =
            LogManager::open(&dirs, config.broker_id, cluster_id, &topic_defaults)
                .map_err(|e| anyhow::anyhow!("opening log dirs {dirs:?}: {e}"))?;
        let unattached_logs = logs
            .into_iter()
            .map(|log| (log.topic_partition().clone(), log))
            .collect();
        let metadata = MetadataCache::new();
        let replicas = LocalReplicas::default();
        let shared = BrokerShared {
            metadata: metadata.clone(),
            replicas: replicas.clone(),
        };
        Ok((
            Self {
                broker_id: config.broker_id,
                config: Arc::new(config),
                topic_defaults,
                metadata,
                replicas,
                log_manager: Arc::new(Mutex::new(Some(log_manager))),
                unattached_logs,
                arbiters,
                next_arbiter: 0,
                controller_epoch: -1,
                shutting_down: false,
                group_router: None,
                replication: None,
                log_dir_failures: None,
                on_log_dir_offline: None,
            },
            shared,
        ))
    }

    pub fn broker_id(&self) -> i32 {
        self.broker_id
    }

    /// Has LeaderAndIsr and StopReplica start and stop group coordinators through `router`.
    pub fn with_group_router(mut self, router: GroupRouter) -> Self {
        self.group_router = Some(router);
        self
    }

    /// Replicates through `peers`: follower partitions are fetched from their leaders, and
    /// led partitions propose ISR changes to the controller found in the metadata cache.
    /// `broker_epoch` is this broker's current registration epoch.
    pub fn with_replication(
        mut self,
        peers: crate::transport::peer::Peers,
        broker_epoch: std::sync::Arc<std::sync::atomic::AtomicI64>,
    ) -> Self {
        let manager = AlterPartitionManager::new(
            self.broker_id,
            broker_epoch.clone(),
            self.metadata.clone(),
            peers.clone(),
        );
        let isr_proposer = match self.arbiters.first() {
            Some(arbiter) => AlterPartitionManager::start_in_arbiter(arbiter, |_| manager),
            None => manager.start(),
        }
        .recipient();
        let fetchers = FetcherManager::new(
            self.broker_id,
            broker_epoch,
            peers,
            FetcherSettings::from_config(&self.config),
            self.arbiters.clone(),
        );
        self.replication = Some(Replication {
            fetchers,
            isr_proposer,
        });
        self
    }

    /// Calls `notify` with each log dir that goes offline.
    pub fn with_log_dir_offline_listener(
        mut self,
        notify: Arc<dyn Fn(PathBuf) + Send + Sync>,
    ) -> Self {
        self.on_log_dir_offline = Some(notify);
        self
    }

    /// The partitions found on disk at start-up that no controller has claimed yet.
    pub fn unattached_partitions(&self) -> Vec<TopicPartition> {
        self.unattached_logs.keys().cloned().collect()
    }

    fn check_controller_epoch(&mut self, epoch: i32) -> Result<(), ApiError> {
        if self.shutting_down {
            return Err(ApiError::with_message(
                ResponseError::BrokerNotAvailable,
                format!("broker {} is shutting down", self.broker_id),
            ));
        }
        if epoch < self.controller_epoch {
            return Err(ApiError::with_message(
                ResponseError::StaleControllerEpoch,
                format!(
                    "controller epoch {epoch} is older than the current {}",
                    self.controller_epoch
                ),
            ));
        }
        self.controller_epoch = epoch;
        Ok(())
    }

    fn effective_topic_config(&self, snapshot: &MetadataSnapshot, topic: &str) -> TopicConfig {
        snapshot
            .topic_config(topic)
            .map(|c| c.effective.clone())
            .unwrap_or_else(|| self.topic_defaults.clone())
    }

    fn next_arbiter(&mut self) -> Option<ArbiterHandle> {
        if self.arbiters.is_empty() {
            return None;
        }
        let arbiter = self.arbiters[self.next_arbiter % self.arbiters.len()].clone();
        self.next_arbiter += 1;
        Some(arbiter)
    }

    /// The replica for `tp`, starting one if needed on a log found at start-up or on the one
    /// [`create_logs`] made for it (`created`).
    fn replica_for(
        &mut self,
        tp: &TopicPartition,
        topic_id: Uuid,
        config: &TopicConfig,
        created: &mut HashMap<TopicPartition, CreatedLog>,
    ) -> Result<ReplicaHandle, ApiError> {
        if let Some(handle) = self.replicas.get(&tp.topic, tp.partition) {
            return Ok(handle);
        }
        let log = match self.unattached_logs.remove(tp) {
            Some(mut log) => {
                log.update_config(config);
                log
            }
            None => match created.remove(tp) {
                Some(Ok(log)) => log,
                Some(Err((error, failed_dir))) => {
                    if let (Some(failed), Some(failures)) = (failed_dir, &self.log_dir_failures) {
                        failures.do_send(failed);
                    }
                    return Err(error);
                }
                None => {
                    return Err(ApiError::with_message(
                        ResponseError::KafkaStorageError,
                        format!("creating the log of {tp}: the log-creation task failed"),
                    ))
                }
            },
        };
        Ok(self.start_replica(tp, topic_id, config, log))
    }

    /// Starts the replica actor of `tp` on `log` (on the next replica arbiter).
    fn start_replica(
        &mut self,
        tp: &TopicPartition,
        topic_id: Uuid,
        config: &TopicConfig,
        log: PartitionLog,
    ) -> ReplicaHandle {
        let replica = Replica::new(
            tp.clone(),
            topic_id,
            self.broker_id,
            log,
            config.clone(),
            Duration::from_millis(self.config.log_retention_check_interval_ms.max(1) as u64),
        )
        .with_producer_id_expiration_ms(self.config.producer_id_expiration_ms as i64)
        .with_replication(
            Duration::from_millis(self.config.replica_lag_time_max_ms.max(1) as u64),
            self.replication.as_ref().map(|r| r.isr_proposer.clone()),
        );
        let replica = match &self.log_dir_failures {
            Some(failures) => replica.with_log_dir_failures(failures.clone()),
            None => replica,
        };
        let handle = match self.next_arbiter() {
            Some(arbiter) => replica.start_on(&arbiter),
            None => replica.start_here(),
        };
        self.replicas.insert(tp, handle.clone());
        handle
    }

    /// Collects every replica's progress and writes the three offset checkpoints.
    fn checkpoint(&self, ctx: &mut Context<Self>) {
        let (recovery, high_watermarks, log_starts) = progress_maps(&self.replicas);
        let log_manager = self.log_manager.clone();
        let broker_id = self.broker_id;
        let failures = self.log_dir_failures.clone();
        let write = async move {
            let result = tokio::task::spawn_blocking(move || {
                match log_manager
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                {
                    Some(manager) => {
                        manager.write_checkpoints_per_dir(&recovery, &high_watermarks, &log_starts)
                    }
                    None => Vec::new(),
                }
            })
            .await;
            match result {
                Ok(failed) => {
                    for (log_dir, e) in failed {
                        tracing::warn!(broker = broker_id, log_dir = %log_dir.display(), error = %e, "writing checkpoints failed");
                        // An I/O error on a dir's checkpoints takes the dir offline, as Kafka does.
                        if let (StorageError::Io { .. }, Some(failures)) = (&e, &failures) {
                            failures.do_send(LogDirFailed {
                                log_dir,
                                reason: format!("writing checkpoints: {e}"),
                            });
                        }
                    }
                }
                Err(e) => tracing::warn!(broker = broker_id, error = %e, "checkpoint task failed"),
            }
        };
        ctx.spawn(write.into_actor(self));
    }
}

/// A log [`create_logs`] made, or why not: the error to answer with and, for an I/O error, the
/// failure of the dir it was to live in (Kafka's LogManager fails a dir when creating a log
/// there fails).
type CreatedLog = Result<PartitionLog, (ApiError, Option<LogDirFailed>)>;

/// Creates the logs of a LeaderAndIsr's new partitions, in one go on a blocking thread: each
/// is files and an fsync of its dir, so 10 000 of them hold a thread for seconds, which must
/// not be an arbiter (its other actors, and once the coordination heartbeats, would wait).
fn create_logs(
    log_manager: &Mutex<Option<LogManager>>,
    wanted: Vec<(TopicPartition, TopicConfig)>,
) -> HashMap<TopicPartition, CreatedLog> {
    let mut manager = log_manager.lock().unwrap_or_else(|p| p.into_inner());
    wanted
        .into_iter()
        .map(|(tp, config)| {
            let Some(manager) = manager.as_mut() else {
                let error = ApiError::with_message(
                    ResponseError::KafkaStorageError,
                    "the broker is shutting down",
                );
                return (tp, Err((error, None)));
            };
            let dir = manager.dir_for_new_log().map(Path::to_path_buf);
            let created = manager.create_log(&tp, &config).map_err(|e| {
                let reason = format!("creating the log of {tp}: {e}");
                let failed = match (&e, dir) {
                    (StorageError::Io { .. }, Some(log_dir)) => Some(LogDirFailed {
                        log_dir,
                        reason: reason.clone(),
                    }),
                    _ => None,
                };
                (ApiError::from_code(e.kafka_code(), Some(reason)), failed)
            });
            (tp, created)
        })
        .collect()
}

type ProgressMaps = (
    HashMap<TopicPartition, i64>,
    HashMap<TopicPartition, i64>,
    HashMap<TopicPartition, i64>,
);

fn progress_maps(replicas: &LocalReplicas) -> ProgressMaps {
    let mut recovery = HashMap::new();
    let mut high_watermarks = HashMap::new();
    let mut log_starts = HashMap::new();
    for (tp, handle) in replicas.all() {
        let p: PartitionProgress = handle.progress();
        if p.stopped {
            continue;
        }
        recovery.insert(tp.clone(), p.recovery_point);
        high_watermarks.insert(tp.clone(), p.high_watermark);
        log_starts.insert(tp, p.log_start_offset);
    }
    (recovery, high_watermarks, log_starts)
}

impl Actor for Broker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.log_dir_failures = Some(ctx.address().recipient());
        let interval = self
            .config
            .replica_high_watermark_checkpoint_interval_ms
            .max(100) as u64;
        ctx.run_interval(Duration::from_millis(interval), |act, ctx| {
            if !act.shutting_down {
                act.checkpoint(ctx)
            }
        });
    }
}

/// Kafka's `ReplicaManager.handleLogDirFailure`, after an I/O error on a replica's log (an
/// append) or on the dir's checkpoints: the dir goes offline in the log manager (no
/// new log, checkpoint or clean-shutdown marker there), every replica in it stops serving
/// (answering KAFKA_STORAGE_ERROR) and stops fetching, and the controller is told so it
/// moves their leadership to other replicas. The broker keeps serving from its other dirs;
/// unlike Kafka it stays up even when every dir is offline (it still answers metadata and
/// DescribeLogDirs, and an in-process cluster keeps its other brokers). A restart brings
/// the dir back, recovering its logs.
impl Handler<LogDirFailed> for Broker {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: LogDirFailed, _: &mut Self::Context) -> Self::Result {
        let newly_offline = self
            .log_manager
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .is_some_and(|m| m.mark_offline(&msg.log_dir));
        if !newly_offline {
            return Box::pin(fut::ready(()));
        }
        tracing::error!(broker = self.broker_id, log_dir = %msg.log_dir.display(), reason = %msg.reason, "log dir offline");
        let asks: Vec<_> = self
            .replicas
            .all()
            .into_iter()
            .map(|(tp, handle)| {
                let ask = handle.addr.send(LogDirOffline {
                    log_dir: msg.log_dir.clone(),
                });
                async move { (tp, ask.await.unwrap_or(false)) }
            })
            .collect();
        let log_dir = msg.log_dir;
        Box::pin(futures::future::join_all(asks).into_actor(self).map(
            move |answers, act, _| {
                let offline: Vec<TopicPartition> = answers
                    .into_iter()
                    .filter_map(|(tp, here)| here.then_some(tp))
                    .collect();
                if let Some(replication) = act.replication.as_mut() {
                    replication.fetchers.stop_following(&offline);
                }
                if let Some(router) = &act.group_router {
                    for tp in offline.iter().filter(|tp| tp.topic == GROUP_METADATA_TOPIC_NAME) {
                        router.resign_coordinator(tp.partition);
                    }
                }
                tracing::warn!(broker = act.broker_id, log_dir = %log_dir.display(), partitions = offline.len(), "replicas offline");
                if let Some(notify) = &act.on_log_dir_offline {
                    notify(log_dir);
                }
            },
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Controller requests

/// Kafka's UpdateMetadata type (KIP-866): a full snapshot replaces every topic, an
/// incremental one changes only the partitions it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UpdateMetadataKind {
    Full,
    Incremental,
}

/// One topic's partitions in an UpdateMetadata. A partition whose leader is
/// [`LEADER_DURING_DELETE`] is removed (its topic is being deleted).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpdateMetadataTopicState {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionMetadata>,
}

/// The controller's metadata push to every broker.
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<(), ApiError>")]
pub struct UpdateMetadata {
    pub controller_id: i32,
    pub controller_epoch: i32,
    pub kind: UpdateMetadataKind,
    pub cluster_id: String,
    /// Every live broker (always the full list, as Kafka sends it).
    pub live_brokers: Vec<BrokerEndpoint>,
    pub topic_states: Vec<UpdateMetadataTopicState>,
}

impl Handler<UpdateMetadata> for Broker {
    type Result = Result<(), ApiError>;

    fn handle(&mut self, msg: UpdateMetadata, _: &mut Self::Context) -> Self::Result {
        self.check_controller_epoch(msg.controller_epoch)?;
        let current = self.metadata.snapshot();
        let mut next = (*current).clone();
        next.controller_id = msg.controller_id;
        next.controller_epoch = msg.controller_epoch;
        next.cluster_id = Some(msg.cluster_id);
        next.brokers = msg.live_brokers.into_iter().map(|b| (b.id, b)).collect();
        if msg.kind == UpdateMetadataKind::Full {
            next.topics.clear();
            next.topic_names_by_id.clear();
        }
        for state in msg.topic_states {
            let mut topic = next
                .topics
                .get(&state.name)
                .filter(|t| t.id == state.topic_id)
                .map(|t| (**t).clone())
                .unwrap_or_else(|| TopicMetadata {
                    name: state.name.clone(),
                    id: state.topic_id,
                    is_internal: INTERNAL_TOPICS.contains(&state.name.as_str()),
                    partitions: BTreeMap::new(),
                });
            for partition in state.partitions {
                if partition.leader == LEADER_DURING_DELETE {
                    topic.partitions.remove(&partition.partition);
                } else {
                    topic.partitions.insert(partition.partition, partition);
                }
            }
            if let Some(old) = next.topics.get(&state.name) {
                next.topic_names_by_id.remove(&old.id);
            }
            if topic.partitions.is_empty() {
                next.topics.remove(&state.name);
                next.topic_configs.remove(&state.name);
            } else {
                next.topic_names_by_id.insert(topic.id, topic.name.clone());
                next.topics.insert(state.name, Arc::new(topic));
            }
        }
        if msg.kind == UpdateMetadataKind::Full {
            let topics = &next.topics;
            next.topic_configs
                .retain(|name, _| topics.contains_key(name));
        }
        self.metadata.replace(next);
        Ok(())
    }
}

/// One partition of a LeaderAndIsr request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderAndIsrPartitionState {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    /// Kafka's partition epoch (`zkVersion`): bumped on every change of the partition state.
    pub partition_epoch: i32,
    /// True when the partition was just created (its log may be created from nothing).
    pub is_new: bool,
}

/// The controller's leadership decisions for partitions this broker hosts.
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<Vec<(TopicPartition, Option<ApiError>)>, ApiError>")]
pub struct LeaderAndIsr {
    pub controller_id: i32,
    pub controller_epoch: i32,
    pub partition_states: Vec<LeaderAndIsrPartitionState>,
    /// The leaders named in `partition_states`, so followers know where to fetch from.
    pub live_leaders: Vec<BrokerEndpoint>,
}

impl Handler<LeaderAndIsr> for Broker {
    type Result = AtomicResponse<Self, Result<Vec<(TopicPartition, Option<ApiError>)>, ApiError>>;

    /// New logs are created on a blocking thread ([`create_logs`]), then the replicas start
    /// and get their state here. The response is atomic: no other message reaches this actor
    /// before every replica of the request exists and has its state, so a later LeaderAndIsr,
    /// StopReplica or shutdown sees them (Kafka's `replicaStateChangeLock`). Meanwhile the
    /// arbiter serves its other actors, and connections keep reading the metadata cache and
    /// the replica table directly (a partition being created answers as not hosted yet).
    fn handle(&mut self, msg: LeaderAndIsr, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.check_controller_epoch(msg.controller_epoch) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        }
        let started = std::time::Instant::now();
        let snapshot = self.metadata.snapshot();
        let mut hosted = Vec::new();
        let mut to_create = Vec::new();
        let mut creating = std::collections::HashSet::new();
        for ps in msg.partition_states {
            if !ps.replicas.contains(&self.broker_id) {
                continue;
            }
            let tp = TopicPartition {
                topic: ps.topic.clone(),
                partition: ps.partition,
            };
            let config = self.effective_topic_config(&snapshot, &ps.topic);
            let exists = self.replicas.get(&tp.topic, tp.partition).is_some()
                || self.unattached_logs.contains_key(&tp);
            if !exists && creating.insert(tp.clone()) {
                to_create.push((tp.clone(), config.clone()));
            }
            hosted.push((tp, ps, config));
        }
        let new_logs = to_create.len();
        let log_manager = self.log_manager.clone();
        let create = async move {
            if to_create.is_empty() {
                return HashMap::new();
            }
            tokio::task::spawn_blocking(move || create_logs(&log_manager, to_create))
                .await
                .unwrap_or_default()
        };
        let work = create.into_actor(self).then(move |mut created, act, _| {
            let created_ms = started.elapsed().as_millis() as u64;
            let mut immediate: Vec<(TopicPartition, Option<ApiError>)> = Vec::new();
            let mut pending = Vec::new();
            for (tp, ps, config) in hosted {
                match act.replica_for(&tp, ps.topic_id, &config, &mut created) {
                    Ok(handle) => {
                        let leads = ps.leader == act.broker_id;
                        let state = LeaderAndIsrState {
                            leader: ps.leader,
                            leader_epoch: ps.leader_epoch,
                            isr: ps.isr,
                            replicas: ps.replicas,
                            partition_epoch: ps.partition_epoch,
                            is_new: ps.is_new,
                        };
                        let request = handle.addr.send(ApplyLeaderAndIsr(state));
                        pending.push((tp, ps.topic_id, handle, leads, request));
                    }
                    Err(e) => {
                        tracing::error!(broker = act.broker_id, partition = %tp, error = %e, "cannot host partition");
                        immediate.push((tp, Some(e)));
                    }
                }
            }
            tracing::debug!(
                broker = act.broker_id,
                partitions = pending.len() + immediate.len(),
                new_logs,
                created_ms,
                on_actor_ms = (started.elapsed().as_millis() as u64).saturating_sub(created_ms),
                "LeaderAndIsr: replicas ready"
            );
            let groups = act.group_router.clone();
            let apply = async move {
                let mut results = immediate;
                let mut roles = Vec::new();
                for (tp, topic_id, handle, leads, request) in pending {
                    let outcome = match request.await {
                        Ok(Ok(change)) => {
                            roles.push((tp.clone(), topic_id, handle, change));
                            None
                        }
                        Ok(Err(e)) => Some(e),
                        Err(_) => Some(ApiError::with_message(
                            ResponseError::KafkaStorageError,
                            format!("the replica of {tp} stopped"),
                        )),
                    };
                    if let (Some(router), true) =
                        (&groups, tp.topic == GROUP_METADATA_TOPIC_NAME)
                    {
                        if leads && outcome.is_none() {
                            router.become_coordinator(tp.partition);
                        } else {
                            router.resign_coordinator(tp.partition);
                        }
                    }
                    results.push((tp, outcome));
                }
                (results, roles)
            };
            apply.into_actor(act)
        });
        AtomicResponse::new(Box::pin(work.map(move |(results, roles), act, _| {
            act.follow_leaders(roles);
            tracing::debug!(
                broker = act.broker_id,
                total_ms = started.elapsed().as_millis() as u64,
                "LeaderAndIsr: applied"
            );
            Ok(results)
        })))
    }
}

impl Broker {
    /// Points the fetchers at the leaders a LeaderAndIsr named: a follower fetches from its
    /// leader from its own log end; a leader (or a follower of an offline partition)
    /// fetches from no one.
    fn follow_leaders(&mut self, roles: Vec<(TopicPartition, Uuid, ReplicaHandle, RoleChange)>) {
        let Some(replication) = self.replication.as_mut() else {
            return;
        };
        let mut stop = Vec::new();
        let mut follow: BTreeMap<i32, Vec<FollowedPartition>> = BTreeMap::new();
        for (tp, topic_id, handle, change) in roles {
            match change.follows {
                Some(leader) if leader >= 0 && leader != self.broker_id => {
                    let current = replication.fetchers.fetcher_of(&tp).map(|(l, _)| l);
                    if change.changed || current != Some(leader) {
                        follow.entry(leader).or_default().push(FollowedPartition {
                            tp,
                            topic_id,
                            replica: handle,
                            leader_epoch: change.leader_epoch,
                            position: FollowerPosition {
                                log_end_offset: change.log_end_offset,
                                last_epoch: change.last_epoch,
                            },
                        });
                    }
                }
                _ => stop.push(tp),
            }
        }
        replication.fetchers.stop_following(&stop);
        for (leader, partitions) in follow {
            tracing::debug!(
                broker = self.broker_id,
                leader,
                partitions = partitions.len(),
                "following"
            );
            replication.fetchers.follow(leader, partitions);
        }
    }
}

#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<Vec<(TopicPartition, Option<ApiError>)>, ApiError>")]
pub struct StopReplica {
    pub controller_id: i32,
    pub controller_epoch: i32,
    pub partitions: Vec<TopicPartition>,
    pub delete: bool,
}

impl Handler<StopReplica> for Broker {
    type Result = AtomicResponse<Self, Result<Vec<(TopicPartition, Option<ApiError>)>, ApiError>>;

    fn handle(&mut self, msg: StopReplica, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.check_controller_epoch(msg.controller_epoch) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        }
        let delete = msg.delete;
        if let Some(replication) = self.replication.as_mut() {
            replication.fetchers.stop_following(&msg.partitions);
        }
        let mut stopping = Vec::new();
        let mut unattached = Vec::new();
        for tp in msg.partitions {
            if let (Some(router), true) =
                (&self.group_router, tp.topic == GROUP_METADATA_TOPIC_NAME)
            {
                router.resign_coordinator(tp.partition);
            }
            if let Some(handle) = self.replicas.remove(&tp) {
                stopping.push((tp, Some(handle.addr.send(replica::StopReplica))));
            } else if let Some(log) = self.unattached_logs.remove(&tp) {
                unattached.push(log);
            } else {
                stopping.push((tp, None));
            }
        }
        let log_manager = self.log_manager.clone();
        let work = async move {
            let mut logs = unattached;
            let mut results = Vec::new();
            for (tp, request) in stopping {
                if let Some(request) = request {
                    if let Ok(stopped) = request.await {
                        logs.extend(stopped.log);
                    }
                }
                results.push((tp, None));
            }
            let outcomes = tokio::task::spawn_blocking(move || {
                let mut manager = log_manager.lock().unwrap_or_else(|p| p.into_inner());
                logs.into_iter()
                    .map(|log| {
                        let tp = log.topic_partition().clone();
                        let outcome = match (delete, manager.as_mut()) {
                            (true, Some(manager)) => manager.delete_log(log),
                            (true, None) => log.delete(),
                            (false, _) => log.close(),
                        };
                        (tp, outcome)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for (tp, outcome) in outcomes {
                let error = outcome
                    .err()
                    .map(|e| ApiError::from_code(e.kafka_code(), Some(format!("{tp}: {e}"))));
                match results.iter_mut().find(|(t, _)| *t == tp) {
                    Some(entry) => entry.1 = error,
                    None => results.push((tp, error)),
                }
            }
            Ok(results)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

/// Kafka's topic config change notification: the controller recorded new overrides for a
/// topic; re-derive its effective config and hand it to the local replicas.
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<(), ApiError>")]
pub struct TopicConfigChanged {
    pub topic: String,
    pub overrides: BTreeMap<String, String>,
}

impl Handler<TopicConfigChanged> for Broker {
    type Result = Result<(), ApiError>;

    fn handle(&mut self, msg: TopicConfigChanged, _: &mut Self::Context) -> Self::Result {
        let effective = self
            .topic_defaults
            .with_overrides(msg.overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| ApiError::with_message(ResponseError::InvalidConfig, e.to_string()))?;
        let mut next = (*self.metadata.snapshot()).clone();
        next.topic_configs.insert(
            msg.topic.clone(),
            Arc::new(TopicConfigState {
                overrides: msg.overrides,
                effective: effective.clone(),
            }),
        );
        self.metadata.replace(next);
        for (tp, handle) in self.replicas.all() {
            if tp.topic == msg.topic {
                handle.addr.do_send(UpdateTopicConfig(effective.clone()));
            }
        }
        Ok(())
    }
}

/// Kafka's broker config change notification (KIP-226): the controller recorded new dynamic
/// values for `entity`, this broker or the cluster default (for another broker it changes
/// nothing here). The topic-level defaults are derived again, and every local replica whose
/// effective config moved gets it.
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<(), ApiError>")]
pub struct BrokerConfigChanged {
    pub entity: ConfigEntity,
    pub configs: BTreeMap<String, String>,
}

impl Handler<BrokerConfigChanged> for Broker {
    type Result = Result<(), ApiError>;

    fn handle(&mut self, msg: BrokerConfigChanged, _: &mut Self::Context) -> Self::Result {
        let current = self.metadata.snapshot();
        let mut dynamic: DynamicBrokerConfigs = (*current.dynamic_broker_configs).clone();
        match msg.entity {
            ConfigEntity::BrokerDefault => dynamic.cluster_default = msg.configs,
            ConfigEntity::Broker(id) if id == self.broker_id => dynamic.own = msg.configs,
            ConfigEntity::Broker(_) => return Ok(()),
            ConfigEntity::Topic(topic) => {
                return Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    format!("topic {topic} is not a broker config entity"),
                ))
            }
        }
        if dynamic == *current.dynamic_broker_configs {
            return Ok(());
        }
        let defaults = dynamic::effective(&self.config, &dynamic).topic_defaults();
        let mut next = (*current).clone();
        next.dynamic_broker_configs = Arc::new(dynamic);
        let defaults_moved = defaults != self.topic_defaults;
        if defaults_moved {
            tracing::info!(
                broker = self.broker_id,
                "dynamic broker configs changed the topic defaults"
            );
            for state in next.topic_configs.values_mut() {
                let effective = defaults
                    .with_overrides(
                        state
                            .overrides
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str())),
                    )
                    .unwrap_or_else(|_| defaults.clone());
                *state = Arc::new(TopicConfigState {
                    overrides: state.overrides.clone(),
                    effective,
                });
            }
            next.topic_defaults = Some(Arc::new(defaults.clone()));
            self.topic_defaults = defaults;
        }
        self.metadata.replace(next);
        if defaults_moved {
            let snapshot = self.metadata.snapshot();
            for (tp, handle) in self.replicas.all() {
                let effective = self.effective_topic_config(&snapshot, &tp.topic);
                handle.addr.do_send(UpdateTopicConfig(effective));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Requests from connections and the cluster

/// DescribeLogDirs: every log dir with the hosted partitions in it (optionally filtered).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<LogDirDescription>")]
pub struct DescribeLogDirs {
    /// `None`: every partition.
    pub topics: Option<Vec<(String, Vec<i32>)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirDescription {
    pub dir: PathBuf,
    /// The dir is offline (Kafka answers KAFKA_STORAGE_ERROR for it, with no partitions).
    pub offline: bool,
    pub partitions: Vec<ReplicaDescription>,
    /// Bytes of the file system holding the dir; -1 when unknown.
    pub total_bytes: i64,
    pub usable_bytes: i64,
}

impl Handler<DescribeLogDirs> for Broker {
    type Result = ResponseFuture<Vec<LogDirDescription>>;

    fn handle(&mut self, msg: DescribeLogDirs, _: &mut Self::Context) -> Self::Result {
        let wanted = |tp: &TopicPartition| match &msg.topics {
            None => true,
            Some(topics) => topics
                .iter()
                .any(|(t, parts)| *t == tp.topic && parts.contains(&tp.partition)),
        };
        let requests: Vec<_> = self
            .replicas
            .all()
            .into_iter()
            .filter(|(tp, _)| wanted(tp))
            .map(|(_, handle)| handle.addr.send(DescribeReplica))
            .collect();
        let dirs = self.config.log_dirs();
        let offline_dirs = self
            .log_manager
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|m| m.offline_dirs())
            .unwrap_or_default();
        Box::pin(async move {
            let described: Vec<ReplicaDescription> = futures::future::join_all(requests)
                .await
                .into_iter()
                .filter_map(|r| r.ok().flatten())
                .collect();
            dirs.into_iter()
                .map(|dir| {
                    let canonical = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
                    let partitions = described
                        .iter()
                        .filter(|d| {
                            let parent = d.dir.parent().map(|p| {
                                std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
                            });
                            parent.as_deref() == Some(canonical.as_path())
                        })
                        .cloned()
                        .collect();
                    let (total_bytes, usable_bytes) = filesystem_space(&dir);
                    let offline = offline_dirs.contains(&dir);
                    LogDirDescription {
                        dir,
                        offline,
                        partitions: if offline { Vec::new() } else { partitions },
                        total_bytes,
                        usable_bytes,
                    }
                })
                .collect()
        })
    }
}

/// Total and available bytes of the file system holding `dir`; (-1, -1) when unknown.
fn filesystem_space(dir: &std::path::Path) -> (i64, i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (-1, -1);
    };
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a valid out-pointer.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    if rc != 0 {
        return (-1, -1);
    }
    let block = stat.f_frsize as i64;
    (
        (stat.f_blocks as i64).saturating_mul(block),
        (stat.f_bavail as i64).saturating_mul(block),
    )
}

/// A clean shutdown: stop every replica (closing its log), write the checkpoints and the
/// clean-shutdown marker so the next start skips recovery.
/// Crash (fault injection of the in-process cluster): stop fetching, halt every replica
/// without flushing or checkpointing, release the log dirs, stop. The files stay as a
/// killed process would leave them; a broker started on them later recovers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Crash;

impl Handler<Crash> for Broker {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Crash, _: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        if let Some(replication) = self.replication.as_mut() {
            replication.fetchers.shutdown();
        }
        if let Some(router) = &self.group_router {
            for partition in router.hosted_partitions() {
                router.resign_coordinator(partition);
            }
        }
        let halts: Vec<_> = self
            .replicas
            .all()
            .into_iter()
            .map(|(tp, handle)| {
                self.replicas.remove(&tp);
                let mut progress = handle.progress.clone();
                handle.addr.do_send(replica::Halt);
                async move {
                    let _ = progress.wait_for(|p| p.stopped).await;
                }
            })
            .collect();
        self.unattached_logs.clear();
        let log_manager = self.log_manager.clone();
        let broker_id = self.broker_id;
        let work = async move {
            futures::future::join_all(halts).await;
            // Dropping the manager releases the dirs' locks for a restart.
            drop(log_manager.lock().unwrap_or_else(|p| p.into_inner()).take());
            tracing::warn!(broker = broker_id, "broker crashed (fault injection)");
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|(), _, ctx| ctx.stop())))
    }
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), String>")]
pub struct Shutdown;

impl Handler<Shutdown> for Broker {
    type Result = AtomicResponse<Self, Result<(), String>>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        if let Some(replication) = self.replication.as_mut() {
            replication.fetchers.shutdown();
        }
        let stops: Vec<_> = self
            .replicas
            .all()
            .into_iter()
            .map(|(tp, handle)| {
                self.replicas.remove(&tp);
                let request = handle.addr.send(replica::StopReplica);
                async move { (tp, request.await) }
            })
            .collect();
        let unattached: Vec<PartitionLog> = self.unattached_logs.drain().map(|(_, l)| l).collect();
        let log_manager = self.log_manager.clone();
        let broker_id = self.broker_id;
        let work = async move {
            let mut recovery = HashMap::new();
            let mut high_watermarks = HashMap::new();
            let mut log_starts = HashMap::new();
            let mut errors = Vec::new();
            let mut logs = unattached;
            for (tp, outcome) in futures::future::join_all(stops).await {
                match outcome {
                    Ok(stopped) => {
                        high_watermarks.insert(tp.clone(), stopped.progress.high_watermark);
                        log_starts.insert(tp.clone(), stopped.progress.log_start_offset);
                        logs.extend(stopped.log);
                    }
                    Err(e) => errors.push(format!("{tp}: {e}")),
                }
            }
            let result = tokio::task::spawn_blocking(move || {
                for log in logs {
                    let tp = log.topic_partition().clone();
                    // Closing flushes: everything is recovered up to the log end.
                    recovery.insert(tp.clone(), log.log_end_offset());
                    high_watermarks
                        .entry(tp.clone())
                        .or_insert_with(|| log.high_watermark());
                    log_starts
                        .entry(tp.clone())
                        .or_insert_with(|| log.log_start_offset());
                    if let Err(e) = log.close() {
                        recovery.remove(&tp);
                        errors.push(format!("{tp}: {e}"));
                    }
                }
                // Dropping the manager releases the log dirs' locks.
                let Some(manager) = log_manager.lock().unwrap_or_else(|p| p.into_inner()).take()
                else {
                    return errors;
                };
                if let Err(e) = manager.write_checkpoints(&recovery, &high_watermarks, &log_starts)
                {
                    errors.push(format!("checkpoints: {e}"));
                }
                if errors.is_empty() {
                    if let Err(e) = manager.mark_clean_shutdown() {
                        errors.push(format!("clean-shutdown marker: {e}"));
                    }
                }
                errors
            })
            .await;
            match result {
                Ok(errors) if errors.is_empty() => {
                    tracing::info!(broker = broker_id, "broker shut down cleanly");
                    Ok(())
                }
                Ok(errors) => Err(errors.join("; ")),
                Err(e) => Err(format!("shutdown task failed: {e}")),
            }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::metadata_cache::PartitionMetadata;
    use crate::actors::replica::PartitionRead;

    fn config(dir: &std::path::Path) -> BrokerConfig {
        BrokerConfig {
            broker_id: 1,
            log_dirs: vec![dir.display().to_string()],
            ..BrokerConfig::default()
        }
    }

    fn endpoint(id: i32) -> BrokerEndpoint {
        BrokerEndpoint {
            id,
            host: "127.0.0.1".into(),
            port: 10_000 + id as u16,
            rack: None,
            listeners: vec![],
        }
    }

    fn partition(p: i32, leader: i32, epoch: i32) -> PartitionMetadata {
        PartitionMetadata {
            partition: p,
            leader,
            leader_epoch: epoch,
            replicas: vec![leader.max(1)],
            isr: vec![leader.max(1)],
            offline_replicas: vec![],
            partition_epoch: epoch,
        }
    }

    fn update(epoch: i32, topics: Vec<UpdateMetadataTopicState>) -> UpdateMetadata {
        UpdateMetadata {
            controller_id: 1,
            controller_epoch: epoch,
            kind: UpdateMetadataKind::Incremental,
            cluster_id: "test-cluster".into(),
            live_brokers: vec![endpoint(1), endpoint(2)],
            topic_states: topics,
        }
    }

    fn leader_and_isr(epoch: i32, topic_id: Uuid, partitions: i32) -> LeaderAndIsr {
        LeaderAndIsr {
            controller_id: 1,
            controller_epoch: epoch,
            partition_states: (0..partitions)
                .map(|p| LeaderAndIsrPartitionState {
                    topic: "orders".into(),
                    topic_id,
                    partition: p,
                    leader: 1,
                    leader_epoch: 0,
                    isr: vec![1],
                    replicas: vec![1],
                    partition_epoch: 0,
                    is_new: true,
                })
                .collect(),
            live_leaders: vec![endpoint(1)],
        }
    }

    fn start(dir: &std::path::Path) -> (Addr<Broker>, BrokerShared) {
        let (broker, shared) = Broker::open(config(dir), Some("test-cluster"), vec![]).unwrap();
        (broker.start(), shared)
    }

    #[actix::test]
    async fn update_metadata_fills_the_cache_and_deletes_with_leader_during_delete() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, shared) = start(dir.path());
        let id = Uuid::new_v4();
        let topic = |parts: Vec<PartitionMetadata>| UpdateMetadataTopicState {
            name: "orders".into(),
            topic_id: id,
            partitions: parts,
        };
        broker
            .send(update(
                1,
                vec![topic(vec![partition(0, 1, 0), partition(1, 2, 0)])],
            ))
            .await
            .unwrap()
            .unwrap();
        let snapshot = shared.metadata.snapshot();
        assert!(snapshot.is_initialized());
        assert_eq!(snapshot.controller_id, 1);
        assert_eq!(snapshot.brokers.len(), 2);
        assert_eq!(snapshot.topic("orders").unwrap().partitions.len(), 2);
        assert_eq!(snapshot.topic_by_id(&id).unwrap().name, "orders");

        broker
            .send(update(
                1,
                vec![topic(vec![
                    partition(0, LEADER_DURING_DELETE, 0),
                    partition(1, LEADER_DURING_DELETE, 0),
                ])],
            ))
            .await
            .unwrap()
            .unwrap();
        let snapshot = shared.metadata.snapshot();
        assert!(snapshot.topic("orders").is_none());
        assert!(snapshot.topic_by_id(&id).is_none());
    }

    #[actix::test]
    async fn requests_from_an_older_controller_epoch_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, shared) = start(dir.path());
        broker.send(update(5, vec![])).await.unwrap().unwrap();
        let stale = broker.send(update(4, vec![])).await.unwrap();
        assert_eq!(
            stale.unwrap_err().code,
            ResponseError::StaleControllerEpoch.code()
        );
        let stale = broker
            .send(leader_and_isr(4, Uuid::new_v4(), 1))
            .await
            .unwrap();
        assert_eq!(
            stale.unwrap_err().code,
            ResponseError::StaleControllerEpoch.code()
        );
        assert!(shared.replicas.is_empty());
        assert_eq!(shared.metadata.snapshot().controller_epoch, 5);
    }

    #[actix::test]
    async fn leader_and_isr_creates_leader_replicas_with_their_logs() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, shared) = start(dir.path());
        let results = broker
            .send(leader_and_isr(1, Uuid::new_v4(), 2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|(_, e)| e.is_none()), "{results:?}");
        assert_eq!(shared.replicas.len(), 2);
        let handle = shared.replicas.get("orders", 1).unwrap();
        assert!(handle.progress().is_leader);
        assert!(dir.path().join("orders-1").is_dir());
        let read: PartitionRead = handle
            .addr
            .send(replica::ReadRecords {
                fetch_offset: 0,
                max_bytes: 100,
                min_one: true,
                isolation: replica::FetchIsolation::HighWatermark,
                current_leader_epoch: None,
            })
            .await
            .unwrap();
        assert!(read.error.is_none());
        assert!(read.records.is_empty());
    }

    #[actix::test]
    async fn the_broker_arbiter_keeps_serving_while_a_leader_and_isr_creates_its_logs() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, shared) =
            Broker::open(config(dir.path()), Some("test-cluster"), vec![]).unwrap();
        let log_manager = broker.log_manager.clone();
        let arbiter = Arbiter::new();
        let addr = Broker::start_in_arbiter(&arbiter.handle(), |_| broker);
        // Log creation stalls (a slow disk) until released: a thread holds the log manager.
        let (held_tx, held) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _guard = log_manager.lock().unwrap();
            held_tx.send(()).unwrap();
            let _ = released.recv();
        });
        held.recv().unwrap();
        let created = addr.send(leader_and_isr(1, Uuid::new_v4(), 50));
        // Sent after the LeaderAndIsr: must see every replica it created.
        let described = addr.send(DescribeLogDirs { topics: None });
        // The broker's arbiter runs other work while the logs wait to be created.
        let (probe_tx, probe) = tokio::sync::oneshot::channel();
        arbiter.spawn(async move {
            let _ = probe_tx.send(());
        });
        let answered = tokio::time::timeout(Duration::from_secs(5), probe).await;
        release.send(()).unwrap();
        holder.join().unwrap();
        assert!(
            answered.is_ok(),
            "the broker's arbiter was blocked by the log creation"
        );
        let results = created.await.unwrap().unwrap();
        assert_eq!(results.len(), 50);
        assert!(results.iter().all(|(_, e)| e.is_none()), "{results:?}");
        assert_eq!(shared.replicas.len(), 50);
        let dirs = described.await.unwrap();
        assert_eq!(dirs[0].partitions.len(), 50);
        arbiter.stop();
    }

    #[actix::test]
    async fn stop_replica_with_delete_removes_the_replica_and_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, shared) = start(dir.path());
        broker
            .send(leader_and_isr(1, Uuid::new_v4(), 1))
            .await
            .unwrap()
            .unwrap();
        let results = broker
            .send(StopReplica {
                controller_id: 1,
                controller_epoch: 1,
                partitions: vec![TopicPartition {
                    topic: "orders".into(),
                    partition: 0,
                }],
                delete: true,
            })
            .await
            .unwrap()
            .unwrap();
        assert!(results[0].1.is_none());
        assert!(shared.replicas.is_empty());
        assert!(!dir.path().join("orders-0").exists());
    }

    #[actix::test]
    async fn a_dynamic_broker_default_reaches_replicas_without_their_own_override() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, shared) = start(dir.path());
        broker
            .send(leader_and_isr(1, Uuid::new_v4(), 1))
            .await
            .unwrap()
            .unwrap();
        let append_all = || async {
            let batches = crate::storage::validate_client_batches(
                crate::storage::batch::tests::client_batch(
                    1,
                    crate::actors::group::now_ms(),
                    kafka_protocol::records::Compression::None,
                    false,
                ),
                1 << 20,
                false,
            )
            .unwrap();
            shared
                .replicas
                .get("orders", 0)
                .unwrap()
                .addr
                .send(replica::AppendRecords {
                    batches,
                    required_acks: -1,
                })
                .await
                .unwrap()
        };
        assert!(append_all().await.is_ok());

        // Another broker's own values change nothing here.
        let min_isr_2 = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
        broker
            .send(BrokerConfigChanged {
                entity: ConfigEntity::Broker(7),
                configs: min_isr_2.clone(),
            })
            .await
            .unwrap()
            .unwrap();
        assert!(shared.metadata.snapshot().topic_defaults.is_none());
        assert!(append_all().await.is_ok());

        // The cluster default does: the ISR of one is now below min.insync.replicas.
        broker
            .send(BrokerConfigChanged {
                entity: ConfigEntity::BrokerDefault,
                configs: min_isr_2,
            })
            .await
            .unwrap()
            .unwrap();
        let snapshot = shared.metadata.snapshot();
        assert_eq!(
            snapshot
                .topic_defaults
                .as_ref()
                .unwrap()
                .min_insync_replicas,
            2
        );
        assert_eq!(
            snapshot.dynamic_broker_configs.cluster_default.len(),
            1,
            "{:?}",
            snapshot.dynamic_broker_configs
        );
        let err = append_all().await.unwrap_err();
        assert_eq!(err.code, ResponseError::NotEnoughReplicas.code());

        // The broker's own value wins over the default; a topic override wins over both.
        broker
            .send(BrokerConfigChanged {
                entity: ConfigEntity::Broker(1),
                configs: BTreeMap::from([("min.insync.replicas".to_string(), "1".to_string())]),
            })
            .await
            .unwrap()
            .unwrap();
        assert!(append_all().await.is_ok());
        broker
            .send(TopicConfigChanged {
                topic: "orders".into(),
                overrides: BTreeMap::from([("min.insync.replicas".to_string(), "3".to_string())]),
            })
            .await
            .unwrap()
            .unwrap();
        let err = append_all().await.unwrap_err();
        assert_eq!(err.code, ResponseError::NotEnoughReplicas.code());
    }

    #[actix::test]
    async fn topic_config_changes_reach_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, shared) = start(dir.path());
        broker
            .send(TopicConfigChanged {
                topic: "orders".into(),
                overrides: [("retention.ms".to_string(), "1234".to_string())]
                    .into_iter()
                    .collect(),
            })
            .await
            .unwrap()
            .unwrap();
        let snapshot = shared.metadata.snapshot();
        let config = snapshot.topic_config("orders").unwrap();
        assert_eq!(config.effective.retention_ms, 1234);
        let bad = broker
            .send(TopicConfigChanged {
                topic: "orders".into(),
                overrides: [("retention.ms".to_string(), "soon".to_string())]
                    .into_iter()
                    .collect(),
            })
            .await
            .unwrap();
        assert_eq!(bad.unwrap_err().code, ResponseError::InvalidConfig.code());
    }

    #[actix::test]
    async fn logs_survive_a_clean_shutdown_and_come_back_on_leader_and_isr() {
        let dir = tempfile::tempdir().unwrap();
        let topic_id = Uuid::new_v4();
        {
            let (broker, _shared) = start(dir.path());
            broker
                .send(leader_and_isr(1, topic_id, 1))
                .await
                .unwrap()
                .unwrap();
            broker.send(Shutdown).await.unwrap().unwrap();
        }
        let (broker, shared) =
            Broker::open(config(dir.path()), Some("test-cluster"), vec![]).unwrap();
        assert_eq!(
            broker.unattached_partitions(),
            vec![TopicPartition {
                topic: "orders".into(),
                partition: 0
            }]
        );
        let broker = broker.start();
        let mut request = leader_and_isr(2, topic_id, 1);
        request.partition_states[0].leader_epoch = 1;
        request.partition_states[0].is_new = false;
        broker.send(request).await.unwrap().unwrap();
        assert_eq!(
            shared
                .replicas
                .get("orders", 0)
                .unwrap()
                .progress()
                .leader_epoch,
            1
        );
    }

    #[actix::test]
    async fn describe_log_dirs_lists_hosted_partitions_under_their_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (broker, _shared) = start(dir.path());
        broker
            .send(leader_and_isr(1, Uuid::new_v4(), 2))
            .await
            .unwrap()
            .unwrap();
        let dirs = broker.send(DescribeLogDirs { topics: None }).await.unwrap();
        assert_eq!(dirs.len(), 1);
        assert_eq!(dirs[0].partitions.len(), 2);
        assert!(dirs[0].total_bytes > 0);
    }

    #[actix::test]
    async fn a_failed_log_dir_goes_offline_its_replicas_refuse_and_the_controller_is_told_once() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            log_dirs: vec![
                a.path().display().to_string(),
                b.path().display().to_string(),
            ],
            ..config(a.path())
        };
        let told = Arc::new(Mutex::new(Vec::new()));
        let listener = told.clone();
        let (broker, shared) = Broker::open(config, Some("test-cluster"), vec![]).unwrap();
        let broker = broker
            .with_log_dir_offline_listener(Arc::new(move |dir| {
                listener.lock().unwrap().push(dir);
            }))
            .start();
        let topic_id = Uuid::new_v4();
        // Two partitions, one per dir.
        let results = broker
            .send(leader_and_isr(1, topic_id, 2))
            .await
            .unwrap()
            .unwrap();
        assert!(results.iter().all(|(_, e)| e.is_none()));
        let failed = LogDirFailed {
            log_dir: a.path().to_path_buf(),
            reason: "test: no space left on device".into(),
        };
        broker.send(failed.clone()).await.unwrap();
        broker.send(failed).await.unwrap();
        assert_eq!(
            *told.lock().unwrap(),
            vec![a.path().to_path_buf()],
            "told once"
        );

        let dirs = broker.send(DescribeLogDirs { topics: None }).await.unwrap();
        let offline: Vec<_> = dirs.iter().filter(|d| d.offline).collect();
        assert_eq!(offline.len(), 1);
        assert_eq!(offline[0].dir, a.path());
        assert!(offline[0].partitions.is_empty());
        let online = dirs.iter().find(|d| !d.offline).unwrap();
        assert_eq!(online.partitions.len(), 1);

        // The controller's next LeaderAndIsr learns which replicas are offline.
        let results = broker
            .send(leader_and_isr(1, topic_id, 2))
            .await
            .unwrap()
            .unwrap();
        let storage_error = ResponseError::KafkaStorageError.code();
        let online_tp = &online.partitions[0].tp;
        for (tp, e) in &results {
            let code = e.as_ref().map(|e| e.code);
            if tp == online_tp {
                assert_eq!(code, None, "{tp} lives in the online dir");
            } else {
                assert_eq!(code, Some(storage_error), "{tp} lives in the offline dir");
            }
        }
        assert_eq!(shared.replicas.len(), 2);
    }

    #[actix::test]
    async fn an_io_error_creating_a_log_takes_its_dir_offline_and_the_controller_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let told = Arc::new(Mutex::new(Vec::new()));
        let listener = told.clone();
        let (broker, _shared) =
            Broker::open(config(dir.path()), Some("test-cluster"), vec![]).unwrap();
        let broker = broker
            .with_log_dir_offline_listener(Arc::new(move |dir| {
                listener.lock().unwrap().push(dir);
            }))
            .start();
        // A file where the partition's directory must go: creating its log is a real I/O
        // error (ENOTDIR / EEXIST), as a broken dir would give.
        std::fs::write(dir.path().join("orders-0"), b"not a directory").unwrap();
        let results = broker
            .send(leader_and_isr(1, Uuid::new_v4(), 1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            results[0].1.as_ref().map(|e| e.code),
            Some(ResponseError::KafkaStorageError.code()),
            "{results:?}"
        );
        let dirs = broker.send(DescribeLogDirs { topics: None }).await.unwrap();
        assert!(dirs[0].offline, "the dir is offline");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while told.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the controller was not told"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*told.lock().unwrap(), vec![dir.path().to_path_buf()]);
    }

    #[actix::test]
    async fn leading_a_consumer_offsets_partition_starts_its_group_coordinator() {
        use crate::actors::group::directory::MetadataDirectory;
        use crate::actors::group::{GroupConfig, InMemoryGroupStore};
        let dir = tempfile::tempdir().unwrap();
        let (broker, shared) =
            Broker::open(config(dir.path()), Some("test-cluster"), vec![]).unwrap();
        let router = GroupRouter::new(
            GroupConfig::default(),
            Arc::new(InMemoryGroupStore::new()),
            Arc::new(MetadataDirectory::new(
                shared.metadata.clone(),
                &BrokerConfig::default(),
            )),
        );
        let broker = broker.with_group_router(router.clone()).start();
        let offsets_state = |p: i32, leader: i32, epoch: i32| LeaderAndIsrPartitionState {
            topic: GROUP_METADATA_TOPIC_NAME.into(),
            topic_id: Uuid::nil(),
            partition: p,
            leader,
            leader_epoch: epoch,
            isr: vec![1, 2],
            replicas: vec![1, 2],
            partition_epoch: epoch,
            is_new: true,
        };
        let request = |states: Vec<LeaderAndIsrPartitionState>| LeaderAndIsr {
            controller_id: 1,
            controller_epoch: 1,
            partition_states: states,
            live_leaders: vec![endpoint(1), endpoint(2)],
        };
        broker
            .send(request(vec![
                offsets_state(0, 1, 0),
                offsets_state(1, 1, 0),
            ]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(router.hosted_partitions(), vec![0, 1]);
        // Partition 1 moves to broker 2: its coordinator resigns.
        broker
            .send(request(vec![offsets_state(1, 2, 1)]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(router.hosted_partitions(), vec![0]);
        broker
            .send(StopReplica {
                controller_id: 1,
                controller_epoch: 1,
                partitions: vec![TopicPartition {
                    topic: GROUP_METADATA_TOPIC_NAME.into(),
                    partition: 0,
                }],
                delete: false,
            })
            .await
            .unwrap()
            .unwrap();
        assert!(router.hosted_partitions().is_empty());
    }
}
