//! DescribeConfigs: a topic's effective configuration (its overrides on top of this broker's
//! defaults, each entry with its source), or this broker's own configuration (read-only:
//! weir has no dynamic broker configs).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader,
};

use super::{str_bytes, ApiContext, KafkaApi, Reply};
use crate::config::{BrokerConfig, TopicConfig};

pub struct DescribeConfigs;

/// Kafka's `ConfigResource.Type`.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;

/// Kafka's `ConfigSource`.
pub const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
pub const SOURCE_DEFAULT_CONFIG: i8 = 5;

/// Kafka's `ConfigType` (DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_SHORT: i8 = 4;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

/// One rendered config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntryView {
    pub name: String,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
    pub config_type: i8,
}

/// The type Kafka declares for a topic-level key.
fn topic_key_type(key: &str) -> i8 {
    match key {
        "cleanup.policy"
        | "leader.replication.throttled.replicas"
        | "follower.replication.throttled.replicas" => TYPE_LIST,
        "compression.type" | "message.timestamp.type" | "message.format.version" => TYPE_STRING,
        "index.interval.bytes"
        | "max.message.bytes"
        | "min.insync.replicas"
        | "segment.bytes"
        | "segment.index.bytes" => TYPE_INT,
        "min.cleanable.dirty.ratio" => TYPE_DOUBLE,
        "preallocate"
        | "unclean.leader.election.enable"
        | "message.downconversion.enable"
        | "remote.storage.enable" => TYPE_BOOLEAN,
        _ => TYPE_LONG,
    }
}

/// The type of a broker-level value, inferred from its rendering.
fn broker_value_type(key: &str, value: &str) -> i8 {
    if matches!(
        key,
        "listeners"
            | "advertised.listeners"
            | "log.dirs"
            | "log.cleanup.policy"
            | "listener.security.protocol.map"
    ) {
        TYPE_LIST
    } else if value == "true" || value == "false" {
        TYPE_BOOLEAN
    } else if value.parse::<i32>().is_ok() {
        if key.ends_with(".factor") || key.ends_with(".acks") {
            TYPE_SHORT
        } else {
            TYPE_INT
        }
    } else if value.parse::<i64>().is_ok() {
        TYPE_LONG
    } else if value.parse::<f64>().is_ok() {
        TYPE_DOUBLE
    } else {
        TYPE_STRING
    }
}

/// A topic's entries: overrides are DYNAMIC_TOPIC_CONFIG, keys the broker sets differently from
/// Kafka's default are STATIC_BROKER_CONFIG, the rest DEFAULT_CONFIG.
pub fn topic_config_entries(
    broker_defaults: &TopicConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntryView> {
    let effective = broker_defaults
        .with_overrides(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .unwrap_or_else(|_| broker_defaults.clone());
    effective
        .entries_against(&TopicConfig::default())
        .into_iter()
        .map(|entry| ConfigEntryView {
            name: entry.name.to_string(),
            value: entry.value,
            source: if overrides.contains_key(entry.name) {
                SOURCE_DYNAMIC_TOPIC_CONFIG
            } else if !entry.is_default {
                SOURCE_STATIC_BROKER_CONFIG
            } else {
                SOURCE_DEFAULT_CONFIG
            },
            read_only: false,
            config_type: topic_key_type(entry.name),
        })
        .collect()
}

/// This broker's entries, all read-only.
pub fn broker_config_entries(config: &BrokerConfig) -> Vec<ConfigEntryView> {
    config
        .entries_against(&BrokerConfig::default())
        .into_iter()
        .map(|entry| ConfigEntryView {
            config_type: broker_value_type(entry.name, &entry.value),
            name: entry.name.to_string(),
            value: entry.value,
            source: if entry.is_default {
                SOURCE_DEFAULT_CONFIG
            } else {
                SOURCE_STATIC_BROKER_CONFIG
            },
            read_only: true,
        })
        .collect()
}

fn render(
    entry: ConfigEntryView,
    version: i16,
    include_synonyms: bool,
) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(entry.name.clone()))
        .with_value(Some(str_bytes(entry.value.clone())))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source)
        .with_is_sensitive(false);
    if include_synonyms {
        result = result.with_synonyms(vec![DescribeConfigsSynonym::default()
            .with_name(str_bytes(entry.name))
            .with_value(Some(str_bytes(entry.value)))
            .with_source(entry.source)]);
    }
    if version >= 3 {
        result = result.with_config_type(entry.config_type);
    }
    result
}

impl KafkaApi for DescribeConfigs {
    const KEY: ApiKey = ApiKey::DescribeConfigs;
    const MAX_VERSION: i16 = 4;
    type Request = DescribeConfigsRequest;
    type Response = DescribeConfigsResponse;

    fn handle(
        ctx: &Arc<ApiContext>,
        header: &RequestHeader,
        request: DescribeConfigsRequest,
    ) -> BoxFuture<'static, Reply<DescribeConfigsResponse>> {
        let version = header.request_api_version;
        let snapshot = ctx.metadata.snapshot();
        let include_synonyms = request.include_synonyms;
        let results = request
            .resources
            .into_iter()
            .map(|resource| {
                let name = resource.resource_name.to_string();
                let result = DescribeConfigsResult::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name.clone());
                let entries = match resource.resource_type {
                    RESOURCE_TOPIC => {
                        if snapshot.topic(&name).is_none() {
                            Err((
                                ResponseError::UnknownTopicOrPartition,
                                format!("Topic '{name}' does not exist."),
                            ))
                        } else {
                            let overrides = snapshot
                                .topic_config(&name)
                                .map(|c| c.overrides.clone())
                                .unwrap_or_default();
                            Ok(topic_config_entries(&ctx.topic_defaults, &overrides))
                        }
                    }
                    RESOURCE_BROKER => {
                        if name.is_empty() || name == ctx.broker_id.to_string() {
                            Ok(broker_config_entries(&ctx.config))
                        } else {
                            Err((
                                ResponseError::InvalidRequest,
                                format!(
                                    "Unexpected broker id, expected {} or empty string, but received {name}",
                                    ctx.broker_id
                                ),
                            ))
                        }
                    }
                    RESOURCE_BROKER_LOGGER => Ok(Vec::new()),
                    other => Err((
                        ResponseError::InvalidRequest,
                        format!("unsupported resource type {other}"),
                    )),
                };
                match entries {
                    Ok(entries) => {
                        let wanted = resource.configuration_keys.map(|keys| {
                            keys.into_iter().map(|k| k.to_string()).collect::<Vec<_>>()
                        });
                        let configs = entries
                            .into_iter()
                            .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(&e.name)))
                            .map(|e| render(e, version, include_synonyms))
                            .collect();
                        result.with_configs(configs).with_error_message(None)
                    }
                    Err((error, message)) => result
                        .with_error_code(error.code())
                        .with_error_message(Some(str_bytes(message))),
                }
            })
            .collect();
        futures::future::ready(Reply::Respond(
            DescribeConfigsResponse::default().with_results(results),
        ))
        .boxed()
    }

    fn error_response(_version: i16, _code: i16) -> DescribeConfigsResponse {
        DescribeConfigsResponse::default()
    }
}
