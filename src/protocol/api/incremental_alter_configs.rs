//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on the config overrides of a
//! topic, of this broker or of the cluster-wide broker default (through the controller).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestHeader,
};

use super::alter_configs::alter_entities;
use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::controller::messages::{AlterConfigOp, ConfigChange};
use crate::protocol::error::ApiError;

pub struct IncrementalAlterConfigs;

impl KafkaApi for IncrementalAlterConfigs {
    const KEY: ApiKey = ApiKey::IncrementalAlterConfigs;
    const MAX_VERSION: i16 = 1;
    type Request = IncrementalAlterConfigsRequest;
    type Response = IncrementalAlterConfigsResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        request: IncrementalAlterConfigsRequest,
    ) -> BoxFuture<'static, Reply<IncrementalAlterConfigsResponse>> {
        let ctx = ctx.clone();
        let resources: Vec<_> = request
            .resources
            .into_iter()
            .map(|r| {
                let change = r
                    .configs
                    .into_iter()
                    .map(|c| {
                        let op = AlterConfigOp::from_wire(c.config_operation).ok_or_else(|| {
                            ApiError::with_message(
                                ResponseError::InvalidRequest,
                                format!("unknown config operation {}", c.config_operation),
                            )
                        })?;
                        Ok((c.name.to_string(), op, c.value.map(|v| v.to_string())))
                    })
                    .collect::<Result<Vec<_>, ApiError>>()
                    .map(ConfigChange::Incremental);
                (r.resource_type, r.resource_name.to_string(), change)
            })
            .collect();
        async move {
            let results = alter_entities(&ctx, resources, request.validate_only).await;
            let responses = results
                .into_iter()
                .map(|(kind, name, result)| {
                    let r = AlterConfigsResourceResponse::default()
                        .with_resource_type(kind)
                        .with_resource_name(str_bytes(name));
                    match result {
                        Ok(()) => r.with_error_message(None),
                        Err(e) => r
                            .with_error_code(e.code)
                            .with_error_message(e.message.map(str_bytes)),
                    }
                })
                .collect();
            Reply::Respond(IncrementalAlterConfigsResponse::default().with_responses(responses))
        }
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> IncrementalAlterConfigsResponse {
        IncrementalAlterConfigsResponse::default()
    }
}
