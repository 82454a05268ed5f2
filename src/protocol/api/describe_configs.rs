//! DescribeConfigs: a topic's effective configuration (its overrides on top of this broker's
//! defaults, each entry with its source), this broker's own configuration (its static keys
//! with the dynamic broker configs of KIP-226 on top; read-only but for the keys Kafka can
//! change at run time), or the cluster-wide dynamic default (the BROKER resource `""`).

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
use crate::actors::metadata_cache::MetadataSnapshot;
use crate::config::dynamic::{self, DynamicBrokerConfigs, DynamicLevel};
use crate::config::{BrokerConfig, TopicConfig};

pub struct DescribeConfigs;

/// Kafka's `ConfigResource.Type`.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;

/// Kafka's `ConfigSource`.
pub const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const SOURCE_DYNAMIC_BROKER_CONFIG: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
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
    /// Kafka's synonyms, highest precedence first: `(name, value, source)`; empty means
    /// the entry itself only.
    pub synonyms: Vec<(String, String, i8)>,
}

fn dynamic_source(level: DynamicLevel) -> i8 {
    match level {
        DynamicLevel::Broker => SOURCE_DYNAMIC_BROKER_CONFIG,
        DynamicLevel::ClusterDefault => SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG,
    }
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

/// A topic's entries: overrides are DYNAMIC_TOPIC_CONFIG; otherwise the source of the broker
/// key behind the default (a dynamic broker config, the static config when it differs from
/// Kafka's default), else DEFAULT_CONFIG.
pub fn topic_config_entries(
    ctx: &ApiContext,
    snapshot: &MetadataSnapshot,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntryView> {
    let broker_defaults = ctx.topic_defaults(snapshot);
    let dynamic = &snapshot.dynamic_broker_configs;
    let effective = broker_defaults
        .with_overrides(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .unwrap_or_else(|_| broker_defaults.clone());
    effective
        .entries_against(&TopicConfig::default())
        .into_iter()
        .map(|entry| {
            let dynamic_level = dynamic::broker_synonyms(entry.name)
                .iter()
                .find_map(|key| dynamic.source_of(key))
                .map(|(level, _)| level);
            ConfigEntryView {
                name: entry.name.to_string(),
                value: entry.value,
                source: if overrides.contains_key(entry.name) {
                    SOURCE_DYNAMIC_TOPIC_CONFIG
                } else if let Some(level) = dynamic_level {
                    dynamic_source(level)
                } else if !entry.is_default {
                    SOURCE_STATIC_BROKER_CONFIG
                } else {
                    SOURCE_DEFAULT_CONFIG
                },
                read_only: false,
                config_type: topic_key_type(entry.name),
                synonyms: Vec::new(),
            }
        })
        .collect()
}

/// This broker's entries (Kafka's `perBrokerConfig` view): every key with the value in force
/// and its source, its synonyms by precedence (own dynamic, cluster default, static, Kafka's
/// default), read-only unless Kafka can change it at run time; and the dynamic keys weir
/// records without a field of its own.
pub fn broker_config_entries(
    config: &BrokerConfig,
    dynamic: &DynamicBrokerConfigs,
) -> Vec<ConfigEntryView> {
    let kafka_default = BrokerConfig::default();
    let effective = dynamic::effective(config, dynamic);
    let mut entries: Vec<ConfigEntryView> = effective
        .entries_against(&kafka_default)
        .into_iter()
        .map(|entry| {
            let mut synonyms = Vec::new();
            let levels = [
                (DynamicLevel::Broker, dynamic.own.get(entry.name)),
                (
                    DynamicLevel::ClusterDefault,
                    dynamic.cluster_default.get(entry.name),
                ),
            ];
            for (level, value) in levels {
                if let Some(value) = value {
                    synonyms.push((entry.name.to_string(), value.clone(), dynamic_source(level)));
                }
            }
            let static_value = config.get(entry.name).unwrap_or_default();
            let default_value = kafka_default.get(entry.name).unwrap_or_default();
            if static_value != default_value {
                synonyms.push((
                    entry.name.to_string(),
                    static_value,
                    SOURCE_STATIC_BROKER_CONFIG,
                ));
            }
            synonyms.push((entry.name.to_string(), default_value, SOURCE_DEFAULT_CONFIG));
            ConfigEntryView {
                config_type: broker_value_type(entry.name, &entry.value),
                name: entry.name.to_string(),
                value: entry.value,
                source: synonyms[0].2,
                read_only: dynamic::is_read_only(entry.name),
                synonyms,
            }
        })
        .collect();
    let mut recorded_only: BTreeMap<&str, (DynamicLevel, &str)> = BTreeMap::new();
    for key in dynamic.cluster_default.keys().chain(dynamic.own.keys()) {
        if !BrokerConfig::KEYS.contains(&key.as_str()) {
            if let Some(found) = dynamic.source_of(key) {
                recorded_only.insert(key, found);
            }
        }
    }
    entries.extend(
        recorded_only
            .into_iter()
            .map(|(key, (level, value))| ConfigEntryView {
                name: key.to_string(),
                value: value.to_string(),
                source: dynamic_source(level),
                read_only: false,
                config_type: broker_value_type(key, value),
                synonyms: Vec::new(),
            }),
    );
    entries
}

/// The cluster-wide dynamic default (the BROKER resource `""`): only what was set there, as
/// Kafka describes it.
pub fn cluster_default_entries(dynamic: &DynamicBrokerConfigs) -> Vec<ConfigEntryView> {
    dynamic
        .cluster_default
        .iter()
        .map(|(key, value)| ConfigEntryView {
            name: key.clone(),
            value: value.clone(),
            source: SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG,
            read_only: false,
            config_type: broker_value_type(key, value),
            synonyms: Vec::new(),
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
        let synonyms = if entry.synonyms.is_empty() {
            vec![(entry.name, entry.value, entry.source)]
        } else {
            entry.synonyms
        };
        result = result.with_synonyms(
            synonyms
                .into_iter()
                .map(|(name, value, source)| {
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(name))
                        .with_value(Some(str_bytes(value)))
                        .with_source(source)
                })
                .collect(),
        );
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
                            Ok(topic_config_entries(ctx, &snapshot, &overrides))
                        }
                    }
                    RESOURCE_BROKER => {
                        if name.is_empty() {
                            Ok(cluster_default_entries(&snapshot.dynamic_broker_configs))
                        } else if name == ctx.broker_id.to_string() {
                            Ok(broker_config_entries(
                                &ctx.config,
                                &snapshot.dynamic_broker_configs,
                            ))
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
