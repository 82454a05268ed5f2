//! The Kafka APIs this broker serves: one file per API, each the same three steps (decode →
//! ask the owning actor → encode), plus the dispatch table and the version table advertised in
//! ApiVersions.
//!
//! The advertised ranges are Kafka 3.7's (a ZooKeeper-mode 3.x release) for the APIs weir
//! implements, every one starting at v0 as real brokers do: librdkafka enables features only
//! when the advertised range overlaps its minimum versions, and kafka-python infers the
//! broker's release from the maxima (Fetch v16 reads as 3.7). Versions the `kafka-protocol`
//! crate cannot decode (the oldest ones, which carry the old message formats) are answered
//! UNSUPPORTED_VERSION by [`legacy`]. A version outside the advertised range is answered
//! UNSUPPORTED_VERSION; an API key that is not advertised closes the connection, as an
//! unknown key does in Kafka.

pub mod acls;
pub mod alter_configs;
pub mod alter_replica_log_dirs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_log_dirs;
pub mod elect_leaders;
pub mod fetch;
pub mod groups;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod legacy;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod request_shape;

use std::sync::Arc;

use actix::Addr;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::actors::broker::{Broker, LocalReplicas};
use crate::actors::controller::messages::ControllerLink;
use crate::actors::metadata_cache::{MetadataCache, MetadataSnapshot};
use crate::config::{BrokerConfig, TopicConfig};

/// Everything a connection's request handlers need: this broker's identity and config, the
/// metadata cache, the local replicas, and where to send what only an actor can do.
#[derive(Debug, Clone)]
pub struct ApiContext {
    pub broker_id: i32,
    pub config: Arc<BrokerConfig>,
    /// The topic-level defaults `config` implies, for topics without overrides.
    pub topic_defaults: Arc<TopicConfig>,
    pub metadata: MetadataCache,
    pub replicas: LocalReplicas,
    pub broker: Addr<Broker>,
    pub controller: ControllerLink,
    /// [groups] Finds this broker's group coordinators.
    pub groups: crate::actors::group::GroupRouter,
    /// One fetch at a time per connection (each connection gets its own gate): a fetch
    /// response can be tens of megabytes, and a client pipelining fetches without reading
    /// the answers must not make the broker hold many of them. Clients fetch one request at
    /// a time per broker anyway.
    pub fetch_gate: Arc<tokio::sync::Semaphore>,
    /// The broker's request channel bound, shared by every client connection.
    pub request_queue: Arc<crate::protocol::request_queue::RequestQueue>,
    /// The connection's client as a group member's `client_host` (DescribeGroups shows it):
    /// Kafka's `/` and the peer's IP address. [`LOCAL_CLIENT_HOST`] on the broker-wide
    /// context, whose in-process users share the broker's host.
    pub client_host: Arc<str>,
}

/// The `client_host` of a context without a socket.
pub const LOCAL_CLIENT_HOST: &str = "/127.0.0.1";

/// Kafka's `client_host` for a peer: Java's `InetAddress.toString()` of an address without a
/// host name, `/` then the address, IPv6 in full (`/0:0:0:0:0:0:0:1`) and an IPv4-mapped IPv6
/// address as the IPv4 one (Java's sockets see it as an `Inet4Address`).
pub fn kafka_client_host(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => format!("/{v4}"),
        std::net::IpAddr::V6(v6) => {
            let segments: Vec<String> = v6.segments().iter().map(|s| format!("{s:x}")).collect();
            format!("/{}", segments.join(":"))
        }
    }
}

impl ApiContext {
    /// This broker's context for one new connection from `peer` (with its own fetch gate and
    /// the peer as the client host).
    pub fn for_connection(&self, peer: Option<std::net::SocketAddr>) -> Arc<ApiContext> {
        Arc::new(ApiContext {
            fetch_gate: Arc::new(tokio::sync::Semaphore::new(1)),
            client_host: peer
                .map(|addr| Arc::from(kafka_client_host(addr.ip())))
                .unwrap_or_else(|| self.client_host.clone()),
            ..self.clone()
        })
    }

    /// The effective config of `topic` in `snapshot`.
    pub fn topic_config<'a>(
        &'a self,
        snapshot: &'a MetadataSnapshot,
        topic: &str,
    ) -> &'a TopicConfig {
        snapshot
            .topic_config(topic)
            .map(|c| &c.effective)
            .unwrap_or_else(|| self.topic_defaults(snapshot))
    }

    /// The topic-level defaults in force: the static ones, or those dynamic broker configs
    /// made (KIP-226).
    pub fn topic_defaults<'a>(&'a self, snapshot: &'a MetadataSnapshot) -> &'a TopicConfig {
        snapshot
            .topic_defaults
            .as_deref()
            .unwrap_or(&self.topic_defaults)
    }
}

/// How a request ends.
pub enum Reply<R> {
    Respond(R),
    /// `acks=0` produce: the client expects nothing back.
    NoResponse,
    /// Close the connection after the responses already owed (Kafka does this when an
    /// `acks=0` produce fails, so the client notices and refreshes its metadata).
    Close(String),
}

/// A response ready to write: a size-prefixed frame, possibly in several pieces so stored
/// record bytes go out without being copied into one buffer.
#[derive(Debug, Clone)]
pub struct ResponseFrame {
    pub chunks: Vec<Bytes>,
}

impl ResponseFrame {
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a connection does with one request's result, in request order.
pub enum Outcome {
    Respond(ResponseFrame),
    NoResponse,
    Close(String),
}

/// The result of one request, possibly still being computed.
pub type PendingResponse = BoxFuture<'static, Outcome>;

/// One Kafka API.
pub trait KafkaApi {
    const KEY: ApiKey;
    /// The advertised version range.
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16;
    type Request: Decodable + Send + 'static;
    type Response: Encodable + Send + 'static;

    /// Starts handling a decoded request. Work that must happen in request order (sending
    /// appends to replicas) happens before this returns; the future finishes the rest.
    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: Self::Request,
    ) -> BoxFuture<'static, Reply<Self::Response>>;

    /// The whole-request error response for `code` (UNSUPPORTED_VERSION for a version outside
    /// the advertised range), built without the request body.
    fn error_response(version: i16, code: i16) -> Self::Response;

    /// Encodes the response body; Fetch overrides it to avoid copying stored records.
    fn encode_body(
        response: &Self::Response,
        version: i16,
        out: &mut BytesMut,
        _chunks: &mut Vec<Bytes>,
    ) -> anyhow::Result<()> {
        response.encode(out, version)
    }
}

/// The advertised table: (API, min, max).
pub fn supported_apis() -> Vec<(ApiKey, i16, i16)> {
    fn entry<A: KafkaApi>() -> (ApiKey, i16, i16) {
        (A::KEY, A::MIN_VERSION, A::MAX_VERSION)
    }
    vec![
        entry::<produce::Produce>(),
        entry::<fetch::Fetch>(),
        entry::<list_offsets::ListOffsets>(),
        entry::<metadata::Metadata>(),
        entry::<api_versions::ApiVersions>(),
        entry::<create_topics::CreateTopics>(),
        entry::<delete_topics::DeleteTopics>(),
        entry::<delete_records::DeleteRecords>(),
        entry::<describe_configs::DescribeConfigs>(),
        entry::<alter_configs::AlterConfigs>(),
        entry::<describe_log_dirs::DescribeLogDirs>(),
        entry::<alter_replica_log_dirs::AlterReplicaLogDirs>(),
        entry::<create_partitions::CreatePartitions>(),
        entry::<incremental_alter_configs::IncrementalAlterConfigs>(),
        entry::<describe_cluster::DescribeCluster>(),
        entry::<list_partition_reassignments::ListPartitionReassignments>(),
        entry::<init_producer_id::InitProducerId>(),
        entry::<offset_for_leader_epoch::OffsetForLeaderEpoch>(),
        entry::<elect_leaders::ElectLeaders>(),
        entry::<acls::DescribeAcls>(),
        entry::<acls::CreateAcls>(),
        entry::<acls::DeleteAcls>(),
        // [groups]
        entry::<groups::OffsetCommit>(),
        entry::<groups::OffsetFetch>(),
        entry::<groups::FindCoordinator>(),
        entry::<groups::JoinGroup>(),
        entry::<groups::Heartbeat>(),
        entry::<groups::LeaveGroup>(),
        entry::<groups::SyncGroup>(),
        entry::<groups::DescribeGroups>(),
        entry::<groups::ListGroups>(),
        entry::<groups::DeleteGroups>(),
        entry::<groups::OffsetDelete>(),
    ]
}

/// Why a connection must be closed instead of answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseConnection(pub String);

/// Decodes one request frame (without its size prefix) and starts handling it.
pub fn dispatch(ctx: &Arc<ApiContext>, frame: Bytes) -> Result<PendingResponse, CloseConnection> {
    route(&Serve(ctx), frame)
}

/// Everything [`dispatch`] does with a frame before a handler asks an actor: routing by key
/// and version, header decoding, the shape checks and body decoding, and the responses built
/// without an actor (UNSUPPORTED_VERSION, the legacy formats). The fuzz targets' entry
/// (`fuzz/`): it needs no running broker.
pub fn decode_request(frame: Bytes) -> Result<(), CloseConnection> {
    route(&DecodeOnly, frame)
}

/// What the dispatch table does with a request once it knows which API it is for.
trait Route {
    type Output;
    /// A request of API `A`.
    fn api<A: KafkaApi>(
        &self,
        api: ApiKey,
        version: i16,
        frame: Bytes,
    ) -> Result<Self::Output, CloseConnection>;
    /// OffsetCommit v0–1 and OffsetFetch v0, decoded by hand.
    fn legacy_group(
        &self,
        api: ApiKey,
        version: i16,
        frame: Bytes,
    ) -> Result<Self::Output, CloseConnection>;
    /// A response that needed no decoding.
    fn answered(&self, response: PendingResponse) -> Self::Output;
}

/// A live broker: decode, then handle.
struct Serve<'a>(&'a Arc<ApiContext>);

impl Route for Serve<'_> {
    type Output = PendingResponse;

    fn api<A: KafkaApi>(
        &self,
        api: ApiKey,
        version: i16,
        frame: Bytes,
    ) -> Result<PendingResponse, CloseConnection> {
        serve::<A>(self.0, api, version, frame)
    }

    fn legacy_group(
        &self,
        api: ApiKey,
        version: i16,
        frame: Bytes,
    ) -> Result<PendingResponse, CloseConnection> {
        groups::serve_legacy(self.0, api, version, frame)
    }

    fn answered(&self, response: PendingResponse) -> PendingResponse {
        response
    }
}

/// Decoding only ([`decode_request`]); the responses that need no actor are still built.
struct DecodeOnly;

impl Route for DecodeOnly {
    type Output = ();

    fn api<A: KafkaApi>(
        &self,
        api: ApiKey,
        version: i16,
        frame: Bytes,
    ) -> Result<(), CloseConnection> {
        if let Decoded::Answered(response) = decode::<A>(api, version, frame)? {
            self.answered(response);
        }
        Ok(())
    }

    fn legacy_group(&self, api: ApiKey, version: i16, frame: Bytes) -> Result<(), CloseConnection> {
        groups::decode_legacy(api, version, frame).map(drop)
    }

    fn answered(&self, response: PendingResponse) {
        drop(response.now_or_never());
    }
}

/// The dispatch table: which API a frame is for, and how its version is served.
fn route<R: Route>(route: &R, frame: Bytes) -> Result<R::Output, CloseConnection> {
    if frame.len() < 8 {
        return Err(CloseConnection(format!(
            "a request of {} bytes is too short for a request header",
            frame.len()
        )));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api) = ApiKey::try_from(key) else {
        return Err(CloseConnection(format!("unknown API key {key}")));
    };
    if api == ApiKey::ApiVersions && version > api_versions::ApiVersions::MAX_VERSION {
        // KIP-511: a newer client's ApiVersions gets our table in a v0 body, so it can retry.
        return Ok(route.answered(api_versions::unsupported_version_fallback(correlation_id)));
    }
    match api {
        ApiKey::Produce => route.api::<produce::Produce>(api, version, frame),
        ApiKey::Fetch => route.api::<fetch::Fetch>(api, version, frame),
        ApiKey::ListOffsets => route.api::<list_offsets::ListOffsets>(api, version, frame),
        ApiKey::Metadata => route.api::<metadata::Metadata>(api, version, frame),
        ApiKey::ApiVersions => route.api::<api_versions::ApiVersions>(api, version, frame),
        ApiKey::CreateTopics => route.api::<create_topics::CreateTopics>(api, version, frame),
        ApiKey::DeleteTopics => route.api::<delete_topics::DeleteTopics>(api, version, frame),
        ApiKey::DeleteRecords => route.api::<delete_records::DeleteRecords>(api, version, frame),
        ApiKey::DescribeConfigs => {
            route.api::<describe_configs::DescribeConfigs>(api, version, frame)
        }
        ApiKey::AlterConfigs => route.api::<alter_configs::AlterConfigs>(api, version, frame),
        ApiKey::DescribeLogDirs => {
            route.api::<describe_log_dirs::DescribeLogDirs>(api, version, frame)
        }
        ApiKey::AlterReplicaLogDirs => {
            route.api::<alter_replica_log_dirs::AlterReplicaLogDirs>(api, version, frame)
        }
        ApiKey::CreatePartitions => {
            route.api::<create_partitions::CreatePartitions>(api, version, frame)
        }
        ApiKey::IncrementalAlterConfigs => {
            route.api::<incremental_alter_configs::IncrementalAlterConfigs>(api, version, frame)
        }
        ApiKey::DescribeCluster => {
            route.api::<describe_cluster::DescribeCluster>(api, version, frame)
        }
        ApiKey::InitProducerId => {
            route.api::<init_producer_id::InitProducerId>(api, version, frame)
        }
        ApiKey::OffsetForLeaderEpoch => {
            route.api::<offset_for_leader_epoch::OffsetForLeaderEpoch>(api, version, frame)
        }
        ApiKey::ElectLeaders => route.api::<elect_leaders::ElectLeaders>(api, version, frame),
        ApiKey::ListPartitionReassignments => {
            route.api::<list_partition_reassignments::ListPartitionReassignments>(
                api, version, frame,
            )
        }
        ApiKey::DescribeAcls => route.api::<acls::DescribeAcls>(api, version, frame),
        ApiKey::CreateAcls => route.api::<acls::CreateAcls>(api, version, frame),
        ApiKey::DeleteAcls => route.api::<acls::DeleteAcls>(api, version, frame),

        // ---------------------------------------------------------------------------------
        // [groups] The consumer-group coordinator's APIs (src/actors/group/) with Kafka 3.7's
        // ranges. OffsetCommit v0–1 and OffsetFetch v0 are hand-decoded (kafka-protocol
        // cannot), since librdkafka's balanced consumer needs them.
        ApiKey::OffsetCommit if (0..2).contains(&version) => {
            route.legacy_group(api, version, frame)
        }
        ApiKey::OffsetFetch if version == 0 => route.legacy_group(api, version, frame),
        ApiKey::OffsetCommit => route.api::<groups::OffsetCommit>(api, version, frame),
        ApiKey::OffsetFetch => route.api::<groups::OffsetFetch>(api, version, frame),
        ApiKey::FindCoordinator => route.api::<groups::FindCoordinator>(api, version, frame),
        ApiKey::JoinGroup => route.api::<groups::JoinGroup>(api, version, frame),
        ApiKey::Heartbeat => route.api::<groups::Heartbeat>(api, version, frame),
        ApiKey::LeaveGroup => route.api::<groups::LeaveGroup>(api, version, frame),
        ApiKey::SyncGroup => route.api::<groups::SyncGroup>(api, version, frame),
        ApiKey::DescribeGroups => route.api::<groups::DescribeGroups>(api, version, frame),
        ApiKey::ListGroups => route.api::<groups::ListGroups>(api, version, frame),
        ApiKey::DeleteGroups => route.api::<groups::DeleteGroups>(api, version, frame),
        ApiKey::OffsetDelete => route.api::<groups::OffsetDelete>(api, version, frame),
        // Transactions, SASL and the rest are not advertised:
        // clients check ApiVersions first, so only a misbehaving one gets here.
        other => Err(CloseConnection(format!("{other:?} is not supported"))),
    }
}

/// A request decoded for API `A`, or the response it gets without being decoded.
enum Decoded<A: KafkaApi> {
    Answered(PendingResponse),
    Request(RequestHeader, A::Request),
}

/// Routes by version and decodes one API's request: header, shape check, body.
fn decode<A: KafkaApi>(
    api: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<Decoded<A>, CloseConnection> {
    let decodable = api.valid_versions();
    if version < decodable.min && version >= A::MIN_VERSION {
        return legacy::respond(api, version, frame).map(Decoded::Answered);
    }
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    if version < A::MIN_VERSION || version > A::MAX_VERSION {
        if version > decodable.max || version < decodable.min {
            return Err(CloseConnection(format!(
                "{api:?} v{version} is neither supported nor decodable"
            )));
        }
        let response = A::error_response(version, ResponseError::UnsupportedVersion.code());
        return Ok(Decoded::Answered(
            futures::future::ready(encode_response::<A>(
                api,
                version,
                correlation_id,
                &response,
            ))
            .boxed(),
        ));
    }
    let mut buf = frame;
    let header_version = api.request_header_version(version);
    let header = RequestHeader::decode(&mut buf, header_version).map_err(|e| {
        CloseConnection(format!("malformed {api:?} v{version} request header: {e}"))
    })?;
    request_shape::check(api, version, &buf)
        .map_err(|e| CloseConnection(format!("malformed {api:?} v{version} request: {e}")))?;
    let request = A::Request::decode(&mut buf, version)
        .map_err(|e| CloseConnection(format!("malformed {api:?} v{version} request: {e}")))?;
    Ok(Decoded::Request(header, request))
}

/// Decode → handle → encode for one API.
fn serve<A: KafkaApi>(
    ctx: &Arc<ApiContext>,
    api: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<PendingResponse, CloseConnection> {
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let (header, request) = match decode::<A>(api, version, frame)? {
        Decoded::Answered(response) => return Ok(response),
        Decoded::Request(header, request) => (header, request),
    };
    let observed = crate::observe::client::start(ctx, api, &header, &request);
    let pending = A::handle(ctx, &header, request);
    Ok(async move {
        let reply = pending.await;
        crate::observe::client::finish(observed, &reply);
        match reply {
            Reply::Respond(response) => {
                encode_response::<A>(api, version, correlation_id, &response)
            }
            Reply::NoResponse => Outcome::NoResponse,
            Reply::Close(reason) => Outcome::Close(reason),
        }
    }
    .boxed())
}

/// Size prefix + response header + body.
pub fn encode_response<A: KafkaApi>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &A::Response,
) -> Outcome {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut chunks = Vec::new();
    let encoded = header
        .encode(&mut out, api.response_header_version(version))
        .and_then(|()| A::encode_body(response, version, &mut out, &mut chunks));
    match encoded {
        Ok(()) => Outcome::Respond(finish_frame(out, chunks)),
        Err(e) => {
            tracing::error!(api = ?api, version, error = %e, "cannot encode a response");
            Outcome::Close(format!("cannot encode {api:?} v{version} response: {e}"))
        }
    }
}

/// Patches the size prefix of a frame whose first chunk is `head` (starting with 4 placeholder
/// bytes) followed by `tail` chunks.
pub fn finish_frame(mut head: BytesMut, mut tail: Vec<Bytes>) -> ResponseFrame {
    let total = head.len() + tail.iter().map(Bytes::len).sum::<usize>() - 4;
    head[0..4].copy_from_slice(&(total as i32).to_be_bytes());
    let mut chunks = Vec::with_capacity(tail.len() + 1);
    chunks.push(head.freeze());
    chunks.append(&mut tail);
    ResponseFrame { chunks }
}

/// Converts a `String` into the crate's string type.
pub fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_api_starts_at_v0_and_is_decodable_at_its_max() {
        for (api, min, max) in supported_apis() {
            assert_eq!(min, 0, "{api:?} must be advertised from v0");
            let decodable = api.valid_versions();
            assert!(
                max <= decodable.max,
                "{api:?} v{max} is beyond kafka-protocol"
            );
            assert!(min <= max);
        }
    }

    #[test]
    fn client_host_is_written_as_javas_inet_address() {
        let host = |s: &str| kafka_client_host(s.parse().unwrap());
        assert_eq!(host("10.1.2.3"), "/10.1.2.3");
        assert_eq!(host("::1"), "/0:0:0:0:0:0:0:1");
        assert_eq!(host("fe80::1:abcd"), "/fe80:0:0:0:0:0:1:abcd");
        assert_eq!(host("::ffff:10.1.2.3"), "/10.1.2.3");
    }

    #[test]
    fn the_table_reads_as_kafka_3_7() {
        let table: std::collections::HashMap<ApiKey, (i16, i16)> = supported_apis()
            .into_iter()
            .map(|(k, min, max)| (k, (min, max)))
            .collect();
        assert_eq!(table[&ApiKey::Produce], (0, 10));
        assert_eq!(table[&ApiKey::Fetch], (0, 16));
        assert_eq!(table[&ApiKey::ListOffsets], (0, 8));
        assert_eq!(table[&ApiKey::Metadata], (0, 12));
        assert_eq!(table[&ApiKey::ApiVersions], (0, 3));
        assert_eq!(table[&ApiKey::InitProducerId], (0, 4));
        assert_eq!(table[&ApiKey::FindCoordinator], (0, 4));
        assert_eq!(table[&ApiKey::OffsetCommit], (0, 8));
        assert_eq!(table[&ApiKey::OffsetFetch], (0, 8));
        assert_eq!(table[&ApiKey::JoinGroup], (0, 9));
    }
}
