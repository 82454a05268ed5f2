//! A structural check of a request body before the `kafka-protocol` decoder sees it.
//!
//! The decoder (0.18) reserves `Vec::with_capacity(n)` for an array whose length `n` it has
//! just read from the wire, before decoding a single element. A forged length (a few bytes
//! declaring two billion topics) asks for tens of gigabytes, and a failed allocation aborts
//! the whole process: one bad client would take every partition down. So each request is
//! first walked against a compact description of its schema, and every array must actually
//! hold its declared number of elements inside the frame. The walk allocates nothing; after
//! it passes, the decoder's reservations are bounded by what the frame really contains.
//!
//! The descriptions are Kafka's request schemas (the `*Request.json` files) reduced to what
//! the walk needs: field types, the versions each field exists in, and the first flexible
//! version (compact lengths and tagged fields). Nullability is not checked here (the decoder
//! does that); the walk only has to be at least as permissive as the decoder and exact about
//! sizes.

use kafka_protocol::messages::ApiKey;

/// A field type, as far as its size on the wire is concerned.
#[derive(Debug, Clone, Copy)]
enum Type {
    I8,
    I16,
    I32,
    I64,
    Uuid,
    Bool,
    /// A string, nullable or not.
    Str,
    /// Bytes (record sets), nullable or not.
    Bytes,
    ArrI32,
    ArrStr,
    Arr(&'static [Field]),
}

#[derive(Debug, Clone, Copy)]
struct Field {
    ty: Type,
    min: i16,
    max: i16,
}

const ANY: i16 = i16::MAX;

const fn f(ty: Type, min: i16, max: i16) -> Field {
    Field { ty, min, max }
}

use Type::*;

// Produce (flexible from v9).
const PRODUCE_PARTITION: &[Field] = &[f(I32, 0, ANY), f(Bytes, 0, ANY)];
const PRODUCE_TOPIC: &[Field] = &[
    f(Str, 0, 12),
    f(Uuid, 13, ANY),
    f(Arr(PRODUCE_PARTITION), 0, ANY),
];
const PRODUCE: &[Field] = &[
    f(Str, 3, ANY),
    f(I16, 0, ANY),
    f(I32, 0, ANY),
    f(Arr(PRODUCE_TOPIC), 0, ANY),
];

// Fetch (flexible from v12; cluster_id, replica_state and replica_directory_id are tagged).
const FETCH_PARTITION: &[Field] = &[
    f(I32, 0, ANY),
    f(I32, 9, ANY),
    f(I64, 0, ANY),
    f(I32, 12, ANY),
    f(I64, 5, ANY),
    f(I32, 0, ANY),
];
const FETCH_TOPIC: &[Field] = &[
    f(Str, 0, 12),
    f(Uuid, 13, ANY),
    f(Arr(FETCH_PARTITION), 0, ANY),
];
const FORGOTTEN_TOPIC: &[Field] = &[f(Str, 7, 12), f(Uuid, 13, ANY), f(ArrI32, 7, ANY)];
const FETCH: &[Field] = &[
    f(I32, 0, 14),
    f(I32, 0, ANY),
    f(I32, 0, ANY),
    f(I32, 3, ANY),
    f(I8, 4, ANY),
    f(I32, 7, ANY),
    f(I32, 7, ANY),
    f(Arr(FETCH_TOPIC), 0, ANY),
    f(Arr(FORGOTTEN_TOPIC), 7, ANY),
    f(Str, 11, ANY),
];

// ListOffsets (flexible from v6).
const LIST_OFFSETS_PARTITION: &[Field] =
    &[f(I32, 0, ANY), f(I32, 4, ANY), f(I64, 0, ANY), f(I32, 0, 0)];
const LIST_OFFSETS_TOPIC: &[Field] = &[f(Str, 0, ANY), f(Arr(LIST_OFFSETS_PARTITION), 0, ANY)];
const LIST_OFFSETS: &[Field] = &[
    f(I32, 0, ANY),
    f(I8, 2, ANY),
    f(Arr(LIST_OFFSETS_TOPIC), 0, ANY),
    f(I32, 10, ANY),
];

// ElectLeaders (flexible from v2; a null topic list means every partition).
const ELECT_LEADERS_TOPIC: &[Field] = &[f(Str, 0, ANY), f(ArrI32, 0, ANY)];
const ELECT_LEADERS: &[Field] = &[
    f(I8, 1, ANY),
    f(Arr(ELECT_LEADERS_TOPIC), 0, ANY),
    f(I32, 0, ANY),
];

// DescribeAcls, CreateAcls, DeleteAcls (flexible from v2; pattern types from v1).
const DESCRIBE_ACLS: &[Field] = &[
    f(I8, 0, ANY),
    f(Str, 0, ANY),
    f(I8, 1, ANY),
    f(Str, 0, ANY),
    f(Str, 0, ANY),
    f(I8, 0, ANY),
    f(I8, 0, ANY),
];
const ACL_CREATION: &[Field] = DESCRIBE_ACLS;
const CREATE_ACLS: &[Field] = &[f(Arr(ACL_CREATION), 0, ANY)];
const DELETE_ACLS: &[Field] = &[f(Arr(DESCRIBE_ACLS), 0, ANY)];

// OffsetForLeaderEpoch (flexible from v4).
const OFFSET_FOR_LEADER_EPOCH_PARTITION: &[Field] =
    &[f(I32, 0, ANY), f(I32, 2, ANY), f(I32, 0, ANY)];
const OFFSET_FOR_LEADER_EPOCH_TOPIC: &[Field] = &[
    f(Str, 0, ANY),
    f(Arr(OFFSET_FOR_LEADER_EPOCH_PARTITION), 0, ANY),
];
const OFFSET_FOR_LEADER_EPOCH: &[Field] = &[
    f(I32, 3, ANY),
    f(Arr(OFFSET_FOR_LEADER_EPOCH_TOPIC), 0, ANY),
];

// Metadata (flexible from v9).
const METADATA_TOPIC: &[Field] = &[f(Uuid, 10, ANY), f(Str, 0, ANY)];
const METADATA: &[Field] = &[
    f(Arr(METADATA_TOPIC), 0, ANY),
    f(Bool, 4, ANY),
    f(Bool, 8, 10),
    f(Bool, 8, ANY),
];

// ApiVersions (flexible from v3).
const API_VERSIONS: &[Field] = &[f(Str, 3, ANY), f(Str, 3, ANY)];

// CreateTopics (flexible from v5).
const CREATE_TOPICS_ASSIGNMENT: &[Field] = &[f(I32, 0, ANY), f(ArrI32, 0, ANY)];
const CREATE_TOPICS_CONFIG: &[Field] = &[f(Str, 0, ANY), f(Str, 0, ANY)];
const CREATE_TOPICS_TOPIC: &[Field] = &[
    f(Str, 0, ANY),
    f(I32, 0, ANY),
    f(I16, 0, ANY),
    f(Arr(CREATE_TOPICS_ASSIGNMENT), 0, ANY),
    f(Arr(CREATE_TOPICS_CONFIG), 0, ANY),
];
const CREATE_TOPICS: &[Field] = &[
    f(Arr(CREATE_TOPICS_TOPIC), 0, ANY),
    f(I32, 0, ANY),
    f(Bool, 1, ANY),
];

// DeleteTopics (flexible from v4).
const DELETE_TOPICS_STATE: &[Field] = &[f(Str, 6, ANY), f(Uuid, 6, ANY)];
const DELETE_TOPICS: &[Field] = &[
    f(Arr(DELETE_TOPICS_STATE), 6, ANY),
    f(ArrStr, 0, 5),
    f(I32, 0, ANY),
];

// DeleteRecords (flexible from v2).
const DELETE_RECORDS_PARTITION: &[Field] = &[f(I32, 0, ANY), f(I64, 0, ANY)];
const DELETE_RECORDS_TOPIC: &[Field] = &[f(Str, 0, ANY), f(Arr(DELETE_RECORDS_PARTITION), 0, ANY)];
const DELETE_RECORDS: &[Field] = &[f(Arr(DELETE_RECORDS_TOPIC), 0, ANY), f(I32, 0, ANY)];

// DescribeConfigs (flexible from v4).
const DESCRIBE_CONFIGS_RESOURCE: &[Field] = &[f(I8, 0, ANY), f(Str, 0, ANY), f(ArrStr, 0, ANY)];
const DESCRIBE_CONFIGS: &[Field] = &[
    f(Arr(DESCRIBE_CONFIGS_RESOURCE), 0, ANY),
    f(Bool, 1, ANY),
    f(Bool, 3, ANY),
];

// AlterConfigs (flexible from v2).
const ALTER_CONFIGS_CONFIG: &[Field] = &[f(Str, 0, ANY), f(Str, 0, ANY)];
const ALTER_CONFIGS_RESOURCE: &[Field] = &[
    f(I8, 0, ANY),
    f(Str, 0, ANY),
    f(Arr(ALTER_CONFIGS_CONFIG), 0, ANY),
];
const ALTER_CONFIGS: &[Field] = &[f(Arr(ALTER_CONFIGS_RESOURCE), 0, ANY), f(Bool, 0, ANY)];

// IncrementalAlterConfigs (flexible from v1).
const INCREMENTAL_CONFIG: &[Field] = &[f(Str, 0, ANY), f(I8, 0, ANY), f(Str, 0, ANY)];
const INCREMENTAL_RESOURCE: &[Field] = &[
    f(I8, 0, ANY),
    f(Str, 0, ANY),
    f(Arr(INCREMENTAL_CONFIG), 0, ANY),
];
const INCREMENTAL_ALTER_CONFIGS: &[Field] =
    &[f(Arr(INCREMENTAL_RESOURCE), 0, ANY), f(Bool, 0, ANY)];

// DescribeCluster (flexible from v0).
const DESCRIBE_CLUSTER: &[Field] = &[f(Bool, 0, ANY), f(I8, 1, ANY), f(Bool, 2, ANY)];

// ListPartitionReassignments (flexible from v0).
const LIST_REASSIGNMENTS_TOPIC: &[Field] = &[f(Str, 0, ANY), f(ArrI32, 0, ANY)];
const LIST_REASSIGNMENTS: &[Field] = &[f(I32, 0, ANY), f(Arr(LIST_REASSIGNMENTS_TOPIC), 0, ANY)];

// DescribeLogDirs (flexible from v2).
const DESCRIBE_LOG_DIRS_TOPIC: &[Field] = &[f(Str, 0, ANY), f(ArrI32, 0, ANY)];
const DESCRIBE_LOG_DIRS: &[Field] = &[f(Arr(DESCRIBE_LOG_DIRS_TOPIC), 0, ANY)];

// AlterReplicaLogDirs (flexible from v2).
const ALTER_REPLICA_LOG_DIRS_TOPIC: &[Field] = &[f(Str, 0, ANY), f(ArrI32, 0, ANY)];
const ALTER_REPLICA_LOG_DIRS_DIR: &[Field] =
    &[f(Str, 0, ANY), f(Arr(ALTER_REPLICA_LOG_DIRS_TOPIC), 0, ANY)];
const ALTER_REPLICA_LOG_DIRS: &[Field] = &[f(Arr(ALTER_REPLICA_LOG_DIRS_DIR), 0, ANY)];

// CreatePartitions (flexible from v2).
const CREATE_PARTITIONS_ASSIGNMENT: &[Field] = &[f(ArrI32, 0, ANY)];
const CREATE_PARTITIONS_TOPIC: &[Field] = &[
    f(Str, 0, ANY),
    f(I32, 0, ANY),
    f(Arr(CREATE_PARTITIONS_ASSIGNMENT), 0, ANY),
];
const CREATE_PARTITIONS: &[Field] = &[
    f(Arr(CREATE_PARTITIONS_TOPIC), 0, ANY),
    f(I32, 0, ANY),
    f(Bool, 0, ANY),
];

// InitProducerId (flexible from v2).
const INIT_PRODUCER_ID: &[Field] = &[
    f(Str, 0, ANY),
    f(I32, 0, ANY),
    f(I64, 3, ANY),
    f(I16, 3, ANY),
    f(Bool, 5, ANY),
    f(Bool, 6, ANY),
];

// [groups] The consumer-group requests.
// OffsetCommit (flexible from v8).
const OFFSET_COMMIT_PARTITION: &[Field] = &[
    f(I32, 0, ANY),
    f(I64, 0, ANY),
    f(I32, 6, ANY),
    f(I64, 1, 1),
    f(Str, 0, ANY),
];
const OFFSET_COMMIT_TOPIC: &[Field] = &[f(Str, 0, ANY), f(Arr(OFFSET_COMMIT_PARTITION), 0, ANY)];
const OFFSET_COMMIT: &[Field] = &[
    f(Str, 0, ANY),
    f(I32, 1, ANY),
    f(Str, 1, ANY),
    f(Str, 7, ANY),
    f(I64, 2, 4),
    f(Arr(OFFSET_COMMIT_TOPIC), 0, ANY),
];

// OffsetFetch (flexible from v6).
const OFFSET_FETCH_TOPIC: &[Field] = &[f(Str, 0, ANY), f(ArrI32, 0, ANY)];
const OFFSET_FETCH_GROUP: &[Field] = &[
    f(Str, 0, ANY),
    f(Str, 9, ANY),
    f(I32, 9, ANY),
    f(Arr(OFFSET_FETCH_TOPIC), 0, ANY),
];
const OFFSET_FETCH: &[Field] = &[
    f(Str, 0, 7),
    f(Arr(OFFSET_FETCH_TOPIC), 0, 7),
    f(Arr(OFFSET_FETCH_GROUP), 8, ANY),
    f(Bool, 7, ANY),
];

// FindCoordinator (flexible from v3).
const FIND_COORDINATOR: &[Field] = &[f(Str, 0, 3), f(I8, 1, ANY), f(ArrStr, 4, ANY)];

// JoinGroup (flexible from v6).
const JOIN_GROUP_PROTOCOL: &[Field] = &[f(Str, 0, ANY), f(Bytes, 0, ANY)];
const JOIN_GROUP: &[Field] = &[
    f(Str, 0, ANY),
    f(I32, 0, ANY),
    f(I32, 1, ANY),
    f(Str, 0, ANY),
    f(Str, 5, ANY),
    f(Str, 0, ANY),
    f(Arr(JOIN_GROUP_PROTOCOL), 0, ANY),
    f(Str, 8, ANY),
];

// Heartbeat (flexible from v4).
const HEARTBEAT: &[Field] = &[
    f(Str, 0, ANY),
    f(I32, 0, ANY),
    f(Str, 0, ANY),
    f(Str, 3, ANY),
];

// LeaveGroup (flexible from v4).
const LEAVE_GROUP_MEMBER: &[Field] = &[f(Str, 0, ANY), f(Str, 0, ANY), f(Str, 5, ANY)];
const LEAVE_GROUP: &[Field] = &[
    f(Str, 0, ANY),
    f(Str, 0, 2),
    f(Arr(LEAVE_GROUP_MEMBER), 3, ANY),
];

// SyncGroup (flexible from v4).
const SYNC_GROUP_ASSIGNMENT: &[Field] = &[f(Str, 0, ANY), f(Bytes, 0, ANY)];
const SYNC_GROUP: &[Field] = &[
    f(Str, 0, ANY),
    f(I32, 0, ANY),
    f(Str, 0, ANY),
    f(Str, 3, ANY),
    f(Str, 5, ANY),
    f(Str, 5, ANY),
    f(Arr(SYNC_GROUP_ASSIGNMENT), 0, ANY),
];

// DescribeGroups (flexible from v5), ListGroups (v3), DeleteGroups (v2).
const DESCRIBE_GROUPS: &[Field] = &[f(ArrStr, 0, ANY), f(Bool, 3, ANY)];
const LIST_GROUPS: &[Field] = &[f(ArrStr, 4, ANY), f(ArrStr, 5, ANY)];
const DELETE_GROUPS: &[Field] = &[f(ArrStr, 0, ANY)];

// OffsetDelete (never flexible).
const OFFSET_DELETE_PARTITION: &[Field] = &[f(I32, 0, ANY)];
const OFFSET_DELETE_TOPIC: &[Field] = &[f(Str, 0, ANY), f(Arr(OFFSET_DELETE_PARTITION), 0, ANY)];
const OFFSET_DELETE: &[Field] = &[f(Str, 0, ANY), f(Arr(OFFSET_DELETE_TOPIC), 0, ANY)];

/// The schema and first flexible version of each request weir decodes.
fn schema(api: ApiKey) -> Option<(&'static [Field], i16)> {
    Some(match api {
        ApiKey::Produce => (PRODUCE, 9),
        ApiKey::Fetch => (FETCH, 12),
        ApiKey::ListOffsets => (LIST_OFFSETS, 6),
        ApiKey::Metadata => (METADATA, 9),
        ApiKey::ApiVersions => (API_VERSIONS, 3),
        ApiKey::CreateTopics => (CREATE_TOPICS, 5),
        ApiKey::DeleteTopics => (DELETE_TOPICS, 4),
        ApiKey::DeleteRecords => (DELETE_RECORDS, 2),
        ApiKey::DescribeConfigs => (DESCRIBE_CONFIGS, 4),
        ApiKey::AlterConfigs => (ALTER_CONFIGS, 2),
        ApiKey::IncrementalAlterConfigs => (INCREMENTAL_ALTER_CONFIGS, 1),
        ApiKey::DescribeCluster => (DESCRIBE_CLUSTER, 0),
        ApiKey::ListPartitionReassignments => (LIST_REASSIGNMENTS, 0),
        ApiKey::DescribeLogDirs => (DESCRIBE_LOG_DIRS, 2),
        ApiKey::AlterReplicaLogDirs => (ALTER_REPLICA_LOG_DIRS, 2),
        ApiKey::CreatePartitions => (CREATE_PARTITIONS, 2),
        ApiKey::InitProducerId => (INIT_PRODUCER_ID, 2),
        ApiKey::OffsetForLeaderEpoch => (OFFSET_FOR_LEADER_EPOCH, 4),
        ApiKey::ElectLeaders => (ELECT_LEADERS, 2),
        ApiKey::DescribeAcls => (DESCRIBE_ACLS, 2),
        ApiKey::CreateAcls => (CREATE_ACLS, 2),
        ApiKey::DeleteAcls => (DELETE_ACLS, 2),
        ApiKey::OffsetCommit => (OFFSET_COMMIT, 8),
        ApiKey::OffsetFetch => (OFFSET_FETCH, 6),
        ApiKey::FindCoordinator => (FIND_COORDINATOR, 3),
        ApiKey::JoinGroup => (JOIN_GROUP, 6),
        ApiKey::Heartbeat => (HEARTBEAT, 4),
        ApiKey::LeaveGroup => (LEAVE_GROUP, 4),
        ApiKey::SyncGroup => (SYNC_GROUP, 4),
        ApiKey::DescribeGroups => (DESCRIBE_GROUPS, 5),
        ApiKey::ListGroups => (LIST_GROUPS, 3),
        ApiKey::DeleteGroups => (DELETE_GROUPS, 2),
        ApiKey::OffsetDelete => (OFFSET_DELETE, ANY),
        _ => return None,
    })
}

struct Walker<'a> {
    buf: &'a [u8],
    version: i16,
    flexible: bool,
}

impl Walker<'_> {
    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.buf.len() < n {
            return Err(format!(
                "truncated: {n} bytes needed, {} left",
                self.buf.len()
            ));
        }
        self.buf = &self.buf[n..];
        Ok(())
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.buf.len() < N {
            return Err(format!(
                "truncated: {N} bytes needed, {} left",
                self.buf.len()
            ));
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[..N]);
        self.buf = &self.buf[N..];
        Ok(out)
    }

    fn varint(&mut self) -> Result<u32, String> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.fixed::<1>()?;
            value |= ((b & 0x7f) as u32) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 5 bytes".into())
    }

    /// A length-prefixed field's length; `None` for null.
    fn length(&mut self, wide: bool) -> Result<Option<usize>, String> {
        if self.flexible {
            let n = self.varint()?;
            return Ok(n.checked_sub(1).map(|n| n as usize));
        }
        let n = if wide {
            i32::from_be_bytes(self.fixed::<4>()?)
        } else {
            i16::from_be_bytes(self.fixed::<2>()?) as i32
        };
        match n {
            -1 => Ok(None),
            n if n < 0 => Err(format!("negative length {n}")),
            n => Ok(Some(n as usize)),
        }
    }

    /// An array's element count, which must fit in what is left.
    fn count(&mut self) -> Result<usize, String> {
        let n = self.length(true)?.unwrap_or(0);
        if n > self.buf.len() {
            return Err(format!(
                "an array declares {n} elements but only {} bytes follow",
                self.buf.len()
            ));
        }
        Ok(n)
    }

    fn tagged_fields(&mut self) -> Result<(), String> {
        if !self.flexible {
            return Ok(());
        }
        let n = self.varint()? as usize;
        if n > self.buf.len() {
            return Err(format!("{n} tagged fields in {} bytes", self.buf.len()));
        }
        for _ in 0..n {
            self.varint()?;
            let size = self.varint()? as usize;
            self.skip(size)?;
        }
        Ok(())
    }

    fn fields(&mut self, fields: &[Field]) -> Result<(), String> {
        for field in fields {
            if self.version < field.min || self.version > field.max {
                continue;
            }
            match field.ty {
                I8 | Bool => self.skip(1)?,
                I16 => self.skip(2)?,
                I32 => self.skip(4)?,
                I64 => self.skip(8)?,
                Uuid => self.skip(16)?,
                Str => {
                    if let Some(n) = self.length(false)? {
                        self.skip(n)?;
                    }
                }
                Bytes => {
                    if let Some(n) = self.length(true)? {
                        self.skip(n)?;
                    }
                }
                ArrI32 => {
                    let n = self.count()?;
                    self.skip(n.saturating_mul(4))?;
                }
                ArrStr => {
                    for _ in 0..self.count()? {
                        if let Some(n) = self.length(false)? {
                            self.skip(n)?;
                        }
                    }
                }
                Arr(inner) => {
                    for _ in 0..self.count()? {
                        self.fields(inner)?;
                        self.tagged_fields()?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Checks that every array in the request body fits in the body. APIs without a description
/// pass unchecked (weir does not decode them).
pub fn check(api: ApiKey, version: i16, body: &[u8]) -> Result<(), String> {
    let Some((fields, flexible_from)) = schema(api) else {
        return Ok(());
    };
    let mut walker = Walker {
        buf: body,
        version,
        flexible: version >= flexible_from,
    };
    walker.fields(fields)?;
    walker.tagged_fields()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn name(s: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(s))
    }

    fn encode<R: Encodable>(request: &R, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        request.encode(&mut buf, version).expect("encodable sample");
        buf.freeze()
    }

    /// Sample requests with every array non-empty, encoded at every decodable version the
    /// table advertises: the walk must consume each exactly.
    fn samples(api: ApiKey, version: i16) -> Bytes {
        use kafka_protocol::messages::{
            alter_configs_request as ac, create_partitions_request as cp,
            create_topics_request as ct, delete_records_request as dr, delete_topics_request as dt,
            describe_configs_request as dc, describe_log_dirs_request as dl, fetch_request as fr,
            incremental_alter_configs_request as ia, list_offsets_request as lo,
            metadata_request as mr, produce_request as pr,
        };
        match api {
            ApiKey::Produce => {
                let mut topic = pr::TopicProduceData::default().with_partition_data(vec![
                    pr::PartitionProduceData::default()
                        .with_index(1)
                        .with_records(Some(Bytes::from_static(b"records"))),
                ]);
                if version < 13 {
                    topic = topic.with_name(name("t"));
                }
                encode(
                    &ProduceRequest::default().with_topic_data(vec![topic]),
                    version,
                )
            }
            ApiKey::Fetch => {
                let mut topic = fr::FetchTopic::default().with_partitions(vec![
                    fr::FetchPartition::default(),
                    fr::FetchPartition::default(),
                ]);
                let mut forgotten = fr::ForgottenTopic::default();
                if version >= 7 {
                    forgotten = forgotten.with_partitions(vec![1, 2, 3]);
                }
                if version < 13 {
                    topic = topic.with_topic(name("t"));
                    if version >= 7 {
                        forgotten = forgotten.with_topic(name("f"));
                    }
                }
                let mut request = FetchRequest::default().with_topics(vec![topic]);
                if version >= 7 {
                    request = request.with_forgotten_topics_data(vec![forgotten]);
                }
                if version >= 11 {
                    request = request.with_rack_id(StrBytes::from_static_str("rack"));
                }
                encode(&request, version)
            }
            ApiKey::ListOffsets => encode(
                &ListOffsetsRequest::default().with_topics(vec![lo::ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![lo::ListOffsetsPartition::default()])]),
                version,
            ),
            ApiKey::ElectLeaders => {
                use kafka_protocol::messages::elect_leaders_request as el;
                encode(
                    &ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                        el::TopicPartitions::default()
                            .with_topic(name("t"))
                            .with_partitions(vec![0, 1]),
                    ])),
                    version,
                )
            }
            ApiKey::DescribeAcls => encode(
                &DescribeAclsRequest::default()
                    .with_resource_name_filter(Some(StrBytes::from_static_str("t")))
                    .with_principal_filter(Some(StrBytes::from_static_str("User:a"))),
                version,
            ),
            ApiKey::CreateAcls => {
                use kafka_protocol::messages::create_acls_request as ca;
                let creation = ca::AclCreation::default()
                    .with_resource_name(StrBytes::from_static_str("t"))
                    .with_principal(StrBytes::from_static_str("User:a"))
                    .with_host(StrBytes::from_static_str("*"));
                encode(
                    &CreateAclsRequest::default().with_creations(vec![creation.clone(), creation]),
                    version,
                )
            }
            ApiKey::DeleteAcls => {
                use kafka_protocol::messages::delete_acls_request as da;
                encode(
                    &DeleteAclsRequest::default()
                        .with_filters(vec![da::DeleteAclsFilter::default()
                            .with_host_filter(Some(StrBytes::from_static_str("*")))]),
                    version,
                )
            }
            ApiKey::OffsetForLeaderEpoch => {
                use kafka_protocol::messages::offset_for_leader_epoch_request as ol;
                encode(
                    &OffsetForLeaderEpochRequest::default().with_topics(vec![
                        ol::OffsetForLeaderTopic::default()
                            .with_topic(name("t"))
                            .with_partitions(vec![ol::OffsetForLeaderPartition::default()]),
                    ]),
                    version,
                )
            }
            ApiKey::Metadata => {
                let topic = mr::MetadataRequestTopic::default().with_name(Some(name("t")));
                encode(
                    &MetadataRequest::default().with_topics(Some(vec![topic])),
                    version,
                )
            }
            ApiKey::ApiVersions => encode(
                &ApiVersionsRequest::default().with_client_software_name(if version >= 3 {
                    StrBytes::from_static_str("x")
                } else {
                    StrBytes::default()
                }),
                version,
            ),
            ApiKey::CreateTopics => encode(
                &CreateTopicsRequest::default().with_topics(vec![ct::CreatableTopic::default()
                    .with_name(name("t"))
                    .with_assignments(vec![ct::CreatableReplicaAssignment::default()
                        .with_broker_ids(vec![BrokerId(1), BrokerId(2)])])
                    .with_configs(vec![ct::CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str("k"))
                        .with_value(Some(StrBytes::from_static_str("v")))])]),
                version,
            ),
            ApiKey::DeleteTopics => {
                let request = if version >= 6 {
                    DeleteTopicsRequest::default().with_topics(vec![dt::DeleteTopicState::default(
                    )
                    .with_name(Some(name("t")))])
                } else {
                    DeleteTopicsRequest::default().with_topic_names(vec![name("a"), name("b")])
                };
                encode(&request, version)
            }
            ApiKey::DeleteRecords => encode(
                &DeleteRecordsRequest::default().with_topics(vec![
                    dr::DeleteRecordsTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![dr::DeleteRecordsPartition::default()]),
                ]),
                version,
            ),
            ApiKey::DescribeConfigs => encode(
                &DescribeConfigsRequest::default().with_resources(vec![
                    dc::DescribeConfigsResource::default()
                        .with_resource_name(StrBytes::from_static_str("t"))
                        .with_configuration_keys(Some(vec![StrBytes::from_static_str("k")])),
                ]),
                version,
            ),
            ApiKey::AlterConfigs => encode(
                &AlterConfigsRequest::default().with_resources(vec![
                    ac::AlterConfigsResource::default()
                        .with_resource_name(StrBytes::from_static_str("t"))
                        .with_configs(vec![ac::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("k"))
                            .with_value(Some(StrBytes::from_static_str("v")))]),
                ]),
                version,
            ),
            ApiKey::IncrementalAlterConfigs => encode(
                &IncrementalAlterConfigsRequest::default().with_resources(vec![
                    ia::AlterConfigsResource::default()
                        .with_resource_name(StrBytes::from_static_str("t"))
                        .with_configs(vec![ia::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("k"))
                            .with_value(None)]),
                ]),
                version,
            ),
            ApiKey::DescribeCluster => encode(&DescribeClusterRequest::default(), version),
            ApiKey::ListPartitionReassignments => {
                use kafka_protocol::messages::list_partition_reassignments_request as lr;
                encode(
                    &ListPartitionReassignmentsRequest::default().with_topics(Some(vec![
                        lr::ListPartitionReassignmentsTopics::default()
                            .with_name(name("t"))
                            .with_partition_indexes(vec![0, 1]),
                    ])),
                    version,
                )
            }
            ApiKey::DescribeLogDirs => encode(
                &DescribeLogDirsRequest::default().with_topics(Some(vec![
                    dl::DescribableLogDirTopic::default()
                        .with_topic(name("t"))
                        .with_partitions(vec![0, 1]),
                ])),
                version,
            ),
            ApiKey::AlterReplicaLogDirs => {
                use kafka_protocol::messages::alter_replica_log_dirs_request as ar;
                encode(
                    &AlterReplicaLogDirsRequest::default().with_dirs(vec![
                        ar::AlterReplicaLogDir::default()
                            .with_path(StrBytes::from_static_str("/d"))
                            .with_topics(vec![ar::AlterReplicaLogDirTopic::default()
                                .with_name(name("t"))
                                .with_partitions(vec![0, 1])]),
                    ]),
                    version,
                )
            }
            ApiKey::CreatePartitions => encode(
                &CreatePartitionsRequest::default().with_topics(vec![
                    cp::CreatePartitionsTopic::default()
                        .with_name(name("t"))
                        .with_assignments(Some(vec![cp::CreatePartitionsAssignment::default()
                            .with_broker_ids(vec![BrokerId(3)])])),
                ]),
                version,
            ),
            ApiKey::InitProducerId => encode(
                &kafka_protocol::messages::InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000),
                version,
            ),
            ApiKey::OffsetCommit
            | ApiKey::OffsetFetch
            | ApiKey::FindCoordinator
            | ApiKey::JoinGroup
            | ApiKey::Heartbeat
            | ApiKey::LeaveGroup
            | ApiKey::SyncGroup
            | ApiKey::DescribeGroups
            | ApiKey::ListGroups
            | ApiKey::DeleteGroups
            | ApiKey::OffsetDelete => group_sample(api, version),
            other => panic!("no sample for {other:?}"),
        }
    }

    /// [groups] Samples of the consumer-group requests.
    fn group_sample(api: ApiKey, version: i16) -> Bytes {
        use kafka_protocol::messages::{
            join_group_request as jg, leave_group_request as lg, offset_commit_request as oc,
            offset_delete_request as od, offset_fetch_request as of, sync_group_request as sg,
        };
        let s = StrBytes::from_static_str;
        match api {
            ApiKey::OffsetCommit => encode(
                &OffsetCommitRequest::default().with_topics(vec![
                    oc::OffsetCommitRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![oc::OffsetCommitRequestPartition::default()
                            .with_committed_metadata(Some(s("m")))]),
                ]),
                version,
            ),
            ApiKey::OffsetFetch => {
                let topics = vec![of::OffsetFetchRequestTopic::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0, 1])];
                let groups = vec![of::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(Some(vec![of::OffsetFetchRequestTopics::default()
                        .with_name(name("t"))
                        .with_partition_indexes(vec![0])]))];
                let req = if version >= 8 {
                    OffsetFetchRequest::default().with_groups(groups)
                } else {
                    OffsetFetchRequest::default().with_topics(Some(topics))
                };
                encode(&req, version)
            }
            ApiKey::FindCoordinator => {
                let req = FindCoordinatorRequest::default();
                let req = if version >= 4 {
                    req.with_coordinator_keys(vec![s("g")])
                } else {
                    req.with_key(s("g"))
                };
                encode(&req, version)
            }
            ApiKey::JoinGroup => encode(
                &JoinGroupRequest::default().with_protocols(vec![
                    jg::JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(bytes::Bytes::from_static(b"abc")),
                ]),
                version,
            ),
            ApiKey::Heartbeat => encode(&HeartbeatRequest::default(), version),
            ApiKey::LeaveGroup => {
                let req = LeaveGroupRequest::default();
                let req = if version >= 3 {
                    req.with_members(vec![lg::MemberIdentity::default().with_member_id(s("m"))])
                } else {
                    req.with_member_id(s("m"))
                };
                encode(&req, version)
            }
            ApiKey::SyncGroup => encode(
                &SyncGroupRequest::default().with_assignments(vec![
                    sg::SyncGroupRequestAssignment::default()
                        .with_member_id(s("m"))
                        .with_assignment(bytes::Bytes::from_static(b"x")),
                ]),
                version,
            ),
            ApiKey::DescribeGroups => encode(
                &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
                version,
            ),
            ApiKey::ListGroups => {
                let mut req = ListGroupsRequest::default();
                if version >= 4 {
                    req = req.with_states_filter(vec![s("Stable")]);
                }
                if version >= 5 {
                    req = req.with_types_filter(vec![s("classic")]);
                }
                encode(&req, version)
            }
            ApiKey::DeleteGroups => encode(
                &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
                version,
            ),
            ApiKey::OffsetDelete => encode(
                &OffsetDeleteRequest::default().with_topics(vec![
                    od::OffsetDeleteRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![od::OffsetDeleteRequestPartition::default()]),
                ]),
                version,
            ),
            other => panic!("no group sample for {other:?}"),
        }
    }

    #[test]
    fn the_walk_consumes_every_sample_request_exactly() {
        for (api, min, max) in crate::protocol::api::supported_apis() {
            let decodable = api.valid_versions();
            for version in min.max(decodable.min)..=max {
                let body = samples(api, version);
                let mut walker = Walker {
                    buf: &body,
                    version,
                    flexible: version >= schema(api).unwrap().1,
                };
                walker
                    .fields(schema(api).unwrap().0)
                    .unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
                walker.tagged_fields().unwrap();
                assert!(
                    walker.buf.is_empty(),
                    "{api:?} v{version}: {} bytes left",
                    walker.buf.len()
                );
            }
        }
    }

    #[test]
    fn a_forged_array_length_is_refused() {
        // Metadata v1: topics array of i32::MAX elements, then nothing.
        let body = [0x7f, 0xff, 0xff, 0xff];
        assert!(check(ApiKey::Metadata, 1, &body).is_err());
        // Produce v9 (flexible): a compact array claiming ~268 million topics.
        let body = [
            0x00, 0x00, 0x01, 0x00, 0x00, 0x03, 0xe8, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert!(check(ApiKey::Produce, 9, &body).is_err());
    }

    #[test]
    fn truncated_bodies_are_refused() {
        let body = samples(ApiKey::Fetch, 11);
        assert!(check(ApiKey::Fetch, 11, &body[..body.len() - 3]).is_err());
    }
}
