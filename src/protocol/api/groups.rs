//! The consumer-group APIs (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete): decode,
//! hand to [`crate::actors::group::api`], encode. OffsetCommit v0–1 and OffsetFetch v0, which
//! kafka-protocol cannot decode, are decoded and encoded here by hand (librdkafka's balanced
//! consumer uses OffsetCommit v1–2 and OffsetFetch v1 against old brokers' ranges).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{finish_frame, ApiContext, CloseConnection, KafkaApi, Outcome, PendingResponse, Reply};
use crate::actors::group::api as group_api;
use crate::actors::group::ClientInfo;

macro_rules! group_api {
    ($name:ident, $key:ident, $max:expr, $req:ty, $resp:ty, $func:path, $err:expr) => {
        pub struct $name;

        impl KafkaApi for $name {
            const KEY: ApiKey = ApiKey::$key;
            const MAX_VERSION: i16 = $max;
            type Request = $req;
            type Response = $resp;

            fn handle(
                ctx: &Arc<ApiContext>,
                header: &RequestHeader,
                request: $req,
            ) -> BoxFuture<'static, Reply<$resp>> {
                let router = ctx.groups.clone();
                let version = header.request_api_version;
                async move {
                    // The group coordinator holds it from here (a SyncGroup waits for the
                    // leader's assignment): Kafka's purgatory, out of the request queue.
                    crate::protocol::request_queue::parked();
                    Reply::Respond($func(&router, version, request).await)
                }
                .boxed()
            }

            fn error_response(_version: i16, code: i16) -> $resp {
                let f: fn(i16) -> $resp = $err;
                f(code)
            }
        }
    };
}

group_api!(
    FindCoordinator,
    FindCoordinator,
    4,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    group_api::find_coordinator,
    |c| FindCoordinatorResponse::default().with_error_code(c)
);
group_api!(
    SyncGroup,
    SyncGroup,
    5,
    SyncGroupRequest,
    SyncGroupResponse,
    group_api::sync_group,
    |c| SyncGroupResponse::default().with_error_code(c)
);
group_api!(
    Heartbeat,
    Heartbeat,
    4,
    HeartbeatRequest,
    HeartbeatResponse,
    group_api::heartbeat,
    |c| HeartbeatResponse::default().with_error_code(c)
);
group_api!(
    LeaveGroup,
    LeaveGroup,
    5,
    LeaveGroupRequest,
    LeaveGroupResponse,
    group_api::leave_group,
    |c| LeaveGroupResponse::default().with_error_code(c)
);
group_api!(
    OffsetCommit,
    OffsetCommit,
    8,
    OffsetCommitRequest,
    OffsetCommitResponse,
    group_api::offset_commit,
    |_| OffsetCommitResponse::default()
);
group_api!(
    OffsetFetch,
    OffsetFetch,
    8,
    OffsetFetchRequest,
    OffsetFetchResponse,
    group_api::offset_fetch,
    |c| OffsetFetchResponse::default().with_error_code(c)
);
group_api!(
    ListGroups,
    ListGroups,
    4,
    ListGroupsRequest,
    ListGroupsResponse,
    group_api::list_groups,
    |c| ListGroupsResponse::default().with_error_code(c)
);
group_api!(
    DescribeGroups,
    DescribeGroups,
    5,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    group_api::describe_groups,
    |_| DescribeGroupsResponse::default()
);
group_api!(
    DeleteGroups,
    DeleteGroups,
    2,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    group_api::delete_groups,
    |_| DeleteGroupsResponse::default()
);
group_api!(
    OffsetDelete,
    OffsetDelete,
    0,
    OffsetDeleteRequest,
    OffsetDeleteResponse,
    group_api::offset_delete,
    |c| OffsetDeleteResponse::default().with_error_code(c)
);

/// JoinGroup also records who sent it (DescribeGroups shows the client id).
pub struct JoinGroup;

impl KafkaApi for JoinGroup {
    const KEY: ApiKey = ApiKey::JoinGroup;
    const MAX_VERSION: i16 = 9;
    type Request = JoinGroupRequest;
    type Response = JoinGroupResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: JoinGroupRequest,
    ) -> BoxFuture<'static, Reply<JoinGroupResponse>> {
        let router = ctx.groups.clone();
        let version = header.request_api_version;
        let client = ClientInfo {
            client_id: header
                .client_id
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            client_host: ctx.client_host.to_string(),
        };
        async move {
            // Waits for the rebalance in the group coordinator: Kafka's DelayedJoin.
            crate::protocol::request_queue::parked();
            Reply::Respond(group_api::join_group(&router, version, &client, request).await)
        }
        .boxed()
    }

    fn error_response(_version: i16, code: i16) -> JoinGroupResponse {
        JoinGroupResponse::default().with_error_code(code)
    }
}

// ---------------------------------------------------------------------------------------
// OffsetCommit v0–1 and OffsetFetch v0 (non-flexible, header v1 requests, v0 responses)

/// A bounds-checked reader over a non-flexible request body.
struct Reader {
    buf: Bytes,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, String> {
        if self.buf.len() < n {
            return Err(format!(
                "truncated: needed {n} bytes, {} left",
                self.buf.len()
            ));
        }
        Ok(self.buf.split_to(n))
    }
    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(i64::from_be_bytes(a))
    }
    fn nullable_string(&mut self) -> Result<Option<StrBytes>, String> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let b = self.take(n as usize)?;
        StrBytes::from_utf8(b)
            .map(Some)
            .map_err(|e| format!("invalid UTF-8 string: {e}"))
    }
    fn string(&mut self) -> Result<StrBytes, String> {
        self.nullable_string()?
            .ok_or_else(|| "null string where a string is required".to_string())
    }
    /// An array length, refused when it cannot fit in what is left.
    fn array_len(&mut self) -> Result<usize, String> {
        let n = self.i32()?;
        if n < 0 || n as usize > self.buf.len() {
            return Err(format!(
                "array length {n} with {} bytes left",
                self.buf.len()
            ));
        }
        Ok(n as usize)
    }
}

fn put_string(out: &mut BytesMut, s: &str) {
    out.put_i16(s.len().min(i16::MAX as usize) as i16);
    out.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

/// Skips the request header (v1: key, version, correlation id, nullable client id) and
/// returns the correlation id and client id with the reader at the body.
fn legacy_header(frame: Bytes) -> Result<(i32, Reader), String> {
    let mut r = Reader { buf: frame };
    r.take(4)?;
    let correlation_id = r.i32()?;
    r.nullable_string()?;
    Ok((correlation_id, r))
}

fn decode_offset_commit_v0_v1(r: &mut Reader, version: i16) -> Result<OffsetCommitRequest, String> {
    let mut req = OffsetCommitRequest::default().with_group_id(GroupId(r.string()?));
    if version >= 1 {
        req.generation_id_or_member_epoch = r.i32()?;
        req.member_id = r.string()?;
    }
    let topics = r.array_len()?;
    for _ in 0..topics {
        let name = r.string()?;
        let n = r.array_len()?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let partition_index = r.i32()?;
            let committed_offset = r.i64()?;
            if version >= 1 {
                // The commit timestamp: Kafka ignores it since 0.10 semantics.
                r.i64()?;
            }
            let committed_metadata = r.nullable_string()?;
            partitions.push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(partition_index)
                    .with_committed_offset(committed_offset)
                    .with_committed_metadata(committed_metadata),
            );
        }
        req.topics.push(
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(name))
                .with_partitions(partitions),
        );
    }
    Ok(req)
}

fn decode_offset_fetch_v0(r: &mut Reader) -> Result<OffsetFetchRequest, String> {
    let group_id = GroupId(r.string()?);
    let n = r.array_len()?;
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.string()?;
        let count = r.array_len()?;
        let mut indexes = Vec::with_capacity(count);
        for _ in 0..count {
            indexes.push(r.i32()?);
        }
        topics.push(
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(name))
                .with_partition_indexes(indexes),
        );
    }
    Ok(OffsetFetchRequest::default()
        .with_group_id(group_id)
        .with_topics(Some(topics)))
}

fn encode_offset_commit_v0(response: &OffsetCommitResponse, out: &mut BytesMut) {
    out.put_i32(response.topics.len() as i32);
    for t in &response.topics {
        put_string(out, t.name.0.as_str());
        out.put_i32(t.partitions.len() as i32);
        for p in &t.partitions {
            out.put_i32(p.partition_index);
            out.put_i16(p.error_code);
        }
    }
}

fn encode_offset_fetch_v0(response: &OffsetFetchResponse, out: &mut BytesMut) {
    out.put_i32(response.topics.len() as i32);
    for t in &response.topics {
        put_string(out, t.name.0.as_str());
        out.put_i32(t.partitions.len() as i32);
        for p in &t.partitions {
            out.put_i32(p.partition_index);
            out.put_i64(p.committed_offset);
            match &p.metadata {
                Some(m) => put_string(out, m.as_str()),
                None => out.put_i16(-1),
            }
            out.put_i16(p.error_code);
        }
    }
}

fn frame_with(correlation_id: i32, body: impl FnOnce(&mut BytesMut)) -> Outcome {
    let mut out = BytesMut::with_capacity(128);
    out.put_i32(0);
    out.put_i32(correlation_id);
    body(&mut out);
    Outcome::Respond(finish_frame(out, Vec::new()))
}

/// An OffsetCommit v0–1 or OffsetFetch v0 request, decoded by hand.
pub enum LegacyRequest {
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
}

/// Decodes OffsetCommit v0–1 and OffsetFetch v0 (the versions kafka-protocol cannot decode)
/// into the correlation id and the request.
pub fn decode_legacy(
    api: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<(i32, LegacyRequest), CloseConnection> {
    let malformed = |e: String| CloseConnection(format!("malformed {api:?} v{version}: {e}"));
    let (correlation_id, mut r) = legacy_header(frame).map_err(malformed)?;
    let request = match api {
        ApiKey::OffsetCommit => LegacyRequest::OffsetCommit(
            decode_offset_commit_v0_v1(&mut r, version).map_err(malformed)?,
        ),
        ApiKey::OffsetFetch => {
            LegacyRequest::OffsetFetch(decode_offset_fetch_v0(&mut r).map_err(malformed)?)
        }
        other => {
            return Err(CloseConnection(format!(
                "{other:?} v{version} has no legacy codec"
            )))
        }
    };
    Ok((correlation_id, request))
}

/// OffsetCommit v0–1 and OffsetFetch v0: the versions kafka-protocol cannot decode.
pub fn serve_legacy(
    ctx: &Arc<ApiContext>,
    api: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<PendingResponse, CloseConnection> {
    let (correlation_id, request) = decode_legacy(api, version, frame)?;
    let router = ctx.groups.clone();
    Ok(match request {
        LegacyRequest::OffsetCommit(req) => async move {
            let response = group_api::offset_commit(&router, version, req).await;
            frame_with(correlation_id, |out| {
                encode_offset_commit_v0(&response, out)
            })
        }
        .boxed(),
        LegacyRequest::OffsetFetch(req) => async move {
            let response = group_api::offset_fetch(&router, version, req).await;
            frame_with(correlation_id, |out| encode_offset_fetch_v0(&response, out))
        }
        .boxed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_commit_body() -> Bytes {
        let mut b = BytesMut::new();
        put_string(&mut b, "g");
        b.put_i32(3);
        put_string(&mut b, "member-1");
        b.put_i32(1);
        put_string(&mut b, "t");
        b.put_i32(1);
        b.put_i32(2);
        b.put_i64(42);
        b.put_i64(-1);
        put_string(&mut b, "meta");
        b.freeze()
    }

    #[test]
    fn offset_commit_v1_decodes_generation_member_and_offsets() {
        let mut r = Reader {
            buf: v1_commit_body(),
        };
        let req = decode_offset_commit_v0_v1(&mut r, 1).unwrap();
        assert_eq!(req.group_id.0.as_str(), "g");
        assert_eq!(req.generation_id_or_member_epoch, 3);
        assert_eq!(req.member_id.as_str(), "member-1");
        let p = &req.topics[0].partitions[0];
        assert_eq!((p.partition_index, p.committed_offset), (2, 42));
        assert_eq!(p.committed_metadata.as_ref().unwrap().as_str(), "meta");
        assert!(r.buf.is_empty());
    }

    #[test]
    fn truncated_or_forged_legacy_requests_are_refused() {
        let body = v1_commit_body();
        let mut r = Reader {
            buf: body.slice(..body.len() - 3),
        };
        assert!(decode_offset_commit_v0_v1(&mut r, 1).is_err());
        let mut b = BytesMut::new();
        put_string(&mut b, "g");
        b.put_i32(i32::MAX);
        let mut r = Reader { buf: b.freeze() };
        assert!(decode_offset_fetch_v0(&mut r).is_err());
    }

    #[test]
    fn offset_fetch_v0_response_has_offset_metadata_and_error_per_partition() {
        use kafka_protocol::messages::offset_fetch_response::{
            OffsetFetchResponsePartition, OffsetFetchResponseTopic,
        };
        let resp =
            OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![OffsetFetchResponsePartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(7)
                    .with_metadata(Some(StrBytes::from_static_str("m")))])]);
        let mut out = BytesMut::new();
        encode_offset_fetch_v0(&resp, &mut out);
        let expected: &[u8] = &[
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 1, b'm', 0,
            0,
        ];
        assert_eq!(&out[..], expected);
    }
}
