//! AlterConfigs: replaces the config overrides of a topic, of this broker or of the cluster-wide
//! broker default (dynamic broker configs, KIP-226), through the controller, which validates
//! them, records them and tells every broker.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey, RequestHeader};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::controller::messages::{AlterEntityConfigs, ConfigChange, ConfigEntity};
use crate::protocol::error::ApiError;

pub struct AlterConfigs;

/// The config entity a resource names. A BROKER resource is this broker (Kafka routes a
/// per-broker change to the broker it is for) or `""`, the cluster-wide default.
pub fn entity_of(ctx: &ApiContext, kind: i8, name: &str) -> Result<ConfigEntity, ApiError> {
    match kind {
        RESOURCE_TOPIC => Ok(ConfigEntity::Topic(name.to_string())),
        RESOURCE_BROKER if name.is_empty() => Ok(ConfigEntity::BrokerDefault),
        RESOURCE_BROKER => match name.parse::<i32>() {
            Ok(id) if id == ctx.broker_id => Ok(ConfigEntity::Broker(id)),
            Ok(_) => Err(ApiError::with_message(
                ResponseError::InvalidRequest,
                format!(
                    "Unexpected broker id, expected {}, but received {name}",
                    ctx.broker_id
                ),
            )),
            Err(_) => Err(ApiError::with_message(
                ResponseError::InvalidRequest,
                format!("Broker id must be an integer, but it is: {name}"),
            )),
        },
        other => Err(refuse_resource(other)),
    }
}

/// Sends the changes to the controller and returns one result per resource, in order:
/// `(resource_type, resource_name, result)`.
pub async fn alter_entities(
    ctx: &ApiContext,
    resources: Vec<(i8, String, Result<ConfigChange, ApiError>)>,
    validate_only: bool,
) -> Vec<(i8, String, Result<(), ApiError>)> {
    let resources: Vec<_> = resources
        .into_iter()
        .map(|(kind, name, change)| {
            let change = change.and_then(|c| Ok((entity_of(ctx, kind, &name)?, c)));
            (kind, name, change)
        })
        .collect();
    let changes: Vec<(ConfigEntity, ConfigChange)> = resources
        .iter()
        .filter_map(|(_, _, change)| change.as_ref().ok().cloned())
        .collect();
    let mut answers = if changes.is_empty() {
        Vec::new()
    } else {
        ctx.controller
            .alter_configs
            .send(AlterEntityConfigs {
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

/// Why a resource that is neither a topic nor a broker cannot be altered.
fn refuse_resource(kind: i8) -> ApiError {
    if kind == super::describe_configs::RESOURCE_BROKER_LOGGER {
        ApiError::with_message(
            ResponseError::InvalidRequest,
            "weir's log levels are set at start-up (WEIR_LOG / RUST_LOG)",
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
                let change = Ok(ConfigChange::Replace(
                    r.configs
                        .into_iter()
                        .map(|c| (c.name.to_string(), c.value.map(|v| v.to_string())))
                        .collect(),
                ));
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
            Reply::Respond(AlterConfigsResponse::default().with_responses(responses))
        }
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> AlterConfigsResponse {
        AlterConfigsResponse::default()
    }
}
