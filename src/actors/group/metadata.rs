//! One consumer group's state, as Kafka's `GroupMetadata` and `MemberMetadata` keep it:
//! the state machine (Empty → PreparingRebalance → CompletingRebalance → Stable, and Dead),
//! members with their supported protocols, static members (`group.instance.id` → member
//! id), KIP-394 pending members, the generation, the selected protocol and leader, and the
//! committed offsets with the commits still in flight.
//!
//! Plain data with explicit transitions; the [`super::coordinator`] actor drives it and owns
//! timers and storage. Members hold the reply channels of their parked JoinGroup and
//! SyncGroup requests, so a rebalance answers them when it completes without ever blocking.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

/// The partitions a consumer-protocol assignment (a SyncGroup answer's bytes, as
/// `DescribeGroups` reports it) gives, by topic; `None` when the bytes are not one (another
/// protocol type, or a member not yet assigned).
pub fn consumer_assignment(bytes: &Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    use bytes::Buf;
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::protocol::Decodable;
    if bytes.len() < 2 {
        return None;
    }
    let mut buf = bytes.clone();
    let version = buf.get_i16();
    let a = ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)).ok()?;
    Some(
        a.assigned_partitions
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect(),
    )
}

/// A group's place in the classic rebalance protocol (Kafka's `GroupState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; the group may still hold offsets (also the state of groups that only
    /// commit offsets). A new member's JoinGroup moves it to `PreparingRebalance`.
    Empty,
    /// Waiting for every known member to (re)join, or for the rebalance timeout.
    PreparingRebalance,
    /// Joined; waiting for the leader's SyncGroup with the assignment.
    CompletingRebalance,
    /// Assignment distributed; members heartbeat.
    Stable,
    /// Removed (deleted, expired or its partition unloaded); about to leave the cache.
    Dead,
}

impl GroupState {
    /// Kafka's `validPreviousStates`: the only legal transitions.
    fn valid_previous_states(self) -> &'static [GroupState] {
        use GroupState::*;
        match self {
            PreparingRebalance => &[Stable, CompletingRebalance, Empty],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Stable, PreparingRebalance, CompletingRebalance, Empty, Dead],
            Empty => &[PreparingRebalance],
        }
    }

    /// The name Kafka puts on the wire (DescribeGroups, ListGroups).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A partition of some topic, as offsets are committed for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// A committed offset (Kafka's `OffsetAndMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub offset: i64,
    /// Leader epoch of the record at `offset`, so a consumer can detect truncation (KIP-320).
    pub leader_epoch: Option<i32>,
    pub metadata: String,
    /// Wall-clock ms of the commit: retention of active groups counts from it.
    pub commit_timestamp: i64,
    /// Explicit expiry requested by OffsetCommit v1–v4 (`retention_time_ms`); overrides the
    /// broker's retention when set.
    pub expire_timestamp: Option<i64>,
}

/// A committed offset together with the order of the append that stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Position of the commit's append among this coordinator's appends (log order): a
    /// completion that arrives late must not overwrite a newer commit.
    pub seq: u64,
    pub value: OffsetAndMetadata,
}

/// A member as listed to the group leader in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// The member's metadata for the selected protocol (its subscription).
    pub metadata: Bytes,
}

/// What a JoinGroup request gets back (Kafka's `JoinGroupResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResult {
    /// Non-empty only for the leader: everyone's metadata, to compute the assignment.
    pub members: Vec<JoinedMember>,
    pub member_id: String,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: String,
    /// JoinGroup v9: tells a static leader that rejoined a stable group not to reassign.
    pub skip_assignment: bool,
    pub error: Option<ResponseError>,
}

impl JoinGroupResult {
    pub fn error(member_id: impl Into<String>, error: ResponseError) -> Self {
        JoinGroupResult {
            members: Vec::new(),
            member_id: member_id.into(),
            generation_id: NO_GENERATION,
            protocol_type: None,
            protocol_name: None,
            leader_id: String::new(),
            skip_assignment: false,
            error: Some(error),
        }
    }
}

/// What a SyncGroup request gets back (Kafka's `SyncGroupResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResult {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
    pub error: Option<ResponseError>,
}

impl SyncGroupResult {
    pub fn error(error: ResponseError) -> Self {
        SyncGroupResult {
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
            error: Some(error),
        }
    }
}

/// Generation of a group that has none (Kafka's `NoGeneration`).
pub const NO_GENERATION: i32 = -1;

/// One member of a group (Kafka's `MemberMetadata`).
#[derive(Debug)]
pub struct MemberMetadata {
    pub member_id: String,
    /// Set for static members (KIP-345): survives restarts of the client process.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (protocol name, metadata) in the member's order of preference.
    pub supported_protocols: Vec<(String, Bytes)>,
    /// This member's share of the leader's assignment for the current generation.
    pub assignment: Bytes,
    /// The parked JoinGroup reply while the member waits for the rebalance to complete.
    pub awaiting_join: Option<oneshot::Sender<JoinGroupResult>>,
    /// The parked SyncGroup reply while the member waits for the leader's assignment.
    pub awaiting_sync: Option<oneshot::Sender<SyncGroupResult>>,
    /// A member that joined but has not completed a rebalance yet: it cannot heartbeat, so
    /// its expiry is the new-member join timeout and waiting does not count as liveness.
    pub is_new: bool,
}

impl MemberMetadata {
    pub fn is_static(&self) -> bool {
        self.group_instance_id.is_some()
    }
    pub fn is_awaiting_join(&self) -> bool {
        self.awaiting_join.is_some()
    }
    pub fn is_awaiting_sync(&self) -> bool {
        self.awaiting_sync.is_some()
    }

    /// The metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.supported_protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m)
    }

    /// Same protocols, same order, same metadata bytes (Kafka's `matches`).
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.supported_protocols.as_slice() == protocols
    }

    /// The member's most preferred protocol among `candidates` (Kafka's `vote`).
    pub fn vote(&self, candidates: &HashSet<String>) -> Option<&str> {
        self.supported_protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| candidates.contains(*name))
    }

    /// Whether the member has shown liveness since its session deadline was set: members
    /// parked in JoinGroup or SyncGroup are alive by definition, except new members, which
    /// are bounded by the new-member join timeout instead (Kafka's `hasSatisfiedHeartbeat`,
    /// with the heartbeat itself handled by rescheduling the deadline).
    pub fn is_alive_while_waiting(&self) -> bool {
        !self.is_new && (self.is_awaiting_join() || self.is_awaiting_sync())
    }
}

/// How the current PreparingRebalance phase ends (Kafka's `DelayedJoin` and
/// `InitialDelayedJoin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayedJoin {
    /// Completes as soon as every known member has rejoined, or at the rebalance timeout.
    Rebalance,
    /// An empty group's first rebalance waits `delay_ms`, then again (up to
    /// `group.initial.rebalance.delay.ms` each time) while new members keep arriving and
    /// `remaining_ms` of the rebalance timeout is left (KIP-134).
    Initial {
        configured_delay_ms: i32,
        delay_ms: i32,
        remaining_ms: i32,
    },
}

/// One group (Kafka's `GroupMetadata`).
#[derive(Debug)]
pub struct GroupMetadata {
    pub group_id: String,
    /// Distinguishes this group object from a later one with the same id (after a delete),
    /// so a late storage completion never touches the wrong incarnation.
    pub incarnation: u64,
    state: GroupState,
    /// Wall-clock ms of the last state change; offsets of an Empty group expire relative to it.
    pub current_state_timestamp: Option<i64>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    leader_id: Option<String>,
    /// Members by id, in join order: the first member becomes leader, and a replacement
    /// leader is picked deterministically.
    members: IndexMap<String, MemberMetadata>,
    /// `group.instance.id` → current member id of each static member.
    static_members: HashMap<String, String>,
    /// KIP-394: ids handed out with MEMBER_ID_REQUIRED that have not joined yet; a rebalance
    /// waits for them.
    pending_members: HashSet<String>,
    /// How many members support each protocol; a protocol is a candidate when all do.
    supported_protocols: HashMap<String, usize>,
    /// Committed offsets, as of the last durable append.
    offsets: HashMap<TopicPartition, CommittedOffset>,
    /// Partitions with a commit appended but not yet durable → seq of the latest such commit.
    pending_offset_commits: HashMap<TopicPartition, u64>,
    /// Members that have not sent SyncGroup in this generation; they are removed if the
    /// rebalance timeout passes first.
    pending_sync_members: HashSet<String>,
    /// Topics the members subscribe to, when the protocol type is `consumer` and their
    /// metadata parses; guards OffsetDelete and offset expiry of active groups.
    subscribed_topics: Option<HashSet<String>>,
    /// A member joined during the initial delay, so it may be extended.
    pub new_member_added: bool,
    /// The pending end of the PreparingRebalance phase, if any.
    pub delayed_join: Option<DelayedJoin>,
}

/// Kafka's `ConsumerProtocol.PROTOCOL_TYPE`.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

impl GroupMetadata {
    pub fn new(group_id: impl Into<String>, incarnation: u64, now_ms: i64) -> Self {
        GroupMetadata {
            group_id: group_id.into(),
            incarnation,
            state: GroupState::Empty,
            current_state_timestamp: Some(now_ms),
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: HashSet::new(),
            supported_protocols: HashMap::new(),
            offsets: HashMap::new(),
            pending_offset_commits: HashMap::new(),
            pending_sync_members: HashSet::new(),
            subscribed_topics: None,
            new_member_added: false,
            delayed_join: None,
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }
    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }
    pub fn has(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }
    pub fn get(&self, member_id: &str) -> Option<&MemberMetadata> {
        self.members.get(member_id)
    }
    pub fn get_mut(&mut self, member_id: &str) -> Option<&mut MemberMetadata> {
        self.members.get_mut(member_id)
    }
    pub fn size(&self) -> usize {
        self.members.len()
    }
    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }
    pub fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }
    pub fn leader_or_empty(&self) -> String {
        self.leader_id.clone().unwrap_or_default()
    }
    pub fn is_consumer_group(&self) -> bool {
        self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
    }
    pub fn members(&self) -> impl Iterator<Item = &MemberMetadata> {
        self.members.values()
    }
    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// Whether the state machine allows moving to `target` from the current state.
    pub fn can_transition_to(&self, target: GroupState) -> bool {
        target.valid_previous_states().contains(&self.state)
    }

    /// Kafka's `transitionTo`. An illegal transition is a coordinator bug: it is logged
    /// (and fails this crate's unit tests) but applied, so a running broker keeps serving
    /// instead of losing the actor to a panic.
    pub fn transition_to(&mut self, target: GroupState, now_ms: i64) {
        if !self.can_transition_to(target) {
            tracing::error!(
                group = %self.group_id,
                from = self.state.as_str(),
                to = target.as_str(),
                "illegal group state transition"
            );
            if cfg!(test) {
                panic!("illegal transition {:?} -> {:?}", self.state, target);
            }
        }
        self.state = target;
        self.current_state_timestamp = Some(now_ms);
    }

    /// Restores the state of a group read back from `__consumer_offsets`.
    pub fn set_loaded_state(&mut self, state: GroupState, current_state_timestamp: Option<i64>) {
        self.state = state;
        self.current_state_timestamp = current_state_timestamp;
    }

    pub fn set_leader(&mut self, leader: Option<String>) {
        self.leader_id = leader;
    }

    /// Kafka's `canRebalance`.
    pub fn can_rebalance(&self) -> bool {
        self.can_transition_to(GroupState::PreparingRebalance)
    }

    /// Adds a member (Kafka's `add`), parking its JoinGroup reply if given.
    pub fn add(
        &mut self,
        member: MemberMetadata,
        awaiting_join: Option<oneshot::Sender<JoinGroupResult>>,
    ) {
        if let Some(instance_id) = &member.group_instance_id {
            self.static_members
                .insert(instance_id.clone(), member.member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        for (name, _) in &member.supported_protocols {
            *self.supported_protocols.entry(name.clone()).or_default() += 1;
        }
        self.pending_members.remove(&member.member_id);
        let member_id = member.member_id.clone();
        self.members.insert(member_id.clone(), member);
        if let Some(m) = self.members.get_mut(&member_id) {
            m.awaiting_join = awaiting_join;
        }
    }

    /// Removes a member (Kafka's `remove`); a removed leader is replaced by the first
    /// remaining member.
    pub fn remove(&mut self, member_id: &str) -> Option<MemberMetadata> {
        let removed = self.members.shift_remove(member_id);
        if let Some(member) = &removed {
            self.dec_supported_protocols(&member.supported_protocols);
            if let Some(instance_id) = &member.group_instance_id {
                self.static_members.remove(instance_id);
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_members.remove(member_id);
        self.pending_sync_members.remove(member_id);
        removed
    }

    fn dec_supported_protocols(&mut self, protocols: &[(String, Bytes)]) {
        for (name, _) in protocols {
            if let Some(n) = self.supported_protocols.get_mut(name) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.supported_protocols.remove(name);
                }
            }
        }
    }

    /// Kafka's `maybeElectNewJoinedLeader`: keeps the leader if it rejoined, else picks a
    /// member that did; false when the group has no leader or nobody rejoined.
    pub fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(current) = self.leader_id.clone() else {
            return false;
        };
        let leader_joined = self
            .members
            .get(&current)
            .is_some_and(|m| m.is_awaiting_join());
        if leader_joined {
            return true;
        }
        match self
            .members
            .values()
            .find(|m| m.is_awaiting_join())
            .map(|m| m.member_id.clone())
        {
            Some(new_leader) => {
                tracing::info!(group = %self.group_id, old = %current, new = %new_leader,
                    "group leader failed to rejoin before the rebalance timeout; elected a new leader");
                self.leader_id = Some(new_leader);
                true
            }
            None => false,
        }
    }

    /// Static membership: gives the member of `group_instance_id` a new member id, fencing
    /// the old id's parked requests with FENCED_INSTANCE_ID (Kafka's `replaceStaticMember`).
    /// Returns false if `old_member_id` is not a member.
    pub fn replace_static_member(
        &mut self,
        group_instance_id: &str,
        old_member_id: &str,
        new_member_id: &str,
    ) -> bool {
        let Some(mut member) = self.members.shift_remove(old_member_id) else {
            return false;
        };
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinGroupResult::error(
                old_member_id,
                ResponseError::FencedInstanceId,
            ));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(SyncGroupResult::error(ResponseError::FencedInstanceId));
        }
        member.member_id = new_member_id.to_string();
        self.members.insert(new_member_id.to_string(), member);
        if self.is_leader(old_member_id) {
            self.leader_id = Some(new_member_id.to_string());
        }
        self.static_members
            .insert(group_instance_id.to_string(), new_member_id.to_string());
        true
    }

    pub fn is_pending_member(&self, member_id: &str) -> bool {
        self.pending_members.contains(member_id)
    }
    pub fn add_pending_member(&mut self, member_id: &str) {
        self.pending_members.insert(member_id.to_string());
    }
    pub fn add_pending_sync_member(&mut self, member_id: &str) {
        if self.has(member_id) {
            self.pending_sync_members.insert(member_id.to_string());
        }
    }
    pub fn remove_pending_sync_member(&mut self, member_id: &str) {
        self.pending_sync_members.remove(member_id);
    }
    pub fn has_received_sync_from_all_members(&self) -> bool {
        self.pending_sync_members.is_empty()
    }
    pub fn pending_sync_members(&self) -> Vec<String> {
        self.pending_sync_members.iter().cloned().collect()
    }
    pub fn clear_pending_sync_members(&mut self) {
        self.pending_sync_members.clear();
    }

    pub fn current_static_member_id(&self, group_instance_id: &str) -> Option<&str> {
        self.static_members
            .get(group_instance_id)
            .map(|s| s.as_str())
    }

    /// Members that did not rejoin during this PreparingRebalance phase.
    pub fn not_yet_rejoined_members(&self) -> Vec<(String, bool)> {
        self.members
            .values()
            .filter(|m| !m.is_awaiting_join())
            .map(|m| (m.member_id.clone(), m.is_static()))
            .collect()
    }

    /// Every member has rejoined and no KIP-394 pending member is still expected.
    pub fn has_all_members_joined(&self) -> bool {
        self.members.values().all(|m| m.is_awaiting_join()) && self.pending_members.is_empty()
    }

    pub fn num_awaiting_join(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.is_awaiting_join())
            .count()
    }

    /// The group's rebalance timeout: the largest of its members'.
    pub fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// `client_id-uuid`, or `group_instance_id-uuid` for a static member (Kafka's
    /// `generateMemberId`).
    pub fn generate_member_id(client_id: &str, group_instance_id: Option<&str>) -> String {
        let prefix = group_instance_id.unwrap_or(client_id);
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    /// Kafka's `isStaticMemberFenced`.
    pub fn is_static_member_fenced(&self, group_instance_id: &str, member_id: &str) -> bool {
        self.current_static_member_id(group_instance_id)
            .is_some_and(|current| current != member_id)
    }

    fn candidate_protocols(&self) -> HashSet<String> {
        let n = self.members.len();
        self.supported_protocols
            .iter()
            .filter(|(_, count)| **count == n)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Kafka's `selectProtocol`: among the protocols every member supports, each member
    /// votes for its most preferred; the one with the most votes wins. Ties go to the
    /// protocol voted by the earliest member, which keeps the choice deterministic (Kafka's
    /// tie-break depends on hash order). None for an empty group.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        for member in self.members.values() {
            if let Some(p) = member.vote(&candidates) {
                *votes.entry(p).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (p, n) in votes {
            if best.is_none_or(|(_, b)| n > b) {
                best = Some((p, n));
            }
        }
        best.map(|(p, _)| p.to_string())
    }

    /// Kafka's `supportsProtocols`: an Empty group accepts any non-empty type and protocol
    /// list; otherwise the type must match and one protocol must be supported by everyone.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.is(GroupState::Empty) {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols.iter().any(|(name, _)| {
                    self.supported_protocols.get(name).copied().unwrap_or(0) == self.members.len()
                })
        }
    }

    /// Replaces a member's protocols and parks (or clears) its JoinGroup reply (Kafka's
    /// `updateMember`). A reply that was already parked is answered REBALANCE_IN_PROGRESS
    /// so the superseded request is not left hanging.
    pub fn update_member(
        &mut self,
        member_id: &str,
        protocols: Vec<(String, Bytes)>,
        rebalance_timeout_ms: Option<i32>,
        session_timeout_ms: Option<i32>,
        awaiting_join: Option<oneshot::Sender<JoinGroupResult>>,
    ) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        let old = std::mem::replace(&mut member.supported_protocols, protocols);
        if let Some(t) = rebalance_timeout_ms {
            member.rebalance_timeout_ms = t;
        }
        if let Some(t) = session_timeout_ms {
            member.session_timeout_ms = t;
        }
        if let Some(previous) = member.awaiting_join.take() {
            if awaiting_join.is_some() {
                let _ = previous.send(JoinGroupResult::error(
                    member_id,
                    ResponseError::RebalanceInProgress,
                ));
            } else {
                member.awaiting_join = Some(previous);
            }
        }
        if awaiting_join.is_some() {
            member.awaiting_join = awaiting_join;
        }
        let new: Vec<String> = member
            .supported_protocols
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        self.dec_supported_protocols(&old);
        for name in new {
            *self.supported_protocols.entry(name).or_default() += 1;
        }
    }

    /// Takes the parked JoinGroup reply of `member_id` out of the member, if any.
    pub fn take_join_callback(
        &mut self,
        member_id: &str,
    ) -> Option<oneshot::Sender<JoinGroupResult>> {
        self.members.get_mut(member_id)?.awaiting_join.take()
    }

    /// Answers the member's parked JoinGroup, if any (Kafka's `maybeInvokeJoinCallback`).
    pub fn maybe_invoke_join_callback(&mut self, member_id: &str, result: JoinGroupResult) -> bool {
        match self.take_join_callback(member_id) {
            Some(tx) => {
                let _ = tx.send(result);
                true
            }
            None => false,
        }
    }

    /// Answers the member's parked SyncGroup, if any (Kafka's `maybeInvokeSyncCallback`).
    pub fn maybe_invoke_sync_callback(&mut self, member_id: &str, result: SyncGroupResult) -> bool {
        match self
            .members
            .get_mut(member_id)
            .and_then(|m| m.awaiting_sync.take())
        {
            Some(tx) => {
                let _ = tx.send(result);
                true
            }
            None => false,
        }
    }

    /// Kafka's `initNextGeneration`: bumps the generation, selects the protocol and moves to
    /// CompletingRebalance, or to Empty when nobody is left.
    pub fn init_next_generation(&mut self, now_ms: i64) {
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition_to(GroupState::Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition_to(GroupState::CompletingRebalance, now_ms);
        }
        self.clear_pending_sync_members();
    }

    /// The member list handed to the leader (Kafka's `currentMemberMetadata`).
    pub fn current_member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// Recomputes the subscribed topics (after loading a group from the log).
    pub fn refresh_subscribed_topics(&mut self) {
        self.subscribed_topics = self.compute_subscribed_topics();
    }

    /// Kafka's `computeSubscribedTopics`: the union of the members' subscriptions when the
    /// protocol type is `consumer` and every member's metadata parses as the consumer
    /// protocol's v0 prefix; None when unknown.
    fn compute_subscribed_topics(&self) -> Option<HashSet<String>> {
        if !self.is_consumer_group() {
            return None;
        }
        if self.members.is_empty() {
            return Some(HashSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            let metadata = m.metadata(protocol)?;
            match parse_consumer_subscription_topics(metadata) {
                Some(t) => topics.extend(t),
                None => {
                    tracing::warn!(group = %self.group_id,
                        "failed to parse the consumer protocol subscription; subscribed topics unknown");
                    return None;
                }
            }
        }
        Some(topics)
    }

    /// Kafka's `isSubscribedToTopic`: true when unknown, to be safe.
    pub fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            None => true,
        }
    }

    // ---- offsets ----

    pub fn offset(&self, tp: &TopicPartition) -> Option<&OffsetAndMetadata> {
        self.offsets.get(tp).map(|c| &c.value)
    }
    pub fn all_offsets(&self) -> impl Iterator<Item = (&TopicPartition, &OffsetAndMetadata)> {
        self.offsets.iter().map(|(tp, c)| (tp, &c.value))
    }
    pub fn num_offsets(&self) -> usize {
        self.offsets.len()
    }
    /// Offsets, in-flight commits included (Kafka's `hasOffsets`).
    pub fn has_offsets(&self) -> bool {
        !self.offsets.is_empty() || !self.pending_offset_commits.is_empty()
    }
    pub fn has_pending_offset_commit(&self, tp: &TopicPartition) -> bool {
        self.pending_offset_commits.contains_key(tp)
    }

    /// Records replayed from the log.
    pub fn initialize_offsets(
        &mut self,
        offsets: impl IntoIterator<Item = (TopicPartition, CommittedOffset)>,
    ) {
        self.offsets.extend(offsets);
    }

    /// A commit was handed to the log with append order `seq` (Kafka's `prepareOffsetCommit`).
    pub fn prepare_offset_commit(
        &mut self,
        tps: impl IntoIterator<Item = TopicPartition>,
        seq: u64,
    ) {
        for tp in tps {
            self.pending_offset_commits.insert(tp, seq);
        }
    }

    /// The commit with append order `seq` is durable (Kafka's `onOffsetCommitAppend`). It is
    /// applied only if the partition still expects a commit (a delete in between wins) and
    /// nothing newer is already applied.
    pub fn on_offset_commit_append(
        &mut self,
        tp: &TopicPartition,
        seq: u64,
        value: OffsetAndMetadata,
    ) {
        if self.pending_offset_commits.contains_key(tp) {
            let newer = self.offsets.get(tp).is_none_or(|c| c.seq < seq);
            if newer {
                self.offsets
                    .insert(tp.clone(), CommittedOffset { seq, value });
            }
        }
        if self.pending_offset_commits.get(tp) == Some(&seq) {
            self.pending_offset_commits.remove(tp);
        }
    }

    /// The commit with append order `seq` failed (Kafka's `failPendingOffsetWrite`).
    pub fn fail_pending_offset_write(&mut self, tp: &TopicPartition, seq: u64) {
        if self.pending_offset_commits.get(tp) == Some(&seq) {
            self.pending_offset_commits.remove(tp);
        }
    }

    /// Drops the given offsets and any commit in flight for them; returns those that existed.
    pub fn remove_offsets(&mut self, tps: &[TopicPartition]) -> Vec<TopicPartition> {
        let mut removed = Vec::new();
        for tp in tps {
            self.pending_offset_commits.remove(tp);
            if self.offsets.remove(tp).is_some() {
                removed.push(tp.clone());
            }
        }
        removed
    }

    pub fn remove_all_offsets(&mut self) -> Vec<TopicPartition> {
        let tps: Vec<TopicPartition> = self.offsets.keys().cloned().collect();
        self.remove_offsets(&tps)
    }

    /// Kafka's `removeExpiredOffsets`. Which offsets can expire depends on the group:
    /// - Empty group with a protocol type: all, `retention_ms` after the group became Empty
    ///   (or after the commit, when that time is unknown);
    /// - Stable consumer group with known subscriptions: offsets of topics nobody subscribes
    ///   to, `retention_ms` after their commit;
    /// - group without protocol type (only commits offsets): `retention_ms` after the commit;
    /// - otherwise none.
    ///
    /// An explicit `expire_timestamp` (old commit versions) overrides, and commits in flight
    /// never expire.
    pub fn remove_expired_offsets(
        &mut self,
        now_ms: i64,
        retention_ms: i64,
    ) -> Vec<TopicPartition> {
        enum Base {
            StateTimestampOrCommit,
            Commit,
        }
        let (base, exempt): (Base, Option<&HashSet<String>>) = match &self.protocol_type {
            Some(_) if self.is(GroupState::Empty) => (Base::StateTimestampOrCommit, None),
            Some(t) if t == CONSUMER_PROTOCOL_TYPE && self.is(GroupState::Stable) => {
                match &self.subscribed_topics {
                    Some(topics) => (Base::Commit, Some(topics)),
                    None => return Vec::new(),
                }
            }
            None => (Base::Commit, None),
            _ => return Vec::new(),
        };
        let state_ts = self.current_state_timestamp;
        let expired: Vec<TopicPartition> = self
            .offsets
            .iter()
            .filter(|(tp, c)| {
                if exempt.is_some_and(|topics| topics.contains(&tp.topic)) {
                    return false;
                }
                if self.pending_offset_commits.contains_key(*tp) {
                    return false;
                }
                match c.value.expire_timestamp {
                    Some(expire) => now_ms >= expire,
                    None => {
                        let base_ts = match base {
                            Base::StateTimestampOrCommit => {
                                state_ts.unwrap_or(c.value.commit_timestamp)
                            }
                            Base::Commit => c.value.commit_timestamp,
                        };
                        now_ms - base_ts >= retention_ms
                    }
                }
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in &expired {
            self.offsets.remove(tp);
        }
        expired
    }
}

/// Reads the topic list of a consumer protocol subscription through its version-0 prefix
/// (`version: int16, topics: [string], user_data: nullable bytes`), which every version
/// starts with; None if it does not parse (Kafka's `ConsumerProtocol.deserializeSubscription`
/// at version 0).
pub fn parse_consumer_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut pos = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let end = pos.checked_add(n)?;
        let s = metadata.get(pos..end)?;
        pos = end;
        Some(s)
    };
    let version = i16::from_be_bytes(take(2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    if count < 0 {
        return None;
    }
    let mut topics = Vec::new();
    for _ in 0..count {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        if len < 0 {
            return None;
        }
        let name = std::str::from_utf8(take(len as usize)?).ok()?;
        topics.push(name.to_string());
    }
    let user_data_len = i32::from_be_bytes(take(4)?.try_into().ok()?);
    if user_data_len >= 0 {
        take(user_data_len as usize)?;
    } else if user_data_len != -1 {
        return None;
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[(&str, &[u8])]) -> MemberMetadata {
        MemberMetadata {
            member_id: id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            rebalance_timeout_ms: 100,
            session_timeout_ms: 100,
            protocol_type: "consumer".into(),
            supported_protocols: protocols
                .iter()
                .map(|(n, m)| (n.to_string(), Bytes::copy_from_slice(m)))
                .collect(),
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
        }
    }

    /// Consumer protocol subscription v0 with the given topics and null user data.
    pub(crate) fn subscription(topics: &[&str]) -> Bytes {
        let mut b = vec![0u8, 0];
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for t in topics {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        b.extend_from_slice(&(-1i32).to_be_bytes());
        Bytes::from(b)
    }

    #[test]
    fn protocol_with_most_votes_among_common_protocols_is_selected() {
        let mut g = GroupMetadata::new("g", 0, 0);
        g.add(member("a", &[("roundrobin", b""), ("range", b"")]), None);
        g.add(member("b", &[("range", b""), ("roundrobin", b"")]), None);
        g.add(member("c", &[("range", b""), ("sticky", b"")]), None);
        // roundrobin is not supported by c, so only range is a candidate.
        assert_eq!(g.select_protocol().as_deref(), Some("range"));
        g.remove("c");
        // a votes roundrobin, b votes range: a tie, broken by the earliest member.
        assert_eq!(g.select_protocol().as_deref(), Some("roundrobin"));
        g.add(member("d", &[("range", b""), ("roundrobin", b"")]), None);
        assert_eq!(g.select_protocol().as_deref(), Some("range"));
    }

    #[test]
    fn non_empty_group_rejects_member_without_a_common_protocol() {
        let mut g = GroupMetadata::new("g", 0, 0);
        let protocols = vec![("range".to_string(), Bytes::new())];
        assert!(g.supports_protocols("consumer", &protocols));
        assert!(!g.supports_protocols("", &protocols));
        assert!(!g.supports_protocols("consumer", &[]));
        g.add(member("a", &[("range", b"")]), None);
        g.transition_to(GroupState::PreparingRebalance, 1);
        assert!(g.supports_protocols("consumer", &protocols));
        assert!(!g.supports_protocols("connect", &protocols));
        assert!(!g.supports_protocols("consumer", &[("sticky".to_string(), Bytes::new())]));
    }

    #[test]
    fn state_machine_allows_only_kafkas_transitions() {
        let mut g = GroupMetadata::new("g", 0, 0);
        assert!(g.can_transition_to(GroupState::PreparingRebalance));
        assert!(!g.can_transition_to(GroupState::Stable));
        assert!(!g.can_transition_to(GroupState::CompletingRebalance));
        g.transition_to(GroupState::PreparingRebalance, 1);
        assert!(!g.can_rebalance());
        assert!(g.can_transition_to(GroupState::CompletingRebalance));
        assert!(g.can_transition_to(GroupState::Empty));
        g.transition_to(GroupState::CompletingRebalance, 2);
        assert!(g.can_rebalance());
        assert!(!g.can_transition_to(GroupState::Empty));
        g.transition_to(GroupState::Stable, 3);
        assert!(g.can_rebalance());
        assert!(g.can_transition_to(GroupState::Dead));
        assert_eq!(g.current_state_timestamp, Some(3));
    }

    #[test]
    fn removing_the_leader_promotes_the_next_member() {
        let mut g = GroupMetadata::new("g", 0, 0);
        g.add(member("a", &[("range", b"")]), None);
        g.add(member("b", &[("range", b"")]), None);
        assert!(g.is_leader("a"));
        g.remove("a");
        assert!(g.is_leader("b"));
        g.remove("b");
        assert_eq!(g.leader_id(), None);
    }

    #[test]
    fn replacing_a_static_member_fences_its_parked_requests() {
        let mut g = GroupMetadata::new("g", 0, 0);
        let mut m = member("old", &[("range", b"")]);
        m.group_instance_id = Some("i".into());
        let (tx, mut rx) = oneshot::channel();
        g.add(m, Some(tx));
        assert!(g.replace_static_member("i", "old", "new"));
        assert_eq!(
            rx.try_recv().unwrap().error,
            Some(ResponseError::FencedInstanceId)
        );
        assert!(g.has("new") && !g.has("old"));
        assert!(g.is_leader("new"));
        assert_eq!(g.current_static_member_id("i"), Some("new"));
        assert!(g.is_static_member_fenced("i", "old"));
    }

    #[test]
    fn late_commit_completion_does_not_overwrite_a_newer_offset() {
        let mut g = GroupMetadata::new("g", 0, 0);
        let tp = TopicPartition::new("t", 0);
        let v = |o| OffsetAndMetadata {
            offset: o,
            leader_epoch: None,
            metadata: String::new(),
            commit_timestamp: 0,
            expire_timestamp: None,
        };
        g.prepare_offset_commit([tp.clone()], 1);
        g.prepare_offset_commit([tp.clone()], 2);
        g.on_offset_commit_append(&tp, 2, v(20));
        assert!(!g.has_pending_offset_commit(&tp));
        // The older append completing afterwards must not win.
        g.on_offset_commit_append(&tp, 1, v(10));
        assert_eq!(g.offset(&tp).map(|o| o.offset), Some(20));
    }

    #[test]
    fn delete_during_commit_in_flight_wins() {
        let mut g = GroupMetadata::new("g", 0, 0);
        let tp = TopicPartition::new("t", 0);
        g.prepare_offset_commit([tp.clone()], 1);
        g.remove_offsets(std::slice::from_ref(&tp));
        g.on_offset_commit_append(
            &tp,
            1,
            OffsetAndMetadata {
                offset: 5,
                leader_epoch: None,
                metadata: String::new(),
                commit_timestamp: 0,
                expire_timestamp: None,
            },
        );
        assert_eq!(g.offset(&tp), None);
    }

    #[test]
    fn consumer_subscription_prefix_parses_topics() {
        let s = subscription(&["a", "bb"]);
        assert_eq!(
            parse_consumer_subscription_topics(&s),
            Some(vec!["a".to_string(), "bb".to_string()])
        );
        // Later versions append fields after the v0 prefix; they are ignored.
        let mut v3 = s.to_vec();
        v3[1] = 3;
        v3.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(parse_consumer_subscription_topics(&v3).is_some());
        assert_eq!(parse_consumer_subscription_topics(b"\x00"), None);
        assert_eq!(
            parse_consumer_subscription_topics(b"\xff\xff\x00\x00\x00\x00"),
            None
        );
        assert_eq!(
            parse_consumer_subscription_topics(b"\x00\x00\x7f\xff\xff\xff"),
            None
        );
    }

    #[test]
    fn empty_group_offsets_expire_relative_to_when_it_became_empty() {
        let mut g = GroupMetadata::new("g", 0, 0);
        g.protocol_type = Some("consumer".into());
        g.set_loaded_state(GroupState::Empty, Some(1_000));
        let tp = TopicPartition::new("t", 0);
        g.initialize_offsets([(
            tp.clone(),
            CommittedOffset {
                seq: 0,
                value: OffsetAndMetadata {
                    offset: 1,
                    leader_epoch: None,
                    metadata: String::new(),
                    commit_timestamp: 0,
                    expire_timestamp: None,
                },
            },
        )]);
        assert!(g.remove_expired_offsets(1_500, 1_000).is_empty());
        assert_eq!(g.remove_expired_offsets(2_000, 1_000), vec![tp]);
        assert!(!g.has_offsets());
    }
}
