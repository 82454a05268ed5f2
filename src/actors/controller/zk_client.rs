//! Kafka's `KafkaZkClient`: the typed reads and writes the broker and controller make on the
//! coordination service, in Kafka's ZooKeeper-era layout ([`crate::znodes`]). Controller
//! writes are fenced: each is a multi that first checks `/controller_epoch` at the version this
//! controller wrote, so a controller that lost its election cannot change anything.

use std::collections::BTreeMap;

use futures::StreamExt;

use crate::actors::coordination::{CoordinationClient, CoordinationError, CreateMode, Op, Stat};
use crate::znodes::{self, paths};

pub type ZkResult<T> = Result<T, CoordinationError>;

/// Requests a pipelined read or write keeps in flight: well under ZooKeeper's
/// `globalOutstandingLimit` (1 000), enough to hide the round trip.
pub const PIPELINE_WINDOW: usize = 256;

/// What a fenced write can run into besides the coordination errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FencedError {
    /// `/controller_epoch` moved on: another controller was elected; resign.
    #[error(
        "controller moved: /controller_epoch is no longer at the version this controller wrote"
    )]
    ControllerMoved,
    #[error(transparent)]
    Coordination(#[from] CoordinationError),
}

/// The typed client. Cheap to clone.
#[derive(Clone)]
pub struct KafkaZkClient {
    pub client: CoordinationClient,
}

impl KafkaZkClient {
    pub fn new(client: CoordinationClient) -> Self {
        Self { client }
    }

    /// Kafka's `makeSurePersistentPathExists` for every top-level path.
    pub async fn create_top_level_paths(&self) -> ZkResult<()> {
        for path in paths::PERSISTENT {
            self.ensure_path(path).await?;
        }
        Ok(())
    }

    /// Creates `path` and its missing parents as empty persistent nodes.
    pub async fn ensure_path(&self, path: &str) -> ZkResult<()> {
        let mut prefix = String::new();
        for segment in path.trim_start_matches('/').split('/') {
            prefix.push('/');
            prefix.push_str(segment);
            match self
                .client
                .create(&prefix, &[], CreateMode::Persistent)
                .await
            {
                Ok(_) | Err(CoordinationError::NodeExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The cluster id in `/cluster/id`, created from `proposed` if absent (first broker wins).
    pub async fn get_or_create_cluster_id(&self, proposed: &str) -> anyhow::Result<String> {
        let data = znodes::to_bytes(&znodes::ClusterIdZNode::new(proposed.to_string()));
        match self
            .client
            .create(paths::CLUSTER_ID, &data, CreateMode::Persistent)
            .await
        {
            Ok(_) => return Ok(proposed.to_string()),
            Err(CoordinationError::NodeExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let (data, _) = self.client.get_data(paths::CLUSTER_ID, false).await?;
        Ok(znodes::from_bytes::<znodes::ClusterIdZNode>(paths::CLUSTER_ID, &data)?.id)
    }

    /// Case 1: the broker's ephemeral registration. Returns the broker epoch (the node's czxid).
    pub async fn register_broker(
        &self,
        id: i32,
        registration: &znodes::BrokerRegistration,
    ) -> ZkResult<i64> {
        let path = paths::broker(id);
        self.client
            .create(
                &path,
                &znodes::to_bytes(registration),
                CreateMode::Ephemeral,
            )
            .await?;
        let stat = self
            .client
            .exists(&path, false)
            .await?
            .ok_or(CoordinationError::NoNode { path })?;
        Ok(stat.czxid)
    }

    /// A broker id generated through `/brokers/seqid` (Kafka: the znode's version after a
    /// write, plus `reserved.broker.max.id`).
    pub async fn generate_broker_id(&self, reserved_max: i32) -> ZkResult<i32> {
        self.ensure_path(paths::BROKER_SEQID).await?;
        let stat = self.client.set_data(paths::BROKER_SEQID, &[], None).await?;
        Ok(reserved_max + stat.version)
    }

    /// The controller id in `/controller`, if any, optionally leaving a watch on it.
    pub async fn get_controller_id(&self, watch: bool) -> ZkResult<Option<i32>> {
        match self.client.get_data(paths::CONTROLLER, watch).await {
            Ok((data, _)) => Ok(znodes::from_bytes::<znodes::ControllerZNode>(
                paths::CONTROLLER,
                &data,
            )
            .ok()
            .map(|c| c.brokerid)),
            Err(CoordinationError::NoNode { .. }) => {
                if watch {
                    // Watch for its creation instead.
                    self.client.exists(paths::CONTROLLER, true).await?;
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Case 1's election: create ephemeral `/controller` and bump `/controller_epoch` in one
    /// multi. `Ok(Some((epoch, epoch_version)))` when this broker won, `Ok(None)` when
    /// another broker holds `/controller`.
    pub async fn try_become_controller(&self, broker_id: i32) -> ZkResult<Option<(i32, i32)>> {
        loop {
            let (epoch, version) = match self.client.get_data(paths::CONTROLLER_EPOCH, false).await
            {
                Ok((data, stat)) => (
                    znodes::decode_controller_epoch(&data).unwrap_or(0),
                    Some(stat.version),
                ),
                Err(CoordinationError::NoNode { .. }) => (0, None),
                Err(e) => return Err(e),
            };
            let new_epoch = epoch + 1;
            let epoch_op = match version {
                Some(v) => Op::SetData {
                    path: paths::CONTROLLER_EPOCH.into(),
                    data: znodes::encode_controller_epoch(new_epoch),
                    version: Some(v),
                },
                None => Op::Create {
                    path: paths::CONTROLLER_EPOCH.into(),
                    data: znodes::encode_controller_epoch(new_epoch),
                    mode: CreateMode::Persistent,
                },
            };
            let ops = vec![
                Op::Create {
                    path: paths::CONTROLLER.into(),
                    data: znodes::to_bytes(&znodes::ControllerZNode::new(broker_id)),
                    mode: CreateMode::Ephemeral,
                },
                epoch_op,
            ];
            match self.client.multi(ops).await {
                Ok(_) => {
                    let new_version = version.map(|v| v + 1).unwrap_or(0);
                    return Ok(Some((new_epoch, new_version)));
                }
                Err(CoordinationError::NodeExists { path }) if path == paths::CONTROLLER => {
                    return Ok(None)
                }
                // Another candidate bumped the epoch between our read and write: read again.
                Err(CoordinationError::BadVersion { .. })
                | Err(CoordinationError::NodeExists { .. }) => {
                    if self
                        .client
                        .exists(paths::CONTROLLER, false)
                        .await?
                        .is_some()
                    {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A write fenced by the controller epoch.
    pub async fn fenced(&self, epoch_version: i32, mut ops: Vec<Op>) -> Result<(), FencedError> {
        ops.insert(
            0,
            Op::Check {
                path: paths::CONTROLLER_EPOCH.into(),
                version: Some(epoch_version),
            },
        );
        match self.client.multi(ops).await {
            Ok(_) => Ok(()),
            Err(CoordinationError::BadVersion { path }) if path == paths::CONTROLLER_EPOCH => {
                Err(FencedError::ControllerMoved)
            }
            Err(CoordinationError::NoNode { path }) if path == paths::CONTROLLER_EPOCH => {
                Err(FencedError::ControllerMoved)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Many independent fenced writes, pipelined: at most [`PIPELINE_WINDOW`] in flight, sent
    /// in order, answered in order. Kafka's controller writes partition states this way
    /// (`KafkaZkClient.retryRequestsUntilConnected` over async requests): one round trip per
    /// write would make moving thousands of leaderships take seconds, and one multi for all of
    /// them would exceed ZooKeeper's `jute.maxbuffer` (1 MiB) at a few thousand partitions.
    pub async fn fenced_each(
        &self,
        epoch_version: i32,
        writes: Vec<Vec<Op>>,
    ) -> Vec<Result<(), FencedError>> {
        futures::stream::iter(writes)
            .map(|ops| self.fenced(epoch_version, ops))
            .buffered(PIPELINE_WINDOW)
            .collect()
            .await
    }

    pub async fn get_children(&self, path: &str, watch: bool) -> ZkResult<Vec<String>> {
        match self.client.get_children(path, watch).await {
            Ok(children) => Ok(children),
            Err(CoordinationError::NoNode { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// A live broker's registration and epoch, `None` if it vanished meanwhile.
    pub async fn get_broker(&self, id: i32) -> ZkResult<Option<(znodes::BrokerRegistration, i64)>> {
        let path = paths::broker(id);
        match self.client.get_data(&path, false).await {
            Ok((data, stat)) => Ok(znodes::from_bytes(&path, &data)
                .ok()
                .map(|r| (r, stat.czxid))),
            Err(CoordinationError::NoNode { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A topic's assignment znode and its version.
    pub async fn get_topic(
        &self,
        topic: &str,
        watch: bool,
    ) -> ZkResult<Option<(znodes::TopicZNode, Stat)>> {
        let path = paths::topic(topic);
        match self.client.get_data(&path, watch).await {
            Ok((data, stat)) => Ok(znodes::from_bytes(&path, &data).ok().map(|t| (t, stat))),
            Err(CoordinationError::NoNode { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A partition's state and its version (the partition epoch).
    pub async fn get_partition_state(
        &self,
        topic: &str,
        partition: i32,
    ) -> ZkResult<Option<(znodes::PartitionStateZNode, i32)>> {
        let path = paths::partition_state(topic, partition);
        match self.client.get_data(&path, false).await {
            Ok((data, stat)) => Ok(znodes::from_bytes(&path, &data)
                .ok()
                .map(|s| (s, stat.version))),
            Err(CoordinationError::NoNode { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Many partitions' states, read pipelined as [`Self::fenced_each`] writes; answered in
    /// the order asked.
    pub async fn get_partition_states(
        &self,
        topic: &str,
        partitions: impl IntoIterator<Item = i32>,
    ) -> Vec<ZkResult<Option<(znodes::PartitionStateZNode, i32)>>> {
        futures::stream::iter(partitions)
            .map(|p| self.get_partition_state(topic, p))
            .buffered(PIPELINE_WINDOW)
            .collect()
            .await
    }

    /// A topic's config overrides (empty when it has none).
    pub async fn get_topic_config(&self, topic: &str) -> ZkResult<BTreeMap<String, String>> {
        self.get_config(&paths::topic_config(topic)).await
    }

    /// The overrides stored at a `/config/...` znode (none when it does not exist).
    pub async fn get_config(&self, path: &str) -> ZkResult<BTreeMap<String, String>> {
        match self.client.get_data(path, false).await {
            Ok((data, _)) => Ok(znodes::from_bytes::<znodes::ConfigZNode>(path, &data)
                .map(|c| c.config)
                .unwrap_or_default()),
            Err(CoordinationError::NoNode { .. }) => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }

    /// Ops that create or overwrite `/config/topics/<t>`.
    pub async fn topic_config_ops(
        &self,
        topic: &str,
        config: &BTreeMap<String, String>,
    ) -> ZkResult<Vec<Op>> {
        self.config_ops(paths::topic_config(topic), config).await
    }

    /// Ops that create or overwrite the `/config/...` znode at `path`.
    pub async fn config_ops(
        &self,
        path: String,
        config: &BTreeMap<String, String>,
    ) -> ZkResult<Vec<Op>> {
        let data = znodes::to_bytes(&znodes::ConfigZNode::new(config.clone()));
        Ok(match self.client.exists(&path, false).await? {
            Some(stat) => vec![Op::SetData {
                path,
                data,
                version: Some(stat.version),
            }],
            None => vec![Op::Create {
                path,
                data,
                mode: CreateMode::Persistent,
            }],
        })
    }

    /// Deletes `path` and everything under it (children first); a missing node is fine.
    pub async fn delete_recursive(&self, path: &str) -> ZkResult<()> {
        let mut stack = vec![(path.to_string(), false)];
        while let Some((node, expanded)) = stack.pop() {
            if expanded {
                match self.client.delete(&node, None).await {
                    Ok(()) | Err(CoordinationError::NoNode { .. }) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            stack.push((node.clone(), true));
            for child in self.get_children(&node, false).await? {
                stack.push((format!("{node}/{child}"), false));
            }
        }
        Ok(())
    }

    /// Kafka's `ZkProducerIdManager.getNewProducerIdBlock`: the block after the one in
    /// `/latest_producer_id_block` (or the first, `[0, size-1]`, when the node is empty or
    /// absent), claimed with a write conditional on the version read, retried when another
    /// broker claimed a block in between. Returns `(first, last)`.
    pub async fn allocate_producer_id_block(
        &self,
        broker_id: i32,
        block_size: i64,
    ) -> anyhow::Result<(i64, i64)> {
        let path = paths::LATEST_PRODUCER_ID_BLOCK;
        loop {
            let current = match self.client.get_data(path, false).await {
                Ok((data, stat)) => Some((data, stat.version)),
                Err(CoordinationError::NoNode { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let first = match &current {
                Some((data, _)) if !data.is_empty() => {
                    let block: znodes::ProducerIdBlockZNode = znodes::from_bytes(path, data)?;
                    let (_, end) = block
                        .range()
                        .ok_or_else(|| anyhow::anyhow!("malformed znode {path}: bad range"))?;
                    end.checked_add(1)
                        .filter(|first| first.checked_add(block_size).is_some())
                        .ok_or_else(|| anyhow::anyhow!("producer ids are exhausted"))?
                }
                _ => 0,
            };
            let last = first + block_size - 1;
            let data = znodes::to_bytes(&znodes::ProducerIdBlockZNode::new(broker_id, first, last));
            let written = match current {
                Some((_, version)) => self
                    .client
                    .set_data(path, &data, Some(version))
                    .await
                    .map(|_| ()),
                None => self
                    .client
                    .create(path, &data, CreateMode::Persistent)
                    .await
                    .map(|_| ()),
            };
            match written {
                Ok(()) => return Ok((first, last)),
                // Another broker claimed a block since the read: read again.
                Err(CoordinationError::BadVersion { .. })
                | Err(CoordinationError::NodeExists { .. })
                | Err(CoordinationError::NoNode { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::actors::coordination::{self, CoordinationConfig, EmbeddedCoordination};

    #[actix::test]
    async fn producer_id_blocks_follow_the_latest_block_znode() {
        let service = EmbeddedCoordination::start(
            CoordinationConfig::in_memory().with_tick_time(Duration::from_millis(100)),
        )
        .await
        .unwrap();
        let (client, _events) = coordination::connect(None, Duration::from_secs(4), Some(&service))
            .await
            .unwrap();
        let zk = KafkaZkClient::new(client);
        zk.create_top_level_paths().await.unwrap();
        assert_eq!(
            zk.allocate_producer_id_block(1, 1000).await.unwrap(),
            (0, 999)
        );
        assert_eq!(
            zk.allocate_producer_id_block(2, 1000).await.unwrap(),
            (1000, 1999)
        );
        let (data, _) = zk
            .client
            .get_data(paths::LATEST_PRODUCER_ID_BLOCK, false)
            .await
            .unwrap();
        let block: znodes::ProducerIdBlockZNode =
            znodes::from_bytes(paths::LATEST_PRODUCER_ID_BLOCK, &data).unwrap();
        assert_eq!((block.broker, block.range()), (2, Some((1000, 1999))));
        // Concurrent claims never overlap.
        let (a, b) = futures::join!(
            zk.allocate_producer_id_block(1, 1000),
            zk.allocate_producer_id_block(2, 1000)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a, b);
        assert!(a.0 >= 2000 && b.0 >= 2000);
        assert!(a.1 < b.0 || b.1 < a.0);
    }
}
