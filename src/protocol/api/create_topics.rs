//! CreateTopics: forwarded to the controller (whichever broker receives it), which validates,
//! places and creates the topics and answers once every broker knows them. v5+ answers carry
//! the new topic's partition count, replication factor and configuration; v7 its topic id.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, RequestHeader};

use super::describe_configs::topic_config_entries;
use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::actors::controller::messages;
use crate::actors::controller::messages::NewTopic;

pub struct CreateTopics;

impl KafkaApi for CreateTopics {
    const KEY: ApiKey = ApiKey::CreateTopics;
    const MAX_VERSION: i16 = 7;
    type Request = CreateTopicsRequest;
    type Response = CreateTopicsResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: CreateTopicsRequest,
    ) -> BoxFuture<'static, Reply<CreateTopicsResponse>> {
        let ctx = ctx.clone();
        let version = header.request_api_version;
        let topics: Vec<NewTopic> = request
            .topics
            .into_iter()
            .map(|t| NewTopic {
                name: t.name.0.to_string(),
                num_partitions: t.num_partitions,
                replication_factor: t.replication_factor,
                assignments: t
                    .assignments
                    .into_iter()
                    .map(|a| {
                        (
                            a.partition_index,
                            a.broker_ids.into_iter().map(|b| b.0).collect(),
                        )
                    })
                    .collect(),
                configs: t
                    .configs
                    .into_iter()
                    .map(|c| (c.name.to_string(), c.value.map(|v| v.to_string())))
                    .collect(),
            })
            .collect();
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let send = ctx.controller.create_topics.send(messages::CreateTopics {
            topics,
            validate_only: request.validate_only,
            timeout_ms: request.timeout_ms,
        });
        async move {
            let outcomes = match send.await {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    tracing::warn!(error = %e, "the controller did not answer CreateTopics");
                    let results = names
                        .into_iter()
                        .map(|name| {
                            CreatableTopicResult::default()
                                .with_name(kafka_protocol::messages::TopicName(str_bytes(name)))
                                .with_error_code(ResponseError::NotController.code())
                                .with_error_message(None)
                        })
                        .collect();
                    return Reply::Respond(CreateTopicsResponse::default().with_topics(results));
                }
            };
            let results = outcomes
                .into_iter()
                .map(|outcome| {
                    let mut result = CreatableTopicResult::default()
                        .with_name(kafka_protocol::messages::TopicName(str_bytes(outcome.name)));
                    match outcome.result {
                        Ok(created) => {
                            result = result.with_error_message(None);
                            if version >= 5 {
                                let configs = topic_config_entries(
                                    &ctx,
                                    &ctx.metadata.snapshot(),
                                    &created.configs,
                                )
                                .into_iter()
                                .map(|e| {
                                    CreatableTopicConfigs::default()
                                        .with_name(str_bytes(e.name))
                                        .with_value(Some(str_bytes(e.value)))
                                        .with_read_only(e.read_only)
                                        .with_config_source(e.source)
                                        .with_is_sensitive(false)
                                })
                                .collect();
                                result = result
                                    .with_num_partitions(created.num_partitions)
                                    .with_replication_factor(created.replication_factor)
                                    .with_configs(Some(configs));
                            }
                            if version >= 7 {
                                result = result.with_topic_id(created.topic_id);
                            }
                        }
                        Err(e) => {
                            result = result
                                .with_error_code(e.code)
                                .with_error_message(e.message.map(str_bytes));
                            if version >= 5 {
                                result = result.with_configs(None);
                            }
                        }
                    }
                    result
                })
                .collect();
            Reply::Respond(CreateTopicsResponse::default().with_topics(results))
        }
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> CreateTopicsResponse {
        CreateTopicsResponse::default()
    }
}
