//! DescribeAcls, CreateAcls and DeleteAcls, answered as a Kafka broker without an authorizer
//! (`authorizer.class.name` empty, Kafka's default) answers them: SECURITY_DISABLED, so admin
//! clients and test suites get Kafka's own "No Authorizer is configured" error instead of an
//! unsupported API. v0, which `kafka-protocol` cannot decode, is answered the same way by
//! [`super::legacy`].

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, RequestHeader,
};

use super::{str_bytes, ApiContext, KafkaApi, Reply};

/// Kafka's messages, word for word (`KafkaApis.handleDescribeAcls` and friends).
pub(super) const DESCRIBE_MESSAGE: &str = "No Authorizer is configured on the broker";
pub(super) const CHANGE_MESSAGE: &str = "No Authorizer is configured.";

/// AclOperation bits (Kafka's `AclOperation` codes: READ 3, WRITE 4, CREATE 5, DELETE 6,
/// ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
/// IDEMPOTENT_WRITE 12). Without an authorizer Kafka's `AuthHelper.authorizedOperations`
/// reports every operation the resource type supports (`AclEntry.supportedOperations`), which
/// is what Metadata v8+ (`include_topic_authorized_operations`, and v8–v10
/// `include_cluster_authorized_operations`) and DescribeCluster answer when asked.
const fn ops(codes: &[u8]) -> i32 {
    let mut bits = 0;
    let mut i = 0;
    while i < codes.len() {
        bits |= 1 << codes[i];
        i += 1;
    }
    bits
}

/// A topic's: READ, WRITE, CREATE, DESCRIBE, DELETE, ALTER, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub(super) const TOPIC_AUTHORIZED_OPERATIONS: i32 = ops(&[3, 4, 5, 8, 6, 7, 10, 11]);
/// The cluster's: CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE,
/// ALTER, DESCRIBE.
pub(super) const CLUSTER_AUTHORIZED_OPERATIONS: i32 = ops(&[5, 9, 10, 11, 12, 7, 8]);

fn ready<R: Send + 'static>(response: R) -> BoxFuture<'static, Reply<R>> {
    futures::future::ready(Reply::Respond(response)).boxed()
}

pub struct DescribeAcls;

impl KafkaApi for DescribeAcls {
    const KEY: ApiKey = ApiKey::DescribeAcls;
    const MAX_VERSION: i16 = 3;
    type Request = DescribeAclsRequest;
    type Response = DescribeAclsResponse;

    fn handle(
        _ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        _request: DescribeAclsRequest,
    ) -> BoxFuture<'static, Reply<DescribeAclsResponse>> {
        ready(
            DescribeAclsResponse::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(str_bytes(DESCRIBE_MESSAGE))),
        )
    }

    fn error_response(_version: i16, code: i16) -> DescribeAclsResponse {
        DescribeAclsResponse::default().with_error_code(code)
    }
}

pub struct CreateAcls;

impl KafkaApi for CreateAcls {
    const KEY: ApiKey = ApiKey::CreateAcls;
    const MAX_VERSION: i16 = 3;
    type Request = CreateAclsRequest;
    type Response = CreateAclsResponse;

    fn handle(
        _ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        request: CreateAclsRequest,
    ) -> BoxFuture<'static, Reply<CreateAclsResponse>> {
        let results = request
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(ResponseError::SecurityDisabled.code())
                    .with_error_message(Some(str_bytes(CHANGE_MESSAGE)))
            })
            .collect();
        ready(CreateAclsResponse::default().with_results(results))
    }

    fn error_response(_version: i16, _code: i16) -> CreateAclsResponse {
        // One result per creation is owed; with the request undecoded there are none to
        // answer, which clients read as a failed request.
        CreateAclsResponse::default()
    }
}

pub struct DeleteAcls;

impl KafkaApi for DeleteAcls {
    const KEY: ApiKey = ApiKey::DeleteAcls;
    const MAX_VERSION: i16 = 3;
    type Request = DeleteAclsRequest;
    type Response = DeleteAclsResponse;

    fn handle(
        _ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        request: DeleteAclsRequest,
    ) -> BoxFuture<'static, Reply<DeleteAclsResponse>> {
        let results = request
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(ResponseError::SecurityDisabled.code())
                    .with_error_message(Some(str_bytes(CHANGE_MESSAGE)))
            })
            .collect();
        ready(DeleteAclsResponse::default().with_filter_results(results))
    }

    fn error_response(_version: i16, _code: i16) -> DeleteAclsResponse {
        DeleteAclsResponse::default()
    }
}
