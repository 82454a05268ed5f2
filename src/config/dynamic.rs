//! Dynamic broker configs (Kafka's KIP-226, ZooKeeper era): broker keys altered at run time
//! with AlterConfigs / IncrementalAlterConfigs on a BROKER resource, either for one broker
//! (`/config/brokers/<id>`) or as the cluster-wide default (`/config/brokers/<default>`,
//! the resource name `""`).
//!
//! Precedence, as in Kafka: the broker's own dynamic value, then the cluster default, then
//! the static `.properties` / `--set` value, then Kafka's default. [`effective`] applies it.
//!
//! Which keys may change at run time is Kafka's list ([`dynamic_scope`]); the rest are refused
//! as Kafka refuses them. What changing one does in weir: the keys behind the topic-level
//! defaults (`log.retention.ms`, `log.segment.bytes`, `min.insync.replicas`,
//! `message.max.bytes`, …) reach every topic without its own override at once. The others
//! (thread counts, connection limits, listener security) are recorded, described and
//! reported back as Kafka does, and take effect at the broker's next start only where the
//! static config has the same key.

use std::collections::BTreeMap;

use super::{BrokerConfig, ConfigError};

/// Where a dynamic key may be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamicScope {
    /// Per broker or as the cluster-wide default.
    ClusterWide,
    /// Only per broker (listeners and their security settings).
    PerBroker,
}

/// Kafka's value types, for the keys weir's [`BrokerConfig`] does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Long,
    Double,
    Bool,
    Text,
}

/// Kafka's cluster-wide dynamic broker keys (`DynamicLogConfig`, `LogCleaner`,
/// `DynamicThreadPool`, `SocketServer`, quotas, producer state, metrics reporters).
const CLUSTER_WIDE: &[(&str, Kind)] = &[
    ("log.segment.bytes", Kind::Int),
    ("log.roll.ms", Kind::Long),
    ("log.roll.hours", Kind::Int),
    ("log.roll.jitter.ms", Kind::Long),
    ("log.roll.jitter.hours", Kind::Int),
    ("log.index.size.max.bytes", Kind::Int),
    ("log.flush.interval.messages", Kind::Long),
    ("log.flush.interval.ms", Kind::Long),
    ("log.retention.bytes", Kind::Long),
    ("log.retention.ms", Kind::Long),
    ("log.retention.minutes", Kind::Int),
    ("log.retention.hours", Kind::Int),
    ("message.max.bytes", Kind::Int),
    ("log.index.interval.bytes", Kind::Int),
    ("log.cleaner.delete.retention.ms", Kind::Long),
    ("log.cleaner.min.compaction.lag.ms", Kind::Long),
    ("log.cleaner.max.compaction.lag.ms", Kind::Long),
    ("log.segment.delete.delay.ms", Kind::Long),
    ("log.cleaner.min.cleanable.ratio", Kind::Double),
    ("log.cleanup.policy", Kind::Text),
    ("unclean.leader.election.enable", Kind::Bool),
    ("min.insync.replicas", Kind::Int),
    ("compression.type", Kind::Text),
    ("log.preallocate", Kind::Bool),
    ("log.message.timestamp.type", Kind::Text),
    ("log.message.timestamp.difference.max.ms", Kind::Long),
    ("log.message.timestamp.before.max.ms", Kind::Long),
    ("log.message.timestamp.after.max.ms", Kind::Long),
    ("log.message.downconversion.enable", Kind::Bool),
    ("log.local.retention.ms", Kind::Long),
    ("log.local.retention.bytes", Kind::Long),
    ("log.cleaner.threads", Kind::Int),
    ("log.cleaner.dedupe.buffer.size", Kind::Long),
    ("log.cleaner.io.buffer.load.factor", Kind::Double),
    ("log.cleaner.io.buffer.size", Kind::Int),
    ("log.cleaner.io.max.bytes.per.second", Kind::Double),
    ("log.cleaner.backoff.ms", Kind::Long),
    ("num.io.threads", Kind::Int),
    ("num.network.threads", Kind::Int),
    ("num.replica.fetchers", Kind::Int),
    ("num.recovery.threads.per.data.dir", Kind::Int),
    ("background.threads", Kind::Int),
    ("metric.reporters", Kind::Text),
    ("max.connections", Kind::Int),
    ("max.connections.per.ip", Kind::Int),
    ("max.connections.per.ip.overrides", Kind::Text),
    ("max.connection.creation.rate", Kind::Int),
    ("producer.id.expiration.ms", Kind::Int),
    ("transaction.partition.verification.enable", Kind::Bool),
    ("leader.replication.throttled.rate", Kind::Long),
    ("follower.replication.throttled.rate", Kind::Long),
    ("replica.alter.log.dirs.io.max.bytes.per.second", Kind::Long),
];

/// Kafka's per-broker dynamic keys (`DynamicListenerConfig`): listeners and SASL settings.
/// Kafka's SSL keys are dynamic only with a `listener.name.<listener>.` prefix.
const PER_BROKER: &[(&str, Kind)] = &[
    ("listeners", Kind::Text),
    ("advertised.listeners", Kind::Text),
    ("listener.security.protocol.map", Kind::Text),
    ("principal.builder.class", Kind::Text),
    ("sasl.mechanism.inter.broker.protocol", Kind::Text),
    ("sasl.jaas.config", Kind::Text),
    ("sasl.enabled.mechanisms", Kind::Text),
    ("sasl.kerberos.service.name", Kind::Text),
    ("sasl.kerberos.kinit.cmd", Kind::Text),
    ("sasl.kerberos.ticket.renew.window.factor", Kind::Double),
    ("sasl.kerberos.ticket.renew.jitter", Kind::Double),
    ("sasl.kerberos.min.time.before.relogin", Kind::Long),
    ("sasl.kerberos.principal.to.local.rules", Kind::Text),
    ("sasl.login.refresh.window.factor", Kind::Double),
    ("sasl.login.refresh.window.jitter", Kind::Double),
    ("sasl.login.refresh.min.period.seconds", Kind::Int),
    ("sasl.login.refresh.buffer.seconds", Kind::Int),
    ("connections.max.reauth.ms", Kind::Long),
];

/// Listener configs Kafka keeps cluster-wide even under a `listener.name.` prefix.
const CLUSTER_LEVEL_LISTENER_KEYS: &[&str] = &[
    "max.connections",
    "max.connection.creation.rate",
    "num.network.threads",
];

fn catalog(key: &str) -> Option<(DynamicScope, Kind)> {
    if let Some((_, kind)) = CLUSTER_WIDE.iter().find(|(k, _)| *k == key) {
        return Some((DynamicScope::ClusterWide, *kind));
    }
    if let Some((_, kind)) = PER_BROKER.iter().find(|(k, _)| *k == key) {
        return Some((DynamicScope::PerBroker, *kind));
    }
    // `listener.name.<name>.<key>`: per listener, so per broker unless Kafka keeps the key
    // cluster-wide; SSL and SASL keys are only dynamic this way.
    let base = key.strip_prefix("listener.name.")?.split_once('.')?.1;
    if CLUSTER_LEVEL_LISTENER_KEYS.contains(&base) {
        return Some((DynamicScope::ClusterWide, Kind::Int));
    }
    if base.starts_with("ssl.") || base.starts_with("sasl.") {
        return Some((DynamicScope::PerBroker, Kind::Text));
    }
    catalog(base).map(|(_, kind)| (DynamicScope::PerBroker, kind))
}

/// Where `key` may be set at run time; `None` for a key Kafka only reads at start-up.
pub fn dynamic_scope(key: &str) -> Option<DynamicScope> {
    catalog(key).map(|(scope, _)| scope)
}

/// The broker keys behind a topic-level key's default, by precedence (Kafka's
/// `ServerTopicConfigSynonyms`).
pub fn broker_synonyms(topic_key: &str) -> &'static [&'static str] {
    match topic_key {
        "cleanup.policy" => &["log.cleanup.policy"],
        "compression.type" => &["compression.type"],
        "delete.retention.ms" => &["log.cleaner.delete.retention.ms"],
        "file.delete.delay.ms" => &["log.segment.delete.delay.ms"],
        "flush.messages" => &["log.flush.interval.messages"],
        "flush.ms" => &["log.flush.interval.ms"],
        "index.interval.bytes" => &["log.index.interval.bytes"],
        "local.retention.bytes" => &["log.local.retention.bytes"],
        "local.retention.ms" => &["log.local.retention.ms"],
        "max.compaction.lag.ms" => &["log.cleaner.max.compaction.lag.ms"],
        "max.message.bytes" => &["message.max.bytes"],
        "message.downconversion.enable" => &["log.message.downconversion.enable"],
        "message.timestamp.after.max.ms" => &["log.message.timestamp.after.max.ms"],
        "message.timestamp.before.max.ms" => &["log.message.timestamp.before.max.ms"],
        "message.timestamp.difference.max.ms" => &["log.message.timestamp.difference.max.ms"],
        "message.timestamp.type" => &["log.message.timestamp.type"],
        "min.cleanable.dirty.ratio" => &["log.cleaner.min.cleanable.ratio"],
        "min.compaction.lag.ms" => &["log.cleaner.min.compaction.lag.ms"],
        "min.insync.replicas" => &["min.insync.replicas"],
        "preallocate" => &["log.preallocate"],
        "retention.bytes" => &["log.retention.bytes"],
        "retention.ms" => &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        "segment.bytes" => &["log.segment.bytes"],
        "segment.index.bytes" => &["log.index.size.max.bytes"],
        "segment.jitter.ms" => &["log.roll.jitter.ms", "log.roll.jitter.hours"],
        "segment.ms" => &["log.roll.ms", "log.roll.hours"],
        "unclean.leader.election.enable" => &["unclean.leader.election.enable"],
        _ => &[],
    }
}

/// Whether DescribeConfigs reports `key` as read-only on a broker.
pub fn is_read_only(key: &str) -> bool {
    dynamic_scope(key).is_none()
}

/// Keys whose value is a comma-separated list (IncrementalAlterConfigs' APPEND / SUBTRACT).
pub fn is_list(key: &str) -> bool {
    matches!(
        key,
        "log.cleanup.policy"
            | "metric.reporters"
            | "max.connections.per.ip.overrides"
            | "listeners"
            | "advertised.listeners"
            | "listener.security.protocol.map"
            | "sasl.enabled.mechanisms"
            | "sasl.kerberos.principal.to.local.rules"
    )
}

/// Why a set of dynamic values is refused; Kafka answers INVALID_REQUEST with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Kafka's `DynamicBrokerConfig.validateConfigs` for the values an entity would hold after a
/// change: every key dynamic (SSL keys only with a listener prefix), per-broker keys not at
/// the cluster level, every value of its type, and the whole still a valid broker config on
/// top of `base` (the static config).
pub fn validate(
    values: &BTreeMap<String, String>,
    per_broker: bool,
    base: &BrokerConfig,
) -> Result<(), Refused> {
    let named = |keys: Vec<&String>| {
        keys.iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let not_dynamic: Vec<&String> = values
        .keys()
        .filter(|k| catalog(k).is_none() && is_known_key(k))
        .collect();
    if !not_dynamic.is_empty() {
        let prefixed_only: Vec<&String> = not_dynamic
            .iter()
            .copied()
            .filter(|k| k.starts_with("ssl."))
            .collect();
        if prefixed_only.len() == not_dynamic.len() {
            return Err(Refused(format!(
                "These security configs can be dynamically updated only per-listener using the listener prefix: Set({})",
                named(prefixed_only)
            )));
        }
        return Err(Refused(format!(
            "Cannot update these configs dynamically: Set({})",
            named(not_dynamic)
        )));
    }
    if !per_broker {
        let per_broker_only: Vec<&String> = values
            .keys()
            .filter(|k| dynamic_scope(k) == Some(DynamicScope::PerBroker))
            .collect();
        if !per_broker_only.is_empty() {
            return Err(Refused(format!(
                "Cannot update these configs at default cluster level, broker id must be specified: Set({})",
                named(per_broker_only)
            )));
        }
    }
    for (key, value) in values {
        if let Some((_, kind)) = catalog(key) {
            check_kind(key, value, kind)?;
        }
    }
    let mut config = base.clone();
    for (key, value) in values {
        match config.set(key, value) {
            Ok(()) | Err(ConfigError::Unknown { .. }) => {}
            Err(e) => return Err(Refused(e.to_string())),
        }
    }
    config.validate().map_err(|e| Refused(e.to_string()))
}

/// Keys Kafka's broker knows (so that a key it does not know is stored as it is, as Kafka
/// does, rather than refused as static).
fn is_known_key(key: &str) -> bool {
    BrokerConfig::KEYS.contains(&key)
        || super::KAFKA_KEYS_NOT_IMPLEMENTED.contains(&key)
        || key.starts_with("ssl.")
        || key.starts_with("sasl.")
}

fn check_kind(key: &str, value: &str, kind: Kind) -> Result<(), Refused> {
    let v = value.trim();
    let ok = match kind {
        Kind::Int => v.parse::<i32>().is_ok(),
        Kind::Long => v.parse::<i64>().is_ok(),
        Kind::Double => v.parse::<f64>().is_ok(),
        Kind::Bool => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
        Kind::Text => true,
    };
    if ok {
        Ok(())
    } else {
        let kind = match kind {
            Kind::Int => "INT",
            Kind::Long => "LONG",
            Kind::Double => "DOUBLE",
            Kind::Bool => "BOOLEAN",
            Kind::Text => "STRING",
        };
        Err(Refused(format!(
            "Invalid value {value} for configuration {key}: Not a number of type {kind}"
        )))
    }
}

/// One broker's dynamic values: the cluster-wide default and its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicBrokerConfigs {
    pub cluster_default: BTreeMap<String, String>,
    pub own: BTreeMap<String, String>,
}

impl DynamicBrokerConfigs {
    /// Where `key`'s value comes from among the dynamic levels, highest first.
    pub fn source_of(&self, key: &str) -> Option<(DynamicLevel, &str)> {
        self.own
            .get(key)
            .map(|v| (DynamicLevel::Broker, v.as_str()))
            .or_else(|| {
                self.cluster_default
                    .get(key)
                    .map(|v| (DynamicLevel::ClusterDefault, v.as_str()))
            })
    }
}

/// The two dynamic levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamicLevel {
    Broker,
    ClusterDefault,
}

/// `base` (the static config) with the cluster default and then the broker's own values on
/// top. Values were validated when they were altered; one that no longer applies (the
/// static config changed under it) is skipped with a warning rather than stopping the broker.
pub fn effective(base: &BrokerConfig, dynamic: &DynamicBrokerConfigs) -> BrokerConfig {
    let mut config = base.clone();
    for (key, value) in dynamic.cluster_default.iter().chain(dynamic.own.iter()) {
        match config.set(key, value) {
            Ok(()) | Err(ConfigError::Unknown { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "dynamic broker config skipped"),
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn static_keys_are_refused_as_kafka_refuses_them() {
        let base = BrokerConfig::default();
        let err = validate(&values(&[("broker.id", "7")]), true, &base).unwrap_err();
        assert_eq!(
            err.0,
            "Cannot update these configs dynamically: Set(broker.id)"
        );
        let err = validate(&values(&[("ssl.keystore.location", "/k")]), true, &base).unwrap_err();
        assert!(err.0.contains("only per-listener"), "{err}");
    }

    #[test]
    fn per_broker_keys_need_a_broker_id() {
        let base = BrokerConfig::default();
        let v = values(&[("sasl.kerberos.min.time.before.relogin", "58000")]);
        assert_eq!(validate(&v, true, &base), Ok(()));
        let err = validate(&v, false, &base).unwrap_err();
        assert!(err.0.contains("broker id must be specified"), "{err}");
        let prefixed = values(&[("listener.name.internal.ssl.keystore.location", "/k")]);
        assert_eq!(validate(&prefixed, true, &base), Ok(()));
    }

    #[test]
    fn values_are_checked_against_their_type_and_the_broker_config() {
        let base = BrokerConfig::default();
        let err = validate(&values(&[("background.threads", "many")]), false, &base).unwrap_err();
        assert!(err.0.contains("background.threads"), "{err}");
        let err = validate(&values(&[("log.cleanup.policy", "shred")]), false, &base).unwrap_err();
        assert!(err.0.contains("log.cleanup.policy"), "{err}");
        assert_eq!(
            validate(
                &values(&[
                    ("log.cleanup.policy", "delete,compact"),
                    ("background.threads", "9")
                ]),
                false,
                &base
            ),
            Ok(())
        );
    }

    #[test]
    fn the_brokers_own_value_wins_over_the_default_which_wins_over_the_static_one() {
        let mut base = BrokerConfig::default();
        base.set("log.retention.ms", "1000").unwrap();
        base.set("log.segment.bytes", "5000").unwrap();
        let dynamic = DynamicBrokerConfigs {
            cluster_default: values(&[("log.retention.ms", "2000"), ("min.insync.replicas", "2")]),
            own: values(&[("log.retention.ms", "3000")]),
        };
        let config = effective(&base, &dynamic);
        assert_eq!(config.topic_defaults().retention_ms, 3000);
        assert_eq!(config.topic_defaults().min_insync_replicas, 2);
        assert_eq!(config.topic_defaults().segment_bytes, 5000);
        assert_eq!(
            dynamic.source_of("log.retention.ms"),
            Some((DynamicLevel::Broker, "3000"))
        );
        assert_eq!(
            dynamic.source_of("min.insync.replicas"),
            Some((DynamicLevel::ClusterDefault, "2"))
        );
        assert_eq!(dynamic.source_of("log.segment.bytes"), None);
    }
}
