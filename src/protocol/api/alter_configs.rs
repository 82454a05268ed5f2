//! AlterConfigs: replaces a topic's config overrides (through the controller, which validates
//! them and tells every broker). Broker configs are static in weir: altering one is refused.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey, RequestHeader};

use super::describe_configs::RESOURCE_TOPIC;
use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::controller::messages::{AlterTopicConfigs, ConfigChange};
use crate::protocol::error::ApiError;

pub struct AlterConfigs;

/// Sends the topic changes to the controller and returns one result per resource, in order:
/// `(resource_type, resource_name, result)`.
pub async fn alter_topics(
    ctx: &ApiContext,
    resources: Vec<(i8, String, Result<ConfigChange, ApiError>)>,
    validate_only: bool,
) -> Vec<(i8, String, Result<(), ApiError>)> {
    let changes: Vec<(String, ConfigChange)> = resources
        .iter()
        .filter_map(|(_, name, change)| change.as_ref().ok().map(|c| (name.clone(), c.clone())))
        .collect();
    let mut answers = if changes.is_empty() {
        Vec::new()
    } else {
        ctx.controller
            .alter_topic_configs
            .send(AlterTopicConfigs {
                changes,
                validate_only,
            })
            .await
            .unwrap_or_default()
    }
    .into_iter();
    resources
        .into_iter()
        .map(|(kind, name, change)| {
            let result = match change {
                Err(e) => Err(e),
                Ok(_) => answers
                    .next()
                    .map(|(_, r)| r)
                    .unwrap_or_else(|| Err(ApiError::new(ResponseError::NotController))),
            };
            (kind, name, result)
        })
        .collect()
}

/// Why a non-topic resource cannot be altered.
pub fn refuse_resource(kind: i8) -> ApiError {
    if kind == super::describe_configs::RESOURCE_BROKER
        || kind == super::describe_configs::RESOURCE_BROKER_LOGGER
    {
        ApiError::with_message(
            ResponseError::InvalidRequest,
            "weir's broker configs are static: set them in the .properties file or with --set",
        )
    } else {
        ApiError::with_message(
            ResponseError::InvalidRequest,
            format!("unsupported resource type {kind}"),
        )
    }
}

impl KafkaApi for AlterConfigs {
    const KEY: ApiKey = ApiKey::AlterConfigs;
    const MAX_VERSION: i16 = 2;
    type Request = AlterConfigsRequest;
    type Response = AlterConfigsResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        _header: &RequestHeader,
        request: AlterConfigsRequest,
    ) -> BoxFuture<'static, Reply<AlterConfigsResponse>> {
        let ctx = ctx.clone();
        let resources: Vec<_> = request
            .resources
            .into_iter()
            .map(|r| {
                let change = if r.resource_type == RESOURCE_TOPIC {
                    Ok(ConfigChange::Replace(
                        r.configs
                            .into_iter()
                            .map(|c| (c.name.to_string(), c.value.map(|v| v.to_string())))
                            .collect(),
                    ))
                } else {
                    Err(refuse_resource(r.resource_type))
                };
                (r.resource_type, r.resource_name.to_string(), change)
            })
            .collect();
        async move {
            let results = alter_topics(&ctx, resources, request.validate_only).await;
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
            Reply::Respond(AlterConfigsResponse::default().with_responses(responses))
        }
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> AlterConfigsResponse {
        AlterConfigsResponse::default()
    }
}
