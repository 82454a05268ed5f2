//! A running cluster's state as one JSON-serializable value: brokers (up, paused, down),
//! the controller, and every partition's leader, replicas, ISR, leader epoch, log start,
//! high-water mark and log end offset (what the fault console's `status` prints).

use serde::Serialize;

use super::{BrokerState, Cluster};

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub brokers: Vec<BrokerStatus>,
    /// -1 when no broker knows one.
    pub controller: i32,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BrokerStatus {
    pub id: i32,
    pub addr: String,
    pub state: BrokerState,
}

#[derive(Debug, Clone, Serialize)]
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
        let mut partitions = Vec::new();
        if let Some(snapshot) = &snapshot {
            let mut topics: Vec<_> = snapshot.topics.values().collect();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            for topic in topics {
                for p in topic.partitions.values() {
                    let progress = up
                        .iter()
                        .find(|b| b.id == p.leader)
                        .and_then(|b| b.shared.replicas.get(&topic.name, p.partition))
                        .map(|h| h.progress());
                    partitions.push(PartitionStatus {
                        topic: topic.name.clone(),
                        partition: p.partition,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        log_start_offset: progress.map(|p| p.log_start_offset).unwrap_or(-1),
                        high_watermark: progress.map(|p| p.high_watermark).unwrap_or(-1),
                        log_end_offset: progress.map(|p| p.log_end_offset).unwrap_or(-1),
                    });
                }
            }
        }
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
            controller: snapshot.map(|s| s.controller_id).unwrap_or(-1),
            partitions,
        }
    }
}
