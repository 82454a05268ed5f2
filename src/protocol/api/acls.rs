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
