//! A running cluster's state as one JSON-serializable value: brokers (up, paused, down),
//! the controller and its epoch, every partition's leader, replicas, ISR, leader epoch, log
//! start, high-water mark and log end offset (what the fault console's `status` prints), and
//! for the browser console ([`crate::ui`]) the consumer groups: state, generation, members
//! with their assignments, committed offsets and lag.
//!
//! The pieces are built from one broker's metadata and replicas ([`partitions_of`],
//! [`groups_of`]), so a single broker (`weir broker` with `ui.listener`) reports the same
//! shape from what it knows.

use std::time::Duration;

use serde::Serialize;

use super::{BrokerState, Cluster};
use crate::actors::group::coordinator::{DescribeGroup, ListGroups, OffsetFetch};
use crate::actors::group::metadata::consumer_assignment;
use crate::actors::group::GroupRouter;
use crate::actors::metadata_cache::MetadataSnapshot;
use crate::actors::replica::PartitionProgress;

/// How long the group part of a status waits for a busy coordinator before leaving its
/// groups out.
const GROUPS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterStatus {
    pub brokers: Vec<BrokerStatus>,
    /// -1 when no broker knows one.
    pub controller: i32,
    /// The epoch of that controller (-1 when none).
    pub controller_epoch: i32,
    pub partitions: Vec<PartitionStatus>,
    /// Filled by [`Cluster::status_with_groups`]; left out of the console's `status`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokerStatus {
    pub id: i32,
    pub addr: String,
    pub state: BrokerState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// -1 while offline.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// From the leader's replica; -1 when the leader is not running here.
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

/// One consumer group, as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStatus {
    pub group_id: String,
    /// The broker whose coordinator owns the group.
    pub coordinator: i32,
    /// Kafka's state name: `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`.
    pub state: String,
    pub generation: i32,
    /// The selected assignor, while stable.
    pub protocol: String,
    pub members: Vec<MemberStatus>,
    pub offsets: Vec<GroupOffset>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberStatus {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// `topic-partition` names (empty during a rebalance).
    pub assignment: Vec<String>,
}

/// A committed offset and the lag behind the partition's high-water mark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// -1 when the leader's replica is not known here.
    pub high_watermark: i64,
    /// `high_watermark − committed` (at least 0); absent when the high-water mark is unknown.
    pub lag: Option<i64>,
}

/// Every partition `snapshot` knows, sorted by topic then partition, each with the offsets
/// `progress` gives for it (`-1`s when it gives none).
pub fn partitions_of(
    snapshot: &MetadataSnapshot,
    progress: impl Fn(&str, i32, i32) -> Option<PartitionProgress>,
) -> Vec<PartitionStatus> {
    let mut topics: Vec<_> = snapshot.topics.values().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut partitions = Vec::new();
    for topic in topics {
        for p in topic.partitions.values() {
            let offsets = progress(&topic.name, p.partition, p.leader);
            partitions.push(PartitionStatus {
                topic: topic.name.clone(),
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                log_start_offset: offsets.map(|o| o.log_start_offset).unwrap_or(-1),
                high_watermark: offsets.map(|o| o.high_watermark).unwrap_or(-1),
                log_end_offset: offsets.map(|o| o.log_end_offset).unwrap_or(-1),
            });
        }
    }
    partitions
}

/// The groups broker `broker`'s coordinators own, with lag against the high-water marks in
/// `partitions`. A coordinator that does not answer within [`GROUPS_TIMEOUT`] is left out.
pub async fn groups_of(
    broker: i32,
    router: &GroupRouter,
    partitions: &[PartitionStatus],
) -> Vec<GroupStatus> {
    let mut groups = Vec::new();
    for p in router.hosted_partitions() {
        let Some(coordinator) = router.coordinator_for_partition(p) else {
            continue;
        };
        let Ok(Ok(listed)) = tokio::time::timeout(
            GROUPS_TIMEOUT,
            coordinator.send(ListGroups { states: vec![] }),
        )
        .await
        else {
            continue;
        };
        for overview in listed.groups {
            let group_id = overview.group_id;
            let described = tokio::time::timeout(
                GROUPS_TIMEOUT,
                coordinator.send(DescribeGroup {
                    group_id: group_id.clone(),
                }),
            );
            let Ok(Ok(described)) = described.await else {
                continue;
            };
            let fetched = tokio::time::timeout(
                GROUPS_TIMEOUT,
                coordinator.send(OffsetFetch {
                    group_id: group_id.clone(),
                    require_stable: false,
                    partitions: None,
                }),
            );
            let committed = match fetched.await {
                Ok(Ok(Ok(offsets))) => offsets,
                _ => Vec::new(),
            };
            let mut offsets: Vec<GroupOffset> = committed
                .into_iter()
                .filter(|o| o.offset >= 0)
                .map(|o| {
                    let hwm = partitions
                        .iter()
                        .find(|p| p.topic == o.tp.topic && p.partition == o.tp.partition)
                        .map(|p| p.high_watermark)
                        .filter(|h| *h >= 0);
                    GroupOffset {
                        topic: o.tp.topic,
                        partition: o.tp.partition,
                        committed: o.offset,
                        high_watermark: hwm.unwrap_or(-1),
                        lag: hwm.map(|h| (h - o.offset).max(0)),
                    }
                })
                .collect();
            offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            let mut members: Vec<MemberStatus> = described
                .members
                .iter()
                .map(|m| MemberStatus {
                    member_id: m.member_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    assignment: consumer_assignment(&m.assignment)
                        .unwrap_or_default()
                        .into_iter()
                        .flat_map(|(t, ps)| ps.into_iter().map(move |p| format!("{t}-{p}")))
                        .collect(),
                })
                .collect();
            members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
            groups.push(GroupStatus {
                group_id,
                coordinator: broker,
                state: described.state,
                generation: described.generation_id,
                protocol: described.protocol,
                members,
                offsets,
            });
        }
    }
    groups
}

/// What one broker knows of the cluster (`weir broker` with `ui.listener`): the brokers its
/// metadata lists (registered, so `up`; a replica's broker missing from it is `down`), the
/// controller, every partition with the offsets of this broker's own replica (exact where it
/// leads, a follower's view elsewhere, `-1` where it holds none), and the groups its
/// coordinators own.
pub async fn broker_view(
    broker: i32,
    shared: &crate::actors::broker::BrokerShared,
    groups: &GroupRouter,
) -> ClusterStatus {
    let snapshot = shared.metadata.snapshot();
    let partitions = partitions_of(&snapshot, |topic, partition, _| {
        shared.replicas.get(topic, partition).map(|h| h.progress())
    });
    let mut brokers: Vec<BrokerStatus> = snapshot
        .brokers
        .values()
        .map(|b| BrokerStatus {
            id: b.id,
            addr: crate::actors::metadata_cache::host_port(&b.host, b.port),
            state: BrokerState::Up,
        })
        .collect();
    let mut missing: Vec<i32> = partitions
        .iter()
        .flat_map(|p| p.replicas.iter().copied())
        .filter(|id| !snapshot.brokers.contains_key(id))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    brokers.extend(missing.into_iter().map(|id| BrokerStatus {
        id,
        addr: String::new(),
        state: BrokerState::Down,
    }));
    brokers.sort_by_key(|b| b.id);
    let groups = groups_of(broker, groups, &partitions).await;
    ClusterStatus {
        brokers,
        controller: snapshot.controller_id,
        controller_epoch: snapshot.controller_epoch,
        partitions,
        groups,
    }
}

impl Cluster {
    /// What the running brokers know: the metadata of the broker that heard from the newest
    /// controller (the controller itself when it runs), and each partition's offsets from
    /// its leader's replica.
    pub fn status(&self) -> ClusterStatus {
        let up: Vec<_> = self
            .brokers
            .iter()
            .filter(|b| b.state != BrokerState::Down)
            .collect();
        // A paused broker's cache is as stale as its pause is long: ask the running ones,
        // the controller's own cache first (it is updated before anyone else's).
        let snapshot = up
            .iter()
            .filter(|b| b.state == BrokerState::Up)
            .map(|b| (b.id, b.shared.metadata.snapshot()))
            .max_by_key(|(id, s)| (s.controller_epoch, *id == s.controller_id))
            .map(|(_, s)| s);
        let partitions = match &snapshot {
            Some(snapshot) => partitions_of(snapshot, |topic, partition, leader| {
                up.iter()
                    .find(|b| b.id == leader)
                    .and_then(|b| b.shared.replicas.get(topic, partition))
                    .map(|h| h.progress())
            }),
            None => Vec::new(),
        };
        ClusterStatus {
            brokers: self
                .brokers
                .iter()
                .map(|b| BrokerStatus {
                    id: b.id,
                    addr: b.addr.to_string(),
                    state: b.state,
                })
                .collect(),
            controller: snapshot.as_ref().map(|s| s.controller_id).unwrap_or(-1),
            controller_epoch: snapshot.map(|s| s.controller_epoch).unwrap_or(-1),
            partitions,
            groups: Vec::new(),
        }
    }

    /// [`Cluster::status`] plus the consumer groups of every running broker's coordinators.
    pub async fn status_with_groups(&self) -> ClusterStatus {
        let mut status = self.status();
        for b in self.brokers.iter().filter(|b| b.state == BrokerState::Up) {
            let groups = groups_of(b.id, &b.groups, &status.partitions).await;
            status.groups.extend(groups);
        }
        status.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        status
    }
}
