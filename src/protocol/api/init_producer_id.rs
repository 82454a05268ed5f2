//! InitProducerId: hands idempotent producers their producer id, from this broker's block of
//! the cluster-wide producer id space (see `ProducerIdManager`).
//!
//! Without a transactional id Kafka's TransactionCoordinator "blindly accepts" the request
//! and answers a fresh producer id with epoch 0, even when the request carries an existing
//! id and epoch (KIP-360 clients send them when they reset their sequences); weir does the
//! same, so every reset gets a new id (which is also what an exhausted epoch would need).
//!
//! Transactions are not served. Transactional clients ask FindCoordinator for their
//! transaction coordinator first, and that answer stops them: TRANSACTIONAL_ID_AUTHORIZATION_FAILED
//! with a message saying transactions are unsupported (see
//! [`crate::actors::group::api::TRANSACTIONS_UNSUPPORTED`]), the one error librdkafka, the Java
//! client, kafka-python and aiokafka all treat as fatal at once. An InitProducerId that
//! carries a transactional id anyway (no coordinator lookup) is answered UNSUPPORTED_VERSION,
//! which they also treat as fatal; this response has no message field to explain an
//! authorization error.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader,
};

use super::{ApiContext, KafkaApi, Reply};

pub struct InitProducerId;

impl KafkaApi for InitProducerId {
    const KEY: ApiKey = ApiKey::InitProducerId;
    const MAX_VERSION: i16 = 4;
    type Request = InitProducerIdRequest;
    type Response = InitProducerIdResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        request: InitProducerIdRequest,
    ) -> BoxFuture<'static, Reply<InitProducerIdResponse>> {
        match &request.transactional_id {
            // Kafka: an empty transactional id is an invalid request.
            Some(id) if id.0.is_empty() => {
                return ready(error(ResponseError::InvalidRequest.code()))
            }
            Some(_) => return ready(error(ResponseError::UnsupportedVersion.code())),
            None => {}
        }
        // Kafka (KafkaApis.handleInitProducerIdRequest): id and epoch come together or not
        // at all.
        if (request.producer_id.0 == -1) != (request.producer_epoch == -1) {
            return ready(error(ResponseError::InvalidRequest.code()));
        }
        let ids = ctx.controller.producer_ids.clone();
        let broker_id = ctx.broker_id;
        async move {
            match ids.generate(broker_id).await {
                Ok(id) => Reply::Respond(
                    InitProducerIdResponse::default()
                        .with_producer_id(ProducerId(id))
                        .with_producer_epoch(0),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot allocate a producer id");
                    Reply::Respond(error(e.code))
                }
            }
        }
        .boxed()
    }

    fn error_response(_version: i16, code: i16) -> InitProducerIdResponse {
        error(code)
    }
}

fn error(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

fn ready(response: InitProducerIdResponse) -> BoxFuture<'static, Reply<InitProducerIdResponse>> {
    futures::future::ready(Reply::Respond(response)).boxed()
}
