//! The group coordinator actor: one per `__consumer_offsets` partition this broker leads,
//! owning every group that hashes to that partition (Kafka's `GroupCoordinator` plus the
//! per-partition part of `GroupMetadataManager`).
//!
//! Messages are domain types (not kafka-protocol structs): [`super::api`] translates each
//! request version into them, so the rebalance logic is written once and tested without
//! wire details. JoinGroup and SyncGroup are answered when the rebalance gets there: the
//! reply channel is parked in the member ([`super::metadata::MemberMetadata`]) and the
//! handler returns a future, so the actor keeps serving while requests wait.
//!
//! Deadlines (member sessions, KIP-394 pending members, the rebalance and initial-delay
//! timeouts, the pending-sync timeout and the offset-expiry sweep) live in one ordered set
//! with one actix timer armed for the earliest; nothing polls.
//!
//! Every write (offset commits, group metadata after a rebalance, tombstones) goes through
//! the [`GroupStore`] and completes only when durable; the reply or state change happens in
//! the completion, and completions from an older load epoch or group incarnation are
//! ignored.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

use super::metadata::{
    CommittedOffset, DelayedJoin, GroupMetadata, GroupState, JoinGroupResult, MemberMetadata,
    OffsetAndMetadata, SyncGroupResult, TopicPartition,
};
use super::offsets_records::{
    GroupMetadataValue, MemberMetadataValue, OffsetCommitValue, RecordKey,
    GROUP_METADATA_VALUE_VERSION, OFFSET_COMMIT_VALUE_VERSION,
    OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY,
};
use super::partitioner::partition_for;
use super::store::{GroupStore, OffsetsRecord};
use super::{now_ms, GroupConfig};

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

/// JoinGroup (any version; [`super::api::join_group`] fills in version defaults).
#[derive(Debug, Clone, Message)]
#[rtype(result = "JoinGroupResult")]
pub struct JoinGroup {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// KIP-394 (JoinGroup v4+ without an instance id): a new member first gets an id with
    /// MEMBER_ID_REQUIRED and must join again with it.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a static leader rejoining a stable group is told to skip assignment.
    pub support_skipping_assignment: bool,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub reason: Option<String>,
}

/// SyncGroup: followers fetch their assignment, the leader also brings everyone's.
#[derive(Debug, Clone, Message)]
#[rtype(result = "SyncGroupResult")]
pub struct SyncGroup {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+: must match the group's, else INCONSISTENT_GROUP_PROTOCOL.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), ResponseError>")]
pub struct Heartbeat {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
}

/// One member leaving, by member id, or by instance id alone (admin removal of a static
/// member, member id empty).
#[derive(Debug, Clone)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "LeaveGroupResult")]
pub struct LeaveGroup {
    pub group_id: String,
    pub members: Vec<LeavingMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error: Option<ResponseError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupResult {
    pub error: Option<ResponseError>,
    pub members: Vec<LeftMember>,
}

/// OffsetCommit: `generation_id` −1 with an empty member id is a commit from outside group
/// management (simple consumers, admin tools).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<(TopicPartition, Option<ResponseError>)>")]
pub struct OffsetCommit {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    pub offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
}

/// OffsetFetch for one group; `partitions` None asks for all committed offsets.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<FetchedOffset>, ResponseError>")]
pub struct OffsetFetch {
    pub group_id: String,
    pub require_stable: bool,
    pub partitions: Option<Vec<TopicPartition>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub tp: TopicPartition,
    /// −1 when nothing is committed.
    pub offset: i64,
    pub leader_epoch: Option<i32>,
    pub metadata: String,
    pub error: Option<ResponseError>,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "ListGroupsResult")]
pub struct ListGroups {
    /// Kafka state names to keep (case-insensitive); empty keeps all.
    pub states: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOverview {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListGroupsResult {
    pub error: Option<ResponseError>,
    pub groups: Vec<GroupOverview>,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "DescribeGroupResult")]
pub struct DescribeGroup {
    pub group_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// Kafka's `GroupSummary`: `state` is "" when the coordinator could not answer and "Dead"
/// for an unknown group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeGroupResult {
    pub error: Option<ResponseError>,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
    /// Current generation, for tests and tools (not on the wire).
    pub generation_id: i32,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<(String, Option<ResponseError>)>")]
pub struct DeleteGroups {
    pub group_ids: Vec<String>,
}

/// OffsetDelete: the group-level error, or one result per partition.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<(TopicPartition, Option<ResponseError>)>, ResponseError>")]
pub struct OffsetDelete {
    pub group_id: String,
    pub partitions: Vec<TopicPartition>,
}

/// Take over the partition: replay its records, answering COORDINATOR_LOAD_IN_PROGRESS
/// meanwhile.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Load;

/// Give the partition up: parked requests get NOT_COORDINATOR, as does everything after.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Unload;

/// Where this coordinator is in taking over its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionStatus {
    /// Started, no Load yet.
    NotLoaded,
    Loading,
    Active,
    /// The store could not be read; requests get COORDINATOR_NOT_AVAILABLE until a new Load.
    LoadFailed,
    Unloaded,
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "PartitionStatus")]
pub struct GetStatus;

// ---------------------------------------------------------------------------------------
// Deadlines: one ordered set, one timer
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum DeadlineKey {
    /// A member's session (or, for a new member, its join timeout).
    MemberSession { group: String, member: String },
    /// A KIP-394 member id handed out but not yet used to join.
    PendingMember { group: String, member: String },
    /// End of the PreparingRebalance phase (rebalance timeout or initial delay).
    Rebalance { group: String },
    /// Members that have not sent SyncGroup by the rebalance timeout are removed.
    PendingSync { group: String },
    /// Periodic offset-retention sweep.
    OffsetsExpiration,
}

/// Deadlines ordered by time; `by_key` lets a deadline be moved or cancelled by its key.
#[derive(Default)]
struct Deadlines {
    /// (when, what): a `BTreeSet` so the earliest is first and equal instants cannot clash.
    by_time: BTreeSet<(Instant, DeadlineKey)>,
    by_key: HashMap<DeadlineKey, Instant>,
}

impl Deadlines {
    fn schedule(&mut self, key: DeadlineKey, at: Instant) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }
    fn cancel(&mut self, key: &DeadlineKey) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_time.remove(&(old, key.clone()));
        }
    }
    fn cancel_group(&mut self, group: &str) {
        let keys: Vec<DeadlineKey> = self
            .by_key
            .keys()
            .filter(|k| match k {
                DeadlineKey::MemberSession { group: g, .. }
                | DeadlineKey::PendingMember { group: g, .. }
                | DeadlineKey::Rebalance { group: g }
                | DeadlineKey::PendingSync { group: g } => g == group,
                DeadlineKey::OffsetsExpiration => false,
            })
            .cloned()
            .collect();
        for k in keys {
            self.cancel(&k);
        }
    }
    fn earliest(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }
    fn pop_due(&mut self, now: Instant) -> Vec<DeadlineKey> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_time.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.by_time.pop_first() {
                self.by_key.remove(&key);
                due.push(key);
            }
        }
        due
    }
    fn clear(&mut self) {
        self.by_time.clear();
        self.by_key.clear();
    }
}

// ---------------------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------------------

/// Which API a request belongs to, for Kafka's group id validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    JoinGroup,
    SyncGroup,
    Heartbeat,
    LeaveGroup,
    OffsetCommit,
    OffsetFetch,
    DescribeGroups,
    DeleteGroups,
    OffsetDelete,
}

impl Api {
    /// Kafka's `isValidGroupId`: offsets and admin APIs accept the empty group id for
    /// backwards compatibility; membership APIs need a real one.
    fn accepts_empty_group_id(self) -> bool {
        matches!(
            self,
            Api::OffsetCommit | Api::OffsetFetch | Api::DescribeGroups | Api::DeleteGroups
        )
    }
}

pub struct GroupCoordinator {
    /// The `__consumer_offsets` partition whose groups this actor owns.
    partition: i32,
    config: GroupConfig,
    store: Arc<dyn GroupStore>,
    status: PartitionStatus,
    /// Bumped by every Load and Unload; storage completions carry the epoch they started
    /// in and leave state alone when it has moved on.
    epoch: u64,
    groups: HashMap<String, GroupMetadata>,
    deadlines: Deadlines,
    /// The one timer, armed for `deadlines.earliest()`.
    timer: Option<(Instant, SpawnHandle)>,
    /// Append order of offset commits (replayed records first), standing in for the log
    /// offset Kafka compares to keep the newest commit.
    next_seq: u64,
    /// Source of `GroupMetadata::incarnation`.
    next_incarnation: u64,
}

impl GroupCoordinator {
    pub fn new(partition: i32, config: GroupConfig, store: Arc<dyn GroupStore>) -> Self {
        GroupCoordinator {
            partition,
            config,
            store,
            status: PartitionStatus::NotLoaded,
            epoch: 0,
            groups: HashMap::new(),
            deadlines: Deadlines::default(),
            timer: None,
            next_seq: 0,
            next_incarnation: 0,
        }
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    fn new_group(&mut self, group_id: &str) -> GroupMetadata {
        self.next_incarnation += 1;
        GroupMetadata::new(group_id, self.next_incarnation, now_ms())
    }

    fn validate_group_status(&self, group_id: &str, api: Api) -> Result<(), ResponseError> {
        if group_id.is_empty() && !api.accepts_empty_group_id() {
            return Err(ResponseError::InvalidGroupId);
        }
        if partition_for(group_id, self.config.offsets_topic_num_partitions) != self.partition {
            return Err(ResponseError::NotCoordinator);
        }
        match self.status {
            PartitionStatus::Active => Ok(()),
            PartitionStatus::Loading => Err(ResponseError::CoordinatorLoadInProgress),
            PartitionStatus::LoadFailed => Err(ResponseError::CoordinatorNotAvailable),
            PartitionStatus::NotLoaded | PartitionStatus::Unloaded => {
                Err(ResponseError::NotCoordinator)
            }
        }
    }

    // ---- timer ----

    fn rearm(&mut self, ctx: &mut Context<Self>) {
        let earliest = self.deadlines.earliest();
        if let Some((armed, handle)) = self.timer {
            if Some(armed) == earliest {
                return;
            }
            ctx.cancel_future(handle);
            self.timer = None;
        }
        if let Some(at) = earliest {
            let delay = at.saturating_duration_since(Instant::now());
            let handle = ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                act.on_timer(ctx);
            });
            self.timer = Some((at, handle));
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<Self>) {
        for key in self.deadlines.pop_due(Instant::now()) {
            match key {
                DeadlineKey::MemberSession { group, member } => {
                    self.on_expire_heartbeat(&group, &member, ctx)
                }
                DeadlineKey::PendingMember { group, member } => {
                    self.on_expire_pending_member(&group, &member, ctx)
                }
                DeadlineKey::Rebalance { group } => self.on_rebalance_deadline(&group, ctx),
                DeadlineKey::PendingSync { group } => self.on_expire_pending_sync(&group, ctx),
                DeadlineKey::OffsetsExpiration => self.on_offsets_expiration(ctx),
            }
        }
        self.rearm(ctx);
    }

    fn schedule_session(&mut self, group_id: &str, member_id: &str, timeout: Duration) {
        self.deadlines.schedule(
            DeadlineKey::MemberSession {
                group: group_id.to_string(),
                member: member_id.to_string(),
            },
            Instant::now() + timeout,
        );
    }

    /// Kafka's `completeAndScheduleNextHeartbeatExpiration`: the member showed liveness.
    fn heartbeat_member(&mut self, group_id: &str, member_id: &str) {
        let timeout = self
            .groups
            .get(group_id)
            .and_then(|g| g.get(member_id))
            .map(|m| ms(m.session_timeout_ms));
        if let Some(timeout) = timeout {
            self.schedule_session(group_id, member_id, timeout);
        }
    }

    fn cancel_session(&mut self, group_id: &str, member_id: &str) {
        self.deadlines.cancel(&DeadlineKey::MemberSession {
            group: group_id.to_string(),
            member: member_id.to_string(),
        });
    }

    // ---- storage ----

    /// Appends with `offsets.commit.timeout.ms` as the bound on durability.
    fn append(
        &self,
        records: Vec<OffsetsRecord>,
    ) -> impl Future<Output = Result<(), ResponseError>> {
        let fut = self.store.append(self.partition, records);
        let timeout = self.config.offset_commit_timeout;
        async move {
            match tokio::time::timeout(timeout, fut).await {
                Ok(result) => result,
                Err(_) => Err(ResponseError::RequestTimedOut),
            }
        }
    }

    /// The group metadata record of `group` with `assignment` (Kafka's `groupMetadataValue`).
    fn group_metadata_record(
        group: &GroupMetadata,
        assignment: &HashMap<String, Bytes>,
    ) -> Option<OffsetsRecord> {
        let protocol = group.protocol_name.clone();
        let value = GroupMetadataValue {
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            generation: group.generation_id,
            protocol: protocol.clone(),
            leader: group.leader_id().map(str::to_string),
            current_state_timestamp: group.current_state_timestamp.unwrap_or(-1),
            members: group
                .members()
                .map(|m| MemberMetadataValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout_ms,
                    session_timeout: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .and_then(|p| m.metadata(p).cloned())
                        .unwrap_or_default(),
                    assignment: assignment.get(&m.member_id).cloned().unwrap_or_default(),
                })
                .collect(),
        };
        match value.encode(GROUP_METADATA_VALUE_VERSION) {
            Ok(bytes) => Some((
                RecordKey::GroupMetadata {
                    group: group.group_id.clone(),
                }
                .encode(),
                Some(bytes),
            )),
            Err(e) => {
                tracing::error!(group = %group.group_id, error = %e, "cannot encode group metadata");
                None
            }
        }
    }

    /// Kafka's `storeGroup`: writes the group's metadata and calls `done` with the outcome
    /// (translated as Kafka does for group writes) if this load epoch is still current.
    fn store_group(
        &mut self,
        group_id: &str,
        assignment: HashMap<String, Bytes>,
        ctx: &mut Context<Self>,
        done: impl FnOnce(&mut Self, Option<ResponseError>, &mut Context<Self>) + 'static,
    ) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        let Some(record) = Self::group_metadata_record(group, &assignment) else {
            done(self, Some(ResponseError::UnknownServerError), ctx);
            return;
        };
        let epoch = self.epoch;
        let fut = self.append(vec![record]);
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            if act.epoch != epoch {
                return;
            }
            let error = res.err().map(group_store_error);
            done(act, error, ctx);
            act.rearm(ctx);
        }));
    }

    // ---- JoinGroup ----

    fn accept_joining_member(&self, group: &GroupMetadata, member_id: &str) -> bool {
        let max = usize::try_from(self.config.max_size).unwrap_or(0);
        match group.state() {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                group.get(member_id).is_some_and(|m| m.is_awaiting_join())
                    || group.num_awaiting_join() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                group.has(member_id) || group.size() < max
            }
        }
    }

    fn handle_join_group(
        &mut self,
        req: JoinGroup,
        tx: oneshot::Sender<JoinGroupResult>,
        ctx: &mut Context<Self>,
    ) {
        let reply = |tx: oneshot::Sender<JoinGroupResult>, r| {
            let _ = tx.send(r);
        };
        if let Err(e) = self.validate_group_status(&req.group_id, Api::JoinGroup) {
            return reply(tx, JoinGroupResult::error(req.member_id, e));
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return reply(
                tx,
                JoinGroupResult::error(req.member_id, ResponseError::InvalidSessionTimeout),
            );
        }
        let gid = req.group_id.clone();
        let is_unknown_member = req.member_id.is_empty();
        if !self.groups.contains_key(&gid) {
            if !is_unknown_member {
                return reply(
                    tx,
                    JoinGroupResult::error(req.member_id, ResponseError::UnknownMemberId),
                );
            }
            let group = self.new_group(&gid);
            self.groups.insert(gid.clone(), group);
        }
        let accepted = match self.groups.get(&gid) {
            Some(group) => self.accept_joining_member(group, &req.member_id),
            None => return,
        };
        if !accepted {
            if let Some(group) = self.groups.get_mut(&gid) {
                group.remove(&req.member_id);
            }
            self.cancel_session(&gid, &req.member_id);
            return reply(
                tx,
                JoinGroupResult::error("", ResponseError::GroupMaxSizeReached),
            );
        }
        if is_unknown_member {
            self.do_new_member_join_group(req, tx, ctx);
        } else {
            self.do_current_member_join_group(req, tx, ctx);
        }
        if self
            .groups
            .get(&gid)
            .is_some_and(|g| g.is(GroupState::PreparingRebalance))
        {
            self.try_complete_join(&gid, ctx);
        }
    }

    fn do_new_member_join_group(
        &mut self,
        req: JoinGroup,
        tx: oneshot::Sender<JoinGroupResult>,
        ctx: &mut Context<Self>,
    ) {
        let Some(group) = self.groups.get(&req.group_id) else {
            return;
        };
        if group.is(GroupState::Dead) {
            let _ = tx.send(JoinGroupResult::error(
                "",
                ResponseError::CoordinatorNotAvailable,
            ));
            return;
        }
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            let _ = tx.send(JoinGroupResult::error(
                "",
                ResponseError::InconsistentGroupProtocol,
            ));
            return;
        }
        let new_member_id =
            GroupMetadata::generate_member_id(&req.client_id, req.group_instance_id.as_deref());
        match req.group_instance_id.clone() {
            Some(instance_id) => match group.current_static_member_id(&instance_id) {
                Some(old_member_id) => {
                    let old_member_id = old_member_id.to_string();
                    tracing::info!(group = %req.group_id, %instance_id, old = %old_member_id,
                        new = %new_member_id, state = group.state().as_str(),
                        "static member with unknown member id rejoins; replacing its member id");
                    self.update_static_member_and_rebalance(
                        req,
                        &old_member_id,
                        &new_member_id,
                        &instance_id,
                        tx,
                        ctx,
                    );
                }
                None => self.add_member_and_rebalance(req, new_member_id, tx, ctx),
            },
            None if req.require_known_member_id => {
                // KIP-394: hand out the id, remember it as pending, and have the member rejoin.
                let gid = req.group_id.clone();
                if let Some(group) = self.groups.get_mut(&gid) {
                    group.add_pending_member(&new_member_id);
                }
                self.deadlines.schedule(
                    DeadlineKey::PendingMember {
                        group: gid,
                        member: new_member_id.clone(),
                    },
                    Instant::now() + ms(req.session_timeout_ms),
                );
                let _ = tx.send(JoinGroupResult::error(
                    new_member_id,
                    ResponseError::MemberIdRequired,
                ));
            }
            None => self.add_member_and_rebalance(req, new_member_id, tx, ctx),
        }
    }

    /// Kafka's `validateCurrentMember`: a given instance id must map to `member_id`
    /// (else FENCED_INSTANCE_ID, or UNKNOWN_MEMBER_ID when unknown), and the member must exist.
    fn validate_current_member(
        group: &GroupMetadata,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance_id) = group_instance_id {
            match group.current_static_member_id(instance_id) {
                Some(current) if current != member_id => {
                    tracing::info!(group = %group.group_id, %member_id, %instance_id,
                        current = %current, "request from a fenced static member");
                    return Err(ResponseError::FencedInstanceId);
                }
                Some(_) => {}
                None => return Err(ResponseError::UnknownMemberId),
            }
        }
        if group.has(member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    fn do_current_member_join_group(
        &mut self,
        req: JoinGroup,
        tx: oneshot::Sender<JoinGroupResult>,
        ctx: &mut Context<Self>,
    ) {
        let gid = req.group_id.clone();
        let Some(group) = self.groups.get(&gid) else {
            return;
        };
        if group.is(GroupState::Dead) {
            let _ = tx.send(JoinGroupResult::error(
                req.member_id,
                ResponseError::CoordinatorNotAvailable,
            ));
            return;
        }
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            let _ = tx.send(JoinGroupResult::error(
                req.member_id,
                ResponseError::InconsistentGroupProtocol,
            ));
            return;
        }
        if group.is_pending_member(&req.member_id) {
            if req.group_instance_id.is_some() {
                // Pending ids are only handed to dynamic members (Kafka treats this as a bug
                // in the client); have it start over.
                let _ = tx.send(JoinGroupResult::error(
                    req.member_id,
                    ResponseError::UnknownMemberId,
                ));
                return;
            }
            self.deadlines.cancel(&DeadlineKey::PendingMember {
                group: gid.clone(),
                member: req.member_id.clone(),
            });
            let member_id = req.member_id.clone();
            self.add_member_and_rebalance(req, member_id, tx, ctx);
            return;
        }
        if let Err(e) =
            Self::validate_current_member(group, &req.member_id, req.group_instance_id.as_deref())
        {
            let _ = tx.send(JoinGroupResult::error(req.member_id, e));
            return;
        }
        let Some(member) = group.get(&req.member_id) else {
            return;
        };
        let matches = member.matches(&req.protocols);
        let reason = req.reason.as_deref().unwrap_or("not provided");
        match group.state() {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(
                req.clone(),
                tx,
                "member joining during PreparingRebalance",
                ctx,
            ),
            GroupState::CompletingRebalance => {
                if matches {
                    // The member lost its JoinGroup response: answer with this generation again.
                    let result = JoinGroupResult {
                        members: if group.is_leader(&req.member_id) {
                            group.current_member_metadata()
                        } else {
                            Vec::new()
                        },
                        member_id: req.member_id.clone(),
                        generation_id: group.generation_id,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol_name.clone(),
                        leader_id: group.leader_or_empty(),
                        skip_assignment: false,
                        error: None,
                    };
                    let _ = tx.send(result);
                } else {
                    self.update_member_and_rebalance(
                        req.clone(),
                        tx,
                        "member metadata changed during CompletingRebalance",
                        ctx,
                    )
                }
            }
            GroupState::Stable => {
                if group.is_leader(&req.member_id) {
                    // The leader rejoining is how it asks for a rebalance (e.g. partitions
                    // of a subscribed topic changed).
                    tracing::info!(group = %gid, member = %req.member_id, %reason, "leader rejoins a stable group");
                    self.update_member_and_rebalance(
                        req.clone(),
                        tx,
                        "leader re-joining a stable group",
                        ctx,
                    )
                } else if !matches {
                    self.update_member_and_rebalance(
                        req.clone(),
                        tx,
                        "member metadata changed in a stable group",
                        ctx,
                    )
                } else {
                    let result = JoinGroupResult {
                        members: Vec::new(),
                        member_id: req.member_id.clone(),
                        generation_id: group.generation_id,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol_name.clone(),
                        leader_id: group.leader_or_empty(),
                        skip_assignment: false,
                        error: None,
                    };
                    let _ = tx.send(result);
                }
            }
            GroupState::Empty | GroupState::Dead => {
                let _ = tx.send(JoinGroupResult::error(
                    req.member_id,
                    ResponseError::UnknownMemberId,
                ));
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        req: JoinGroup,
        member_id: String,
        tx: oneshot::Sender<JoinGroupResult>,
        ctx: &mut Context<Self>,
    ) {
        let gid = req.group_id.clone();
        let Some(group) = self.groups.get_mut(&gid) else {
            return;
        };
        let member = MemberMetadata {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type,
            supported_protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: true,
        };
        // A member arriving during an empty group's initial delay may extend it.
        if group.is(GroupState::PreparingRebalance) && group.generation_id == 0 {
            group.new_member_added = true;
        }
        group.add(member, Some(tx));
        // New members cannot heartbeat until they have joined, and a disconnected client's
        // parked JoinGroup would otherwise linger: bound it by the new-member join timeout.
        let timeout = self.config.new_member_join_timeout;
        self.schedule_session(&gid, &member_id, timeout);
        tracing::info!(group = %gid, member = %member_id, "adding new member");
        self.maybe_prepare_rebalance(&gid, "new member joined", ctx);
    }

    fn update_member_and_rebalance(
        &mut self,
        req: JoinGroup,
        tx: oneshot::Sender<JoinGroupResult>,
        reason: &str,
        ctx: &mut Context<Self>,
    ) {
        if let Some(group) = self.groups.get_mut(&req.group_id) {
            group.update_member(
                &req.member_id,
                req.protocols,
                Some(req.rebalance_timeout_ms),
                Some(req.session_timeout_ms),
                Some(tx),
            );
        }
        self.maybe_prepare_rebalance(&req.group_id, reason, ctx);
    }

    /// KIP-345: a known static member rejoins with an unknown member id (its process
    /// restarted). It takes over the old member's place and assignment under a new id; the
    /// old id is fenced. A stable group does not rebalance unless the protocol choice changes.
    fn update_static_member_and_rebalance(
        &mut self,
        req: JoinGroup,
        old_member_id: &str,
        new_member_id: &str,
        instance_id: &str,
        tx: oneshot::Sender<JoinGroupResult>,
        ctx: &mut Context<Self>,
    ) {
        let gid = req.group_id.clone();
        let Some(group) = self.groups.get_mut(&gid) else {
            return;
        };
        let current_leader = group.leader_or_empty();
        let old_protocols = group
            .get(old_member_id)
            .map(|m| m.supported_protocols.clone())
            .unwrap_or_default();
        if !group.replace_static_member(instance_id, old_member_id, new_member_id) {
            let _ = tx.send(JoinGroupResult::error("", ResponseError::UnknownMemberId));
            return;
        }
        group.update_member(new_member_id, req.protocols.clone(), None, None, Some(tx));
        let state = group.state();
        self.cancel_session(&gid, old_member_id);
        self.heartbeat_member(&gid, new_member_id);
        match state {
            GroupState::Stable => {
                let Some(group) = self.groups.get(&gid) else {
                    return;
                };
                if group.select_protocol() != group.protocol_name {
                    self.maybe_prepare_rebalance(
                        &gid,
                        "static member rejoined with protocols that change the selected protocol",
                        ctx,
                    );
                    return;
                }
                let assignment: HashMap<String, Bytes> = group
                    .members()
                    .map(|m| (m.member_id.clone(), m.assignment.clone()))
                    .collect();
                let incarnation = group.incarnation;
                let support_skip = req.support_skipping_assignment;
                let (old, new, instance) = (
                    old_member_id.to_string(),
                    new_member_id.to_string(),
                    instance_id.to_string(),
                );
                let gid2 = gid.clone();
                self.store_group(&gid, assignment, ctx, move |act, error, _ctx| {
                    let Some(group) = act.groups.get_mut(&gid2) else {
                        return;
                    };
                    if group.incarnation != incarnation {
                        return;
                    }
                    match error {
                        Some(error) => {
                            tracing::warn!(group = %gid2, %error, "failed to persist the static member's new member id; reverting");
                            let callback = group.take_join_callback(&new);
                            if group.has(&new) {
                                group.update_member(&new, old_protocols, None, None, None);
                                group.replace_static_member(&instance, &new, &old);
                            }
                            let result = JoinGroupResult {
                                members: Vec::new(),
                                member_id: String::new(),
                                generation_id: group.generation_id,
                                protocol_type: group.protocol_type.clone(),
                                protocol_name: group.protocol_name.clone(),
                                leader_id: current_leader,
                                skip_assignment: false,
                                error: Some(error),
                            };
                            if let Some(tx) = callback {
                                let _ = tx.send(result);
                            }
                            act.cancel_session(&gid2, &new);
                            act.heartbeat_member(&gid2, &old);
                        }
                        None => {
                            let is_leader = group.is_leader(&new);
                            let result = if support_skip {
                                // JoinGroup v9: tell the leader it leads but must not reassign.
                                JoinGroupResult {
                                    members: if is_leader {
                                        group.current_member_metadata()
                                    } else {
                                        Vec::new()
                                    },
                                    member_id: new.clone(),
                                    generation_id: group.generation_id,
                                    protocol_type: group.protocol_type.clone(),
                                    protocol_name: group.protocol_name.clone(),
                                    leader_id: group.leader_or_empty(),
                                    skip_assignment: is_leader,
                                    error: None,
                                }
                            } else {
                                // Older clients: name the old leader id so that a rejoining
                                // leader does not compute an assignment a stable group
                                // would ignore.
                                JoinGroupResult {
                                    members: Vec::new(),
                                    member_id: new.clone(),
                                    generation_id: group.generation_id,
                                    protocol_type: group.protocol_type.clone(),
                                    protocol_name: group.protocol_name.clone(),
                                    leader_id: current_leader,
                                    skip_assignment: false,
                                    error: None,
                                }
                            };
                            group.maybe_invoke_join_callback(&new, result);
                        }
                    }
                });
            }
            GroupState::CompletingRebalance => {
                // The leader may already be computing an assignment naming the old id.
                self.prepare_rebalance(
                    &gid,
                    "static member rejoined during CompletingRebalance",
                    ctx,
                );
            }
            GroupState::PreparingRebalance => {}
            GroupState::Empty | GroupState::Dead => {
                // A static member is known only while the group has members.
                if let Some(group) = self.groups.get_mut(&gid) {
                    group.maybe_invoke_join_callback(
                        new_member_id,
                        JoinGroupResult::error("", ResponseError::UnknownMemberId),
                    );
                }
            }
        }
    }

    fn maybe_prepare_rebalance(&mut self, gid: &str, reason: &str, ctx: &mut Context<Self>) {
        if self.groups.get(gid).is_some_and(|g| g.can_rebalance()) {
            self.prepare_rebalance(gid, reason, ctx);
        }
    }

    /// Kafka's `prepareRebalance`: cancels a pending sync, parks the group in
    /// PreparingRebalance and schedules its end (the initial delay for an empty group).
    fn prepare_rebalance(&mut self, gid: &str, reason: &str, ctx: &mut Context<Self>) {
        let completing = self
            .groups
            .get(gid)
            .is_some_and(|g| g.is(GroupState::CompletingRebalance));
        if completing {
            self.reset_and_propagate_assignment_error(gid, ResponseError::RebalanceInProgress);
        }
        self.remove_sync_expiration(gid);
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(gid) else {
            return;
        };
        let delayed = if group.is(GroupState::Empty) {
            DelayedJoin::Initial {
                configured_delay_ms: initial_delay,
                delay_ms: initial_delay,
                remaining_ms: (group.rebalance_timeout_ms() - initial_delay).max(0),
            }
        } else {
            DelayedJoin::Rebalance
        };
        let wait = match delayed {
            DelayedJoin::Initial { delay_ms, .. } => delay_ms,
            DelayedJoin::Rebalance => group.rebalance_timeout_ms(),
        };
        group.transition_to(GroupState::PreparingRebalance, now_ms());
        group.delayed_join = Some(delayed);
        tracing::info!(group = %gid, generation = group.generation_id, partition = self.partition,
            %reason, "preparing to rebalance group");
        self.deadlines.schedule(
            DeadlineKey::Rebalance {
                group: gid.to_string(),
            },
            Instant::now() + ms(wait),
        );
        self.try_complete_join(gid, ctx);
    }

    /// Kafka's `DelayedJoin.tryComplete`: a regular rebalance ends as soon as everyone has
    /// rejoined; the initial delay always runs its course.
    fn try_complete_join(&mut self, gid: &str, ctx: &mut Context<Self>) {
        let ready = self.groups.get(gid).is_some_and(|g| {
            g.is(GroupState::PreparingRebalance)
                && g.delayed_join == Some(DelayedJoin::Rebalance)
                && g.has_all_members_joined()
        });
        if ready {
            self.deadlines.cancel(&DeadlineKey::Rebalance {
                group: gid.to_string(),
            });
            if let Some(g) = self.groups.get_mut(gid) {
                g.delayed_join = None;
            }
            self.on_complete_join(gid, ctx);
        }
    }

    fn on_rebalance_deadline(&mut self, gid: &str, ctx: &mut Context<Self>) {
        let Some(group) = self.groups.get_mut(gid) else {
            return;
        };
        match group.delayed_join.take() {
            Some(DelayedJoin::Initial {
                configured_delay_ms,
                delay_ms,
                remaining_ms,
            }) if group.new_member_added && remaining_ms != 0 => {
                // KIP-134: more members arrived during the delay; wait again, within budget.
                group.new_member_added = false;
                let delay = configured_delay_ms.min(remaining_ms);
                let remaining = (remaining_ms - delay_ms).max(0);
                group.delayed_join = Some(DelayedJoin::Initial {
                    configured_delay_ms,
                    delay_ms: delay,
                    remaining_ms: remaining,
                });
                self.deadlines.schedule(
                    DeadlineKey::Rebalance {
                        group: gid.to_string(),
                    },
                    Instant::now() + ms(delay),
                );
            }
            Some(_) => self.on_complete_join(gid, ctx),
            None => {}
        }
    }

    /// Kafka's `onCompleteJoin`: drops dynamic members that did not rejoin, starts the next
    /// generation and answers every parked JoinGroup (the leader gets the member list).
    fn on_complete_join(&mut self, gid: &str, ctx: &mut Context<Self>) {
        let Some(group) = self.groups.get_mut(gid) else {
            return;
        };
        let dropped: Vec<String> = group
            .not_yet_rejoined_members()
            .into_iter()
            .filter(|(_, is_static)| !is_static)
            .map(|(id, _)| id)
            .collect();
        for member_id in &dropped {
            group.remove(member_id);
        }
        if !dropped.is_empty() {
            tracing::info!(group = %gid, members = ?dropped, "removed dynamic members that did not rejoin");
        }
        for member_id in &dropped {
            self.cancel_session(gid, member_id);
        }
        let Some(group) = self.groups.get_mut(gid) else {
            return;
        };
        if group.is(GroupState::Dead) {
            return;
        }
        if !group.maybe_elect_new_joined_leader() && group.size() > 0 {
            // Nobody rejoined (only static members are left): wait another rebalance
            // timeout, until their sessions expire.
            tracing::error!(group = %gid, "could not complete rebalance because no members rejoined");
            group.delayed_join = Some(DelayedJoin::Rebalance);
            let wait = group.rebalance_timeout_ms();
            self.deadlines.schedule(
                DeadlineKey::Rebalance {
                    group: gid.to_string(),
                },
                Instant::now() + ms(wait),
            );
            self.try_complete_join(gid, ctx);
            return;
        }
        group.init_next_generation(now_ms());
        if group.is(GroupState::Empty) {
            tracing::info!(group = %gid, generation = group.generation_id, "group is now empty");
            let gid2 = gid.to_string();
            self.store_group(gid, HashMap::new(), ctx, move |_act, error, _ctx| {
                if let Some(error) = error {
                    // Safe to only warn: an empty generation has no members to mislead.
                    tracing::warn!(group = %gid2, %error, "failed to write empty group metadata");
                }
            });
            return;
        }
        tracing::info!(group = %gid, generation = group.generation_id, members = group.size(),
            protocol = ?group.protocol_name, "stabilized group; awaiting the leader's assignment");
        let member_ids = group.member_ids();
        let mut sessions = Vec::with_capacity(member_ids.len());
        for member_id in &member_ids {
            let result = JoinGroupResult {
                members: if group.is_leader(member_id) {
                    group.current_member_metadata()
                } else {
                    Vec::new()
                },
                member_id: member_id.clone(),
                generation_id: group.generation_id,
                protocol_type: group.protocol_type.clone(),
                protocol_name: group.protocol_name.clone(),
                leader_id: group.leader_or_empty(),
                skip_assignment: false,
                error: None,
            };
            group.maybe_invoke_join_callback(member_id, result);
            if let Some(m) = group.get_mut(member_id) {
                m.is_new = false;
                sessions.push((member_id.clone(), ms(m.session_timeout_ms)));
            }
            group.add_pending_sync_member(member_id);
        }
        let rebalance_timeout = group.rebalance_timeout_ms();
        for (member_id, timeout) in sessions {
            self.schedule_session(gid, &member_id, timeout);
        }
        self.deadlines.schedule(
            DeadlineKey::PendingSync {
                group: gid.to_string(),
            },
            Instant::now() + ms(rebalance_timeout),
        );
    }

    // ---- SyncGroup ----

    fn handle_sync_group(
        &mut self,
        req: SyncGroup,
        tx: oneshot::Sender<SyncGroupResult>,
        ctx: &mut Context<Self>,
    ) {
        match self.validate_group_status(&req.group_id, Api::SyncGroup) {
            // A loading coordinator has lost the rebalance in progress; REBALANCE_IN_PROGRESS
            // makes the member rejoin, and older clients do not know LOAD_IN_PROGRESS here.
            Err(ResponseError::CoordinatorLoadInProgress) => {
                let _ = tx.send(SyncGroupResult::error(ResponseError::RebalanceInProgress));
                return;
            }
            Err(e) => {
                let _ = tx.send(SyncGroupResult::error(e));
                return;
            }
            Ok(()) => {}
        }
        let gid = req.group_id.clone();
        let Some(group) = self.groups.get_mut(&gid) else {
            let _ = tx.send(SyncGroupResult::error(ResponseError::UnknownMemberId));
            return;
        };
        if group.is(GroupState::Dead) {
            let _ = tx.send(SyncGroupResult::error(
                ResponseError::CoordinatorNotAvailable,
            ));
            return;
        }
        let validation =
            Self::validate_current_member(group, &req.member_id, req.group_instance_id.as_deref())
                .and_then(|()| {
                    if req.generation_id != group.generation_id {
                        Err(ResponseError::IllegalGeneration)
                    } else if req
                        .protocol_type
                        .as_ref()
                        .is_some_and(|t| group.protocol_type.as_ref() != Some(t))
                        || req
                            .protocol_name
                            .as_ref()
                            .is_some_and(|n| group.protocol_name.as_ref() != Some(n))
                    {
                        Err(ResponseError::InconsistentGroupProtocol)
                    } else {
                        Ok(())
                    }
                });
        if let Err(e) = validation {
            let _ = tx.send(SyncGroupResult::error(e));
            return;
        }
        match group.state() {
            GroupState::Empty => {
                let _ = tx.send(SyncGroupResult::error(ResponseError::UnknownMemberId));
            }
            GroupState::PreparingRebalance => {
                let _ = tx.send(SyncGroupResult::error(ResponseError::RebalanceInProgress));
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = group.get_mut(&req.member_id) {
                    if let Some(previous) = m.awaiting_sync.replace(tx) {
                        let _ = previous
                            .send(SyncGroupResult::error(ResponseError::RebalanceInProgress));
                    }
                }
                self.remove_pending_sync_member(&gid, &req.member_id);
                let Some(group) = self.groups.get(&gid) else {
                    return;
                };
                if group.is_leader(&req.member_id) {
                    tracing::info!(group = %gid, leader = %req.member_id, generation = group.generation_id,
                        members = group.size(), "assignment received from the leader");
                    let mut assignment: HashMap<String, Bytes> =
                        req.assignments.into_iter().collect();
                    for member_id in group.member_ids() {
                        // Members the leader left out get an empty assignment.
                        assignment.entry(member_id).or_default();
                    }
                    let generation = group.generation_id;
                    let incarnation = group.incarnation;
                    let gid2 = gid.clone();
                    let leader = req.member_id.clone();
                    let stored_assignment = assignment.clone();
                    self.store_group(&gid, stored_assignment, ctx, move |act, error, ctx| {
                        let still_current = act.groups.get(&gid2).is_some_and(|g| {
                            g.incarnation == incarnation
                                && g.is(GroupState::CompletingRebalance)
                                && g.generation_id == generation
                        });
                        if !still_current {
                            return;
                        }
                        match error {
                            Some(error) => {
                                act.reset_and_propagate_assignment_error(&gid2, error);
                                act.maybe_prepare_rebalance(
                                    &gid2,
                                    &format!("error storing group assignment during SyncGroup (member {leader})"),
                                    ctx,
                                );
                            }
                            None => {
                                act.set_and_propagate_assignment(&gid2, &assignment);
                                if let Some(g) = act.groups.get_mut(&gid2) {
                                    g.transition_to(GroupState::Stable, now_ms());
                                }
                            }
                        }
                    });
                }
            }
            GroupState::Stable => {
                let result = SyncGroupResult {
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment: group
                        .get(&req.member_id)
                        .map(|m| m.assignment.clone())
                        .unwrap_or_default(),
                    error: None,
                };
                let _ = tx.send(result);
                self.remove_pending_sync_member(&gid, &req.member_id);
                self.heartbeat_member(&gid, &req.member_id);
            }
            GroupState::Dead => {
                let _ = tx.send(SyncGroupResult::error(
                    ResponseError::CoordinatorNotAvailable,
                ));
            }
        }
    }

    fn remove_pending_sync_member(&mut self, gid: &str, member_id: &str) {
        if let Some(group) = self.groups.get_mut(gid) {
            group.remove_pending_sync_member(member_id);
            if group.has_received_sync_from_all_members() {
                self.deadlines.cancel(&DeadlineKey::PendingSync {
                    group: gid.to_string(),
                });
            }
        }
    }

    fn remove_sync_expiration(&mut self, gid: &str) {
        if let Some(group) = self.groups.get_mut(gid) {
            group.clear_pending_sync_members();
        }
        self.deadlines.cancel(&DeadlineKey::PendingSync {
            group: gid.to_string(),
        });
    }

    fn on_expire_pending_sync(&mut self, gid: &str, ctx: &mut Context<Self>) {
        let Some(group) = self.groups.get_mut(gid) else {
            return;
        };
        if !matches!(
            group.state(),
            GroupState::CompletingRebalance | GroupState::Stable
        ) || group.has_received_sync_from_all_members()
        {
            return;
        }
        let missing = group.pending_sync_members();
        for member_id in &missing {
            group.remove(member_id);
        }
        for member_id in &missing {
            self.cancel_session(gid, member_id);
        }
        tracing::info!(group = %gid, members = ?missing, "removed members that did not send SyncGroup in time");
        self.prepare_rebalance(gid, "pending sync expired", ctx);
    }

    fn set_and_propagate_assignment(&mut self, gid: &str, assignment: &HashMap<String, Bytes>) {
        if let Some(group) = self.groups.get_mut(gid) {
            for member_id in group.member_ids() {
                if let Some(m) = group.get_mut(&member_id) {
                    m.assignment = assignment.get(&member_id).cloned().unwrap_or_default();
                }
            }
        }
        self.propagate_assignment(gid, None);
    }

    fn reset_and_propagate_assignment_error(&mut self, gid: &str, error: ResponseError) {
        if let Some(group) = self.groups.get_mut(gid) {
            for member_id in group.member_ids() {
                if let Some(m) = group.get_mut(&member_id) {
                    m.assignment = Bytes::new();
                }
            }
        }
        self.propagate_assignment(gid, Some(error));
    }

    /// Answers every parked SyncGroup and restarts the session clock of those members: a
    /// member's session may have run out while it waited, and waiting counted as alive.
    fn propagate_assignment(&mut self, gid: &str, error: Option<ResponseError>) {
        let Some(group) = self.groups.get_mut(gid) else {
            return;
        };
        let (protocol_type, protocol_name) = if error.is_none() {
            (group.protocol_type.clone(), group.protocol_name.clone())
        } else {
            (None, None)
        };
        let mut answered = Vec::new();
        for member_id in group.member_ids() {
            let assignment = group
                .get(&member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default();
            let result = SyncGroupResult {
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                assignment,
                error,
            };
            if group.maybe_invoke_sync_callback(&member_id, result) {
                answered.push(member_id);
            }
        }
        for member_id in answered {
            self.heartbeat_member(gid, &member_id);
        }
    }

    // ---- Heartbeat and member expiry ----

    fn handle_heartbeat(&mut self, req: Heartbeat) -> Result<(), ResponseError> {
        match self.validate_group_status(&req.group_id, Api::Heartbeat) {
            // The group is still loading: answer blindly, as Kafka does.
            Err(ResponseError::CoordinatorLoadInProgress) => return Ok(()),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        let Some(group) = self.groups.get(&req.group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if group.is(GroupState::Dead) {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        Self::validate_current_member(group, &req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != group.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        match group.state() {
            GroupState::Empty => Err(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.heartbeat_member(&req.group_id, &req.member_id);
                Ok(())
            }
            GroupState::PreparingRebalance => {
                self.heartbeat_member(&req.group_id, &req.member_id);
                Err(ResponseError::RebalanceInProgress)
            }
            GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    fn on_expire_heartbeat(&mut self, gid: &str, member_id: &str, ctx: &mut Context<Self>) {
        let Some(group) = self.groups.get(gid) else {
            return;
        };
        if group.is(GroupState::Dead) {
            return;
        }
        let Some(member) = group.get(member_id) else {
            return;
        };
        if member.is_alive_while_waiting() {
            // Parked in JoinGroup/SyncGroup: the rebalance timeout governs it, and its
            // session restarts when the rebalance answers it.
            return;
        }
        tracing::info!(group = %gid, member = %member_id, "member session expired; removing it from the group");
        self.remove_member_and_update_group(gid, member_id, "session expired", ctx);
    }

    fn on_expire_pending_member(&mut self, gid: &str, member_id: &str, ctx: &mut Context<Self>) {
        let pending = self
            .groups
            .get(gid)
            .is_some_and(|g| !g.is(GroupState::Dead) && g.is_pending_member(member_id));
        if pending {
            tracing::info!(group = %gid, member = %member_id, "pending member expired before rejoining");
            self.remove_pending_member_and_update_group(gid, member_id, ctx);
        }
    }

    /// Kafka's `removeMemberAndUpdateGroup`.
    fn remove_member_and_update_group(
        &mut self,
        gid: &str,
        member_id: &str,
        reason: &str,
        ctx: &mut Context<Self>,
    ) {
        let Some(group) = self.groups.get_mut(gid) else {
            return;
        };
        // A new member may be removed while its JoinGroup is parked: answer it, so a live
        // client rejoins.
        group.maybe_invoke_join_callback(
            member_id,
            JoinGroupResult::error("", ResponseError::UnknownMemberId),
        );
        group.remove(member_id);
        let state = group.state();
        self.cancel_session(gid, member_id);
        match state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(gid, reason, ctx)
            }
            GroupState::PreparingRebalance => self.try_complete_join(gid, ctx),
        }
    }

    fn remove_pending_member_and_update_group(
        &mut self,
        gid: &str,
        member_id: &str,
        ctx: &mut Context<Self>,
    ) {
        self.deadlines.cancel(&DeadlineKey::PendingMember {
            group: gid.to_string(),
            member: member_id.to_string(),
        });
        let Some(group) = self.groups.get_mut(gid) else {
            return;
        };
        group.remove(member_id);
        if group.is(GroupState::PreparingRebalance) {
            self.try_complete_join(gid, ctx);
        }
    }

    // ---- LeaveGroup ----

    fn handle_leave_group(&mut self, req: LeaveGroup, ctx: &mut Context<Self>) -> LeaveGroupResult {
        if let Err(e) = self.validate_group_status(&req.group_id, Api::LeaveGroup) {
            return LeaveGroupResult {
                error: Some(e),
                members: Vec::new(),
            };
        }
        let gid = req.group_id.clone();
        let left = |m: &LeavingMember, error| LeftMember {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            error,
        };
        let Some(group) = self.groups.get(&gid) else {
            return LeaveGroupResult {
                error: None,
                members: req
                    .members
                    .iter()
                    .map(|m| left(m, Some(ResponseError::UnknownMemberId)))
                    .collect(),
            };
        };
        if group.is(GroupState::Dead) {
            return LeaveGroupResult {
                error: Some(ResponseError::CoordinatorNotAvailable),
                members: Vec::new(),
            };
        }
        let mut results = Vec::with_capacity(req.members.len());
        for m in &req.members {
            let Some(group) = self.groups.get(&gid) else {
                results.push(left(m, Some(ResponseError::UnknownMemberId)));
                continue;
            };
            let reason = m.reason.as_deref().unwrap_or("not provided");
            if m.member_id.is_empty() {
                // Administrative removal of a static member by instance id.
                let current = m
                    .group_instance_id
                    .as_deref()
                    .and_then(|i| group.current_static_member_id(i))
                    .map(str::to_string);
                match current {
                    Some(current) => {
                        tracing::info!(group = %gid, member = %current, %reason, "static member removed through LeaveGroup");
                        self.remove_member_and_update_group(
                            &gid,
                            &current,
                            "member left the group",
                            ctx,
                        );
                        results.push(left(m, None));
                    }
                    None => results.push(left(m, Some(ResponseError::UnknownMemberId))),
                }
            } else if group.is_pending_member(&m.member_id) {
                self.remove_pending_member_and_update_group(&gid, &m.member_id, ctx);
                results.push(left(m, None));
            } else {
                match Self::validate_current_member(
                    group,
                    &m.member_id,
                    m.group_instance_id.as_deref(),
                ) {
                    Err(e) => results.push(left(m, Some(e))),
                    Ok(()) => {
                        tracing::info!(group = %gid, member = %m.member_id, %reason, "member left the group through LeaveGroup");
                        self.remove_member_and_update_group(
                            &gid,
                            &m.member_id,
                            "member left the group",
                            ctx,
                        );
                        results.push(left(m, None));
                    }
                }
            }
        }
        LeaveGroupResult {
            error: None,
            members: results,
        }
    }

    // ---- Offsets ----

    fn handle_offset_commit(
        &mut self,
        req: OffsetCommit,
        tx: oneshot::Sender<Vec<(TopicPartition, Option<ResponseError>)>>,
        ctx: &mut Context<Self>,
    ) {
        let all = |offsets: &[(TopicPartition, OffsetAndMetadata)], e: ResponseError| {
            offsets
                .iter()
                .map(|(tp, _)| (tp.clone(), Some(e)))
                .collect::<Vec<_>>()
        };
        if let Err(e) = self.validate_group_status(&req.group_id, Api::OffsetCommit) {
            let _ = tx.send(all(&req.offsets, e));
            return;
        }
        let gid = req.group_id.clone();
        if !self.groups.contains_key(&gid) {
            if req.generation_id < 0 {
                // Not using Kafka's group management: the commit creates an Empty group.
                let group = self.new_group(&gid);
                self.groups.insert(gid.clone(), group);
            } else {
                // A commit from a generation this coordinator does not know.
                let _ = tx.send(all(&req.offsets, ResponseError::IllegalGeneration));
                return;
            }
        }
        let Some(group) = self.groups.get(&gid) else {
            return;
        };
        let validation = if group.is(GroupState::Dead) {
            Err(ResponseError::CoordinatorNotAvailable)
        } else if req.generation_id >= 0
            || !req.member_id.is_empty()
            || req.group_instance_id.is_some()
        {
            match Self::validate_current_member(
                group,
                &req.member_id,
                req.group_instance_id.as_deref(),
            ) {
                Ok(()) if req.generation_id != group.generation_id => {
                    Err(ResponseError::IllegalGeneration)
                }
                other => other,
            }
        } else if !group.is(GroupState::Empty) {
            // Only members may commit while the group has members.
            Err(ResponseError::UnknownMemberId)
        } else {
            Ok(())
        };
        if let Err(e) = validation {
            let _ = tx.send(all(&req.offsets, e));
            return;
        }
        match group.state() {
            GroupState::Empty => self.store_offsets(&gid, req.offsets, tx, ctx),
            GroupState::Stable | GroupState::PreparingRebalance => {
                // Commits stay allowed while preparing a rebalance: the heartbeat response
                // tells the member to rejoin.
                self.heartbeat_member(&gid, &req.member_id);
                self.store_offsets(&gid, req.offsets, tx, ctx);
            }
            GroupState::CompletingRebalance => {
                let _ = tx.send(all(&req.offsets, ResponseError::RebalanceInProgress));
            }
            GroupState::Dead => {
                let _ = tx.send(all(&req.offsets, ResponseError::CoordinatorNotAvailable));
            }
        }
    }

    /// Kafka's `storeOffsets`: appends one record per offset and applies them when durable.
    fn store_offsets(
        &mut self,
        gid: &str,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
        tx: oneshot::Sender<Vec<(TopicPartition, Option<ResponseError>)>>,
        ctx: &mut Context<Self>,
    ) {
        let max = self.config.offset_metadata_max_bytes;
        let too_large: HashSet<TopicPartition> = offsets
            .iter()
            .filter(|(_, o)| o.metadata.len() > max)
            .map(|(tp, _)| tp.clone())
            .collect();
        let accepted: Vec<(TopicPartition, OffsetAndMetadata)> = offsets
            .iter()
            .filter(|(tp, _)| !too_large.contains(tp))
            .cloned()
            .collect();
        let order: Vec<TopicPartition> = offsets.into_iter().map(|(tp, _)| tp).collect();
        if accepted.is_empty() {
            let _ = tx.send(
                order
                    .into_iter()
                    .map(|tp| (tp, Some(ResponseError::OffsetMetadataTooLarge)))
                    .collect(),
            );
            return;
        }
        let mut records = Vec::with_capacity(accepted.len());
        for (tp, o) in &accepted {
            let value = OffsetCommitValue {
                offset: o.offset,
                leader_epoch: o.leader_epoch.unwrap_or(-1),
                metadata: o.metadata.clone(),
                commit_timestamp: o.commit_timestamp,
                expire_timestamp: o.expire_timestamp.unwrap_or(-1),
            };
            let version = if o.expire_timestamp.is_some() {
                OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY
            } else {
                OFFSET_COMMIT_VALUE_VERSION
            };
            let Ok(value) = value.encode(version) else {
                let _ = tx.send(
                    order
                        .into_iter()
                        .map(|tp| (tp, Some(ResponseError::UnknownServerError)))
                        .collect(),
                );
                return;
            };
            let key = RecordKey::OffsetCommit {
                group: gid.to_string(),
                topic: tp.topic.clone(),
                partition: tp.partition,
            }
            .encode();
            records.push((key, Some(value)));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(group) = self.groups.get_mut(gid) else {
            return;
        };
        group.prepare_offset_commit(accepted.iter().map(|(tp, _)| tp.clone()), seq);
        let incarnation = group.incarnation;
        let epoch = self.epoch;
        let gid = gid.to_string();
        let fut = self.append(records);
        ctx.spawn(fut.into_actor(self).map(move |res, act, _ctx| {
            let error = res.err().map(offset_store_error);
            if act.epoch == epoch {
                if let Some(group) = act.groups.get_mut(&gid) {
                    if group.incarnation == incarnation && !group.is(GroupState::Dead) {
                        for (tp, o) in accepted {
                            match error {
                                None => group.on_offset_commit_append(&tp, seq, o),
                                Some(_) => group.fail_pending_offset_write(&tp, seq),
                            }
                        }
                    }
                }
            }
            if let Some(e) = error {
                tracing::debug!(group = %gid, error = %e, "offset commit failed to append");
            }
            let _ = tx.send(
                order
                    .into_iter()
                    .map(|tp| {
                        if too_large.contains(&tp) {
                            (tp, Some(ResponseError::OffsetMetadataTooLarge))
                        } else {
                            (tp, error)
                        }
                    })
                    .collect(),
            );
        }));
    }

    fn handle_offset_fetch(
        &mut self,
        req: OffsetFetch,
    ) -> Result<Vec<FetchedOffset>, ResponseError> {
        self.validate_group_status(&req.group_id, Api::OffsetFetch)?;
        let none = |tp: TopicPartition, error| FetchedOffset {
            tp,
            offset: -1,
            leader_epoch: None,
            metadata: String::new(),
            error,
        };
        let group = self
            .groups
            .get(&req.group_id)
            .filter(|g| !g.is(GroupState::Dead));
        let Some(group) = group else {
            return Ok(req
                .partitions
                .unwrap_or_default()
                .into_iter()
                .map(|tp| none(tp, None))
                .collect());
        };
        // Offsets are returned whatever the group's state: a group may use Kafka only to
        // store offsets.
        let found = |tp: &TopicPartition, o: &OffsetAndMetadata| FetchedOffset {
            tp: tp.clone(),
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
            error: None,
        };
        Ok(match req.partitions {
            None => {
                let mut all: Vec<FetchedOffset> =
                    group.all_offsets().map(|(tp, o)| found(tp, o)).collect();
                all.sort_by(|a, b| a.tp.cmp(&b.tp));
                all
            }
            Some(tps) => tps
                .into_iter()
                .map(|tp| {
                    if req.require_stable && group.has_pending_offset_commit(&tp) {
                        none(tp, Some(ResponseError::UnstableOffsetCommit))
                    } else {
                        match group.offset(&tp) {
                            Some(o) => found(&tp, o),
                            None => none(tp, None),
                        }
                    }
                })
                .collect(),
        })
    }

    // ---- Admin ----

    fn handle_list_groups(&self, req: ListGroups) -> ListGroupsResult {
        let error = match self.status {
            PartitionStatus::Active => None,
            PartitionStatus::Loading => Some(ResponseError::CoordinatorLoadInProgress),
            _ => {
                return ListGroupsResult {
                    error: Some(ResponseError::CoordinatorNotAvailable),
                    groups: Vec::new(),
                }
            }
        };
        let mut groups: Vec<GroupOverview> = self
            .groups
            .values()
            .filter(|g| {
                req.states.is_empty()
                    || req
                        .states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state().as_str()))
            })
            .map(|g| GroupOverview {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state(),
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        ListGroupsResult { error, groups }
    }

    fn handle_describe_group(&self, req: DescribeGroup) -> DescribeGroupResult {
        if let Err(e) = self.validate_group_status(&req.group_id, Api::DescribeGroups) {
            return DescribeGroupResult {
                error: Some(e),
                state: String::new(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
                generation_id: -1,
            };
        }
        let Some(group) = self.groups.get(&req.group_id) else {
            return DescribeGroupResult {
                error: None,
                state: GroupState::Dead.as_str().to_string(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
                generation_id: -1,
            };
        };
        // Only a stable group reports the protocol, metadata and assignments (Kafka's
        // `summary`); during a rebalance they are in flux.
        let stable = group.is(GroupState::Stable);
        let protocol = if stable {
            group.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        DescribeGroupResult {
            error: None,
            state: group.state().as_str().to_string(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: group
                .members()
                .map(|m| MemberSummary {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol).cloned().unwrap_or_default()
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
            generation_id: group.generation_id,
        }
    }

    /// Kafka's `cleanupGroupMetadata` for the given groups: removes the offsets chosen by
    /// `select`, turns groups that are Empty without offsets Dead (dropping them from the
    /// cache), and appends the tombstones. Returns the pending append, if any.
    fn cleanup_group_metadata(
        &mut self,
        group_ids: &[String],
        mut select: impl FnMut(&mut GroupMetadata) -> Vec<TopicPartition>,
    ) -> Option<PendingAppend> {
        let mut tombstones: Vec<OffsetsRecord> = Vec::new();
        let now = now_ms();
        for gid in group_ids {
            let Some(group) = self.groups.get_mut(gid) else {
                continue;
            };
            let removed = select(group);
            for tp in &removed {
                tombstones.push((
                    RecordKey::OffsetCommit {
                        group: gid.clone(),
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                    }
                    .encode(),
                    None,
                ));
            }
            if group.is(GroupState::Empty) && !group.has_offsets() {
                tracing::info!(group = %gid, generation = group.generation_id, "group transitioned to Dead");
                group.transition_to(GroupState::Dead, now);
            }
            if group.is(GroupState::Dead) {
                let generation = group.generation_id;
                self.groups.remove(gid);
                self.deadlines.cancel_group(gid);
                // Only groups that ever had a generation wrote a metadata record.
                if generation > 0 {
                    tombstones.push((
                        RecordKey::GroupMetadata { group: gid.clone() }.encode(),
                        None,
                    ));
                }
            }
        }
        if tombstones.is_empty() {
            None
        } else {
            Some(Box::pin(self.append(tombstones)))
        }
    }

    fn handle_delete_groups(
        &mut self,
        req: DeleteGroups,
    ) -> (Vec<(String, Option<ResponseError>)>, Option<PendingAppend>) {
        let mut results: Vec<(String, Option<ResponseError>)> = Vec::new();
        let mut eligible = Vec::new();
        let mut seen = HashSet::new();
        for gid in req.group_ids {
            if !seen.insert(gid.clone()) {
                continue;
            }
            if let Err(e) = self.validate_group_status(&gid, Api::DeleteGroups) {
                results.push((gid, Some(e)));
                continue;
            }
            match self.groups.get_mut(&gid) {
                None => results.push((gid, Some(ResponseError::GroupIdNotFound))),
                Some(group) => match group.state() {
                    GroupState::Dead => results.push((gid, Some(ResponseError::GroupIdNotFound))),
                    GroupState::Empty => {
                        group.transition_to(GroupState::Dead, now_ms());
                        eligible.push(gid.clone());
                        results.push((gid, None));
                    }
                    _ => results.push((gid, Some(ResponseError::NonEmptyGroup))),
                },
            }
        }
        let append = if eligible.is_empty() {
            None
        } else {
            self.cleanup_group_metadata(&eligible, |g| g.remove_all_offsets())
        };
        if !eligible.is_empty() {
            tracing::info!(groups = ?eligible, "deleted groups");
        }
        (results, append)
    }

    fn handle_offset_delete(
        &mut self,
        req: OffsetDelete,
    ) -> Result<(PartitionResults, Option<PendingAppend>), ResponseError> {
        self.validate_group_status(&req.group_id, Api::OffsetDelete)?;
        let gid = req.group_id.clone();
        let group = self
            .groups
            .get(&gid)
            .filter(|g| !g.is(GroupState::Dead))
            .ok_or(ResponseError::GroupIdNotFound)?;
        let mut results = Vec::new();
        let eligible: Vec<TopicPartition> = match group.state() {
            GroupState::Empty => req.partitions.clone(),
            GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
            | GroupState::Stable
                if group.is_consumer_group() =>
            {
                let mut eligible = Vec::new();
                for tp in &req.partitions {
                    if group.is_subscribed_to_topic(&tp.topic) {
                        results.push((tp.clone(), Some(ResponseError::GroupSubscribedToTopic)));
                    } else {
                        eligible.push(tp.clone());
                    }
                }
                eligible
            }
            _ => return Err(ResponseError::NonEmptyGroup),
        };
        let append = if eligible.is_empty() {
            None
        } else {
            let to_remove = eligible.clone();
            self.cleanup_group_metadata(std::slice::from_ref(&gid), move |g| {
                g.remove_offsets(&to_remove)
            })
        };
        results.extend(eligible.into_iter().map(|tp| (tp, None)));
        Ok((results, append))
    }

    fn on_offsets_expiration(&mut self, ctx: &mut Context<Self>) {
        if self.status != PartitionStatus::Active {
            return;
        }
        let now = now_ms();
        let retention = self.config.offsets_retention.as_millis() as i64;
        let group_ids: Vec<String> = self.groups.keys().cloned().collect();
        let mut expired_total = 0usize;
        let append = self.cleanup_group_metadata(&group_ids, |g| {
            let expired = g.remove_expired_offsets(now, retention);
            expired_total += expired.len();
            expired
        });
        if expired_total > 0 {
            tracing::info!(
                partition = self.partition,
                offsets = expired_total,
                "expired offsets"
            );
        }
        if let Some(append) = append {
            let partition = self.partition;
            ctx.spawn(
                async move {
                    if let Err(e) = append.await {
                        tracing::warn!(partition, error = %e, "failed to append expiry tombstones");
                    }
                }
                .into_actor(self),
            );
        }
        self.deadlines.schedule(
            DeadlineKey::OffsetsExpiration,
            Instant::now() + self.config.offsets_retention_check_interval,
        );
    }

    // ---- Load / Unload ----

    fn handle_load(&mut self, ctx: &mut Context<Self>) {
        if matches!(
            self.status,
            PartitionStatus::Loading | PartitionStatus::Active
        ) {
            return;
        }
        self.epoch += 1;
        self.status = PartitionStatus::Loading;
        self.groups.clear();
        self.deadlines.clear();
        let epoch = self.epoch;
        let partition = self.partition;
        tracing::info!(partition, "loading offsets and group metadata");
        let started = Instant::now();
        let fut = self.store.load(partition);
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            if act.epoch != epoch || act.status != PartitionStatus::Loading {
                return;
            }
            match res {
                Ok(records) => {
                    let n = records.len();
                    act.replay(records);
                    act.status = PartitionStatus::Active;
                    tracing::info!(partition, records = n, groups = act.groups.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "finished loading offsets and group metadata");
                    act.on_groups_loaded(ctx);
                }
                Err(e) => {
                    tracing::error!(partition, error = %e, "error loading offsets and group metadata");
                    act.status = PartitionStatus::LoadFailed;
                }
            }
            act.rearm(ctx);
        }));
    }

    /// Rebuilds groups and offsets from the partition's records in log order: later
    /// records win, tombstones delete (Kafka's `loadGroupsAndOffsets`).
    fn replay(&mut self, records: Vec<OffsetsRecord>) {
        let mut offsets: HashMap<(String, TopicPartition), CommittedOffset> = HashMap::new();
        let mut groups: HashMap<String, GroupMetadataValue> = HashMap::new();
        for (key, value) in records {
            let key = match RecordKey::decode(&key) {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(partition = self.partition, error = %e, "skipping undecodable __consumer_offsets key");
                    continue;
                }
            };
            match key {
                RecordKey::OffsetCommit {
                    group,
                    topic,
                    partition,
                } => {
                    let k = (group, TopicPartition { topic, partition });
                    match value {
                        None => {
                            offsets.remove(&k);
                        }
                        Some(v) => match OffsetCommitValue::decode(&v) {
                            Ok(v) => {
                                let seq = self.next_seq;
                                self.next_seq += 1;
                                offsets.insert(
                                    k,
                                    CommittedOffset {
                                        seq,
                                        value: OffsetAndMetadata {
                                            offset: v.offset,
                                            leader_epoch: (v.leader_epoch >= 0)
                                                .then_some(v.leader_epoch),
                                            metadata: v.metadata,
                                            commit_timestamp: v.commit_timestamp,
                                            expire_timestamp: (v.expire_timestamp >= 0)
                                                .then_some(v.expire_timestamp),
                                        },
                                    },
                                );
                            }
                            Err(e) => {
                                tracing::warn!(group = %k.0, error = %e, "skipping undecodable offset commit value")
                            }
                        },
                    }
                }
                RecordKey::GroupMetadata { group } => match value {
                    None => {
                        groups.remove(&group);
                    }
                    Some(v) => match GroupMetadataValue::decode(&v) {
                        Ok(v) => {
                            groups.insert(group, v);
                        }
                        Err(e) => {
                            tracing::warn!(%group, error = %e, "skipping undecodable group metadata value")
                        }
                    },
                },
            }
        }
        // Groups with metadata first, then groups that only have offsets.
        for (gid, value) in groups {
            let mut group = self.new_group(&gid);
            group.generation_id = value.generation;
            group.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
            group.protocol_name = value.protocol.clone();
            let state = if value.members.is_empty() {
                GroupState::Empty
            } else {
                GroupState::Stable
            };
            for m in value.members {
                let protocols = match &value.protocol {
                    Some(p) => vec![(p.clone(), m.subscription)],
                    None => Vec::new(),
                };
                let member = MemberMetadata {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout,
                    session_timeout_ms: m.session_timeout,
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    supported_protocols: protocols,
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                };
                group.add(member, None);
            }
            // `add` made the first member leader; the record names the real one.
            group.set_leader(value.leader);
            group.set_loaded_state(
                state,
                (value.current_state_timestamp >= 0).then_some(value.current_state_timestamp),
            );
            group.refresh_subscribed_topics();
            self.groups.insert(gid, group);
        }
        for ((gid, tp), committed) in offsets {
            if !self.groups.contains_key(&gid) {
                let group = self.new_group(&gid);
                self.groups.insert(gid.clone(), group);
            }
            if let Some(group) = self.groups.get_mut(&gid) {
                group.initialize_offsets([(tp, committed)]);
            }
        }
    }

    /// Kafka's `onGroupLoaded`: restart every member's session; an oversized group
    /// rebalances so members get a chance to commit.
    fn on_groups_loaded(&mut self, ctx: &mut Context<Self>) {
        let max = usize::try_from(self.config.max_size).unwrap_or(0);
        let group_ids: Vec<String> = self.groups.keys().cloned().collect();
        for gid in group_ids {
            let members: Vec<String> = self
                .groups
                .get(&gid)
                .map(|g| g.member_ids())
                .unwrap_or_default();
            if members.len() > max {
                self.prepare_rebalance(&gid, "freshly loaded group is over capacity", ctx);
            }
            for m in members {
                self.heartbeat_member(&gid, &m);
            }
        }
        self.deadlines.schedule(
            DeadlineKey::OffsetsExpiration,
            Instant::now() + self.config.offsets_retention_check_interval,
        );
    }

    fn handle_unload(&mut self, ctx: &mut Context<Self>) {
        self.epoch += 1;
        self.status = PartitionStatus::Unloaded;
        tracing::info!(
            partition = self.partition,
            groups = self.groups.len(),
            "unloading group metadata"
        );
        for (_, mut group) in self.groups.drain() {
            for member_id in group.member_ids() {
                group.maybe_invoke_join_callback(
                    &member_id,
                    JoinGroupResult::error(member_id.clone(), ResponseError::NotCoordinator),
                );
                group.maybe_invoke_sync_callback(
                    &member_id,
                    SyncGroupResult::error(ResponseError::NotCoordinator),
                );
            }
            group.transition_to(GroupState::Dead, now_ms());
        }
        self.deadlines.clear();
        self.rearm(ctx);
    }
}

/// An append to the store that the reply waits for.
type PendingAppend = BoxFuture<'static, Result<(), ResponseError>>;

/// Per-partition outcome of an offsets request.
pub type PartitionResults = Vec<(TopicPartition, Option<ResponseError>)>;

fn ms(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// How Kafka reports a failed group-metadata write (`storeGroup`).
fn group_store_error(e: ResponseError) -> ResponseError {
    use ResponseError::*;
    match e {
        UnknownTopicOrPartition | NotEnoughReplicas | NotEnoughReplicasAfterAppend => {
            CoordinatorNotAvailable
        }
        NotLeaderOrFollower | KafkaStorageError => NotCoordinator,
        RequestTimedOut => RebalanceInProgress,
        MessageTooLarge | RecordListTooLarge | InvalidFetchSize => UnknownServerError,
        other => other,
    }
}

/// How Kafka reports a failed offset-commit write (`storeOffsets`).
fn offset_store_error(e: ResponseError) -> ResponseError {
    use ResponseError::*;
    match e {
        UnknownTopicOrPartition | NotEnoughReplicas | NotEnoughReplicasAfterAppend => {
            CoordinatorNotAvailable
        }
        NotLeaderOrFollower | KafkaStorageError => NotCoordinator,
        MessageTooLarge | RecordListTooLarge | InvalidFetchSize => InvalidCommitOffsetSize,
        other => other,
    }
}

impl Actor for GroupCoordinator {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(partition = self.partition, "group coordinator started");
    }
}

impl Handler<JoinGroup> for GroupCoordinator {
    type Result = ResponseFuture<JoinGroupResult>;

    fn handle(&mut self, msg: JoinGroup, ctx: &mut Self::Context) -> Self::Result {
        let member_id = msg.member_id.clone();
        let (tx, rx) = oneshot::channel();
        self.handle_join_group(msg, tx, ctx);
        self.rearm(ctx);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                JoinGroupResult::error(member_id, ResponseError::CoordinatorNotAvailable)
            })
        })
    }
}

impl Handler<SyncGroup> for GroupCoordinator {
    type Result = ResponseFuture<SyncGroupResult>;

    fn handle(&mut self, msg: SyncGroup, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.handle_sync_group(msg, tx, ctx);
        self.rearm(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| SyncGroupResult::error(ResponseError::CoordinatorNotAvailable))
        })
    }
}

impl Handler<Heartbeat> for GroupCoordinator {
    type Result = Result<(), ResponseError>;

    fn handle(&mut self, msg: Heartbeat, ctx: &mut Self::Context) -> Self::Result {
        let r = self.handle_heartbeat(msg);
        self.rearm(ctx);
        r
    }
}

impl Handler<LeaveGroup> for GroupCoordinator {
    type Result = MessageResult<LeaveGroup>;

    fn handle(&mut self, msg: LeaveGroup, ctx: &mut Self::Context) -> Self::Result {
        let r = self.handle_leave_group(msg, ctx);
        self.rearm(ctx);
        MessageResult(r)
    }
}

impl Handler<OffsetCommit> for GroupCoordinator {
    type Result = ResponseFuture<Vec<(TopicPartition, Option<ResponseError>)>>;

    fn handle(&mut self, msg: OffsetCommit, ctx: &mut Self::Context) -> Self::Result {
        let tps: Vec<TopicPartition> = msg.offsets.iter().map(|(tp, _)| tp.clone()).collect();
        let (tx, rx) = oneshot::channel();
        self.handle_offset_commit(msg, tx, ctx);
        self.rearm(ctx);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                tps.into_iter()
                    .map(|tp| (tp, Some(ResponseError::CoordinatorNotAvailable)))
                    .collect()
            })
        })
    }
}

impl Handler<OffsetFetch> for GroupCoordinator {
    type Result = Result<Vec<FetchedOffset>, ResponseError>;

    fn handle(&mut self, msg: OffsetFetch, _ctx: &mut Self::Context) -> Self::Result {
        self.handle_offset_fetch(msg)
    }
}

impl Handler<ListGroups> for GroupCoordinator {
    type Result = MessageResult<ListGroups>;

    fn handle(&mut self, msg: ListGroups, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.handle_list_groups(msg))
    }
}

impl Handler<DescribeGroup> for GroupCoordinator {
    type Result = MessageResult<DescribeGroup>;

    fn handle(&mut self, msg: DescribeGroup, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.handle_describe_group(msg))
    }
}

impl Handler<DeleteGroups> for GroupCoordinator {
    type Result = ResponseFuture<Vec<(String, Option<ResponseError>)>>;

    fn handle(&mut self, msg: DeleteGroups, ctx: &mut Self::Context) -> Self::Result {
        let (results, append) = self.handle_delete_groups(msg);
        self.rearm(ctx);
        Box::pin(async move {
            // Deletions are answered once their tombstones are durable; a failed append is
            // reported on the groups that were deleted.
            let error = match append {
                Some(append) => append.await.err().map(offset_store_error),
                None => None,
            };
            results
                .into_iter()
                .map(|(gid, e)| match (e, error) {
                    (None, Some(append_error)) => (gid, Some(append_error)),
                    (e, _) => (gid, e),
                })
                .collect()
        })
    }
}

impl Handler<OffsetDelete> for GroupCoordinator {
    type Result =
        ResponseFuture<Result<Vec<(TopicPartition, Option<ResponseError>)>, ResponseError>>;

    fn handle(&mut self, msg: OffsetDelete, ctx: &mut Self::Context) -> Self::Result {
        let outcome = self.handle_offset_delete(msg);
        self.rearm(ctx);
        match outcome {
            Err(e) => Box::pin(async move { Err(e) }),
            Ok((results, append)) => Box::pin(async move {
                let error = match append {
                    Some(append) => append.await.err().map(offset_store_error),
                    None => None,
                };
                Ok(results
                    .into_iter()
                    .map(|(tp, e)| match (e, error) {
                        (None, Some(append_error)) => (tp, Some(append_error)),
                        (e, _) => (tp, e),
                    })
                    .collect())
            }),
        }
    }
}

impl Handler<Load> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, _msg: Load, ctx: &mut Self::Context) {
        self.handle_load(ctx);
        self.rearm(ctx);
    }
}

impl Handler<Unload> for GroupCoordinator {
    type Result = ();

    fn handle(&mut self, _msg: Unload, ctx: &mut Self::Context) {
        self.handle_unload(ctx);
    }
}

impl Handler<GetStatus> for GroupCoordinator {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::group::offsets_records::RecordKey;
    use crate::actors::group::store::InMemoryGroupStore;

    const WAIT: Duration = Duration::from_secs(5);

    fn config() -> GroupConfig {
        GroupConfig {
            // One partition: every group belongs to partition 0.
            offsets_topic_num_partitions: 1,
            min_session_timeout_ms: 10,
            max_session_timeout_ms: 60_000,
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        }
    }

    /// Consumer protocol subscription v0 to `topics`.
    fn subscription(topics: &[&str]) -> Bytes {
        let mut b = vec![0u8, 0];
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for t in topics {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        b.extend_from_slice(&(-1i32).to_be_bytes());
        Bytes::from(b)
    }

    fn join(group: &str, member: &str) -> JoinGroup {
        JoinGroup {
            group_id: group.into(),
            member_id: member.into(),
            group_instance_id: None,
            require_known_member_id: false,
            support_skipping_assignment: false,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 2_000,
            session_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), subscription(&["t"]))],
            reason: None,
        }
    }

    fn sync(group: &str, member: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncGroup {
        SyncGroup {
            group_id: group.into(),
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::copy_from_slice(a.as_bytes())))
                .collect(),
        }
    }

    fn heartbeat(group: &str, member: &str, generation: i32) -> Heartbeat {
        Heartbeat {
            group_id: group.into(),
            member_id: member.into(),
            group_instance_id: None,
            generation_id: generation,
        }
    }

    fn offset(o: i64) -> OffsetAndMetadata {
        OffsetAndMetadata {
            offset: o,
            leader_epoch: Some(4),
            metadata: "m".into(),
            commit_timestamp: now_ms(),
            expire_timestamp: None,
        }
    }

    fn commit(
        group: &str,
        member: &str,
        generation: i32,
        tp: &TopicPartition,
        o: i64,
    ) -> OffsetCommit {
        OffsetCommit {
            group_id: group.into(),
            member_id: member.into(),
            group_instance_id: None,
            generation_id: generation,
            offsets: vec![(tp.clone(), offset(o))],
        }
    }

    fn fetch(group: &str, tp: &TopicPartition) -> OffsetFetch {
        OffsetFetch {
            group_id: group.into(),
            require_stable: false,
            partitions: Some(vec![tp.clone()]),
        }
    }

    async fn within<F: Future>(what: &str, fut: F) -> F::Output {
        tokio::time::timeout(WAIT, fut)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// Polls `check` until it holds, failing after the deadline.
    async fn eventually<F, Fut>(what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + WAIT;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn start(config: GroupConfig, store: &InMemoryGroupStore) -> Addr<GroupCoordinator> {
        let addr = GroupCoordinator::new(0, config, Arc::new(store.clone())).start();
        addr.do_send(Load);
        wait_active(&addr).await;
        addr
    }

    async fn wait_active(addr: &Addr<GroupCoordinator>) {
        eventually("the partition is loaded", || async {
            addr.send(GetStatus).await.unwrap() == PartitionStatus::Active
        })
        .await;
    }

    async fn describe(addr: &Addr<GroupCoordinator>, group: &str) -> DescribeGroupResult {
        addr.send(DescribeGroup {
            group_id: group.into(),
        })
        .await
        .unwrap()
    }

    fn spawn_join(
        addr: &Addr<GroupCoordinator>,
        msg: JoinGroup,
    ) -> tokio::task::JoinHandle<JoinGroupResult> {
        let req = addr.send(msg);
        actix_rt::spawn(async move { req.await.expect("coordinator alive") })
    }

    fn spawn_sync(
        addr: &Addr<GroupCoordinator>,
        msg: SyncGroup,
    ) -> tokio::task::JoinHandle<SyncGroupResult> {
        let req = addr.send(msg);
        actix_rt::spawn(async move { req.await.expect("coordinator alive") })
    }

    /// Joins `members` (each a JoinGroup) concurrently within the initial delay, then has
    /// the leader assign `<member id>-assignment` to everyone. Returns the join results in
    /// the order given.
    async fn stable_group(
        addr: &Addr<GroupCoordinator>,
        joins: Vec<JoinGroup>,
    ) -> Vec<JoinGroupResult> {
        let handles: Vec<_> = joins.into_iter().map(|j| spawn_join(addr, j)).collect();
        let mut results = Vec::new();
        for h in handles {
            results.push(within("join", h).await.unwrap());
        }
        let leader = results[0].leader_id.clone();
        let generation = results[0].generation_id;
        let group = {
            let d = describe(addr, "g").await;
            assert_eq!(d.state, "CompletingRebalance");
            "g"
        };
        let assignments: Vec<(String, String)> = results
            .iter()
            .map(|r| (r.member_id.clone(), format!("{}-assignment", r.member_id)))
            .collect();
        let mut syncs = Vec::new();
        for r in &results {
            let msg = if r.member_id == leader {
                let a: Vec<(&str, &str)> = assignments
                    .iter()
                    .map(|(m, a)| (m.as_str(), a.as_str()))
                    .collect();
                sync(group, &r.member_id, generation, &a)
            } else {
                sync(group, &r.member_id, generation, &[])
            };
            syncs.push(spawn_sync(addr, msg));
        }
        for (h, r) in syncs.into_iter().zip(&results) {
            let s = within("sync", h).await.unwrap();
            assert_eq!(s.error, None);
            assert_eq!(
                s.assignment,
                Bytes::from(format!("{}-assignment", r.member_id))
            );
        }
        assert_eq!(describe(addr, group).await.state, "Stable");
        results
    }

    fn with_delay(ms: i32) -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay_ms: ms,
            ..config()
        }
    }

    #[actix::test]
    async fn two_members_join_one_generation_and_sync_distributes_the_leaders_assignment() {
        let store = InMemoryGroupStore::new();
        let addr = start(with_delay(50), &store).await;
        let results = stable_group(&addr, vec![join("g", ""), join("g", "")]).await;
        let (a, b) = (&results[0], &results[1]);
        assert_eq!(a.error, None);
        assert_eq!(b.error, None);
        assert_eq!(a.generation_id, 1);
        assert_eq!(b.generation_id, 1);
        assert_ne!(a.member_id, b.member_id);
        assert!(a.member_id.starts_with("client-"));
        assert_eq!(a.leader_id, b.leader_id);
        assert_eq!(a.protocol_name.as_deref(), Some("range"));
        let (leader, follower) = if a.leader_id == a.member_id {
            (a, b)
        } else {
            (b, a)
        };
        assert_eq!(
            leader.members.len(),
            2,
            "the leader gets every member's metadata"
        );
        assert!(follower.members.is_empty());
        assert!(leader
            .members
            .iter()
            .all(|m| m.metadata == subscription(&["t"])));
        // The assignment is durable in __consumer_offsets as a GroupMetadataValue.
        let records = store.records(0);
        let (key, value) = records.last().expect("group metadata written");
        assert_eq!(
            RecordKey::decode(key).unwrap(),
            RecordKey::GroupMetadata { group: "g".into() }
        );
        let value = GroupMetadataValue::decode(value.as_ref().unwrap()).unwrap();
        assert_eq!(value.generation, 1);
        assert_eq!(value.members.len(), 2);
        assert!(value
            .members
            .iter()
            .all(|m| m.assignment == format!("{}-assignment", m.member_id)));
    }

    #[actix::test]
    async fn third_member_triggers_a_rebalance_that_old_members_must_rejoin() {
        let store = InMemoryGroupStore::new();
        let addr = start(with_delay(30), &store).await;
        let old = stable_group(&addr, vec![join("g", ""), join("g", "")]).await;
        let newcomer = spawn_join(&addr, join("g", ""));
        eventually("the group prepares a rebalance", || async {
            describe(&addr, "g").await.state == "PreparingRebalance"
        })
        .await;
        for m in &old {
            let hb = addr.send(heartbeat("g", &m.member_id, 1)).await.unwrap();
            assert_eq!(hb, Err(ResponseError::RebalanceInProgress));
        }
        let rejoins: Vec<_> = old
            .iter()
            .map(|m| spawn_join(&addr, join("g", &m.member_id)))
            .collect();
        let newcomer = within("newcomer join", newcomer).await.unwrap();
        assert_eq!(newcomer.error, None);
        assert_eq!(newcomer.generation_id, 2);
        for h in rejoins {
            let r = within("rejoin", h).await.unwrap();
            assert_eq!(r.generation_id, 2);
            if r.member_id == r.leader_id {
                assert_eq!(r.members.len(), 3);
            }
        }
        assert_eq!(describe(&addr, "g").await.state, "CompletingRebalance");
    }

    #[actix::test]
    async fn member_that_stops_heartbeating_expires_and_the_group_rebalances() {
        let store = InMemoryGroupStore::new();
        let addr = start(with_delay(30), &store).await;
        let mut short = join("g", "");
        short.session_timeout_ms = 100;
        let results = stable_group(&addr, vec![join("g", ""), short]).await;
        let (alive, silent) = (&results[0], &results[1]);
        // Only `alive` heartbeats; `silent`'s 100 ms session runs out.
        eventually("the silent member's expiry starts a rebalance", || async {
            addr.send(heartbeat("g", &alive.member_id, 1))
                .await
                .unwrap()
                == Err(ResponseError::RebalanceInProgress)
        })
        .await;
        let r = within("rejoin", spawn_join(&addr, join("g", &alive.member_id)))
            .await
            .unwrap();
        assert_eq!(r.generation_id, 2);
        assert_eq!(r.members.len(), 1);
        assert_eq!(r.leader_id, alive.member_id);
        let hb = addr
            .send(heartbeat("g", &silent.member_id, 2))
            .await
            .unwrap();
        assert_eq!(hb, Err(ResponseError::UnknownMemberId));
    }

    #[actix::test]
    async fn leave_group_triggers_a_rebalance() {
        let store = InMemoryGroupStore::new();
        let addr = start(with_delay(30), &store).await;
        let results = stable_group(&addr, vec![join("g", ""), join("g", "")]).await;
        let left = addr
            .send(LeaveGroup {
                group_id: "g".into(),
                members: vec![LeavingMember {
                    member_id: results[1].member_id.clone(),
                    group_instance_id: None,
                    reason: Some("shutting down".into()),
                }],
            })
            .await
            .unwrap();
        assert_eq!(left.error, None);
        assert_eq!(left.members[0].error, None);
        assert_eq!(describe(&addr, "g").await.state, "PreparingRebalance");
        let r = within(
            "rejoin",
            spawn_join(&addr, join("g", &results[0].member_id)),
        )
        .await
        .unwrap();
        assert_eq!(r.generation_id, 2);
        assert_eq!(r.members.len(), 1);
    }

    #[actix::test]
    async fn member_id_required_then_join_with_the_given_id() {
        let store = InMemoryGroupStore::new();
        let addr = start(config(), &store).await;
        let mut first = join("g", "");
        first.require_known_member_id = true;
        let r = addr.send(first.clone()).await.unwrap();
        assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
        assert!(r.member_id.starts_with("client-"));
        assert_eq!(
            describe(&addr, "g").await.state,
            "Empty",
            "a pending member does not rebalance"
        );
        let mut again = first.clone();
        again.member_id = r.member_id.clone();
        let joined = within("join", spawn_join(&addr, again)).await.unwrap();
        assert_eq!(joined.error, None);
        assert_eq!(joined.member_id, r.member_id);
        assert_eq!(joined.generation_id, 1);
        // An id the coordinator never handed out is refused.
        let mut forged = first;
        forged.member_id = "client-forged".into();
        let r = addr.send(forged).await.unwrap();
        assert_eq!(r.error, Some(ResponseError::UnknownMemberId));
    }

    #[actix::test]
    async fn pending_member_that_never_rejoins_expires_and_unblocks_the_rebalance() {
        let store = InMemoryGroupStore::new();
        let addr = start(config(), &store).await;
        let leader = stable_group(&addr, vec![join("g", "")]).await.remove(0);
        let mut pending = join("g", "");
        pending.require_known_member_id = true;
        pending.session_timeout_ms = 100;
        let r = addr.send(pending).await.unwrap();
        assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
        // The leader rejoins (asks for a rebalance); the rebalance waits for the pending
        // member until its session timeout removes it.
        let started = Instant::now();
        let rejoined = within(
            "leader rejoin",
            spawn_join(&addr, join("g", &leader.member_id)),
        )
        .await
        .unwrap();
        assert_eq!(rejoined.error, None);
        assert_eq!(rejoined.generation_id, 2);
        assert_eq!(rejoined.members.len(), 1);
        assert!(started.elapsed() >= Duration::from_millis(90));
    }

    fn static_join(instance: &str, member: &str) -> JoinGroup {
        JoinGroup {
            group_instance_id: Some(instance.into()),
            ..join("g", member)
        }
    }

    #[actix::test]
    async fn static_member_rejoin_keeps_its_assignment_without_rebalance_and_fences_the_old_id() {
        let store = InMemoryGroupStore::new();
        let addr = start(with_delay(30), &store).await;
        let results = stable_group(&addr, vec![static_join("ia", ""), static_join("ib", "")]).await;
        let old = results
            .iter()
            .find(|r| r.member_id.starts_with("ia-"))
            .unwrap()
            .clone();
        let other = results
            .iter()
            .find(|r| r.member_id.starts_with("ib-"))
            .unwrap();
        // The process behind "ia" restarts and joins without its member id.
        let rejoined = within("static rejoin", spawn_join(&addr, static_join("ia", "")))
            .await
            .unwrap();
        assert_eq!(rejoined.error, None);
        assert_ne!(rejoined.member_id, old.member_id);
        assert!(rejoined.member_id.starts_with("ia-"));
        assert_eq!(rejoined.generation_id, 1, "no new generation");
        assert_ne!(
            rejoined.leader_id, rejoined.member_id,
            "the old leader id is returned so the member does not reassign"
        );
        assert_eq!(describe(&addr, "g").await.state, "Stable");
        let s = addr
            .send(SyncGroup {
                group_instance_id: Some("ia".into()),
                ..sync("g", &rejoined.member_id, 1, &[])
            })
            .await
            .unwrap();
        assert_eq!(s.error, None);
        assert_eq!(
            s.assignment,
            Bytes::from(format!("{}-assignment", old.member_id))
        );
        let fenced = addr
            .send(Heartbeat {
                group_instance_id: Some("ia".into()),
                ..heartbeat("g", &old.member_id, 1)
            })
            .await
            .unwrap();
        assert_eq!(fenced, Err(ResponseError::FencedInstanceId));
        let fine = addr
            .send(Heartbeat {
                group_instance_id: Some("ib".into()),
                ..heartbeat("g", &other.member_id, 1)
            })
            .await
            .unwrap();
        assert_eq!(fine, Ok(()));
    }

    #[actix::test]
    async fn heartbeat_errors_follow_kafka() {
        let store = InMemoryGroupStore::new();
        let addr = start(config(), &store).await;
        assert_eq!(
            addr.send(heartbeat("nogroup", "m", 1)).await.unwrap(),
            Err(ResponseError::UnknownMemberId)
        );
        let m = stable_group(&addr, vec![join("g", "")]).await.remove(0);
        assert_eq!(
            addr.send(heartbeat("g", &m.member_id, 1)).await.unwrap(),
            Ok(())
        );
        assert_eq!(
            addr.send(heartbeat("g", "stranger", 1)).await.unwrap(),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            addr.send(heartbeat("g", &m.member_id, 7)).await.unwrap(),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            addr.send(heartbeat("", &m.member_id, 1)).await.unwrap(),
            Err(ResponseError::InvalidGroupId)
        );
        // A second member arrives: heartbeats now ask the member to rejoin.
        let _newcomer = spawn_join(&addr, join("g", ""));
        eventually("a rebalance starts", || async {
            addr.send(heartbeat("g", &m.member_id, 1)).await.unwrap()
                == Err(ResponseError::RebalanceInProgress)
        })
        .await;
    }

    #[actix::test]
    async fn join_outside_session_timeout_bounds_or_beyond_max_size_is_refused() {
        let store = InMemoryGroupStore::new();
        let addr = start(
            GroupConfig {
                max_size: 1,
                ..config()
            },
            &store,
        )
        .await;
        let mut j = join("g", "");
        j.session_timeout_ms = 5;
        assert_eq!(
            addr.send(j).await.unwrap().error,
            Some(ResponseError::InvalidSessionTimeout)
        );
        let mut j = join("g", "");
        j.session_timeout_ms = 60_001;
        assert_eq!(
            addr.send(j).await.unwrap().error,
            Some(ResponseError::InvalidSessionTimeout)
        );
        stable_group(&addr, vec![join("g", "")]).await;
        assert_eq!(
            addr.send(join("g", "")).await.unwrap().error,
            Some(ResponseError::GroupMaxSizeReached)
        );
        let mut other_protocol = join("g", "");
        other_protocol.protocols = vec![("sticky".into(), Bytes::new())];
        let max = GroupConfig {
            max_size: 10,
            ..config()
        };
        let addr = start(max, &store).await;
        // (Fresh coordinator on the same store: the group was loaded as Stable.)
        assert_eq!(
            addr.send(other_protocol).await.unwrap().error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
    }

    #[actix::test]
    async fn offset_commit_then_fetch_returns_the_committed_offset() {
        let store = InMemoryGroupStore::new();
        let addr = start(config(), &store).await;
        let m = stable_group(&addr, vec![join("g", "")]).await.remove(0);
        let tp = TopicPartition::new("t", 3);
        let r = addr
            .send(commit("g", &m.member_id, 1, &tp, 42))
            .await
            .unwrap();
        assert_eq!(r, vec![(tp.clone(), None)]);
        let f = addr.send(fetch("g", &tp)).await.unwrap().unwrap();
        assert_eq!(f[0].offset, 42);
        assert_eq!(f[0].leader_epoch, Some(4));
        assert_eq!(f[0].metadata, "m");
        let none = addr
            .send(fetch("g", &TopicPartition::new("t", 0)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(none[0].offset, -1);
        // The record is Kafka's OffsetCommitValue v3 under an OffsetCommitKey.
        let (key, value) = store.records(0).last().cloned().unwrap();
        assert_eq!(
            RecordKey::decode(&key).unwrap(),
            RecordKey::OffsetCommit {
                group: "g".into(),
                topic: "t".into(),
                partition: 3
            }
        );
        let v = OffsetCommitValue::decode(value.as_ref().unwrap()).unwrap();
        assert_eq!(
            (v.offset, v.leader_epoch, v.metadata.as_str()),
            (42, 4, "m")
        );
        assert_eq!(&value.unwrap()[..2], &[0, 3]);
    }

    #[actix::test]
    async fn commit_from_a_stale_generation_or_unknown_member_is_refused() {
        let store = InMemoryGroupStore::new();
        let addr = start(config(), &store).await;
        let m = stable_group(&addr, vec![join("g", "")]).await.remove(0);
        let tp = TopicPartition::new("t", 0);
        let stale = addr
            .send(commit("g", &m.member_id, 0, &tp, 1))
            .await
            .unwrap();
        assert_eq!(stale[0].1, Some(ResponseError::IllegalGeneration));
        let stranger = addr.send(commit("g", "x", 1, &tp, 1)).await.unwrap();
        assert_eq!(stranger[0].1, Some(ResponseError::UnknownMemberId));
        // Outside group management (-1, no member) only while the group is empty.
        let simple = addr.send(commit("g", "", -1, &tp, 1)).await.unwrap();
        assert_eq!(simple[0].1, Some(ResponseError::UnknownMemberId));
        let unknown_group = addr.send(commit("other", "m", 3, &tp, 1)).await.unwrap();
        assert_eq!(unknown_group[0].1, Some(ResponseError::IllegalGeneration));
        let f = addr.send(fetch("g", &tp)).await.unwrap().unwrap();
        assert_eq!(f[0].offset, -1, "refused commits store nothing");
    }

    #[actix::test]
    async fn offset_commit_completes_only_when_durable() {
        let store = InMemoryGroupStore::new();
        let addr = start(config(), &store).await;
        let tp = TopicPartition::new("t", 0);
        store.hold_appends(true);
        let pending = addr.send(commit("simple", "", -1, &tp, 7));
        let pending = actix_rt::spawn(pending);
        eventually("the commit is in flight", || async {
            let mut f = fetch("simple", &tp);
            f.require_stable = true;
            addr.send(f).await.unwrap().unwrap()[0].error
                == Some(ResponseError::UnstableOffsetCommit)
        })
        .await;
        assert!(
            !pending.is_finished(),
            "commit answered before it was durable"
        );
        assert_eq!(
            addr.send(fetch("simple", &tp)).await.unwrap().unwrap()[0].offset,
            -1
        );
        store.hold_appends(false);
        let r = within("commit", pending).await.unwrap().unwrap();
        assert_eq!(r[0].1, None);
        assert_eq!(
            addr.send(fetch("simple", &tp)).await.unwrap().unwrap()[0].offset,
            7
        );
    }

    #[actix::test]
    async fn failed_appends_are_reported_as_kafka_does() {
        let store = InMemoryGroupStore::new();
        let addr = start(config(), &store).await;
        let tp = TopicPartition::new("t", 0);
        store.fail_appends(Some(ResponseError::NotLeaderOrFollower));
        let r = addr.send(commit("simple", "", -1, &tp, 1)).await.unwrap();
        assert_eq!(r[0].1, Some(ResponseError::NotCoordinator));
        store.fail_appends(Some(ResponseError::NotEnoughReplicas));
        let r = addr.send(commit("simple", "", -1, &tp, 1)).await.unwrap();
        assert_eq!(r[0].1, Some(ResponseError::CoordinatorNotAvailable));
        // A group write failing in SyncGroup fails the sync and restarts the rebalance.
        let j = within("join", spawn_join(&addr, join("g", "")))
            .await
            .unwrap();
        let s = addr
            .send(sync("g", &j.member_id, 1, &[(&j.member_id, "x")]))
            .await
            .unwrap();
        assert_eq!(s.error, Some(ResponseError::CoordinatorNotAvailable));
        assert_eq!(describe(&addr, "g").await.state, "PreparingRebalance");
        let mut big = commit("simple", "", -1, &tp, 1);
        big.offsets[0].1.metadata = "x".repeat(5000);
        store.fail_appends(None);
        let r = addr.send(big).await.unwrap();
        assert_eq!(r[0].1, Some(ResponseError::OffsetMetadataTooLarge));
    }

    #[actix::test]
    async fn load_replays_offsets_and_group_metadata_after_unload() {
        let store = InMemoryGroupStore::new();
        let addr = start(with_delay(30), &store).await;
        let results = stable_group(&addr, vec![join("g", ""), join("g", "")]).await;
        let tp = TopicPartition::new("t", 1);
        let m0 = &results[0].member_id;
        assert_eq!(
            addr.send(commit("g", m0, 1, &tp, 5)).await.unwrap()[0].1,
            None
        );
        assert_eq!(
            addr.send(commit("g", m0, 1, &tp, 9)).await.unwrap()[0].1,
            None
        );
        assert_eq!(
            addr.send(commit("simple", "", -1, &tp, 3)).await.unwrap()[0].1,
            None
        );
        let before = describe(&addr, "g").await;

        addr.send(Unload).await.unwrap();
        assert_eq!(
            addr.send(heartbeat("g", m0, 1)).await.unwrap(),
            Err(ResponseError::NotCoordinator)
        );
        assert_eq!(
            addr.send(fetch("g", &tp)).await.unwrap(),
            Err(ResponseError::NotCoordinator)
        );

        addr.send(Load).await.unwrap();
        wait_active(&addr).await;
        let after = describe(&addr, "g").await;
        assert_eq!(
            after, before,
            "members, generation, protocol and assignments survive"
        );
        assert_eq!(after.state, "Stable");
        assert_eq!(after.generation_id, 1);
        assert_eq!(
            addr.send(fetch("g", &tp)).await.unwrap().unwrap()[0].offset,
            9
        );
        assert_eq!(
            addr.send(fetch("simple", &tp)).await.unwrap().unwrap()[0].offset,
            3
        );
        // Members carry on with their generation; the leader is the recorded one.
        assert_eq!(addr.send(heartbeat("g", m0, 1)).await.unwrap(), Ok(()));
        let s = addr.send(sync("g", m0, 1, &[])).await.unwrap();
        assert_eq!(s.assignment, Bytes::from(format!("{m0}-assignment")));

        // Another coordinator over the same log (failover) sees the same state.
        let successor = start(config(), &store).await;
        assert_eq!(describe(&successor, "g").await, before);
    }

    #[actix::test]
    async fn requests_during_load_get_load_in_progress() {
        let store = InMemoryGroupStore::new();
        store.hold_loads(true);
        let addr = GroupCoordinator::new(0, config(), Arc::new(store.clone())).start();
        assert_eq!(
            addr.send(heartbeat("g", "m", 1)).await.unwrap(),
            Err(ResponseError::NotCoordinator),
            "not the coordinator before Load"
        );
        addr.send(Load).await.unwrap();
        assert_eq!(
            addr.send(join("g", "")).await.unwrap().error,
            Some(ResponseError::CoordinatorLoadInProgress)
        );
        assert_eq!(
            addr.send(fetch("g", &TopicPartition::new("t", 0)))
                .await
                .unwrap(),
            Err(ResponseError::CoordinatorLoadInProgress)
        );
        // Heartbeats are answered blindly, SyncGroup asks the member to rejoin.
        assert_eq!(addr.send(heartbeat("g", "m", 1)).await.unwrap(), Ok(()));
        assert_eq!(
            addr.send(sync("g", "m", 1, &[])).await.unwrap().error,
            Some(ResponseError::RebalanceInProgress)
        );
        store.hold_loads(false);
        wait_active(&addr).await;
    }

    #[actix::test]
    async fn unload_answers_parked_joins_with_not_coordinator() {
        let store = InMemoryGroupStore::new();
        let addr = start(with_delay(10_000), &store).await;
        let parked = spawn_join(&addr, join("g", ""));
        eventually("the join is parked", || async {
            describe(&addr, "g").await.state == "PreparingRebalance"
        })
        .await;
        addr.send(Unload).await.unwrap();
        let r = within("parked join", parked).await.unwrap();
        assert_eq!(r.error, Some(ResponseError::NotCoordinator));
    }

    #[actix::test]
    async fn tombstones_delete_offsets_and_groups_on_replay() {
        let store = InMemoryGroupStore::new();
        let addr = start(config(), &store).await;
        let (t0, t1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        for tp in [&t0, &t1] {
            assert_eq!(
                addr.send(commit("a", "", -1, tp, 1)).await.unwrap()[0].1,
                None
            );
            assert_eq!(
                addr.send(commit("b", "", -1, tp, 1)).await.unwrap()[0].1,
                None
            );
        }
        let deleted = addr
            .send(OffsetDelete {
                group_id: "a".into(),
                partitions: vec![t0.clone()],
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(deleted, vec![(t0.clone(), None)]);
        let r = addr
            .send(DeleteGroups {
                group_ids: vec!["b".into()],
            })
            .await
            .unwrap();
        assert_eq!(r, vec![("b".to_string(), None)]);
        let tombstones = store.records(0).iter().filter(|(_, v)| v.is_none()).count();
        assert_eq!(
            tombstones, 3,
            "one per deleted offset; b never had group metadata"
        );

        let successor = start(config(), &store).await;
        let fa = successor
            .send(OffsetFetch {
                group_id: "a".into(),
                require_stable: false,
                partitions: None,
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            fa.iter().map(|o| o.tp.clone()).collect::<Vec<_>>(),
            vec![t1]
        );
        assert_eq!(describe(&successor, "b").await.state, "Dead");
        let listed = successor.send(ListGroups { states: vec![] }).await.unwrap();
        assert_eq!(
            listed
                .groups
                .iter()
                .map(|g| g.group_id.as_str())
                .collect::<Vec<_>>(),
            vec!["a"]
        );
    }

    #[actix::test]
    async fn delete_groups_only_deletes_empty_groups() {
        let store = InMemoryGroupStore::new();
        let addr = start(config(), &store).await;
        let m = stable_group(&addr, vec![join("g", "")]).await.remove(0);
        let tp = TopicPartition::new("t", 0);
        addr.send(commit("g", &m.member_id, 1, &tp, 1))
            .await
            .unwrap();
        let del = || DeleteGroups {
            group_ids: vec!["g".into()],
        };
        assert_eq!(
            addr.send(del()).await.unwrap(),
            vec![("g".to_string(), Some(ResponseError::NonEmptyGroup))]
        );
        addr.send(LeaveGroup {
            group_id: "g".into(),
            members: vec![LeavingMember {
                member_id: m.member_id.clone(),
                group_instance_id: None,
                reason: None,
            }],
        })
        .await
        .unwrap();
        assert_eq!(describe(&addr, "g").await.state, "Empty");
        assert_eq!(
            addr.send(del()).await.unwrap(),
            vec![("g".to_string(), None)]
        );
        assert_eq!(
            addr.send(del()).await.unwrap(),
            vec![("g".to_string(), Some(ResponseError::GroupIdNotFound))]
        );
        assert_eq!(
            addr.send(fetch("g", &tp)).await.unwrap().unwrap()[0].offset,
            -1
        );
        // The group metadata tombstone is the last record.
        let (key, value) = store.records(0).last().cloned().unwrap();
        assert_eq!(
            RecordKey::decode(&key).unwrap(),
            RecordKey::GroupMetadata { group: "g".into() }
        );
        assert!(value.is_none());
    }

    #[actix::test]
    async fn offsets_of_empty_groups_expire_after_retention_but_active_subscriptions_stay() {
        let store = InMemoryGroupStore::new();
        let retention = GroupConfig {
            offsets_retention: Duration::from_millis(100),
            offsets_retention_check_interval: Duration::from_millis(20),
            ..config()
        };
        let addr = start(retention, &store).await;
        let tp = TopicPartition::new("t", 0);
        // "active" stays Stable and subscribed to t; "gone" becomes Empty.
        let active = stable_group(&addr, vec![join("g", "")]).await.remove(0);
        addr.send(commit("g", &active.member_id, 1, &tp, 11))
            .await
            .unwrap();
        let gone = within("join", spawn_join(&addr, join("gone", "")))
            .await
            .unwrap();
        addr.send(sync("gone", &gone.member_id, 1, &[]))
            .await
            .unwrap();
        addr.send(commit("gone", &gone.member_id, 1, &tp, 22))
            .await
            .unwrap();
        addr.send(LeaveGroup {
            group_id: "gone".into(),
            members: vec![LeavingMember {
                member_id: gone.member_id.clone(),
                group_instance_id: None,
                reason: None,
            }],
        })
        .await
        .unwrap();
        assert_eq!(describe(&addr, "gone").await.state, "Empty");
        eventually("the empty group's offsets expire", || async {
            addr.send(fetch("gone", &tp)).await.unwrap().unwrap()[0].offset == -1
        })
        .await;
        assert_eq!(
            describe(&addr, "gone").await.state,
            "Dead",
            "removed with its offsets"
        );
        assert_eq!(
            addr.send(heartbeat("g", &active.member_id, 1))
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            addr.send(fetch("g", &tp)).await.unwrap().unwrap()[0].offset,
            11
        );
        let gone_tombstoned = store.records(0).iter().any(|(k, v)| {
            v.is_none()
                && RecordKey::decode(k).unwrap()
                    == RecordKey::OffsetCommit {
                        group: "gone".into(),
                        topic: "t".into(),
                        partition: 0,
                    }
        });
        assert!(gone_tombstoned);
    }

    #[actix::test]
    async fn initial_rebalance_delay_holds_back_the_first_rebalance() {
        let store = InMemoryGroupStore::new();
        let addr = start(with_delay(500), &store).await;
        let started = Instant::now();
        let first = spawn_join(&addr, join("g", ""));
        let r = within("join", first).await.unwrap();
        assert_eq!(r.error, None);
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "completed after {:?}",
            started.elapsed()
        );
        // Rebalances of a group that is no longer empty are not delayed.
        let s = addr.send(sync("g", &r.member_id, 1, &[])).await.unwrap();
        assert_eq!(s.error, None);
        let started = Instant::now();
        let again = within("rejoin", spawn_join(&addr, join("g", &r.member_id)))
            .await
            .unwrap();
        assert_eq!(again.generation_id, 2);
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[actix::test]
    async fn member_joining_during_the_initial_delay_extends_it() {
        let store = InMemoryGroupStore::new();
        let addr = start(with_delay(100), &store).await;
        let started = Instant::now();
        let a = spawn_join(&addr, join("g", ""));
        let b = spawn_join(&addr, join("g", ""));
        let (a, b) = (
            within("join a", a).await.unwrap(),
            within("join b", b).await.unwrap(),
        );
        // First delay 100 ms; b arrived during it, so one more (min(delay, remaining)).
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "completed after {:?}",
            started.elapsed()
        );
        assert_eq!((a.generation_id, b.generation_id), (1, 1));
    }

    #[actix::test]
    async fn groups_of_other_partitions_get_not_coordinator() {
        let store = InMemoryGroupStore::new();
        let two = GroupConfig {
            offsets_topic_num_partitions: 2,
            ..config()
        };
        let addr = start(two, &store).await;
        // "a" (hash 97) maps to partition 1; this coordinator owns partition 0.
        assert_eq!(
            addr.send(join("a", "")).await.unwrap().error,
            Some(ResponseError::NotCoordinator)
        );
        assert_eq!(
            addr.send(join("", "")).await.unwrap().error,
            Some(ResponseError::InvalidGroupId)
        );
    }

    #[test]
    fn deadlines_pop_in_time_order_and_can_be_moved() {
        let mut d = Deadlines::default();
        let now = Instant::now();
        let k = |g: &str| DeadlineKey::Rebalance { group: g.into() };
        d.schedule(k("b"), now + Duration::from_millis(20));
        d.schedule(k("a"), now + Duration::from_millis(10));
        d.schedule(k("c"), now + Duration::from_millis(30));
        d.schedule(k("c"), now + Duration::from_millis(5));
        d.cancel(&k("b"));
        assert_eq!(d.earliest(), Some(now + Duration::from_millis(5)));
        assert_eq!(
            d.pop_due(now + Duration::from_millis(15)),
            vec![k("c"), k("a")]
        );
        assert_eq!(d.earliest(), None);
    }
}
