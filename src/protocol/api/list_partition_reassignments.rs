//! ListPartitionReassignments: the reassignments in progress, answered by the controller as in
//! ZooKeeper-mode Kafka (another broker answers NOT_CONTROLLER, and the admin client retries
//! against the controller the metadata names). weir never moves a partition's replicas
//! (there is no AlterPartitionReassignments), so the list is always empty; admin clients that
//! list before acting (KafkaJS's `admin.listPartitionReassignments`, monitoring tools) get
//! that answer rather than an unsupported API.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, RequestHeader,
};

use super::{ApiContext, KafkaApi, Reply};

pub struct ListPartitionReassignments;

impl KafkaApi for ListPartitionReassignments {
    const KEY: ApiKey = ApiKey::ListPartitionReassignments;
    const MAX_VERSION: i16 = 0;
    type Request = ListPartitionReassignmentsRequest;
    type Response = ListPartitionReassignmentsResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        _request: ListPartitionReassignmentsRequest,
    ) -> BoxFuture<'static, Reply<ListPartitionReassignmentsResponse>> {
        let response = if ctx.metadata.snapshot().controller_id == ctx.broker_id {
            ListPartitionReassignmentsResponse::default()
        } else {
            Self::error_response(0, ResponseError::NotController.code())
        };
        futures::future::ready(Reply::Respond(response)).boxed()
    }

    fn error_response(_version: i16, code: i16) -> ListPartitionReassignmentsResponse {
        ListPartitionReassignmentsResponse::default().with_error_code(code)
    }
}
