//! The controller's in-memory view of the cluster (Kafka's `ControllerContext`) and the
//! decisions it derives from it: initial leadership of new partitions, re-election on broker
//! failure and return, ISR changes proposed by leaders (AlterPartition), preferred-leader and
//! controlled-shutdown elections.
//!
//! Every decision is a [`StateChange`]: the new leader/ISR of one partition and the partition
//! epoch it must find in the coordination service (writes are conditional, so a stale
//! controller's writes fail). The actor writes the changes, then applies them here with
//! [`ControllerContext::apply`] and tells the brokers. Keeping the decisions pure lets the
//! seed's cases be tested without actors.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::election::{elect_leader, isr_without, ElectionReason};
use crate::actors::metadata_cache::{BrokerEndpoint, PartitionMetadata};

/// Kafka's first leader epoch.
pub const INITIAL_LEADER_EPOCH: i32 = 0;
/// A state znode's version right after its creation.
pub const INITIAL_PARTITION_EPOCH: i32 = 0;
pub const NO_LEADER: i32 = -1;

/// A partition's leadership as recorded in `/brokers/topics/<t>/partitions/<p>/state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderIsr {
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// The epoch of the controller that wrote it.
    pub controller_epoch: i32,
    /// The state znode's version: Kafka's partition epoch, bumped by every write.
    pub partition_epoch: i32,
}

/// A live broker: where clients reach it, and its epoch (its registration's czxid), which
/// tells a restarted broker from its previous life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    pub endpoint: BrokerEndpoint,
    pub epoch: i64,
}

/// A topic as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: Uuid,
    /// Partition → replicas, the first being the preferred leader.
    pub assignment: BTreeMap<i32, Vec<i32>>,
    /// `/config/topics/<t>` overrides.
    pub config: BTreeMap<String, String>,
}

impl TopicInfo {
    fn unclean_allowed(&self, broker_default: bool) -> bool {
        self.config
            .get("unclean.leader.election.enable")
            .map(|v| v.trim().eq_ignore_ascii_case("true"))
            .unwrap_or(broker_default)
    }
}

/// One decided change of a partition's state, not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub topic: String,
    pub partition: i32,
    /// The new state; its `partition_epoch` is what the znode's version becomes once written.
    pub state: LeaderIsr,
    /// The znode version the write requires (the state this change was derived from).
    pub expected_partition_epoch: i32,
}

/// Why the controller refused a leader's AlterPartition (Kafka's error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AlterPartitionError {
    /// UNKNOWN_TOPIC_OR_PARTITION (3)
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// NOT_LEADER_OR_FOLLOWER (6): the sender is not the leader.
    #[error("the sender is not the partition's leader")]
    NotLeader,
    /// FENCED_LEADER_EPOCH (74): the sender's leader epoch is stale.
    #[error("stale leader epoch")]
    FencedLeaderEpoch,
    /// INVALID_UPDATE_VERSION (95): the sender's partition epoch is stale.
    #[error("stale partition epoch")]
    InvalidUpdateVersion,
    /// INELIGIBLE_REPLICA (107): a proposed ISR member is not alive or not assigned.
    #[error("a proposed ISR member is not an eligible replica")]
    IneligibleReplica,
}

impl AlterPartitionError {
    pub fn kafka_code(self) -> i16 {
        match self {
            Self::UnknownTopicOrPartition => 3,
            Self::NotLeader => 6,
            Self::FencedLeaderEpoch => 74,
            Self::InvalidUpdateVersion => 95,
            Self::IneligibleReplica => 107,
        }
    }
}

/// The controller's whole view.
#[derive(Debug, Clone, Default)]
pub struct ControllerContext {
    /// This controller's epoch (`/controller_epoch`).
    pub epoch: i32,
    pub live_brokers: BTreeMap<i32, LiveBroker>,
    /// Brokers in controlled shutdown: they lead nothing new.
    pub shutting_down: BTreeSet<i32>,
    pub topics: BTreeMap<String, TopicInfo>,
    pub states: BTreeMap<(String, i32), LeaderIsr>,
    /// Topics queued for deletion (`/admin/delete_topics`).
    pub deleting: BTreeSet<String>,
    /// `unclean.leader.election.enable` of the brokers, for topics without an override.
    pub unclean_default: bool,
    /// Replicas on a live broker whose log dir went offline (Kafka's `replicasOnOfflineDirs`),
    /// per broker: they lead nothing and count as dead for their partitions until that broker
    /// registers again (a restart recovers the dir).
    pub offline_replicas: BTreeMap<i32, BTreeSet<(String, i32)>>,
}

impl ControllerContext {
    pub fn live_ids(&self) -> BTreeSet<i32> {
        self.live_brokers.keys().copied().collect()
    }

    /// The live brokers whose replica of `key` is not on an offline log dir: who may lead it.
    pub fn live_for(&self, key: &(String, i32)) -> BTreeSet<i32> {
        self.live_brokers
            .keys()
            .copied()
            .filter(|b| {
                !self
                    .offline_replicas
                    .get(b)
                    .is_some_and(|o| o.contains(key))
            })
            .collect()
    }

    /// The state of each partition of a new topic: the first live replica leads, the live
    /// replicas form the ISR, epochs start at 0. A partition with no live replica starts
    /// offline (leader −1, ISR the whole assignment), as Kafka leaves it.
    pub fn initial_states(&self, assignment: &BTreeMap<i32, Vec<i32>>) -> BTreeMap<i32, LeaderIsr> {
        let live = self.live_ids();
        assignment
            .iter()
            .map(|(p, replicas)| {
                let live_replicas: Vec<i32> = replicas
                    .iter()
                    .copied()
                    .filter(|r| live.contains(r))
                    .collect();
                let (leader, isr) = match live_replicas.first() {
                    Some(&leader) => (leader, live_replicas),
                    None => (NO_LEADER, replicas.clone()),
                };
                (
                    *p,
                    LeaderIsr {
                        leader,
                        leader_epoch: INITIAL_LEADER_EPOCH,
                        isr,
                        controller_epoch: self.epoch,
                        partition_epoch: INITIAL_PARTITION_EPOCH,
                    },
                )
            })
            .collect()
    }

    fn change(
        &self,
        topic: &str,
        partition: i32,
        old: &LeaderIsr,
        leader: i32,
        isr: Vec<i32>,
        bump_leader_epoch: bool,
    ) -> StateChange {
        StateChange {
            topic: topic.to_string(),
            partition,
            state: LeaderIsr {
                leader,
                leader_epoch: if bump_leader_epoch {
                    old.leader_epoch + 1
                } else {
                    old.leader_epoch
                },
                isr,
                controller_epoch: self.epoch,
                partition_epoch: old.partition_epoch + 1,
            },
            expected_partition_epoch: old.partition_epoch,
        }
    }

    /// Seed Case 4: brokers `dead` are gone. Every partition with a replica on them changes:
    /// the dead leave the ISR (its last member stays); a partition they led gets the first
    /// live ISR replica in assignment order as leader, or goes offline (leader −1). As in
    /// ZooKeeper-mode Kafka, every such change bumps the leader epoch.
    pub fn on_brokers_failed(&self, dead: &BTreeSet<i32>) -> Vec<StateChange> {
        self.on_replicas_gone(|_| dead.clone())
    }

    /// A broker's log dir went offline: its `replicas` there are gone as if the broker were
    /// dead for those partitions only (Kafka's `onReplicasBecomeOffline`): they leave the ISR
    /// and lose leadership, elected from the rest of the ISR.
    pub fn on_replicas_offline(
        &self,
        broker: i32,
        replicas: &BTreeSet<(String, i32)>,
    ) -> Vec<StateChange> {
        self.on_replicas_gone(|key| {
            if replicas.contains(key) {
                BTreeSet::from([broker])
            } else {
                BTreeSet::new()
            }
        })
    }

    /// The changes when, for each partition, the replicas `dead_of(partition)` are gone.
    fn on_replicas_gone(
        &self,
        dead_of: impl Fn(&(String, i32)) -> BTreeSet<i32>,
    ) -> Vec<StateChange> {
        let mut out = Vec::new();
        for (key, state) in &self.states {
            let (topic, partition) = key;
            if self.deleting.contains(topic) {
                continue;
            }
            let Some(info) = self.topics.get(topic) else {
                continue;
            };
            let Some(replicas) = info.assignment.get(partition) else {
                continue;
            };
            let dead = dead_of(key);
            if dead.is_empty() {
                continue;
            }
            let leader_dead = dead.contains(&state.leader);
            let isr_touched = state.isr.iter().any(|r| dead.contains(r));
            if !leader_dead && !isr_touched {
                continue;
            }
            let live: BTreeSet<i32> = self.live_for(key).difference(&dead).copied().collect();
            if leader_dead || state.leader == NO_LEADER {
                let reason = ElectionReason::Offline {
                    unclean_allowed: info.unclean_allowed(self.unclean_default),
                };
                match elect_leader(replicas, &state.isr, &live, &reason) {
                    Some(elected) => out.push(self.change(
                        topic,
                        *partition,
                        state,
                        elected.leader,
                        elected.isr,
                        true,
                    )),
                    None => out.push(self.change(
                        topic,
                        *partition,
                        state,
                        NO_LEADER,
                        isr_without(&state.isr, &dead),
                        true,
                    )),
                }
            } else {
                let isr = isr_without(&state.isr, &dead);
                if isr != state.isr {
                    out.push(self.change(topic, *partition, state, state.leader, isr, true));
                }
            }
        }
        out
    }

    /// Offline partitions (leader −1) that `live` brokers can now lead: a returning ISR
    /// member, or any replica where unclean election is enabled.
    pub fn elect_offline(&self) -> Vec<StateChange> {
        let mut out = Vec::new();
        for (key, state) in &self.states {
            let (topic, partition) = key;
            let live = self.live_for(key);
            if state.leader != NO_LEADER || self.deleting.contains(topic) {
                continue;
            }
            let Some(info) = self.topics.get(topic) else {
                continue;
            };
            let Some(replicas) = info.assignment.get(partition) else {
                continue;
            };
            let reason = ElectionReason::Offline {
                unclean_allowed: info.unclean_allowed(self.unclean_default),
            };
            if let Some(elected) = elect_leader(replicas, &state.isr, &live, &reason) {
                out.push(self.change(topic, *partition, state, elected.leader, elected.isr, true));
            }
        }
        out
    }

    /// Moves leadership back to each partition's first replica where it is alive and in the
    /// ISR (auto leader rebalance, ElectLeaders PREFERRED). `only` restricts the partitions.
    pub fn preferred_elections(&self, only: Option<&BTreeSet<(String, i32)>>) -> Vec<StateChange> {
        let mut out = Vec::new();
        for (key, state) in &self.states {
            let live = self.live_for(key);
            if only.is_some_and(|o| !o.contains(key)) || self.deleting.contains(&key.0) {
                continue;
            }
            let Some(replicas) = self
                .topics
                .get(&key.0)
                .and_then(|t| t.assignment.get(&key.1))
            else {
                continue;
            };
            if replicas.first() == Some(&state.leader) || self.shutting_down.contains(&replicas[0])
            {
                continue;
            }
            if let Some(elected) =
                elect_leader(replicas, &state.isr, &live, &ElectionReason::Preferred)
            {
                out.push(self.change(
                    &key.0,
                    key.1,
                    state,
                    elected.leader,
                    state.isr.clone(),
                    true,
                ));
            }
        }
        out
    }

    /// Controlled shutdown of `broker`: partitions it leads move to another ISR member, and
    /// it leaves the ISR of the partitions it follows (Kafka's `ControlledShutdown`).
    pub fn controlled_shutdown(&self, broker: i32) -> Vec<StateChange> {
        let live = self.live_ids();
        let mut shutting_down = self.shutting_down.clone();
        shutting_down.insert(broker);
        let mut out = Vec::new();
        for ((topic, partition), state) in &self.states {
            let Some(replicas) = self
                .topics
                .get(topic)
                .and_then(|t| t.assignment.get(partition))
            else {
                continue;
            };
            if !replicas.contains(&broker) || self.deleting.contains(topic) {
                continue;
            }
            if state.leader == broker {
                let reason = ElectionReason::ControlledShutdown {
                    shutting_down: shutting_down.clone(),
                };
                if let Some(elected) = elect_leader(replicas, &state.isr, &live, &reason) {
                    out.push(self.change(
                        topic,
                        *partition,
                        state,
                        elected.leader,
                        elected.isr,
                        true,
                    ));
                }
            } else if state.isr.contains(&broker) && state.isr.len() > 1 {
                let isr: Vec<i32> = state.isr.iter().copied().filter(|r| *r != broker).collect();
                out.push(self.change(topic, *partition, state, state.leader, isr, true));
            }
        }
        out
    }

    /// Partitions `broker` still leads (controlled shutdown retries until none remain).
    pub fn partitions_led_by(&self, broker: i32) -> usize {
        self.states.values().filter(|s| s.leader == broker).count()
    }

    /// A leader's ISR proposal (KIP-497 AlterPartition). Accepted only from the current leader
    /// at the current leader and partition epochs, with live assigned replicas; the leader
    /// epoch stays, the partition epoch moves on.
    pub fn alter_partition(
        &self,
        topic: &str,
        partition: i32,
        from_broker: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: &[i32],
    ) -> Result<StateChange, AlterPartitionError> {
        let key = (topic.to_string(), partition);
        let state = self
            .states
            .get(&key)
            .ok_or(AlterPartitionError::UnknownTopicOrPartition)?;
        let replicas = self
            .topics
            .get(topic)
            .and_then(|t| t.assignment.get(&partition))
            .ok_or(AlterPartitionError::UnknownTopicOrPartition)?;
        if state.leader != from_broker {
            return Err(AlterPartitionError::NotLeader);
        }
        if leader_epoch != state.leader_epoch {
            return Err(AlterPartitionError::FencedLeaderEpoch);
        }
        if partition_epoch != state.partition_epoch {
            return Err(AlterPartitionError::InvalidUpdateVersion);
        }
        let live = self.live_ids();
        let eligible = new_isr.iter().all(|r| {
            replicas.contains(r)
                && live.contains(r)
                && (*r == from_broker || !self.shutting_down.contains(r))
        });
        if !eligible || !new_isr.contains(&from_broker) {
            return Err(AlterPartitionError::IneligibleReplica);
        }
        Ok(self.change(
            topic,
            partition,
            state,
            state.leader,
            new_isr.to_vec(),
            false,
        ))
    }

    /// Records a written change.
    pub fn apply(&mut self, change: &StateChange) {
        self.states.insert(
            (change.topic.clone(), change.partition),
            change.state.clone(),
        );
    }

    /// The metadata clients see for one partition.
    pub fn partition_metadata(&self, topic: &str, partition: i32) -> Option<PartitionMetadata> {
        let state = self.states.get(&(topic.to_string(), partition))?;
        let replicas = self.topics.get(topic)?.assignment.get(&partition)?.clone();
        // Dead brokers' replicas and those on an offline log dir of a live broker.
        let live = self.live_for(&(topic.to_string(), partition));
        let offline_replicas = replicas
            .iter()
            .copied()
            .filter(|r| !live.contains(r))
            .collect();
        Some(PartitionMetadata {
            partition,
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            replicas,
            isr: state.isr.clone(),
            offline_replicas,
            partition_epoch: state.partition_epoch,
        })
    }

    /// Brokers that host a replica of the partition and are alive (LeaderAndIsr targets).
    pub fn live_replicas(&self, topic: &str, partition: i32) -> Vec<i32> {
        self.topics
            .get(topic)
            .and_then(|t| t.assignment.get(&partition))
            .map(|r| {
                r.iter()
                    .copied()
                    .filter(|id| self.live_brokers.contains_key(id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every partition with a replica on `broker`.
    pub fn partitions_on(&self, broker: i32) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|(name, info)| {
                info.assignment
                    .iter()
                    .filter(move |(_, replicas)| replicas.contains(&broker))
                    .map(move |(p, _)| (name.clone(), *p))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> LiveBroker {
        LiveBroker {
            endpoint: BrokerEndpoint {
                id,
                host: "127.0.0.1".into(),
                port: 9000 + id as u16,
                rack: None,
                listeners: vec![],
            },
            epoch: id as i64,
        }
    }

    /// Brokers 1-3 alive; topic "orders" with the seed's placement.
    fn context() -> ControllerContext {
        let mut c = ControllerContext {
            epoch: 1,
            live_brokers: (1..=3).map(|id| (id, broker(id))).collect(),
            ..Default::default()
        };
        let assignment: BTreeMap<i32, Vec<i32>> =
            [(0, vec![1, 2, 3]), (1, vec![2, 3, 1]), (2, vec![3, 1, 2])]
                .into_iter()
                .collect();
        let states = c.initial_states(&assignment);
        for (p, s) in states {
            c.states.insert(("orders".into(), p), s);
        }
        c.topics.insert(
            "orders".into(),
            TopicInfo {
                id: Uuid::from_u128(7),
                assignment,
                config: BTreeMap::new(),
            },
        );
        c
    }

    fn dead(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn replicas_on_an_offline_log_dir_lose_leadership_and_isr_only_for_their_partitions() {
        let mut c = context();
        // Broker 1's dir holding orders-0 (led by 1) and orders-1 (followed) fails.
        let offline: BTreeSet<(String, i32)> =
            [("orders".to_string(), 0), ("orders".to_string(), 1)].into();
        c.offline_replicas.insert(1, offline.clone());
        let changes = c.on_replicas_offline(1, &offline);
        let by_partition: BTreeMap<i32, &LeaderIsr> =
            changes.iter().map(|ch| (ch.partition, &ch.state)).collect();
        assert_eq!(by_partition.len(), 2, "{changes:?}");
        assert_eq!(by_partition[&0].leader, 2, "the next ISR replica leads");
        assert_eq!(by_partition[&0].isr, vec![2, 3]);
        assert_eq!(by_partition[&0].leader_epoch, 1);
        assert_eq!(
            by_partition[&1].leader, 2,
            "a follower leaving keeps the leader"
        );
        assert_eq!(by_partition[&1].isr, vec![2, 3]);
        for ch in &changes {
            c.apply(ch);
        }
        // Broker 1 is alive but may not lead orders-0 again, even as preferred replica.
        assert!(c
            .preferred_elections(None)
            .iter()
            .all(|ch| ch.state.leader != 1 || ch.partition == 2));
        assert!(c.live_for(&("orders".into(), 0)).iter().eq([2, 3].iter()));
        let metadata = c.partition_metadata("orders", 0).unwrap();
        assert_eq!(
            metadata.offline_replicas,
            vec![1],
            "Metadata lists the offline replica"
        );
        assert!(c.live_for(&("orders".into(), 2)).contains(&1));
    }

    fn kill(c: &mut ControllerContext, ids: &[i32]) {
        let changes = c.on_brokers_failed(&dead(ids));
        for id in ids {
            c.live_brokers.remove(id);
        }
        for ch in &changes {
            c.apply(ch);
        }
    }

    #[test]
    fn new_partitions_are_led_by_their_first_live_replica_at_epoch_zero() {
        let c = context();
        let s = &c.states[&("orders".to_string(), 1)];
        assert_eq!(
            (s.leader, s.leader_epoch, s.isr.clone()),
            (2, 0, vec![2, 3, 1])
        );

        let mut c = context();
        c.live_brokers.remove(&1);
        let states = c.initial_states(&[(0, vec![1, 2])].into_iter().collect());
        assert_eq!(states[&0].leader, 2);
        assert_eq!(states[&0].isr, vec![2]);
    }

    #[test]
    fn a_dead_leader_is_replaced_by_the_next_isr_replica_with_a_new_epoch() {
        let c = context();
        let changes = c.on_brokers_failed(&dead(&[1]));
        let p0 = changes.iter().find(|ch| ch.partition == 0).unwrap();
        assert_eq!(p0.state.leader, 2);
        assert_eq!(p0.state.isr, vec![2, 3]);
        assert_eq!(p0.state.leader_epoch, 1);
        assert_eq!(p0.expected_partition_epoch, 0);
        assert_eq!(p0.state.partition_epoch, 1);
    }

    #[test]
    fn a_dead_follower_leaves_every_isr_it_was_in() {
        let c = context();
        let changes = c.on_brokers_failed(&dead(&[1]));
        // Broker 1 follows partitions 1 and 2: both shrink, keeping their leaders.
        for p in [1, 2] {
            let ch = changes.iter().find(|ch| ch.partition == p).unwrap();
            assert!(!ch.state.isr.contains(&1));
            assert_eq!(ch.state.leader, c.states[&("orders".to_string(), p)].leader);
        }
        assert_eq!(changes.len(), 3);
    }

    #[test]
    fn the_last_isr_member_dying_leaves_the_partition_offline_until_it_returns() {
        let mut c = context();
        kill(&mut c, &[2, 3]);
        kill(&mut c, &[1]);
        let s = c.states[&("orders".to_string(), 0)].clone();
        assert_eq!(s.leader, NO_LEADER);
        assert_eq!(s.isr, vec![1]);

        // Broker 2 returns: not in the ISR, so partition 0 stays offline (clean election).
        c.live_brokers.insert(2, broker(2));
        assert!(c.elect_offline().iter().all(|ch| ch.partition != 0));
        // Broker 1, the last ISR member, returns: it leads again.
        c.live_brokers.insert(1, broker(1));
        let ch = c
            .elect_offline()
            .into_iter()
            .find(|ch| ch.partition == 0)
            .unwrap();
        assert_eq!(ch.state.leader, 1);
    }

    #[test]
    fn unclean_election_needs_the_topic_or_broker_to_allow_it() {
        let mut c = context();
        kill(&mut c, &[2, 3]);
        kill(&mut c, &[1]);
        c.live_brokers.insert(2, broker(2));
        c.topics
            .get_mut("orders")
            .unwrap()
            .config
            .insert("unclean.leader.election.enable".into(), "true".into());
        let ch = c
            .elect_offline()
            .into_iter()
            .find(|ch| ch.partition == 0)
            .unwrap();
        assert_eq!(ch.state.leader, 2);
        assert_eq!(ch.state.isr, vec![2]);
    }

    #[test]
    fn alter_partition_is_fenced_by_leader_and_partition_epochs() {
        let c = context();
        let ok = c.alter_partition("orders", 0, 1, 0, 0, &[1, 2]).unwrap();
        assert_eq!(ok.state.isr, vec![1, 2]);
        assert_eq!(
            ok.state.leader_epoch, 0,
            "an ISR change keeps the leader epoch"
        );
        assert_eq!(ok.state.partition_epoch, 1);
        assert_eq!(
            c.alter_partition("orders", 0, 2, 0, 0, &[1, 2]),
            Err(AlterPartitionError::NotLeader)
        );
        assert_eq!(
            c.alter_partition("orders", 0, 1, 5, 0, &[1, 2]),
            Err(AlterPartitionError::FencedLeaderEpoch)
        );
        assert_eq!(
            c.alter_partition("orders", 0, 1, 0, 3, &[1, 2]),
            Err(AlterPartitionError::InvalidUpdateVersion)
        );
        assert_eq!(
            c.alter_partition("orders", 0, 1, 0, 0, &[1, 9]),
            Err(AlterPartitionError::IneligibleReplica)
        );
        assert_eq!(
            c.alter_partition("nope", 0, 1, 0, 0, &[1]),
            Err(AlterPartitionError::UnknownTopicOrPartition)
        );
    }

    #[test]
    fn preferred_election_returns_leadership_to_the_first_replica() {
        let mut c = context();
        kill(&mut c, &[1]);
        c.live_brokers.insert(1, broker(1));
        // Broker 1 is back but not yet in the ISR: no move.
        assert!(c.preferred_elections(None).is_empty());
        let rejoin = c.alter_partition("orders", 0, 2, 1, 1, &[2, 3, 1]).unwrap();
        c.apply(&rejoin);
        let moves = c.preferred_elections(None);
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].state.leader, 1);
        assert_eq!(moves[0].state.leader_epoch, 2);
    }

    #[test]
    fn controlled_shutdown_moves_every_leadership_off_the_broker() {
        let mut c = context();
        for ch in c.controlled_shutdown(1) {
            c.apply(&ch);
        }
        assert_eq!(c.partitions_led_by(1), 0);
        assert!(c.states.values().all(|s| !s.isr.contains(&1)));
    }

    #[test]
    fn partition_metadata_lists_offline_replicas() {
        let mut c = context();
        kill(&mut c, &[3]);
        let m = c.partition_metadata("orders", 0).unwrap();
        assert_eq!(m.offline_replicas, vec![3]);
        assert_eq!(m.replicas, vec![1, 2, 3]);
        assert_eq!(c.live_replicas("orders", 0), vec![1, 2]);
        assert_eq!(c.partitions_on(3).len(), 3);
    }
}
