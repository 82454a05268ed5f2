//! The group APIs as the protocol front end calls them: one async function per Kafka API,
//! taking the decoded kafka-protocol request and its version and returning the response to
//! encode at that version. Each function translates version differences (defaults of old
//! versions, fields that only exist in newer ones) into the coordinator's domain messages,
//! finds the owning [`GroupCoordinator`] through the [`GroupRouter`] and answers errors
//! exactly where Kafka does.
//!
//! | API (key) | versions | function |
//! |---|---|---|
//! | OffsetCommit (8) | 0–9 | [`offset_commit`] |
//! | OffsetFetch (9) | 0–9 | [`offset_fetch`] |
//! | FindCoordinator (10) | 0–6 | [`find_coordinator`] |
//! | JoinGroup (11) | 0–9 | [`join_group`] |
//! | Heartbeat (12) | 0–4 | [`heartbeat`] |
//! | LeaveGroup (13) | 0–5 | [`leave_group`] |
//! | SyncGroup (14) | 0–5 | [`sync_group`] |
//! | DescribeGroups (15) | 0–6 | [`describe_groups`] |
//! | ListGroups (16) | 0–5 | [`list_groups`] |
//! | DeleteGroups (42) | 0–2 | [`delete_groups`] |
//! | OffsetDelete (47) | 0 | [`offset_delete`] |
//!
//! kafka-protocol 0.18 decodes OffsetCommit only from v2 and OffsetFetch from v1; a front
//! end that accepts OffsetCommit v0/v1 or OffsetFetch v0 decodes them into the same structs
//! (v0/v1 carry no retention, v0 no generation or member id: leave the struct defaults) and
//! passes the real version.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use actix::{Actor, Addr};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::coordinator::{
    self, DescribeGroupResult, FetchedOffset, GroupCoordinator, LeavingMember,
};
use super::metadata::{OffsetAndMetadata, TopicPartition};
use super::partitioner::partition_for;
use super::store::GroupStore;
use super::{now_ms, GroupConfig};

/// Who sent the request: JoinGroup records it in the member (DescribeGroups shows it) and
/// derives member ids from the client id.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The request header's client id.
    pub client_id: String,
    /// The client's address as Kafka prints it (`/127.0.0.1`).
    pub client_host: String,
}

/// Where the leader of a `__consumer_offsets` partition is, as this broker's metadata knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsTopicLeader {
    /// `__consumer_offsets` does not exist yet.
    TopicMissing,
    /// The topic exists but the partition has no live leader right now.
    LeaderUnavailable,
    /// The broker to send the group's requests to (its client listener).
    Leader {
        node_id: i32,
        host: String,
        port: i32,
    },
}

/// What the group APIs need from the rest of the broker; the integrator implements it over
/// the metadata cache and the controller.
pub trait CoordinatorDirectory: Send + Sync + 'static {
    /// The leader of `__consumer_offsets`-`partition`.
    fn offsets_partition_leader(&self, partition: i32) -> OffsetsTopicLeader;

    /// Asks for `__consumer_offsets` to be created (`offsets.topic.num.partitions`
    /// partitions, `offsets.topic.replication.factor` capped at the live brokers, compacted).
    /// Called on every FindCoordinator while it is missing, so it must be idempotent and
    /// must not block; FindCoordinator answers COORDINATOR_NOT_AVAILABLE meanwhile.
    fn request_offsets_topic_creation(&self);

    /// Whether `topic`-`partition` exists: OffsetCommit and OffsetDelete answer
    /// UNKNOWN_TOPIC_OR_PARTITION for partitions that do not.
    fn partition_exists(&self, topic: &str, partition: i32) -> bool;
}

/// Maps groups to the coordinator actors of this broker (one per `__consumer_offsets`
/// partition it leads). Cheap to clone; share one per broker.
#[derive(Clone)]
pub struct GroupRouter {
    inner: Arc<RouterInner>,
}

struct RouterInner {
    config: GroupConfig,
    store: Arc<dyn GroupStore>,
    directory: Arc<dyn CoordinatorDirectory>,
    /// Coordinators by `__consumer_offsets` partition. A std lock: never held across
    /// `.await`, only to clone an `Addr`.
    coordinators: RwLock<HashMap<i32, Addr<GroupCoordinator>>>,
}

impl GroupRouter {
    pub fn new(
        config: GroupConfig,
        store: Arc<dyn GroupStore>,
        directory: Arc<dyn CoordinatorDirectory>,
    ) -> Self {
        GroupRouter {
            inner: Arc::new(RouterInner {
                config,
                store,
                directory,
                coordinators: RwLock::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.inner.config
    }

    /// The `__consumer_offsets` partition of `group_id`.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.inner.config.offsets_topic_num_partitions)
    }

    /// This broker became leader of `__consumer_offsets`-`partition`: starts its
    /// coordinator (if not running) and has it load the partition. Must be called inside a
    /// running actix System; the coordinator runs on the current arbiter.
    pub fn become_coordinator(&self, partition: i32) -> Addr<GroupCoordinator> {
        let mut map = self
            .inner
            .coordinators
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(addr) = map.get(&partition) {
            if addr.connected() {
                addr.do_send(coordinator::Load);
                return addr.clone();
            }
        }
        let addr = GroupCoordinator::new(
            partition,
            self.inner.config.clone(),
            Arc::clone(&self.inner.store),
        )
        .start();
        addr.do_send(coordinator::Load);
        map.insert(partition, addr.clone());
        addr
    }

    /// This broker no longer leads `__consumer_offsets`-`partition`: its coordinator
    /// answers parked requests with NOT_COORDINATOR and stops.
    pub fn resign_coordinator(&self, partition: i32) {
        let removed = self
            .inner
            .coordinators
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&partition);
        if let Some(addr) = removed {
            addr.do_send(coordinator::Unload);
        }
    }

    /// The partitions this broker coordinates.
    pub fn hosted_partitions(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.coordinators().into_iter().map(|(p, _)| p).collect();
        v.sort_unstable();
        v
    }

    pub fn coordinator_for_partition(&self, partition: i32) -> Option<Addr<GroupCoordinator>> {
        self.inner
            .coordinators
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .cloned()
    }

    /// The coordinator of `group_id`, or NOT_COORDINATOR when this broker does not lead the
    /// group's partition.
    pub fn coordinator_for_group(
        &self,
        group_id: &str,
    ) -> Result<Addr<GroupCoordinator>, ResponseError> {
        self.coordinator_for_partition(self.partition_for(group_id))
            .ok_or(ResponseError::NotCoordinator)
    }

    fn coordinators(&self) -> Vec<(i32, Addr<GroupCoordinator>)> {
        self.inner
            .coordinators
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(p, a)| (*p, a.clone()))
            .collect()
    }

    fn directory(&self) -> &dyn CoordinatorDirectory {
        self.inner.directory.as_ref()
    }
}

/// Sends `msg` to the coordinator of `group_id`; routing and mailbox failures become the
/// error codes Kafka's clients retry on.
async fn ask<M>(router: &GroupRouter, group_id: &str, msg: M) -> Result<M::Result, ResponseError>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    GroupCoordinator: actix::Handler<M>,
{
    let addr = router.coordinator_for_group(group_id)?;
    addr.send(msg)
        .await
        .map_err(|_| ResponseError::CoordinatorNotAvailable)
}

fn code(e: Option<ResponseError>) -> i16 {
    e.map_or(0, |e| e.code())
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn opt_s(v: Option<String>) -> Option<StrBytes> {
    v.map(StrBytes::from_string)
}

fn opt_string(v: &Option<StrBytes>) -> Option<String> {
    v.as_ref().map(|s| s.as_str().to_string())
}

// ---------------------------------------------------------------------------------------
// JoinGroup, SyncGroup, Heartbeat, LeaveGroup
// ---------------------------------------------------------------------------------------

/// JoinGroup v0–v9. v0 has no rebalance timeout (the session timeout serves); KIP-394's
/// MEMBER_ID_REQUIRED applies from v4 to members without `group.instance.id`; v9 lets a
/// static leader skip reassignment. The response is parked until the rebalance completes.
pub async fn join_group(
    router: &GroupRouter,
    version: i16,
    client: &ClientInfo,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    let group_id = req.group_id.0.as_str().to_string();
    let member_id = req.member_id.as_str().to_string();
    let msg = coordinator::JoinGroup {
        group_id: group_id.clone(),
        member_id: member_id.clone(),
        group_instance_id: opt_string(&req.group_instance_id),
        require_known_member_id: version >= 4 && req.group_instance_id.is_none(),
        support_skipping_assignment: version >= 9,
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
        rebalance_timeout_ms: if version == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        session_timeout_ms: req.session_timeout_ms,
        protocol_type: req.protocol_type.as_str().to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.as_str().to_string(), p.metadata))
            .collect(),
        reason: opt_string(&req.reason),
    };
    let result = if group_id.is_empty() {
        super::metadata::JoinGroupResult::error(member_id, ResponseError::InvalidGroupId)
    } else {
        match ask(router, &group_id, msg).await {
            Ok(r) => r,
            Err(e) => super::metadata::JoinGroupResult::error(member_id, e),
        }
    };
    JoinGroupResponse::default()
        .with_error_code(code(result.error))
        .with_generation_id(result.generation_id)
        .with_protocol_type(if version >= 7 {
            opt_s(result.protocol_type)
        } else {
            None
        })
        .with_protocol_name(if version >= 7 {
            opt_s(result.protocol_name)
        } else {
            // Non-nullable before v7: no protocol is the empty string.
            Some(s(result.protocol_name.unwrap_or_default()))
        })
        .with_leader(s(result.leader_id))
        .with_skip_assignment(version >= 9 && result.skip_assignment)
        .with_member_id(s(result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(m.member_id))
                        .with_group_instance_id(if version >= 5 {
                            opt_s(m.group_instance_id)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

/// SyncGroup v0–v5. From v5 the protocol type and name are mandatory and checked.
pub async fn sync_group(
    router: &GroupRouter,
    version: i16,
    req: SyncGroupRequest,
) -> SyncGroupResponse {
    let group_id = req.group_id.0.as_str().to_string();
    let result = if group_id.is_empty() {
        super::metadata::SyncGroupResult::error(ResponseError::InvalidGroupId)
    } else if version >= 5 && (req.protocol_type.is_none() || req.protocol_name.is_none()) {
        super::metadata::SyncGroupResult::error(ResponseError::InconsistentGroupProtocol)
    } else {
        let msg = coordinator::SyncGroup {
            group_id: group_id.clone(),
            generation_id: req.generation_id,
            member_id: req.member_id.as_str().to_string(),
            group_instance_id: opt_string(&req.group_instance_id),
            protocol_type: opt_string(&req.protocol_type),
            protocol_name: opt_string(&req.protocol_name),
            assignments: req
                .assignments
                .into_iter()
                .map(|a| (a.member_id.as_str().to_string(), a.assignment))
                .collect(),
        };
        ask(router, &group_id, msg)
            .await
            .unwrap_or_else(super::metadata::SyncGroupResult::error)
    };
    let mut resp = SyncGroupResponse::default()
        .with_error_code(code(result.error))
        .with_assignment(result.assignment);
    if version >= 5 {
        resp = resp
            .with_protocol_type(opt_s(result.protocol_type))
            .with_protocol_name(opt_s(result.protocol_name));
    }
    resp
}

/// Heartbeat v0–v4.
pub async fn heartbeat(
    router: &GroupRouter,
    _version: i16,
    req: HeartbeatRequest,
) -> HeartbeatResponse {
    let group_id = req.group_id.0.as_str().to_string();
    let error = if group_id.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else {
        let msg = coordinator::Heartbeat {
            group_id: group_id.clone(),
            member_id: req.member_id.as_str().to_string(),
            group_instance_id: opt_string(&req.group_instance_id),
            generation_id: req.generation_id,
        };
        match ask(router, &group_id, msg).await {
            Ok(r) => r.err(),
            Err(e) => Some(e),
        }
    };
    HeartbeatResponse::default().with_error_code(code(error))
}

/// LeaveGroup v0–v5: one member before v3, a batch (possibly by instance id alone) from v3.
/// Before v3 the only error field is the top-level one, which carries the member's error.
pub async fn leave_group(
    router: &GroupRouter,
    version: i16,
    req: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let group_id = req.group_id.0.as_str().to_string();
    let members: Vec<LeavingMember> = if version < 3 {
        vec![LeavingMember {
            member_id: req.member_id.as_str().to_string(),
            group_instance_id: None,
            reason: None,
        }]
    } else {
        req.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.as_str().to_string(),
                group_instance_id: opt_string(&m.group_instance_id),
                reason: opt_string(&m.reason),
            })
            .collect()
    };
    let result = if group_id.is_empty() {
        coordinator::LeaveGroupResult {
            error: Some(ResponseError::InvalidGroupId),
            members: Vec::new(),
        }
    } else {
        let msg = coordinator::LeaveGroup {
            group_id: group_id.clone(),
            members,
        };
        ask(router, &group_id, msg)
            .await
            .unwrap_or_else(|e| coordinator::LeaveGroupResult {
                error: Some(e),
                members: Vec::new(),
            })
    };
    if version < 3 {
        let error = result
            .error
            .or_else(|| result.members.iter().find_map(|m| m.error));
        LeaveGroupResponse::default().with_error_code(code(error))
    } else {
        LeaveGroupResponse::default()
            .with_error_code(code(result.error))
            .with_members(
                result
                    .members
                    .into_iter()
                    .map(|m| {
                        MemberResponse::default()
                            .with_member_id(s(m.member_id))
                            .with_group_instance_id(opt_s(m.group_instance_id))
                            .with_error_code(code(m.error))
                    })
                    .collect(),
            )
    }
}

// ---------------------------------------------------------------------------------------
// Offsets
// ---------------------------------------------------------------------------------------

/// OffsetCommit v0–v9 (v0/v1 need a front-end decoder, see the module doc). A commit
/// completes once its records are durable with acks=all. Retention (v2–v4) sets an explicit
/// expiry; the leader epoch is stored from v6; v7+ carries the static instance id.
pub async fn offset_commit(
    router: &GroupRouter,
    _version: i16,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group_id = req.group_id.0.as_str().to_string();
    let now = now_ms();
    let expire_timestamp =
        (req.retention_time_ms != -1).then(|| now.saturating_add(req.retention_time_ms));
    let mut order: Vec<(String, Vec<i32>)> = Vec::new();
    let mut errors: HashMap<TopicPartition, Option<ResponseError>> = HashMap::new();
    let mut offsets = Vec::new();
    for topic in &req.topics {
        let name = topic.name.0.as_str().to_string();
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            partitions.push(p.partition_index);
            let tp = TopicPartition::new(name.clone(), p.partition_index);
            if !router
                .directory()
                .partition_exists(&name, p.partition_index)
            {
                errors.insert(tp, Some(ResponseError::UnknownTopicOrPartition));
                continue;
            }
            offsets.push((
                tp,
                OffsetAndMetadata {
                    offset: p.committed_offset,
                    leader_epoch: (p.committed_leader_epoch >= 0)
                        .then_some(p.committed_leader_epoch),
                    metadata: opt_string(&p.committed_metadata).unwrap_or_default(),
                    commit_timestamp: now,
                    expire_timestamp,
                },
            ));
        }
        order.push((name, partitions));
    }
    if !offsets.is_empty() {
        let tps: Vec<TopicPartition> = offsets.iter().map(|(tp, _)| tp.clone()).collect();
        let msg = coordinator::OffsetCommit {
            group_id: group_id.clone(),
            member_id: req.member_id.as_str().to_string(),
            group_instance_id: opt_string(&req.group_instance_id),
            generation_id: req.generation_id_or_member_epoch,
            offsets,
        };
        match ask(router, &group_id, msg).await {
            Ok(results) => errors.extend(results),
            Err(e) => errors.extend(tps.into_iter().map(|tp| (tp, Some(e)))),
        }
    }
    OffsetCommitResponse::default().with_topics(
        order
            .into_iter()
            .map(|(name, partitions)| {
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(s(name.clone())))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|p| {
                                let e = errors
                                    .get(&TopicPartition::new(name.clone(), p))
                                    .copied()
                                    .flatten();
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(code(e))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

async fn fetch_group_offsets(
    router: &GroupRouter,
    group_id: &str,
    require_stable: bool,
    partitions: Option<Vec<TopicPartition>>,
) -> Result<Vec<FetchedOffset>, ResponseError> {
    let msg = coordinator::OffsetFetch {
        group_id: group_id.to_string(),
        require_stable,
        partitions,
    };
    ask(router, group_id, msg).await?
}

/// Groups fetched offsets by topic, keeping first-seen topic order.
fn by_topic(offsets: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for o in offsets {
        match out.iter_mut().find(|(t, _)| *t == o.tp.topic) {
            Some((_, v)) => v.push(o),
            None => out.push((o.tp.topic.clone(), vec![o])),
        }
    }
    out
}

/// OffsetFetch v0–v9: one group before v8 (all partitions with null topics from v2; a
/// group error before v2 is repeated on every requested partition), many groups from v8.
/// Leader epochs are returned from v5, `require_stable` honoured from v7.
pub async fn offset_fetch(
    router: &GroupRouter,
    version: i16,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let group_id = g.group_id.0.as_str().to_string();
            let partitions = g.topics.map(|topics| {
                topics
                    .into_iter()
                    .flat_map(|t| {
                        let name = t.name.0.as_str().to_string();
                        t.partition_indexes
                            .into_iter()
                            .map(move |p| TopicPartition::new(name.clone(), p))
                    })
                    .collect()
            });
            let fetched =
                fetch_group_offsets(router, &group_id, req.require_stable, partitions).await;
            let group = OffsetFetchResponseGroup::default().with_group_id(GroupId(s(group_id)));
            groups.push(match fetched {
                Err(e) => group.with_error_code(e.code()),
                Ok(offsets) => group.with_topics(
                    by_topic(offsets)
                        .into_iter()
                        .map(|(topic, ps)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(s(topic)))
                                .with_partitions(
                                    ps.into_iter()
                                        .map(|o| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(o.tp.partition)
                                                .with_committed_offset(o.offset)
                                                .with_committed_leader_epoch(
                                                    o.leader_epoch.unwrap_or(-1),
                                                )
                                                .with_metadata(Some(s(o.metadata)))
                                                .with_error_code(code(o.error))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            });
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }

    let group_id = req.group_id.0.as_str().to_string();
    let requested: Option<Vec<TopicPartition>> = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                let name = t.name.0.as_str().to_string();
                t.partition_indexes
                    .iter()
                    .map(move |p| TopicPartition::new(name.clone(), *p))
            })
            .collect()
    });
    // Before v2 "all partitions" does not exist: a null list means none.
    let requested = if version < 2 {
        Some(requested.unwrap_or_default())
    } else {
        requested
    };
    let require_stable = version >= 7 && req.require_stable;
    let fetched = fetch_group_offsets(router, &group_id, require_stable, requested.clone()).await;
    let (error, offsets) = match fetched {
        Ok(offsets) => (None, offsets),
        Err(e) if version < 2 => (
            None,
            requested
                .unwrap_or_default()
                .into_iter()
                .map(|tp| FetchedOffset {
                    tp,
                    offset: -1,
                    leader_epoch: None,
                    metadata: String::new(),
                    error: Some(e),
                })
                .collect(),
        ),
        Err(e) => (Some(e), Vec::new()),
    };
    let mut resp = OffsetFetchResponse::default().with_topics(
        by_topic(offsets)
            .into_iter()
            .map(|(topic, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(
                        ps.into_iter()
                            .map(|o| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(o.tp.partition)
                                    .with_committed_offset(o.offset)
                                    .with_committed_leader_epoch(if version >= 5 {
                                        o.leader_epoch.unwrap_or(-1)
                                    } else {
                                        -1
                                    })
                                    .with_metadata(Some(s(o.metadata)))
                                    .with_error_code(code(o.error))
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    if version >= 2 {
        resp = resp.with_error_code(code(error));
    }
    resp
}

/// OffsetDelete v0: removes committed offsets of an Empty group, or of topics an active
/// consumer group does not subscribe to (GROUP_SUBSCRIBED_TO_TOPIC otherwise).
pub async fn offset_delete(
    router: &GroupRouter,
    _version: i16,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = req.group_id.0.as_str().to_string();
    let mut errors: HashMap<TopicPartition, Option<ResponseError>> = HashMap::new();
    let mut to_delete = Vec::new();
    let order: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.as_str().to_string();
            let ps = t.partitions.iter().map(|p| p.partition_index).collect();
            (name, ps)
        })
        .collect();
    for (name, ps) in &order {
        for p in ps {
            let tp = TopicPartition::new(name.clone(), *p);
            if router.directory().partition_exists(name, *p) {
                to_delete.push(tp);
            } else {
                errors.insert(tp, Some(ResponseError::UnknownTopicOrPartition));
            }
        }
    }
    let group_error = if group_id.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else {
        let msg = coordinator::OffsetDelete {
            group_id: group_id.clone(),
            partitions: to_delete,
        };
        match ask(router, &group_id, msg).await {
            Ok(Ok(results)) => {
                errors.extend(results);
                None
            }
            Ok(Err(e)) | Err(e) => Some(e),
        }
    };
    if let Some(e) = group_error {
        // With a group error the partition list is empty.
        return OffsetDeleteResponse::default().with_error_code(e.code());
    }
    OffsetDeleteResponse::default().with_topics(
        order
            .into_iter()
            .map(|(name, ps)| {
                OffsetDeleteResponseTopic::default()
                    .with_name(TopicName(s(name.clone())))
                    .with_partitions(
                        ps.into_iter()
                            .map(|p| {
                                let e = errors
                                    .get(&TopicPartition::new(name.clone(), p))
                                    .copied()
                                    .flatten();
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(code(e))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// FindCoordinator and the admin APIs
// ---------------------------------------------------------------------------------------

/// Key type of FindCoordinator for consumer groups (`CoordinatorType.GROUP`).
pub const COORDINATOR_TYPE_GROUP: i8 = 0;
/// Key type for transactional ids (`CoordinatorType.TRANSACTION`).
pub const COORDINATOR_TYPE_TRANSACTION: i8 = 1;

/// Node id, host and port of "no node" (Kafka's `Node.noNode`).
const NO_NODE: (i32, &str, i32) = (-1, "", -1);

/// What FindCoordinator says to a transactional producer. TRANSACTIONAL_ID_AUTHORIZATION_FAILED
/// is the one answer that librdkafka, the Java client and kafka-python all treat as fatal at
/// once (any other error makes them retry until `init_transactions` times out); the message
/// says what is really going on.
pub const TRANSACTIONS_UNSUPPORTED: &str =
    "weir does not support transactions: remove transactional.id (idempotence works without it)";

/// A FindCoordinator failure: the error and, when the default text would mislead, a message.
type FindError = (ResponseError, Option<&'static str>);

fn find_one(
    router: &GroupRouter,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, i32), FindError> {
    match key_type {
        COORDINATOR_TYPE_GROUP => {
            let partition = router.partition_for(key);
            match router.directory().offsets_partition_leader(partition) {
                OffsetsTopicLeader::TopicMissing => {
                    // Created on first use; clients retry COORDINATOR_NOT_AVAILABLE.
                    router.directory().request_offsets_topic_creation();
                    Err((ResponseError::CoordinatorNotAvailable, None))
                }
                OffsetsTopicLeader::LeaderUnavailable => {
                    Err((ResponseError::CoordinatorNotAvailable, None))
                }
                OffsetsTopicLeader::Leader {
                    node_id,
                    host,
                    port,
                } => Ok((node_id, host, port)),
            }
        }
        COORDINATOR_TYPE_TRANSACTION => {
            tracing::warn!(transactional_id = %key, "refusing a transactional producer: transactions are not supported");
            Err((
                ResponseError::TransactionalIdAuthorizationFailed,
                Some(TRANSACTIONS_UNSUPPORTED),
            ))
        }
        _ => Err((ResponseError::InvalidRequest, None)),
    }
}

/// FindCoordinator v0–v6: one key before v4, batched `coordinator_keys` from v4. Answers
/// with the leader of the group's `__consumer_offsets` partition, requesting the topic's
/// creation (and answering COORDINATOR_NOT_AVAILABLE) while it does not exist. Transaction
/// coordinators are refused ([`TRANSACTIONS_UNSUPPORTED`]).
pub async fn find_coordinator(
    router: &GroupRouter,
    version: i16,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let key_type = if version >= 1 {
        req.key_type
    } else {
        COORDINATOR_TYPE_GROUP
    };
    let message = |(e, text): FindError| s(text.map_or_else(|| e.to_string(), str::to_string));
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match find_one(router, key_type, key.as_str()) {
                    Ok((node_id, host, port)) => c
                        .with_node_id(BrokerId(node_id))
                        .with_host(s(host))
                        .with_port(port)
                        .with_error_code(0)
                        .with_error_message(None),
                    Err(e) => c
                        .with_node_id(BrokerId(NO_NODE.0))
                        .with_host(s(NO_NODE.1))
                        .with_port(NO_NODE.2)
                        .with_error_code(e.0.code())
                        .with_error_message(Some(message(e))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default()
            .with_error_message(None)
            .with_coordinators(coordinators);
    }
    let resp = FindCoordinatorResponse::default();
    match find_one(router, key_type, req.key.as_str()) {
        Ok((node_id, host, port)) => resp
            .with_error_code(0)
            .with_error_message(None)
            .with_node_id(BrokerId(node_id))
            .with_host(s(host))
            .with_port(port),
        Err(e) => resp
            .with_error_code(e.0.code())
            .with_error_message((version >= 1).then(|| message(e)))
            .with_node_id(BrokerId(NO_NODE.0))
            .with_host(s(NO_NODE.1))
            .with_port(NO_NODE.2),
    }
}

/// The operations DescribeGroups v3+ reports as authorized for a group (READ, DELETE,
/// DESCRIBE as `AclOperation` bits): weir has no ACLs, so everything a group supports.
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// DescribeGroups v0–v6. Members carry metadata and assignment only while the group is
/// Stable. An unknown group is "Dead" before v6 and GROUP_ID_NOT_FOUND from v6.
pub async fn describe_groups(
    router: &GroupRouter,
    version: i16,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(req.groups.len());
    for group_id in req.groups {
        let gid = group_id.0.as_str().to_string();
        let r = ask(
            router,
            &gid,
            coordinator::DescribeGroup {
                group_id: gid.clone(),
            },
        )
        .await
        .unwrap_or_else(|e| DescribeGroupResult {
            error: Some(e),
            state: String::new(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
            generation_id: -1,
        });
        let not_found = version >= 6 && r.error.is_none() && r.state == "Dead";
        let mut g = DescribedGroup::default()
            .with_group_id(group_id)
            .with_error_code(if not_found {
                ResponseError::GroupIdNotFound.code()
            } else {
                code(r.error)
            })
            .with_group_state(s(r.state))
            .with_protocol_type(s(r.protocol_type))
            .with_protocol_data(s(r.protocol))
            .with_members(
                r.members
                    .into_iter()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(s(m.member_id))
                            .with_group_instance_id(if version >= 4 {
                                opt_s(m.group_instance_id)
                            } else {
                                None
                            })
                            .with_client_id(s(m.client_id))
                            .with_client_host(s(m.client_host))
                            .with_member_metadata(m.metadata)
                            .with_member_assignment(m.assignment)
                    })
                    .collect(),
            );
        if version >= 3 && req.include_authorized_operations && r.error.is_none() && !not_found {
            g = g.with_authorized_operations(GROUP_AUTHORIZED_OPERATIONS);
        }
        if version >= 6 {
            if not_found {
                g = g.with_error_message(Some(s(format!("Group {gid} not found."))));
            } else if let Some(e) = r.error {
                g = g.with_error_message(Some(s(e.to_string())));
            }
        }
        groups.push(g);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

/// ListGroups v0–v5 over every coordinator of this broker (clients ask every broker). v4
/// filters by state, v5 by group type (every group here is "classic").
pub async fn list_groups(
    router: &GroupRouter,
    version: i16,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let states = if version >= 4 {
        req.states_filter
            .iter()
            .map(|s| s.as_str().to_string())
            .collect()
    } else {
        Vec::new()
    };
    let classic_wanted = version < 5
        || req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case("classic"));
    let mut error = None;
    let mut listed = Vec::new();
    for (_, addr) in router.coordinators() {
        // A coordinator that stopped (resigned meanwhile) has nothing to list.
        if let Ok(r) = addr
            .send(coordinator::ListGroups {
                states: states.clone(),
            })
            .await
        {
            if r.error.is_some() && error.is_none() {
                error = r.error;
            }
            listed.extend(r.groups);
        }
    }
    listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    let groups = if classic_wanted {
        listed
            .into_iter()
            .map(|g| {
                let mut lg = ListedGroup::default()
                    .with_group_id(GroupId(s(g.group_id)))
                    .with_protocol_type(s(g.protocol_type));
                if version >= 4 {
                    lg = lg.with_group_state(s(g.state.as_str()));
                }
                if version >= 5 {
                    lg = lg.with_group_type(s("classic"));
                }
                lg
            })
            .collect()
    } else {
        Vec::new()
    };
    ListGroupsResponse::default()
        .with_error_code(code(error))
        .with_groups(groups)
}

/// DeleteGroups v0–v2: only Empty groups are deleted (NON_EMPTY_GROUP otherwise), with
/// their offsets; answered once the tombstones are durable.
pub async fn delete_groups(
    router: &GroupRouter,
    _version: i16,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut by_partition: HashMap<i32, Vec<String>> = HashMap::new();
    let mut order = Vec::new();
    for g in &req.groups_names {
        let gid = g.0.as_str().to_string();
        if order.contains(&gid) {
            continue;
        }
        by_partition
            .entry(router.partition_for(&gid))
            .or_default()
            .push(gid.clone());
        order.push(gid);
    }
    let mut errors: HashMap<String, Option<ResponseError>> = HashMap::new();
    for (partition, group_ids) in by_partition {
        match router.coordinator_for_partition(partition) {
            None => errors.extend(
                group_ids
                    .into_iter()
                    .map(|g| (g, Some(ResponseError::NotCoordinator))),
            ),
            Some(addr) => {
                let msg = coordinator::DeleteGroups {
                    group_ids: group_ids.clone(),
                };
                match addr.send(msg).await {
                    Ok(results) => errors.extend(results),
                    Err(_) => errors.extend(
                        group_ids
                            .into_iter()
                            .map(|g| (g, Some(ResponseError::CoordinatorNotAvailable))),
                    ),
                }
            }
        }
    }
    DeleteGroupsResponse::default().with_results(
        order
            .into_iter()
            .map(|gid| {
                let e = errors.get(&gid).copied().flatten();
                DeletableGroupResult::default()
                    .with_group_id(GroupId(s(gid)))
                    .with_error_code(code(e))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::group::InMemoryGroupStore;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::protocol::Encodable;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    /// A one-broker directory whose `__consumer_offsets` appears when creation is asked for.
    struct TestDirectory {
        created: AtomicBool,
        creation_requests: AtomicUsize,
    }

    impl CoordinatorDirectory for TestDirectory {
        fn offsets_partition_leader(&self, _partition: i32) -> OffsetsTopicLeader {
            if self.created.load(Ordering::SeqCst) {
                OffsetsTopicLeader::Leader {
                    node_id: 1,
                    host: "127.0.0.1".into(),
                    port: 19092,
                }
            } else {
                OffsetsTopicLeader::TopicMissing
            }
        }
        fn request_offsets_topic_creation(&self) {
            self.creation_requests.fetch_add(1, Ordering::SeqCst);
            self.created.store(true, Ordering::SeqCst);
        }
        fn partition_exists(&self, topic: &str, _partition: i32) -> bool {
            topic != "missing"
        }
    }

    fn config() -> GroupConfig {
        GroupConfig {
            offsets_topic_num_partitions: 4,
            min_session_timeout_ms: 10,
            max_session_timeout_ms: 60_000,
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        }
    }

    /// A router coordinating every partition, loaded and ready.
    async fn router() -> (GroupRouter, Arc<TestDirectory>) {
        let directory = Arc::new(TestDirectory {
            created: AtomicBool::new(false),
            creation_requests: AtomicUsize::new(0),
        });
        let router = GroupRouter::new(
            config(),
            Arc::new(InMemoryGroupStore::new()),
            directory.clone(),
        );
        for p in 0..4 {
            let addr = router.become_coordinator(p);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while addr.send(coordinator::GetStatus).await.unwrap()
                != coordinator::PartitionStatus::Active
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "coordinator never loaded"
                );
                tokio::task::yield_now().await;
            }
        }
        (router, directory)
    }

    fn client() -> ClientInfo {
        ClientInfo {
            client_id: "cli".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn join_req(group: &str, member: &str) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"meta"))])
    }

    fn encodes<T: Encodable>(msg: &T, version: i16) {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("response does not encode at v{version}: {e}"));
    }

    /// Joins a one-member group at `version` (handling MEMBER_ID_REQUIRED) and syncs it.
    async fn stable_member(router: &GroupRouter, group: &str, version: i16) -> (String, i32) {
        let mut resp = join_group(router, version, &client(), join_req(group, "")).await;
        if resp.error_code == ResponseError::MemberIdRequired.code() {
            let id = resp.member_id.as_str().to_string();
            resp = join_group(router, version, &client(), join_req(group, &id)).await;
        }
        assert_eq!(resp.error_code, 0);
        let member = resp.member_id.as_str().to_string();
        let sync = sync_group(
            router,
            3,
            SyncGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id(resp.generation_id)
                .with_member_id(s(member.clone()))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(s(member.clone()))
                    .with_assignment(Bytes::from_static(b"A"))]),
        )
        .await;
        assert_eq!(sync.error_code, 0);
        assert_eq!(sync.assignment.as_ref(), b"A");
        (member, resp.generation_id)
    }

    #[actix::test]
    async fn join_group_v0_uses_session_timeout_and_skips_member_id_required() {
        let (router, _) = router().await;
        let resp = join_group(&router, 0, &client(), join_req("g0", "")).await;
        assert_eq!(resp.error_code, 0, "v0 members join directly");
        assert!(resp.member_id.as_str().starts_with("cli-"));
        assert_eq!(resp.generation_id, 1);
        assert_eq!(
            resp.protocol_name.as_ref().map(|p| p.as_str()),
            Some("range")
        );
        assert_eq!(resp.leader, resp.member_id);
        assert_eq!(resp.members.len(), 1);
        encodes(&resp, 0);
    }

    #[actix::test]
    async fn join_group_v4_requires_a_member_id_first() {
        let (router, _) = router().await;
        let first = join_group(&router, 4, &client(), join_req("g4", "")).await;
        assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
        assert!(!first.member_id.is_empty());
        encodes(&first, 4);
        let second = join_group(
            &router,
            4,
            &client(),
            join_req("g4", first.member_id.as_str()),
        )
        .await;
        assert_eq!(second.error_code, 0);
        assert_eq!(second.member_id, first.member_id);
        encodes(&second, 4);
    }

    #[actix::test]
    async fn join_group_errors_encode_at_every_version() {
        let (router, _) = router().await;
        for version in 0..=9 {
            let resp = join_group(&router, version, &client(), join_req("", "")).await;
            assert_eq!(resp.error_code, ResponseError::InvalidGroupId.code());
            assert_eq!(resp.generation_id, -1);
            encodes(&resp, version);
        }
        let resp = join_group(
            &router,
            5,
            &client(),
            join_req("g", "").with_session_timeout_ms(1),
        )
        .await;
        assert_eq!(resp.error_code, ResponseError::InvalidSessionTimeout.code());
    }

    #[actix::test]
    async fn sync_group_v5_requires_protocol_type_and_name() {
        let (router, _) = router().await;
        let resp = sync_group(
            &router,
            5,
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(s("m")),
        )
        .await;
        assert_eq!(
            resp.error_code,
            ResponseError::InconsistentGroupProtocol.code()
        );
        encodes(&resp, 5);
    }

    #[actix::test]
    async fn heartbeat_and_leave_group_v0_report_the_member_error_at_top_level() {
        let (router, _) = router().await;
        let (member, generation) = stable_member(&router, "hb", 3).await;
        for version in 0..=4 {
            let resp = heartbeat(
                &router,
                version,
                HeartbeatRequest::default()
                    .with_group_id(GroupId(s("hb")))
                    .with_member_id(s(member.clone()))
                    .with_generation_id(generation),
            )
            .await;
            assert_eq!(resp.error_code, 0);
            encodes(&resp, version);
        }
        let unknown = leave_group(
            &router,
            0,
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("hb")))
                .with_member_id(s("nobody")),
        )
        .await;
        assert_eq!(unknown.error_code, ResponseError::UnknownMemberId.code());
        encodes(&unknown, 0);
        let left = leave_group(
            &router,
            0,
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("hb")))
                .with_member_id(s(member.clone())),
        )
        .await;
        assert_eq!(left.error_code, 0);
    }

    #[actix::test]
    async fn leave_group_v3_answers_per_member() {
        let (router, _) = router().await;
        let (member, _) = stable_member(&router, "lg", 4).await;
        let resp = leave_group(
            &router,
            3,
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("lg")))
                .with_members(vec![
                    MemberIdentity::default().with_member_id(s(member.clone())),
                    MemberIdentity::default().with_member_id(s("ghost")),
                ]),
        )
        .await;
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.members.len(), 2);
        assert_eq!(resp.members[0].error_code, 0);
        assert_eq!(
            resp.members[1].error_code,
            ResponseError::UnknownMemberId.code()
        );
        encodes(&resp, 3);
        encodes(&resp, 5);
    }

    fn commit_req(group: &str, topic: &str, partition: i32, offset: i64) -> OffsetCommitRequest {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(3)
                    .with_committed_metadata(Some(s("md")))])])
    }

    #[actix::test]
    async fn offset_commit_then_fetch_across_versions() {
        let (router, _) = router().await;
        let resp = offset_commit(&router, 2, commit_req("simple", "t", 0, 42)).await;
        assert_eq!(resp.topics[0].partitions[0].error_code, 0);
        encodes(&resp, 2);
        encodes(&resp, 8);

        let fetch_v1 = offset_fetch(
            &router,
            1,
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("simple")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1])])),
        )
        .await;
        let ps = &fetch_v1.topics[0].partitions;
        assert_eq!(ps[0].committed_offset, 42);
        assert_eq!(
            ps[0].committed_leader_epoch, -1,
            "no leader epoch before v5"
        );
        assert_eq!(ps[0].metadata.as_ref().map(|m| m.as_str()), Some("md"));
        assert_eq!(ps[1].committed_offset, -1);
        encodes(&fetch_v1, 1);

        // v5: all partitions (null topics), with the leader epoch.
        let fetch_v5 = offset_fetch(
            &router,
            5,
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("simple")))
                .with_topics(None),
        )
        .await;
        assert_eq!(fetch_v5.error_code, 0);
        assert_eq!(fetch_v5.topics.len(), 1);
        assert_eq!(fetch_v5.topics[0].partitions[0].committed_leader_epoch, 3);
        encodes(&fetch_v5, 5);
        encodes(&fetch_v5, 7);
    }

    #[actix::test]
    async fn offset_fetch_v8_answers_many_groups() {
        let (router, _) = router().await;
        offset_commit(&router, 8, commit_req("ga", "t", 0, 1)).await;
        offset_commit(&router, 8, commit_req("gb", "t", 1, 2)).await;
        let resp = offset_fetch(
            &router,
            8,
            OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("ga")))
                    .with_topics(None),
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("gb")))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![1])])),
            ]),
        )
        .await;
        assert_eq!(resp.groups.len(), 2);
        assert_eq!(resp.groups[0].topics[0].partitions[0].committed_offset, 1);
        assert_eq!(resp.groups[1].topics[0].partitions[0].committed_offset, 2);
        assert_eq!(resp.groups[1].topics[0].partitions[0].partition_index, 1);
        encodes(&resp, 8);
        encodes(&resp, 9);
    }

    #[actix::test]
    async fn offset_fetch_v1_repeats_group_errors_on_each_partition() {
        let (router, _) = router().await;
        // Partition 1 of this router is not coordinated any more.
        router.resign_coordinator(router.partition_for("elsewhere"));
        let topics = Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0, 1])]);
        let v1 = offset_fetch(
            &router,
            1,
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("elsewhere")))
                .with_topics(topics.clone()),
        )
        .await;
        assert!(v1.topics[0]
            .partitions
            .iter()
            .all(|p| p.error_code == ResponseError::NotCoordinator.code()));
        encodes(&v1, 1);
        let v3 = offset_fetch(
            &router,
            3,
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("elsewhere")))
                .with_topics(topics),
        )
        .await;
        assert_eq!(v3.error_code, ResponseError::NotCoordinator.code());
        assert!(v3.topics.is_empty());
        encodes(&v3, 3);
    }

    #[actix::test]
    async fn offset_commit_to_an_unknown_partition_is_refused() {
        let (router, _) = router().await;
        let resp = offset_commit(&router, 8, commit_req("g", "missing", 0, 1)).await;
        assert_eq!(
            resp.topics[0].partitions[0].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
    }

    #[actix::test]
    async fn find_coordinator_requests_offsets_topic_creation_until_it_exists() {
        let (router, directory) = router().await;
        let first = find_coordinator(
            &router,
            0,
            FindCoordinatorRequest::default().with_key(s("g")),
        )
        .await;
        assert_eq!(
            first.error_code,
            ResponseError::CoordinatorNotAvailable.code()
        );
        assert_eq!(first.node_id, BrokerId(-1));
        encodes(&first, 0);
        assert_eq!(directory.creation_requests.load(Ordering::SeqCst), 1);
        let second = find_coordinator(
            &router,
            3,
            FindCoordinatorRequest::default().with_key(s("g")),
        )
        .await;
        assert_eq!(second.error_code, 0);
        assert_eq!(second.node_id, BrokerId(1));
        assert_eq!(second.port, 19092);
        encodes(&second, 3);
    }

    #[actix::test]
    async fn find_coordinator_v4_answers_each_key() {
        let (router, directory) = router().await;
        directory.created.store(true, Ordering::SeqCst);
        let resp = find_coordinator(
            &router,
            4,
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]),
        )
        .await;
        assert_eq!(resp.coordinators.len(), 2);
        assert!(resp
            .coordinators
            .iter()
            .all(|c| c.error_code == 0 && c.node_id == BrokerId(1)));
        assert_eq!(resp.coordinators[1].key.as_str(), "b");
        encodes(&resp, 4);
        let bad = find_coordinator(
            &router,
            4,
            FindCoordinatorRequest::default()
                .with_key_type(9)
                .with_coordinator_keys(vec![s("a")]),
        )
        .await;
        assert_eq!(
            bad.coordinators[0].error_code,
            ResponseError::InvalidRequest.code()
        );
    }

    #[actix::test]
    async fn find_coordinator_refuses_transactional_ids_with_a_fatal_error_and_a_message() {
        let (router, directory) = router().await;
        directory.created.store(true, Ordering::SeqCst);
        for version in 1..=3 {
            let resp = find_coordinator(
                &router,
                version,
                FindCoordinatorRequest::default()
                    .with_key(s("tx-1"))
                    .with_key_type(COORDINATOR_TYPE_TRANSACTION),
            )
            .await;
            assert_eq!(
                resp.error_code,
                ResponseError::TransactionalIdAuthorizationFailed.code(),
                "v{version}"
            );
            assert_eq!(
                resp.error_message.as_deref(),
                Some(TRANSACTIONS_UNSUPPORTED)
            );
            assert_eq!(resp.node_id, BrokerId(-1));
            encodes(&resp, version);
        }
        let resp = find_coordinator(
            &router,
            4,
            FindCoordinatorRequest::default()
                .with_key_type(COORDINATOR_TYPE_TRANSACTION)
                .with_coordinator_keys(vec![s("tx-1")]),
        )
        .await;
        assert_eq!(
            resp.coordinators[0].error_code,
            ResponseError::TransactionalIdAuthorizationFailed.code()
        );
        assert_eq!(
            resp.coordinators[0].error_message.as_deref(),
            Some(TRANSACTIONS_UNSUPPORTED)
        );
        encodes(&resp, 4);
    }

    #[actix::test]
    async fn describe_list_and_delete_groups() {
        let (router, _) = router().await;
        let (member, _) = stable_member(&router, "admin", 4).await;
        offset_commit(&router, 2, commit_req("offsets-only", "t", 0, 5)).await;

        let described = describe_groups(
            &router,
            5,
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(s("admin")), GroupId(s("nope"))])
                .with_include_authorized_operations(true),
        )
        .await;
        let g = &described.groups[0];
        assert_eq!(g.group_state.as_str(), "Stable");
        assert_eq!(g.protocol_data.as_str(), "range");
        assert_eq!(g.members[0].member_id.as_str(), member);
        assert_eq!(g.members[0].member_assignment.as_ref(), b"A");
        assert_eq!(g.members[0].client_host.as_str(), "/127.0.0.1");
        assert_eq!(g.authorized_operations, GROUP_AUTHORIZED_OPERATIONS);
        assert_eq!(described.groups[1].group_state.as_str(), "Dead");
        assert_eq!(described.groups[1].error_code, 0);
        for v in 0..=5 {
            let at_v = describe_groups(
                &router,
                v,
                DescribeGroupsRequest::default()
                    .with_groups(vec![GroupId(s("admin")), GroupId(s("nope"))])
                    .with_include_authorized_operations(v >= 3),
            )
            .await;
            encodes(&at_v, v);
        }
        let v6 = describe_groups(
            &router,
            6,
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("nope"))]),
        )
        .await;
        assert_eq!(
            v6.groups[0].error_code,
            ResponseError::GroupIdNotFound.code()
        );
        encodes(&v6, 6);

        let all = list_groups(&router, 3, ListGroupsRequest::default()).await;
        let ids: Vec<&str> = all.groups.iter().map(|g| g.group_id.0.as_str()).collect();
        assert_eq!(ids, vec!["admin", "offsets-only"]);
        encodes(&all, 0);
        let empty_only = list_groups(
            &router,
            4,
            ListGroupsRequest::default().with_states_filter(vec![s("empty")]),
        )
        .await;
        assert_eq!(empty_only.groups.len(), 1);
        assert_eq!(empty_only.groups[0].group_id.0.as_str(), "offsets-only");
        assert_eq!(empty_only.groups[0].group_state.as_str(), "Empty");
        encodes(&empty_only, 4);
        let consumer_type = list_groups(
            &router,
            5,
            ListGroupsRequest::default().with_types_filter(vec![s("consumer")]),
        )
        .await;
        assert!(consumer_type.groups.is_empty(), "no KIP-848 groups here");
        encodes(&consumer_type, 5);

        let deleted = delete_groups(
            &router,
            2,
            DeleteGroupsRequest::default().with_groups_names(vec![
                GroupId(s("admin")),
                GroupId(s("offsets-only")),
                GroupId(s("nope")),
            ]),
        )
        .await;
        let errs: Vec<i16> = deleted.results.iter().map(|r| r.error_code).collect();
        assert_eq!(
            errs,
            vec![
                ResponseError::NonEmptyGroup.code(),
                0,
                ResponseError::GroupIdNotFound.code()
            ]
        );
        encodes(&deleted, 0);
        encodes(&deleted, 2);
    }

    #[actix::test]
    async fn offset_delete_refuses_subscribed_topics_of_active_groups() {
        let (router, _) = router().await;
        // A consumer subscribed to "t" commits offsets for "t" and "u".
        let mut sub = vec![0u8, 0, 0, 0, 0, 1, 0, 1, b't'];
        sub.extend_from_slice(&(-1i32).to_be_bytes());
        let req = join_req("od", "").with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from(sub))]);
        let joined = join_group(&router, 3, &client(), req).await;
        assert_eq!(joined.error_code, 0);
        let member = joined.member_id.as_str().to_string();
        sync_group(
            &router,
            3,
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("od")))
                .with_generation_id(joined.generation_id)
                .with_member_id(s(member.clone())),
        )
        .await;
        for topic in ["t", "u"] {
            let c = offset_commit(
                &router,
                5,
                commit_req("od", topic, 0, 9)
                    .with_generation_id_or_member_epoch(joined.generation_id)
                    .with_member_id(s(member.clone())),
            )
            .await;
            assert_eq!(c.topics[0].partitions[0].error_code, 0);
        }
        let resp = offset_delete(
            &router,
            0,
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("od")))
                .with_topics(vec![
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![OffsetDeleteRequestPartition::default()]),
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s("u")))
                        .with_partitions(vec![OffsetDeleteRequestPartition::default()]),
                ]),
        )
        .await;
        assert_eq!(resp.error_code, 0);
        assert_eq!(
            resp.topics[0].partitions[0].error_code,
            ResponseError::GroupSubscribedToTopic.code()
        );
        assert_eq!(resp.topics[1].partitions[0].error_code, 0);
        encodes(&resp, 0);
        let missing = offset_delete(
            &router,
            0,
            OffsetDeleteRequest::default().with_group_id(GroupId(s("no-such-group"))),
        )
        .await;
        assert_eq!(missing.error_code, ResponseError::GroupIdNotFound.code());
    }

    #[actix::test]
    async fn requests_for_a_partition_this_broker_does_not_lead_get_not_coordinator() {
        let (router, _) = router().await;
        router.resign_coordinator(router.partition_for("g"));
        let resp = join_group(&router, 5, &client(), join_req("g", "")).await;
        assert_eq!(resp.error_code, ResponseError::NotCoordinator.code());
        let hb = heartbeat(
            &router,
            1,
            HeartbeatRequest::default().with_group_id(GroupId(s("g"))),
        )
        .await;
        assert_eq!(hb.error_code, ResponseError::NotCoordinator.code());
        assert_eq!(router.hosted_partitions().len(), 3);
    }
}
