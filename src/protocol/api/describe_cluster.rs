//! DescribeCluster: the cluster id, the controller id and the live brokers, from the metadata
//! cache (admin clients send CreateTopics and friends to the controller it names), and when
//! asked the operations authorized on the cluster: all of them, as Kafka without an authorizer.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader,
};

use super::acls::CLUSTER_AUTHORIZED_OPERATIONS;
use super::{str_bytes, ApiContext, KafkaApi, Reply};

pub struct DescribeCluster;

/// KIP-919's endpoint types: brokers (1) or controllers (2).
const ENDPOINT_BROKERS: i8 = 1;

impl KafkaApi for DescribeCluster {
    const KEY: ApiKey = ApiKey::DescribeCluster;
    const MAX_VERSION: i16 = 1;
    type Request = DescribeClusterRequest;
    type Response = DescribeClusterResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: DescribeClusterRequest,
    ) -> BoxFuture<'static, Reply<DescribeClusterResponse>> {
        let version = header.request_api_version;
        let snapshot = ctx.metadata.snapshot();
        let mut response = DescribeClusterResponse::default()
            .with_error_message(None)
            .with_cluster_id(str_bytes(snapshot.cluster_id.clone().unwrap_or_default()))
            .with_controller_id(BrokerId(snapshot.controller_id));
        if request.include_cluster_authorized_operations {
            response = response.with_cluster_authorized_operations(CLUSTER_AUTHORIZED_OPERATIONS);
        }
        if version >= 1 {
            if request.endpoint_type != ENDPOINT_BROKERS {
                let response = response
                    .with_error_code(ResponseError::UnsupportedEndpointType.code())
                    .with_error_message(Some(str_bytes("only broker endpoints are served")))
                    .with_endpoint_type(request.endpoint_type);
                return futures::future::ready(Reply::Respond(response)).boxed();
            }
            response = response.with_endpoint_type(ENDPOINT_BROKERS);
        }
        let brokers = snapshot
            .brokers
            .values()
            .map(|b| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(str_bytes(b.host.clone()))
                    .with_port(b.port as i32)
                    .with_rack(b.rack.clone().map(str_bytes))
            })
            .collect();
        futures::future::ready(Reply::Respond(response.with_brokers(brokers))).boxed()
    }

    fn error_response(_version: i16, code: i16) -> DescribeClusterResponse {
        DescribeClusterResponse::default().with_error_code(code)
    }
}
